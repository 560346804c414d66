package kernels

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// sgemm is the one matrix multiply every CPU kernel goes through:
//
//	C = alpha·op(A)·op(B) + beta·C
//
// for row-major matrices, op(A) m×k, op(B) k×n, C m×n, C not read when beta
// is 0. It is serial: the callers cut their work into fixed pieces and run
// those on the threads.
//
// For now it is gonum's Sgemm, kept serial and deterministic:
//   - gonum goes parallel (one goroutine per 64×64 block of C, allocating)
//     when C has at least 4 such blocks, so C is fed to it in tiles of at
//     most 3 blocks. Tiling does not change any result: gonum adds the k
//     products of an element one after another, in order, either way.
//   - With B transposed gonum uses dot products whose summation order
//     depends on the memory alignment of the operands, which would make a
//     result depend on where a buffer happened to be allocated. Callers
//     therefore transpose B themselves; the rare transposed call is a plain
//     loop here.
func (c *CPU) sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, cc []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	if k == 0 || alpha == 0 {
		cpuScale(m, n, beta, cc, ldc)
		return
	}
	if transB {
		cpuSgemmTransB(transA, m, n, k, alpha, a, lda, b, ldb, beta, cc, ldc)
		return
	}
	const block = 64    // gonum's blockSize
	const maxBlocks = 3 // gonum's minParBlock − 1
	tA := blas.NoTrans
	if transA {
		tA = blas.Trans
	}
	nTile := block * maxBlocks
	for j0 := 0; j0 < n; j0 += nTile {
		nb := min(nTile, n-j0)
		mTile := block * max(1, maxBlocks/((nb+block-1)/block))
		for i0 := 0; i0 < m; i0 += mTile {
			mb := min(mTile, m-i0)
			aTile := a[i0*lda:]
			if transA {
				aTile = a[i0:]
			}
			gonum.Implementation{}.Sgemm(tA, blas.NoTrans, mb, nb, k, alpha, aTile, lda, b[j0:], ldb, beta, cc[i0*ldc+j0:], ldc)
		}
	}
}

// cpuScale computes C = beta·C, writing zeros without reading C when beta
// is 0.
func cpuScale(m, n int, beta float32, cc []float32, ldc int) {
	for i := range m {
		row := cc[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(row)
			continue
		}
		for j := range row {
			row[j] *= beta
		}
	}
}

// cpuSgemmTransB is sgemm with B transposed, summing each element's products
// in order of l.
func cpuSgemmTransB(transA bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, cc []float32, ldc int) {
	for i := range m {
		for j := range n {
			brow := b[j*ldb : j*ldb+k]
			var sum float32
			for l, bv := range brow {
				if transA {
					sum += a[l*lda+i] * bv
				} else {
					sum += a[i*lda+l] * bv
				}
			}
			v := alpha * sum
			if beta != 0 {
				v += beta * cc[i*ldc+j]
			}
			cc[i*ldc+j] = v
		}
	}
}

// cpuGemmRows is the number of rows of C in one item of Gemm.
const cpuGemmRows = 64

// Gemm computes C = alpha·op(A)·op(B) + beta·C, in blocks of rows of C run
// on all threads. A transposed B is transposed into scratch space first (see
// sgemm).
func (c *CPU) Gemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, cc []float32, ldc int) {
	if m <= 0 || n <= 0 {
		return
	}
	cpuNeed("gemm c", cc, (m-1)*ldc+n)
	if k > 0 && alpha != 0 {
		if transA {
			cpuNeed("gemm a", a, (k-1)*lda+m)
		} else {
			cpuNeed("gemm a", a, (m-1)*lda+k)
		}
		if transB {
			cpuNeed("gemm b", b, (n-1)*ldb+k)
			c.transposed = cpuGrow(c.transposed, k*n)
			cpuTranspose(n, k, b, ldb, c.transposed)
			b, ldb = c.transposed, n
		} else {
			cpuNeed("gemm b", b, (k-1)*ldb+n)
		}
	}
	t := &c.gemm
	*t = cpuGemmTask{c: c, transA: transA, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, cc: cc, ldc: ldc}
	c.parallel(t, (m+cpuGemmRows-1)/cpuGemmRows, m*n*k)
	*t = cpuGemmTask{}
}

// cpuGemmTask is Gemm cut into blocks of cpuGemmRows rows of C.
type cpuGemmTask struct {
	c             *CPU
	transA        bool
	m, n, k       int
	alpha, beta   float32
	a, b, cc      []float32
	lda, ldb, ldc int
}

func (t *cpuGemmTask) run(_, item int) {
	i0 := item * cpuGemmRows
	rows := min(cpuGemmRows, t.m-i0)
	a := t.a
	if t.k > 0 && t.alpha != 0 {
		if t.transA {
			a = a[i0:]
		} else {
			a = a[i0*t.lda:]
		}
	}
	t.c.sgemm(t.transA, false, rows, t.n, t.k, t.alpha, a, t.lda, t.b, t.ldb, t.beta, t.cc[i0*t.ldc:], t.ldc)
}
