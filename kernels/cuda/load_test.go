package cuda

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// tempSearch returns a search of three fresh directories (override,
// LD_LIBRARY_PATH, standard) and a stubs directory, without the dynamic
// loader's own search, so the result does not depend on the machine.
func tempSearch(t *testing.T) (s search, override, ld, stubs, standard string) {
	root := t.TempDir()
	override, ld, standard = filepath.Join(root, "override"), filepath.Join(root, "ld"), filepath.Join(root, "std")
	stubs = filepath.Join(root, "cuda", "lib64", "stubs")
	for _, d := range []string{override, ld, standard, stubs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return search{override: []string{override}, ldPath: []string{ld, stubs}, standard: []string{standard}}, override, ld, stubs, standard
}

// TestMissingDriverIsReported checks that a machine without libcuda gets a
// LoadError naming every path tried and why each failed, that a toolkit
// stubs directory is skipped (even holding a libcuda.so.1), and that
// IsUnavailable recognises it.
func TestMissingDriverIsReported(t *testing.T) {
	s, override, ld, stubs, standard := tempSearch(t)
	if err := os.WriteFile(filepath.Join(stubs, "libcuda.so.1"), []byte("stub"), 0o644); err != nil {
		t.Fatal(err)
	}
	api, err := openDriver(s)
	if err == nil {
		t.Fatalf("openDriver found %s in empty directories", api.lib.Path)
	}
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatalf("got %T %v, want a *LoadError", err, err)
	}
	if !IsUnavailable(err) {
		t.Errorf("IsUnavailable(%v) = false", err)
	}
	msg := err.Error()
	t.Logf("the report:\n%s", msg)
	for _, want := range []string{
		"CUDA driver library not found (looked for libcuda.so.1 in 4 places):",
		filepath.Join(override, "libcuda.so.1") + ": not present",
		filepath.Join(ld, "libcuda.so.1") + ": not present",
		stubs + ": skipped: a toolkit stubs directory",
		filepath.Join(standard, "libcuda.so.1") + ": not present",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	// The order of the attempts is the search order.
	var paths []string
	for _, a := range le.Tried {
		paths = append(paths, a.Path)
	}
	want := []string{filepath.Join(override, "libcuda.so.1"), filepath.Join(ld, "libcuda.so.1"), stubs, filepath.Join(standard, "libcuda.so.1")}
	if !slices.Equal(paths, want) {
		t.Errorf("tried %q, want %q", paths, want)
	}
}

// TestBrokenDriverFileIsReported checks that a file that is not a shared
// library is reported with the loader's message, and the search goes on.
func TestBrokenDriverFileIsReported(t *testing.T) {
	s, override, _, _, _ := tempSearch(t)
	bad := filepath.Join(override, "libcuda.so.1")
	if err := os.WriteFile(bad, []byte("not an ELF file, but long enough to have a header of one......................"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := openDriver(s)
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatalf("got %T %v, want a *LoadError", err, err)
	}
	if len(le.Tried) < 2 || le.Tried[0].Path != bad || le.Tried[0].Result == "not present" || le.Tried[0].Result == "" {
		t.Fatalf("first attempt %+v: want %s with the loader's error, then more attempts", le.Tried, bad)
	}
	t.Logf("loader said: %s", le.Tried[0].Result)
}

// TestDriverWithoutSymbolsIsReported loads a real shared library that is
// not libcuda under libcuda's name: binding must fail with one error
// listing the missing symbols, not panic.
func TestDriverWithoutSymbolsIsReported(t *testing.T) {
	var src string
	for _, p := range []string{"/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib64/libz.so.1"} {
		if _, err := os.Stat(p); err == nil {
			src = p
			break
		}
	}
	if src == "" {
		t.Skip("no libz.so.1 to stand in for a wrong library")
	}
	s, override, _, _, _ := tempSearch(t)
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(override, "libcuda.so.1"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = openDriver(s)
	if err == nil {
		t.Fatal("libz bound as the CUDA driver")
	}
	msg := err.Error()
	for _, want := range []string{"missing symbols", "cuInit", "cuMemAlloc_v2", "cuLaunchKernel", filepath.Join(override, "libcuda.so.1")} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
}

// TestNewReportsMissingDevice opens the real backend the way a worker
// does: on a machine without a GPU it must fail with an error IsUnavailable
// recognises and that names what was looked for; on a GPU host it opens.
func TestNewReportsMissingDevice(t *testing.T) {
	b, err := New(Options{CacheDir: t.TempDir()})
	if err == nil {
		t.Logf("a CUDA device is present: %+v", b.Info())
		if err := b.Close(); err != nil {
			t.Error(err)
		}
		return
	}
	t.Logf("New: %v", err)
	if !IsUnavailable(err) {
		if os.Getenv(RequireCUDAEnv) == "1" {
			t.Fatalf("%s=1 and the CUDA backend failed: %v", RequireCUDAEnv, err)
		}
		// A driver is installed, yet opening failed: that is a broken
		// setup, and it must say so (not claim there is no device).
		t.Logf("not an 'unavailable' error: a broken CUDA setup")
		return
	}
	if os.Getenv(RequireCUDAEnv) == "1" {
		t.Fatalf("%s=1 but no usable CUDA device: %v", RequireCUDAEnv, err)
	}
	var le *LoadError
	if errors.As(err, &le) && !strings.Contains(err.Error(), "libcuda.so.1") {
		t.Errorf("load error does not name libcuda.so.1: %v", err)
	}
}

// TestVersionedNames checks which library majors are looked for under a
// driver: none newer than the driver's CUDA major.
func TestVersionedNames(t *testing.T) {
	for _, c := range []struct {
		max  int
		want []string
	}{
		{0, []string{"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"}},
		{13, []string{"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"}},
		{12, []string{"libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"}},
		{11, []string{"libnvrtc.so.11.2", "libnvrtc.so"}},
	} {
		if got := versionedNames("libnvrtc", nvrtcMajors, c.max); !slices.Equal(got, c.want) {
			t.Errorf("versionedNames(libnvrtc, %d) = %q, want %q", c.max, got, c.want)
		}
	}
}

// TestChooseArch checks the architecture the kernels are compiled for.
func TestChooseArch(t *testing.T) {
	nvrtc118 := []int{35, 37, 50, 52, 53, 60, 61, 62, 70, 72, 75, 80, 86, 87, 89, 90}
	for _, c := range []struct {
		cc    int
		archs []int
		arch  string
		cubin bool
	}{
		{90, nvrtc118, "sm_90", true},
		{80, nvrtc118, "sm_80", true},
		{100, nvrtc118, "compute_90", false}, // a device newer than NVRTC: PTX the driver JITs
		{120, nil, "sm_120", true},           // NVRTC cannot list: try the device's own
	} {
		arch, cubin, err := chooseArch(c.cc, c.archs)
		if err != nil || arch != c.arch || cubin != c.cubin {
			t.Errorf("chooseArch(%d) = %s, %v, %v; want %s, %v", c.cc, arch, cubin, err, c.arch, c.cubin)
		}
	}
	if _, _, err := chooseArch(30, nvrtc118); err == nil {
		t.Error("chooseArch(30) found an architecture NVRTC 11.8 lacks")
	}
}

// TestKernelCache checks the on-disk module cache: keys change with every
// input, entries round-trip, and "-" turns the cache off.
func TestKernelCache(t *testing.T) {
	base := cacheKey("src", []string{"--gpu-architecture=sm_90"}, 12, 8, 12080, "H100")
	for _, other := range []string{
		cacheKey("src2", []string{"--gpu-architecture=sm_90"}, 12, 8, 12080, "H100"),
		cacheKey("src", []string{"--gpu-architecture=sm_80"}, 12, 8, 12080, "H100"),
		cacheKey("src", []string{"--gpu-architecture=sm_90"}, 13, 0, 12080, "H100"),
		cacheKey("src", []string{"--gpu-architecture=sm_90"}, 12, 8, 13000, "H100"),
		cacheKey("src", []string{"--gpu-architecture=sm_90"}, 12, 8, 12080, "H200"),
	} {
		if other == base {
			t.Error("two different inputs share a cache key")
		}
	}
	dir := filepath.Join(t.TempDir(), "cache")
	if got := readCache(dir, base, ".cubin"); got != nil {
		t.Fatal("empty cache returned data")
	}
	if err := writeCache(dir, base, ".cubin", []byte("module")); err != nil {
		t.Fatal(err)
	}
	if got := readCache(dir, base, ".cubin"); string(got) != "module" {
		t.Errorf("cache returned %q", got)
	}
	if err := writeCache("-", base, ".cubin", []byte("x")); err != nil || readCache("-", base, ".cubin") != nil {
		t.Error(`cache dir "-" is not off`)
	}
}

// TestErrorNames checks how failed calls read.
func TestErrorNames(t *testing.T) {
	d := &driverAPI{}
	err := d.check("cuMemAlloc_v2", 2)
	if got, want := err.Error(), "cuda: cuMemAlloc_v2: CUDA_ERROR_OUT_OF_MEMORY (2)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if !(&Error{Lib: libDriver, Code: 700}).Sticky() || (&Error{Lib: libDriver, Code: 2}).Sticky() {
		t.Error("Sticky wrong for 700 or 2")
	}
	c := &cublasAPI{}
	if got, want := c.check("cublasSgemm_v2", 7).Error(), "cuda: cublasSgemm_v2: CUBLAS_STATUS_INVALID_VALUE (7)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if IsUnavailable(&SetupError{Device: "H100", Err: &LoadError{Kind: "NVRTC"}}) {
		t.Error("IsUnavailable true for a device without NVRTC")
	}
	if !IsUnavailable(d.check("cuInit", errNoDevice)) || !IsUnavailable(d.check("cuInit", errStubLibrary)) || IsUnavailable(d.check("cuMemAlloc_v2", 2)) {
		t.Error("IsUnavailable wrong for CUresult codes")
	}
}
