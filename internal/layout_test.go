package internal_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/switchboard-llm/switchboard/"

// imports returns, per non-test Go file under root, the packages it imports.
func imports(t *testing.T, root string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "tools" || d.Name() == "data" || d.Name() == "bin") && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			out[filepath.ToSlash(path)] = append(out[filepath.ToSlash(path)], p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestServicesDoNotImportEachOther keeps the three services apart: they
// meet only in Kafka.
func TestServicesDoNotImportEachOther(t *testing.T) {
	services := []string{"ingress", "router", "egress"}
	for file, imps := range imports(t, ".") {
		for _, own := range services {
			if !strings.HasPrefix(file, own+"/") {
				continue
			}
			for _, other := range services {
				if other != own && containsPkg(imps, module+"internal/"+other) {
					t.Errorf("%s imports internal/%s: services must not import one another", file, other)
				}
			}
		}
	}
}

// TestOnlyDevToolingImportsKfake keeps the fake broker out of the services.
func TestOnlyDevToolingImportsKfake(t *testing.T) {
	for file, imps := range imports(t, "..") {
		if strings.HasPrefix(file, "../internal/devbroker/") || strings.HasPrefix(file, "../cmd/devbroker/") {
			continue
		}
		if containsPkg(imps, "github.com/twmb/franz-go/pkg/kfake") {
			t.Errorf("%s imports kfake; only devbroker and tests may", file)
		}
	}
}

func containsPkg(imps []string, pkg string) bool {
	for _, p := range imps {
		if p == pkg || strings.HasPrefix(p, pkg+"/") {
			return true
		}
	}
	return false
}
