package kernelstest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/dpcnn/dpcnn/kernels"
)

// guardLen is the number of guard elements on each side of a buffer: more
// than one 512-bit vector of float32, so a vector store that runs past the
// end lands in the guard.
const guardLen = 19

// guardBits is the NaN written into guards and into outputs that must be
// overwritten. Its payload is unusual, so a NaN a backend computes or copies
// from elsewhere is told apart from the untouched guard.
const guardBits = 0x7fc05a5a

var guardNaN = math.Float32frombits(guardBits)

// maxReported is how many mismatching elements one comparison prints.
const maxReported = 5

// maxFailedCases is how many failing cases one subtest reports before it
// stops, so a broken backend does not bury the first failures.
const maxFailedCases = 8

// newRand returns a generator private to one test, seeded by a constant so
// every run draws the same cases.
func newRand(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, 0x6b65726e656c7374))
}

// buffer is a float32 slice of n elements with guardLen NaN elements on each
// side, and a copy of its initial contents to tell what changed.
type buffer struct {
	name string
	all  []float32
	init []float32
}

// newBuffer returns a buffer whose elements are all guardNaN.
func newBuffer(name string, n int) *buffer {
	all := make([]float32, n+2*guardLen)
	for i := range all {
		all[i] = guardNaN
	}
	return &buffer{name: name, all: all}
}

// randomBuffer returns a buffer of n values uniform in [lo, hi).
func randomBuffer(rng *rand.Rand, name string, n int, lo, hi float64) *buffer {
	b := newBuffer(name, n)
	for i := range b.data() {
		b.data()[i] = float32(lo + (hi-lo)*rng.Float64())
	}
	return b.seal()
}

// seal records the current contents as the initial ones.
func (b *buffer) seal() *buffer {
	b.init = append(b.init[:0], b.all...)
	return b
}

// data is the part of the buffer a backend is given.
func (b *buffer) data() []float32 { return b.all[guardLen : len(b.all)-guardLen] }

// wide returns the data converted to float64, for the reference.
func (b *buffer) wide() []float64 { return widen(b.data()) }

// checkGuards reports a guard element that changed.
func (b *buffer) checkGuards(t *testing.T, what string) bool {
	t.Helper()
	n := len(b.all)
	for i := range b.all {
		if i >= guardLen && i < n-guardLen {
			continue
		}
		if math.Float32bits(b.all[i]) != math.Float32bits(b.init[i]) {
			off := i - guardLen
			if off >= 0 {
				off -= n - 2*guardLen
				t.Errorf("%s: %s: wrote %v at %d elements past its end", what, b.name, b.all[i], off+1)
			} else {
				t.Errorf("%s: %s: wrote %v at %d elements before its start", what, b.name, b.all[i], -off)
			}
			return false
		}
	}
	return true
}

// checkUnchanged reports an element (data or guard) that differs from the
// initial contents, bit for bit.
func (b *buffer) checkUnchanged(t *testing.T, what string) bool {
	t.Helper()
	if !b.checkGuards(t, what) {
		return false
	}
	for i, v := range b.data() {
		if was := b.init[guardLen+i]; math.Float32bits(v) != math.Float32bits(was) {
			t.Errorf("%s: input %s modified: element %d was %v, now %v", what, b.name, i, was, v)
			return false
		}
	}
	return true
}

// checkUntouched reports an element of data in [from, to) that changed; for
// the gaps of strided matrices.
func (b *buffer) checkUntouched(t *testing.T, what string, from, to int) bool {
	t.Helper()
	d := b.data()
	for i := from; i < to; i++ {
		if was := b.init[guardLen+i]; math.Float32bits(d[i]) != math.Float32bits(was) {
			t.Errorf("%s: %s: wrote %v into element %d, outside the matrix", what, b.name, d[i], i)
			return false
		}
	}
	return true
}

// indexBuffer is buffer's twin for int32 outputs (max-pool argmax).
type indexBuffer struct {
	name string
	all  []int32
}

const guardIndex = -0x5a5a5a5a

func newIndexBuffer(name string, n int) *indexBuffer {
	all := make([]int32, n+2*guardLen)
	for i := range all {
		all[i] = guardIndex
	}
	return &indexBuffer{name: name, all: all}
}

func (b *indexBuffer) data() []int32 { return b.all[guardLen : len(b.all)-guardLen] }

func (b *indexBuffer) checkGuards(t *testing.T, what string) bool {
	t.Helper()
	n := len(b.all)
	for i, v := range b.all {
		if (i < guardLen || i >= n-guardLen) && v != guardIndex {
			t.Errorf("%s: %s: wrote %d into the guard at %d (data is [%d, %d))", what, b.name, v, i-guardLen, 0, n-2*guardLen)
			return false
		}
	}
	return true
}

func widen(s []float32) []float64 {
	if s == nil {
		return nil
	}
	w := make([]float64, len(s))
	for i, v := range s {
		w[i] = float64(v)
	}
	return w
}

func narrow(s []float64) []float32 {
	n := make([]float32, len(s))
	for i, v := range s {
		n[i] = float32(v)
	}
	return n
}

// tolerance accepts got when |got − want| ≤ atol + rtol·|want|.
type tolerance struct{ atol, rtol float64 }

// exact accepts only the identical value.
var exact = tolerance{}

// elementTol is for results of a few float32 operations.
var elementTol = tolerance{atol: 1e-6, rtol: 1e-5}

// sumTol is the tolerance for elements that are sums of terms products of
// values of order 1: float32 accumulation, in whatever order, of n such
// terms stays well inside 2e-7·n (its typical error grows like ~4e-9·n).
func sumTol(n int) tolerance {
	return tolerance{atol: 1e-6 + 2e-7*float64(n), rtol: 1e-5}
}

// compare checks got against want element by element and reports the first
// mismatches, locating each with where(i) (nil prints the bare index).
func compare(t *testing.T, what string, got []float32, want []float64, tol tolerance, where func(i int) string) bool {
	t.Helper()
	if len(got) < len(want) {
		t.Errorf("%s: got %d elements, want %d", what, len(got), len(want))
		return false
	}
	bad := 0
	for i, w := range want {
		g := float64(got[i])
		if g == w || (math.IsNaN(g) && math.IsNaN(w)) {
			continue
		}
		limit := tol.atol + tol.rtol*math.Abs(w)
		diff := math.Abs(g - w)
		if diff <= limit {
			continue
		}
		bad++
		if bad <= maxReported {
			loc := fmt.Sprintf("[%d]", i)
			if where != nil {
				loc += " " + where(i)
			}
			t.Errorf("%s: element %s: got %v, want %v (|diff| %.3g > tol %.3g)", what, loc, got[i], w, diff, limit)
		}
	}
	if bad > maxReported {
		t.Errorf("%s: %d of %d elements mismatch", what, bad, len(want))
	}
	return bad == 0
}

// atNHWC locates index i of an NHWC tensor of h×w×c images.
func atNHWC(h, w, c int) func(i int) string {
	return func(i int) string {
		return fmt.Sprintf("(n=%d h=%d w=%d c=%d)", i/(h*w*c), i/(w*c)%h, i/c%w, i%c)
	}
}

// atRowCol locates index i of a matrix with cols columns.
func atRowCol(cols int) func(i int) string {
	return func(i int) string { return fmt.Sprintf("(row %d, col %d)", i/cols, i%cols) }
}

// failures counts the failing cases of a subtest and stops it once
// maxFailedCases have been reported.
type failures struct{ n int }

func (f *failures) note(t *testing.T, ok bool) {
	t.Helper()
	if ok {
		return
	}
	f.n++
	if f.n >= maxFailedCases {
		t.Fatalf("stopping after %d failing cases", f.n)
	}
}

// ref is the backend every result is checked against.
func ref() kernels.Backend[float64] { return kernels.NewReference[float64]() }
