package cuda

import (
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"unsafe"
)

// NVRTC is the CUDA run-time compiler (libnvrtc), loaded and bound. It
// needs no GPU, which is what lets the CUDA C sources be compiled in CI on
// machines without one.
type NVRTC struct {
	lib *Library
	// Builtins is the libnvrtc-builtins preloaded from NVRTC's directory,
	// or "" when there was none to preload.
	Builtins     string
	major, minor int

	nvrtcVersion              func(major, minor *int32) int32
	nvrtcGetErrorString       func(result int32) string
	nvrtcCreateProgram        func(prog *uintptr, src string, name string, numHeaders int32, headers, includeNames unsafe.Pointer) int32
	nvrtcCompileProgram       func(prog uintptr, numOptions int32, options unsafe.Pointer) int32
	nvrtcGetProgramLogSize    func(prog uintptr, size *uintptr) int32
	nvrtcGetProgramLog        func(prog uintptr, log *byte) int32
	nvrtcGetPTXSize           func(prog uintptr, size *uintptr) int32
	nvrtcGetPTX               func(prog uintptr, ptx *byte) int32
	nvrtcGetCUBINSize         func(prog uintptr, size *uintptr) int32
	nvrtcGetCUBIN             func(prog uintptr, cubin *byte) int32
	nvrtcDestroyProgram       func(prog *uintptr) int32
	nvrtcGetNumSupportedArchs func(n *int32) int32
	nvrtcGetSupportedArchs    func(archs *int32) int32
}

// nvrtcMajors are the NVRTC SONAME versions known, newest first (CUDA 11's
// SONAME is libnvrtc.so.11.2 for every 11.x).
var nvrtcMajors = []string{"13", "12", "11.2"}

func openNVRTC(s search, maxMajor int) (*NVRTC, error) {
	lib, err := s.find(libSpec{kind: "NVRTC", names: versionedNames("libnvrtc", nvrtcMajors, maxMajor)})
	if err != nil {
		return nil, err
	}
	n := &NVRTC{lib: lib}
	err = bind(lib, []symbol{
		{name: "nvrtcVersion", fn: &n.nvrtcVersion},
		{name: "nvrtcGetErrorString", fn: &n.nvrtcGetErrorString},
		{name: "nvrtcCreateProgram", fn: &n.nvrtcCreateProgram},
		{name: "nvrtcCompileProgram", fn: &n.nvrtcCompileProgram},
		{name: "nvrtcGetProgramLogSize", fn: &n.nvrtcGetProgramLogSize},
		{name: "nvrtcGetProgramLog", fn: &n.nvrtcGetProgramLog},
		{name: "nvrtcGetPTXSize", fn: &n.nvrtcGetPTXSize},
		{name: "nvrtcGetPTX", fn: &n.nvrtcGetPTX},
		{name: "nvrtcGetCUBINSize", fn: &n.nvrtcGetCUBINSize, optional: true},
		{name: "nvrtcGetCUBIN", fn: &n.nvrtcGetCUBIN, optional: true},
		{name: "nvrtcDestroyProgram", fn: &n.nvrtcDestroyProgram},
		{name: "nvrtcGetNumSupportedArchs", fn: &n.nvrtcGetNumSupportedArchs, optional: true},
		{name: "nvrtcGetSupportedArchs", fn: &n.nvrtcGetSupportedArchs, optional: true},
	})
	if err != nil {
		return nil, err
	}
	var major, minor int32
	if err := n.check("nvrtcVersion", n.nvrtcVersion(&major, &minor)); err != nil {
		return nil, err
	}
	n.major, n.minor = int(major), int(minor)
	// NVRTC dlopens libnvrtc-builtins.so.<major>.<minor> by bare name when
	// it compiles; Debian's libnvrtc and the CUDA 13 wheels have no RUNPATH
	// to find it beside them, so load it now from there.
	n.Builtins = preload(filepath.Dir(lib.Path),
		fmt.Sprintf("libnvrtc-builtins.so.%d.%d", major, minor), "libnvrtc-builtins.so.*")
	return n, nil
}

// Path is the NVRTC library loaded.
func (n *NVRTC) Path() string { return n.lib.Path }

// Version is NVRTC's CUDA version.
func (n *NVRTC) Version() (major, minor int) { return n.major, n.minor }

// SupportedArchs lists the compute capabilities (e.g. 80 for sm_80) NVRTC
// can compile for; nil when this NVRTC cannot say (before 11.2).
func (n *NVRTC) SupportedArchs() []int {
	if n.nvrtcGetNumSupportedArchs == nil || n.nvrtcGetSupportedArchs == nil {
		return nil
	}
	var count int32
	if n.nvrtcGetNumSupportedArchs(&count) != 0 || count <= 0 {
		return nil
	}
	archs := make([]int32, count)
	if n.nvrtcGetSupportedArchs(&archs[0]) != 0 {
		return nil
	}
	out := make([]int, count)
	for i, a := range archs {
		out[i] = int(a)
	}
	slices.Sort(out)
	return out
}

func (n *NVRTC) check(fn string, code int32) error {
	if code == 0 {
		return nil
	}
	e := &Error{Lib: libNVRTC, Func: fn, Code: int(code), Name: nameOr(nvrtcResultNames, int(code), "NVRTC_ERROR")}
	if n.nvrtcGetErrorString != nil {
		e.Desc = n.nvrtcGetErrorString(code)
	}
	return e
}

// Program is the result of one compilation.
type Program struct {
	// PTX is the PTX assembly, always produced.
	PTX []byte
	// CUBIN is the device binary: produced when compiling for a real
	// architecture (sm_XY) with an NVRTC that can give it (11.1 and later),
	// else nil.
	CUBIN []byte
	// Log is the compiler's log: warnings on success, errors on failure.
	Log string
}

// CompileError is a compilation that failed, with the compiler's log.
type CompileError struct {
	Name string
	Err  error
	Log  string
}

func (e *CompileError) Error() string {
	return fmt.Sprintf("cuda: compile %s: %v\n%s", e.Name, e.Err, e.Log)
}

func (e *CompileError) Unwrap() error { return e.Err }

// Compile compiles CUDA C++ source (name is how the log refers to it) with
// the given NVRTC options, e.g. --gpu-architecture=sm_90.
func (n *NVRTC) Compile(src, name string, options []string) (*Program, error) {
	var prog uintptr
	if err := n.check("nvrtcCreateProgram", n.nvrtcCreateProgram(&prog, src, name, 0, nil, nil)); err != nil {
		return nil, err
	}
	defer n.nvrtcDestroyProgram(&prog)

	// The option array is Go memory holding pointers to Go memory, passed
	// to C: every string it points at is pinned for the call.
	var pin runtime.Pinner
	defer pin.Unpin()
	opts := make([]*byte, len(options))
	for i, o := range options {
		b := cString(o)
		pin.Pin(&b[0])
		opts[i] = &b[0]
	}
	var optsPtr unsafe.Pointer
	if len(opts) > 0 {
		optsPtr = unsafe.Pointer(&opts[0])
	}
	compileErr := n.check("nvrtcCompileProgram", n.nvrtcCompileProgram(prog, int32(len(opts)), optsPtr))
	runtime.KeepAlive(opts)

	p := &Program{}
	var size uintptr
	if err := n.check("nvrtcGetProgramLogSize", n.nvrtcGetProgramLogSize(prog, &size)); err != nil {
		return nil, err
	}
	if size > 1 {
		buf := make([]byte, size)
		if err := n.check("nvrtcGetProgramLog", n.nvrtcGetProgramLog(prog, &buf[0])); err != nil {
			return nil, err
		}
		p.Log = trimNUL(buf)
	}
	if compileErr != nil {
		return nil, &CompileError{Name: name, Err: compileErr, Log: p.Log}
	}
	if err := n.check("nvrtcGetPTXSize", n.nvrtcGetPTXSize(prog, &size)); err != nil {
		return nil, err
	}
	p.PTX = make([]byte, size) // includes the terminating NUL the driver needs
	if size > 0 {
		if err := n.check("nvrtcGetPTX", n.nvrtcGetPTX(prog, &p.PTX[0])); err != nil {
			return nil, err
		}
	}
	if n.nvrtcGetCUBINSize != nil && n.nvrtcGetCUBIN != nil {
		// The size is 0 when compiling for a virtual architecture.
		if err := n.check("nvrtcGetCUBINSize", n.nvrtcGetCUBINSize(prog, &size)); err == nil && size > 0 {
			p.CUBIN = make([]byte, size)
			if err := n.check("nvrtcGetCUBIN", n.nvrtcGetCUBIN(prog, &p.CUBIN[0])); err != nil {
				return nil, err
			}
		}
	}
	return p, nil
}
