package kernels

// Reference is the backend written the obvious way: every primitive is the
// loop nest of its definition, with no blocking, no im2col inside the
// convolutions and no concurrency. It is slow on purpose; it exists so that
// the fast backends have something plainly correct to be checked against
// (package kernelstest), and, run in float64, so that package model can check
// its gradients numerically.
//
// Sums of products (GEMM, convolutions, affine layers, im2col adjoints) are
// accumulated in float64 even when T is float32, so that the reference is
// more accurate than anything it checks.
//
// Elementwise methods take their element count from the slice that carries
// the data: len(x) for forward passes, len(dy) for backward passes and len(p)
// for parameter updates; the other slices must be at least that long.
type Reference[T Float] struct{}

var (
	_ Backend[float32] = (*Reference[float32])(nil)
	_ Backend[float64] = (*Reference[float64])(nil)
)

// NewReference returns the reference backend. It keeps no state, so one
// value may be shared by any number of goroutines.
func NewReference[T Float]() *Reference[T] { return &Reference[T]{} }

// Name reports "reference".
func (*Reference[T]) Name() string { return "reference" }

// Gemm is the triple loop of the definition:
//
//	C[i,j] = alpha·Σ_l op(A)[i,l]·op(B)[l,j] + beta·C[i,j]
//
// with op(A)[i,l] = A[i·lda+l], or A[l·lda+i] when transA, and likewise for
// B. C is not read when beta is 0, and A and B are not read when alpha is 0.
func (*Reference[T]) Gemm(transA, transB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	for i := range m {
		for j := range n {
			var sum float64
			if alpha != 0 {
				for l := range k {
					var av, bv T
					if transA {
						av = a[l*lda+i]
					} else {
						av = a[i*lda+l]
					}
					if transB {
						bv = b[j*ldb+l]
					} else {
						bv = b[l*ldb+j]
					}
					sum += float64(av) * float64(bv)
				}
			}
			v := float64(alpha) * sum
			if beta != 0 {
				v += float64(beta) * float64(c[i*ldc+j])
			}
			c[i*ldc+j] = T(v)
		}
	}
}

// AddBias adds bias[j] to y[i·cols+j].
func (*Reference[T]) AddBias(rows, cols int, bias, y []T) {
	for i := range rows {
		for j := range cols {
			y[i*cols+j] += bias[j]
		}
	}
}

// AffineForward computes y[i,o] = bias[o] + Σ_k x[i,k]·w[k,o].
func (*Reference[T]) AffineForward(n, in, out int, x, w, bias, y []T) {
	for i := range n {
		for o := range out {
			sum := float64(bias[o])
			for k := range in {
				sum += float64(x[i*in+k]) * float64(w[k*out+o])
			}
			y[i*out+o] = T(sum)
		}
	}
}

// AffineBackward computes dx[i,k] = Σ_o dy[i,o]·w[k,o] (unless dx is nil),
// dw[k,o] = Σ_i x[i,k]·dy[i,o] and dbias[o] = Σ_i dy[i,o].
func (*Reference[T]) AffineBackward(n, in, out int, x, w, dy, dx, dw, dbias []T) {
	if dx != nil {
		for i := range n {
			for k := range in {
				var sum float64
				for o := range out {
					sum += float64(dy[i*out+o]) * float64(w[k*out+o])
				}
				dx[i*in+k] = T(sum)
			}
		}
	}
	for k := range in {
		for o := range out {
			var sum float64
			for i := range n {
				sum += float64(x[i*in+k]) * float64(dy[i*out+o])
			}
			dw[k*out+o] = T(sum)
		}
	}
	for o := range out {
		var sum float64
		for i := range n {
			sum += float64(dy[i*out+o])
		}
		dbias[o] = T(sum)
	}
}

// ReLUForward computes y = x where x > 0, else 0.
func (*Reference[T]) ReLUForward(x, y []T) {
	y = y[:len(x)]
	for i, v := range x {
		if v > 0 {
			y[i] = v
		} else {
			y[i] = 0
		}
	}
}

// ReLUBackward computes dx = dy where y > 0, else 0.
func (*Reference[T]) ReLUBackward(y, dy, dx []T) {
	y, dx = y[:len(dy)], dx[:len(dy)]
	for i, d := range dy {
		if y[i] > 0 {
			dx[i] = d
		} else {
			dx[i] = 0
		}
	}
}

// SigmoidForward computes y = 1/(1+e^−x) in float64.
func (*Reference[T]) SigmoidForward(x, y []T) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] = T(1 / (1 + expPortable(-float64(v))))
	}
}

// SigmoidBackward computes dx = dy·y·(1−y) in float64.
func (*Reference[T]) SigmoidBackward(y, dy, dx []T) {
	y, dx = y[:len(dy)], dx[:len(dy)]
	for i, d := range dy {
		s := float64(y[i])
		dx[i] = T(float64(d) * s * (1 - s))
	}
}
