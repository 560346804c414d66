package cuda

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// RequireNVRTCEnv turns the skip of the NVRTC compile check, on a machine
// without libnvrtc, into a failure (CI sets it after installing libnvrtc).
const RequireNVRTCEnv = "DPCNN_REQUIRE_NVRTC"

// TestKernelsCompileWithNVRTC compiles every embedded CUDA source with the
// real NVRTC, which needs no GPU, for Ampere (sm_80) and, when this NVRTC
// knows it, Hopper (sm_90) as CUBINs and for compute_80 as PTX: the log must
// be empty (no warnings), and the PTX must define every kernel under its
// unmangled name.
func TestKernelsCompileWithNVRTC(t *testing.T) {
	n, err := LoadNVRTC(0)
	if err != nil {
		if os.Getenv(RequireNVRTCEnv) == "1" {
			t.Fatalf("%s=1 but NVRTC cannot be loaded: %v", RequireNVRTCEnv, err)
		}
		t.Skipf("no NVRTC on this machine (set %s=1 to fail instead): %v", RequireNVRTCEnv, err)
	}
	major, minor := n.Version()
	archs := n.SupportedArchs()
	t.Logf("NVRTC %d.%d from %s (builtins %s); architectures %v", major, minor, n.Path(), n.Builtins, archs)

	targets := []string{"sm_80", "compute_80"}
	if archs == nil || slices.Contains(archs, 90) {
		targets = append(targets, "sm_90")
	}
	kernelNames := KernelNames()
	if len(kernelNames) < 20 {
		t.Fatalf("found %d kernels in %s, expected every Backend primitive: %v", len(kernelNames), KernelSourceName, kernelNames)
	}
	for name, src := range Sources() {
		for _, arch := range targets {
			t.Run(fmt.Sprintf("%s/%s", name, arch), func(t *testing.T) {
				prog, err := n.Compile(src, name, CompileOptions(arch))
				if err != nil {
					t.Fatal(err)
				}
				if log := strings.TrimSpace(prog.Log); log != "" {
					t.Errorf("compiler log is not empty:\n%s", log)
				}
				wantCubin := strings.HasPrefix(arch, "sm_")
				if wantCubin && n.nvrtcGetCUBIN != nil && len(prog.CUBIN) == 0 {
					t.Errorf("no CUBIN for %s", arch)
				}
				if wantCubin && len(prog.CUBIN) >= 4 && string(prog.CUBIN[1:4]) != "ELF" {
					t.Errorf("CUBIN for %s does not start with an ELF header: % x", arch, prog.CUBIN[:4])
				}
				ptx := string(prog.PTX)
				for _, k := range kernelNames {
					if !strings.Contains(ptx, ".entry "+k+"(") {
						t.Errorf("PTX has no entry %s", k)
					}
				}
				t.Logf("%s: PTX %d bytes, CUBIN %d bytes", arch, len(prog.PTX), len(prog.CUBIN))
			})
		}
	}
}

// TestNVRTCReportsCompileErrors checks that a source that does not compile
// gives a *CompileError carrying NVRTC's log and the result's name.
func TestNVRTCReportsCompileErrors(t *testing.T) {
	n, err := LoadNVRTC(0)
	if err != nil {
		if os.Getenv(RequireNVRTCEnv) == "1" {
			t.Fatalf("%s=1 but NVRTC cannot be loaded: %v", RequireNVRTCEnv, err)
		}
		t.Skipf("no NVRTC on this machine (set %s=1 to fail instead): %v", RequireNVRTCEnv, err)
	}
	_, err = n.Compile(`extern "C" __global__ void broken(float *x) { x[0] = undeclared; }`, "broken.cu", CompileOptions("compute_80"))
	ce, ok := err.(*CompileError)
	if !ok {
		t.Fatalf("got %T %v, want a *CompileError", err, err)
	}
	if !strings.Contains(ce.Log, "undeclared") || !strings.Contains(err.Error(), "NVRTC_ERROR_COMPILATION") || !strings.Contains(err.Error(), "broken.cu") {
		t.Errorf("error does not name the result, the source and the problem:\n%v", err)
	}
	_, err = n.Compile(`extern "C" __global__ void k() {}`, "k.cu", []string{"--no-such-option"})
	if err == nil || !strings.Contains(err.Error(), "NVRTC_ERROR_INVALID_OPTION") {
		t.Errorf("an unknown option gave %v, want NVRTC_ERROR_INVALID_OPTION", err)
	}
}
