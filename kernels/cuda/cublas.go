package cuda

import (
	"path/filepath"
	"strings"
)

// cublasAPI is the part of cuBLAS (libcublas) the backend uses, bound to the
// _v2 symbols cublas_v2.h maps the plain names to (the plain cublasSgemm is
// the legacy handle-less API with by-value scalars).
type cublasAPI struct {
	lib *Library
	// lt is the libcublasLt preloaded from cuBLAS's directory, or "".
	lt string

	cublasCreate          func(handle *uintptr) int32
	cublasDestroy         func(handle uintptr) int32
	cublasGetVersion      func(handle uintptr, version *int32) int32
	cublasSetStream       func(handle uintptr, stream uintptr) int32
	cublasSetMathMode     func(handle uintptr, mode int32) int32
	cublasSgemm           func(handle uintptr, transA, transB int32, m, n, k int32, alpha *float32, a uint64, lda int32, b uint64, ldb int32, beta *float32, c uint64, ldc int32) int32
	cublasGetStatusString func(status int32) string
}

// cuBLAS enums.
const (
	cublasOpN              = 0
	cublasOpT              = 1
	cublasDefaultMath      = 0
	cublasTF32TensorOpMath = 3
)

var cublasMajors = []string{"13", "12", "11"}

func openCUBLAS(s search, maxMajor int) (*cublasAPI, error) {
	names := versionedNames("libcublas", cublasMajors, maxMajor)
	// libcublas.so.N needs libcublasLt.so.N (DT_NEEDED); when their
	// directory is not on the loader's path (a wheel directory), loading
	// cuBLAS by path fails unless Lt is already loaded, so Lt is preloaded
	// from the directory of each cuBLAS about to be tried.
	beforeOpen := func(path string) {
		preload(filepath.Dir(path), strings.Replace(filepath.Base(path), "libcublas", "libcublasLt", 1))
	}
	lib, err := s.find(libSpec{kind: "cuBLAS", names: names, beforeOpen: beforeOpen})
	if err != nil {
		return nil, err
	}
	c := &cublasAPI{lib: lib}
	c.lt = mappedPath("libcublasLt.so")
	err = bind(lib, []symbol{
		{name: "cublasCreate_v2", fn: &c.cublasCreate},
		{name: "cublasDestroy_v2", fn: &c.cublasDestroy},
		{name: "cublasGetVersion_v2", fn: &c.cublasGetVersion},
		{name: "cublasSetStream_v2", fn: &c.cublasSetStream},
		{name: "cublasSetMathMode", fn: &c.cublasSetMathMode},
		{name: "cublasSgemm_v2", fn: &c.cublasSgemm},
		{name: "cublasGetStatusString", fn: &c.cublasGetStatusString, optional: true},
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (c *cublasAPI) check(fn string, code int32) error {
	if code == 0 {
		return nil
	}
	e := &Error{Lib: libCUBLAS, Func: fn, Code: int(code), Name: nameOr(cublasStatusNames, int(code), "CUBLAS_STATUS")}
	if c.cublasGetStatusString != nil {
		e.Desc = c.cublasGetStatusString(code)
	}
	return e
}
