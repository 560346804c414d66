package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestSgemmPackedMatchesSgemm checks that a product with a B packed once
// gives Sgemm's bits exactly, for every kernel family, both layouts of A and
// B, sizes at the tile edges and across the k block and the B panel, and
// that one packed B serves many products (as the blocks of a convolution
// share it).
func TestSgemmPackedMatchesSgemm(t *testing.T) {
	for _, kern := range sgemmKernels() {
		t.Run(kern.name, func(t *testing.T) {
			w := &SgemmWorkspace{kernel: kern}
			rng := rand.New(rand.NewPCG(9, uint64(kern.mr)))
			_, _, nc := kern.blocks(3, sgemmKC+1)
			var pb SgemmPackedB
			type shape struct{ m, n, k int }
			shapes := []shape{
				{1, 1, 1}, {kern.mr - 1, kern.narrowNR + 1, 9}, {kern.mr + 1, kern.wideNR - 1, 144},
				{3*kern.mr + 2, kern.wideNR + kern.narrowNR, sgemmKC + 1}, {2, nc + 1, sgemmKC + 1},
				{50, 16, 2*sgemmKC + 7},
			}
			for _, sh := range shapes {
				for trans := range 4 {
					transA, transB := trans&1 != 0, trans&2 != 0
					lda, ldb := sh.k+1, sh.n+2
					if transA {
						lda = sh.m + 1
					}
					if transB {
						ldb = sh.k + 2
					}
					rowsA, rowsB := sh.m, sh.k
					if transA {
						rowsA = sh.k
					}
					if transB {
						rowsB = sh.n
					}
					a, b := sgemmRandom(rng, rowsA*lda), sgemmRandom(rng, rowsB*ldb)
					pb.pack(kern, transB, sh.k, sh.n, b, ldb)
					for _, beta := range []float32{0, 0.5} {
						c0 := sgemmRandom(rng, sh.m*(sh.n+3))
						want, got := append([]float32(nil), c0...), append([]float32(nil), c0...)
						w.Sgemm(transA, transB, sh.m, sh.n, sh.k, 1.5, a, lda, b, ldb, beta, want, sh.n+3)
						w.SgemmPacked(transA, sh.m, 1.5, a, lda, &pb, beta, got, sh.n+3)
						for i := range want {
							if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
								t.Fatalf("%+v transA=%v transB=%v beta=%v: C[%d] = %v, Sgemm gives %v", sh, transA, transB, beta, i, got[i], want[i])
							}
						}
					}
				}
			}
		})
	}
}

func sgemmRandom(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(2*rng.Float64() - 1)
	}
	return s
}
