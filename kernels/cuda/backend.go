package cuda

import (
	"errors"
	"fmt"
	"math"

	"github.com/dpcnn/dpcnn/kernels"
)

// Backend is kernels.Backend[float32] on an NVIDIA GPU: convolutions are
// im2col kernels plus cuBLAS SGEMM, everything else is the CUDA C of
// kernels.cu.
//
// It computes two ways. Device (see there) is the one networks use:
// tensors allocated in GPU memory, every primitive on them where they are,
// failures latched and returned by Sync. The methods of kernels.Backend
// take host slices instead, so each call uploads its inputs into device
// buffers that are kept and reused between calls, runs the same launcher
// as Device and downloads its outputs before returning; the optimizers'
// updates of host parameters (the coordinator's) and the conformance suite
// use them. Intermediate data of a call (the im2col patch matrices, which
// are the large ones) never leaves the device either way.
//
// The host-slice methods check their arguments as the CPU backend does,
// before anything touches the device, and panic with the same messages
// (with "cuda" for "cpu"); having no error result, they panic with an
// *Error naming the call when the device or a CUDA library fails. After a
// sticky error (a fault inside a kernel) the device refuses all further
// work and the process should be restarted. Like every Backend it is not
// safe for concurrent use; separate Backends may be used from separate
// goroutines.
type Backend struct {
	dev  gpu
	bufs [numBufs]buffer
	ones buffer // onesLen float32 ones: the left operand of bias gradients
	// onesLen is how many ones the buffer holds.
	onesLen int
	// Host scratch for SoftmaxCrossEntropy's per-row results.
	rowLoss    []float64
	rowCorrect []int32
	// bnChannels is host scratch for the per-channel vectors of a batch
	// normalisation, which travel packed into one buffer each way.
	bnChannels []float32
	// maxColFloats bounds the patch matrix of one chunk of a convolution.
	maxColFloats int
	// tensors is the Device: tensors allocated by the backend and the
	// primitives on them.
	tensors deviceOps
}

var _ kernels.Backend[float32] = (*Backend)(nil)

// Device buffers, by role: inputs and outputs of a call in order, the
// patch matrix, and the per-row results of the loss.
const (
	buf0 = iota
	buf1
	buf2
	buf3
	buf4
	buf5
	bufCol
	numBufs
)

// New opens the device o.Ordinal, compiles (or loads from the cache) the
// kernels and creates a cuBLAS handle. An error for which IsUnavailable is
// true means this machine has no usable CUDA device.
func New(o Options) (*Backend, error) {
	dev, err := openDevice(o)
	if err != nil {
		return nil, err
	}
	return newBackend(dev), nil
}

func newBackend(g gpu) *Backend {
	b := &Backend{dev: g, maxColFloats: defaultMaxColFloats}
	b.tensors.b = b
	return b
}

// Name reports "cuda".
func (*Backend) Name() string { return "cuda" }

// Info describes the device, the libraries loaded and how the kernels were
// obtained.
func (b *Backend) Info() Info { return b.dev.describe() }

// Sync waits for all work issued to the device and reports a failure of
// any of it.
func (b *Backend) Sync() error {
	return b.dev.do(b.dev.sync)
}

// Close frees the device memory, the cuBLAS handle and the context. The
// backend must not be used after Close.
func (b *Backend) Close() error {
	if b.dev == nil {
		return nil
	}
	freeErr := b.dev.do(func() error {
		var first error
		for i := range b.bufs {
			if err := free(b.dev, &b.bufs[i]); err != nil && first == nil {
				first = err
			}
		}
		if err := free(b.dev, &b.ones); err != nil && first == nil {
			first = err
		}
		if err := b.tensors.freeAll(b.dev); err != nil && first == nil {
			first = err
		}
		return first
	})
	closeErr := b.dev.close()
	b.dev = nil
	if closeErr != nil {
		return closeErr
	}
	return freeErr
}

// run does f on the device and panics with its error: the methods of
// kernels.Backend return none (see Backend). A worker recovers such a
// panic into a failed assignment.
func (b *Backend) run(f func(d gpu) error) {
	if err := b.try(f); err != nil {
		panic(err)
	}
}

// try does f on the device and returns its error: the path of the
// Device, which latches it.
func (b *Backend) try(f func(d gpu) error) error {
	if b.dev == nil {
		return errors.New("kernels: cuda: backend is not open (create it with cuda.New)")
	}
	return b.dev.do(func() error { return f(b.dev) })
}

// need panics when a caller passes a slice shorter than its geometry
// implies, with the CPU backend's message.
func need(what string, s []float32, n int) {
	if len(s) < n {
		panic(shortSlice(what, len(s), n))
	}
}

func needIndex(what string, s []int32, n int) {
	if len(s) < n {
		panic(shortSlice(what, len(s), n))
	}
}

func shortSlice(what string, have, need int) string {
	return fmt.Sprintf("kernels: cuda: %s has %d elements, need %d", what, have, need)
}

func checkConv(g kernels.ConvGeom) {
	if err := g.Validate(); err != nil {
		panic(err)
	}
}

func checkPool(g kernels.PoolGeom) {
	if err := g.Validate(); err != nil {
		panic(err)
	}
}

// sgemm is Gemm on device matrices: row-major C = alpha·op(A)·op(B) +
// beta·C. cuBLAS is column-major, where a row-major matrix reads as its
// transpose, so it computes Cᵀ = op(B)ᵀ·op(A)ᵀ: the operands swap places
// (and m with n), each keeping its own transpose flag. Runs inside do.
func (b *Backend) sgemm(d gpu, transA, transB bool, m, n, k int, alpha float32, a devPtr, lda int, bm devPtr, ldb int, beta float32, c devPtr, ldc int) error {
	for _, v := range [...]int{m, n, k, lda, ldb, ldc} {
		if v > math.MaxInt32 {
			return fmt.Errorf("cuda: sgemm m=%d n=%d k=%d lda=%d ldb=%d ldc=%d: a size exceeds cuBLAS's 32-bit int", m, n, k, lda, ldb, ldc)
		}
	}
	op := func(t bool) int32 {
		if t {
			return cublasOpT
		}
		return cublasOpN
	}
	if err := d.gemm(op(transB), op(transA), n, m, k, alpha, bm, ldb, a, lda, beta, c, ldc); err != nil {
		if e, ok := err.(*Error); ok && e.Context == "" {
			e.Context = fmt.Sprintf("gemm transA=%v transB=%v m=%d n=%d k=%d lda=%d ldb=%d ldc=%d", transA, transB, m, n, k, lda, ldb, ldc)
		}
		return err
	}
	return nil
}

// onesFor returns a device vector of at least n ones. Runs inside do.
func (b *Backend) onesFor(d gpu, n int) (devPtr, error) {
	if n > b.onesLen {
		if err := ensure(d, &b.ones, uintptr(4*n)); err != nil {
			return 0, err
		}
		b.onesLen = int(b.ones.bytes / 4)
		if err := d.launch("dp_fill", int64(b.onesLen), b.ones.ptr, int64(b.onesLen), float32(1)); err != nil {
			return 0, err
		}
	}
	return b.ones.ptr, nil
}

// columnSums writes (or, with beta 1, adds) the column sums of the
// rows×cols matrix m to sum, as onesᵀ·m. Runs inside do.
func (b *Backend) columnSums(d gpu, rows, cols int, m devPtr, beta float32, sum devPtr) error {
	ones, err := b.onesFor(d, rows)
	if err != nil {
		return err
	}
	return b.sgemm(d, false, false, 1, cols, rows, 1, ones, rows, m, cols, beta, sum, cols)
}

// output returns buffer i grown to n floats. Runs inside do.
func (b *Backend) output(d gpu, i, n int) (devPtr, error) {
	err := ensure(d, &b.bufs[i], uintptr(4*max(n, 1)))
	return b.bufs[i].ptr, err
}

// Gemm computes C = alpha·op(A)·op(B) + beta·C with cuBLAS (or, when
// alpha or k is 0, C = beta·C without reading A and B).
func (b *Backend) Gemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, bm []float32, ldb int, beta float32, c []float32, ldc int) {
	if m <= 0 || n <= 0 {
		return
	}
	cLen := (m-1)*ldc + n
	need("gemm c", c, cLen)
	product := k > 0 && alpha != 0
	var aLen, bLen int
	if product {
		if transA {
			aLen = (k-1)*lda + m
		} else {
			aLen = (m-1)*lda + k
		}
		need("gemm a", a, aLen)
		if transB {
			bLen = (n-1)*ldb + k
		} else {
			bLen = (k-1)*ldb + n
		}
		need("gemm b", bm, bLen)
	}
	b.run(func(d gpu) error {
		var cp devPtr
		var err error
		// C is uploaded when it is read, and when it has gaps between its
		// rows: the whole span is downloaded, gaps included, so they must
		// hold what the caller had there.
		if beta != 0 || ldc != n {
			cp, err = upload(d, &b.bufs[buf2], c[:cLen])
		} else {
			cp, err = b.output(d, buf2, cLen)
		}
		if err != nil {
			return err
		}
		if !product {
			if err := d.launch("dp_scale_matrix", int64(m)*int64(n), cp, int64(m), int64(n), int64(ldc), beta); err != nil {
				return err
			}
		} else {
			ap, err := upload(d, &b.bufs[buf0], a[:aLen])
			if err != nil {
				return err
			}
			bp, err := upload(d, &b.bufs[buf1], bm[:bLen])
			if err != nil {
				return err
			}
			if err := b.sgemm(d, transA, transB, m, n, k, alpha, ap, lda, bp, ldb, beta, cp, ldc); err != nil {
				return err
			}
		}
		return download(d, c[:cLen], cp)
	})
}

// defaultMaxColFloats bounds the im2col patch matrix of one chunk of a
// convolution (512 MiB): batches whose patch matrix is larger run in
// chunks of whole samples.
const defaultMaxColFloats = 1 << 27

// convChunk is the number of samples per chunk of a convolution.
func (b *Backend) convChunk(g kernels.ConvGeom) int {
	perSample := g.OH() * g.OW() * g.ColCols()
	return min(max(b.maxColFloats/perSample, 1), g.N)
}

// convArgs are the geometry arguments of the conv kernels for n samples.
func convArgs(g kernels.ConvGeom, n int) []any {
	return []any{int64(n), int64(g.H), int64(g.W), int64(g.C), int64(g.KH), int64(g.KW),
		int64(g.Stride), int64(g.Pad), int64(g.OH()), int64(g.OW())}
}

// Im2Col writes the patch matrix of x.
func (b *Backend) Im2Col(g kernels.ConvGeom, x, col []float32) {
	checkConv(g)
	need("im2col x", x, g.InLen())
	colLen := g.ColRows() * g.ColCols()
	need("im2col col", col, colLen)
	b.run(func(d gpu) error {
		xp, err := upload(d, &b.bufs[buf0], x[:g.InLen()])
		if err != nil {
			return err
		}
		cp, err := b.output(d, buf1, colLen)
		if err != nil {
			return err
		}
		if err := d.launch("dp_im2col", int64(colLen), append([]any{xp, cp}, convArgs(g, g.N)...)...); err != nil {
			return err
		}
		return download(d, col[:colLen], cp)
	})
}

// Col2Im overwrites dx with the adjoint of Im2Col.
func (b *Backend) Col2Im(g kernels.ConvGeom, col, dx []float32) {
	checkConv(g)
	colLen := g.ColRows() * g.ColCols()
	need("col2im col", col, colLen)
	need("col2im dx", dx, g.InLen())
	b.run(func(d gpu) error {
		cp, err := upload(d, &b.bufs[buf0], col[:colLen])
		if err != nil {
			return err
		}
		dp, err := b.output(d, buf1, g.InLen())
		if err != nil {
			return err
		}
		if err := d.launch("dp_col2im", int64(g.InLen()), append([]any{cp, dp}, convArgs(g, g.N)...)...); err != nil {
			return err
		}
		return download(d, dx[:g.InLen()], dp)
	})
}

// ConvForward computes y = conv(x, w) + bias: per chunk of samples, im2col
// then col·W with cuBLAS; then the bias.
func (b *Backend) ConvForward(g kernels.ConvGeom, x, w, bias, y []float32) {
	b.convForward(g, x, w, bias, y, "dp_add_bias")
}

// ConvForwardReLU computes y = max(conv(x, w) + bias, 0): ConvForward with
// the ReLU applied together with the bias.
func (b *Backend) ConvForwardReLU(g kernels.ConvGeom, x, w, bias, y []float32) {
	b.convForward(g, x, w, bias, y, "dp_add_bias_relu")
}

// convForward is ConvForward with epilogue, the kernel that adds the bias.
func (b *Backend) convForward(g kernels.ConvGeom, x, w, bias, y []float32, epilogue string) {
	checkConv(g)
	need("conv x", x, g.InLen())
	need("conv w", w, g.FilterLen())
	need("conv bias", bias, g.OC)
	need("conv y", y, g.OutLen())
	b.run(func(d gpu) error {
		xp, err := upload(d, &b.bufs[buf0], x[:g.InLen()])
		if err != nil {
			return err
		}
		wp, err := upload(d, &b.bufs[buf1], w[:g.FilterLen()])
		if err != nil {
			return err
		}
		bp, err := upload(d, &b.bufs[buf2], bias[:g.OC])
		if err != nil {
			return err
		}
		yp, err := b.output(d, buf3, g.OutLen())
		if err != nil {
			return err
		}
		if err := b.convForwardOn(d, g, xp, wp, bp, yp, epilogue); err != nil {
			return err
		}
		return download(d, y[:g.OutLen()], yp)
	})
}

// convForwardOn is ConvForward on device tensors: per chunk of samples,
// im2col then col·W with cuBLAS; then epilogue adds the bias (and applies
// the ReLU). Runs inside do.
func (b *Backend) convForwardOn(d gpu, g kernels.ConvGeom, xp, wp, bp, yp devPtr, epilogue string) error {
	pixels, k, chunk := g.OH()*g.OW(), g.ColCols(), b.convChunk(g)
	colp, err := b.output(d, bufCol, chunk*pixels*k)
	if err != nil {
		return err
	}
	for n0 := 0; n0 < g.N; n0 += chunk {
		nc := min(chunk, g.N-n0)
		if err := d.launch("dp_im2col", int64(nc*pixels*k), append([]any{xp.offset(n0 * g.H * g.W * g.C), colp}, convArgs(g, nc)...)...); err != nil {
			return err
		}
		if err := b.sgemm(d, false, false, nc*pixels, g.OC, k, 1, colp, k, wp, g.OC, 0, yp.offset(n0*pixels*g.OC), g.OC); err != nil {
			return err
		}
	}
	return d.launch(epilogue, int64(g.OutLen()), yp, bp, int64(g.ColRows()), int64(g.OC))
}

// ConvBackwardData computes dx = col2im(dy·Wᵀ), per chunk of samples.
func (b *Backend) ConvBackwardData(g kernels.ConvGeom, dy, w, dx []float32) {
	checkConv(g)
	need("conv dy", dy, g.OutLen())
	need("conv w", w, g.FilterLen())
	need("conv dx", dx, g.InLen())
	b.run(func(d gpu) error {
		dyp, err := upload(d, &b.bufs[buf0], dy[:g.OutLen()])
		if err != nil {
			return err
		}
		wp, err := upload(d, &b.bufs[buf1], w[:g.FilterLen()])
		if err != nil {
			return err
		}
		dxp, err := b.output(d, buf2, g.InLen())
		if err != nil {
			return err
		}
		if err := b.convBackwardDataOn(d, g, dyp, wp, dxp); err != nil {
			return err
		}
		return download(d, dx[:g.InLen()], dxp)
	})
}

// convBackwardDataOn is ConvBackwardData on device tensors. Runs inside do.
func (b *Backend) convBackwardDataOn(d gpu, g kernels.ConvGeom, dyp, wp, dxp devPtr) error {
	pixels, k, chunk := g.OH()*g.OW(), g.ColCols(), b.convChunk(g)
	colp, err := b.output(d, bufCol, chunk*pixels*k)
	if err != nil {
		return err
	}
	for n0 := 0; n0 < g.N; n0 += chunk {
		nc := min(chunk, g.N-n0)
		if err := b.sgemm(d, false, true, nc*pixels, k, g.OC, 1, dyp.offset(n0*pixels*g.OC), g.OC, wp, g.OC, 0, colp, k); err != nil {
			return err
		}
		if err := d.launch("dp_col2im", int64(nc*g.H*g.W*g.C), append([]any{colp, dxp.offset(n0 * g.H * g.W * g.C)}, convArgs(g, nc)...)...); err != nil {
			return err
		}
	}
	return nil
}

// ConvBackwardFilter computes dw = colᵀ·dy and dbias = Σ rows of dy, per
// chunk of samples, the chunks added in order by the GEMMs (beta = 1).
func (b *Backend) ConvBackwardFilter(g kernels.ConvGeom, x, dy, dw, dbias []float32) {
	checkConv(g)
	need("conv x", x, g.InLen())
	need("conv dy", dy, g.OutLen())
	need("conv dw", dw, g.FilterLen())
	need("conv dbias", dbias, g.OC)
	b.run(func(d gpu) error {
		xp, err := upload(d, &b.bufs[buf0], x[:g.InLen()])
		if err != nil {
			return err
		}
		dyp, err := upload(d, &b.bufs[buf1], dy[:g.OutLen()])
		if err != nil {
			return err
		}
		dwp, err := b.output(d, buf2, g.FilterLen())
		if err != nil {
			return err
		}
		dbp, err := b.output(d, buf3, g.OC)
		if err != nil {
			return err
		}
		if err := b.convBackwardFilterOn(d, g, xp, dyp, dwp, dbp); err != nil {
			return err
		}
		if err := download(d, dw[:g.FilterLen()], dwp); err != nil {
			return err
		}
		return download(d, dbias[:g.OC], dbp)
	})
}

// convBackwardFilterOn is ConvBackwardFilter on device tensors. Runs
// inside do.
func (b *Backend) convBackwardFilterOn(d gpu, g kernels.ConvGeom, xp, dyp, dwp, dbp devPtr) error {
	pixels, k, chunk := g.OH()*g.OW(), g.ColCols(), b.convChunk(g)
	colp, err := b.output(d, bufCol, chunk*pixels*k)
	if err != nil {
		return err
	}
	var beta float32
	for n0 := 0; n0 < g.N; n0 += chunk {
		nc := min(chunk, g.N-n0)
		rows := nc * pixels
		if err := d.launch("dp_im2col", int64(rows*k), append([]any{xp.offset(n0 * g.H * g.W * g.C), colp}, convArgs(g, nc)...)...); err != nil {
			return err
		}
		dyc := dyp.offset(n0 * pixels * g.OC)
		if err := b.sgemm(d, true, false, k, g.OC, rows, 1, colp, k, dyc, g.OC, beta, dwp, g.OC); err != nil {
			return err
		}
		if err := b.columnSums(d, rows, g.OC, dyc, beta, dbp); err != nil {
			return err
		}
		beta = 1
	}
	return nil
}

// AddBias adds bias[j] to y[i·cols + j] for every row i.
func (b *Backend) AddBias(rows, cols int, bias, y []float32) {
	need("bias", bias, cols)
	need("y", y, rows*cols)
	if rows <= 0 || cols <= 0 {
		return
	}
	b.run(func(d gpu) error {
		bp, err := upload(d, &b.bufs[buf0], bias[:cols])
		if err != nil {
			return err
		}
		yp, err := upload(d, &b.bufs[buf1], y[:rows*cols])
		if err != nil {
			return err
		}
		if err := d.launch("dp_add_bias", int64(rows*cols), yp, bp, int64(rows), int64(cols)); err != nil {
			return err
		}
		return download(d, y[:rows*cols], yp)
	})
}

func poolArgs(g kernels.PoolGeom) []any {
	return []any{int64(g.N), int64(g.H), int64(g.W), int64(g.C), int64(g.Size), int64(g.Stride), int64(g.Pad), int64(g.OH()), int64(g.OW())}
}

// checkIndexRange panics when x is too long for int32 arg-max indices.
func checkIndexRange(g kernels.PoolGeom) {
	if g.InLen() > math.MaxInt32 {
		panic(fmt.Sprintf("kernels: cuda: maxpool input of %d elements: arg-max indices are int32", g.InLen()))
	}
}

// MaxPoolForward writes each window's maximum and the index into x of the
// first cell (in row-major window order) that holds it.
func (b *Backend) MaxPoolForward(g kernels.PoolGeom, x, y []float32, argmax []int32) {
	checkPool(g)
	need("maxpool x", x, g.InLen())
	need("maxpool y", y, g.OutLen())
	needIndex("maxpool argmax", argmax, g.OutLen())
	checkIndexRange(g)
	b.run(func(d gpu) error {
		xp, err := upload(d, &b.bufs[buf0], x[:g.InLen()])
		if err != nil {
			return err
		}
		yp, err := b.output(d, buf1, g.OutLen())
		if err != nil {
			return err
		}
		ap, err := b.output(d, buf2, g.OutLen())
		if err != nil {
			return err
		}
		if err := maxPoolForwardOn(d, g, xp, yp, ap); err != nil {
			return err
		}
		if err := download(d, y[:g.OutLen()], yp); err != nil {
			return err
		}
		return download(d, argmax[:g.OutLen()], ap)
	})
}

// MaxPoolBackward overwrites dx with each dy added to the input that won its
// window. It gathers: each dx element sums, in output order, the dy of the
// windows that hold it and chose it, so an arg-max outside its own window
// (never produced by MaxPoolForward) is ignored rather than followed.
func (b *Backend) MaxPoolBackward(g kernels.PoolGeom, dy []float32, argmax []int32, dx []float32) {
	checkPool(g)
	need("maxpool dy", dy, g.OutLen())
	needIndex("maxpool argmax", argmax, g.OutLen())
	need("maxpool dx", dx, g.InLen())
	checkIndexRange(g)
	b.run(func(d gpu) error {
		dyp, err := upload(d, &b.bufs[buf0], dy[:g.OutLen()])
		if err != nil {
			return err
		}
		ap, err := upload(d, &b.bufs[buf1], argmax[:g.OutLen()])
		if err != nil {
			return err
		}
		dxp, err := b.output(d, buf2, g.InLen())
		if err != nil {
			return err
		}
		if err := maxPoolBackwardOn(d, g, dyp, ap, dxp); err != nil {
			return err
		}
		return download(d, dx[:g.InLen()], dxp)
	})
}

// AvgPoolForward writes the mean of the cells of each window inside the
// image.
func (b *Backend) AvgPoolForward(g kernels.PoolGeom, x, y []float32) {
	checkPool(g)
	need("avgpool x", x, g.InLen())
	need("avgpool y", y, g.OutLen())
	b.mapOne(x[:g.InLen()], y[:g.OutLen()], func(d gpu, in, out devPtr) error { return avgPoolForwardOn(d, g, in, out) })
}

// AvgPoolBackward overwrites dx with each dy spread evenly over the cells of
// its window inside the image.
func (b *Backend) AvgPoolBackward(g kernels.PoolGeom, dy, dx []float32) {
	checkPool(g)
	need("avgpool dy", dy, g.OutLen())
	need("avgpool dx", dx, g.InLen())
	b.mapOne(dy[:g.OutLen()], dx[:g.InLen()], func(d gpu, in, out devPtr) error { return avgPoolBackwardOn(d, g, in, out) })
}

// mapOne uploads in, runs f on it and an output buffer, and downloads the
// output into out.
func (b *Backend) mapOne(in, out []float32, f func(d gpu, in, out devPtr) error) {
	b.run(func(d gpu) error {
		ip, err := upload(d, &b.bufs[buf0], in)
		if err != nil {
			return err
		}
		op, err := b.output(d, buf1, len(out))
		if err != nil {
			return err
		}
		if err := f(d, ip, op); err != nil {
			return err
		}
		return download(d, out, op)
	})
}

// elementwise uploads the inputs, runs kernel over n elements with the
// argument list (input pointers, output pointer, n, extra) and downloads
// the output into out.
func (b *Backend) elementwise(kernel string, n int, out []float32, extra []any, inputs ...[]float32) {
	if n <= 0 {
		return
	}
	b.run(func(d gpu) error {
		var ptrs [2]devPtr
		for i, in := range inputs {
			p, err := upload(d, &b.bufs[i], in[:n])
			if err != nil {
				return err
			}
			ptrs[i] = p
		}
		op, err := b.output(d, len(inputs), n)
		if err != nil {
			return err
		}
		if err := elementwiseOn(d, kernel, n, op, extra, ptrs[:len(inputs)]...); err != nil {
			return err
		}
		return download(d, out[:n], op)
	})
}

// ReLUForward computes y = max(x, 0).
func (b *Backend) ReLUForward(x, y []float32) {
	need("relu y", y, len(x))
	b.elementwise("dp_relu_fwd", len(x), y, nil, x)
}

// ReLUBackward computes dx = dy where y > 0, else 0.
func (b *Backend) ReLUBackward(y, dy, dx []float32) {
	need("relu y", y, len(dy))
	need("relu dx", dx, len(dy))
	b.elementwise("dp_relu_bwd", len(dy), dx, nil, y, dy)
}

// SigmoidForward computes y = 1/(1+e^−x).
func (b *Backend) SigmoidForward(x, y []float32) {
	need("sigmoid y", y, len(x))
	b.elementwise("dp_sigmoid_fwd", len(x), y, nil, x)
}

// SigmoidBackward computes dx = dy·y·(1−y).
func (b *Backend) SigmoidBackward(y, dy, dx []float32) {
	need("sigmoid y", y, len(dy))
	need("sigmoid dx", dx, len(dy))
	b.elementwise("dp_sigmoid_bwd", len(dy), dx, nil, y, dy)
}

// AffineForward computes y = x·w + bias.
func (b *Backend) AffineForward(n, in, out int, x, w, bias, y []float32) {
	need("affine x", x, n*in)
	need("affine w", w, in*out)
	need("affine bias", bias, out)
	need("affine y", y, n*out)
	if n <= 0 || out <= 0 {
		return
	}
	b.run(func(d gpu) error {
		xp, err := upload(d, &b.bufs[buf0], x[:n*in])
		if err != nil {
			return err
		}
		wp, err := upload(d, &b.bufs[buf1], w[:in*out])
		if err != nil {
			return err
		}
		bp, err := upload(d, &b.bufs[buf2], bias[:out])
		if err != nil {
			return err
		}
		yp, err := b.output(d, buf3, n*out)
		if err != nil {
			return err
		}
		if err := b.affineForwardOn(d, n, in, out, xp, wp, bp, yp); err != nil {
			return err
		}
		return download(d, y[:n*out], yp)
	})
}

// affineForwardOn is AffineForward on device tensors (n, out ≥ 1). Runs
// inside do.
func (b *Backend) affineForwardOn(d gpu, n, in, out int, xp, wp, bp, yp devPtr) error {
	var err error
	if in > 0 {
		err = b.sgemm(d, false, false, n, out, in, 1, xp, in, wp, out, 0, yp, out)
	} else {
		err = d.launch("dp_fill", int64(n*out), yp, int64(n*out), float32(0))
	}
	if err != nil {
		return err
	}
	return d.launch("dp_add_bias", int64(n*out), yp, bp, int64(n), int64(out))
}

// AffineBackward computes dx = dy·wᵀ (unless dx is nil), dw = xᵀ·dy and
// dbias = Σ rows of dy.
func (b *Backend) AffineBackward(n, in, out int, x, w, dy, dx, dw, dbias []float32) {
	need("affine x", x, n*in)
	need("affine dy", dy, n*out)
	need("affine dw", dw, in*out)
	need("affine dbias", dbias, out)
	if dx != nil {
		need("affine w", w, in*out)
		need("affine dx", dx, n*in)
	}
	if out <= 0 {
		if dx != nil {
			clear(dx[:max(n*in, 0)]) // a sum over no outputs
		}
		return
	}
	if n <= 0 {
		clear(dw[:in*out])
		clear(dbias[:out])
		return
	}
	b.run(func(d gpu) error {
		xp, err := upload(d, &b.bufs[buf0], x[:n*in])
		if err != nil {
			return err
		}
		dyp, err := upload(d, &b.bufs[buf1], dy[:n*out])
		if err != nil {
			return err
		}
		dwp, err := b.output(d, buf2, in*out)
		if err != nil {
			return err
		}
		dbp, err := b.output(d, buf3, out)
		if err != nil {
			return err
		}
		var wp, dxp devPtr
		withDx := dx != nil && in > 0
		if withDx {
			if wp, err = upload(d, &b.bufs[buf4], w[:in*out]); err != nil {
				return err
			}
			if dxp, err = b.output(d, buf5, n*in); err != nil {
				return err
			}
		}
		if err := b.affineBackwardOn(d, n, in, out, xp, wp, dyp, dxp, dwp, dbp); err != nil {
			return err
		}
		if withDx {
			if err := download(d, dx[:n*in], dxp); err != nil {
				return err
			}
		}
		if in > 0 {
			if err := download(d, dw[:in*out], dwp); err != nil {
				return err
			}
		}
		return download(d, dbias[:out], dbp)
	})
}

// affineBackwardOn is AffineBackward on device tensors (n, out ≥ 1); dxp
// 0 means no input gradient. Runs inside do.
func (b *Backend) affineBackwardOn(d gpu, n, in, out int, xp, wp, dyp, dxp, dwp, dbp devPtr) error {
	if in > 0 {
		if dxp != 0 {
			if err := b.sgemm(d, false, true, n, in, out, 1, dyp, out, wp, out, 0, dxp, in); err != nil {
				return err
			}
		}
		if err := b.sgemm(d, true, false, in, out, n, 1, xp, in, dyp, out, 0, dwp, out); err != nil {
			return err
		}
	}
	return b.columnSums(d, n, out, dyp, 0, dbp)
}

// SoftmaxCrossEntropy computes the probabilities, the scaled gradient and
// the per-row losses on the device, one thread per row in double; the host
// adds the losses in row order.
func (b *Backend) SoftmaxCrossEntropy(n, classes int, logits []float32, labels []int32, scale float32, probs, dlogits []float32) (lossSum float64, correct int) {
	need("softmax logits", logits, n*classes)
	need("softmax probs", probs, n*classes)
	need("softmax dlogits", dlogits, n*classes)
	needIndex("softmax labels", labels, n)
	for i, label := range labels[:max(n, 0)] {
		if label < 0 || int(label) >= classes {
			panic(fmt.Sprintf("kernels: cuda: row %d: label %d outside [0, %d)", i, label, classes))
		}
	}
	if n <= 0 {
		return 0, 0
	}
	if cap(b.rowLoss) < n {
		b.rowLoss, b.rowCorrect = make([]float64, n), make([]int32, n)
	}
	rowLoss, rowCorrect := b.rowLoss[:n], b.rowCorrect[:n]
	b.run(func(d gpu) error {
		lp, err := upload(d, &b.bufs[buf0], logits[:n*classes])
		if err != nil {
			return err
		}
		labp, err := upload(d, &b.bufs[buf1], labels[:n])
		if err != nil {
			return err
		}
		pp, err := b.output(d, buf2, n*classes)
		if err != nil {
			return err
		}
		dp, err := b.output(d, buf3, n*classes)
		if err != nil {
			return err
		}
		rlp, err := b.output(d, buf4, 2*n) // float64s
		if err != nil {
			return err
		}
		rcp, err := b.output(d, buf5, n)
		if err != nil {
			return err
		}
		if err := softmaxOn(d, n, classes, lp, labp, scale, pp, dp, rlp, rcp); err != nil {
			return err
		}
		for _, o := range []struct {
			dst []float32
			src devPtr
		}{{probs[:n*classes], pp}, {dlogits[:n*classes], dp}} {
			if err := download(d, o.dst, o.src); err != nil {
				return err
			}
		}
		if err := download(d, rowLoss, rlp); err != nil {
			return err
		}
		return download(d, rowCorrect, rcp)
	})
	for i := range n {
		lossSum += rowLoss[i]
		correct += int(rowCorrect[i])
	}
	return lossSum, correct
}

// DropoutForward draws each row's mask on the device from the same Philox
// stream as kernels.FillDropoutMask and multiplies, in training; at test
// time it scales by kernels.DropoutTestScale and leaves mask alone.
func (b *Backend) DropoutForward(d kernels.DropoutParams, rows, cols int, samples []int64, x, y, mask []float32) {
	need("dropout x", x, rows*cols)
	need("dropout y", y, rows*cols)
	if !d.Train {
		b.elementwise("dp_scale", rows*cols, y, dropoutTestArgs(d), x)
		return
	}
	need("dropout mask", mask, rows*cols)
	if len(samples) < rows {
		panic(shortSlice("dropout samples", len(samples), rows))
	}
	n := rows * cols
	if n <= 0 {
		return
	}
	b.run(func(dev gpu) error {
		xp, err := upload(dev, &b.bufs[buf0], x[:n])
		if err != nil {
			return err
		}
		sp, err := upload(dev, &b.bufs[buf1], samples[:rows])
		if err != nil {
			return err
		}
		yp, err := b.output(dev, buf2, n)
		if err != nil {
			return err
		}
		mp, err := b.output(dev, buf3, n)
		if err != nil {
			return err
		}
		if err := dropoutForwardOn(dev, d, rows, cols, sp, xp, yp, mp); err != nil {
			return err
		}
		if err := download(dev, y[:n], yp); err != nil {
			return err
		}
		return download(dev, mask[:n], mp)
	})
}

// DropoutBackward computes dx = dy·mask.
func (b *Backend) DropoutBackward(mask, dy, dx []float32) {
	need("dropout mask", mask, len(dy))
	need("dropout dx", dx, len(dy))
	b.elementwise("dp_mul", len(dy), dx, nil, dy, mask)
}

// lrnWindow is the channel window of kernels.LRNParams: before channels
// before, after after (one more after when Size is even).
func lrnWindow(p kernels.LRNParams) (before, after int64) {
	before = int64((p.Size - 1) / 2)
	return before, int64(p.Size-1) - before
}

// LRNForward normalises across channels (see kernels.LRNParams).
func (b *Backend) LRNForward(p kernels.LRNParams, x, y, scale []float32) {
	n := p.Rows * p.C
	need("lrn x", x, n)
	need("lrn y", y, n)
	need("lrn scale", scale, n)
	if p.Rows <= 0 || p.C <= 0 {
		return
	}
	b.run(func(d gpu) error {
		xp, err := upload(d, &b.bufs[buf0], x[:n])
		if err != nil {
			return err
		}
		yp, err := b.output(d, buf1, n)
		if err != nil {
			return err
		}
		sp, err := b.output(d, buf2, n)
		if err != nil {
			return err
		}
		if err := lrnForwardOn(d, p, xp, yp, sp); err != nil {
			return err
		}
		if err := download(d, y[:n], yp); err != nil {
			return err
		}
		return download(d, scale[:n], sp)
	})
}

// LRNBackward computes dx from x, y, scale and dy.
func (b *Backend) LRNBackward(p kernels.LRNParams, x, y, scale, dy, dx []float32) {
	n := p.Rows * p.C
	for _, s := range [...][]float32{x, y, scale, dy, dx} {
		need("lrn tensor", s, n)
	}
	if p.Rows <= 0 || p.C <= 0 {
		return
	}
	b.run(func(d gpu) error {
		var ptrs [4]devPtr
		for i, s := range [...][]float32{x, y, scale, dy} {
			var err error
			if ptrs[i], err = upload(d, &b.bufs[i], s[:n]); err != nil {
				return err
			}
		}
		dxp, err := b.output(d, buf4, n)
		if err != nil {
			return err
		}
		if err := lrnBackwardOn(d, p, ptrs[0], ptrs[1], ptrs[2], ptrs[3], dxp); err != nil {
			return err
		}
		return download(d, dx[:n], dxp)
	})
}

// packChannels copies the vectors, C floats each, one after the other into
// the backend's host scratch and returns it; nil vectors leave their place
// as it was.
func (b *Backend) packChannels(c int, vecs ...[]float32) []float32 {
	n := c * len(vecs)
	if cap(b.bnChannels) < n {
		b.bnChannels = make([]float32, n)
	}
	packed := b.bnChannels[:n]
	for i, v := range vecs {
		if v != nil {
			copy(packed[i*c:(i+1)*c], v[:c])
		}
	}
	return packed
}

// unpackChannels copies packed (the vectors of packChannels' layout) back
// into the vectors that are not nil.
func unpackChannels(c int, packed []float32, vecs ...[]float32) {
	for i, v := range vecs {
		if v != nil {
			copy(v[:c], packed[i*c:(i+1)*c])
		}
	}
}

// orNull is p, or 0 (an output not wanted) when s is nil.
func orNull(s []float32, p devPtr) devPtr {
	if s == nil {
		return 0
	}
	return p
}

// BatchNormForwardTrain normalises each channel with the batch's mean and
// biased variance (see kernels.Reference.BatchNormForwardTrain). gamma and
// beta go up packed in one buffer, the four per-channel outputs come back
// in another.
func (b *Backend) BatchNormForwardTrain(p kernels.BatchNormParams, x, gamma, beta, y, mean, invStd, meanStat, varStat []float32) {
	n, c := p.Rows*p.C, p.C
	need("batchnorm x", x, n)
	need("batchnorm gamma", gamma, c)
	need("batchnorm beta", beta, c)
	need("batchnorm y", y, n)
	need("batchnorm mean", mean, c)
	need("batchnorm invStd", invStd, c)
	if meanStat != nil {
		need("batchnorm meanStat", meanStat, c)
	}
	if varStat != nil {
		need("batchnorm varStat", varStat, c)
	}
	if p.Rows < 0 || c <= 0 {
		return
	}
	b.run(func(d gpu) error {
		xp, err := upload(d, &b.bufs[buf0], x[:n])
		if err != nil {
			return err
		}
		gb, err := upload(d, &b.bufs[buf1], b.packChannels(c, gamma, beta))
		if err != nil {
			return err
		}
		yp, err := b.output(d, buf2, n)
		if err != nil {
			return err
		}
		stats, err := b.output(d, buf3, 4*c)
		if err != nil {
			return err
		}
		if err := bnForwardTrainOn(d, p, xp, gb, gb.offset(c), yp, stats, stats.offset(c),
			orNull(meanStat, stats.offset(2*c)), orNull(varStat, stats.offset(3*c))); err != nil {
			return err
		}
		if err := download(d, y[:n], yp); err != nil {
			return err
		}
		packed := b.packChannels(c, nil, nil, nil, nil)
		if err := download(d, packed, stats); err != nil {
			return err
		}
		unpackChannels(c, packed, mean, invStd, meanStat, varStat)
		return nil
	})
}

// BatchNormForwardInfer normalises with the running statistics: y =
// gamma·(x−runMean)/√(runVar+Eps) + beta. The four per-channel inputs go
// up packed in one buffer.
func (b *Backend) BatchNormForwardInfer(p kernels.BatchNormParams, x, gamma, beta, runMean, runVar, y []float32) {
	n, c := p.Rows*p.C, p.C
	need("batchnorm x", x, n)
	need("batchnorm gamma", gamma, c)
	need("batchnorm beta", beta, c)
	need("batchnorm runMean", runMean, c)
	need("batchnorm runVar", runVar, c)
	need("batchnorm y", y, n)
	if p.Rows <= 0 || c <= 0 {
		return
	}
	b.run(func(d gpu) error {
		xp, err := upload(d, &b.bufs[buf0], x[:n])
		if err != nil {
			return err
		}
		per, err := upload(d, &b.bufs[buf1], b.packChannels(c, gamma, beta, runMean, runVar))
		if err != nil {
			return err
		}
		yp, err := b.output(d, buf2, n)
		if err != nil {
			return err
		}
		if err := bnForwardInferOn(d, p, xp, per, per.offset(c), per.offset(2*c), per.offset(3*c), yp); err != nil {
			return err
		}
		return download(d, y[:n], yp)
	})
}

// BatchNormBackward computes dbeta = Σ dy and dgamma = Σ dy·x̂ per channel,
// then dx from them (see kernels.Reference.BatchNormBackward). gamma, mean
// and invStd go up packed in one buffer, dgamma and dbeta come back in
// another.
func (b *Backend) BatchNormBackward(p kernels.BatchNormParams, x, gamma, mean, invStd, dy, dx, dgamma, dbeta []float32) {
	n, c := p.Rows*p.C, p.C
	need("batchnorm x", x, n)
	need("batchnorm gamma", gamma, c)
	need("batchnorm mean", mean, c)
	need("batchnorm invStd", invStd, c)
	need("batchnorm dy", dy, n)
	if dx != nil {
		need("batchnorm dx", dx, n)
	}
	need("batchnorm dgamma", dgamma, c)
	need("batchnorm dbeta", dbeta, c)
	if p.Rows < 0 || c <= 0 {
		return
	}
	b.run(func(d gpu) error {
		xp, err := upload(d, &b.bufs[buf0], x[:n])
		if err != nil {
			return err
		}
		dyp, err := upload(d, &b.bufs[buf1], dy[:n])
		if err != nil {
			return err
		}
		per, err := upload(d, &b.bufs[buf2], b.packChannels(c, gamma, mean, invStd))
		if err != nil {
			return err
		}
		var dxp devPtr
		if dx != nil {
			if dxp, err = b.output(d, buf3, n); err != nil {
				return err
			}
		}
		sums, err := b.output(d, buf4, 2*c)
		if err != nil {
			return err
		}
		if err := bnBackwardOn(d, p, xp, per, per.offset(c), per.offset(2*c), dyp, dxp, sums, sums.offset(c)); err != nil {
			return err
		}
		if dx != nil {
			if err := download(d, dx[:n], dxp); err != nil {
				return err
			}
		}
		packed := b.packChannels(c, nil, nil)
		if err := download(d, packed, sums); err != nil {
			return err
		}
		unpackChannels(c, packed, dgamma, dbeta)
		return nil
	})
}

// update uploads p and the other slices (each len(p) long), runs kernel
// with (pointers…, n, scalars…) and downloads p and the slices marked
// written.
func (b *Backend) update(kernel string, p []float32, scalars []any, slices []float32Slot) {
	n := len(p)
	if n == 0 {
		return
	}
	b.run(func(d gpu) error {
		pp, err := upload(d, &b.bufs[0], p)
		if err != nil {
			return err
		}
		args := []any{pp}
		ptrs := make([]devPtr, len(slices))
		for i, s := range slices {
			if ptrs[i], err = upload(d, &b.bufs[i+1], s.data[:n]); err != nil {
				return err
			}
			args = append(args, ptrs[i])
		}
		args = append(append(args, int64(n)), scalars...)
		if err := d.launch(kernel, int64(n), args...); err != nil {
			return err
		}
		for i, s := range slices {
			if s.written {
				if err := download(d, s.data[:n], ptrs[i]); err != nil {
					return err
				}
			}
		}
		return download(d, p, pp)
	})
}

// float32Slot is an operand of an optimizer update and whether the update
// writes it.
type float32Slot struct {
	data    []float32
	written bool
}

// SGDUpdate computes p −= lr·g.
func (b *Backend) SGDUpdate(lr float64, p, g []float32) {
	need("sgd g", g, len(p))
	b.update("dp_sgd", p, []any{lr}, []float32Slot{{g, false}})
}

// MomentumUpdate computes v = momentum·v − lr·g, then p += v.
func (b *Backend) MomentumUpdate(lr, momentum float64, p, g, v []float32) {
	need("momentum g", g, len(p))
	need("momentum v", v, len(p))
	b.update("dp_momentum", p, []any{lr, momentum}, []float32Slot{{g, false}, {v, true}})
}

// AdaGradUpdate computes h += g², then p −= lr·g/(√h + 1e-7).
func (b *Backend) AdaGradUpdate(lr float64, p, g, h []float32) {
	need("adagrad g", g, len(p))
	need("adagrad h", h, len(p))
	b.update("dp_adagrad", p, []any{lr}, []float32Slot{{g, false}, {h, true}})
}

// AdamUpdate computes lr_t = LR·√(1−β2^T)/(1−β1^T) on the host, then on
// the device m += (1−β1)(g−m), v += (1−β2)(g²−v), p −= lr_t·m/(√v + Eps).
func (b *Backend) AdamUpdate(a kernels.AdamParams, p, g, m, v []float32) {
	need("adam g", g, len(p))
	need("adam m", m, len(p))
	need("adam v", v, len(p))
	t := float64(a.T)
	lrT := a.LR * math.Sqrt(1-math.Pow(a.Beta2, t)) / (1 - math.Pow(a.Beta1, t))
	b.update("dp_adam", p, []any{lrT, 1 - a.Beta1, 1 - a.Beta2, a.Eps}, []float32Slot{{g, false}, {m, true}, {v, true}})
}
