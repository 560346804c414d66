package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// cpuKernelPath is one set of kernels the CPU backend may run, chosen by
// the processor's features: the GEMM family, the conv1 kernels, the AVX2
// elementwise loops.
type cpuKernelPath struct {
	name  string
	gemm  *sgemmKernel
	conv1 bool
	avx2  bool
}

// cpuPathGeoms are convolutions that take every path the plan can choose:
// the deep network's six layers (conv1's kernels, the k-blocked and fused
// filter gradients of conv4–conv6, backward data as a forward convolution)
// at small odd batches, a one-channel layer into 16 filters with a k block
// that ends inside an output row, 16 channels into one filter (its input
// gradient takes conv1's kernels), a strided one and a direct 1×1 one.
var cpuPathGeoms = []ConvGeom{
	{N: 3, H: 28, W: 28, C: 1, OC: 16, KH: 3, KW: 3, Stride: 1, Pad: 1},
	{N: 2, H: 28, W: 28, C: 16, OC: 16, KH: 3, KW: 3, Stride: 1, Pad: 1},
	{N: 5, H: 14, W: 14, C: 16, OC: 32, KH: 3, KW: 3, Stride: 1, Pad: 1},
	{N: 3, H: 14, W: 14, C: 32, OC: 32, KH: 3, KW: 3, Stride: 1, Pad: 2},
	{N: 7, H: 8, W: 8, C: 32, OC: 64, KH: 3, KW: 3, Stride: 1, Pad: 1},
	{N: 9, H: 8, W: 8, C: 64, OC: 64, KH: 3, KW: 3, Stride: 1, Pad: 1},
	{N: 13, H: 9, W: 7, C: 1, OC: 16, KH: 3, KW: 3, Stride: 1, Pad: 0},
	{N: 4, H: 7, W: 6, C: 16, OC: 1, KH: 3, KW: 3, Stride: 1, Pad: 1},
	{N: 6, H: 13, W: 11, C: 8, OC: 12, KH: 5, KW: 3, Stride: 2, Pad: 2},
	{N: 5, H: 9, W: 9, C: 32, OC: 24, KH: 1, KW: 1, Stride: 1, Pad: 0},
	{N: 4, H: 28, W: 28, C: 1, OC: 30, KH: 5, KW: 5, Stride: 1, Pad: 0},
	{N: 4, H: 28, W: 28, C: 1, OC: 6, KH: 5, KW: 5, Stride: 1, Pad: 2},
}

// cpuPathOutputs runs every CPU primitive with a sum, and copies each
// output under a name.
func cpuPathOutputs(threads int) map[string][]float32 {
	c := NewCPU(threads)
	defer c.Close()
	rng := rand.New(rand.NewPCG(41, 42))
	random := func(n int) []float32 {
		s := make([]float32, n)
		sgemmAwkward(rng, s, false)
		return s
	}
	out := map[string][]float32{}
	keep := func(name string, s []float32) { out[name] = append([]float32(nil), s...) }
	for gi, g := range cpuPathGeoms {
		x, w, bias, dy := random(g.InLen()), random(g.FilterLen()), random(g.OC), random(g.OutLen())
		y, dx := make([]float32, g.OutLen()), make([]float32, g.InLen())
		dw, db := make([]float32, g.FilterLen()), make([]float32, g.OC)
		name := fmt.Sprintf("conv%d %+v", gi, g)
		c.ConvForward(g, x, w, bias, y)
		keep(name+" y", y)
		c.ConvForwardReLU(g, x, w, bias, y)
		keep(name+" yReLU", y)
		c.ConvBackwardData(g, dy, w, dx)
		keep(name+" dx", dx)
		c.ConvBackwardFilter(g, x, dy, dw, db)
		keep(name+" dw", dw)
		keep(name+" db", db)
	}
	for _, s := range [][3]int{{37, 1024, 50}, {37, 50, 10}, {9, 400, 120}} {
		n, in, o := s[0], s[1], s[2]
		x, w, bias, dy := random(n*in), random(in*o), random(o), random(n*o)
		y, dx, dw, db := make([]float32, n*o), make([]float32, n*in), make([]float32, in*o), make([]float32, o)
		c.AffineForward(n, in, o, x, w, bias, y)
		c.AffineBackward(n, in, o, x, w, dy, dx, dw, db)
		name := fmt.Sprintf("affine %v", s)
		keep(name+" y", y)
		keep(name+" dx", dx)
		keep(name+" dw", dw)
		keep(name+" db", db)
	}
	pg := PoolGeom{N: 5, H: 14, W: 14, C: 16, Size: 2, Stride: 2}
	px, pdy := random(pg.InLen()), random(pg.OutLen())
	py, pdx, arg := make([]float32, pg.OutLen()), make([]float32, pg.InLen()), make([]int32, pg.OutLen())
	c.MaxPoolForward(pg, px, py, arg)
	keep("maxpool y", py)
	c.MaxPoolBackward(pg, pdy, arg, pdx)
	keep("maxpool dx", pdx)
	c.AvgPoolForward(pg, px, py)
	keep("avgpool y", py)
	c.AvgPoolBackward(pg, pdy, pdx)
	keep("avgpool dx", pdx)
	return out
}

// TestCPUPathsAgree checks that every kernel path this processor runs
// (AVX-512 with the conv1 kernels, AVX2, plain Go) gives the same bits for
// every primitive with a sum, on one and on three threads.
func TestCPUPathsAgree(t *testing.T) {
	paths := cpuKernelPaths()
	if len(paths) == 1 {
		t.Logf("only the %s path runs here: nothing to compare in process (the golden hashes of package model compare it with the others)", paths[0].name)
	}
	var want map[string][]float32
	for _, p := range paths {
		restore := p.use()
		for _, threads := range []int{1, 3} {
			got := cpuPathOutputs(threads)
			if want == nil {
				want = got
				continue
			}
			for name, w := range want {
				g := got[name]
				for i := range w {
					if math.Float32bits(g[i]) != math.Float32bits(w[i]) {
						t.Errorf("%s path, %d threads: %s: element %d is %v, the %s path gives %v", p.name, threads, name, i, g[i], paths[0].name, w[i])
						break
					}
				}
			}
		}
		restore()
	}
}
