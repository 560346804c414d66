package kernels

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// TestSgemmAsmIsGenerated checks that the committed assembly is what its
// generator writes (`go run sgemm_asm_gen.go > sgemm_amd64.s`), so a change
// to the generator cannot land without the kernels it describes, or the
// other way round.
func TestSgemmAsmIsGenerated(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the generator with the go tool")
	}
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(goTool, "run", "sgemm_asm_gen.go")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	generated, err := cmd.Output()
	if err != nil {
		t.Fatalf("go run sgemm_asm_gen.go: %v\n%s", err, stderr.Bytes())
	}
	committed, err := os.ReadFile("sgemm_amd64.s")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(generated, committed) {
		t.Errorf("sgemm_amd64.s is not what sgemm_asm_gen.go writes: run `go run sgemm_asm_gen.go > sgemm_amd64.s` in kernels/")
	}
}
