package dpcnnv1

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// adamLike returns base and a next version as one optimizer step makes it:
// every parameter moved by about a learning rate, some not at all.
func adamLike(r *rand.Rand, n int) (base, next []float32) {
	base, next = make([]float32, n), make([]float32, n)
	for i := range base {
		base[i] = float32(r.NormFloat64() * 0.05)
		next[i] = base[i]
		if r.IntN(5) > 0 {
			next[i] -= float32(0.001 * (r.Float64()*2 - 1))
		}
	}
	return base, next
}

func bitsEqual(a, b []float32) bool {
	return slices.EqualFunc(a, b, func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) })
}

// Apply(Encode(base, next)) gives next's bits from base's, for vectors of
// awkward lengths (around the bitmaps' bytes) and contents: unchanged,
// optimizer steps, random bits (NaN payloads, infinities, −0 among them).
func TestParamsDeltaRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var enc, dec DeltaCodec // reused across cases, as a coordinator and a worker do
	for _, n := range []int{0, 1, 7, 8, 9, 63, 64, 65, 513, 4097, 123552} {
		randomBits := func() []float32 {
			v := make([]float32, n)
			for i := range v {
				v[i] = math.Float32frombits(r.Uint32())
			}
			return v
		}
		specials := make([]float32, n)
		for i := range specials {
			specials[i] = []float32{float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.NaN()), 0, 1}[i%5]
		}
		base, next := adamLike(r, n)
		for name, pair := range map[string][2][]float32{
			"unchanged": {base, slices.Clone(base)},
			"adam step": {base, next},
			"random":    {randomBits(), randomBits()},
			"specials":  {randomBits(), specials},
			"one bit":   {base, flipOne(base, r)},
		} {
			d, err := enc.Encode(41, pair[0], pair[1])
			if err != nil {
				t.Fatalf("n=%d %s: %v", n, name, err)
			}
			if d.BaseVersion != 41 || int(d.Count) != n {
				t.Fatalf("n=%d %s: base version %d, count %d", n, name, d.BaseVersion, d.Count)
			}
			got := slices.Clone(pair[0])
			if err := dec.Apply(got, d); err != nil {
				t.Fatalf("n=%d %s: apply: %v", n, name, err)
			}
			if !bitsEqual(got, pair[1]) {
				t.Fatalf("n=%d %s: applying the delta did not give the next version's bits", n, name)
			}
			if max := 4 + 4*n; len(d.Planes) > max {
				t.Errorf("n=%d %s: %d bytes, more than the %d of four raw planes", n, name, len(d.Planes), max)
			}
		}
	}
}

func flipOne(v []float32, r *rand.Rand) []float32 {
	out := slices.Clone(v)
	if len(out) > 0 {
		i := r.IntN(len(out))
		out[i] = math.Float32frombits(math.Float32bits(out[i]) ^ 1<<r.IntN(32))
	}
	return out
}

// The point of a delta is its size: for a made-up optimizer step of the
// deep net's size (every parameter of 0.05 moved by up to 0.001, one in
// five unmoved) it is at most 72% of the whole vector (the deep net's real
// steps 300 → 301 measured 62%), and an unchanged vector costs four bytes.
func TestParamsDeltaIsSmall(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	base, next := adamLike(r, 123552)
	var c DeltaCodec
	d, err := c.Encode(0, base, next)
	if err != nil {
		t.Fatal(err)
	}
	if whole := 4 * len(next); len(d.Planes)*100 > whole*72 {
		t.Errorf("a step's delta takes %d bytes of the whole vector's %d (%.0f%%), want at most 72%%", len(d.Planes), whole, 100*float64(len(d.Planes))/float64(whole))
	}
	same, _ := c.Encode(0, base, base)
	if len(same.Planes) != 4 {
		t.Errorf("an unchanged vector's delta takes %d bytes, want 4 (four zero planes)", len(same.Planes))
	}
}

// A delta that does not decode is an error that names what is wrong, and
// leaves the parameters as they were: cut at every length, one byte too
// many, an unknown tag, another count, a bitmap marking bytes past the end.
func TestParamsDeltaRefusesMalformed(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	base, next := adamLike(r, 1001)
	var c DeltaCodec
	d, err := c.Encode(7, base, next)
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, bad *ParamsDelta, want string) {
		t.Helper()
		got := slices.Clone(base)
		err := c.Apply(got, bad)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", name, err, want)
		}
		if !bitsEqual(got, base) {
			t.Errorf("%s: the parameters changed", name)
		}
	}
	for cut := range len(d.Planes) {
		check("cut", &ParamsDelta{Count: d.Count, Planes: d.Planes[:cut]}, "params delta: plane")
	}
	check("trailing", &ParamsDelta{Count: d.Count, Planes: append(slices.Clone(d.Planes), 0)}, "after the fourth plane")
	check("tag", &ParamsDelta{Count: d.Count, Planes: append([]byte{9}, d.Planes[1:]...)}, "block tag 0x9")
	check("count", &ParamsDelta{Count: d.Count + 1, Planes: d.Planes}, "1002 parameters, the replica holds 1001")
	check("nil", nil, "none")
	// Nine bytes, sparse, its bitmap raw (two bytes) with bit 9 set: past
	// the end.
	past := []byte{blockSparse, blockRaw, 0x01, 0x02, 0x05}
	if err := c.Apply(make([]float32, 9), &ParamsDelta{Count: 9, Planes: past}); err == nil || !strings.Contains(err.Error(), "past its end") {
		t.Errorf("a bitmap marking bytes past the end: %v", err)
	}
}

// FuzzParamsDelta applies arbitrary bytes as a delta: never a panic, and
// the parameters change only when it decodes.
func FuzzParamsDelta(f *testing.F) {
	r := rand.New(rand.NewPCG(7, 8))
	base, next := adamLike(r, 37)
	var c DeltaCodec
	d, _ := c.Encode(0, base, next)
	f.Add(d.Planes)
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{2, 2, 1, 0xff, 1})
	f.Fuzz(func(t *testing.T, planes []byte) {
		var c DeltaCodec
		got := slices.Clone(base)
		if err := c.Apply(got, &ParamsDelta{Count: 37, Planes: planes}); err != nil && !bitsEqual(got, base) {
			t.Fatalf("an error (%v), yet the parameters changed", err)
		}
	})
}

// BenchmarkParamsDelta times one encoding and one application of a made-up
// optimizer step of the deep net's 123,552 parameters.
func BenchmarkParamsDelta(b *testing.B) {
	r := rand.New(rand.NewPCG(9, 10))
	base, next := adamLike(r, 123552)
	var c DeltaCodec
	d, _ := c.Encode(0, base, next)
	b.Run("Encode", func(b *testing.B) {
		b.SetBytes(int64(4 * len(next)))
		for b.Loop() {
			c.Encode(0, base, next)
		}
	})
	b.Run("Apply", func(b *testing.B) {
		b.SetBytes(int64(4 * len(next)))
		p := slices.Clone(base)
		for b.Loop() {
			copy(p, base)
			c.Apply(p, d)
		}
	})
}
