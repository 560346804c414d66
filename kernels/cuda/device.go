package cuda

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime"
	"strconv"
	"sync"
	"unsafe"
)

// Options configure a CUDA backend.
type Options struct {
	// Ordinal is the device to use (0 is the first).
	Ordinal int
	// CacheDir keeps compiled kernels between runs; "" means
	// $DPCNN_CUDA_CACHE_DIR, else os.UserCacheDir()/dpcnn/cuda; "-" turns
	// the cache off.
	CacheDir string
	// SyncEveryLaunch synchronises after every kernel launch and GEMM, so
	// that a fault inside a kernel is reported by the launch that caused it
	// rather than by a later call (slow; for debugging).
	SyncEveryLaunch bool
	// TF32 lets cuBLAS use TF32 tensor cores for SGEMM (faster, about 1e-3
	// relative error). Off by default: plain float32.
	TF32 bool
	// Logger receives how the kernels were obtained and which libraries
	// were loaded; nil discards.
	Logger *slog.Logger
}

// Environment variables read by OptionsFromEnv.
const (
	SyncEnv   = "DPCNN_CUDA_SYNC"   // "1": Options.SyncEveryLaunch
	DeviceEnv = "DPCNN_CUDA_DEVICE" // Options.Ordinal
	TF32Env   = "DPCNN_CUDA_TF32"   // "1": Options.TF32
)

// OptionsFromEnv returns the options the environment asks for (see the
// *Env constants and DPCNN_CUDA_CACHE_DIR).
func OptionsFromEnv() (Options, error) {
	var o Options
	o.SyncEveryLaunch = os.Getenv(SyncEnv) == "1"
	o.TF32 = os.Getenv(TF32Env) == "1"
	if s := os.Getenv(DeviceEnv); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return o, fmt.Errorf("cuda: %s=%q: want a device ordinal (0, 1, …)", DeviceEnv, s)
		}
		o.Ordinal = n
	}
	return o, nil
}

// Info describes the device and the libraries a backend runs on.
type Info struct {
	Name             string // e.g. "NVIDIA H100 80GB HBM3"
	Ordinal          int
	ComputeMajor     int
	ComputeMinor     int
	Multiprocessors  int
	TotalMemory      uint64 // bytes
	DriverVersion    int    // CUDA version of the driver, e.g. 13000
	DriverPath       string
	NVRTCPath        string
	NVRTCVersion     string // "12.8"
	CUBLASPath       string
	CUBLASVersion    int
	KernelArch       string // what the kernels were compiled for: "sm_90" or "compute_90"
	KernelFrom       string // "cache", "compiled"; with " (PTX, JIT by the driver)" for PTX
	SyncEveryLaunch  bool
	TF32             bool
	PTXJITCompiler   string
	NVRTCBuiltins    string
	CUBLASLt         string
	KernelCachePath  string
	KernelCompileLog string
}

// device is one CUDA device in use: its primary context, the kernel module
// loaded into it and the functions of that module. All driver calls go
// through do, which holds the lock and makes the context current on the
// calling OS thread (a context is current per thread; goroutines move).
type device struct {
	api      *driverAPI
	nvrtc    *NVRTC
	blas     *cublasAPI
	ordinal  int
	dev      int32
	ctx      uintptr
	module   uintptr
	fns      map[string]uintptr
	sms      int
	syncAll  bool
	info     Info
	log      *slog.Logger
	mu       sync.Mutex
	broken   error // a sticky error: the context is unusable
	launchIn *launchArgs
	pin      runtime.Pinner
	handle   uintptr // cuBLAS handle
}

var _ gpu = (*device)(nil)

// launchArgs is the parameter block of cuLaunchKernel: ptrs[i] points at
// slots[i], which holds argument i. It is Go memory referenced from Go
// memory passed to C, so it stays pinned while the device is open.
type launchArgs struct {
	slots [maxKernelArgs]uint64
	ptrs  [maxKernelArgs]unsafe.Pointer
}

const maxKernelArgs = 16

// openDevice loads the libraries, initialises the driver and opens device
// o.Ordinal with its kernels ready.
func openDevice(o Options) (*device, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	api, err := loadDriver()
	if err != nil {
		return nil, err
	}
	if err := api.check("cuInit", api.cuInit(0)); err != nil {
		return nil, fmt.Errorf("%w (driver %s)", err, api.lib.Path)
	}
	driverVersion, err := api.version()
	if err != nil {
		return nil, err
	}
	var count int32
	if err := api.check("cuDeviceGetCount", api.cuDeviceGetCount(&count)); err != nil {
		return nil, err
	}
	if count == 0 {
		return nil, fmt.Errorf("%w (driver %s, CUDA %d.%d)", ErrNoDevice, api.lib.Path, driverVersion/1000, driverVersion%1000/10)
	}
	if o.Ordinal < 0 || o.Ordinal >= int(count) {
		return nil, fmt.Errorf("cuda: device %d requested, the driver reports %d (0 to %d)", o.Ordinal, count, count-1)
	}
	d := &device{api: api, ordinal: o.Ordinal, syncAll: o.SyncEveryLaunch, log: log, fns: map[string]uintptr{}}
	if err := api.check("cuDeviceGet", api.cuDeviceGet(&d.dev, int32(o.Ordinal))); err != nil {
		return nil, err
	}
	name := make([]byte, 256)
	if err := api.check("cuDeviceGetName", api.cuDeviceGetName(&name[0], int32(len(name)), d.dev)); err != nil {
		return nil, err
	}
	attr := func(a int32) (int, error) {
		var v int32
		err := api.check("cuDeviceGetAttribute", api.cuDeviceGetAttribute(&v, a, d.dev))
		return int(v), err
	}
	var major, minor int
	if d.sms, err = attr(attrMultiprocessorCount); err != nil {
		return nil, err
	}
	if major, err = attr(attrComputeMajor); err != nil {
		return nil, err
	}
	if minor, err = attr(attrComputeMinor); err != nil {
		return nil, err
	}
	var total uintptr
	if err := api.check("cuDeviceTotalMem_v2", api.cuDeviceTotalMem(&total, d.dev)); err != nil {
		return nil, err
	}
	d.info = Info{
		Name: trimNUL(name), Ordinal: o.Ordinal, ComputeMajor: major, ComputeMinor: minor,
		Multiprocessors: d.sms, TotalMemory: uint64(total), DriverVersion: driverVersion,
		DriverPath: api.lib.Path, PTXJITCompiler: api.ptxJIT, SyncEveryLaunch: o.SyncEveryLaunch, TF32: o.TF32,
	}

	// NVRTC and cuBLAS of a CUDA major newer than the driver's would give
	// code or need a runtime the driver cannot run.
	driverMajor := driverVersion / 1000
	if d.nvrtc, err = LoadNVRTC(driverMajor); err != nil {
		return nil, &SetupError{Device: d.info.Name, Err: err}
	}
	if d.blas, err = loadCUBLAS(driverMajor); err != nil {
		return nil, &SetupError{Device: d.info.Name, Err: err}
	}
	nm, nn := d.nvrtc.Version()
	d.info.NVRTCPath, d.info.NVRTCVersion, d.info.NVRTCBuiltins = d.nvrtc.Path(), fmt.Sprintf("%d.%d", nm, nn), d.nvrtc.Builtins
	d.info.CUBLASPath, d.info.CUBLASLt = d.blas.lib.Path, d.blas.lt

	if err := api.check("cuDevicePrimaryCtxRetain", api.cuDevicePrimaryCtxRetain(&d.ctx, d.dev)); err != nil {
		return nil, err
	}
	d.launchIn = &launchArgs{}
	for i := range d.launchIn.ptrs {
		d.launchIn.ptrs[i] = unsafe.Pointer(&d.launchIn.slots[i])
	}
	d.pin.Pin(d.launchIn)
	cacheDir := o.CacheDir
	if cacheDir == "" {
		cacheDir = defaultCacheDir()
	}
	if err := d.do(func() error {
		if err := d.loadKernels(cacheDir); err != nil {
			return err
		}
		return d.createBLAS(o.TF32)
	}); err != nil {
		d.close()
		return nil, err
	}
	log.Info("cuda device ready", "device", d.info.Name, "sm", fmt.Sprintf("%d.%d", major, minor),
		"driver", d.info.DriverPath, "nvrtc", d.info.NVRTCPath, "cublas", d.info.CUBLASPath,
		"kernels", d.info.KernelArch, "from", d.info.KernelFrom)
	return d, nil
}

// do runs f with the device's context current on a locked OS thread,
// holding the device lock. A sticky error breaks the device for good.
func (d *device) do(f func() error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.broken != nil {
		return fmt.Errorf("cuda: device unusable after an earlier error: %w", d.broken)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := d.api.check("cuCtxSetCurrent", d.api.cuCtxSetCurrent(d.ctx)); err != nil {
		return err
	}
	err := f()
	var ce *Error
	if errors.As(err, &ce) && ce.Sticky() {
		d.broken = err
	}
	return err
}

// loadKernels obtains the module (from the cache, else by compiling) and
// looks up every kernel. It runs inside do.
func (d *device) loadKernels(cacheDir string) error {
	cc := d.info.ComputeMajor*10 + d.info.ComputeMinor
	arch, wantCubin, err := chooseArch(cc, d.nvrtc.SupportedArchs())
	if err != nil {
		return err
	}
	options := CompileOptions(arch)
	nm, nn := d.nvrtc.Version()
	key := cacheKey(KernelSource, options, nm, nn, d.info.DriverVersion, d.info.Name)
	d.info.KernelArch = arch
	ext := ".ptx"
	if wantCubin {
		ext = ".cubin"
	}
	if image := readCache(cacheDir, key, ext); image != nil {
		if err := d.loadModule(image); err == nil {
			d.info.KernelFrom, d.info.KernelCachePath = "cache", cacheDir+"/"+key+ext
			return d.lookupKernels()
		} else {
			d.log.Warn("cuda: cached kernels rejected, compiling again", "file", cacheDir+"/"+key+ext, "err", err)
			os.Remove(cacheDir + "/" + key + ext)
		}
	}
	prog, err := d.nvrtc.Compile(KernelSource, KernelSourceName, options)
	if err != nil {
		return err
	}
	d.info.KernelCompileLog = prog.Log
	if wantCubin && prog.CUBIN != nil {
		loadErr := d.loadModule(prog.CUBIN)
		if loadErr == nil {
			d.info.KernelFrom = "compiled"
			if err := writeCache(cacheDir, key, ext, prog.CUBIN); err != nil {
				d.log.Warn("cuda: cannot cache compiled kernels", "dir", cacheDir, "err", err)
			}
			return d.lookupKernels()
		}
		// The driver refused the CUBIN (older than the NVRTC that made it,
		// or a mismatch): fall back to PTX, which it compiles itself.
		d.log.Warn("cuda: driver rejected the CUBIN, loading PTX instead", "arch", arch, "err", loadErr)
	}
	if err := d.loadModule(prog.PTX); err != nil {
		return fmt.Errorf("%w (PTX from NVRTC %d.%d for %s; a PTX newer than the driver gives CUDA_ERROR_UNSUPPORTED_PTX_VERSION)", err, nm, nn, arch)
	}
	d.info.KernelFrom = "compiled (PTX, JIT by the driver)"
	return d.lookupKernels()
}

// loadModule loads a CUBIN or NUL-terminated PTX image, capturing the JIT's
// error log into the error.
func (d *device) loadModule(image []byte) error {
	logBuf := make([]byte, 8192)
	var pin runtime.Pinner
	defer pin.Unpin()
	pin.Pin(&logBuf[0])
	pin.Pin(&image[0])
	options := []int32{jitErrorLogBuffer, jitErrorLogBufferBytes}
	values := []uintptr{uintptr(unsafe.Pointer(&logBuf[0])), uintptr(len(logBuf))}
	var mod uintptr
	code := d.api.cuModuleLoadDataEx(&mod, unsafe.Pointer(&image[0]), uint32(len(options)), &options[0], &values[0])
	runtime.KeepAlive(image)
	runtime.KeepAlive(logBuf)
	if err := d.api.check("cuModuleLoadDataEx", code); err != nil {
		if msg := trimNUL(logBuf); msg != "" {
			return fmt.Errorf("%w: JIT log: %s", err, msg)
		}
		return err
	}
	if d.module != 0 {
		d.api.cuModuleUnload(d.module)
	}
	d.module = mod
	return nil
}

func (d *device) lookupKernels() error {
	for _, name := range KernelNames() {
		var fn uintptr
		if err := d.api.check("cuModuleGetFunction", d.api.cuModuleGetFunction(&fn, d.module, name)); err != nil {
			err.(*Error).Context = "kernel " + name
			return err
		}
		d.fns[name] = fn
	}
	return nil
}

// createBLAS creates the cuBLAS handle, on the legacy default stream like
// the kernels and the copies, so everything runs in issue order, in plain
// float32 unless tf32. Runs inside do.
func (d *device) createBLAS(tf32 bool) error {
	blas := d.blas
	if err := blas.check("cublasCreate_v2", blas.cublasCreate(&d.handle)); err != nil {
		return err
	}
	if err := blas.check("cublasSetStream_v2", blas.cublasSetStream(d.handle, 0)); err != nil {
		return err
	}
	mode := int32(cublasDefaultMath)
	if tf32 {
		mode = cublasTF32TensorOpMath
	}
	if err := blas.check("cublasSetMathMode", blas.cublasSetMathMode(d.handle, mode)); err != nil {
		return err
	}
	var v int32
	if err := blas.check("cublasGetVersion_v2", blas.cublasGetVersion(d.handle, &v)); err != nil {
		return err
	}
	d.info.CUBLASVersion = int(v)
	return nil
}

// gemm is cublasSgemm_v2: column-major C = alpha·op(A)·op(B) + beta·C, A
// m×k after op, B k×n, C m×n. Runs inside do.
func (d *device) gemm(opA, opB int32, m, n, k int, alpha float32, a devPtr, lda int, b devPtr, ldb int, beta float32, c devPtr, ldc int) error {
	code := d.blas.cublasSgemm(d.handle, opA, opB, int32(m), int32(n), int32(k),
		&alpha, uint64(a), int32(lda), uint64(b), int32(ldb), &beta, uint64(c), int32(ldc))
	if err := d.blas.check("cublasSgemm_v2", code); err != nil {
		return err
	}
	if d.syncAll {
		if err := d.sync(); err != nil {
			err.(*Error).Context = "after cublasSgemm_v2 (" + SyncEnv + "=1)"
			return err
		}
	}
	return nil
}

// describe returns the device's description.
func (d *device) describe() Info { return d.info }

// close releases the cuBLAS handle, the module and the primary context
// (which frees whatever memory is left in it).
func (d *device) close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var errs []error
	if d.ctx != 0 {
		if d.broken == nil {
			d.api.cuCtxSetCurrent(d.ctx)
			if d.handle != 0 {
				errs = append(errs, d.blas.check("cublasDestroy_v2", d.blas.cublasDestroy(d.handle)))
			}
			if d.module != 0 {
				errs = append(errs, d.api.check("cuModuleUnload", d.api.cuModuleUnload(d.module)))
			}
		}
		errs = append(errs, d.api.check("cuDevicePrimaryCtxRelease_v2", d.api.cuDevicePrimaryCtxRelease(d.dev)))
		d.ctx, d.module, d.handle = 0, 0, 0
	}
	d.pin.Unpin()
	return errors.Join(errs...)
}

// threadsPerBlock is the block size of every launch: the kernels are
// memory-bound grid-stride loops, for which 256 is a good fit everywhere.
const threadsPerBlock = 256

// launch runs kernel name over n work items (threads in a grid-stride
// loop). Arguments are devPtr, int64, uint32, float32 or float64; they fill
// the kernel's parameters in order. Runs inside do.
func (d *device) launch(name string, n int64, args ...any) error {
	if n <= 0 {
		return nil
	}
	fn, ok := d.fns[name]
	if !ok {
		return fmt.Errorf("cuda: no kernel %q in the module", name)
	}
	if len(args) > maxKernelArgs {
		return fmt.Errorf("cuda: kernel %s: %d arguments, at most %d", name, len(args), maxKernelArgs)
	}
	in := d.launchIn
	for i, a := range args {
		switch v := a.(type) {
		case devPtr:
			in.slots[i] = uint64(v)
		case int64:
			in.slots[i] = uint64(v)
		case uint32:
			in.slots[i] = uint64(v)
		case float32:
			in.slots[i] = uint64(math.Float32bits(v))
		case float64:
			in.slots[i] = math.Float64bits(v)
		default:
			return fmt.Errorf("cuda: kernel %s: argument %d has unsupported type %T", name, i, a)
		}
	}
	blocks := (n + threadsPerBlock - 1) / threadsPerBlock
	blocks = min(blocks, int64(max(d.sms, 1))*32, math.MaxInt32)
	code := d.api.cuLaunchKernel(fn, uint32(blocks), 1, 1, threadsPerBlock, 1, 1, 0, 0, unsafe.Pointer(&in.ptrs[0]), nil)
	if err := d.api.check("cuLaunchKernel", code); err != nil {
		err.(*Error).Context = "kernel " + name
		return err
	}
	if d.syncAll {
		if err := d.api.check("cuCtxSynchronize", d.api.cuCtxSynchronize()); err != nil {
			err.(*Error).Context = "after kernel " + name + " (" + SyncEnv + "=1)"
			return err
		}
	}
	return nil
}

// sync waits for the device to finish everything issued. Runs inside do.
func (d *device) sync() error {
	return d.api.check("cuCtxSynchronize", d.api.cuCtxSynchronize())
}

// alloc allocates bytes of device memory. Runs inside do.
func (d *device) alloc(bytes uintptr) (devPtr, error) {
	var p uint64
	if err := d.api.check("cuMemAlloc_v2", d.api.cuMemAlloc(&p, bytes)); err != nil {
		err.(*Error).Context = fmt.Sprintf("allocate %d bytes", bytes)
		return 0, err
	}
	return devPtr(p), nil
}

// release frees memory from alloc. Runs inside do.
func (d *device) release(p devPtr) error {
	return d.api.check("cuMemFree_v2", d.api.cuMemFree(uint64(p)))
}

// copyIn copies bytes from host memory to the device, synchronously on
// the legacy default stream (after every kernel issued before). Runs
// inside do.
func (d *device) copyIn(dst devPtr, src unsafe.Pointer, bytes uintptr) error {
	return d.api.check("cuMemcpyHtoD_v2", d.api.cuMemcpyHtoD(uint64(dst), src, bytes))
}

// copyOut copies bytes from the device to host memory; it waits for every
// kernel issued before. Runs inside do.
func (d *device) copyOut(dst unsafe.Pointer, src devPtr, bytes uintptr) error {
	return d.api.check("cuMemcpyDtoH_v2", d.api.cuMemcpyDtoH(dst, uint64(src), bytes))
}
