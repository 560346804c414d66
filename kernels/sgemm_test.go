package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// sgemmGuard is the NaN written around and between the rows of every matrix
// in these tests: reading it poisons a result, writing over it is detected.
var sgemmGuard = math.Float32frombits(0x7fc0dead)

const sgemmGuardLen = 37 // floats of guard before and after each matrix

// sgemmCase is one product to check.
type sgemmCase struct {
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	pad            int // extra elements per row beyond the minimum stride
}

func (tc sgemmCase) String() string {
	return fmt.Sprintf("transA=%v transB=%v m=%d n=%d k=%d alpha=%v beta=%v pad=%d",
		tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, tc.beta, tc.pad)
}

// sgemmMatrix is a rows×cols matrix with stride ld inside a guarded slice:
// data is the whole allocation, s the part passed to Sgemm.
type sgemmMatrix struct {
	rows, cols, ld int
	data           []float32
	s              []float32
}

func newSgemmMatrix(rng *rand.Rand, rows, cols, pad int) sgemmMatrix {
	ld := max(1, cols+pad)
	n := 0
	if rows > 0 {
		n = (rows-1)*ld + cols
	}
	x := sgemmMatrix{rows: rows, cols: cols, ld: ld, data: make([]float32, n+2*sgemmGuardLen)}
	for i := range x.data {
		x.data[i] = sgemmGuard
	}
	x.s = x.data[sgemmGuardLen : sgemmGuardLen+n]
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			x.s[i*ld+j] = float32(rng.Float64()*2 - 1)
		}
	}
	return x
}

func (x sgemmMatrix) at(i, j int) float64 { return float64(x.s[i*x.ld+j]) }

// sgemmNaive is the float64 triple loop the kernels are checked against. It
// returns C and, per element, a bound on the float32 rounding error.
func sgemmNaive(tc sgemmCase, a, b, c sgemmMatrix) (want, tol []float64) {
	want = make([]float64, tc.m*tc.n)
	tol = make([]float64, tc.m*tc.n)
	const eps = 1.0 / (1 << 23)
	for i := 0; i < tc.m; i++ {
		for j := 0; j < tc.n; j++ {
			var sum, abs float64
			for p := 0; p < tc.k; p++ {
				av, bv := 0.0, 0.0
				if tc.transA {
					av = a.at(p, i)
				} else {
					av = a.at(i, p)
				}
				if tc.transB {
					bv = b.at(j, p)
				} else {
					bv = b.at(p, j)
				}
				sum += av * bv
				abs += math.Abs(av * bv)
			}
			v := float64(tc.alpha) * sum
			bound := math.Abs(float64(tc.alpha)) * abs
			if tc.beta != 0 {
				cv := float64(tc.beta) * c.at(i, j)
				v += cv
				bound += math.Abs(cv)
			}
			want[i*tc.n+j] = v
			tol[i*tc.n+j] = float64(tc.k+3)*eps*bound + 1e-30
		}
	}
	return want, tol
}

// checkSgemm runs one case through w and checks the result against the
// naive product, the guard bands and stride gaps of C, and the inputs.
func checkSgemm(t *testing.T, w *SgemmWorkspace, rng *rand.Rand, tc sgemmCase) {
	t.Helper()
	rowsA, colsA := tc.m, tc.k
	if tc.transA {
		rowsA, colsA = tc.k, tc.m
	}
	rowsB, colsB := tc.k, tc.n
	if tc.transB {
		rowsB, colsB = tc.n, tc.k
	}
	a := newSgemmMatrix(rng, rowsA, colsA, tc.pad)
	b := newSgemmMatrix(rng, rowsB, colsB, tc.pad)
	c := newSgemmMatrix(rng, tc.m, tc.n, tc.pad+1)
	if tc.beta == 0 {
		for i := 0; i < tc.m; i++ {
			for j := 0; j < tc.n; j++ {
				c.s[i*c.ld+j] = float32(math.NaN())
			}
		}
	}
	want, tol := sgemmNaive(tc, a, b, c)
	a0 := append([]float32(nil), a.data...)
	b0 := append([]float32(nil), b.data...)
	c0 := append([]float32(nil), c.data...)

	w.Sgemm(tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, a.s, a.ld, b.s, b.ld, tc.beta, c.s, c.ld)

	sameBits(t, "a", a0, a.data)
	sameBits(t, "b", b0, b.data)
	bad := 0
	for idx := range c.data {
		got := c.data[idx]
		off := idx - sgemmGuardLen
		i, j := -1, -1
		if off >= 0 && off < len(c.s) {
			i, j = off/c.ld, off%c.ld
		}
		if i < 0 || j >= tc.n {
			if math.Float32bits(got) != math.Float32bits(c0[idx]) {
				t.Errorf("%v: element %d outside C (row %d, col %d) changed to %v", tc, off, i, j, got)
				bad++
			}
		} else if d := math.Abs(float64(got) - want[i*tc.n+j]); !(d <= tol[i*tc.n+j]) {
			t.Errorf("%v: C[%d,%d] = %v, want %v (tolerance %.3g)", tc, i, j, got, want[i*tc.n+j], tol[i*tc.n+j])
			bad++
		}
		if bad >= 5 {
			t.FailNow()
		}
	}
}

func sameBits(t *testing.T, name string, want, got []float32) {
	t.Helper()
	for i := range want {
		if math.Float32bits(want[i]) != math.Float32bits(got[i]) {
			t.Fatalf("input %s changed at %d: %v, was %v", name, i, got[i], want[i])
		}
	}
}

// sgemmEdges returns 1 and the sizes around each boundary x: x-1, x, x+1.
func sgemmEdges(bounds ...int) []int {
	seen := map[int]bool{}
	var sizes []int
	add := func(s int) {
		if s >= 1 && !seen[s] {
			seen[s] = true
			sizes = append(sizes, s)
		}
	}
	add(1)
	for _, x := range bounds {
		add(x - 1)
		add(x)
		add(x + 1)
	}
	return sizes
}

// TestSgemmKernels sweeps every kernel family this CPU runs over sizes at
// its tile edges, all transpose combinations, padded strides and several
// alpha and beta values.
func TestSgemmKernels(t *testing.T) {
	for _, kern := range sgemmKernels() {
		t.Run(kern.name, func(t *testing.T) {
			w := &SgemmWorkspace{kernel: kern}
			rng := rand.New(rand.NewPCG(1, uint64(kern.mr)))
			ms := sgemmEdges(kern.mr, 2*kern.mr, 3*kern.mr+2)
			ns := sgemmEdges(kern.narrowNR, kern.wideNR, kern.wideNR+kern.narrowNR, 2*kern.wideNR)
			ks := []int{1, 2, 3, 4, 5, 7, 9, 17}
			alphas := []float32{1, -0.5}
			betas := []float32{0, 1, -1.5}
			i := 0
			for _, m := range ms {
				for _, n := range ns {
					for _, k := range ks {
						for trans := 0; trans < 4; trans++ {
							tc := sgemmCase{
								transA: trans&1 != 0, transB: trans&2 != 0,
								m: m, n: n, k: k,
								alpha: alphas[i%len(alphas)], beta: betas[i/2%len(betas)],
								pad: i % 3,
							}
							i++
							checkSgemm(t, w, rng, tc)
						}
					}
				}
			}
		})
	}
}

// TestSgemmBlocks crosses the cache-block boundaries: k around multiples of
// the k block, m around the A block and n around the B panel.
func TestSgemmBlocks(t *testing.T) {
	for _, kern := range sgemmKernels() {
		t.Run(kern.name, func(t *testing.T) {
			w := &SgemmWorkspace{kernel: kern}
			rng := rand.New(rand.NewPCG(2, uint64(kern.mr)))
			kc, mc, nc := kern.blocks(3, sgemmKC+1)
			cases := []sgemmCase{}
			for trans := 0; trans < 4; trans++ {
				ta, tb := trans&1 != 0, trans&2 != 0
				for _, k := range sgemmEdges(sgemmKC, 2*sgemmKC) {
					if k < sgemmKC-1 {
						continue
					}
					cases = append(cases, sgemmCase{transA: ta, transB: tb, m: kern.mr + 3, n: kern.wideNR + 1, k: k, alpha: 1, beta: 0.5, pad: 1})
				}
				// A row stride of 4 KiB, which the kernels do not read in place.
				m, k := 2*kern.mr+1, 300
				pad := 1024 - k
				if ta {
					pad = 1024 - m
				}
				cases = append(cases,
					sgemmCase{transA: ta, transB: tb, m: m, n: kern.wideNR + 3, k: k, alpha: 1, beta: 0.5, pad: pad},
					sgemmCase{transA: ta, transB: tb, m: mc + 1, n: 3, k: kc + 1, alpha: -0.5, beta: 0},
					sgemmCase{transA: ta, transB: tb, m: mc - 1, n: kern.wideNR, k: kc + 1, alpha: 1, beta: 1, pad: 2},
					sgemmCase{transA: ta, transB: tb, m: 2, n: nc + 1, k: kc + 1, alpha: 1, beta: 0, pad: 1},
				)
			}
			for _, tc := range cases {
				checkSgemm(t, w, rng, tc)
			}
		})
	}
}

// TestSgemmShapes runs scaled-down versions of the im2col products of the
// convolution layers, forward and backward.
func TestSgemmShapes(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	var w SgemmWorkspace
	for _, s := range []struct{ m, n, k int }{{400, 16, 9}, {300, 16, 144}, {200, 32, 288}, {100, 64, 576}} {
		checkSgemm(t, &w, rng, sgemmCase{m: s.m, n: s.n, k: s.k, alpha: 1})               // y = col·W
		checkSgemm(t, &w, rng, sgemmCase{transA: true, m: s.k, n: s.n, k: s.m, alpha: 1}) // dW = colᵀ·dy
		checkSgemm(t, &w, rng, sgemmCase{transB: true, m: s.m, n: s.k, k: s.n, alpha: 1}) // dcol = dy·Wᵀ
	}
}

// TestSgemmZeroK checks that k = 0 and alpha = 0 give C = beta·C without
// reading A or B, and that beta = 0 clears NaNs.
func TestSgemmZeroK(t *testing.T) {
	c := []float32{float32(math.NaN()), 2, sgemmGuard, 4, float32(math.Inf(1))}
	Sgemm(false, false, 2, 2, 0, 1, nil, 1, nil, 2, 0, c, 3)
	if c[0] != 0 || c[1] != 0 || c[3] != 0 || c[4] != 0 || math.Float32bits(c[2]) != math.Float32bits(sgemmGuard) {
		t.Errorf("k=0, beta=0: C = %v, want zeros and the gap untouched", c)
	}
	c = []float32{1, 2, 3, 4}
	Sgemm(true, true, 2, 2, 0, 1, nil, 2, nil, 1, -2, c, 2)
	if want := []float32{-2, -4, -6, -8}; fmt.Sprint(c) != fmt.Sprint(want) {
		t.Errorf("k=0, beta=-2: C = %v, want %v", c, want)
	}
	nan := float32(math.NaN())
	c = []float32{1, 2}
	Sgemm(false, false, 1, 2, 1, 0, []float32{nan}, 1, []float32{nan, nan}, 2, 0.5, c, 2)
	if c[0] != 0.5 || c[1] != 1 {
		t.Errorf("alpha=0: C = %v, want [0.5 1]", c)
	}
	Sgemm(false, false, 0, 5, 3, 1, nil, 3, make([]float32, 15), 5, 0, nil, 5)
}

// sgemmRefKernel is a kernel family whose micro-kernel is sgemmMicroRef,
// the definition written out, with the Go family's tile shape.
var sgemmRefKernel = &sgemmKernel{
	name: "ref", mr: 6, wideNR: 16, narrowNR: 8,
	packB: sgemmPackBGo, packAT: sgemmPackATGo, maskedCols: true,
	wide: func(_ *SgemmWorkspace, tiles, kc int, a []float32, rsA, csA, tsA int, b []float32, ldb int, c []float32, ldc, cols, _, _ int, alpha, beta float32) {
		sgemmCheckMicro(6, 16, tiles, kc, a, rsA, csA, tsA, b, ldb, c, ldc, cols)
		sgemmMicroRef(6, tiles, kc, a, rsA, csA, tsA, b, ldb, c, ldc, cols, alpha, beta)
	},
	narrow: func(_ *SgemmWorkspace, tiles, kc int, a []float32, rsA, csA, tsA int, b []float32, ldb int, c []float32, ldc, cols, _, _ int, alpha, beta float32) {
		sgemmCheckMicro(6, 8, tiles, kc, a, rsA, csA, tsA, b, ldb, c, ldc, cols)
		sgemmMicroRef(6, tiles, kc, a, rsA, csA, tsA, b, ldb, c, ldc, cols, alpha, beta)
	},
}

// sgemmAwkward fills s with values that stress the kernels' rounding:
// random magnitudes over many binades, values with few mantissa bits (so
// that sums land on float32 midpoints), zeros of both signs and, where
// extreme is set, subnormal, tiny and huge values.
func sgemmAwkward(rng *rand.Rand, s []float32, extreme bool) {
	for i := range s {
		var v float64
		switch r := rng.IntN(10); {
		case r < 4:
			v = rng.Float64()*2 - 1
		case r < 6:
			v = math.Ldexp(1+rng.Float64(), rng.IntN(40)-20)
		case r < 8:
			v = float64(rng.IntN(64)-32) / 8 // few bits: exact sums and ties
		case r < 9:
			v = math.Copysign(0, float64(rng.IntN(2)*2-1))
		default:
			v = math.Ldexp(float64(1+rng.IntN(7)), rng.IntN(30)-40)
		}
		if extreme && rng.IntN(8) == 0 {
			v = math.Ldexp(1+rng.Float64(), rng.IntN(300)-180) // subnormal, tiny or huge
		}
		if rng.IntN(2) == 0 {
			v = -v
		}
		s[i] = float32(v)
	}
}

// TestSgemmKernelsAgree checks that every kernel family gives the bits of
// the definition (sgemmRefKernel): each element is the same chain of fused
// multiply-adds whatever the tile shape, the instruction set, or the range
// of the operands (the Go kernel's fast path admits only some; values far
// outside take another path that must agree too).
func TestSgemmKernelsAgree(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	for _, s := range []struct {
		transA, transB bool
		m, n, k        int
		extreme        bool
	}{
		{false, false, 97, 40, 300, false}, {true, false, 61, 33, 530, false}, {false, true, 50, 70, 64, false},
		{true, true, 29, 17, 9, false}, {false, false, 13, 24, 1, false}, {true, false, 30, 45, 257, true},
		{false, true, 19, 9, 40, true},
	} {
		a := make([]float32, s.m*s.k)
		b := make([]float32, s.k*s.n)
		c := make([]float32, s.m*s.n)
		sgemmAwkward(rng, a, s.extreme)
		sgemmAwkward(rng, b, s.extreme)
		sgemmAwkward(rng, c, s.extreme)
		lda, ldb := s.k, s.n
		if s.transA {
			lda = s.m
		}
		if s.transB {
			ldb = s.k
		}
		for _, ab := range [][2]float32{{0.75, 0.25}, {1, 0}, {1, 1}, {-3, -0.5}} {
			want := append([]float32(nil), c...)
			ref := SgemmWorkspace{kernel: sgemmRefKernel}
			ref.Sgemm(s.transA, s.transB, s.m, s.n, s.k, ab[0], a, lda, b, ldb, ab[1], want, s.n)
			for _, kern := range sgemmKernels() {
				got := append([]float32(nil), c...)
				w := SgemmWorkspace{kernel: kern}
				w.Sgemm(s.transA, s.transB, s.m, s.n, s.k, ab[0], a, lda, b, ldb, ab[1], got, s.n)
				for i := range got {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) && !(got[i] != got[i] && want[i] != want[i]) {
						t.Fatalf("%+v alpha, beta = %v: %s gives C[%d] = %v (%#x), the definition %v (%#x)", s, ab, kern.name, i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
					}
				}
			}
		}
	}
}

// TestSgemmMidpoints runs products whose chains the float64 sum of an
// emulated FMA rounds onto a float32 midpoint: k = 2, the first step sets
// acc = x_i (row i of A is [x_i, a_i], column j of B is [1, b_j]) and the
// second adds a_i·b_j = h·(1 − 2^−2k) where h is half an ulp of x_i, in
// the normal and the subnormal range (where the second step must not use
// the kernel's fast path). Every kernel family must give the definition's
// bits, and enough elements must be cases that plain double rounding gets
// wrong.
func TestSgemmMidpoints(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 10))
	const m, n = 48, 40
	for _, subnormal := range []bool{false, true} {
		a, b := make([]float32, m*2), make([]float32, 2*n)
		e := rng.IntN(60) - 30 // the exponent of every x_i
		if subnormal {
			e = -130
		}
		ks := make([]int, n)
		for j := range n {
			ks[j] = 15 + j%9
			eb := e - 24 - 10
			if subnormal {
				eb = -150 + 75
			}
			b[j] = 1
			b[n+j] = float32(math.Ldexp(1-math.Ldexp(1, -ks[j]), eb))
		}
		for i := range m {
			k := ks[i%n]
			ea := 10
			if subnormal {
				ea = -75
			}
			x := math.Ldexp(1+float64(rng.IntN(1<<23))/(1<<23), e)
			if subnormal {
				x = float64(math.Float32frombits(uint32(rng.IntN(1<<20)) | 1<<22))
			}
			sign := float64(1 - 2*rng.IntN(2))
			a[2*i] = float32(x)
			a[2*i+1] = float32(sign * math.Ldexp(1+math.Ldexp(1, -k), ea))
		}
		want := make([]float32, m*n)
		ref := SgemmWorkspace{kernel: sgemmRefKernel}
		ref.Sgemm(false, false, m, n, 2, 1, a, 2, b, n, 0, want, n)
		naive := 0
		for i := range m {
			for j := range n {
				p := float64(a[2*i+1]) * float64(b[n+j])
				if float32(p+float64(a[2*i])) != want[i*n+j] {
					naive++
				}
				if got := fma32Exact(a[2*i+1], b[n+j], a[2*i]); got != want[i*n+j] {
					t.Fatalf("subnormal=%v: the definition gives C[%d,%d] = %v, exactly it is %v", subnormal, i, j, want[i*n+j], got)
				}
			}
		}
		if naive < m {
			t.Fatalf("subnormal=%v: only %d of %d elements are midpoint cases", subnormal, naive, m*n)
		}
		for _, kern := range sgemmKernels() {
			got := make([]float32, m*n)
			w := SgemmWorkspace{kernel: kern}
			w.Sgemm(false, false, m, n, 2, 1, a, 2, b, n, 0, got, n)
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("subnormal=%v: %s gives C[%d] = %v, want %v", subnormal, kern.name, i, got[i], want[i])
				}
			}
		}
	}
}

// TestSgemmPartition checks that computing C in row or column pieces gives
// the same bits as one call, as the parallel caller relies on.
func TestSgemmPartition(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	const m, n, k = 101, 45, 600
	for trans := 0; trans < 4; trans++ {
		transA, transB := trans&1 != 0, trans&2 != 0
		a := newSgemmMatrix(rng, m, k, 0).s
		b := newSgemmMatrix(rng, k, n, 0).s
		lda, ldb := k, n
		if transA {
			lda = m
		}
		if transB {
			ldb = k
		}
		whole := make([]float32, m*n)
		Sgemm(transA, transB, m, n, k, 1, a, lda, b, ldb, 0, whole, n)
		pieces := make([]float32, m*n)
		for _, rows := range [][2]int{{0, 37}, {37, 38}, {38, m}} {
			for _, cols := range [][2]int{{0, 19}, {19, n}} {
				i0, j0 := rows[0], cols[0]
				ai, bj := a[i0*lda:], b[j0:]
				if transA {
					ai = a[i0:]
				}
				if transB {
					bj = b[j0*ldb:]
				}
				Sgemm(transA, transB, rows[1]-i0, cols[1]-j0, k, 1, ai, lda, bj, ldb, 0, pieces[i0*n+j0:], n)
			}
		}
		sameBits(t, fmt.Sprintf("C in pieces (transA=%v transB=%v)", transA, transB), whole, pieces)
	}
}

// TestSgemmPanics checks that bad sizes and short slices are refused with
// a message that names the operand.
func TestSgemmPanics(t *testing.T) {
	for _, tc := range []struct {
		name string
		call func()
		want string
	}{
		{"short a", func() {
			Sgemm(false, false, 2, 2, 2, 1, make([]float32, 3), 2, make([]float32, 4), 2, 0, make([]float32, 4), 2)
		}, "len(a) = 3"},
		{"short b", func() {
			Sgemm(false, true, 2, 3, 2, 1, make([]float32, 4), 2, make([]float32, 5), 2, 0, make([]float32, 6), 3)
		}, "len(b) = 5"},
		{"short c", func() {
			Sgemm(false, false, 2, 2, 2, 1, make([]float32, 4), 2, make([]float32, 4), 2, 0, make([]float32, 4), 3)
		}, "len(c) = 4"},
		{"small lda", func() {
			Sgemm(true, false, 3, 2, 2, 1, make([]float32, 6), 2, make([]float32, 4), 2, 0, make([]float32, 6), 2)
		}, "lda = 2"},
		{"negative", func() { Sgemm(false, false, -1, 2, 2, 1, nil, 2, nil, 2, 0, nil, 2) }, "negative size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if msg, _ := r.(string); !strings.Contains(msg, tc.want) {
					t.Errorf("panic %v, want one containing %q", r, tc.want)
				}
			}()
			tc.call()
		})
	}
}

// TestSgemmNoAlloc checks that a warm workspace allocates nothing.
func TestSgemmNoAlloc(t *testing.T) {
	const m, n, k = 50, 40, 300
	a, b, c := make([]float32, m*k), make([]float32, k*n), make([]float32, m*n)
	var w SgemmWorkspace
	for _, trans := range []bool{false, true} {
		lda, ldb := k, n
		if trans {
			lda, ldb = m, k
		}
		if allocs := testing.AllocsPerRun(10, func() {
			w.Sgemm(trans, trans, m, n, k, 1, a, lda, b, ldb, 0, c, n)
		}); allocs != 0 {
			t.Errorf("transA=%v: %v allocations per call, want 0", trans, allocs)
		}
	}
}

// FuzzSgemm checks random shapes against the naive product with every
// kernel family.
func FuzzSgemm(f *testing.F) {
	f.Add(uint8(1), uint8(1), uint16(1), uint8(0), uint64(1))
	f.Add(uint8(15), uint8(33), uint16(257), uint8(3), uint64(2))
	f.Add(uint8(29), uint8(17), uint16(9), uint8(1), uint64(3))
	f.Add(uint8(7), uint8(64), uint16(144), uint8(2), uint64(4))
	f.Fuzz(func(t *testing.T, m, n uint8, k uint16, flags uint8, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, 6))
		tc := sgemmCase{
			transA: flags&1 != 0, transB: flags&2 != 0,
			m: int(m), n: int(n), k: int(k % 1100),
			alpha: []float32{1, -0.5}[flags>>2&1], beta: []float32{0, 1, 0.25, 0}[flags>>3&3],
			pad: int(flags >> 5),
		}
		for _, kern := range sgemmKernels() {
			checkSgemm(t, &SgemmWorkspace{kernel: kern}, rng, tc)
		}
	})
}
