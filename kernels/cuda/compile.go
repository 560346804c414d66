package cuda

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
)

// KernelSource is the CUDA C++ of every kernel, embedded in the binary and
// compiled by NVRTC on first use.
//
//go:embed kernels.cu
var KernelSource string

// KernelSourceName is the name the compiler's messages give the source.
const KernelSourceName = "kernels.cu"

// Sources lists every embedded CUDA source by name, for the compile check.
func Sources() map[string]string { return map[string]string{KernelSourceName: KernelSource} }

// KernelNames lists the kernels KernelSource defines (its extern "C"
// __global__ functions), in source order.
func KernelNames() []string {
	var names []string
	for _, m := range kernelDecl.FindAllStringSubmatch(KernelSource, -1) {
		names = append(names, m[1])
	}
	return names
}

var kernelDecl = regexp.MustCompile(`extern "C" __global__ void (\w+)\(`)

// CompileOptions are the NVRTC options for an architecture: arch is
// "sm_90" (a real architecture: NVRTC gives a CUBIN) or "compute_90" (a
// virtual one: PTX only). Multiply-adds are not fused, so that arithmetic
// rounds where the CPU backend's does.
func CompileOptions(arch string) []string {
	return []string{"--gpu-architecture=" + arch, "--fmad=false"}
}

// chooseArch picks what to compile for a device of compute capability cc
// (e.g. 90) with an NVRTC supporting archs: the device's own real
// architecture when NVRTC knows it (a CUBIN), else PTX for the newest
// virtual architecture NVRTC knows that is not newer than the device's,
// which the driver compiles for the device when loading it.
func chooseArch(cc int, archs []int) (arch string, cubin bool, err error) {
	if len(archs) == 0 || slices.Contains(archs, cc) {
		return fmt.Sprintf("sm_%d", cc), true, nil
	}
	best := 0
	for _, a := range archs {
		if a <= cc && a > best {
			best = a
		}
	}
	if best == 0 {
		return "", false, fmt.Errorf("cuda: NVRTC supports architectures %v, none at or below the device's sm_%d", archs, cc)
	}
	return fmt.Sprintf("compute_%d", best), false, nil
}

// cacheKey identifies a compiled module: everything that changes the
// binary, or whether the driver accepts it.
func cacheKey(src string, options []string, nvrtcMajor, nvrtcMinor, driverVersion int, deviceName string) string {
	h := sha256.New()
	fmt.Fprintf(h, "dpcnn-cuda-module-v1\x00%s\x00%q\x00nvrtc %d.%d\x00driver %d\x00%s", src, options, nvrtcMajor, nvrtcMinor, driverVersion, deviceName)
	return hex.EncodeToString(h.Sum(nil))
}

// defaultCacheDir is where compiled modules are kept unless
// Options.CacheDir says otherwise.
func defaultCacheDir() string {
	if dir := os.Getenv("DPCNN_CUDA_CACHE_DIR"); dir != "" {
		return dir
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "dpcnn-cuda")
	}
	return filepath.Join(base, "dpcnn", "cuda")
}

// readCache returns a cached module, or nil.
func readCache(dir, key, ext string) []byte {
	if dir == "" || dir == "-" {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(dir, key+ext))
	if err != nil || len(b) == 0 {
		return nil
	}
	return b
}

// writeCache stores a module atomically (temporary file, then rename), so
// a concurrent reader never sees half of one.
func writeCache(dir, key, ext string, data []byte) error {
	if dir == "" || dir == "-" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, key+".tmp*")
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), filepath.Join(dir, key+ext))
}
