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
