package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/dpcnn/dpcnn/kernels"
)

// Gradient checks compare every analytic gradient with central differences
// (f(v+ε) − f(v−ε)) / 2ε in float64 on the reference backend.
const (
	gradEps = 1e-5
	// gradTol bounds |analytic − numeric| / max(|analytic|, |numeric|,
	// gradFloor). The floor stops gradients that are zero up to rounding
	// (a dropped unit, a pooled-away input) from dividing noise by noise.
	gradTol   = 1e-6
	gradFloor = 1e-3
)

func gradRelErr(analytic, numeric float64) float64 {
	return math.Abs(analytic-numeric) / max(math.Abs(analytic), math.Abs(numeric), gradFloor)
}

// gradWorst tracks the worst mismatch of a check so a failure names it.
type gradWorst struct {
	err               float64
	where             string
	analytic, numeric float64
	checked           int
}

func (w *gradWorst) add(where string, i int, analytic, numeric float64) {
	w.checked++
	if e := gradRelErr(analytic, numeric); e > w.err || math.IsNaN(e) {
		w.err, w.analytic, w.numeric = e, analytic, numeric
		w.where = fmt.Sprintf("%s[%d]", where, i)
	}
}

func (w *gradWorst) report(t *testing.T, what string) {
	t.Helper()
	if !(w.err <= gradTol) {
		t.Errorf("%s: worst relative error %.3g at %s: analytic %.12g, numeric %.12g (%d coordinates checked)",
			what, w.err, w.where, w.analytic, w.numeric, w.checked)
	} else {
		t.Logf("%s: %d coordinates, worst relative error %.3g at %s", what, w.checked, w.err, w.where)
	}
}

// numericGrad is the central difference of f with respect to v[i].
func numericGrad(f func() float64, v []float64, i int) float64 {
	orig := v[i]
	v[i] = orig + gradEps
	plus := f()
	v[i] = orig - gradEps
	minus := f()
	v[i] = orig
	return (plus - minus) / (2 * gradEps)
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x6d6f64656c)) }

func fillNormal(r *rand.Rand, v []float64, std float64) {
	for i := range v {
		v[i] = r.NormFloat64() * std
	}
}

// awayFromZero moves values within 0.05 of zero out of it, so no ReLU input
// sits within ε of its kink.
func awayFromZero(v []float64) {
	for i, x := range v {
		if math.Abs(x) < 0.05 {
			v[i] = math.Copysign(0.05+math.Abs(x), x)
		}
	}
}

func dot(a, b []float64) float64 {
	s := 0.0
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// newHostLayer builds the layer of lp on the float64 reference backend,
// its tensors in host memory, for batches of up to maxBatch, with an input
// gradient.
func newHostLayer(t *testing.T, lp layerPlan, maxBatch int) layer[float64] {
	t.Helper()
	var a tensors[float64]
	f := newFlatParams(&a, lp.paramCount())
	l := newLayer(kernels.DeviceOf[float64](kernels.NewReference[float64]()), &a, f, lp, maxBatch, true, false)
	if a.err != nil {
		t.Fatal(a.err)
	}
	return l
}

// TestLayerGradients checks the input and parameter gradients of every
// layer type on its own, through the scalar f = Σ y·r for a fixed random r
// (so backward starts from dy = r).
func TestLayerGradients(t *testing.T) {
	cases := []struct {
		name  string
		in    InputShape
		layer LayerSpec
		kinks bool // inputs must stay away from zero (ReLU)
	}{
		{"conv stride2 pad1", InputShape{7, 6, 3}, LayerSpec{Type: LayerConv, Filters: 4, Size: 3, Stride: 2, Pad: 1}, false},
		{"conv stride1 pad0", InputShape{5, 5, 2}, LayerSpec{Type: LayerConv, Filters: 3, Size: 3}, false},
		{"conv 1x1", InputShape{3, 4, 5}, LayerSpec{Type: LayerConv, Filters: 2, Size: 1}, false},
		{"conv stride3 pad2", InputShape{8, 7, 2}, LayerSpec{Type: LayerConv, Filters: 3, Size: 4, Stride: 3, Pad: 2}, false},
		{"relu", InputShape{3, 4, 5}, LayerSpec{Type: LayerReLU}, true},
		{"sigmoid", InputShape{3, 4, 5}, LayerSpec{Type: LayerSigmoid}, false},
		{"maxpool 2", InputShape{6, 4, 3}, LayerSpec{Type: LayerMaxPool, Size: 2}, false},
		{"maxpool 3 stride2", InputShape{7, 7, 2}, LayerSpec{Type: LayerMaxPool, Size: 3, Stride: 2}, false},
		{"maxpool 3 stride2 pad1", InputShape{6, 5, 2}, LayerSpec{Type: LayerMaxPool, Size: 3, Stride: 2, Pad: 1}, false},
		{"avgpool 2", InputShape{6, 4, 3}, LayerSpec{Type: LayerAvgPool, Size: 2}, false},
		{"avgpool 3 stride2 pad1", InputShape{6, 5, 2}, LayerSpec{Type: LayerAvgPool, Size: 3, Stride: 2, Pad: 1}, false},
		{"affine from 3d", InputShape{2, 3, 4}, LayerSpec{Type: LayerAffine, Units: 5}, false},
		{"affine", InputShape{1, 1, 7}, LayerSpec{Type: LayerAffine, Units: 3}, false},
		{"dropout", InputShape{2, 3, 8}, LayerSpec{Type: LayerDropout, Ratio: 0.5}, false},
		{"dropout inverted", InputShape{2, 3, 8}, LayerSpec{Type: LayerDropout, Ratio: 0.3, Inverted: true}, false},
		{"lrn 5", InputShape{2, 3, 7}, LayerSpec{Type: LayerLRN, Size: 5, Alpha: 0.3, Beta: 0.75, K: 2}, false},
		{"lrn 2", InputShape{2, 2, 4}, LayerSpec{Type: LayerLRN, Size: 2, Alpha: 0.5, Beta: 0.6, K: 1}, false},
		{"batchnorm spatial", InputShape{3, 2, 5}, LayerSpec{Type: LayerBatchNorm}, false},
		{"batchnorm features", InputShape{1, 1, 6}, LayerSpec{Type: LayerBatchNorm, Eps: 1e-3, Momentum: 0.2}, false},
	}
	const batch = 3
	for ci, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			plans, err := planLayers(c.in, "", []LayerSpec{c.layer})
			if err != nil {
				t.Fatal(err)
			}
			lp := plans[0]
			l := newHostLayer(t, lp, batch+1) // room for more than the batch: views must be sliced
			r := newRand(uint64(ci) + 1)
			for _, p := range l.params() {
				fillNormal(r, p.Value, 0.5)
			}
			x := make([]float64, batch*lp.In.size())
			fillNormal(r, x, 1)
			if c.kinks {
				awayFromZero(x)
			}
			proj := make([]float64, batch*lp.Out.size())
			fillNormal(r, proj, 1)
			rc := RunContext{Train: true, Seed: 42, Step: 5}
			samples := kernels.HostTensor([]int64{17, 3, 1000})
			f := func() float64 { return dot(l.forward(kernels.HostTensor(x), batch, rc, samples).Host(), proj) }

			f()
			dx := append([]float64(nil), l.backward(kernels.HostTensor(proj)).Host()...)
			if len(dx) != len(x) {
				t.Fatalf("input gradient has %d values, want %d", len(dx), len(x))
			}
			var w gradWorst
			for i := range x {
				w.add("x", i, dx[i], numericGrad(f, x, i))
			}
			for _, p := range l.params() {
				if !p.trained() {
					continue // a running statistic: no gradient (TestBatchNormStatistics)
				}
				grad := append([]float64(nil), p.Grad...)
				for i := range p.Value {
					w.add(p.Name, i, grad[i], numericGrad(f, p.Value, i))
				}
			}
			w.report(t, c.name)
		})
	}
}

// TestDropoutMask checks the dropout layer's mask: it is keyed by the
// dataset index of the sample (the same sample gets the same mask in any
// batch position), it changes with the step, and at test time the book's
// form scales by 1 − ratio.
func TestDropoutMask(t *testing.T) {
	plans, err := planLayers(InputShape{1, 1, 64}, "", []LayerSpec{{Type: LayerDropout, Ratio: 0.5}})
	if err != nil {
		t.Fatal(err)
	}
	l := newHostLayer(t, plans[0], 2)
	x := make([]float64, 128)
	for i := range x {
		x[i] = 1
	}
	forward := func(rc RunContext, samples []int64) []float64 {
		return l.forward(kernels.HostTensor(x), 2, rc, kernels.HostTensor(samples)).Host()
	}
	rc := RunContext{Train: true, Seed: 9, Step: 1}
	y := append([]float64(nil), forward(rc, []int64{5, 6})...)
	y2 := append([]float64(nil), forward(rc, []int64{6, 5})...)
	for j := range 64 {
		if y[j] != y2[64+j] || y[64+j] != y2[j] {
			t.Fatalf("unit %d: mask depends on the position of the sample in the batch", j)
		}
	}
	kept := 0
	for _, v := range y {
		if v != 0 && v != 1 {
			t.Fatalf("train output %v, want 0 or 1 (book form, no rescale)", v)
		}
		if v == 1 {
			kept++
		}
	}
	if kept < 40 || kept > 88 {
		t.Errorf("kept %d of 128 units at ratio 0.5", kept)
	}
	rc.Step = 2
	y3 := forward(rc, []int64{5, 6})
	same := true
	for j := range y3 {
		same = same && y3[j] == y[j]
	}
	if same {
		t.Error("mask did not change with the step")
	}
	for j, v := range forward(RunContext{}, nil) {
		if v != 0.5 {
			t.Fatalf("test-mode output %d is %v, want 0.5", j, v)
		}
	}
}

// TestSoftmaxCrossEntropyGradient checks the loss gradient the networks
// start their backward pass from.
func TestSoftmaxCrossEntropyGradient(t *testing.T) {
	const n, classes = 4, 5
	b := kernels.NewReference[float64]()
	r := newRand(77)
	logits := make([]float64, n*classes)
	fillNormal(r, logits, 2)
	labels := []int32{0, 4, 2, 2}
	probs, dlogits, scratch := make([]float64, n*classes), make([]float64, n*classes), make([]float64, n*classes)
	const scale = 1.0 / n
	f := func() float64 {
		loss, _ := b.SoftmaxCrossEntropy(n, classes, logits, labels, scale, probs, scratch)
		return loss * scale
	}
	b.SoftmaxCrossEntropy(n, classes, logits, labels, scale, probs, dlogits)
	var w gradWorst
	for i := range logits {
		w.add("logits", i, dlogits[i], numericGrad(f, logits, i))
	}
	w.report(t, "softmax-cross-entropy")
}
