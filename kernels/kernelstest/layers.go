package kernelstest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/dpcnn/dpcnn/kernels"
)

// elementCounts are lengths for elementwise methods: empty, vector-width
// edges and a size with a long vector body and a remainder.
var elementCounts = []int{0, 1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 1000, 4099}

// TestAddBias checks AddBias, which adds to y in place.
func TestAddBias(t *testing.T, b kernels.Backend[float32]) {
	rng := newRand(700)
	var f failures
	for _, s := range [][2]int{{1, 1}, {3, 7}, {17, 33}, {64, 65}, {100, 10}, {5, 0}, {0, 4}} {
		rows, cols := s[0], s[1]
		what := fmt.Sprintf("AddBias rows=%d cols=%d", rows, cols)
		bias := randomBuffer(rng, "bias", cols, -1, 1)
		y := randomBuffer(rng, "y", rows*cols, -1, 1)
		want := y.wide()
		ref().AddBias(rows, cols, bias.wide(), want)
		b.AddBias(rows, cols, bias.data(), y.data())
		f.note(t, bias.checkUnchanged(t, what) && y.checkGuards(t, what) &&
			compare(t, what, y.data(), want, elementTol, atRowCol(cols)))
	}
}

// withZeros sets about one element in eight of b to +0 or −0, the boundary
// cases of ReLU.
func withZeros(rng *rand.Rand, b *buffer) *buffer {
	for i := range b.data() {
		switch rng.IntN(16) {
		case 0:
			b.data()[i] = 0
		case 1:
			b.data()[i] = float32(math.Copysign(0, -1))
		}
	}
	return b.seal()
}

// TestReLU checks ReLUForward and ReLUBackward, separately and in place
// (x = y forward, dy = dx backward).
func TestReLU(t *testing.T, b kernels.Backend[float32]) {
	rng := newRand(800)
	var f failures
	for _, n := range elementCounts {
		for _, inPlace := range []bool{false, true} {
			tag := fmt.Sprintf("n=%d inPlace=%v", n, inPlace)
			x := withZeros(rng, randomBuffer(rng, "x", n, -1, 1))
			want := make([]float64, n)
			ref().ReLUForward(x.wide(), want)
			what := "ReLUForward " + tag
			if inPlace {
				b.ReLUForward(x.data(), x.data())
				f.note(t, x.checkGuards(t, what) && compare(t, what, x.data(), want, exact, nil))
			} else {
				y := newBuffer("y", n).seal()
				b.ReLUForward(x.data(), y.data())
				f.note(t, x.checkUnchanged(t, what) && y.checkGuards(t, what) && compare(t, what, y.data(), want, exact, nil))
			}

			y := newBuffer("y", n)
			copy(y.data(), narrow(want))
			y.seal()
			dy := randomBuffer(rng, "dy", n, -1, 1)
			wantDx := make([]float64, n)
			ref().ReLUBackward(y.wide(), dy.wide(), wantDx)
			what = "ReLUBackward " + tag
			if inPlace {
				b.ReLUBackward(y.data(), dy.data(), dy.data())
				f.note(t, y.checkUnchanged(t, what) && dy.checkGuards(t, what) && compare(t, what, dy.data(), wantDx, exact, nil))
			} else {
				dx := newBuffer("dx", n).seal()
				b.ReLUBackward(y.data(), dy.data(), dx.data())
				f.note(t, y.checkUnchanged(t, what) && dy.checkUnchanged(t, what) && dx.checkGuards(t, what) &&
					compare(t, what, dx.data(), wantDx, exact, nil))
			}
		}
	}
}

// TestSigmoid checks SigmoidForward (also in place, and far into both
// tails, where a naive e^−x overflows) and SigmoidBackward.
func TestSigmoid(t *testing.T, b kernels.Backend[float32]) {
	rng := newRand(900)
	var f failures
	for _, n := range elementCounts {
		for _, inPlace := range []bool{false, true} {
			tag := fmt.Sprintf("n=%d inPlace=%v", n, inPlace)
			x := newBuffer("x", n)
			for i := range x.data() {
				switch v := 2*rng.Float64() - 1; i % 5 {
				case 0:
					x.data()[i] = float32(120 * v)
				default:
					x.data()[i] = float32(8 * v)
				}
			}
			x.seal()
			want := make([]float64, n)
			ref().SigmoidForward(x.wide(), want)
			what := "SigmoidForward " + tag
			if inPlace {
				b.SigmoidForward(x.data(), x.data())
				f.note(t, x.checkGuards(t, what) && compare(t, what, x.data(), want, elementTol, nil))
			} else {
				y := newBuffer("y", n).seal()
				b.SigmoidForward(x.data(), y.data())
				f.note(t, x.checkUnchanged(t, what) && y.checkGuards(t, what) && compare(t, what, y.data(), want, elementTol, nil))
			}
		}

		what := fmt.Sprintf("SigmoidBackward n=%d", n)
		y := randomBuffer(rng, "y", n, 0, 1)
		dy := randomBuffer(rng, "dy", n, -1, 1)
		dx := newBuffer("dx", n).seal()
		want := make([]float64, n)
		ref().SigmoidBackward(y.wide(), dy.wide(), want)
		b.SigmoidBackward(y.data(), dy.data(), dx.data())
		f.note(t, y.checkUnchanged(t, what) && dy.checkUnchanged(t, what) && dx.checkGuards(t, what) &&
			compare(t, what, dx.data(), want, elementTol, nil))
	}
}

// TestAffine checks AffineForward and AffineBackward, with and without the
// input gradient.
func TestAffine(t *testing.T, b kernels.Backend[float32]) {
	rng := newRand(1000)
	var f failures
	for _, s := range [][3]int{{1, 1, 1}, {1, 784, 50}, {3, 50, 10}, {7, 17, 33}, {32, 100, 10}, {5, 9, 65}, {2, 1, 7}, {64, 16, 1}} {
		n, in, out := s[0], s[1], s[2]
		tag := fmt.Sprintf("n=%d in=%d out=%d", n, in, out)
		x := randomBuffer(rng, "x", n*in, -1, 1)
		w := randomBuffer(rng, "w", in*out, -1, 1)
		bias := randomBuffer(rng, "bias", out, -1, 1)
		dy := randomBuffer(rng, "dy", n*out, -1, 1)

		what := "AffineForward " + tag
		y := newBuffer("y", n*out).seal()
		want := make([]float64, n*out)
		ref().AffineForward(n, in, out, x.wide(), w.wide(), bias.wide(), want)
		b.AffineForward(n, in, out, x.data(), w.data(), bias.data(), y.data())
		f.note(t, x.checkUnchanged(t, what) && w.checkUnchanged(t, what) && bias.checkUnchanged(t, what) &&
			y.checkGuards(t, what) && compare(t, what, y.data(), want, sumTol(in+1), atRowCol(out)))

		for _, withDx := range []bool{true, false} {
			what := fmt.Sprintf("AffineBackward %s dx=%v", tag, withDx)
			dw := newBuffer("dw", in*out).seal()
			dbias := newBuffer("dbias", out).seal()
			wantDw, wantDb := make([]float64, in*out), make([]float64, out)
			var wantDx []float64
			var dx *buffer
			var dxData []float32
			if withDx {
				wantDx = make([]float64, n*in)
				dx = newBuffer("dx", n*in).seal()
				dxData = dx.data()
			}
			ref().AffineBackward(n, in, out, x.wide(), w.wide(), dy.wide(), wantDx, wantDw, wantDb)
			b.AffineBackward(n, in, out, x.data(), w.data(), dy.data(), dxData, dw.data(), dbias.data())
			ok := x.checkUnchanged(t, what) && w.checkUnchanged(t, what) && dy.checkUnchanged(t, what) &&
				dw.checkGuards(t, what) && dbias.checkGuards(t, what)
			if ok && withDx {
				ok = dx.checkGuards(t, what) && compare(t, what+" dx", dx.data(), wantDx, sumTol(out), atRowCol(in))
			}
			if ok {
				ok = compare(t, what+" dw", dw.data(), wantDw, sumTol(n), atRowCol(out)) &&
					compare(t, what+" dbias", dbias.data(), wantDb, sumTol(n), nil)
			}
			f.note(t, ok)
		}
	}
}
