package ingress

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

type openAPIDoc struct {
	OpenAPI string                                `json:"openapi"`
	Paths   map[string]map[string]json.RawMessage `json:"paths"`
	Comps   struct {
		Schemas map[string]struct {
			Properties map[string]json.RawMessage `json:"properties"`
			Enum       []string                   `json:"enum"`
		} `json:"schemas"`
	} `json:"components"`
}

func loadOpenAPI(t *testing.T) openAPIDoc {
	t.Helper()
	var doc openAPIDoc
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	return doc
}

// TestOpenAPIMatchesRoutes: the document lists exactly the served routes.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi = %q, want 3.x", doc.OpenAPI)
	}
	in := newIngress(t, newCluster(t), nil)
	var served, documented []string
	for _, rt := range in.routes() {
		served = append(served, rt.method+" "+rt.path)
	}
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	sort.Strings(served)
	sort.Strings(documented)
	if !slices.Equal(served, documented) {
		t.Errorf("routes differ from openapi.json:\nserved     %v\ndocumented %v", served, documented)
	}
	// Each documented route answers (not 404/405) on the real handler.
	for _, r := range served {
		method, path, _ := strings.Cut(r, " ")
		path = strings.ReplaceAll(path, "{conversation_id}", "c")
		res, _ := do(t, in.Handler(), method, path, "application/json", "{}")
		if res.StatusCode == 404 || res.StatusCode == 405 {
			t.Errorf("%s %s: %d", method, path, res.StatusCode)
		}
	}
	res, body := do(t, in.Handler(), "GET", "/openapi.json", "", "")
	if res.StatusCode != 200 || string(body) != string(openAPI) {
		t.Errorf("GET /openapi.json = %d, not the document", res.StatusCode)
	}
}

// jsonFields returns the JSON names of a struct's fields, embedded structs
// flattened.
func jsonFields(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous {
			out = append(out, jsonFields(f.Type)...)
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// TestOpenAPIMatchesTypes: each schema has exactly the fields the Go type
// reads or writes, and every error code the code can answer is listed.
func TestOpenAPIMatchesTypes(t *testing.T) {
	doc := loadOpenAPI(t)
	types := map[string]reflect.Type{
		"MessageBody": reflect.TypeFor[messageBody](),
		"Message":     reflect.TypeFor[messageJSON](),
		"BatchBody":   reflect.TypeFor[batchBody](),
		"BatchItem":   reflect.TypeFor[batchItem](),
		"BatchResult": reflect.TypeFor[batchResult](),
		"BatchAnswer": reflect.TypeFor[batchAnswer](),
		"Ack":         reflect.TypeFor[ack](),
		"Error":       reflect.TypeFor[apiError](),
	}
	for name, typ := range types {
		s, ok := doc.Comps.Schemas[name]
		if !ok {
			t.Errorf("schema %s missing", name)
			continue
		}
		var props []string
		for p := range s.Properties {
			props = append(props, p)
		}
		sort.Strings(props)
		if want := jsonFields(typ); !slices.Equal(props, want) {
			t.Errorf("schema %s has %v, type %v has %v", name, props, typ, want)
		}
	}
	// Error codes: every `code: "..."` literal in the package's code.
	files, _ := filepath.Glob("*.go")
	re := regexp.MustCompile(`code: +"([a-z_]+)"`)
	enum := map[string]bool{}
	var enumVals []string
	if err := json.Unmarshal(doc.Comps.Schemas["Error"].Properties["code"], &struct {
		Enum *[]string `json:"enum"`
	}{&enumVals}); err != nil {
		t.Fatal(err)
	}
	for _, v := range enumVals {
		enum[v] = true
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			if !enum[m[1]] {
				t.Errorf("%s answers error code %q, not in openapi.json's Error.code enum", f, m[1])
			}
		}
	}
}
