//go:build arm64

package kernels

// The Go micro-kernel where the compiler fuses float32 multiply-adds into
// FMA instructions, arm64 (see fma32_fused.go): every step is acc = a*b + acc in
// float32, one FMADDS, exact for any operands. A tile is computed in 2×8
// blocks (16 accumulators, which arm64's 32 registers hold with the
// operands), from copies of the B sliver in groups of eight columns and of
// the A tile in pairs of rows, laid out so that the inner loop reads both
// in order.

// sgemmGoScratch holds a B sliver in groups of eight columns (group g, step
// p at g·kc + p) and an A tile in pairs of rows (pair h, step p at h·kc + p).
type sgemmGoScratch struct {
	b [][8]float32
	a [][2]float32
}

func sgemmGoTiles(w *SgemmWorkspace, mr, nr, tiles, kc int, a []float32, rsA, csA, tsA int, b []float32, ldb int, c []float32, ldc, cols int, alpha, beta float32) {
	gs := &w.gs
	groups, pairs := (cols+7)/8, mr/2
	if cap(gs.b) < nr/8*kc {
		gs.b = make([][8]float32, nr/8*kc)
	}
	if cap(gs.a) < pairs*kc {
		gs.a = make([][2]float32, pairs*kc)
	}
	bw, aw := gs.b[:groups*kc], gs.a[:pairs*kc]
	for g := range groups {
		dst := bw[g*kc : (g+1)*kc]
		for p := range dst {
			dst[p] = [8]float32(b[p*ldb+8*g : p*ldb+8*g+8])
		}
	}
	for t := range tiles {
		at := a[t*tsA:]
		for h := range pairs {
			dst := aw[h*kc : (h+1)*kc]
			r0, r1 := at[2*h*rsA:], at[(2*h+1)*rsA:]
			for p := range dst {
				dst[p] = [2]float32{r0[p*csA], r1[p*csA]}
			}
		}
		ct := c[t*mr*ldc:]
		for h := range pairs {
			ap := aw[h*kc : (h+1)*kc]
			for g := range groups {
				acc := sgemmGoDot2x8(ap, bw[g*kc:(g+1)*kc])
				for i := range 2 {
					row := ct[(2*h+i)*ldc:]
					for j := range min(8, cols-8*g) {
						ci := &row[8*g+j]
						*ci = sgemmStore(*ci, acc[i][j], alpha, beta)
					}
				}
			}
		}
	}
}

// sgemmGoDot2x8 returns the 2×8 block of chains over a row pair of A and a
// column group of B.
func sgemmGoDot2x8(ap [][2]float32, bp [][8]float32) (acc [2][8]float32) {
	bp = bp[:len(ap)]
	var c00, c01, c02, c03, c04, c05, c06, c07 float32
	var c10, c11, c12, c13, c14, c15, c16, c17 float32
	for p, a := range ap {
		b := &bp[p]
		c00 = fma32(a[0], b[0], c00)
		c01 = fma32(a[0], b[1], c01)
		c02 = fma32(a[0], b[2], c02)
		c03 = fma32(a[0], b[3], c03)
		c04 = fma32(a[0], b[4], c04)
		c05 = fma32(a[0], b[5], c05)
		c06 = fma32(a[0], b[6], c06)
		c07 = fma32(a[0], b[7], c07)
		c10 = fma32(a[1], b[0], c10)
		c11 = fma32(a[1], b[1], c11)
		c12 = fma32(a[1], b[2], c12)
		c13 = fma32(a[1], b[3], c13)
		c14 = fma32(a[1], b[4], c14)
		c15 = fma32(a[1], b[5], c15)
		c16 = fma32(a[1], b[6], c16)
		c17 = fma32(a[1], b[7], c17)
	}
	return [2][8]float32{
		{c00, c01, c02, c03, c04, c05, c06, c07},
		{c10, c11, c12, c13, c14, c15, c16, c17},
	}
}
