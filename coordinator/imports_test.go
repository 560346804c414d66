package coordinator

import (
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestImports holds the adapters to their side of the line: the
// coordinator reaches workers over gRPC only, so none of its files (of any
// build) imports the worker, nor anything that wires adapters together.
func TestImports(t *testing.T) {
	const module = "github.com/dpcnn/dpcnn/"
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			own, ok := strings.CutPrefix(path, module)
			if !ok {
				continue
			}
			for _, denied := range []string{"worker", "localcluster", "cmd", "e2e", "backends"} {
				if own == denied || strings.HasPrefix(own, denied+"/") {
					t.Errorf("%s imports %s: the coordinator may not import %s", name, path, denied)
				}
			}
		}
	}
}
