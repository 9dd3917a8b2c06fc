package internal_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
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

// The layers of docs/ARCHITECTURE.md's package map. A package under
// internal/ that is in none of these lists is a shared noun.
var (
	services = []string{"ingress", "router", "egress"}
	tools    = []string{"redrive", "loadtest", "stack"}
	devTools = []string{"devbroker", "modelsim", "apptest", "loadtest", "redrive", "stack"}
)

// internalPkg returns the first path element under internal/ of a
// non-test Go file of the module ("" outside internal/).
func internalPkg(file string) string {
	rest, ok := strings.CutPrefix(file, "../internal/")
	if !ok {
		return ""
	}
	pkg, _, _ := strings.Cut(rest, "/")
	if strings.HasSuffix(pkg, ".go") {
		return "" // this package's own files
	}
	return pkg
}

// TestLayers enforces the package map: shared nouns import no service,
// tool or dev tooling; tools import no service; only mains import daemon;
// nothing but tests imports apptest.
func TestLayers(t *testing.T) {
	for file, imps := range imports(t, "..") {
		pkg := internalPkg(file)
		isMain := pkg == "" && !strings.HasPrefix(file, "../internal/") && !strings.HasPrefix(file, "../proto/")
		for _, imp := range imps {
			dep, ok := strings.CutPrefix(imp, module+"internal/")
			if !ok {
				continue
			}
			dep, _, _ = strings.Cut(dep, "/")
			switch {
			case dep == "apptest":
				t.Errorf("%s imports internal/apptest: only tests may", file)
			case strings.HasPrefix(file, "../client/") && (dep == "daemon" || slices.Contains(services, dep) || slices.Contains(devTools, dep)):
				t.Errorf("%s (the public client package) imports internal/%s: it may use shared packages only", file, dep)
			case dep == "daemon" && !isMain:
				t.Errorf("%s imports internal/daemon: only mains may", file)
			case pkg == "" || pkg == dep:
			case slices.Contains(tools, pkg) && slices.Contains(services, dep):
				t.Errorf("%s (a tool) imports internal/%s (a service)", file, dep)
			case !slices.Contains(services, pkg) && !slices.Contains(devTools, pkg) && pkg != "daemon" &&
				(slices.Contains(services, dep) || slices.Contains(devTools, dep)):
				t.Errorf("%s (shared package internal/%s) imports internal/%s", file, pkg, dep)
			case slices.Contains(services, pkg) && slices.Contains(devTools, dep):
				t.Errorf("%s (a service) imports internal/%s (dev tooling)", file, dep)
			}
		}
	}
}

// TestMainsWireOneService: a main is wiring for one service at most.
func TestMainsWireOneService(t *testing.T) {
	perDir := map[string]map[string]bool{}
	for file, imps := range imports(t, "..") {
		if strings.HasPrefix(file, "../internal/") || strings.HasPrefix(file, "../proto/") {
			continue
		}
		dir := filepath.Dir(file)
		for _, imp := range imps {
			for _, svc := range services {
				if imp == module+"internal/"+svc {
					if perDir[dir] == nil {
						perDir[dir] = map[string]bool{}
					}
					perDir[dir][svc] = true
				}
			}
		}
	}
	for dir, svcs := range perDir {
		if len(svcs) > 1 {
			t.Errorf("%s wires %d services (%v): one main, one service", dir, len(svcs), svcs)
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
