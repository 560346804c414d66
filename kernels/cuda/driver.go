package cuda

import (
	"path/filepath"
	"unsafe"
)

// driverAPI is the part of the CUDA driver API (libcuda.so.1) the backend
// uses. Each field is bound to the symbol named in its table entry: the
// _v2 symbols are the ones cuda.h maps the plain names to (the plain
// cuMemAlloc & co. are the CUDA 3.1 ABI with 32-bit device pointers).
type driverAPI struct {
	lib *Library
	// ptxJIT is the PTX JIT library preloaded from the driver's directory,
	// or "" when there was none to preload.
	ptxJIT string

	cuInit                    func(flags uint32) int32
	cuDriverGetVersion        func(version *int32) int32
	cuDeviceGetCount          func(count *int32) int32
	cuDeviceGet               func(dev *int32, ordinal int32) int32
	cuDeviceGetName           func(name *byte, n int32, dev int32) int32
	cuDeviceGetAttribute      func(value *int32, attr int32, dev int32) int32
	cuDeviceTotalMem          func(bytes *uintptr, dev int32) int32
	cuDevicePrimaryCtxRetain  func(ctx *uintptr, dev int32) int32
	cuDevicePrimaryCtxRelease func(dev int32) int32
	cuCtxSetCurrent           func(ctx uintptr) int32
	cuCtxSynchronize          func() int32
	cuMemGetInfo              func(free, total *uintptr) int32
	cuMemAlloc                func(ptr *uint64, bytes uintptr) int32
	cuMemFree                 func(ptr uint64) int32
	cuMemcpyHtoD              func(dst uint64, src unsafe.Pointer, bytes uintptr) int32
	cuMemcpyDtoH              func(dst unsafe.Pointer, src uint64, bytes uintptr) int32
	cuMemcpyDtoD              func(dst, src uint64, bytes uintptr) int32
	cuMemsetD32               func(dst uint64, value uint32, count uintptr) int32
	cuModuleLoadDataEx        func(mod *uintptr, image unsafe.Pointer, numOptions uint32, options *int32, values *uintptr) int32
	cuModuleGetFunction       func(fn *uintptr, mod uintptr, name string) int32
	cuModuleUnload            func(mod uintptr) int32
	cuLaunchKernel            func(fn uintptr, gx, gy, gz, bx, by, bz, sharedBytes uint32, stream uintptr, params unsafe.Pointer, extra unsafe.Pointer) int32
	cuGetErrorName            func(code int32, name **byte) int32
	cuGetErrorString          func(code int32, desc **byte) int32
}

// Device attributes (CUdevice_attribute).
const (
	attrMultiprocessorCount = 16
	attrComputeMajor        = 75
	attrComputeMinor        = 76
)

// JIT options (CUjit_option) for cuModuleLoadDataEx.
const (
	jitErrorLogBuffer      = 5
	jitErrorLogBufferBytes = 6
)

// driverSpec is what libcuda is looked for as: only the versioned SONAME,
// never libcuda.so, which on a machine with the toolkit may be its stub.
var driverSpec = libSpec{kind: "CUDA driver", names: []string{"libcuda.so.1"}}

// openDriver finds, loads and binds the driver library.
func openDriver(s search) (*driverAPI, error) {
	lib, err := s.find(driverSpec)
	if err != nil {
		return nil, err
	}
	d := &driverAPI{lib: lib}
	// libcuda loads the PTX JIT lazily by bare name; preloading it from
	// the driver's own directory makes that work when the directory is
	// not on the loader's path.
	d.ptxJIT = preload(filepath.Dir(lib.Path), "libnvidia-ptxjitcompiler.so.1")
	err = bind(lib, []symbol{
		{name: "cuInit", fn: &d.cuInit},
		{name: "cuDriverGetVersion", fn: &d.cuDriverGetVersion},
		{name: "cuDeviceGetCount", fn: &d.cuDeviceGetCount},
		{name: "cuDeviceGet", fn: &d.cuDeviceGet},
		{name: "cuDeviceGetName", fn: &d.cuDeviceGetName},
		{name: "cuDeviceGetAttribute", fn: &d.cuDeviceGetAttribute},
		{name: "cuDeviceTotalMem_v2", fn: &d.cuDeviceTotalMem},
		{name: "cuDevicePrimaryCtxRetain", fn: &d.cuDevicePrimaryCtxRetain},
		{name: "cuDevicePrimaryCtxRelease_v2", fn: &d.cuDevicePrimaryCtxRelease},
		{name: "cuCtxSetCurrent", fn: &d.cuCtxSetCurrent},
		{name: "cuCtxSynchronize", fn: &d.cuCtxSynchronize},
		{name: "cuMemGetInfo_v2", fn: &d.cuMemGetInfo},
		{name: "cuMemAlloc_v2", fn: &d.cuMemAlloc},
		{name: "cuMemFree_v2", fn: &d.cuMemFree},
		{name: "cuMemcpyHtoD_v2", fn: &d.cuMemcpyHtoD},
		{name: "cuMemcpyDtoH_v2", fn: &d.cuMemcpyDtoH},
		{name: "cuMemcpyDtoD_v2", fn: &d.cuMemcpyDtoD},
		{name: "cuMemsetD32_v2", fn: &d.cuMemsetD32},
		{name: "cuModuleLoadDataEx", fn: &d.cuModuleLoadDataEx},
		{name: "cuModuleGetFunction", fn: &d.cuModuleGetFunction},
		{name: "cuModuleUnload", fn: &d.cuModuleUnload},
		{name: "cuLaunchKernel", fn: &d.cuLaunchKernel},
		{name: "cuGetErrorName", fn: &d.cuGetErrorName},
		{name: "cuGetErrorString", fn: &d.cuGetErrorString},
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// check turns a CUresult into nil or an *Error naming fn and the code.
func (d *driverAPI) check(fn string, code int32) error {
	if code == 0 {
		return nil
	}
	e := &Error{Lib: libDriver, Func: fn, Code: int(code)}
	var p *byte
	if d.cuGetErrorName != nil && d.cuGetErrorName(code, &p) == 0 && p != nil {
		e.Name = goString(p)
	} else {
		e.Name = nameOr(driverErrorNames, int(code), "CUDA_ERROR")
	}
	p = nil
	if d.cuGetErrorString != nil && d.cuGetErrorString(code, &p) == 0 && p != nil {
		e.Desc = goString(p)
	}
	return e
}

// version returns the driver's CUDA version as major·1000 + minor·10
// (13000 for CUDA 13.0).
func (d *driverAPI) version() (int, error) {
	var v int32
	if err := d.check("cuDriverGetVersion", d.cuDriverGetVersion(&v)); err != nil {
		return 0, err
	}
	return int(v), nil
}
