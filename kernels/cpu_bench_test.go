package kernels_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/dpcnn/dpcnn/kernels"
)

// cpuDeepNetConvs are the six 3×3 convolutions of the book's deep network
// (conv-conv-pool ×3) at batch 100.
var cpuDeepNetConvs = []kernels.ConvGeom{
	{N: 100, H: 28, W: 28, C: 1, OC: 16, KH: 3, KW: 3, Stride: 1, Pad: 1},
	{N: 100, H: 28, W: 28, C: 16, OC: 16, KH: 3, KW: 3, Stride: 1, Pad: 1},
	{N: 100, H: 14, W: 14, C: 16, OC: 32, KH: 3, KW: 3, Stride: 1, Pad: 1},
	{N: 100, H: 14, W: 14, C: 32, OC: 32, KH: 3, KW: 3, Stride: 1, Pad: 2},
	{N: 100, H: 8, W: 8, C: 32, OC: 64, KH: 3, KW: 3, Stride: 1, Pad: 1},
	{N: 100, H: 8, W: 8, C: 64, OC: 64, KH: 3, KW: 3, Stride: 1, Pad: 1},
}

// BenchmarkCPUConv times the convolution passes of each layer on all cores
// (GOMAXPROCS threads) and reports GFLOP/s, counting one multiply-add of the
// im2col product as two operations (ForwardReLU adds bias and ReLU for
// free), and best-GFLOP/s, that of the fastest call: on a machine shared
// with other work, the one least disturbed.
func BenchmarkCPUConv(b *testing.B) {
	c := kernels.NewCPU(0)
	defer c.Close()
	rng := rand.New(rand.NewPCG(5, 6))
	for _, g := range cpuDeepNetConvs {
		x, w, bias, dy := cpuRandom(rng, g.InLen()), cpuRandom(rng, g.FilterLen()), cpuRandom(rng, g.OC), cpuRandom(rng, g.OutLen())
		y, dx := make([]float32, g.OutLen()), make([]float32, g.InLen())
		dw, db := make([]float32, g.FilterLen()), make([]float32, g.OC)
		flops := 2 * float64(g.ColRows()) * float64(g.ColCols()) * float64(g.OC)
		name := fmt.Sprintf("%dx%dx%d-%d-pad%d", g.H, g.W, g.C, g.OC, g.Pad)
		for _, pass := range []struct {
			name string
			run  func()
		}{
			{"Forward", func() { c.ConvForward(g, x, w, bias, y) }},
			{"ForwardReLU", func() { c.ConvForwardReLU(g, x, w, bias, y) }},
			{"BackwardData", func() { c.ConvBackwardData(g, dy, w, dx) }},
			{"BackwardFilter", func() { c.ConvBackwardFilter(g, x, dy, dw, db) }},
		} {
			b.Run(pass.name+"/"+name, func(b *testing.B) {
				pass.run()
				b.ResetTimer()
				fastest := time.Hour
				for b.Loop() {
					start := time.Now()
					pass.run()
					fastest = min(fastest, time.Since(start))
				}
				b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				b.ReportMetric(flops/fastest.Seconds()/1e9, "best-GFLOP/s")
			})
		}
	}
}

// BenchmarkCPUMemoryBound times the deep network's memory-bound primitives
// at batch 100 on all cores and reports GB/s: the bytes each must read and
// write once (what a perfect kernel moves), over the time taken.
func BenchmarkCPUMemoryBound(b *testing.B) {
	c := kernels.NewCPU(0)
	defer c.Close()
	rng := rand.New(rand.NewPCG(9, 10))
	const n = 100 * 28 * 28 * 16 // conv2's output
	x, dy, y := cpuRandom(rng, n), cpuRandom(rng, n), make([]float32, n)
	pg := kernels.PoolGeom{N: 100, H: 28, W: 28, C: 16, Size: 2, Stride: 2}
	py, pdy, arg := make([]float32, pg.OutLen()), cpuRandom(rng, pg.OutLen()), make([]int32, pg.OutLen())
	const params = 123_552 // the deep network's
	p, g, m, v := cpuRandom(rng, params), cpuRandom(rng, params), make([]float32, params), make([]float32, params)
	adam := kernels.AdamParams{LR: 0.001, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, T: 1}
	for _, k := range []struct {
		name  string
		bytes int
		run   func()
	}{
		{"ReLUForward", 8 * n, func() { c.ReLUForward(x, y) }},
		{"ReLUBackward", 12 * n, func() { c.ReLUBackward(x, dy, y) }},
		{"MaxPoolForward", 4*n + 8*pg.OutLen(), func() { c.MaxPoolForward(pg, x, py, arg) }},
		{"MaxPoolBackward", 4*n + 8*pg.OutLen(), func() { c.MaxPoolBackward(pg, pdy, arg, y) }},
		{"AdamUpdate", 28 * params, func() { adam.T++; c.AdamUpdate(adam, p, g, m, v) }},
	} {
		b.Run(k.name, func(b *testing.B) {
			k.run()
			b.ResetTimer()
			for b.Loop() {
				k.run()
			}
			b.ReportMetric(float64(k.bytes)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
	}
}
