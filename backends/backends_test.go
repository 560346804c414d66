package backends

import (
	"bytes"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/dpcnn/dpcnn/kernels"
)

func TestOpenByName(t *testing.T) {
	for _, c := range []struct{ name, want string }{{"cpu", "cpu"}, {"reference", "reference"}} {
		b, err := Open(c.name, 1)
		if err != nil {
			t.Fatalf("Open(%q): %v", c.name, err)
		}
		if b.Name() != c.want || Kind(b) != "cpu" {
			t.Errorf("Open(%q) gave %s (kind %s)", c.name, b.Name(), Kind(b))
		}
		t.Logf("%s: %s", c.name, Detail(b))
		if err := Close(b); err != nil {
			t.Error(err)
		}
	}
	_, err := Open("tpu", 1)
	if err == nil || !strings.Contains(err.Error(), `unknown backend "tpu" (known: auto, cpu, cuda, reference)`) {
		t.Errorf("Open(tpu) = %v", err)
	}
}

// TestAutoFallsBackToCPU checks "auto": on a machine without a GPU it gives
// the CPU backend and logs why; on a GPU host, the CUDA backend.
func TestAutoFallsBackToCPU(t *testing.T) {
	var logs bytes.Buffer
	b, err := OpenWithLogger("auto", 1, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer Close(b)
	t.Logf("auto chose %s; log: %s", Detail(b), logs.String())
	if b.Name() == "cuda" {
		return
	}
	if os.Getenv("DPCNN_REQUIRE_CUDA") == "1" {
		t.Fatalf("DPCNN_REQUIRE_CUDA=1 but auto chose %s: %s", b.Name(), logs.String())
	}
	if b.Name() != "cpu" || !strings.Contains(logs.String(), "using the CPU backend") {
		t.Errorf("auto gave %s and logged %q", b.Name(), logs.String())
	}
}

// TestOpenCUDAWithoutDevice checks that "cuda" on a machine without one is
// an error IsUnavailable recognises, with the search report.
func TestOpenCUDAWithoutDevice(t *testing.T) {
	b, err := Open("cuda", 0)
	if err == nil {
		t.Logf("CUDA present: %s", Detail(b))
		Close(b)
		return
	}
	if !strings.HasPrefix(err.Error(), "backend cuda: ") {
		t.Errorf("error %q does not say which backend failed", err)
	}
	if !cudaUnavailable(err) && os.Getenv("DPCNN_REQUIRE_CUDA") != "1" {
		t.Logf("CUDA driver present but broken: %v", err)
	}
}

// The CPU and reference backends compute in host memory: their Device is
// kernels.OnHost, whose tensors are the slices the backend works on, so a
// network on them copies nothing.
func TestHostBackendsKeepTensorsInHostMemory(t *testing.T) {
	for _, name := range []string{"cpu", "reference"} {
		b, err := Open(name, 1)
		if err != nil {
			t.Fatal(err)
		}
		if d := kernels.DeviceOf(b); d.Memory() != nil || d.Name() != name {
			t.Errorf("%s: device %q with memory %v, want host memory", name, d.Name(), d.Memory())
		}
		Close(b)
	}
}
