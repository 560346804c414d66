package cuda

import "unsafe"

// gpu is what Backend needs from a device. The real one is device (the
// driver API, NVRTC's kernels, cuBLAS); the package's tests also run the
// Backend on a host emulation of it (kernels.cu compiled for the CPU), so
// that everything but the CUDA libraries is checked on machines without a
// GPU.
type gpu interface {
	// do runs f with the device ready for the calls below, which may
	// only be made inside f.
	do(f func() error) error
	// launch runs a kernel of kernels.cu over n work items; args are
	// devPtr (0 for an optional pointer the kernel tests), int64, uint32,
	// float32 or float64, in the kernel's order.
	launch(name string, n int64, args ...any) error
	alloc(bytes uintptr) (devPtr, error)
	release(p devPtr) error
	copyIn(dst devPtr, src unsafe.Pointer, bytes uintptr) error
	copyOut(dst unsafe.Pointer, src devPtr, bytes uintptr) error
	// gemm has cublasSgemm_v2's meaning: column-major matrices.
	gemm(opA, opB int32, m, n, k int, alpha float32, a devPtr, lda int, b devPtr, ldb int, beta float32, c devPtr, ldc int) error
	// sync waits for all work issued and reports its failure.
	sync() error
	describe() Info
	close() error
}

// devPtr is a device address (CUdeviceptr).
type devPtr uint64

// offset returns p advanced by n float32 (or int32) elements.
func (p devPtr) offset(n int) devPtr { return p + devPtr(4*n) }

// buffer is device memory that grows on demand and is reused between calls,
// so that steady training allocates nothing.
type buffer struct {
	ptr   devPtr
	bytes uintptr
}

// ensure makes b hold at least bytes bytes (contents not kept). Runs inside
// do.
func ensure(g gpu, b *buffer, bytes uintptr) error {
	if bytes <= b.bytes {
		return nil
	}
	if err := free(g, b); err != nil {
		return err
	}
	// Round up so that slowly growing batches do not reallocate each time.
	bytes = (bytes + bytes/8 + 255) &^ 255
	p, err := g.alloc(bytes)
	if err != nil {
		return err
	}
	b.ptr, b.bytes = p, bytes
	return nil
}

// free releases b. Runs inside do.
func free(g gpu, b *buffer) error {
	if b.ptr == 0 {
		return nil
	}
	err := g.release(b.ptr)
	b.ptr, b.bytes = 0, 0
	return err
}

// upload copies s into b (growing it) and returns b's address. Runs inside
// do.
func upload[E float32 | int32 | int64](g gpu, b *buffer, s []E) (devPtr, error) {
	var zero E
	bytes := uintptr(len(s)) * unsafe.Sizeof(zero)
	if err := ensure(g, b, max(bytes, 4)); err != nil {
		return 0, err
	}
	if bytes > 0 {
		if err := g.copyIn(b.ptr, unsafe.Pointer(unsafe.SliceData(s)), bytes); err != nil {
			return 0, err
		}
	}
	return b.ptr, nil
}

// download copies len(dst) elements from device address src into dst.
// Runs inside do.
func download[E float32 | int32 | float64](g gpu, dst []E, src devPtr) error {
	if len(dst) == 0 {
		return nil
	}
	var zero E
	return g.copyOut(unsafe.Pointer(unsafe.SliceData(dst)), src, uintptr(len(dst))*unsafe.Sizeof(zero))
}
