//go:build arm64 && !noasm

package kernels

import "fmt"

// The arm64 SGEMM kernels (sgemm_arm64.s) compute a tile's sums with NEON
// FMLA, four lanes of exact float32 FMAs, in the order every kernel family
// follows (see sgemmMicroGo); the write-back, once per tile and k block, is
// Go's (sgemmStore, where fma32 is the FMADDS instruction). So they give the
// bits of the amd64 kernels. Not timed on arm64 hardware here: only run,
// and checked, under qemu-user.

//go:noescape
func sgemmTileNEON8x12(kc int, a *float32, rsA, csA int, b *float32, ldb int, acc *float32)

//go:noescape
func sgemmTileNEON8x8(kc int, a *float32, rsA, csA int, b *float32, ldb int, acc *float32)

// sgemmMicroNEON runs the 8×nr kernel over tiles tiles and writes their
// first cols columns back to C.
func sgemmMicroNEON(nr, tiles, kc int, a []float32, rsA, csA, tsA int, b []float32, ldb int, c []float32, ldc, cols int, alpha, beta float32) {
	sgemmCheckMicro(8, nr, tiles, kc, a, rsA, csA, tsA, b, ldb, c, ldc, cols)
	if rsA < 0 || csA < 0 || ldb < 0 {
		panic(fmt.Sprintf("kernels: sgemm NEON kernel: negative stride (rsA %d, csA %d, ldb %d)", rsA, csA, ldb))
	}
	var acc [8 * 12]float32
	for t := range tiles {
		if nr == 12 {
			sgemmTileNEON8x12(kc, &a[t*tsA], rsA, csA, &b[0], ldb, &acc[0])
		} else {
			sgemmTileNEON8x8(kc, &a[t*tsA], rsA, csA, &b[0], ldb, &acc[0])
		}
		ct := c[t*8*ldc:]
		for i := range 8 {
			row := ct[i*ldc : i*ldc+cols]
			sums := acc[i*nr : i*nr+cols]
			for j, s := range sums {
				row[j] = sgemmStore(row[j], s, alpha, beta)
			}
		}
	}
}

var sgemmNEON = &sgemmKernel{
	name: "neon", mr: 8, wideNR: 12, narrowNR: 8,
	packB: sgemmPackBGo, packAT: sgemmPackATGo, maskedCols: true,
	wide: func(_ *SgemmWorkspace, tiles, kc int, a []float32, rsA, csA, tsA int, b []float32, ldb int, c []float32, ldc, cols, _, _ int, alpha, beta float32) {
		sgemmMicroNEON(12, tiles, kc, a, rsA, csA, tsA, b, ldb, c, ldc, cols, alpha, beta)
	},
	narrow: func(_ *SgemmWorkspace, tiles, kc int, a []float32, rsA, csA, tsA int, b []float32, ldb int, c []float32, ldc, cols, _, _ int, alpha, beta float32) {
		sgemmMicroNEON(8, tiles, kc, a, rsA, csA, tsA, b, ldb, c, ldc, cols, alpha, beta)
	},
}

// sgemmKernels lists the kernel families of this build, fastest first.
func sgemmKernels() []*sgemmKernel { return []*sgemmKernel{sgemmNEON, sgemmGo} }

// sgemmBest is the kernel family Sgemm uses.
var sgemmBest = sgemmNEON
