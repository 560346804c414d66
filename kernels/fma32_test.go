package kernels

import (
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// fma32Exact is the reference: a·b + c computed exactly with math/big and
// rounded once to the nearest float32 (ties to even; subnormals and
// overflow as IEEE 754 has them). Infinities and NaNs, which math/big does
// not carry, propagate as in float64 arithmetic, which is exact for them.
func fma32Exact(a, b, c float32) float32 {
	fa, fb, fc := float64(a), float64(b), float64(c)
	if math.IsInf(fa, 0) || math.IsInf(fb, 0) || math.IsInf(fc, 0) || math.IsNaN(fa) || math.IsNaN(fb) || math.IsNaN(fc) {
		return float32(fa*fb + fc)
	}
	x := new(big.Float).SetPrec(1200).SetFloat64(fa)
	x.Mul(x, new(big.Float).SetFloat64(fb))
	x.Add(x, new(big.Float).SetPrec(1200).SetFloat64(fc))
	if x.Sign() == 0 {
		// An exact zero: its sign follows IEEE's rules, which float64
		// arithmetic (exact here) applies.
		return float32(fa*fb + fc)
	}
	r, _ := x.Float32()
	return r
}

// fma32DoubleRounded is the naive emulation, rounded to float64 and then
// to float32, which the cases must catch out.
//
//go:noinline
func fma32DoubleRounded(a, b, c float32) float32 {
	s := float64(float64(a)*float64(b)) + float64(c)
	return float32(s)
}

// fma32Cases returns the inputs of TestFMA32: random bit patterns, random
// values of nearby magnitudes (cancellation), and adversarial sums that the
// float64 addition rounds onto a float32 midpoint (normal, subnormal and at
// the overflow threshold), each with every sign, plus signed zeros,
// infinities and NaNs.
func fma32Cases(rng *rand.Rand) [][3]float32 {
	var cases [][3]float32
	add := func(a, b, c float32) {
		for sign := range 8 {
			sa, sb, sc := a, b, c
			if sign&1 != 0 {
				sa = -sa
			}
			if sign&2 != 0 {
				sb = -sb
			}
			if sign&4 != 0 {
				sc = -sc
			}
			cases = append(cases, [3]float32{sa, sb, sc})
		}
	}
	bitsOf := func() float32 { return math.Float32frombits(rng.Uint32()) }
	for range 40_000 {
		add(bitsOf(), bitsOf(), bitsOf())
	}
	// Nearby magnitudes: a·b and c within a few binades of each other.
	near := func(e int) float32 {
		return float32(math.Ldexp(1+rng.Float64(), e)) // rounds to a float32 mantissa
	}
	for range 40_000 {
		ea, eb := rng.IntN(80)-40, rng.IntN(80)-40
		add(near(ea), near(eb), near(ea+eb+rng.IntN(60)-30))
	}
	// Tiny operands whose sums are subnormal or cross into the normal range.
	for range 40_000 {
		ea := rng.IntN(60) - 100
		eb := -150 - ea + rng.IntN(30)
		c := math.Float32frombits(rng.Uint32() & (1<<24 - 1)) // subnormal or just above
		add(near(ea), near(eb), c)
	}
	// Midpoints: a·b = h·(1 − 2^−2k) where h is half an ulp of c, so the
	// exact sum lies just inside a midpoint and the float64 sum rounds onto
	// it for k ≥ 15. k < 15 keeps the deficit (no midpoint); exact
	// products a·b = h are true ties.
	for range 20_000 {
		k := 8 + rng.IntN(16)
		mant := float32(1 + rng.Float64())
		ec := rng.IntN(250) - 125 // c in the normal range
		c := float32(math.Ldexp(float64(mant), ec))
		switch rng.IntN(4) {
		case 0:
			c = float32(math.Ldexp(1, ec)) // a power of two: ulps differ below and above
		case 1:
			c = math.Float32frombits(math.Float32bits(float32(math.Ldexp(1, ec))) - 1) // all ones
		}
		eh := ec - 24 // h = 2^eh
		ea := eh/2 + rng.IntN(20) - 10
		eb := eh - ea
		a := float32(math.Ldexp(1+math.Ldexp(1, -k), ea))
		b := float32(math.Ldexp(1-math.Ldexp(1, -k), eb))
		add(a, b, c)
		add(float32(math.Ldexp(1, ea)), float32(math.Ldexp(1, eb)), c)                                         // a·b = h: a tie
		add(a, float32(math.Ldexp(1+math.Ldexp(1, -k), eb)), c)                                                // just outside
		add(float32(math.Ldexp(1+math.Ldexp(1, -k), ea-1)), b, c)                                              // a quarter: no midpoint
		add(float32(math.Ldexp(3*(1+math.Ldexp(1, -k)), ea)), float32(math.Ldexp(1-math.Ldexp(1, -k), eb)), c) // three halves
	}
	// Subnormal midpoints: c a multiple of 2^−149 below 2^−126, a·b =
	// m·2^−150·(1 − 2^−2k) with m odd.
	for range 20_000 {
		k := 14 + rng.IntN(10)
		m := float64(1 + 2*rng.IntN(4))
		c := math.Float32frombits(rng.Uint32() & (1<<23 - 1))
		ea := -75 + rng.IntN(20) - 10
		a := float32(math.Ldexp(m*(1+math.Ldexp(1, -k)), ea))
		b := float32(math.Ldexp(1-math.Ldexp(1, -k), -150-ea))
		add(a, b, c)
		add(float32(math.Ldexp(m, ea)), float32(math.Ldexp(1, -150-ea)), c)
	}
	// The overflow threshold, MaxFloat32 + 2^103, approached from below and
	// reached exactly.
	for k := 12; k <= 23; k++ {
		a := float32(math.Ldexp(1+math.Ldexp(1, -k), 52))
		b := float32(math.Ldexp(1-math.Ldexp(1, -k), 51))
		add(a, b, math.MaxFloat32)
		add(float32(math.Ldexp(1, 52)), float32(math.Ldexp(1, 51)), math.MaxFloat32)
		add(float32(math.Ldexp(1, 60)), float32(math.Ldexp(1, 60)), math.MaxFloat32)
	}
	inf, nan := float32(math.Inf(1)), float32(math.NaN())
	specials := []float32{0, 1, 0.5, 3, math.SmallestNonzeroFloat32, 0x1p-126, math.MaxFloat32, inf, nan}
	for _, a := range specials {
		for _, b := range specials {
			for _, c := range specials {
				add(a, b, c)
			}
		}
	}
	return cases
}

// TestFMA32 checks fma32Emulated, and fma32 as this build compiles it,
// against the exact result on every case of fma32Cases.
func TestFMA32(t *testing.T) {
	rng := rand.New(rand.NewPCG(32, 32))
	cases := fma32Cases(rng)
	if testing.Short() { // every fourth case (of every kind)
		for i := range len(cases) / 4 {
			cases[i] = cases[4*i]
		}
		cases = cases[:len(cases)/4]
	}
	fns := []struct {
		name string
		fn   func(a, b, c float32) float32
	}{{"fma32Emulated", fma32Emulated}, {fmt.Sprintf("fma32 (fused %v)", fma32Fused), func(a, b, c float32) float32 { return fma32(a, b, c) }}}
	naive := 0
	for _, tc := range cases {
		a, b, c := tc[0], tc[1], tc[2]
		want := fma32Exact(a, b, c)
		if fma32DoubleRounded(a, b, c) != want && !math.IsNaN(float64(want)) {
			naive++ // the double rounding fma32Emulated must avoid
		}
		for _, f := range fns {
			got := f.fn(a, b, c)
			if math.Float32bits(got) != math.Float32bits(want) && !(math.IsNaN(float64(got)) && math.IsNaN(float64(want))) {
				t.Fatalf("%s(%g, %g, %g) = %g (%#08x), want %g (%#08x)", f.name, a, b, c, got, math.Float32bits(got), want, math.Float32bits(want))
			}
		}
	}
	// The adversarial cases must really be adversarial.
	if naive < 1000 {
		t.Errorf("only %d of %d cases round wrongly through float64: the midpoint cases do not reach midpoints", naive, len(cases))
	}
	t.Logf("%d cases, %d of which float32(float64(a)·float64(b) + float64(c)) gets wrong", len(cases), naive)
}

// FuzzFMA32 checks fma32Emulated and fma32 against the exact result on
// arbitrary bit patterns.
func FuzzFMA32(f *testing.F) {
	f.Add(uint32(0x3f800000), uint32(0x33800000), uint32(0x3f800001))
	f.Add(uint32(0x00000003), uint32(0x3f000000), uint32(0x80000001))
	f.Add(uint32(0x7f7fffff), uint32(0x3f800000), uint32(0x73800000))
	f.Fuzz(func(t *testing.T, ua, ub, uc uint32) {
		a, b, c := math.Float32frombits(ua), math.Float32frombits(ub), math.Float32frombits(uc)
		want := fma32Exact(a, b, c)
		for _, got := range []float32{fma32Emulated(a, b, c), fma32(a, b, c)} {
			if math.Float32bits(got) != math.Float32bits(want) && !(got != got && want != want) {
				t.Fatalf("fma(%g, %g, %g) = %g (%#08x), want %g (%#08x)", a, b, c, got, math.Float32bits(got), want, math.Float32bits(want))
			}
		}
	})
}
