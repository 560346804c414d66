package kernels

// sgemm is the one matrix multiply every CPU kernel goes through:
//
//	C = alpha·op(A)·op(B) + beta·C
//
// for row-major matrices, op(A) m×k, op(B) k×n, C m×n, C not read when beta
// is 0. It is serial: the callers cut their work into fixed pieces and run
// those on the threads. It is Sgemm, the register-blocked assembly GEMM,
// whose summation order depends only on the shapes, so results do not depend
// on the partition or the thread count. worker names the calling thread,
// whose own packing workspace it uses: a shared sync.Pool would hand back an
// empty workspace after a garbage collection and allocate mid-step.
func (c *CPU) sgemm(worker int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, cc []float32, ldc int) {
	c.gemmSpace[worker].Sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, cc, ldc)
}

// cpuGemmRows is the number of rows of C in one item of Gemm.
const cpuGemmRows = 64

// Gemm computes C = alpha·op(A)·op(B) + beta·C, in blocks of rows of C run
// on all threads.
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
		} else {
			cpuNeed("gemm b", b, (k-1)*ldb+n)
		}
	}
	t := &c.gemm
	*t = cpuGemmTask{c: c, transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, cc: cc, ldc: ldc}
	c.parallel(t, (m+cpuGemmRows-1)/cpuGemmRows, m*n*k)
	*t = cpuGemmTask{}
}

// cpuGemmTask is Gemm cut into blocks of cpuGemmRows rows of C.
type cpuGemmTask struct {
	c             *CPU
	transA        bool
	transB        bool
	m, n, k       int
	alpha, beta   float32
	a, b, cc      []float32
	lda, ldb, ldc int
}

func (t *cpuGemmTask) run(worker, item int) {
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
	t.c.sgemm(worker, t.transA, t.transB, rows, t.n, t.k, t.alpha, a, t.lda, t.b, t.ldb, t.beta, t.cc[i0*t.ldc:], t.ldc)
}
