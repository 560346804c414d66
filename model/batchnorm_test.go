package model

import (
	"math"
	"testing"

	"github.com/dpcnn/dpcnn/kernels"
)

// TestBatchNormStatistics follows a batch norm's running statistics
// through one step, by hand: a training Loss writes the batch's mean and
// unbiased variance of each channel, times samples × gradScale, as their
// gradients (and a plain Forward writes nothing); the optimizer moves them
// toward their gradients at the layer's momentum, with no Adam step, no
// decay and outside the clipping norm; inference normalises with them.
func TestBatchNormStatistics(t *testing.T) {
	const batch, momentum, gradScale = 4, 0.25, 0.5
	s := Spec{
		Input: InputShape{Height: 2, Width: 2, Channels: 3}, Classes: 3,
		Layers: []LayerSpec{{Type: LayerBatchNorm, Momentum: momentum}, {Type: LayerAffine, Units: 3}, {Type: LayerSoftmax}},
	}
	b := kernels.NewReference[float64]()
	net, err := New(s, b, batch)
	if err != nil {
		t.Fatal(err)
	}
	net.InitParams(1)
	ps := net.Params()
	gamma, beta, mean, variance := ps.Lookup("batchnorm1.gamma"), ps.Lookup("batchnorm1.beta"), ps.Lookup("batchnorm1.mean"), ps.Lookup("batchnorm1.var")
	for c := range 3 {
		if gamma.Value[c] != 1 || beta.Value[c] != 0 || mean.Value[c] != 0 || variance.Value[c] != 1 {
			t.Fatalf("channel %d starts at gamma %v, beta %v, mean %v, var %v; want the identity 1, 0, 0, 1",
				c, gamma.Value[c], beta.Value[c], mean.Value[c], variance.Value[c])
		}
	}
	if mean.StatMomentum != momentum || variance.StatMomentum != momentum || gamma.StatMomentum != 0 || beta.StatMomentum != 0 {
		t.Fatalf("StatMomentum: gamma %v, beta %v, mean %v, var %v; want 0, 0, %v, %v",
			gamma.StatMomentum, beta.StatMomentum, mean.StatMomentum, variance.StatMomentum, momentum, momentum)
	}

	r := newRand(3)
	x := make([]float64, batch*net.InputSize())
	fillNormal(r, x, 2)
	for i := range x {
		x[i] += float64(i % 3) // channels of different means
	}
	// Each channel's statistics over the 16 rows (4 samples × 4 pixels).
	const rows = batch * 4
	var m, v [3]float64
	for c := range 3 {
		for row := range rows {
			m[c] += x[row*3+c] / rows
		}
		for row := range rows {
			d := x[row*3+c] - m[c]
			v[c] += d * d / rows
		}
	}

	if _, err := net.Forward(x, batch, nil, RunContext{Train: true}); err != nil {
		t.Fatal(err)
	}
	for c := range 3 {
		if mean.Grad[c] != 0 || variance.Grad[c] != 0 {
			t.Fatalf("a plain training Forward wrote statistics: mean %v, var %v", mean.Grad, variance.Grad)
		}
	}
	labels := []int32{0, 1, 2, 1}
	mustLoss(t, net, x, labels, nil, RunContext{Train: true}, gradScale)
	mustBackward(t, net)
	near := func(what string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-12*max(1, math.Abs(want)) {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	for c := range 3 {
		near("mean gradient", mean.Grad[c], m[c]*batch*gradScale)
		near("var gradient", variance.Grad[c], v[c]*rows/(rows-1)*batch*gradScale)
	}

	// The engine divides summed gradients by the batch; here, by hand,
	// with a clipping norm far below the statistics' own.
	for _, p := range ps {
		for j := range p.Grad {
			p.Grad[j] /= batch * gradScale
		}
	}
	statMean, statVar := mean.Grad[0], variance.Grad[0]
	trainedNorm := GradNorm(ps)
	var all float64
	for _, p := range ps {
		for _, g := range p.Grad {
			all += g * g
		}
	}
	if !(trainedNorm < math.Sqrt(all)) {
		t.Fatalf("GradNorm %v counts the running statistics (all gradients: %v)", trainedNorm, math.Sqrt(all))
	}
	opt, err := NewOptimizer(OptimizerSpec{Type: OptAdam, LR: 0.1, WeightDecay: 0.5, ClipNorm: 1e-3}, ps, Horizon{})
	if err != nil {
		t.Fatal(err)
	}
	opt.Update(b, ps)
	near("running mean after one step", mean.Value[0], momentum*statMean)
	near("running var after one step", variance.Value[0], 1+momentum*(statVar-1))
	if gamma.Value[0] == 1 {
		t.Error("gamma did not move: the optimizer skipped a trained batch-norm parameter")
	}

	// Inference with running statistics equal to the batch's (biased)
	// ones gives the training pass's output.
	trainLogits, err := net.Forward(x, batch, nil, RunContext{Train: true})
	if err != nil {
		t.Fatal(err)
	}
	want := append([]float64(nil), trainLogits...)
	for c := range 3 {
		mean.Value[c], variance.Value[c] = m[c], v[c]
	}
	got, err := net.Forward(x, batch, nil, RunContext{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		near("inference logit", got[i], want[i])
	}
}
