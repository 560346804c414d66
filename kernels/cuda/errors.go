package cuda

import (
	"fmt"
	"unsafe"
)

// Library names in errors.
const (
	libDriver = "cuda"
	libNVRTC  = "nvrtc"
	libCUBLAS = "cublas"
)

// Error is a failed call into a CUDA library: which library and function,
// its status code and the status's name and description.
type Error struct {
	Lib  string // "cuda" (driver API), "nvrtc" or "cublas"
	Func string // the C function called, e.g. "cuMemAlloc_v2"
	Code int    // CUresult, nvrtcResult or cublasStatus_t
	Name string // e.g. "CUDA_ERROR_OUT_OF_MEMORY"
	Desc string // the library's description, when it has one
	// Context says what the call was doing, e.g. "kernel dp_im2col".
	Context string
}

func (e *Error) Error() string {
	s := "cuda: "
	if e.Context != "" {
		s += e.Context + ": "
	}
	s += fmt.Sprintf("%s: %s (%d)", e.Func, e.Name, e.Code)
	if e.Desc != "" && e.Desc != e.Name {
		s += ": " + e.Desc
	}
	return s
}

// Sticky reports an error after which the CUDA context is unusable: the
// process must be restarted to use the device again.
func (e *Error) Sticky() bool {
	if e.Lib != libDriver {
		return false
	}
	switch e.Code {
	case 700, 701, 702, 710, 714, 715, 716, 717, 718, 719:
		return true
	}
	return false
}

// CUresult codes the package acts on.
const (
	errNotInitialized     = 3
	errStubLibrary        = 34
	errInsufficientDriver = 35
	errNoDevice           = 100
)

// driverErrorNames names the CUresult codes, for drivers whose
// cuGetErrorName cannot be used (it is always tried first).
var driverErrorNames = map[int]string{
	0: "CUDA_SUCCESS", 1: "CUDA_ERROR_INVALID_VALUE", 2: "CUDA_ERROR_OUT_OF_MEMORY",
	3: "CUDA_ERROR_NOT_INITIALIZED", 4: "CUDA_ERROR_DEINITIALIZED", 34: "CUDA_ERROR_STUB_LIBRARY",
	35: "CUDA_ERROR_INSUFFICIENT_DRIVER", 100: "CUDA_ERROR_NO_DEVICE", 101: "CUDA_ERROR_INVALID_DEVICE",
	200: "CUDA_ERROR_INVALID_IMAGE", 201: "CUDA_ERROR_INVALID_CONTEXT", 209: "CUDA_ERROR_NO_BINARY_FOR_GPU",
	218: "CUDA_ERROR_INVALID_PTX", 221: "CUDA_ERROR_JIT_COMPILER_NOT_FOUND", 222: "CUDA_ERROR_UNSUPPORTED_PTX_VERSION",
	400: "CUDA_ERROR_INVALID_HANDLE", 500: "CUDA_ERROR_NOT_FOUND", 700: "CUDA_ERROR_ILLEGAL_ADDRESS",
	701: "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", 702: "CUDA_ERROR_LAUNCH_TIMEOUT", 710: "CUDA_ERROR_ASSERT",
	715: "CUDA_ERROR_ILLEGAL_INSTRUCTION", 716: "CUDA_ERROR_MISALIGNED_ADDRESS", 717: "CUDA_ERROR_INVALID_ADDRESS_SPACE",
	718: "CUDA_ERROR_INVALID_PC", 719: "CUDA_ERROR_LAUNCH_FAILED", 999: "CUDA_ERROR_UNKNOWN",
}

// cublasStatusNames names the cublasStatus_t codes (cublasGetStatusString
// exists only from cuBLAS 11.4 and gives a description, not the name).
var cublasStatusNames = map[int]string{
	0: "CUBLAS_STATUS_SUCCESS", 1: "CUBLAS_STATUS_NOT_INITIALIZED", 3: "CUBLAS_STATUS_ALLOC_FAILED",
	7: "CUBLAS_STATUS_INVALID_VALUE", 8: "CUBLAS_STATUS_ARCH_MISMATCH", 11: "CUBLAS_STATUS_MAPPING_ERROR",
	13: "CUBLAS_STATUS_EXECUTION_FAILED", 14: "CUBLAS_STATUS_INTERNAL_ERROR", 15: "CUBLAS_STATUS_NOT_SUPPORTED",
	16: "CUBLAS_STATUS_LICENSE_ERROR",
}

// nvrtcResultNames names the nvrtcResult codes, for when
// nvrtcGetErrorString is unusable.
var nvrtcResultNames = map[int]string{
	0: "NVRTC_SUCCESS", 1: "NVRTC_ERROR_OUT_OF_MEMORY", 2: "NVRTC_ERROR_PROGRAM_CREATION_FAILURE",
	3: "NVRTC_ERROR_INVALID_INPUT", 4: "NVRTC_ERROR_INVALID_PROGRAM", 5: "NVRTC_ERROR_INVALID_OPTION",
	6: "NVRTC_ERROR_COMPILATION", 7: "NVRTC_ERROR_BUILTIN_OPERATION_FAILURE",
	8: "NVRTC_ERROR_NO_NAME_EXPRESSIONS_AFTER_COMPILATION", 9: "NVRTC_ERROR_NO_LOWERED_NAMES_BEFORE_COMPILATION",
	10: "NVRTC_ERROR_NAME_EXPRESSION_NOT_VALID", 11: "NVRTC_ERROR_INTERNAL_ERROR",
}

func nameOr(names map[int]string, code int, prefix string) string {
	if n, ok := names[code]; ok {
		return n
	}
	return fmt.Sprintf("%s_%d", prefix, code)
}

// goString copies a NUL-terminated C string.
func goString(p *byte) string {
	if p == nil {
		return ""
	}
	n := 0
	for *(*byte)(unsafe.Add(unsafe.Pointer(p), n)) != 0 {
		n++
	}
	return string(unsafe.Slice(p, n))
}

// cString returns s as a NUL-terminated byte slice.
func cString(s string) []byte {
	b := make([]byte, len(s)+1)
	copy(b, s)
	return b
}

// trimNUL returns b up to its first NUL.
func trimNUL(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
