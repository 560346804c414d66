//go:build !arm64

package kernels

import "math"

// The Go micro-kernel where float32 FMAs are emulated (see fma32.go). A
// tile is computed in 2×4 blocks, each eight independent chains of
//
//	s := a·b + acc                // a, b, acc: float32 values held in float64
//	if bits(s)&fma32TieMask == fma32Tie { the block again, with sgemmMicroRef }
//	acc = float64(float32(s))     // the one rounding of a float32 FMA
//
// so the fast path is a multiply, an add, one and-compare-branch and the
// conversions. That check alone is exact only while no sum can be a float32
// subnormal (see fma32Emulated); overflow needs nothing more, as the
// conversion rounds to ±Inf and the threshold's midpoint has the tie
// pattern. The operands are widened to float64 once per sliver and tile,
// which is also when their exponents are checked: while the smallest
// nonzero |a|·|b| is at least 2^−133, every product is a multiple of 2^−179
// (a float32 of exponent e is a multiple of 2^(e−23)) and every acc of
// 2^−149, so an exact sum below 2^−126 has at most 53 bits: the float64
// addition is exact there and no second rounding can go wrong. A tile with
// smaller values (nonzero operands near 1e−20 on both sides) takes
// sgemmMicroRef, exact for anything.

// sgemmGoScratch holds a B sliver widened to float64 in groups of four
// columns (group g, step p at g·kc + p) and an A tile in pairs of rows
// (pair h, step p at h·kc + p).
type sgemmGoScratch struct {
	b [][4]float64
	a [][2]float64
}

// sgemmGoMinExp returns the smallest biased float32 exponent of the
// nonzero values of a set (255 when all are zero), given the smallest so
// far.
func sgemmGoMinExp(lowest uint32, v float32) uint32 {
	e := math.Float32bits(v) >> 23 & 0xff
	if v == 0 {
		e = 255
	}
	return min(lowest, e)
}

// sgemmGoFastMinExp bounds the sum of the smallest biased exponents of A
// and B: 121 − 254 = −133, so every nonzero product is at least 2^−133.
const sgemmGoFastMinExp = 121

func sgemmGoTiles(w *SgemmWorkspace, mr, nr, tiles, kc int, a []float32, rsA, csA, tsA int, b []float32, ldb int, c []float32, ldc, cols int, alpha, beta float32) {
	gs := &w.gs
	groups, pairs := (cols+3)/4, mr/2
	if cap(gs.b) < nr/4*kc {
		gs.b = make([][4]float64, nr/4*kc)
	}
	if cap(gs.a) < pairs*kc {
		gs.a = make([][2]float64, pairs*kc)
	}
	bw, aw := gs.b[:groups*kc], gs.a[:pairs*kc]
	minB := uint32(255)
	for g := range groups {
		dst := bw[g*kc : (g+1)*kc]
		for p := range dst {
			src := b[p*ldb+4*g : p*ldb+4*g+4]
			for j, v := range src {
				minB = sgemmGoMinExp(minB, v)
				dst[p][j] = float64(v)
			}
		}
	}
	for t := range tiles {
		at := a[t*tsA:]
		minA := uint32(255)
		for h := range pairs {
			dst := aw[h*kc : (h+1)*kc]
			r0, r1 := at[2*h*rsA:], at[(2*h+1)*rsA:]
			for p := range dst {
				v0, v1 := r0[p*csA], r1[p*csA]
				minA = sgemmGoMinExp(sgemmGoMinExp(minA, v0), v1)
				dst[p] = [2]float64{float64(v0), float64(v1)}
			}
		}
		ct := c[t*mr*ldc:]
		if minA+minB < sgemmGoFastMinExp {
			sgemmMicroRef(mr, 1, kc, at, rsA, csA, 0, b, ldb, ct, ldc, cols, alpha, beta)
			continue
		}
		for h := range pairs {
			ap := aw[h*kc : (h+1)*kc]
			for g := range groups {
				acc, ok := sgemmGoDot2x4(ap, bw[g*kc:(g+1)*kc])
				if !ok {
					sgemmMicroRef(2, 1, kc, at[2*h*rsA:], rsA, csA, 0, b[4*g:], ldb, ct[2*h*ldc+4*g:], ldc, min(4, cols-4*g), alpha, beta)
					continue
				}
				for i := range 2 {
					row := ct[(2*h+i)*ldc:]
					for j := range min(4, cols-4*g) {
						ci := &row[4*g+j]
						*ci = sgemmStore(*ci, acc[i][j], alpha, beta)
					}
				}
			}
		}
	}
}

// sgemmGoDot2x4 returns the 2×4 block of chains over a row pair of A and a
// column group of B, or ok = false at the first sum on a float32 midpoint:
// then the caller computes the block with sgemmMicroRef. Each step is
// written out, and the loop calls nothing, so that the compiler keeps the
// accumulators in registers.
func sgemmGoDot2x4(ap [][2]float64, bp [][4]float64) (acc [2][4]float32, ok bool) {
	bp = bp[:len(ap)]
	var c00, c01, c02, c03, c10, c11, c12, c13 float64
	for p := range ap {
		a0, a1 := ap[p][0], ap[p][1]
		b := &bp[p]
		b0, b1, b2, b3 := b[0], b[1], b[2], b[3]
		s00 := a0*b0 + c00
		s01 := a0*b1 + c01
		s02 := a0*b2 + c02
		s03 := a0*b3 + c03
		s10 := a1*b0 + c10
		s11 := a1*b1 + c11
		s12 := a1*b2 + c12
		s13 := a1*b3 + c13
		if math.Float64bits(s00)&fma32TieMask == fma32Tie {
			return acc, false
		}
		if math.Float64bits(s01)&fma32TieMask == fma32Tie {
			return acc, false
		}
		if math.Float64bits(s02)&fma32TieMask == fma32Tie {
			return acc, false
		}
		if math.Float64bits(s03)&fma32TieMask == fma32Tie {
			return acc, false
		}
		if math.Float64bits(s10)&fma32TieMask == fma32Tie {
			return acc, false
		}
		if math.Float64bits(s11)&fma32TieMask == fma32Tie {
			return acc, false
		}
		if math.Float64bits(s12)&fma32TieMask == fma32Tie {
			return acc, false
		}
		if math.Float64bits(s13)&fma32TieMask == fma32Tie {
			return acc, false
		}
		c00 = float64(float32(s00))
		c01 = float64(float32(s01))
		c02 = float64(float32(s02))
		c03 = float64(float32(s03))
		c10 = float64(float32(s10))
		c11 = float64(float32(s11))
		c12 = float64(float32(s12))
		c13 = float64(float32(s13))
	}
	return [2][4]float32{
		{float32(c00), float32(c01), float32(c02), float32(c03)},
		{float32(c10), float32(c11), float32(c12), float32(c13)},
	}, true
}
