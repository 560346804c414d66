package kernels

import "math"

// Every sum of products in the CPU backend is a chain of single-precision
// fused multiply-adds, acc = fma(a, b, acc): the assembly kernels use the
// FMA instructions, and the Go loops must give the same bits on every
// processor. Go has no float32 FMA: the compiler fuses x*y + z on arm64,
// where fma32 is that expression (fma32_fused.go); elsewhere (on amd64 it
// fuses only with GOAMD64=v3, and not when it folds a load into the
// multiply) fma32 is fma32Emulated. Neither may be float32(math.FMA(...)):
// that rounds twice, to float64 and then to float32.
//
// fma32Emulated computes the product of two float32s exactly in float64 (24
// + 24 bits fit in 53), adds c with one float64 rounding, and converts to
// float32. That second rounding is correct unless the float64 sum s landed
// exactly on a midpoint between two float32s while the exact sum did not:
// then the tie rule picks a side the exact sum may not be on. For a float32
// result in the normal range a midpoint has 1<<28 in the low 29 bits of its
// float64 mantissa (float32 keeps 23 of its 52 fraction bits, and the next
// one is the half); those rare sums, and every sum whose float32 result is
// subnormal (where fewer bits are kept, so the midpoint sits elsewhere), take
// fma32Round, which decides with the exact error of the float64 sum.

// fma32Emulated returns a·b + c rounded once to float32 (IEEE 754
// fusedMultiplyAdd, round to nearest even), in plain float64 arithmetic.
func fma32Emulated(a, b, c float32) float32 {
	p := float64(a) * float64(b) // exact
	s := p + float64(c)          // fused or not, the same: p is exact
	bits := math.Float64bits(s)
	if bits&fma32TieMask == fma32Tie || bits&^(1<<63)-1 < fma32MinNormal-1 {
		return fma32Round(p, float64(c), s)
	}
	return float32(s)
}

const (
	// fma32TieMask and fma32Tie test for a float64 that lies exactly
	// halfway between two normal float32s: the 29 fraction bits float32
	// drops are 1000…0.
	fma32TieMask = 1<<29 - 1
	fma32Tie     = 1 << 28
	// fma32MinNormal is the bit pattern of the smallest normal float32,
	// 2^−126, as a float64: below it float32 results are subnormal.
	fma32MinNormal = uint64(1023-126) << 52
)

// fma32Round returns the float32 nearest to p + c, where p and c are
// float64s and s is their float64 sum: float32(s) unless s is a midpoint
// between two float32s (normal, subnormal, or MaxFloat32 and the overflow
// threshold) and the exact sum is not; then s is moved one float64 ulp
// towards the exact sum, off the midpoint, before it is converted.
//
//go:noinline
func fma32Round(p, c, s float64) float32 {
	r := float32(s)
	if math.IsInf(s, 0) || math.IsNaN(s) {
		return r
	}
	// TwoSum: s + e = p + c exactly (no multiplications, so nothing fuses).
	bv := s - p
	av := s - bv
	e := (p - av) + (c - bv)
	if e == 0 {
		return r
	}
	// The float32s on either side of s, as float64s; past MaxFloat32 the
	// rounding treats 2^128 as the next value (which becomes +Inf).
	rv := float64(r)
	if math.IsInf(rv, 0) {
		rv = math.Copysign(0x1p128, s)
	}
	if rv == s {
		return r // s is a float32, and the exact sum is within half a float64 ulp of it
	}
	var nv float64
	if s > rv {
		nv = fma32Up(rv)
	} else {
		nv = -fma32Up(-rv)
	}
	if rv+nv != 2*s { // exact: both sides are sums of float32-sized values
		return r
	}
	bits := math.Float64bits(s)
	if (e > 0) == (s > 0) {
		bits++ // away from zero
	} else {
		bits--
	}
	return float32(math.Float64frombits(bits))
}

// fma32Up returns the next float32 above v (a float32 or −2^128, as a
// float64), with 2^128 above MaxFloat32.
func fma32Up(v float64) float64 {
	switch {
	case v == -0x1p128:
		return -math.MaxFloat32
	case v == math.MaxFloat32:
		return 0x1p128
	}
	return float64(math.Nextafter32(float32(v), float32(math.Inf(1))))
}
