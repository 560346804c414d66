package cuda

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/dpcnn/dpcnn/kernels"
)

// Device returns the backend's kernels.Device: tensors in GPU memory and
// the primitives of a network computed on them where they are, so that a
// network (model.Network) keeps its parameters, gradients and activations
// on the GPU and a training step moves only its inputs and results over
// the bus. It runs the same kernels and GEMMs, in the same order, as the
// Backend's methods on host slices (which upload into scratch buffers and
// call the same launchers), so the two give the same bits.
//
// Failures are not panics here: the first error of an allocation, copy,
// launch or GEMM (or of a bad argument, such as a tensor too short for its
// geometry) is latched, the work issued after it is skipped, and Sync
// returns it and clears it. A sticky error (a fault inside a kernel)
// leaves the device unusable; Sync then keeps failing.
func (b *Backend) Device() kernels.Device[float32] {
	if b.tensors.b == nil {
		b.tensors.b = b
	}
	return &b.tensors
}

// deviceOps is the Backend's Device and the Memory of its tensors.
type deviceOps struct {
	b *Backend
	// err is the first failure since the last Sync.
	err error
	// allocs are the tensors' allocations, which Close frees.
	allocs map[devPtr]struct{}
	// rowLoss and rowCorrect receive SoftmaxCrossEntropy's per-row
	// results (float64 losses, int32 flags) on the device and on the host.
	rowLoss, rowCorrect buffer
	hostRowLoss         []float64
	hostRowCorrect      []int32
}

var (
	_ kernels.Device[float32] = (*deviceOps)(nil)
	_ kernels.Memory          = (*deviceOps)(nil)
)

func (o *deviceOps) Name() string           { return "cuda" }
func (o *deviceOps) Memory() kernels.Memory { return o }

// Sync waits for the work issued and returns the first failure since the
// last Sync.
func (o *deviceOps) Sync() error {
	if o.err == nil {
		o.err = o.b.try(func(d gpu) error { return d.sync() })
	}
	err := o.err
	o.err = nil
	return err
}

// run does f on the device unless a failure is latched, and latches its
// error (which says "cuda: …" itself), saying which operation failed.
func (o *deviceOps) run(op string, f func(d gpu) error) {
	if o.err != nil {
		return
	}
	if err := o.b.try(f); err != nil {
		o.err = fmt.Errorf("%s: %w", op, err)
	}
}

// check latches the first of errs that is not nil and reports whether
// there was none; op names the operation.
func (o *deviceOps) check(op string, errs ...error) bool {
	if o.err != nil {
		return false
	}
	for _, err := range errs {
		if err != nil {
			o.err = fmt.Errorf("cuda: %s: %w", op, err)
			return false
		}
	}
	return true
}

// has is the check that t holds at least n elements of device memory.
func has[E kernels.Elem](what string, t kernels.Tensor[E], n int) error {
	switch {
	case n > 0 && t.Addr() == 0:
		return fmt.Errorf("%s is not a tensor of device memory", what)
	case t.Len() < n:
		return fmt.Errorf("%s has %d elements, need %d", what, t.Len(), n)
	}
	return nil
}

func ptr[E kernels.Elem](t kernels.Tensor[E]) devPtr { return devPtr(t.Addr()) }

// Alloc returns bytes of device memory for a tensor.
func (o *deviceOps) Alloc(bytes uintptr) (kernels.DevPtr, error) {
	var p devPtr
	err := o.b.try(func(d gpu) error {
		var err error
		p, err = d.alloc(bytes)
		return err
	})
	if err != nil {
		return 0, err
	}
	if o.allocs == nil {
		o.allocs = map[devPtr]struct{}{}
	}
	o.allocs[p] = struct{}{}
	return kernels.DevPtr(p), nil
}

// Free releases a tensor's memory.
func (o *deviceOps) Free(p kernels.DevPtr) error {
	if _, ok := o.allocs[devPtr(p)]; !ok {
		return fmt.Errorf("cuda: free %#x: not a tensor of this backend", p)
	}
	delete(o.allocs, devPtr(p))
	return o.b.try(func(d gpu) error { return d.release(devPtr(p)) })
}

// freeAll releases every tensor. Runs inside do.
func (o *deviceOps) freeAll(d gpu) error {
	var first error
	for p := range o.allocs {
		if err := d.release(p); err != nil && first == nil {
			first = err
		}
	}
	o.allocs = nil
	for _, buf := range []*buffer{&o.rowLoss, &o.rowCorrect} {
		if err := free(d, buf); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// CopyIn copies host memory to a tensor.
func (o *deviceOps) CopyIn(dst kernels.DevPtr, src unsafe.Pointer, bytes uintptr) {
	o.run("copy in", func(d gpu) error { return d.copyIn(devPtr(dst), src, bytes) })
}

// CopyOut copies a tensor to host memory.
func (o *deviceOps) CopyOut(dst unsafe.Pointer, src kernels.DevPtr, bytes uintptr) {
	o.run("copy out", func(d gpu) error { return d.copyOut(dst, devPtr(src), bytes) })
}

func (o *deviceOps) ConvForward(g kernels.ConvGeom, x, w, bias, y kernels.Tensor[float32]) {
	o.convForward("ConvForward", g, x, w, bias, y, "dp_add_bias")
}

func (o *deviceOps) ConvForwardReLU(g kernels.ConvGeom, x, w, bias, y kernels.Tensor[float32]) {
	o.convForward("ConvForwardReLU", g, x, w, bias, y, "dp_add_bias_relu")
}

func (o *deviceOps) convForward(op string, g kernels.ConvGeom, x, w, bias, y kernels.Tensor[float32], epilogue string) {
	if !o.check(op, g.Validate(), has("x", x, g.InLen()), has("w", w, g.FilterLen()), has("bias", bias, g.OC), has("y", y, g.OutLen())) {
		return
	}
	o.run(op, func(d gpu) error { return o.b.convForwardOn(d, g, ptr(x), ptr(w), ptr(bias), ptr(y), epilogue) })
}

func (o *deviceOps) ConvBackwardData(g kernels.ConvGeom, dy, w, dx kernels.Tensor[float32]) {
	const op = "ConvBackwardData"
	if !o.check(op, g.Validate(), has("dy", dy, g.OutLen()), has("w", w, g.FilterLen()), has("dx", dx, g.InLen())) {
		return
	}
	o.run(op, func(d gpu) error { return o.b.convBackwardDataOn(d, g, ptr(dy), ptr(w), ptr(dx)) })
}

func (o *deviceOps) ConvBackwardFilter(g kernels.ConvGeom, x, dy, dw, dbias kernels.Tensor[float32]) {
	const op = "ConvBackwardFilter"
	if !o.check(op, g.Validate(), has("x", x, g.InLen()), has("dy", dy, g.OutLen()), has("dw", dw, g.FilterLen()), has("dbias", dbias, g.OC)) {
		return
	}
	o.run(op, func(d gpu) error { return o.b.convBackwardFilterOn(d, g, ptr(x), ptr(dy), ptr(dw), ptr(dbias)) })
}

// indexRange is checkIndexRange as an error.
func indexRange(g kernels.PoolGeom) error {
	if g.InLen() > math.MaxInt32 {
		return fmt.Errorf("maxpool input of %d elements: arg-max indices are int32", g.InLen())
	}
	return nil
}

func (o *deviceOps) MaxPoolForward(g kernels.PoolGeom, x, y kernels.Tensor[float32], argmax kernels.Tensor[int32]) {
	const op = "MaxPoolForward"
	if !o.check(op, g.Validate(), indexRange(g), has("x", x, g.InLen()), has("y", y, g.OutLen()), has("argmax", argmax, g.OutLen())) {
		return
	}
	o.run(op, func(d gpu) error { return maxPoolForwardOn(d, g, ptr(x), ptr(y), ptr(argmax)) })
}

func (o *deviceOps) MaxPoolBackward(g kernels.PoolGeom, dy kernels.Tensor[float32], argmax kernels.Tensor[int32], dx kernels.Tensor[float32]) {
	const op = "MaxPoolBackward"
	if !o.check(op, g.Validate(), indexRange(g), has("dy", dy, g.OutLen()), has("argmax", argmax, g.OutLen()), has("dx", dx, g.InLen())) {
		return
	}
	o.run(op, func(d gpu) error { return maxPoolBackwardOn(d, g, ptr(dy), ptr(argmax), ptr(dx)) })
}

func (o *deviceOps) AvgPoolForward(g kernels.PoolGeom, x, y kernels.Tensor[float32]) {
	const op = "AvgPoolForward"
	if !o.check(op, g.Validate(), has("x", x, g.InLen()), has("y", y, g.OutLen())) {
		return
	}
	o.run(op, func(d gpu) error { return avgPoolForwardOn(d, g, ptr(x), ptr(y)) })
}

func (o *deviceOps) AvgPoolBackward(g kernels.PoolGeom, dy, dx kernels.Tensor[float32]) {
	const op = "AvgPoolBackward"
	if !o.check(op, g.Validate(), has("dy", dy, g.OutLen()), has("dx", dx, g.InLen())) {
		return
	}
	o.run(op, func(d gpu) error { return avgPoolBackwardOn(d, g, ptr(dy), ptr(dx)) })
}

// elementwise runs kernel over n = the data tensor's length with the
// argument list (inputs, output, n, extra).
func (o *deviceOps) elementwise(op, kernel string, n int, out kernels.Tensor[float32], extra []any, inputs ...kernels.Tensor[float32]) {
	if n <= 0 {
		return
	}
	var errs [3]error
	var ptrs [2]devPtr
	for i, in := range inputs {
		errs[i] = has("input", in, n)
		ptrs[i] = ptr(in)
	}
	errs[len(inputs)] = has("output", out, n)
	if !o.check(op, errs[:]...) {
		return
	}
	o.run(op, func(d gpu) error { return elementwiseOn(d, kernel, n, ptr(out), extra, ptrs[:len(inputs)]...) })
}

func (o *deviceOps) ReLUForward(x, y kernels.Tensor[float32]) {
	o.elementwise("ReLUForward", "dp_relu_fwd", x.Len(), y, nil, x)
}

func (o *deviceOps) ReLUBackward(y, dy, dx kernels.Tensor[float32]) {
	o.elementwise("ReLUBackward", "dp_relu_bwd", dy.Len(), dx, nil, y, dy)
}

func (o *deviceOps) SigmoidForward(x, y kernels.Tensor[float32]) {
	o.elementwise("SigmoidForward", "dp_sigmoid_fwd", x.Len(), y, nil, x)
}

func (o *deviceOps) SigmoidBackward(y, dy, dx kernels.Tensor[float32]) {
	o.elementwise("SigmoidBackward", "dp_sigmoid_bwd", dy.Len(), dx, nil, y, dy)
}

func (o *deviceOps) AffineForward(n, in, out int, x, w, bias, y kernels.Tensor[float32]) {
	const op = "AffineForward"
	if !o.check(op, has("x", x, n*in), has("w", w, in*out), has("bias", bias, out), has("y", y, n*out)) || n <= 0 || out <= 0 {
		return
	}
	o.run(op, func(d gpu) error { return o.b.affineForwardOn(d, n, in, out, ptr(x), ptr(w), ptr(bias), ptr(y)) })
}

func (o *deviceOps) AffineBackward(n, in, out int, x, w, dy, dx, dw, dbias kernels.Tensor[float32]) {
	const op = "AffineBackward"
	var dxErr, wErr error
	withDx := !dx.IsZero()
	if withDx {
		dxErr, wErr = has("dx", dx, n*in), has("w", w, in*out)
	}
	if !o.check(op, has("x", x, n*in), has("dy", dy, n*out), has("dw", dw, in*out), has("dbias", dbias, out), dxErr, wErr) {
		return
	}
	o.run(op, func(d gpu) error {
		if out <= 0 { // a sum over no outputs
			if withDx {
				return d.launch("dp_fill", int64(n*in), ptr(dx), int64(n*in), float32(0))
			}
			return nil
		}
		if n <= 0 {
			if err := d.launch("dp_fill", int64(in*out), ptr(dw), int64(in*out), float32(0)); err != nil {
				return err
			}
			return d.launch("dp_fill", int64(out), ptr(dbias), int64(out), float32(0))
		}
		dxp := devPtr(0)
		if withDx && in > 0 {
			dxp = ptr(dx)
		}
		return o.b.affineBackwardOn(d, n, in, out, ptr(x), ptr(w), ptr(dy), dxp, ptr(dw), ptr(dbias))
	})
}

// SoftmaxCrossEntropy computes the probabilities, the scaled gradient and
// the per-row losses on the device, one thread per row in double, and
// downloads the per-row losses and flags, which the host adds in row
// order: 12 bytes per row.
func (o *deviceOps) SoftmaxCrossEntropy(n, classes int, logits kernels.Tensor[float32], labels kernels.Tensor[int32], scale float32, probs, dlogits kernels.Tensor[float32]) (lossSum float64, correct int) {
	const op = "SoftmaxCrossEntropy"
	m := n * classes
	if !o.check(op, has("logits", logits, m), has("labels", labels, n), has("probs", probs, m), has("dlogits", dlogits, m)) || n <= 0 {
		return 0, 0
	}
	if cap(o.hostRowLoss) < n {
		o.hostRowLoss, o.hostRowCorrect = make([]float64, n), make([]int32, n)
	}
	rowLoss, rowCorrect := o.hostRowLoss[:n], o.hostRowCorrect[:n]
	o.run(op, func(d gpu) error {
		if err := ensure(d, &o.rowLoss, uintptr(8*n)); err != nil {
			return err
		}
		if err := ensure(d, &o.rowCorrect, uintptr(4*n)); err != nil {
			return err
		}
		if err := softmaxOn(d, n, classes, ptr(logits), ptr(labels), scale, ptr(probs), ptr(dlogits), o.rowLoss.ptr, o.rowCorrect.ptr); err != nil {
			return err
		}
		if err := download(d, rowLoss, o.rowLoss.ptr); err != nil {
			return err
		}
		return download(d, rowCorrect, o.rowCorrect.ptr)
	})
	if o.err != nil {
		return 0, 0
	}
	for i := range n {
		lossSum += rowLoss[i]
		correct += int(rowCorrect[i])
	}
	return lossSum, correct
}

func (o *deviceOps) DropoutForward(p kernels.DropoutParams, rows, cols int, samples kernels.Tensor[int64], x, y, mask kernels.Tensor[float32]) {
	const op = "DropoutForward"
	n := rows * cols
	if !p.Train {
		o.elementwise(op, "dp_scale", n, y, dropoutTestArgs(p), x)
		return
	}
	if !o.check(op, has("x", x, n), has("y", y, n), has("mask", mask, n), has("samples", samples, rows)) || n <= 0 {
		return
	}
	o.run(op, func(d gpu) error { return dropoutForwardOn(d, p, rows, cols, ptr(samples), ptr(x), ptr(y), ptr(mask)) })
}

func (o *deviceOps) DropoutBackward(mask, dy, dx kernels.Tensor[float32]) {
	o.elementwise("DropoutBackward", "dp_mul", dy.Len(), dx, nil, dy, mask)
}

func (o *deviceOps) LRNForward(p kernels.LRNParams, x, y, scale kernels.Tensor[float32]) {
	const op = "LRNForward"
	n := p.Rows * p.C
	if !o.check(op, has("x", x, n), has("y", y, n), has("scale", scale, n)) || p.Rows <= 0 || p.C <= 0 {
		return
	}
	o.run(op, func(d gpu) error { return lrnForwardOn(d, p, ptr(x), ptr(y), ptr(scale)) })
}

func (o *deviceOps) LRNBackward(p kernels.LRNParams, x, y, scale, dy, dx kernels.Tensor[float32]) {
	const op = "LRNBackward"
	n := p.Rows * p.C
	if !o.check(op, has("x", x, n), has("y", y, n), has("scale", scale, n), has("dy", dy, n), has("dx", dx, n)) || p.Rows <= 0 || p.C <= 0 {
		return
	}
	o.run(op, func(d gpu) error { return lrnBackwardOn(d, p, ptr(x), ptr(y), ptr(scale), ptr(dy), ptr(dx)) })
}

// bnChecks checks that each tensor of a batch normalisation holds its
// elements (Rows×C or C), skipping an optional one that is the zero Tensor.
func bnChecks(p kernels.BatchNormParams, per ...bnTensor) []error {
	errs := make([]error, 0, len(per))
	for _, t := range per {
		if t.optional && t.t.IsZero() {
			continue
		}
		n := p.C
		if t.rows {
			n = p.Rows * p.C
		}
		errs = append(errs, has(t.name, t.t, n))
	}
	return errs
}

// bnTensor is one tensor argument of a batch normalisation: Rows×C
// elements (rows) or C, and whether it may be the zero Tensor.
type bnTensor struct {
	name     string
	t        kernels.Tensor[float32]
	rows     bool
	optional bool
}

func (o *deviceOps) BatchNormForwardTrain(p kernels.BatchNormParams, x, gamma, beta, y, mean, invStd, meanStat, varStat kernels.Tensor[float32]) {
	const op = "BatchNormForwardTrain"
	errs := bnChecks(p, bnTensor{"x", x, true, false}, bnTensor{"gamma", gamma, false, false}, bnTensor{"beta", beta, false, false},
		bnTensor{"y", y, true, false}, bnTensor{"mean", mean, false, false}, bnTensor{"invStd", invStd, false, false},
		bnTensor{"meanStat", meanStat, false, true}, bnTensor{"varStat", varStat, false, true})
	if !o.check(op, errs...) || p.Rows < 0 || p.C <= 0 {
		return
	}
	o.run(op, func(d gpu) error {
		return bnForwardTrainOn(d, p, ptr(x), ptr(gamma), ptr(beta), ptr(y), ptr(mean), ptr(invStd), ptr(meanStat), ptr(varStat))
	})
}

func (o *deviceOps) BatchNormForwardInfer(p kernels.BatchNormParams, x, gamma, beta, runMean, runVar, y kernels.Tensor[float32]) {
	const op = "BatchNormForwardInfer"
	errs := bnChecks(p, bnTensor{"x", x, true, false}, bnTensor{"gamma", gamma, false, false}, bnTensor{"beta", beta, false, false},
		bnTensor{"runMean", runMean, false, false}, bnTensor{"runVar", runVar, false, false}, bnTensor{"y", y, true, false})
	if !o.check(op, errs...) || p.Rows <= 0 || p.C <= 0 {
		return
	}
	o.run(op, func(d gpu) error {
		return bnForwardInferOn(d, p, ptr(x), ptr(gamma), ptr(beta), ptr(runMean), ptr(runVar), ptr(y))
	})
}

func (o *deviceOps) BatchNormBackward(p kernels.BatchNormParams, x, gamma, mean, invStd, dy, dx, dgamma, dbeta kernels.Tensor[float32]) {
	const op = "BatchNormBackward"
	errs := bnChecks(p, bnTensor{"x", x, true, false}, bnTensor{"gamma", gamma, false, false}, bnTensor{"mean", mean, false, false},
		bnTensor{"invStd", invStd, false, false}, bnTensor{"dy", dy, true, false}, bnTensor{"dx", dx, true, true},
		bnTensor{"dgamma", dgamma, false, false}, bnTensor{"dbeta", dbeta, false, false})
	if !o.check(op, errs...) || p.Rows < 0 || p.C <= 0 {
		return
	}
	o.run(op, func(d gpu) error {
		return bnBackwardOn(d, p, ptr(x), ptr(gamma), ptr(mean), ptr(invStd), ptr(dy), ptr(dx), ptr(dgamma), ptr(dbeta))
	})
}

// The launchers: one primitive each on device addresses, shared by the
// Device's methods and the Backend's methods on host slices. Each runs
// inside do.

// elementwiseOn runs kernel over n elements with the argument list
// (inputs, out, n, extra).
func elementwiseOn(d gpu, kernel string, n int, out devPtr, extra []any, inputs ...devPtr) error {
	args := make([]any, 0, len(inputs)+2+len(extra))
	for _, p := range inputs {
		args = append(args, p)
	}
	args = append(append(args, out, int64(n)), extra...)
	return d.launch(kernel, int64(n), args...)
}

func maxPoolForwardOn(d gpu, g kernels.PoolGeom, x, y, argmax devPtr) error {
	return d.launch("dp_maxpool_fwd", int64(g.OutLen()), append([]any{x, y, argmax}, poolArgs(g)...)...)
}

func maxPoolBackwardOn(d gpu, g kernels.PoolGeom, dy, argmax, dx devPtr) error {
	return d.launch("dp_maxpool_bwd", int64(g.InLen()), append([]any{dy, argmax, dx}, poolArgs(g)...)...)
}

func avgPoolForwardOn(d gpu, g kernels.PoolGeom, x, y devPtr) error {
	return d.launch("dp_avgpool_fwd", int64(g.OutLen()), append([]any{x, y}, poolArgs(g)...)...)
}

func avgPoolBackwardOn(d gpu, g kernels.PoolGeom, dy, dx devPtr) error {
	return d.launch("dp_avgpool_bwd", int64(g.InLen()), append([]any{dy, dx}, poolArgs(g)...)...)
}

// softmaxOn writes probs, dlogits (scaled) and each row's loss (float64)
// and arg-max flag (int32).
func softmaxOn(d gpu, n, classes int, logits, labels devPtr, scale float32, probs, dlogits, rowLoss, rowCorrect devPtr) error {
	return d.launch("dp_softmax_xent", int64(n), logits, labels, probs, dlogits, rowLoss, rowCorrect,
		int64(n), int64(classes), float64(scale), math.Log(1e-7))
}

// dropoutTestArgs is the extra argument of dp_scale at test time.
func dropoutTestArgs(p kernels.DropoutParams) []any {
	return []any{float32(kernels.DropoutTestScale(p))}
}

// dropoutForwardOn draws the training masks (from the Philox stream of
// kernels.FillDropoutMask) and applies them.
func dropoutForwardOn(d gpu, p kernels.DropoutParams, rows, cols int, samples, x, y, mask devPtr) error {
	blocks := int64(rows) * int64((cols+3)/4)
	return d.launch("dp_dropout_fwd", blocks, x, y, mask, samples, int64(rows), int64(cols),
		uint32(p.Seed), uint32(p.Seed>>32), uint32(p.Step), p.Layer, float32(p.Ratio), float32(kernels.DropoutScale(p)))
}

func lrnForwardOn(d gpu, p kernels.LRNParams, x, y, scale devPtr) error {
	before, after := lrnWindow(p)
	return d.launch("dp_lrn_fwd", int64(p.Rows*p.C), x, y, scale, int64(p.Rows), int64(p.C), before, after,
		p.K, p.Alpha/float64(p.Size), p.Beta)
}

func lrnBackwardOn(d gpu, p kernels.LRNParams, x, y, scale, dy, dx devPtr) error {
	before, after := lrnWindow(p)
	return d.launch("dp_lrn_bwd", int64(p.Rows*p.C), x, y, scale, dy, dx, int64(p.Rows), int64(p.C),
		before, after, p.Beta, 2*p.Alpha*p.Beta/float64(p.Size))
}

// bnForwardTrainOn computes the statistics, one thread per channel, then
// y; meanStat and varStat may be 0 (not wanted).
func bnForwardTrainOn(d gpu, p kernels.BatchNormParams, x, gamma, beta, y, mean, invStd, meanStat, varStat devPtr) error {
	rows, c := int64(p.Rows), int64(p.C)
	if err := d.launch("dp_bn_fwd_stats", c, x, mean, invStd, meanStat, varStat, rows, c, p.Eps, p.StatWeight); err != nil {
		return err
	}
	if rows == 0 {
		return nil
	}
	return d.launch("dp_bn_fwd_train", rows*c, x, gamma, beta, mean, invStd, y, rows, c)
}

func bnForwardInferOn(d gpu, p kernels.BatchNormParams, x, gamma, beta, runMean, runVar, y devPtr) error {
	rows, c := int64(p.Rows), int64(p.C)
	return d.launch("dp_bn_fwd_infer", rows*c, x, gamma, beta, runMean, runVar, y, rows, c, p.Eps)
}

// bnBackwardOn computes dgamma and dbeta, one thread per channel, then dx
// unless it is 0 (not wanted).
func bnBackwardOn(d gpu, p kernels.BatchNormParams, x, gamma, mean, invStd, dy, dx, dgamma, dbeta devPtr) error {
	rows, c := int64(p.Rows), int64(p.C)
	if err := d.launch("dp_bn_bwd_sums", c, x, mean, invStd, dy, dgamma, dbeta, rows, c); err != nil {
		return err
	}
	if dx == 0 || rows == 0 {
		return nil
	}
	return d.launch("dp_bn_bwd_dx", rows*c, x, gamma, mean, invStd, dy, dgamma, dbeta, dx, rows, c)
}
