package kernels_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/kernels/kernelstest"
)

func TestReferenceConformance(t *testing.T) {
	kernelstest.TestBackend(t, kernels.NewReference[float32]())
}

// float32Sums is the reference with its GEMM and convolution sums
// accumulated in float32, in a different order (k descending). It passing
// the suite shows the suite's tolerances admit an honest float32 backend;
// the reference itself passes with float64 sums either way.
type float32Sums struct{ *kernels.Reference[float32] }

func (float32Sums) Gemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	for i := range m {
		for j := range n {
			var sum float32
			for l := k - 1; l >= 0; l-- {
				ai, bi := i*lda+l, l*ldb+j
				if transA {
					ai = l*lda + i
				}
				if transB {
					bi = j*ldb + l
				}
				sum += a[ai] * b[bi]
			}
			v := alpha * sum
			if beta != 0 {
				v += beta * c[i*ldc+j]
			}
			c[i*ldc+j] = v
		}
	}
}

// ConvForward goes through im2col and the float32 GEMM above.
func (s float32Sums) ConvForward(g kernels.ConvGeom, x, w, bias, y []float32) {
	col := make([]float32, g.ColRows()*g.ColCols())
	s.Im2Col(g, x, col)
	s.Gemm(false, false, g.ColRows(), g.OC, g.ColCols(), 1, col, g.ColCols(), w, g.OC, 0, y, g.OC)
	s.AddBias(g.ColRows(), g.OC, bias, y)
}

// ConvBackwardFilter is colᵀ·dy in float32, and dbias a float32 sum.
func (s float32Sums) ConvBackwardFilter(g kernels.ConvGeom, x, dy, dw, dbias []float32) {
	col := make([]float32, g.ColRows()*g.ColCols())
	s.Im2Col(g, x, col)
	s.Gemm(true, false, g.ColCols(), g.OC, g.ColRows(), 1, col, g.ColCols(), dy, g.OC, 0, dw, g.OC)
	for o := range g.OC {
		var sum float32
		for i := range g.ColRows() {
			sum += dy[i*g.OC+o]
		}
		dbias[o] = sum
	}
}

func TestSuiteToleratesFloat32Sums(t *testing.T) {
	b := float32Sums{kernels.NewReference[float32]()}
	t.Run("Gemm", func(t *testing.T) { kernelstest.TestGemm(t, b) })
	t.Run("Conv", func(t *testing.T) { kernelstest.TestConv(t, b) })
	t.Run("BatchNorm", func(t *testing.T) { kernelstest.TestBatchNorm(t, b) })
}

// TestConvKnownAnswer: a 3×3 box filter over the 3×3 image 1…9 with pad 1,
// and a two-channel, two-filter 2×2 stride-2 case, worked by hand.
func TestConvKnownAnswer(t *testing.T) {
	r := kernels.NewReference[float64]()

	g := kernels.ConvGeom{N: 1, H: 3, W: 3, C: 1, OC: 1, KH: 3, KW: 3, Stride: 1, Pad: 1}
	x := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9}
	w := []float64{1, 1, 1, 1, 1, 1, 1, 1, 1}
	y := make([]float64, g.OutLen())
	r.ConvForward(g, x, w, []float64{0.5}, y)
	want := []float64{12.5, 21.5, 16.5, 27.5, 45.5, 33.5, 24.5, 39.5, 28.5}
	expectEqual(t, "box filter", y, want)

	// Input 4×4×2: channel 0 is 0…15, channel 1 is 1 everywhere. Filter 0
	// takes the top-left tap of channel 0; filter 1 sums channel 1 over the
	// window and adds channel 0's bottom-right tap, bias 10.
	g = kernels.ConvGeom{N: 1, H: 4, W: 4, C: 2, OC: 2, KH: 2, KW: 2, Stride: 2, Pad: 0}
	x = make([]float64, g.InLen())
	for i := range 16 {
		x[2*i], x[2*i+1] = float64(i), 1
	}
	w = make([]float64, g.FilterLen()) // index ((kh·2+kw)·2+c)·2+oc
	w[((0*2+0)*2+0)*2+0] = 1
	for tap := range 4 {
		w[(tap*2+1)*2+1] = 1
	}
	w[((1*2+1)*2+0)*2+1] = 1
	y = make([]float64, g.OutLen())
	r.ConvForward(g, x, w, []float64{0, 10}, y)
	// Windows start at pixels 0, 2, 8, 10; bottom-right taps 5, 7, 13, 15.
	want = []float64{0, 19, 2, 21, 8, 27, 10, 29}
	expectEqual(t, "strided two-channel", y, want)
}

// TestConvEqualsIm2ColGemm checks the direct convolutions against the
// im2col formulation they deliberately avoid, in float64.
func TestConvEqualsIm2ColGemm(t *testing.T) {
	r := kernels.NewReference[float64]()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, g := range []kernels.ConvGeom{
		{N: 2, H: 7, W: 6, C: 3, OC: 4, KH: 3, KW: 3, Stride: 1, Pad: 1},
		{N: 1, H: 9, W: 9, C: 2, OC: 5, KH: 5, KW: 3, Stride: 2, Pad: 2},
		{N: 3, H: 5, W: 5, C: 4, OC: 2, KH: 1, KW: 1, Stride: 2, Pad: 0},
	} {
		rows, cols := g.ColRows(), g.ColCols()
		x, w, bias, dy := random(rng, g.InLen()), random(rng, g.FilterLen()), random(rng, g.OC), random(rng, g.OutLen())
		col := make([]float64, rows*cols)
		r.Im2Col(g, x, col)

		y, viaGemm := make([]float64, g.OutLen()), make([]float64, g.OutLen())
		r.ConvForward(g, x, w, bias, y)
		r.Gemm(false, false, rows, g.OC, cols, 1, col, cols, w, g.OC, 0, viaGemm, g.OC)
		r.AddBias(rows, g.OC, bias, viaGemm)
		expectClose(t, "ConvForward vs im2col·W", y, viaGemm, 1e-12)

		dw, db, dwGemm := make([]float64, g.FilterLen()), make([]float64, g.OC), make([]float64, g.FilterLen())
		r.ConvBackwardFilter(g, x, dy, dw, db)
		r.Gemm(true, false, cols, g.OC, rows, 1, col, cols, dy, g.OC, 0, dwGemm, g.OC)
		expectClose(t, "ConvBackwardFilter vs colᵀ·dy", dw, dwGemm, 1e-12)

		dx, dcol, dxGemm := make([]float64, g.InLen()), make([]float64, rows*cols), make([]float64, g.InLen())
		r.ConvBackwardData(g, dy, w, dx)
		r.Gemm(false, true, rows, cols, g.OC, 1, dy, g.OC, w, g.OC, 0, dcol, cols)
		r.Col2Im(g, dcol, dxGemm)
		expectClose(t, "ConvBackwardData vs col2im(dy·Wᵀ)", dx, dxGemm, 1e-12)
	}
}

// TestAdjoints checks that each backward pass is the transpose of its
// linear forward map: <F(x), c> = <x, Fᵀ(c)>.
func TestAdjoints(t *testing.T) {
	r := kernels.NewReference[float64]()
	rng := rand.New(rand.NewPCG(3, 4))
	for _, g := range []kernels.ConvGeom{
		{N: 2, H: 5, W: 7, C: 3, OC: 4, KH: 3, KW: 3, Stride: 1, Pad: 1},
		{N: 1, H: 8, W: 8, C: 2, OC: 3, KH: 3, KW: 2, Stride: 2, Pad: 0},
		{N: 1, H: 4, W: 4, C: 1, OC: 1, KH: 5, KW: 5, Stride: 3, Pad: 2},
	} {
		x, c := random(rng, g.InLen()), random(rng, g.ColRows()*g.ColCols())
		col, dx := make([]float64, len(c)), make([]float64, len(x))
		r.Im2Col(g, x, col)
		r.Col2Im(g, c, dx)
		expectScalar(t, "Im2Col/Col2Im", dot(col, c), dot(x, dx))

		w, dy := random(rng, g.FilterLen()), random(rng, g.OutLen())
		y := make([]float64, g.OutLen())
		r.ConvForward(g, x, w, make([]float64, g.OC), y)
		r.ConvBackwardData(g, dy, w, dx)
		dw, db := make([]float64, len(w)), make([]float64, g.OC)
		r.ConvBackwardFilter(g, x, dy, dw, db)
		expectScalar(t, "ConvForward/ConvBackwardData", dot(y, dy), dot(x, dx))
		expectScalar(t, "ConvForward/ConvBackwardFilter", dot(y, dy), dot(w, dw))
	}
	for _, g := range []kernels.PoolGeom{
		{N: 2, H: 5, W: 5, C: 3, Size: 3, Stride: 2, Pad: 1},
		{N: 1, H: 6, W: 7, C: 2, Size: 2, Stride: 1, Pad: 1},
	} {
		x, dy := random(rng, g.InLen()), random(rng, g.OutLen())
		y, dx := make([]float64, g.OutLen()), make([]float64, g.InLen())
		r.AvgPoolForward(g, x, y)
		r.AvgPoolBackward(g, dy, dx)
		expectScalar(t, "AvgPoolForward/AvgPoolBackward", dot(y, dy), dot(x, dx))
	}
}

// TestPoolKnownAnswer: 2×2 max and average pooling of a 4×4 image, and a
// padded 3×3 window, whose corner averages count only real cells.
func TestPoolKnownAnswer(t *testing.T) {
	r := kernels.NewReference[float64]()
	x := []float64{
		1, 5, 2, 0,
		3, 4, 8, 8,
		0, 0, -1, -2,
		7, 0, -3, -4,
	}
	g := kernels.PoolGeom{N: 1, H: 4, W: 4, C: 1, Size: 2, Stride: 2}
	y, arg := make([]float64, 4), make([]int32, 4)
	r.MaxPoolForward(g, x, y, arg)
	expectEqual(t, "max pool", y, []float64{5, 8, 7, -1})
	if want := []int32{1, 6, 12, 10}; !equalInts(arg, want) {
		t.Errorf("max pool argmax %v, want %v (first of the tied 8s)", arg, want)
	}
	dx := make([]float64, 16)
	r.MaxPoolBackward(g, []float64{1, 2, 3, 4}, arg, dx)
	expectEqual(t, "max pool backward", dx, []float64{0, 1, 0, 0, 0, 0, 2, 0, 0, 0, 4, 0, 3, 0, 0, 0})

	r.AvgPoolForward(g, x, y)
	expectEqual(t, "avg pool", y, []float64{13.0 / 4, 18.0 / 4, 7.0 / 4, -10.0 / 4})

	g = kernels.PoolGeom{N: 1, H: 4, W: 4, C: 1, Size: 3, Stride: 2, Pad: 1}
	y = make([]float64, g.OutLen())
	r.AvgPoolForward(g, x, y)
	// Windows: rows/cols [-1,1] and [1,3]; the top-left one has 4 real cells.
	expectEqual(t, "padded avg pool", y, []float64{13.0 / 4, 27.0 / 6, 14.0 / 6, 10.0 / 9})
	dx = make([]float64, 16)
	r.AvgPoolBackward(g, []float64{4, 0, 0, 0}, dx)
	expectEqual(t, "padded avg pool backward", dx, []float64{1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
}

// TestSoftmaxCrossEntropyKnownAnswer: two equal logits give p = ½ and loss
// log 2; a label with p ≈ e^−100 is clamped to −log 1e-7; first-on-ties
// counts as correct only for the first of equal logits.
func TestSoftmaxCrossEntropyKnownAnswer(t *testing.T) {
	r := kernels.NewReference[float64]()
	logits := []float64{0, 0, -100, 0, 3, 3}
	probs, d := make([]float64, 6), make([]float64, 6)
	loss, correct := r.SoftmaxCrossEntropy(3, 2, logits, []int32{1, 0, 0}, 0.5, probs, d)
	expectScalar(t, "loss", loss, math.Log(2)-math.Log(1e-7)+math.Log(2))
	if correct != 1 {
		t.Errorf("correct %d, want 1 (row 2: tie, label the first)", correct)
	}
	expectClose(t, "probs", probs, []float64{0.5, 0.5, math.Exp(-100), 1, 0.5, 0.5}, 1e-15)
	expectClose(t, "dlogits", d, []float64{0.25, -0.25, (math.Exp(-100) - 1) / 2, 0.5, -0.25, 0.25}, 1e-15)
}

// TestDropoutReference: training masks are FillDropoutMask's; the test
// forms scale by 1−ratio or not at all.
func TestDropoutReference(t *testing.T) {
	r := kernels.NewReference[float64]()
	d := kernels.DropoutParams{Ratio: 0.25, Inverted: true, Train: true, Seed: 9, Step: 4, Layer: 1}
	x := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	y, mask := make([]float64, 10), make([]float64, 10)
	r.DropoutForward(d, 2, 5, []int64{11, 12}, x, y, mask)
	for i, s := range []int64{11, 12} {
		want := make([]float64, 5)
		kernels.FillDropoutMask(d, s, want)
		expectEqual(t, "mask row", mask[5*i:5*i+5], want)
		for j := range 5 {
			if want[j] != 0 && want[j] != 4.0/3 {
				t.Errorf("mask value %v, want 0 or 4/3", want[j])
			}
		}
	}
	for i := range x {
		if y[i] != x[i]*mask[i] {
			t.Errorf("y[%d] = %v, want %v", i, y[i], x[i]*mask[i])
		}
	}
	d.Train = false
	r.DropoutForward(d, 2, 5, nil, x, y, nil)
	expectEqual(t, "inverted test form", y, x)
	d.Inverted = false
	r.DropoutForward(d, 2, 5, nil, x, y, nil)
	expectClose(t, "book test form", y, []float64{0.75, 1.5, 2.25, 3, 3.75, 4.5, 5.25, 6, 6.75, 7.5}, 1e-15)
}

// TestLRNGradient checks LRNBackward against central differences of
// LRNForward, with an even window so the asymmetric window is exercised.
func TestLRNGradient(t *testing.T) {
	r := kernels.NewReference[float64]()
	rng := rand.New(rand.NewPCG(5, 6))
	for _, p := range []kernels.LRNParams{
		{Rows: 2, C: 7, Size: 3, Alpha: 1, Beta: 0.75, K: 1},
		{Rows: 3, C: 6, Size: 4, Alpha: 0.5, Beta: 0.5, K: 2},
	} {
		n := p.Rows * p.C
		x, dy := random(rng, n), random(rng, n)
		y, scale, dx := make([]float64, n), make([]float64, n), make([]float64, n)
		r.LRNForward(p, x, y, scale)
		r.LRNBackward(p, x, y, scale, dy, dx)
		loss := func(x []float64) float64 {
			r.LRNForward(p, x, y, scale)
			return dot(y, dy)
		}
		numeric := make([]float64, n)
		const h = 1e-6
		for i := range x {
			keep := x[i]
			x[i] = keep + h
			up := loss(x)
			x[i] = keep - h
			down := loss(x)
			x[i] = keep
			numeric[i] = (up - down) / (2 * h)
		}
		expectClose(t, "LRNBackward vs central differences", dx, numeric, 1e-7)
	}
}

// TestBatchNormGradient checks BatchNormBackward against central
// differences of L = Σ w·y through BatchNormForwardTrain (whose batch mean
// and variance depend on x), with respect to x, gamma and beta; dy = w.
func TestBatchNormGradient(t *testing.T) {
	r := kernels.NewReference[float64]()
	rng := rand.New(rand.NewPCG(7, 8))
	for _, p := range []kernels.BatchNormParams{
		{Rows: 1, C: 2, Eps: 1e-5},
		{Rows: 2, C: 3, Eps: 1e-3},
		{Rows: 5, C: 3, Eps: 1e-5},
		{Rows: 12, C: 4, Eps: 0.1},
	} {
		n := p.Rows * p.C
		x, w := random(rng, n), random(rng, n)
		for i := range x {
			x[i] = 3*x[i] + float64(i%p.C) // channels of different means and spreads
		}
		gamma, beta := random(rng, p.C), random(rng, p.C)
		y, mean, invStd := make([]float64, n), make([]float64, p.C), make([]float64, p.C)
		dx, dgamma, dbeta := make([]float64, n), make([]float64, p.C), make([]float64, p.C)
		r.BatchNormForwardTrain(p, x, gamma, beta, y, mean, invStd, nil, nil)
		r.BatchNormBackward(p, x, gamma, mean, invStd, w, dx, dgamma, dbeta)
		loss := func() float64 {
			r.BatchNormForwardTrain(p, x, gamma, beta, y, mean, invStd, nil, nil)
			return dot(y, w)
		}
		numeric := func(v []float64) []float64 {
			const h = 1e-6
			d := make([]float64, len(v))
			for i := range v {
				keep := v[i]
				v[i] = keep + h
				up := loss()
				v[i] = keep - h
				down := loss()
				v[i] = keep
				d[i] = (up - down) / (2 * h)
			}
			return d
		}
		what := fmt.Sprintf("%+v: BatchNormBackward vs central differences", p)
		expectClose(t, what+": dx", dx, numeric(x), 1e-6)
		expectClose(t, what+": dgamma", dgamma, numeric(gamma), 1e-6)
		expectClose(t, what+": dbeta", dbeta, numeric(beta), 1e-6)
	}
}

// TestBatchNormKnownAnswer: one channel of 1, 2, 3, 4 (mean 2.5, biased
// variance 1.25, unbiased 5/3) beside a channel of one repeated value.
func TestBatchNormKnownAnswer(t *testing.T) {
	r := kernels.NewReference[float64]()
	p := kernels.BatchNormParams{Rows: 4, C: 2, Eps: 0.75, StatWeight: 0.1}
	x := []float64{1, 7, 2, 7, 3, 7, 4, 7}
	gamma, beta := []float64{2, 3}, []float64{0.5, -1}
	y, mean, invStd := make([]float64, 8), make([]float64, 2), make([]float64, 2)
	meanStat, varStat := make([]float64, 2), make([]float64, 2)
	r.BatchNormForwardTrain(p, x, gamma, beta, y, mean, invStd, meanStat, varStat)
	// invStd = 1/√(1.25 + 0.75) = 1/√2 for the first channel, 1/√0.75 for
	// the constant one, whose x̂ is 0.
	expectClose(t, "mean", mean, []float64{2.5, 7}, 1e-15)
	expectClose(t, "invStd", invStd, []float64{1 / math.Sqrt2, 1 / math.Sqrt(0.75)}, 1e-15)
	expectClose(t, "meanStat", meanStat, []float64{0.25, 0.7}, 1e-15)
	expectClose(t, "varStat", varStat, []float64{0.5 / 3, 0}, 1e-15)
	s := math.Sqrt2
	expectClose(t, "y", y, []float64{0.5 - 3/s, -1, 0.5 - 1/s, -1, 0.5 + 1/s, -1, 0.5 + 3/s, -1}, 1e-15)

	r.BatchNormForwardInfer(p, x, gamma, beta, []float64{2, 7}, []float64{3.25, 0.25}, y)
	expectClose(t, "infer y", y, []float64{-0.5, -1, 0.5, -1, 1.5, -1, 2.5, -1}, 1e-15)

	// With dy = 1 everywhere, dbeta = Rows, dgamma = Σ x̂ = 0 and dx = 0.
	dy := []float64{1, 1, 1, 1, 1, 1, 1, 1}
	dx, dgamma, dbeta := make([]float64, 8), make([]float64, 2), make([]float64, 2)
	r.BatchNormBackward(p, x, gamma, mean, invStd, dy, dx, dgamma, dbeta)
	expectClose(t, "dbeta", dbeta, []float64{4, 4}, 1e-15)
	expectClose(t, "dgamma", dgamma, []float64{0, 0}, 1e-15)
	expectClose(t, "dx", dx, make([]float64, 8), 1e-15)
	// Rows = 1: the variance is 0, and the unbiased statistic is the
	// biased one.
	p1 := kernels.BatchNormParams{Rows: 1, C: 2, Eps: 0.25, StatWeight: 1}
	r.BatchNormForwardTrain(p1, x[:2], gamma, beta, y[:2], mean, invStd, meanStat, varStat)
	expectClose(t, "one row: y", y[:2], beta, 0)
	expectClose(t, "one row: invStd", invStd, []float64{2, 2}, 0)
	expectClose(t, "one row: varStat", varStat, []float64{0, 0}, 0)
}

// TestOptimizerKnownAnswer: hand-computed single steps.
func TestOptimizerKnownAnswer(t *testing.T) {
	r := kernels.NewReference[float64]()
	p := []float64{1, -1}
	r.SGDUpdate(0.1, p, []float64{2, -3})
	expectClose(t, "sgd", p, []float64{0.8, -0.7}, 1e-15)

	p, v := []float64{1, 1}, []float64{0.5, 0}
	r.MomentumUpdate(0.1, 0.9, p, []float64{1, 2}, v)
	expectClose(t, "momentum v", v, []float64{0.35, -0.2}, 1e-15)
	expectClose(t, "momentum p", p, []float64{1.35, 0.8}, 1e-15)

	p, h := []float64{1, 1}, []float64{0, 12}
	r.AdaGradUpdate(0.5, p, []float64{3, 2}, h)
	expectClose(t, "adagrad h", h, []float64{9, 16}, 1e-15)
	expectClose(t, "adagrad p", p, []float64{1 - 0.5*3/(3+1e-7), 1 - 0.5*2/(4+1e-7)}, 1e-15)

	// The first Adam step moves every parameter by about LR against the
	// sign of its gradient, whatever the gradient's size.
	p, m, v := []float64{1, 1, 1}, make([]float64, 3), make([]float64, 3)
	r.AdamUpdate(kernels.AdamParams{LR: 0.01, Beta1: 0.9, Beta2: 0.999, Eps: 1e-12, T: 1}, p, []float64{5, -0.001, 1e-3}, m, v)
	expectClose(t, "adam p", p, []float64{0.99, 1.01, 0.99}, 1e-8)
	expectClose(t, "adam m", m, []float64{0.5, -0.0001, 1e-4}, 1e-15)
	expectClose(t, "adam v", v, []float64{0.025, 1e-9, 1e-9}, 1e-15)
}

// TestGemmKnownAnswer: a 2×3 by 3×2 product in all four transpose forms,
// with strides, and beta = 0 over NaN.
func TestGemmKnownAnswer(t *testing.T) {
	r := kernels.NewReference[float64]()
	nan := math.NaN()
	a := []float64{1, 2, 3, nan, 4, 5, 6, nan}  // 2×3, lda 4
	at := []float64{1, 4, nan, 2, 5, nan, 3, 6} // its transpose, 3×2, lda 3
	b := []float64{7, 8, 9, 10, 11, 12}         // 3×2, ldb 2
	bt := []float64{7, 9, 11, nan, 8, 10, 12}   // its transpose, 2×3, ldb 4
	want := []float64{58, 64, nan, 139, 154}    // 2×2, ldc 3
	for _, tc := range []struct {
		transA, transB bool
		a              []float64
		lda            int
		b              []float64
		ldb            int
	}{
		{false, false, a, 4, b, 2},
		{true, false, at, 3, b, 2},
		{false, true, a, 4, bt, 4},
		{true, true, at, 3, bt, 4},
	} {
		c := []float64{nan, nan, nan, nan, nan}
		r.Gemm(tc.transA, tc.transB, 2, 2, 3, 1, tc.a, tc.lda, tc.b, tc.ldb, 0, c, 3)
		for _, i := range []int{0, 1, 3, 4} {
			if c[i] != want[i] {
				t.Errorf("transA=%v transB=%v: c[%d] = %v, want %v", tc.transA, tc.transB, i, c[i], want[i])
			}
		}
		if !math.IsNaN(c[2]) {
			t.Errorf("transA=%v transB=%v: wrote the gap between rows: %v", tc.transA, tc.transB, c[2])
		}
		c = []float64{1, 1, nan, 1, 1}
		r.Gemm(tc.transA, tc.transB, 2, 2, 3, 2, tc.a, tc.lda, tc.b, tc.ldb, -1, c, 3)
		for _, i := range []int{0, 1, 3, 4} {
			if c[i] != 2*want[i]-1 {
				t.Errorf("transA=%v transB=%v alpha=2 beta=-1: c[%d] = %v, want %v", tc.transA, tc.transB, i, c[i], 2*want[i]-1)
			}
		}
	}
}

func random(rng *rand.Rand, n int) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = 2*rng.Float64() - 1
	}
	return s
}

func dot(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

func equalInts(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func expectEqual(t *testing.T, what string, got, want []float64) {
	t.Helper()
	expectClose(t, what, got, want, 0)
}

// expectClose compares element by element with |got − want| ≤ tol·(1 + |want|).
func expectClose(t *testing.T, what string, got, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d elements, want %d", what, len(got), len(want))
	}
	for i := range got {
		if !(math.Abs(got[i]-want[i]) <= tol*(1+math.Abs(want[i]))) {
			t.Errorf("%s: [%d] = %v, want %v", what, i, got[i], want[i])
		}
	}
}

func expectScalar(t *testing.T, what string, got, want float64) {
	t.Helper()
	if !(math.Abs(got-want) <= 1e-12*(1+math.Abs(want))) {
		t.Errorf("%s: %v, want %v", what, got, want)
	}
}

// BatchNormForwardTrain sums in float32, in reverse row order, and
// computes y in float32.
func (float32Sums) BatchNormForwardTrain(p kernels.BatchNormParams, x, gamma, beta, y, mean, invStd, meanStat, varStat []float32) {
	for c := range p.C {
		var sum float32
		for r := p.Rows - 1; r >= 0; r-- {
			sum += x[r*p.C+c]
		}
		m := sum / float32(p.Rows)
		var sq float32
		for r := p.Rows - 1; r >= 0; r-- {
			d := x[r*p.C+c] - m
			sq += d * d
		}
		v := sq / float32(p.Rows)
		mean[c] = m
		invStd[c] = float32(1 / math.Sqrt(float64(v)+p.Eps))
		if meanStat != nil {
			meanStat[c] = float32(p.StatWeight) * m
		}
		if varStat != nil {
			u := v
			if p.Rows > 1 {
				u = sq / float32(p.Rows-1)
			}
			varStat[c] = float32(p.StatWeight) * u
		}
		for r := range p.Rows {
			i := r*p.C + c
			y[i] = gamma[c]*(x[i]-mean[c])*invStd[c] + beta[c]
		}
	}
}

// BatchNormBackward sums in float32, in reverse row order.
func (float32Sums) BatchNormBackward(p kernels.BatchNormParams, x, gamma, mean, invStd, dy, dx, dgamma, dbeta []float32) {
	for c := range p.C {
		var sb, sg float32
		for r := p.Rows - 1; r >= 0; r-- {
			i := r*p.C + c
			sb += dy[i]
			sg += dy[i] * (x[i] - mean[c]) * invStd[c]
		}
		dbeta[c], dgamma[c] = sb, sg
		if dx == nil {
			continue
		}
		n := float32(p.Rows)
		for r := range p.Rows {
			i := r*p.C + c
			xhat := (x[i] - mean[c]) * invStd[c]
			dx[i] = gamma[c] * invStd[c] * (dy[i] - sb/n - xhat*sg/n)
		}
	}
}
