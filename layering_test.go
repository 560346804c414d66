package dpcnn_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/dpcnn/dpcnn/"

// mayImport is the dependency table of docs/ARCHITECTURE.md: for every
// package of this module, the packages of ours its non-test files may
// import. "*" allows any. A package missing here fails the test, so a new
// package arrives with its place in the layering (and the table in
// ARCHITECTURE.md is to be changed with this one).
var mayImport = map[string][]string{
	"philox":                 {},
	"kernels":                {"philox"},
	"kernels/cuda":           {"kernels"},
	"kernels/kernelstest":    {"kernels"},
	"model":                  {"kernels", "philox"},
	"dataset":                {"philox"},
	"digitimage":             {},
	"deploy/k8s":             {},
	"viz":                    {"model"},
	"job":                    {"model", "dataset"},
	"tree":                   {},
	"train":                  {"model", "dataset", "job", "kernels", "tree"},
	"proto/dpcnnv1":          {},
	"proto/dpcnnv1/wiretest": {},
	"secure":                 {},
	"cluster":                {"proto/dpcnnv1", "secure"},
	"backends":               {"kernels", "kernels/cuda"},
	"metrics":                {},
	"benchmark":              {},
	"netlab":                 {},
	"simulate":               {"train", "tree", "job", "kernels", "philox", "benchmark"},
	"worker":                 {"backends", "cluster", "dataset", "job", "kernels", "metrics", "model", "proto/dpcnnv1", "secure", "tree"},
	"coordinator":            {"train", "tree", "cluster", "dataset", "job", "kernels", "metrics", "model", "proto/dpcnnv1", "secure"},
	"localcluster":           {"backends", "cluster", "coordinator", "dataset", "job", "kernels", "metrics", "model", "proto/dpcnnv1", "secure", "train", "tree", "worker"},
	"cmd/internal/envflag":   {},
	"cmd/cnnctl":             {"*"},
	"cmd/coordinator":        {"*"},
	"cmd/worker":             {"*"},
	"e2e":                    {"*"},
}

// TestLayering holds every package of the module to the dependency table:
// the non-test files of each (of every build: tags and GOARCH do not
// matter, the parser reads them all) import only the packages of ours the
// table allows it. train.TestImports checks the training core more
// closely (what it reaches, and the standard library it may not use).
func TestLayering(t *testing.T) {
	imports := map[string]map[string][]string{} // package → import → files
	fset := token.NewFileSet()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != "." && (strings.HasPrefix(name, ".") || name == "testdata" || name == "runs" || name == "deploy" || name == "docs") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		pkg := filepath.ToSlash(filepath.Dir(path))
		if imports[pkg] == nil {
			imports[pkg] = map[string][]string{}
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if own, ok := strings.CutPrefix(p, module); ok {
				imports[pkg][own] = append(imports[pkg][own], filepath.Base(path))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, pkg := range []string{"kernels", "train", "coordinator", "worker"} {
		if imports[pkg] == nil {
			t.Fatalf("no Go files found for package %s: the walk is broken", pkg)
		}
	}
	for pkg, imps := range imports {
		allowed, ok := mayImport[pkg]
		if !ok {
			t.Errorf("package %s is not in the dependency table: give it its place here and in docs/ARCHITECTURE.md", pkg)
			continue
		}
		if slices.Contains(allowed, "*") {
			continue
		}
		for imp, files := range imps {
			if imp != pkg && !slices.Contains(allowed, imp) {
				t.Errorf("%s imports %s (in %s): it may import only %v of this module", pkg, imp, strings.Join(files, ", "), allowed)
			}
		}
	}
	for pkg := range mayImport {
		if _, err := os.Stat(pkg); err != nil {
			t.Errorf("the table lists %s, which is not here: remove it", pkg)
		}
	}
}
