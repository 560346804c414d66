package kernelstest

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/dpcnn/dpcnn/kernels"
)

// poolGeoms cover 1×1 images, odd sizes whose last row and column the
// stride drops, overlapping windows, and pads up to Size−1 where a window
// holds a single real cell.
var poolGeoms = []kernels.PoolGeom{
	{N: 1, H: 1, W: 1, C: 1, Size: 1, Stride: 1, Pad: 0},
	{N: 2, H: 4, W: 4, C: 3, Size: 2, Stride: 2, Pad: 0},
	{N: 3, H: 5, W: 5, C: 3, Size: 2, Stride: 2, Pad: 0},
	{N: 2, H: 7, W: 7, C: 16, Size: 3, Stride: 2, Pad: 1},
	{N: 1, H: 13, W: 13, C: 32, Size: 3, Stride: 1, Pad: 1},
	{N: 2, H: 28, W: 28, C: 1, Size: 2, Stride: 2, Pad: 0},
	{N: 1, H: 5, W: 7, C: 3, Size: 3, Stride: 3, Pad: 2},
	{N: 3, H: 6, W: 9, C: 4, Size: 4, Stride: 3, Pad: 1},
	{N: 1, H: 2, W: 3, C: 5, Size: 3, Stride: 1, Pad: 1},
}

func poolName(g kernels.PoolGeom) string {
	return fmt.Sprintf("N%d_H%d_W%d_C%d_K%d_S%d_P%d", g.N, g.H, g.W, g.C, g.Size, g.Stride, g.Pad)
}

func poolWhat(method string, g kernels.PoolGeom) string {
	return fmt.Sprintf("%s %+v (OH=%d OW=%d)", method, g, g.OH(), g.OW())
}

// distinctBuffer returns n distinct values in [-1, 1) in random order, so
// every window has a single maximum.
func distinctBuffer(rng *rand.Rand, name string, n int) *buffer {
	b := newBuffer(name, n)
	for i, p := range rng.Perm(n) {
		b.data()[i] = float32(2*float64(p)/float64(n) - 1)
	}
	return b.seal()
}

// TestMaxPool checks MaxPoolForward (values and argmax exactly, on inputs
// without ties) and MaxPoolBackward (routing by the reference's argmax).
func TestMaxPool(t *testing.T, b kernels.Backend[float32]) {
	for gi, g := range poolGeoms {
		t.Run(poolName(g), func(t *testing.T) {
			rng := newRand(500 + uint64(gi))
			x := distinctBuffer(rng, "x", g.InLen())
			dy := randomBuffer(rng, "dy", g.OutLen(), -1, 1)
			wantY, wantArg := make([]float64, g.OutLen()), make([]int32, g.OutLen())
			ref().MaxPoolForward(g, x.wide(), wantY, wantArg)

			t.Run("Forward", func(t *testing.T) {
				what := poolWhat("MaxPoolForward", g)
				y := newBuffer("y", g.OutLen()).seal()
				arg := newIndexBuffer("argmax", g.OutLen())
				b.MaxPoolForward(g, x.data(), y.data(), arg.data())
				if !x.checkUnchanged(t, what) || !y.checkGuards(t, what) || !arg.checkGuards(t, what) {
					return
				}
				compare(t, what+" y", y.data(), wantY, exact, atNHWC(g.OH(), g.OW(), g.C))
				bad := 0
				for i, a := range arg.data() {
					if a != wantArg[i] {
						if bad++; bad <= maxReported {
							t.Errorf("%s: argmax[%d] %s: got %d, want %d", what, i, atNHWC(g.OH(), g.OW(), g.C)(i), a, wantArg[i])
						}
					}
				}
			})
			t.Run("Backward", func(t *testing.T) {
				what := poolWhat("MaxPoolBackward", g)
				arg := newIndexBuffer("argmax", g.OutLen())
				copy(arg.data(), wantArg)
				dx := newBuffer("dx", g.InLen()).seal()
				want := make([]float64, g.InLen())
				ref().MaxPoolBackward(g, dy.wide(), wantArg, want)
				b.MaxPoolBackward(g, dy.data(), arg.data(), dx.data())
				if dy.checkUnchanged(t, what) && dx.checkGuards(t, what) && argUnchanged(t, what, arg, wantArg) {
					compare(t, what, dx.data(), want, sumTol(g.Size*g.Size), atNHWC(g.H, g.W, g.C))
				}
			})
		})
	}
}

func argUnchanged(t *testing.T, what string, arg *indexBuffer, want []int32) bool {
	t.Helper()
	if !arg.checkGuards(t, what) {
		return false
	}
	for i, a := range arg.data() {
		if a != want[i] {
			t.Errorf("%s: input argmax modified: element %d was %d, now %d", what, i, want[i], a)
			return false
		}
	}
	return true
}

// TestAvgPool checks AvgPoolForward and AvgPoolBackward, whose means leave
// padding out of the count.
func TestAvgPool(t *testing.T, b kernels.Backend[float32]) {
	for gi, g := range poolGeoms {
		t.Run(poolName(g), func(t *testing.T) {
			rng := newRand(600 + uint64(gi))
			x := randomBuffer(rng, "x", g.InLen(), -1, 1)
			dy := randomBuffer(rng, "dy", g.OutLen(), -1, 1)
			t.Run("Forward", func(t *testing.T) {
				what := poolWhat("AvgPoolForward", g)
				y := newBuffer("y", g.OutLen()).seal()
				want := make([]float64, g.OutLen())
				ref().AvgPoolForward(g, x.wide(), want)
				b.AvgPoolForward(g, x.data(), y.data())
				if x.checkUnchanged(t, what) && y.checkGuards(t, what) {
					compare(t, what, y.data(), want, sumTol(g.Size*g.Size), atNHWC(g.OH(), g.OW(), g.C))
				}
			})
			t.Run("Backward", func(t *testing.T) {
				what := poolWhat("AvgPoolBackward", g)
				dx := newBuffer("dx", g.InLen()).seal()
				want := make([]float64, g.InLen())
				ref().AvgPoolBackward(g, dy.wide(), want)
				b.AvgPoolBackward(g, dy.data(), dx.data())
				if dy.checkUnchanged(t, what) && dx.checkGuards(t, what) {
					compare(t, what, dx.data(), want, sumTol(g.Size*g.Size), atNHWC(g.H, g.W, g.C))
				}
			})
		})
	}
}
