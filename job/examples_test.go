package job

import (
	"os"
	"path/filepath"
	"testing"
)

// TestExamplesParse holds every committed recipe (examples/*.yaml) to the
// rules a submitted job meets: each parses, fills its defaults and
// validates, and names a network whose parameters fit one message. What
// each recipe reaches is measured by running it (README, Results), not
// here.
func TestExamplesParse(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "examples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 2 {
		t.Fatalf("found %d recipes in examples/, want the cosine and the fast one at least", len(files))
	}
	fast := false
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s, err := Parse(data)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		net, err := s.Model()
		if err != nil {
			t.Errorf("%s: network: %v", f, err)
			continue
		}
		n, err := net.ParamCount()
		if err != nil || n > MaxParams(s.Batch) {
			t.Errorf("%s: %d parameters (%v), at most %d fit a message", f, n, err, MaxParams(s.Batch))
		}
		fast = fast || filepath.Base(f) == "fast-lenet5.yaml"
	}
	if !fast {
		t.Error("examples/fast-lenet5.yaml, the recipe the README times, is missing")
	}
}
