package kernels

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// sgemmPortableShapes are products of the deep network at batch 100 that
// the plain-Go path runs, as one thread's share (an eighth of the pixel
// rows, as in BenchmarkSgemmSlice): conv2's and conv6's forward products,
// conv3's filter gradient and conv5's input gradient (dcol = dy·Wᵀ).
var sgemmPortableShapes = []struct {
	name           string
	transA, transB bool
	m, n, k        int
}{
	{"conv2_fwd", false, false, 9800, 16, 144},
	{"conv6_fwd", false, false, 800, 64, 576},
	{"conv3_dW", true, false, 144, 32, 2450},
	{"conv5_dcol", false, true, 800, 288, 64},
}

// BenchmarkSgemmPortable compares, on the deep network's shapes, our
// portable GEMM, the Go kernel family (exact float32 FMAs, emulated on amd64
// and the FMADDS instruction on arm64, so that it gives the assembly
// kernels' bits), with gonum's blas32.Gemm (gonum.org/v1/gonum/blas/gonum:
// Go, with SSE assembly for its inner loops on amd64; it sums in its own
// order and does not fuse on amd64). gonum splits large products over
// GOMAXPROCS goroutines, so run it with -cpu 1 to compare one thread with
// one thread. It reports GFLOP/s and the fastest call's (best-GFLOP/s).
func BenchmarkSgemmPortable(b *testing.B) {
	rng := rand.New(rand.NewPCG(8, 8))
	random := func(n int) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = float32(rng.Float64()*2 - 1)
		}
		return s
	}
	for _, sh := range sgemmPortableShapes {
		lda, ldb := sh.k, sh.n
		if sh.transA {
			lda = sh.m
		}
		if sh.transB {
			ldb = sh.k
		}
		a, bm, c := random(sh.m*sh.k), random(sh.k*sh.n), make([]float32, sh.m*sh.n)
		flops := 2 * float64(sh.m) * float64(sh.n) * float64(sh.k)
		run := func(b *testing.B, call func()) {
			call()
			fastest := time.Hour
			for b.Loop() {
				start := time.Now()
				call()
				fastest = min(fastest, time.Since(start))
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			b.ReportMetric(flops/fastest.Seconds()/1e9, "best-GFLOP/s")
		}
		name := fmt.Sprintf("%s_%dx%dx%d", sh.name, sh.m, sh.n, sh.k)
		b.Run("go/"+name, func(b *testing.B) {
			w := SgemmWorkspace{kernel: sgemmGo}
			run(b, func() { w.Sgemm(sh.transA, sh.transB, sh.m, sh.n, sh.k, 1, a, lda, bm, ldb, 0, c, sh.n) })
		})
		b.Run("gonum/"+name, func(b *testing.B) {
			tA, tB := blas.NoTrans, blas.NoTrans
			rA, cA, rB, cB := sh.m, sh.k, sh.k, sh.n
			if sh.transA {
				tA, rA, cA = blas.Trans, sh.k, sh.m
			}
			if sh.transB {
				tB, rB, cB = blas.Trans, sh.n, sh.k
			}
			ga := blas32.General{Rows: rA, Cols: cA, Stride: lda, Data: a}
			gb := blas32.General{Rows: rB, Cols: cB, Stride: ldb, Data: bm}
			gc := blas32.General{Rows: sh.m, Cols: sh.n, Stride: sh.n, Data: c}
			run(b, func() { blas32.Gemm(tA, tB, 1, ga, gb, 0, gc) })
		})
	}
}
