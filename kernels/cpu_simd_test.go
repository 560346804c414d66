package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestCPURowCopies checks cpuCopyRows and cpuAddRows, whose vector forms
// take widths that are multiples of 8 or of 4, against their Go loops: every
// width up to 40, overlapping destination rows (as col2im adds them), and
// NaN guards after the last row that must survive.
func TestCPURowCopies(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for cols := 1; cols <= 40; cols++ {
		for _, strides := range [][2]int{{cols, cols}, {cols + 5, 3 * cols}, {4, cols + 1}} {
			ldd, lds := strides[0], strides[1]
			const rows = 6
			src := make([]float32, (rows-1)*lds+cols)
			for i := range src {
				src[i] = float32(rng.NormFloat64())
			}
			n := (rows-1)*ldd + cols
			base := make([]float32, n+8)
			for i := range base {
				base[i] = float32(rng.NormFloat64())
			}
			for i := n; i < len(base); i++ {
				base[i] = float32(math.NaN())
			}
			for _, op := range []struct {
				name      string
				fast, go_ func(dst []float32, ldd int, src []float32, lds, rows, cols int)
			}{
				{"copy", cpuCopyRows, cpuCopyRowsGo},
				{"add", cpuAddRows, cpuAddRowsGo},
			} {
				got, want := append([]float32(nil), base...), append([]float32(nil), base...)
				op.fast(got, ldd, src, lds, rows, cols)
				op.go_(want, ldd, src, lds, rows, cols)
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%s rows: cols %d, ldd %d, lds %d: element %d is %v, want %v", op.name, cols, ldd, lds, i, got[i], want[i])
					}
				}
			}
		}
	}
}

// TestCPUPoolScatter checks the one-pass max-pool backward (windows that
// tile the image) against the clear-and-add loop it replaces, bit for bit:
// NaN, infinities and zeros of both signs in dy, ties in x (the first cell
// wins), stale values in dx that must all be overwritten, on one and three
// threads; and that the shapes it cannot take (overlapping or padded
// windows, images the windows do not tile, C not a multiple of 8) still
// give the same bits through the loop.
func TestCPUPoolScatter(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	for _, tc := range []struct {
		g    PoolGeom
		fast bool
	}{
		{PoolGeom{N: 5, H: 28, W: 28, C: 16, Size: 2, Stride: 2}, true},
		{PoolGeom{N: 3, H: 16, W: 16, C: 32, Size: 2, Stride: 2}, true},
		{PoolGeom{N: 7, H: 9, W: 6, C: 24, Size: 3, Stride: 3}, true},
		{PoolGeom{N: 2, H: 8, W: 8, C: 64, Size: 4, Stride: 4}, true},
		{PoolGeom{N: 3, H: 9, W: 9, C: 16, Size: 2, Stride: 2}, false},
		{PoolGeom{N: 3, H: 8, W: 8, C: 16, Size: 3, Stride: 2}, false},
		{PoolGeom{N: 3, H: 8, W: 8, C: 16, Size: 2, Stride: 2, Pad: 1}, false},
		{PoolGeom{N: 3, H: 8, W: 8, C: 12, Size: 2, Stride: 2}, false},
	} {
		g := tc.g
		x, dy := make([]float32, g.InLen()), make([]float32, g.OutLen())
		for i := range x {
			x[i] = float32(rng.IntN(5)) // many ties
		}
		sgemmAwkward(rng, dy, true)
		for i := range dy {
			switch rng.IntN(16) {
			case 0:
				dy[i] = float32(math.NaN())
			case 1:
				dy[i] = float32(math.Inf(1 - 2*rng.IntN(2)))
			case 2:
				dy[i] = float32(math.Copysign(0, -1))
			}
		}
		y, argmax := make([]float32, g.OutLen()), make([]int32, g.OutLen())
		NewCPU(1).MaxPoolForward(g, x, y, argmax)
		want := make([]float32, g.InLen())
		for i, a := range argmax {
			want[a] += dy[i]
		}
		if cpuHasAVX2 {
			scratch := make([]float32, g.InLen())
			if got := cpuPoolScatterVec(g, dy, argmax, scratch, 0, g.N); got != tc.fast {
				t.Errorf("%+v: the one-pass path taken: %v, want %v", g, got, tc.fast)
			}
		}
		for _, threads := range []int{1, 3} {
			c := NewCPU(threads)
			dx := make([]float32, g.InLen())
			for i := range dx {
				dx[i] = float32(math.NaN()) // stale: every cell must be written
			}
			c.MaxPoolBackward(g, dy, argmax, dx)
			c.Close()
			for i := range want {
				if math.Float32bits(dx[i]) != math.Float32bits(want[i]) {
					t.Errorf("%+v, %d threads: dx[%d] is %v (%#x), want %v (%#x)", g, threads, i, dx[i], math.Float32bits(dx[i]), want[i], math.Float32bits(want[i]))
					break
				}
			}
		}
	}
}
