package kernelstest

import (
	"fmt"
	"math"
	"testing"

	"github.com/dpcnn/dpcnn/kernels"
)

// convGeoms cover batch 1 and odd batches, odd and non-square images down to
// 1×1, 1 and 3 channels and wider ones, 1×1, 3×3, 5×5 and non-square
// filters, strides 1 to 3 (with rows the stride skips), and pads 0 to 2.
var convGeoms = []kernels.ConvGeom{
	{N: 1, H: 5, W: 5, C: 1, OC: 1, KH: 3, KW: 3, Stride: 1, Pad: 0},
	{N: 1, H: 1, W: 1, C: 3, OC: 4, KH: 1, KW: 1, Stride: 1, Pad: 0},
	{N: 2, H: 1, W: 1, C: 3, OC: 2, KH: 3, KW: 3, Stride: 1, Pad: 1},
	{N: 2, H: 7, W: 7, C: 3, OC: 8, KH: 3, KW: 3, Stride: 1, Pad: 1},
	{N: 3, H: 13, W: 13, C: 16, OC: 32, KH: 3, KW: 3, Stride: 1, Pad: 1},
	{N: 2, H: 28, W: 28, C: 1, OC: 16, KH: 5, KW: 5, Stride: 1, Pad: 2},
	{N: 1, H: 28, W: 28, C: 1, OC: 16, KH: 3, KW: 3, Stride: 1, Pad: 1},
	{N: 3, H: 7, W: 5, C: 3, OC: 5, KH: 3, KW: 3, Stride: 2, Pad: 1},
	{N: 2, H: 13, W: 13, C: 16, OC: 16, KH: 5, KW: 5, Stride: 2, Pad: 2},
	{N: 1, H: 5, W: 7, C: 32, OC: 3, KH: 1, KW: 1, Stride: 2, Pad: 0},
	{N: 2, H: 8, W: 8, C: 16, OC: 32, KH: 3, KW: 3, Stride: 2, Pad: 0},
	{N: 5, H: 6, W: 9, C: 4, OC: 7, KH: 3, KW: 3, Stride: 3, Pad: 0},
	{N: 1, H: 5, W: 5, C: 3, OC: 4, KH: 5, KW: 5, Stride: 1, Pad: 2},
	{N: 2, H: 7, W: 9, C: 2, OC: 3, KH: 1, KW: 3, Stride: 1, Pad: 1},
	{N: 1, H: 6, W: 6, C: 3, OC: 4, KH: 2, KW: 3, Stride: 2, Pad: 0},
	{N: 3, H: 14, W: 14, C: 32, OC: 17, KH: 3, KW: 3, Stride: 1, Pad: 0},
	// Shapes of the CPU backend's own paths: one channel into 16 3×3
	// filters (conv1's kernels; 5 columns leave one after the 4-pixel
	// steps), and K = 288 and 216 with whole 12-row tiles (the filter
	// gradient that packs patches straight into the GEMM's slivers), one
	// padded by 2, one strided.
	{N: 3, H: 5, W: 7, C: 1, OC: 16, KH: 3, KW: 3, Stride: 1, Pad: 0},
	{N: 2, H: 9, W: 8, C: 32, OC: 16, KH: 3, KW: 3, Stride: 1, Pad: 2},
	{N: 3, H: 7, W: 7, C: 24, OC: 32, KH: 3, KW: 3, Stride: 2, Pad: 1},
}

func convName(g kernels.ConvGeom) string {
	return fmt.Sprintf("N%d_H%d_W%d_C%d_OC%d_K%dx%d_S%d_P%d", g.N, g.H, g.W, g.C, g.OC, g.KH, g.KW, g.Stride, g.Pad)
}

func convWhat(method string, g kernels.ConvGeom) string {
	return fmt.Sprintf("%s %+v (OH=%d OW=%d)", method, g, g.OH(), g.OW())
}

// TestIm2Col checks the patch matrix, which must equal the reference's
// exactly: it is a copy with zeros for padding.
func TestIm2Col(t *testing.T, b kernels.Backend[float32]) {
	for gi, g := range convGeoms {
		t.Run(convName(g), func(t *testing.T) {
			rng := newRand(200 + uint64(gi))
			what := convWhat("Im2Col", g)
			x := randomBuffer(rng, "x", g.InLen(), -1, 1)
			col := newBuffer("col", g.ColRows()*g.ColCols()).seal()
			want := make([]float64, g.ColRows()*g.ColCols())
			ref().Im2Col(g, x.wide(), want)
			b.Im2Col(g, x.data(), col.data())
			if x.checkUnchanged(t, what) && col.checkGuards(t, what) {
				compare(t, what, col.data(), want, exact, atRowCol(g.ColCols()))
			}
		})
	}
}

// TestCol2Im checks the adjoint of Im2Col, which must overwrite dx.
func TestCol2Im(t *testing.T, b kernels.Backend[float32]) {
	for gi, g := range convGeoms {
		t.Run(convName(g), func(t *testing.T) {
			rng := newRand(300 + uint64(gi))
			what := convWhat("Col2Im", g)
			col := randomBuffer(rng, "col", g.ColRows()*g.ColCols(), -1, 1)
			dx := newBuffer("dx", g.InLen()).seal()
			want := make([]float64, g.InLen())
			ref().Col2Im(g, col.wide(), want)
			b.Col2Im(g, col.data(), dx.data())
			if col.checkUnchanged(t, what) && dx.checkGuards(t, what) {
				compare(t, what, dx.data(), want, sumTol(g.KH*g.KW), atNHWC(g.H, g.W, g.C))
			}
		})
	}
}

// TestConv checks ConvForward, ConvForwardReLU, ConvBackwardData and
// ConvBackwardFilter on every geometry; every output starts as NaN, so an accumulating backward
// pass fails.
func TestConv(t *testing.T, b kernels.Backend[float32]) {
	for gi, g := range convGeoms {
		t.Run(convName(g), func(t *testing.T) {
			rng := newRand(400 + uint64(gi))
			x := randomBuffer(rng, "x", g.InLen(), -1, 1)
			w := randomBuffer(rng, "w", g.FilterLen(), -1, 1)
			bias := randomBuffer(rng, "bias", g.OC, -1, 1)
			dy := randomBuffer(rng, "dy", g.OutLen(), -1, 1)

			t.Run("Forward", func(t *testing.T) {
				what := convWhat("ConvForward", g)
				y := newBuffer("y", g.OutLen()).seal()
				want := make([]float64, g.OutLen())
				ref().ConvForward(g, x.wide(), w.wide(), bias.wide(), want)
				b.ConvForward(g, x.data(), w.data(), bias.data(), y.data())
				if x.checkUnchanged(t, what) && w.checkUnchanged(t, what) && bias.checkUnchanged(t, what) && y.checkGuards(t, what) {
					compare(t, what, y.data(), want, sumTol(g.ColCols()+1), atNHWC(g.OH(), g.OW(), g.OC))
				}
			})
			t.Run("ForwardReLU", func(t *testing.T) {
				what := convWhat("ConvForwardReLU", g)
				y := newBuffer("y", g.OutLen()).seal()
				want := make([]float64, g.OutLen())
				ref().ConvForward(g, x.wide(), w.wide(), bias.wide(), want)
				ref().ReLUForward(want, want)
				b.ConvForwardReLU(g, x.data(), w.data(), bias.data(), y.data())
				if x.checkUnchanged(t, what) && w.checkUnchanged(t, what) && bias.checkUnchanged(t, what) && y.checkGuards(t, what) {
					compare(t, what, y.data(), want, sumTol(g.ColCols()+1), atNHWC(g.OH(), g.OW(), g.OC))
					for i, v := range y.data() {
						if !(v >= 0) || math.Signbit(float64(v)) {
							t.Errorf("%s: y[%d] = %v, want a value ≥ +0", what, i, v)
							break
						}
					}
				}
			})
			t.Run("BackwardData", func(t *testing.T) {
				what := convWhat("ConvBackwardData", g)
				dx := newBuffer("dx", g.InLen()).seal()
				want := make([]float64, g.InLen())
				ref().ConvBackwardData(g, dy.wide(), w.wide(), want)
				b.ConvBackwardData(g, dy.data(), w.data(), dx.data())
				if dy.checkUnchanged(t, what) && w.checkUnchanged(t, what) && dx.checkGuards(t, what) {
					compare(t, what, dx.data(), want, sumTol(g.KH*g.KW*g.OC), atNHWC(g.H, g.W, g.C))
				}
			})
			t.Run("BackwardFilter", func(t *testing.T) {
				what := convWhat("ConvBackwardFilter", g)
				dw := newBuffer("dw", g.FilterLen()).seal()
				dbias := newBuffer("dbias", g.OC).seal()
				wantW, wantB := make([]float64, g.FilterLen()), make([]float64, g.OC)
				ref().ConvBackwardFilter(g, x.wide(), dy.wide(), wantW, wantB)
				b.ConvBackwardFilter(g, x.data(), dy.data(), dw.data(), dbias.data())
				if x.checkUnchanged(t, what) && dy.checkUnchanged(t, what) && dw.checkGuards(t, what) && dbias.checkGuards(t, what) {
					pixels := g.ColRows()
					compare(t, what+" dw", dw.data(), wantW, sumTol(pixels), atHWIO(g))
					compare(t, what+" dbias", dbias.data(), wantB, sumTol(pixels), nil)
				}
			})
		})
	}
}

// atHWIO locates index i of a filter tensor.
func atHWIO(g kernels.ConvGeom) func(i int) string {
	return func(i int) string {
		return fmt.Sprintf("(kh=%d kw=%d c=%d oc=%d)", i/(g.KW*g.C*g.OC), i/(g.C*g.OC)%g.KW, i/g.OC%g.C, i%g.OC)
	}
}
