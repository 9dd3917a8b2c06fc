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
		path = strings.ReplaceAll(strings.ReplaceAll(path, "{conversation_id}", "c"), "{model}", "sim")
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
		"MessageBody":  reflect.TypeFor[messageBody](),
		"Message":      reflect.TypeFor[messageJSON](),
		"BatchBody":    reflect.TypeFor[batchBody](),
		"BatchItem":    reflect.TypeFor[batchItem](),
		"BatchResult":  reflect.TypeFor[batchResult](),
		"BatchAnswer":  reflect.TypeFor[batchAnswer](),
		"Ack":          reflect.TypeFor[ack](),
		"Error":        reflect.TypeFor[apiError](),
		"ForgetAnswer": reflect.TypeFor[forgetAnswer](),
		// The OpenAI-compatible API's.
		"ChatCompletion": reflect.TypeFor[oaiCompletion](),
		"Usage":          reflect.TypeFor[oaiUsage](),
		"Model":          reflect.TypeFor[oaiModel](),
		"ModelList":      reflect.TypeFor[oaiModelList](),
		"OpenAIError":    reflect.TypeFor[oaiError](),
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
	// The chat completions body: the parameters the decoder maps or
	// accepts.
	var params []string
	for p := range doc.Comps.Schemas["ChatCompletionRequest"].Properties {
		params = append(params, p)
	}
	want := slices.Clone(oaiMapped)
	for p := range oaiNeutral {
		want = append(want, p)
	}
	sort.Strings(params)
	sort.Strings(want)
	if !slices.Equal(params, want) {
		t.Errorf("schema ChatCompletionRequest has %v, the decoder takes %v", params, want)
	}
	// Error codes: every `code: "..."` literal in the package's code, in
	// Error.code's enum, or OpenAIError.code's for the OpenAI API's files.
	files, _ := filepath.Glob("*.go")
	re := regexp.MustCompile(`code: +"([a-z_]+)"`)
	enumOf := func(schema string) map[string]bool {
		var vals []string
		if err := json.Unmarshal(doc.Comps.Schemas[schema].Properties["code"], &struct {
			Enum *[]string `json:"enum"`
		}{&vals}); err != nil {
			t.Fatal(err)
		}
		m := map[string]bool{}
		for _, v := range vals {
			m[v] = true
		}
		return m
	}
	native, openai := enumOf("Error"), enumOf("OpenAIError")
	for c := range native {
		if !openai[c] {
			t.Errorf("OpenAIError.code's enum lacks %q: every native code can reach the OpenAI API", c)
		}
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		enum, schema := native, "Error"
		if strings.HasPrefix(f, "openai") {
			enum, schema = openai, "OpenAIError"
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			if !enum[m[1]] {
				t.Errorf("%s answers error code %q, not in openapi.json's %s.code enum", f, m[1], schema)
			}
		}
	}
}
