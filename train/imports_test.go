package train

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/dpcnn/dpcnn"

// The packages of this module the training core may import directly.
var allowedOwn = []string{"dataset", "job", "kernels", "model", "tree"}

// reachesOutside says why a package the core reaches, directly or through
// the packages of this module it imports, is out of bounds ("" when it is
// not): the transports, etcd, the wire's generated code and the adapters.
func reachesOutside(path string) string {
	switch {
	case path == "net" || strings.HasPrefix(path, "net/"):
		return "the network"
	case path == "google.golang.org/grpc" || strings.HasPrefix(path, "google.golang.org/grpc/"):
		return "gRPC"
	case path == "google.golang.org/protobuf/encoding/protowire":
		// The bare encoding of protobuf's wire format, which model's
		// ONNX export writes its files with: no messages, no runtime.
		return ""
	case strings.HasPrefix(path, "google.golang.org/protobuf"):
		return "protobuf"
	case strings.HasPrefix(path, "go.etcd.io/"):
		return "etcd"
	}
	own, ok := strings.CutPrefix(path, module+"/")
	if !ok {
		return ""
	}
	for _, p := range []string{"proto", "secure", "cluster", "coordinator", "worker", "backends", "localcluster", "cmd", "e2e", "kernels/cuda"} {
		if own == p || strings.HasPrefix(own, p+"/") {
			return "an adapter of this module"
		}
	}
	return ""
}

// The training core's own files do no I/O and keep no clock: these
// imports and calls are theirs to avoid (time itself is fine: the engine
// reckons in time.Duration and the Ticks' time.Time).
var (
	deniedStd = []string{"os", "os/exec", "os/signal", "syscall", "log", "log/slog", "io/fs", "unsafe"}
	deniedUse = map[string][]string{
		"time": {"Now", "Since", "Until", "Sleep", "After", "AfterFunc", "NewTimer", "NewTicker", "Tick"},
	}
)

// parseDir parses the non-test Go files of dir, whatever their build
// constraints, so that every build of the package is checked; it returns
// them by name.
func parseDir(t *testing.T, dir string) map[string]*ast.File {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]*ast.File{}
	fset := token.NewFileSet()
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = f
	}
	if len(files) == 0 {
		t.Fatalf("no Go files in %s", dir)
	}
	return files
}

func importPath(t *testing.T, s *ast.ImportSpec) string {
	t.Helper()
	p, err := strconv.Unquote(s.Path.Value)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestImports holds the training core to its rules: it imports no package
// of this module but model, dataset, job, kernels and tree; neither it nor
// any package of this module it reaches imports gRPC, protobuf, etcd, net,
// the wire's generated code, secure, cluster or the adapters; and its own
// files read no clock, start no goroutines and touch no files.
func TestImports(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	// The core's own files.
	for name, f := range parseDir(t, ".") {
		names := map[string]string{} // local name → import path
		for _, s := range f.Imports {
			p := importPath(t, s)
			if own, ok := strings.CutPrefix(p, module+"/"); ok && !slices.Contains(allowedOwn, own) {
				t.Errorf("%s imports %s: the training core may import only %v of this module", name, p, allowedOwn)
			}
			if slices.Contains(deniedStd, p) {
				t.Errorf("%s imports %s: the training core does no I/O", name, p)
			}
			local := filepath.Base(p)
			if s.Name != nil {
				local = s.Name.Name
			}
			names[local] = p
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.GoStmt:
				t.Errorf("%s has a go statement: the training core starts no goroutines", name)
			case *ast.SelectorExpr:
				if x, ok := n.X.(*ast.Ident); ok {
					if fns, ok := deniedUse[names[x.Name]]; ok && slices.Contains(fns, n.Sel.Name) {
						t.Errorf("%s uses %s.%s: the training core keeps no clock (a Clock is passed in)", name, names[x.Name], n.Sel.Name)
					}
				}
			}
			return true
		})
	}

	// Everything it reaches through this module's packages.
	seen := map[string]string{module + "/train": ""} // package → who imports it
	queue := []string{module + "/train"}
	for len(queue) > 0 {
		pkg := queue[0]
		queue = queue[1:]
		rel := strings.TrimPrefix(strings.TrimPrefix(pkg, module), "/")
		for _, f := range parseDir(t, filepath.Join(root, filepath.FromSlash(rel))) {
			for _, s := range f.Imports {
				p := importPath(t, s)
				if _, ok := seen[p]; ok {
					continue
				}
				seen[p] = pkg
				if why := reachesOutside(p); why != "" {
					chain := []string{p}
					for q := pkg; q != ""; q = seen[q] {
						chain = append(chain, q)
					}
					slices.Reverse(chain)
					t.Errorf("the training core reaches %s (%s): %s", p, why, strings.Join(chain, " → "))
					continue
				}
				if strings.HasPrefix(p, module+"/") {
					queue = append(queue, p)
				}
			}
		}
	}
	if _, ok := seen[module+"/tree"]; !ok {
		t.Error("the walk never reached tree: the test no longer sees the core's imports")
	}
}
