package cuda

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/kernels/kernelstest"
	"github.com/dpcnn/dpcnn/model"
	"github.com/ebitengine/purego"
)

// The CUDA backend on a host emulation of the GPU: kernels.cu compiled for
// the CPU by the host's C++ compiler (one "thread" runs each grid-stride
// loop over every item), device memory as Go memory with guard bytes after
// every allocation, and a column-major SGEMM with cuBLAS's argument rules.
// The Backend code above the device (argument order and types of every
// launch, pointer offsets, conv chunking, the row-major-to-cuBLAS mapping,
// buffer reuse) and the kernels' indexing then run the full conformance
// suite and the network gradient checks on machines without a GPU. What
// this cannot check is the CUDA libraries themselves: the device tests do.

// RequireCompilerEnv turns the skips of the tests that need the host's C
// and C++ compilers (the emulation, the Philox check) into failures.
const RequireCompilerEnv = "DPCNN_REQUIRE_CXX"

// emuGuard is the number of guard bytes after every emulated allocation;
// a kernel that writes into them is reported after its launch.
const emuGuard = 64

const emuGuardByte = 0xA5

type emuAlloc struct {
	mem   []uint64 // 8-byte aligned, for the double per-row losses
	bytes uintptr  // requested size; the guard follows
}

func (a *emuAlloc) base() devPtr { return devPtr(uintptr(unsafe.Pointer(&a.mem[0]))) }

func (a *emuAlloc) raw() []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(&a.mem[0])), len(a.mem)*8)
}

// emuKernel is one compiled kernel: a Go function bound to it by purego and
// the Go types of its parameters, read from its CUDA C signature.
type emuKernel struct {
	fn     reflect.Value
	params []reflect.Type
}

// hostGPU implements gpu on the CPU.
type hostGPU struct {
	// bytesIn and bytesOut count the host-device traffic.
	bytesIn, bytesOut uintptr
	allocs            map[devPtr]*emuAlloc
	kernels           map[string]*emuKernel
	launched          map[string]int
	// failAlloc, when set, fails every allocation as a full device does.
	failAlloc bool
	// failAllocAfter, when positive, sets failAlloc after that many more
	// allocations: a device that fills up.
	failAllocAfter int
}

var emu struct {
	once    sync.Once
	kernels map[string]*emuKernel
	err     error
}

// emuKernels compiles kernels.cu for the host once per test binary.
func emuKernels(t testing.TB) map[string]*emuKernel {
	t.Helper()
	emu.once.Do(func() { emu.kernels, emu.err = buildEmuKernels() })
	if emu.err != nil {
		if strings.HasPrefix(emu.err.Error(), "skip: ") {
			if os.Getenv(RequireCompilerEnv) == "1" {
				t.Fatalf("%s=1: %s", RequireCompilerEnv, emu.err.Error()[len("skip: "):])
			}
			t.Skipf("%s (set %s=1 to fail instead)", emu.err.Error()[len("skip: "):], RequireCompilerEnv)
		}
		t.Fatal(emu.err)
	}
	return emu.kernels
}

// emuPrelude makes kernels.cu plain C++: the CUDA keywords vanish, and a
// single thread of a single block runs each grid-stride loop.
const emuPrelude = `#include <math.h>
struct dp_dim3 { unsigned x, y, z; };
static const dp_dim3 blockIdx = {0, 0, 0}, threadIdx = {0, 0, 0}, blockDim = {1, 1, 1}, gridDim = {1, 1, 1};
#define __global__
#define __device__ static inline
static inline unsigned int __umulhi(unsigned int a, unsigned int b) { return (unsigned int)(((unsigned long long)a * b) >> 32); }
#line 1 "kernels.cu"
`

var kernelSignature = regexp.MustCompile(`extern "C" __global__ void (\w+)\(([^)]*)\)`)

func buildEmuKernels() (map[string]*emuKernel, error) {
	cxx := ""
	for _, c := range []string{"c++", "g++", "clang++"} {
		if p, err := exec.LookPath(c); err == nil {
			cxx = p
			break
		}
	}
	if cxx == "" {
		return nil, fmt.Errorf("skip: no C++ compiler (c++, g++, clang++) to build the host emulation of the kernels")
	}
	dir, err := os.MkdirTemp("", "dpcnn-cuda-emu")
	if err != nil {
		return nil, err
	}
	src, lib := filepath.Join(dir, "kernels_host.cc"), filepath.Join(dir, "libkernels_host.so")
	if err := os.WriteFile(src, []byte(emuPrelude+KernelSource), 0o644); err != nil {
		return nil, err
	}
	// -ffp-contract=off: no fused multiply-adds, as --fmad=false on the GPU.
	out, err := exec.Command(cxx, "-std=c++14", "-O2", "-fPIC", "-shared", "-ffp-contract=off", "-Wall", "-Werror", "-o", lib, src).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("compile kernels.cu for the host: %v\n%s", err, out)
	}
	h, err := purego.Dlopen(lib, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		return nil, err
	}
	kernels := map[string]*emuKernel{}
	for _, m := range kernelSignature.FindAllStringSubmatch(KernelSource, -1) {
		name := m[1]
		k := &emuKernel{}
		for param := range strings.SplitSeq(m[2], ",") {
			param = strings.Join(strings.Fields(param), " ")
			typ := param[:strings.LastIndexAny(param, " *")+1]
			var gt reflect.Type
			switch strings.TrimSpace(strings.TrimPrefix(typ, "const ")) {
			case "float *", "int *", "i64 *", "double *":
				gt = reflect.TypeFor[uintptr]()
			case "i64":
				gt = reflect.TypeFor[int64]()
			case "u32":
				gt = reflect.TypeFor[uint32]()
			case "float":
				gt = reflect.TypeFor[float32]()
			case "double":
				gt = reflect.TypeFor[float64]()
			default:
				return nil, fmt.Errorf("kernel %s: parameter %q: type %q unknown to the emulator", name, param, typ)
			}
			k.params = append(k.params, gt)
		}
		addr, err := purego.Dlsym(h, name)
		if err != nil {
			return nil, fmt.Errorf("kernel %s: %v", name, err)
		}
		fp := reflect.New(reflect.FuncOf(k.params, nil, false))
		purego.RegisterFunc(fp.Interface(), addr)
		k.fn = fp.Elem()
		kernels[name] = k
	}
	return kernels, nil
}

func newHostGPU(t testing.TB) *hostGPU {
	return &hostGPU{allocs: map[devPtr]*emuAlloc{}, kernels: emuKernels(t), launched: map[string]int{}}
}

func (*hostGPU) do(f func() error) error { return f() }
func (*hostGPU) sync() error             { return nil }
func (*hostGPU) close() error            { return nil }
func (*hostGPU) describe() Info {
	return Info{Name: "host emulation of kernels.cu", KernelFrom: "the host C++ compiler"}
}

func (g *hostGPU) alloc(bytes uintptr) (devPtr, error) {
	if g.failAllocAfter > 0 {
		g.failAllocAfter--
		g.failAlloc = g.failAllocAfter == 0
	}
	if g.failAlloc {
		return 0, &Error{Lib: libDriver, Func: "cuMemAlloc_v2", Code: 2, Name: "CUDA_ERROR_OUT_OF_MEMORY", Desc: "out of memory", Context: "emulated"}
	}
	a := &emuAlloc{mem: make([]uint64, (bytes+emuGuard+7)/8), bytes: bytes}
	raw := a.raw()
	for i := range raw {
		raw[i] = emuGuardByte // fresh device memory is not zero either
	}
	g.allocs[a.base()] = a
	return a.base(), nil
}

func (g *hostGPU) release(p devPtr) error {
	if _, ok := g.allocs[p]; !ok {
		return fmt.Errorf("emulated cuMemFree of %#x: not an allocation", p)
	}
	delete(g.allocs, p)
	return nil
}

// span returns the n bytes at p, which must lie inside one allocation.
func (g *hostGPU) span(p devPtr, n uintptr) ([]byte, error) {
	for base, a := range g.allocs {
		if p >= base && uintptr(p-base)+n <= a.bytes {
			return a.raw()[p-base : uintptr(p-base)+n], nil
		}
	}
	return nil, fmt.Errorf("emulated device access [%#x, +%d) is outside every allocation", p, n)
}

func (g *hostGPU) copyIn(dst devPtr, src unsafe.Pointer, bytes uintptr) error {
	d, err := g.span(dst, bytes)
	if err != nil {
		return err
	}
	copy(d, unsafe.Slice((*byte)(src), bytes))
	g.bytesIn += bytes
	return nil
}

func (g *hostGPU) copyOut(dst unsafe.Pointer, src devPtr, bytes uintptr) error {
	s, err := g.span(src, bytes)
	if err != nil {
		return err
	}
	copy(unsafe.Slice((*byte)(dst), bytes), s)
	g.bytesOut += bytes
	return nil
}

// launch checks every argument against the kernel's CUDA C parameter
// (a devPtr for a pointer, which must point into an allocation or be 0,
// an optional pointer the kernel tests; int64 for
// i64; uint32 for u32; float32; float64), calls the host build of the
// kernel, then checks every allocation's guard bytes.
func (g *hostGPU) launch(name string, n int64, args ...any) error {
	if n <= 0 {
		return nil
	}
	k, ok := g.kernels[name]
	if !ok {
		return fmt.Errorf("no kernel %q in kernels.cu", name)
	}
	if len(args) != len(k.params) {
		return fmt.Errorf("kernel %s: %d arguments for %d parameters", name, len(args), len(k.params))
	}
	in := make([]reflect.Value, len(args))
	for i, a := range args {
		want := k.params[i]
		var v reflect.Value
		switch x := a.(type) {
		case devPtr:
			if want.Kind() == reflect.Uintptr {
				if x == 0 { // null: an optional pointer the kernel tests
					v = reflect.ValueOf(uintptr(0))
					break
				}
				if _, err := g.span(x, 0); err != nil {
					return fmt.Errorf("kernel %s: argument %d: %v", name, i, err)
				}
				v = reflect.ValueOf(uintptr(x))
			}
		default:
			if reflect.TypeOf(a) == want {
				v = reflect.ValueOf(a)
			}
		}
		if !v.IsValid() {
			return fmt.Errorf("kernel %s: argument %d is a %T, the parameter a %v", name, i, a, want)
		}
		in[i] = v
	}
	k.fn.Call(in)
	g.launched[name]++
	for base, a := range g.allocs {
		raw := a.raw()
		for i := a.bytes; i < uintptr(len(raw)); i++ {
			if raw[i] != emuGuardByte {
				return fmt.Errorf("kernel %s wrote %d bytes past the end of the %d-byte allocation at %#x", name, i-a.bytes+1, a.bytes, base)
			}
		}
	}
	return nil
}

// floats returns the count float32s at p (count 0: nil).
func (g *hostGPU) floats(p devPtr, count int) ([]float32, error) {
	if count <= 0 {
		return nil, nil
	}
	b, err := g.span(p, uintptr(4*count))
	if err != nil {
		return nil, err
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), count), nil
}

// gemm is cublasSgemm_v2 by its specification: column-major, the leading
// dimensions checked as cuBLAS checks them (CUBLAS_STATUS_INVALID_VALUE),
// C not read when beta is 0, a quick return when nothing changes.
func (g *hostGPU) gemm(opA, opB int32, m, n, k int, alpha float32, a devPtr, lda int, b devPtr, ldb int, beta float32, c devPtr, ldc int) error {
	rowsA, rowsB := m, k
	if opA == cublasOpT {
		rowsA = k
	}
	if opB == cublasOpT {
		rowsB = n
	}
	if m < 0 || n < 0 || k < 0 || lda < max(1, rowsA) || ldb < max(1, rowsB) || ldc < max(1, m) {
		return &Error{Lib: libCUBLAS, Func: "cublasSgemm_v2", Code: 7, Name: cublasStatusNames[7],
			Desc: fmt.Sprintf("emulated: m=%d n=%d k=%d lda=%d ldb=%d ldc=%d", m, n, k, lda, ldb, ldc)}
	}
	if m == 0 || n == 0 || ((alpha == 0 || k == 0) && beta == 1) {
		return nil
	}
	cm, err := g.floats(c, (n-1)*ldc+m)
	if err != nil {
		return err
	}
	var am, bm []float32
	if alpha != 0 && k > 0 {
		colsA, colsB := k, n
		if opA == cublasOpT {
			colsA = m
		}
		if opB == cublasOpT {
			colsB = k
		}
		if am, err = g.floats(a, (colsA-1)*lda+rowsA); err != nil {
			return err
		}
		if bm, err = g.floats(b, (colsB-1)*ldb+rowsB); err != nil {
			return err
		}
	}
	for j := range n {
		for i := range m {
			var sum float64
			if am != nil {
				for l := range k {
					var av, bv float32
					if opA == cublasOpT {
						av = am[l+i*lda]
					} else {
						av = am[i+l*lda]
					}
					if opB == cublasOpT {
						bv = bm[j+l*ldb]
					} else {
						bv = bm[l+j*ldb]
					}
					sum += float64(av) * float64(bv)
				}
			}
			v := float64(alpha) * sum
			if beta != 0 {
				v += float64(beta) * float64(cm[i+j*ldc])
			}
			cm[i+j*ldc] = float32(v)
		}
	}
	return nil
}

// emulatedBackend is the CUDA Backend on a fresh host emulation.
func emulatedBackend(t testing.TB) (*Backend, *hostGPU) {
	g := newHostGPU(t)
	return newBackend(g), g
}

// TestEmulatedKernelsCompileOnHost checks that the host build binds every
// kernel, with parameters of known types.
func TestEmulatedKernelsCompileOnHost(t *testing.T) {
	ks := emuKernels(t)
	for _, name := range KernelNames() {
		if ks[name] == nil {
			t.Errorf("kernel %s missing from the host build", name)
		}
	}
}

// TestEmulatedConformance runs the kernels conformance suite on the
// emulation, then requires that every kernel of kernels.cu ran.
func TestEmulatedConformance(t *testing.T) {
	b, g := emulatedBackend(t)
	kernelstest.TestBackend(t, b)
	checkBitwiseAgreementWithCPU(t, b)
	for _, name := range KernelNames() {
		if g.launched[name] == 0 {
			t.Errorf("kernel %s never ran in the conformance suite", name)
		}
	}
	if err := b.Close(); err != nil {
		t.Error(err)
	}
	if len(g.allocs) != 0 {
		t.Errorf("Close left %d allocations", len(g.allocs))
	}
}

// TestEmulatedConvChunks runs the convolution tests with patch matrices
// limited to a few samples, so that every convolution runs in chunks and
// the filter gradient sums them (beta = 1).
func TestEmulatedConvChunks(t *testing.T) {
	b, _ := emulatedBackend(t)
	b.maxColFloats = 3000
	kernelstest.TestConv(t, b)
}

// TestEmulatedDeviceConformance runs the conformance suite on the
// backend's Device (tensors in emulated device memory, every operation on
// them), then requires that Close frees every tensor.
func TestEmulatedDeviceConformance(t *testing.T) {
	b, g := emulatedBackend(t)
	kernelstest.TestDevice(t, b, b.Device())
	t.Run("ConvChunks", func(t *testing.T) {
		b.maxColFloats = 3000
		defer func() { b.maxColFloats = defaultMaxColFloats }()
		kernelstest.TestConv(t, kernelstest.ViaDevice(t, b, b.Device()))
	})
	m := b.Device().Memory()
	if _, err := kernels.Alloc[float32](m, 10); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Error(err)
	}
	if len(g.allocs) != 0 {
		t.Errorf("Close left %d allocations", len(g.allocs))
	}
}

// TestEmulatedNetworks checks every network's gradients against the
// reference, the determinism of a step, and the network on the device
// against the same network through host slices, bit for bit, on the
// emulation.
func TestEmulatedNetworks(t *testing.T) {
	b, _ := emulatedBackend(t)
	t.Run("reference", func(t *testing.T) { checkNetworksMatchReference(t, b) })
	t.Run("deterministic", func(t *testing.T) { checkDeterministic(t, b, 8) })
	t.Run("host slices", func(t *testing.T) { checkDeviceMatchesHostSlices(t, b) })
}

// TestEmulatedTransferVolume measures the host-device traffic of one
// deep-net training step (Loss, Backward, and Adam through the host-slice
// Backend, as the coordinator runs it) at two batch sizes, per image and
// per step: for model.Network with its tensors on the device, which must
// move only each image, its label and sample index in and its loss and
// correct flag out (4·784 + 4 + 8 + 8 + 4 bytes), and, for comparison, for
// the same network through the host-slice methods, which copy every
// layer's tensors. The copies are the ones a real device makes.
func TestEmulatedTransferVolume(t *testing.T) {
	b, g := emulatedBackend(t)
	s, err := model.Builtin("deep")
	if err != nil {
		t.Fatal(err)
	}
	measure := func(path string, backend kernels.Backend[float32]) (perImage, perStep int64) {
		var total [2]int64
		for i, batch := range []int{4, 8} {
			net, err := model.New[float32](s, backend, batch)
			if err != nil {
				t.Fatal(err)
			}
			net.InitParams(1)
			opt, err := model.NewOptimizer(model.OptimizerSpec{}, net.Params(), model.Horizon{})
			if err != nil {
				t.Fatal(err)
			}
			x, labels, samples := syntheticBatch(batch, net.InputSize(), 1)
			in0, out0 := g.bytesIn, g.bytesOut
			if _, _, err := net.Loss(x, labels, samples, model.RunContext{Train: true, Seed: 1, Step: 1}, 1/float32(batch)); err != nil {
				t.Fatal(err)
			}
			if err := net.Backward(); err != nil {
				t.Fatal(err)
			}
			opt.Update(b, net.Params())
			total[i] = int64(g.bytesIn - in0 + g.bytesOut - out0)
			t.Logf("%s, batch %d: %.3f MB to the device, %.3f MB back", path, batch, float64(g.bytesIn-in0)/1e6, float64(g.bytesOut-out0)/1e6)
			if err := net.Close(); err != nil {
				t.Fatal(err)
			}
		}
		return (total[1] - total[0]) / 4, 2*total[0] - total[1]
	}
	hostImage, hostStep := measure("through host slices", hostSlices{b})
	t.Logf("through host slices: %.2f MB per image per training step; per step, independent of the batch: %.2f MB",
		float64(hostImage)/1e6, float64(hostStep)/1e6)
	devImage, devStep := measure("on the device", b)
	t.Logf("on the device: %d bytes (%.4f MB) per image per training step; per step, independent of the batch: %.2f MB",
		devImage, float64(devImage)/1e6, float64(devStep)/1e6)
	if want := int64(4*784 + 4 + 8 + 8 + 4); devImage != want {
		t.Errorf("on the device: %d bytes per image per step, want %d (the image, its label and sample index in, its loss and flag out)", devImage, want)
	}
	ref, err := model.New[float32](s, kernels.NewReference[float32](), 1)
	if err != nil {
		t.Fatal(err)
	}
	params := int64(4 * ref.Params().Count())
	// Per step: the parameters in and the gradients out, and Adam's
	// parameters, gradients, m and v in and parameters, m and v out.
	if want := 9 * params; devStep != want {
		t.Errorf("on the device: %d bytes per step besides the images, want %d (9 × the %d bytes of the parameters)", devStep, want, params)
	}
}

// TestEmulatedDeviceFaultsAreErrors makes the device run out of memory:
// building a network on a full device is an error (and frees what it got),
// and a full device mid-job makes Loss, Backward and Predict return the
// CUDA error, not panic, after which the network computes again once memory
// is there; bad arguments are errors too. The Backend's host-slice methods,
// which have no error result, still panic with the *Error (a worker
// recovers it).
func TestEmulatedDeviceFaultsAreErrors(t *testing.T) {
	b, g := emulatedBackend(t)
	defer b.Close()
	s, err := model.Builtin("lenet")
	if err != nil {
		t.Fatal(err)
	}
	const batch = 8
	var cudaErr *Error
	g.failAllocAfter = 5
	if _, err := model.New[float32](s, b, batch); !errors.As(err, &cudaErr) || cudaErr.Name != "CUDA_ERROR_OUT_OF_MEMORY" {
		t.Errorf("New on a device that fills up: %v", err)
	}
	if len(g.allocs) != 0 {
		t.Errorf("a failed New left %d allocations", len(g.allocs))
	}
	g.failAlloc, g.failAllocAfter = false, 0
	net, err := model.New[float32](s, b, batch)
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close()
	if err := net.Backward(); err == nil || !strings.Contains(err.Error(), "backward without a training-mode Loss") {
		t.Errorf("Backward before Loss: %v", err)
	}
	x, labels, samples := syntheticBatch(batch, net.InputSize(), 1)
	rc := model.RunContext{Train: true, Seed: 1, Step: 1}
	bad := slices.Clone(labels)
	bad[3] = 10
	if _, _, err := net.Loss(x, bad, samples, rc, 1); err == nil || !strings.Contains(err.Error(), "row 3: label 10 outside [0, 10)") {
		t.Errorf("Loss with label 10: %v", err)
	}

	// Scratch space (the convolutions' patch matrices, the loss's per-row
	// results) grows on first use: with no memory left, the first Loss
	// fails with the driver's error, and so do Backward (no Loss to
	// propagate) and Predict.
	g.failAlloc = true
	if _, _, err := net.Loss(x, labels, samples, rc, 1); !errors.As(err, &cudaErr) || cudaErr.Name != "CUDA_ERROR_OUT_OF_MEMORY" || !strings.HasPrefix(err.Error(), "model: loss: ConvForward: cuda: ") {
		t.Errorf("Loss on a full device: %v", err)
	}
	if err := net.Backward(); err == nil {
		t.Error("Backward after a failed Loss did not fail")
	}
	if err := net.Predict(x, batch, make([]int32, batch)); !errors.As(err, &cudaErr) {
		t.Errorf("Predict on a full device: %v", err)
	} else {
		t.Logf("Predict on a full device: %v", err)
	}
	func() {
		defer func() {
			if r := recover(); r == nil {
				t.Error("Backend.ReLUForward on a full device did not panic")
			} else if e, ok := r.(*Error); !ok || e.Name != "CUDA_ERROR_OUT_OF_MEMORY" {
				t.Errorf("Backend.ReLUForward panicked with %v, want the *Error", r)
			}
		}()
		b.ReLUForward(x, make([]float32, len(x)))
	}()

	// The error was returned, and cleared with it: with memory back the
	// same network trains, and computes what a fresh one computes.
	g.failAlloc = false
	loss, correct, err := net.Loss(x, labels, samples, rc, 1)
	if err != nil {
		t.Fatalf("Loss once memory is back: %v", err)
	}
	if err := net.Backward(); err != nil {
		t.Fatalf("Backward once memory is back: %v", err)
	}
	fresh, err := model.New[float32](s, b, batch)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	wantLoss, wantCorrect, err := fresh.Loss(x, labels, samples, rc, 1)
	if err != nil {
		t.Fatal(err)
	}
	if loss != wantLoss || correct != wantCorrect {
		t.Errorf("after the fault: loss %v, %d correct; a fresh network: %v, %d", loss, correct, wantLoss, wantCorrect)
	}
}

// TestEmulatedDeviceLatchesErrors checks the Device's error contract: the
// first failure (here a tensor too short for the operation) is kept, the
// work issued after it is skipped, Sync returns it and clears it, and the
// device computes again after.
func TestEmulatedDeviceLatchesErrors(t *testing.T) {
	b, _ := emulatedBackend(t)
	defer b.Close()
	d := b.Device()
	m := d.Memory()
	x, err := kernels.Alloc[float32](m, 4)
	if err != nil {
		t.Fatal(err)
	}
	y, err := kernels.Alloc[float32](m, 4)
	if err != nil {
		t.Fatal(err)
	}
	kernels.Upload(m, x, []float32{-1, 2, -3, 4})
	kernels.Upload(m, y, []float32{9, 9, 9, 9})
	d.ReLUForward(x, y.Slice(0, 3)) // too short: latched
	d.ReLUForward(x, y)             // skipped
	got := make([]float32, 4)
	kernels.Download(m, got, y) // skipped too: got stays zero
	if err := d.Sync(); err == nil || err.Error() != "cuda: ReLUForward: output has 3 elements, need 4" {
		t.Errorf("Sync after a bad call: %v", err)
	}
	if !slices.Equal(got, make([]float32, 4)) {
		t.Errorf("work after the failure ran: downloaded %v", got)
	}
	if err := d.Sync(); err != nil {
		t.Errorf("the error was not cleared: %v", err)
	}
	d.ReLUForward(x, y)
	kernels.Download(m, got, y)
	if err := d.Sync(); err != nil || !slices.Equal(got, []float32{0, 2, 0, 4}) {
		t.Errorf("after the failure: %v, %v", got, err)
	}
	d.ReLUForward(kernels.HostTensor([]float32{1, 2}), y)
	if err := d.Sync(); err == nil || !strings.Contains(err.Error(), "input is not a tensor of device memory") {
		t.Errorf("a host tensor on the device: %v", err)
	}
	if err := kernels.Free(m, x.Slice(1, 2)); err == nil {
		t.Error("freeing a view succeeded")
	}
	if err := kernels.Free(m, x); err != nil {
		t.Error(err)
	}
}
