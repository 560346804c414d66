package kernels_test

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestKernelsImportNoModel holds the layering: the kernels and their
// backends know tensors and primitives, not networks, so their non-test
// files import no package of this module but kernels itself and philox
// (model builds on kernels, never the other way round).
func TestKernelsImportNoModel(t *testing.T) {
	const module = "github.com/dpcnn/dpcnn/"
	allowed := map[string]bool{"kernels": true, "philox": true}
	for _, dir := range []string{".", "cuda", "kernelstest"} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		files := 0
		for _, e := range entries {
			name := e.Name()
			if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(dir, name), nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			files++
			for _, imp := range f.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				if own, ok := strings.CutPrefix(path, module); ok && !allowed[own] {
					t.Errorf("%s imports %s", filepath.Join("kernels", dir, name), path)
				}
			}
		}
		if files == 0 {
			t.Errorf("kernels/%s: no Go files read", dir)
		}
	}
}
