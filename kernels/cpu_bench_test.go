package kernels_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

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

// BenchmarkCPUConv times the three convolution passes of each layer on all
// cores (GOMAXPROCS threads) and reports GFLOP/s, counting one multiply-add
// of the im2col product as two operations.
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
			{"BackwardData", func() { c.ConvBackwardData(g, dy, w, dx) }},
			{"BackwardFilter", func() { c.ConvBackwardFilter(g, x, dy, dw, db) }},
		} {
			b.Run(pass.name+"/"+name, func(b *testing.B) {
				pass.run()
				b.ResetTimer()
				for b.Loop() {
					pass.run()
				}
				b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
