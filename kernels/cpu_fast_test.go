package kernels_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/dpcnn/dpcnn/kernels"
)

// The vector paths of the CPU backend (ReLU, bias, pooling with its
// argmax) must give the reference's bits exactly, also on the values where
// a careless vector instruction differs from the scalar rule: NaN, −0, ties
// and infinities, at every length around the vector width.

// cpuSpecials returns n values drawn from a small set with many ties and
// every special value.
func cpuSpecials(rng *rand.Rand, n int) []float32 {
	set := []float32{0, float32(math.Copysign(0, -1)), 1, -1, 0.5, -0.5, float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 1e-38, -1e-38}
	s := make([]float32, n)
	for i := range s {
		s[i] = set[rng.IntN(len(set))]
	}
	return s
}

func cpuSameBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Errorf("%s: element %d is %v (%#x), the reference gives %v (%#x)", what, i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
			return
		}
	}
}

func TestCPUReLUSpecialValues(t *testing.T) {
	c := kernels.NewCPU(2)
	defer c.Close()
	ref := kernels.NewReference[float32]()
	rng := rand.New(rand.NewPCG(11, 12))
	for n := range 41 {
		x, dy := cpuSpecials(rng, n), cpuSpecials(rng, n)
		want, got := make([]float32, n+1), make([]float32, n+1)
		got[n], want[n] = 7, 7 // must survive
		ref.ReLUForward(x, want[:n])
		c.ReLUForward(x, got[:n])
		cpuSameBits(t, "ReLUForward", got, want)
		ref.ReLUBackward(x, dy, want[:n])
		c.ReLUBackward(x, dy, got[:n])
		cpuSameBits(t, "ReLUBackward", got, want)
	}
	// A long input takes the threaded path.
	x, dy := cpuSpecials(rng, 100_003), cpuSpecials(rng, 100_003)
	want, got := make([]float32, len(x)), make([]float32, len(x))
	ref.ReLUForward(x, want)
	c.ReLUForward(x, got)
	cpuSameBits(t, "ReLUForward long", got, want)
	ref.ReLUBackward(x, dy, want)
	c.ReLUBackward(x, dy, got)
	cpuSameBits(t, "ReLUBackward long", got, want)
}

// TestCPUConvForwardReLUSpecialBias checks the fused bias and ReLU on
// biases that make outputs NaN, infinite or exactly zero, for channel
// counts on and off the vector width.
func TestCPUConvForwardReLUSpecialBias(t *testing.T) {
	c := kernels.NewCPU(2)
	defer c.Close()
	rng := rand.New(rand.NewPCG(13, 14))
	var geoms []kernels.ConvGeom
	for _, oc := range []int{1, 7, 8, 9, 16, 24, 33} {
		geoms = append(geoms, kernels.ConvGeom{N: 3, H: 6, W: 5, C: 2, OC: oc, KH: 3, KW: 3, Stride: 1, Pad: 1})
	}
	// The conv1 kernels apply bias and ReLU themselves.
	geoms = append(geoms, kernels.ConvGeom{N: 3, H: 6, W: 5, C: 1, OC: 16, KH: 3, KW: 3, Stride: 1, Pad: 1})
	for _, g := range geoms {
		oc := g.OC
		x, w := cpuRandom(rng, g.InLen()), make([]float32, g.FilterLen()) // w = 0: y = relu(bias)
		bias := cpuSpecials(rng, oc)
		got, want := make([]float32, g.OutLen()), make([]float32, g.OutLen())
		c.ConvForwardReLU(g, x, w, bias, got)
		for i := range want {
			want[i] = bias[i%oc]
		}
		kernels.NewReference[float32]().ReLUForward(want, want)
		cpuSameBits(t, "ConvForwardReLU", got, want)
	}
}

// TestCPUMaxPoolTiesAndNaN compares the pooling of inputs full of ties, NaNs
// and infinities with the float32 reference, values and argmax exactly.
func TestCPUMaxPoolTiesAndNaN(t *testing.T) {
	c := kernels.NewCPU(2)
	defer c.Close()
	ref := kernels.NewReference[float32]()
	rng := rand.New(rand.NewPCG(15, 16))
	for _, g := range []kernels.PoolGeom{
		{N: 3, H: 8, W: 8, C: 16, Size: 2, Stride: 2},
		{N: 2, H: 7, W: 9, C: 24, Size: 3, Stride: 2, Pad: 1},
		{N: 2, H: 6, W: 6, C: 8, Size: 3, Stride: 1, Pad: 1},
		{N: 2, H: 6, W: 6, C: 12, Size: 2, Stride: 2},
	} {
		x := cpuSpecials(rng, g.InLen())
		got, want := make([]float32, g.OutLen()), make([]float32, g.OutLen())
		gotArg, wantArg := make([]int32, g.OutLen()), make([]int32, g.OutLen())
		c.MaxPoolForward(g, x, got, gotArg)
		ref.MaxPoolForward(g, x, want, wantArg)
		cpuSameBits(t, "MaxPoolForward", got, want)
		for i := range wantArg {
			if gotArg[i] != wantArg[i] {
				t.Errorf("%+v: argmax[%d] = %d, the reference gives %d", g, i, gotArg[i], wantArg[i])
				break
			}
		}
	}
}

// TestCPUAdamLargeMatchesReference checks AdamUpdate on a tensor large
// enough to be split across threads: every element must equal the
// reference's bits, as on the serial path.
func TestCPUAdamLargeMatchesReference(t *testing.T) {
	c := kernels.NewCPU(2)
	defer c.Close()
	ref := kernels.NewReference[float32]()
	rng := rand.New(rand.NewPCG(17, 18))
	const n = 100_003
	p, g, m, v := cpuRandom(rng, n), cpuRandom(rng, n), cpuRandom(rng, n), cpuRandom(rng, n)
	for i := range v {
		v[i] = float32(math.Abs(float64(v[i])))
	}
	a := kernels.AdamParams{LR: 0.001, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, T: 3}
	wp, wm, wv := append([]float32(nil), p...), append([]float32(nil), m...), append([]float32(nil), v...)
	c.AdamUpdate(a, p, g, m, v)
	ref.AdamUpdate(a, wp, g, wm, wv)
	cpuSameBits(t, "Adam p", p, wp)
	cpuSameBits(t, "Adam m", m, wm)
	cpuSameBits(t, "Adam v", v, wv)
}
