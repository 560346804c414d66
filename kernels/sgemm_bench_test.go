package kernels

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// sgemmBenchShapes are the products of the convolution layers we train:
// (M, N, K) of the forward im2col GEMM y = col·W. The backward ones are
// derived from them (see BenchmarkSgemm).
var sgemmBenchShapes = [][3]int{
	{78400, 16, 9}, {78400, 16, 144}, {19600, 32, 144},
	{25600, 32, 288}, {6400, 64, 288}, {6400, 64, 576},
}

// sgemmPeaks caches each kernel family's measured FMA peak in GFLOP/s.
var sgemmPeaks sync.Map

// sgemmPeakGFLOPS measures the FMA throughput ceiling of kern on this core:
// the best of many short timed runs of its independent-FMA loop, so that a
// machine shared with other work still shows its peak. It returns 0 for a
// family without one (pure Go).
func sgemmPeakGFLOPS(kern *sgemmKernel) float64 {
	if kern.peak == nil {
		return 0
	}
	if v, ok := sgemmPeaks.Load(kern.name); ok {
		return v.(float64)
	}
	const iters = 5_000 // about a millisecond
	kern.peak(iters)    // warm up
	best := 0.0
	for range 200 {
		start := time.Now()
		kern.peak(iters)
		best = max(best, float64(iters*kern.peakFlops)/time.Since(start).Seconds()/1e9)
	}
	sgemmPeaks.Store(kern.name, best)
	return best
}

// BenchmarkSgemmPeak reports the FMA peak the GEMM benchmarks are compared to.
func BenchmarkSgemmPeak(b *testing.B) {
	for _, kern := range sgemmKernels() {
		if kern.peak == nil {
			continue
		}
		b.Run(kern.name, func(b *testing.B) {
			const iters = 100_000
			for b.Loop() {
				kern.peak(iters)
			}
			b.ReportMetric(float64(b.N)*iters*float64(kern.peakFlops)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			b.ReportMetric(sgemmPeakGFLOPS(kern), "best-GFLOP/s")
		})
	}
}

// BenchmarkSgemm times every kernel family on a 1024³ square and on each
// convolution shape in its three forms: forward y = col·W (M×N×K), filter
// gradient dW = colᵀ·dy (K×N×M, transA) and input gradient dcol = dy·Wᵀ
// (M×K×N, transB). It reports the mean GFLOP/s, the GFLOP/s of the fastest
// call (best-GFLOP/s: on a machine shared with other work, the one least
// disturbed) and that as a percentage of the measured FMA peak of the same
// instruction set (%peak).
func BenchmarkSgemm(b *testing.B) {
	benchmarkSgemmShapes(b, 1)
}

// BenchmarkSgemmSlice is BenchmarkSgemm with the pixel dimension (M, or K
// of dW) cut to an eighth: the share of one of eight threads, whose
// operands mostly fit in cache, where the full shapes stream from memory.
func BenchmarkSgemmSlice(b *testing.B) {
	benchmarkSgemmShapes(b, 8)
}

func benchmarkSgemmShapes(b *testing.B, slice int) {
	type bench struct {
		name           string
		transA, transB bool
		m, n, k        int
	}
	var benches []bench
	if slice == 1 {
		benches = append(benches, bench{name: "square_1024", m: 1024, n: 1024, k: 1024})
	}
	for _, s := range sgemmBenchShapes {
		m, n, k := s[0]/slice, s[1], s[2]
		benches = append(benches,
			bench{name: fmt.Sprintf("fwd_%dx%dx%d", m, n, k), m: m, n: n, k: k},
			bench{name: fmt.Sprintf("dW_%dx%dx%d", k, n, m), transA: true, m: k, n: n, k: m},
			bench{name: fmt.Sprintf("dcol_%dx%dx%d", m, k, n), transB: true, m: m, n: k, k: n},
		)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	random := func(n int) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = float32(rng.Float64()*2 - 1)
		}
		return s
	}
	for _, kern := range sgemmKernels() {
		b.Run(kern.name, func(b *testing.B) {
			peak := sgemmPeakGFLOPS(kern)
			for _, bc := range benches {
				b.Run(bc.name, func(b *testing.B) {
					lda, ldb := bc.k, bc.n
					if bc.transA {
						lda = bc.m
					}
					if bc.transB {
						ldb = bc.k
					}
					a, bm, c := random(bc.m*bc.k), random(bc.k*bc.n), make([]float32, bc.m*bc.n)
					w := SgemmWorkspace{kernel: kern}
					w.Sgemm(bc.transA, bc.transB, bc.m, bc.n, bc.k, 1, a, lda, bm, ldb, 0, c, bc.n)
					fastest := time.Hour
					for b.Loop() {
						start := time.Now()
						w.Sgemm(bc.transA, bc.transB, bc.m, bc.n, bc.k, 1, a, lda, bm, ldb, 0, c, bc.n)
						fastest = min(fastest, time.Since(start))
					}
					flops := 2 * float64(bc.m) * float64(bc.n) * float64(bc.k)
					b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
					best := flops / fastest.Seconds() / 1e9
					b.ReportMetric(best, "best-GFLOP/s")
					if peak > 0 {
						b.ReportMetric(100*best/peak, "%peak")
					}
				})
			}
		})
	}
}
