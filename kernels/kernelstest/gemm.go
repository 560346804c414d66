package kernelstest

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/dpcnn/dpcnn/kernels"
)

// gemmCase is one call of Gemm. ldExtra is added to the minimum leading
// dimension of each operand.
type gemmCase struct {
	transA, transB   bool
	m, n, k          int
	alpha, beta      float32
	ldaX, ldbX, ldcX int
}

func (c gemmCase) String() string {
	return fmt.Sprintf("transA=%v transB=%v m=%d n=%d k=%d alpha=%v beta=%v lda=+%d ldb=+%d ldc=+%d",
		c.transA, c.transB, c.m, c.n, c.k, c.alpha, c.beta, c.ldaX, c.ldbX, c.ldcX)
}

// gemmEdges are sizes around the register and cache tiles a fast GEMM is
// likely to use (4, 8, 16, 32, 64), where remainder loops start.
var gemmEdges = []int{1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33}

// gemmDepths are the k of the size cube: shorter, since k only lengthens
// the sums.
var gemmDepths = []int{1, 2, 3, 7, 8, 9, 16, 17, 33, 64, 65}

// TestGemm checks Gemm on every transpose combination over a cube of
// tile-edge sizes, sweeps of each dimension over 1..70, the tall and skinny
// shapes of im2col convolutions, and empty dimensions; with leading
// dimensions above the minimum and alpha, beta in {0, 1, other}.
func TestGemm(t *testing.T, b kernels.Backend[float32]) {
	alphas := []float32{1, -0.5, 0.7, 1, 2.5, 0}
	betas := []float32{0, 1, 0.3, 0, -2}
	extras := []int{0, 1, 3, 0, 17}
	for ti, tr := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
		t.Run(fmt.Sprintf("transA=%v,transB=%v", tr[0], tr[1]), func(t *testing.T) {
			rng := newRand(uint64(100 + ti))
			var f failures
			next := 0
			run := func(m, n, k int) {
				c := gemmCase{
					transA: tr[0], transB: tr[1], m: m, n: n, k: k,
					alpha: alphas[next%len(alphas)], beta: betas[next%len(betas)],
					ldaX: extras[next%len(extras)], ldbX: extras[(next+1)%len(extras)], ldcX: extras[(next+2)%len(extras)],
				}
				next++
				f.note(t, checkGemm(t, b, rng, c))
			}
			for _, m := range gemmEdges {
				for _, n := range gemmEdges {
					for _, k := range gemmDepths {
						run(m, n, k)
					}
				}
			}
			for s := 1; s <= 70; s++ {
				run(s, 13, 11)
				run(9, s, 17)
				run(19, 7, s)
			}
			run(63, 64, 65)
			run(65, 63, 64)
			run(64, 65, 63)
		})
	}
	t.Run("im2col", func(t *testing.T) {
		rng := newRand(110)
		var f failures
		for _, c := range []gemmCase{
			// conv1 of a 28×28 MNIST batch of 2: 3×3 taps, 1 channel, 16 filters.
			{m: 784 * 2, n: 16, k: 9, alpha: 1},
			// a 3×3 conv of 14×14×64 to 64, batch 4: forward, weight
			// gradient (colᵀ·dy) and input gradient (dy·Wᵀ).
			{m: 196 * 4, n: 64, k: 576, alpha: 1},
			{transA: true, m: 576, n: 64, k: 196 * 4, alpha: 1},
			{transB: true, m: 196 * 4, n: 576, k: 64, alpha: 1, beta: 0, ldcX: 3},
			// an affine layer with a sum into an existing gradient.
			{m: 7, n: 100, k: 300, alpha: 1, beta: 1, ldaX: 1},
		} {
			f.note(t, checkGemm(t, b, rng, c))
		}
	})
	t.Run("empty", func(t *testing.T) {
		rng := newRand(111)
		var f failures
		for _, tr := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
			for _, c := range []gemmCase{
				{m: 0, n: 5, k: 3, alpha: 1, beta: 1},
				{m: 4, n: 0, k: 3, alpha: 1, beta: 1},
				{m: 4, n: 5, k: 0, alpha: 1, beta: 0.5, ldaX: 1, ldbX: 1},
				{m: 4, n: 5, k: 0, alpha: 1, beta: 0},
			} {
				c.transA, c.transB = tr[0], tr[1]
				f.note(t, checkGemm(t, b, rng, c))
			}
		}
	})
}

// matrixBuffer returns a rows×cols matrix with row stride ld: random values
// inside, guardNaN in the gaps between rows, so reading a gap shows as NaN.
func matrixBuffer(rng *rand.Rand, name string, rows, cols, ld int, random bool) *buffer {
	n := 0
	if rows > 0 && cols > 0 {
		n = (rows-1)*ld + cols
	}
	buf := newBuffer(name, n)
	if random {
		d := buf.data()
		for i := range rows {
			for j := range cols {
				d[i*ld+j] = float32(2*rng.Float64() - 1)
			}
		}
	}
	return buf.seal()
}

// checkGemm runs one case and reports whether it passed.
func checkGemm(t *testing.T, b kernels.Backend[float32], rng *rand.Rand, c gemmCase) bool {
	t.Helper()
	ar, ac := c.m, c.k
	if c.transA {
		ar, ac = ac, ar
	}
	br, bc := c.k, c.n
	if c.transB {
		br, bc = bc, br
	}
	lda, ldb, ldc := max(ac, 1)+c.ldaX, max(bc, 1)+c.ldbX, max(c.n, 1)+c.ldcX
	a := matrixBuffer(rng, "A", ar, ac, lda, true)
	bm := matrixBuffer(rng, "B", br, bc, ldb, true)
	// With beta = 0, C stays all NaN: it must not be read.
	cm := matrixBuffer(rng, "C", c.m, c.n, ldc, c.beta != 0)

	want := cm.wide()
	ref().Gemm(c.transA, c.transB, c.m, c.n, c.k, float64(c.alpha), a.wide(), lda, bm.wide(), ldb, float64(c.beta), want, ldc)
	b.Gemm(c.transA, c.transB, c.m, c.n, c.k, c.alpha, a.data(), lda, bm.data(), ldb, c.beta, cm.data(), ldc)

	what := "Gemm " + c.String()
	ok := a.checkUnchanged(t, what) && bm.checkUnchanged(t, what) && cm.checkGuards(t, what)
	for i := 0; ok && c.n > 0 && i+1 < c.m; i++ {
		ok = cm.checkUntouched(t, what, i*ldc+c.n, (i+1)*ldc)
	}
	if !ok {
		return false
	}
	// Compare only the matrix; the gaps were checked above.
	got, exp := make([]float32, 0, c.m*c.n), make([]float64, 0, c.m*c.n)
	for i := 0; c.n > 0 && i < c.m; i++ {
		got = append(got, cm.data()[i*ldc:i*ldc+c.n]...)
		exp = append(exp, want[i*ldc:i*ldc+c.n]...)
	}
	tol := sumTol(c.k)
	tol.atol *= max(1, float64(abs(c.alpha))) + float64(abs(c.beta))
	return compare(t, what, got, exp, tol, atRowCol(c.n))
}

func abs(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}
