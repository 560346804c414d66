package kernels

// Backend computes every primitive of a training step on one device. See the
// package documentation for the data layout and the conventions shared by all
// methods (callers own destinations; backward methods overwrite).
//
// Slices must have at least the length their geometry implies; a backend may
// panic on a shorter one, because that is a programming error of the caller,
// never a consequence of input data.
type Backend[T Float] interface {
	// Name identifies the implementation ("reference", "cpu", "cuda").
	Name() string

	// Gemm computes C = alpha·op(A)·op(B) + beta·C for row-major matrices,
	// where op(A) is m×k, op(B) is k×n and C is m×n. op(X) is Xᵀ when the
	// corresponding trans flag is set. lda, ldb and ldc are row strides.
	// When beta is 0, C is not read (NaNs in it do not propagate).
	Gemm(transA, transB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int)

	// Im2Col writes the g.ColRows() × g.ColCols() patch matrix of x: row
	// (n·OH + oh)·OW + ow holds the receptive field of that output pixel in
	// (kh, kw, c) order, zeros where it covers padding.
	Im2Col(g ConvGeom, x, col []T)
	// Col2Im is the adjoint of Im2Col: it overwrites dx with the sum of
	// every patch-matrix entry into the input position it was read from.
	Col2Im(g ConvGeom, col, dx []T)

	// ConvForward computes y = conv(x, w) + bias (bias has g.OC entries).
	ConvForward(g ConvGeom, x, w, bias, y []T)
	// ConvForwardReLU computes y = max(conv(x, w) + bias, 0): ConvForward
	// followed by ReLUForward, with the same result, in one pass over y.
	ConvForwardReLU(g ConvGeom, x, w, bias, y []T)
	// ConvBackwardData computes dx, the gradient of the input.
	ConvBackwardData(g ConvGeom, dy, w, dx []T)
	// ConvBackwardFilter computes dw and dbias, summed over the batch.
	ConvBackwardFilter(g ConvGeom, x, dy, dw, dbias []T)

	// AddBias adds bias[j] to y[i·cols + j] for every row i.
	AddBias(rows, cols int, bias, y []T)

	// MaxPoolForward writes the window maxima to y and, for each output,
	// the index into x of the element that won (the first one on ties).
	MaxPoolForward(g PoolGeom, x, y []T, argmax []int32)
	// MaxPoolBackward routes each dy to the input that won its window.
	MaxPoolBackward(g PoolGeom, dy []T, argmax []int32, dx []T)
	// AvgPoolForward writes window means (padding not counted).
	AvgPoolForward(g PoolGeom, x, y []T)
	// AvgPoolBackward spreads each dy evenly over its window.
	AvgPoolBackward(g PoolGeom, dy, dx []T)

	// ReLUForward computes y = max(x, 0); x and y may be the same slice.
	ReLUForward(x, y []T)
	// ReLUBackward computes dx = dy where y > 0, else 0, from the
	// forward output y. dy and dx may be the same slice.
	ReLUBackward(y, dy, dx []T)
	// SigmoidForward computes y = 1/(1+e^−x); x and y may be the same slice.
	SigmoidForward(x, y []T)
	// SigmoidBackward computes dx = dy·y·(1−y) from the forward output y.
	SigmoidBackward(y, dy, dx []T)

	// AffineForward computes y = x·w + bias for x (n×in), w (in×out).
	AffineForward(n, in, out int, x, w, bias, y []T)
	// AffineBackward computes dx = dy·wᵀ, dw = xᵀ·dy, dbias = Σ rows of dy.
	// dx may be nil when the input gradient is not needed.
	AffineBackward(n, in, out int, x, w, dy, dx, dw, dbias []T)

	// SoftmaxCrossEntropy computes, for n rows of logits, the softmax
	// probabilities (probs), the gradient of the cross-entropy loss with
	// respect to the logits multiplied by scale (dlogits = (p − onehot)·scale),
	// and returns the summed loss −Σ log p[label] (computed stably, with
	// log p clamped at log 1e-7 as the book's cross_entropy_error does) and
	// the number of rows whose arg-max equals the label.
	SoftmaxCrossEntropy(n, classes int, logits []T, labels []int32, scale T, probs, dlogits []T) (lossSum float64, correct int)

	// DropoutForward applies dropout to rows×cols features; row i belongs
	// to the sample with dataset index samples[i]. In training it writes the
	// multiplier of each unit (0 or the keep scale) to mask and y = x·mask;
	// at test time it writes y = x·(1−Ratio) for the book's form, y = x for
	// inverted dropout, and leaves mask alone.
	DropoutForward(d DropoutParams, rows, cols int, samples []int64, x, y, mask []T)
	// DropoutBackward computes dx = dy·mask.
	DropoutBackward(mask, dy, dx []T)

	// LRNForward normalises across channels; scale receives
	// K + Alpha/Size·Σx² for the backward pass.
	LRNForward(p LRNParams, x, y, scale []T)
	// LRNBackward computes dx from x, y, scale and dy.
	LRNBackward(p LRNParams, x, y, scale, dy, dx []T)

	// BatchNormForwardTrain normalises x (Rows×C) with the batch's own
	// statistics: for each channel c, mean[c] = Σ x / Rows and the biased
	// variance v[c] = Σ (x−mean)² / Rows (two passes), invStd[c] =
	// 1/√(v[c]+Eps); mean and invStd are rounded to T first and
	// y = gamma[c]·(x−mean[c])·invStd[c] + beta[c] is computed from the rounded
	// values, so that backward's x̂ is exactly forward's. It writes mean and
	// invStd (for BatchNormBackward) and, when meanStat and varStat are not
	// nil, meanStat[c] = StatWeight·mean[c] and varStat[c] =
	// StatWeight·v[c]·Rows/(Rows−1) (the unbiased variance; v[c] itself when
	// Rows is 1).
	BatchNormForwardTrain(p BatchNormParams, x, gamma, beta, y, mean, invStd, meanStat, varStat []T)
	// BatchNormForwardInfer normalises with given statistics:
	// y = gamma[c]·(x−runMean[c])/√(runVar[c]+Eps) + beta[c].
	BatchNormForwardInfer(p BatchNormParams, x, gamma, beta, runMean, runVar, y []T)
	// BatchNormBackward takes x, gamma and the mean and invStd of the training
	// forward pass and dy, and writes dbeta[c] = Σ dy, dgamma[c] = Σ dy·x̂
	// with x̂ = (x−mean)·invStd, and, when dx is not nil,
	// dx = gamma·invStd·(dy − dbeta/Rows − x̂·dgamma/Rows).
	// dgamma and dbeta are overwritten, not accumulated.
	BatchNormBackward(p BatchNormParams, x, gamma, mean, invStd, dy, dx, dgamma, dbeta []T)

	// SGDUpdate: p −= lr·g.
	SGDUpdate(lr float64, p, g []T)
	// MomentumUpdate: v = μ·v − lr·g; p += v.
	MomentumUpdate(lr, momentum float64, p, g, v []T)
	// AdaGradUpdate: h += g²; p −= lr·g/(√h + 1e-7).
	AdaGradUpdate(lr float64, p, g, h []T)
	// AdamUpdate applies one Adam step (see AdamParams).
	AdamUpdate(a AdamParams, p, g, m, v []T)
}
