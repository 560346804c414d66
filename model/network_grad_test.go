package model

import (
	"strings"
	"testing"

	"github.com/dpcnn/dpcnn/kernels"
)

// checkNetworkGradients compares the gradients of Network.Backward with
// central differences of the mean loss, over perTensor random coordinates
// of every parameter tensor (all of them when the tensor is smaller). It
// runs in training with a fixed RunContext and fixed sample indices, so the
// dropout masks are the same for every perturbation.
func checkNetworkGradients(t *testing.T, s Spec, batch, perTensor int, seed uint64) {
	t.Helper()
	net, err := New(s, kernels.NewReference[float64](), batch)
	if err != nil {
		t.Fatal(err)
	}
	net.InitParams(seed)
	r := newRand(seed)
	// Non-zero biases, so a bias gradient bug cannot hide behind zeros;
	// batch-norm scales near 1.
	for _, p := range net.Params() {
		if len(p.Shape) == 1 && p.trained() {
			fillNormal(r, p.Value, 0.05)
		}
		if strings.HasSuffix(p.Name, bnGamma) {
			for i := range p.Value {
				p.Value[i]++
			}
		}
	}
	x := make([]float64, batch*net.InputSize())
	for i := range x {
		x[i] = r.Float64() // pixel-like input in [0, 1)
	}
	labels := make([]int32, batch)
	samples := make([]int64, batch)
	for i := range labels {
		labels[i] = int32(r.IntN(s.Classes))
		samples[i] = int64(1000 + 7*i)
	}
	rc := RunContext{Train: true, Seed: seed, Step: 11}
	scale := 1 / float64(batch)
	loss, _ := mustLoss(t, net, x, labels, samples, rc, scale)
	mustBackward(t, net)
	if loss == 0 {
		t.Fatal("loss is zero")
	}
	var w gradWorst
	checked := 0 // running statistics, which have no gradient
	for li, l := range net.layers {
		// Moving a parameter of layer li leaves the layers before it
		// alone, so the loss is recomputed from li's saved input on.
		in := l.input()
		f := func() float64 {
			a := in
			for _, l := range net.layers[li:] {
				a = l.forward(a, batch, rc, kernels.HostTensor(samples))
			}
			m := batch * net.classes
			loss, _ := net.b.SoftmaxCrossEntropy(batch, net.classes, a.Host(), labels, scale, net.probs.Host()[:m], net.dlogits.Host()[:m])
			return loss * scale
		}
		for _, p := range l.params() {
			if !p.trained() {
				checked++ // a running statistic: no gradient to check
				continue
			}
			grad := append([]float64(nil), p.Grad...)
			idx := r.Perm(len(p.Value))
			if len(idx) > perTensor {
				idx = idx[:perTensor]
			}
			for _, i := range idx {
				w.add(p.Name, i, grad[i], numericGrad(f, p.Value, i))
			}
		}
		f() // leave the activations of the unperturbed parameters for the next layers
	}
	if want := len(net.Params()); w.checked+checked < want {
		t.Fatalf("checked %d coordinates, fewer than the %d parameter tensors", w.checked, want)
	}
	w.report(t, s.Name)
}

func TestBuiltinGradients(t *testing.T) {
	for _, c := range []struct {
		name      string
		perTensor int
	}{
		{"simple", 25},
		{"lenet", 25},
		{"deep", 12}, // a full loss evaluation takes ~30 ms on the reference backend
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := Builtin(c.name)
			if err != nil {
				t.Fatal(err)
			}
			if c.name == "simple" {
				// With weights of std 0.01 the 2×24×24 outputs of a conv
				// filter are of size ~0.03, so the nearest to a ReLU kink
				// is ~3e-5 away, and moving the filter's bias by ε
				// crosses it. Larger weights keep the kinks out of reach
				// without changing the architecture under test.
				s.Init = "std:0.1"
			}
			checkNetworkGradients(t, s, 2, c.perTensor, 5)
		})
	}
}

// alexNetSpec is an AlexNet-style network shrunk to a 16×16 RGB input:
// convolutions with ReLU and local response normalisation, overlapping max
// pooling (window 3, stride 2), fully connected layers with inverted dropout.
func alexNetSpec() Spec {
	return Spec{
		Name:    "alexnet-tiny",
		Input:   InputShape{Height: 16, Width: 16, Channels: 3},
		Classes: 10,
		Init:    "he",
		Layers: []LayerSpec{
			{Type: LayerConv, Filters: 8, Size: 5, Stride: 2, Pad: 2}, // 8×8×8
			{Type: LayerReLU},
			{Type: LayerLRN, Size: 5, Alpha: 1e-2, Beta: 0.75, K: 2},
			{Type: LayerMaxPool, Size: 3, Stride: 2, Pad: 1}, // 4×4×8
			{Type: LayerConv, Filters: 12, Size: 3, Pad: 1},
			{Type: LayerReLU},
			{Type: LayerLRN, Size: 5, Alpha: 1e-2, Beta: 0.75, K: 2},
			{Type: LayerConv, Filters: 12, Size: 3, Pad: 1},
			{Type: LayerReLU},
			{Type: LayerMaxPool, Size: 3, Stride: 2}, // 1×1×12
			{Type: LayerAffine, Units: 32},
			{Type: LayerReLU},
			{Type: LayerDropout, Ratio: 0.5, Inverted: true},
			{Type: LayerAffine, Units: 32},
			{Type: LayerReLU},
			{Type: LayerDropout, Ratio: 0.5, Inverted: true},
			{Type: LayerAffine, Units: 10},
			{Type: LayerSoftmax},
		},
	}
}

func TestAlexNetStyleGradients(t *testing.T) {
	checkNetworkGradients(t, alexNetSpec(), 3, 150, 3)
}

// TestMixedNetworkGradients runs every layer type in one small network,
// with a sigmoid and an average pool between convolutions, so the
// gradient of each layer's input is checked as it flows into the next.
func TestMixedNetworkGradients(t *testing.T) {
	s := Spec{
		Name:    "mixed",
		Input:   InputShape{Height: 9, Width: 8, Channels: 2},
		Classes: 4,
		Init:    "xavier",
		Layers: []LayerSpec{
			{Type: LayerSigmoid}, // before the first parameters: skipped by backward
			{Type: LayerConv, Filters: 3, Size: 3, Stride: 2, Pad: 1}, // 5×4×3
			{Type: LayerSigmoid},
			{Type: LayerAvgPool, Size: 2, Stride: 1}, // 4×3×3
			{Type: LayerLRN, Size: 3, Alpha: 0.5, Beta: 0.75, K: 1},
			{Type: LayerConv, Filters: 4, Size: 2, Init: "std:0.3"}, // 3×2×4
			{Type: LayerReLU},
			{Type: LayerMaxPool, Size: 2, Stride: 1}, // 2×1×4
			{Type: LayerAffine, Units: 6},
			{Type: LayerDropout, Ratio: 0.25},
			{Type: LayerAffine, Units: 4},
			{Type: LayerSoftmax},
		},
	}
	checkNetworkGradients(t, s, 3, 1000, 8)
}

// TestBatchNormNetworkGradients checks batch norm inside a network, after
// convolutions (statistics over the pixels of every sample) and after an
// affine layer (over the samples), each followed by a ReLU, the first
// conv's bias made redundant by the normalisation as in real networks.
func TestBatchNormNetworkGradients(t *testing.T) {
	s := Spec{
		Name:    "batchnorm",
		Input:   InputShape{Height: 8, Width: 7, Channels: 2},
		Classes: 4,
		Init:    "he",
		Layers: []LayerSpec{
			{Type: LayerConv, Filters: 3, Size: 3, Pad: 1}, // 8×7×3
			{Type: LayerBatchNorm},
			{Type: LayerReLU},
			{Type: LayerMaxPool, Size: 2},                     // 4×3×3
			{Type: LayerConv, Filters: 4, Size: 2, Stride: 2}, // 2×1×4
			{Type: LayerBatchNorm, Eps: 1e-3, Momentum: 0.3},
			{Type: LayerReLU},
			{Type: LayerAffine, Units: 6},
			{Type: LayerBatchNorm},
			{Type: LayerReLU},
			{Type: LayerAffine, Units: 4},
			{Type: LayerSoftmax},
		},
	}
	checkNetworkGradients(t, s, 4, 1000, 9)
}
