//go:build amd64 && !noasm

package dpcnnv1

import (
	"bytes"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// The assembly and the Go kernels give the same bytes: each kernel on
// random planes of awkward lengths (around the 16-parameter and 64-byte
// blocks) and of every density, from all zero to all set, and whole
// deltas encoded and applied by either path, across the paths.
func TestParamsDeltaKernelsAgree(t *testing.T) {
	if !deltaAsm {
		t.Skip("this CPU lacks AVX-512 VBMI2: the Go kernels are the only path (.ci/run's machines have it)")
	}
	defer func() { deltaAsm = true }()
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1, 15, 16, 17, 63, 64, 65, 127, 128, 129, 1000, 4097, 123552} {
		for _, density := range []float64{0, 0.01, 0.3, 0.7, 0.99, 1} {
			p := make([]byte, n)
			for i := range p {
				if r.Float64() < density {
					p[i] = byte(1 + r.IntN(255))
				}
			}
			nonzero := countNonzeroGo(p)
			if got := countNonzero(p); got != nonzero {
				t.Fatalf("n=%d density %g: countNonzero %d, want %d", n, density, got, nonzero)
			}
			bitmap, want := make([]byte, (n+7)/8), make([]byte, (n+7)/8)
			markNonzeroGo(want, p)
			markNonzero(bitmap, p)
			if !bytes.Equal(bitmap, want) {
				t.Fatalf("n=%d density %g: markNonzero differs", n, density)
			}
			prefix := []byte{0xaa, 0xbb}
			if got, want := appendNonzero(slices.Clone(prefix), p, nonzero), appendNonzeroGo(slices.Clone(prefix), p, nonzero); !bytes.Equal(got, want) {
				t.Fatalf("n=%d density %g: appendNonzero differs:\n%x\n%x", n, density, got, want)
			}
			values := appendNonzeroGo(nil, p, nonzero)
			dst := bytes.Repeat([]byte{0x5a}, n) // stale bytes, to be overwritten
			expandMarked(dst, want, values)
			if !bytes.Equal(dst, p) {
				t.Fatalf("n=%d density %g: expandMarked differs from the bytes marked", n, density)
			}
		}
		base, next := make([]float32, n), make([]float32, n)
		for i := range base {
			base[i], next[i] = math.Float32frombits(r.Uint32()), math.Float32frombits(r.Uint32())
		}
		var asmPlanes, goPlanes [4][]byte
		for k := range 4 {
			asmPlanes[k], goPlanes[k] = make([]byte, n), make([]byte, n)
		}
		splitPlanes(&asmPlanes, base, next)
		splitPlanesGo(&goPlanes, base, next)
		for k := range 4 {
			if !bytes.Equal(asmPlanes[k], goPlanes[k]) {
				t.Fatalf("n=%d: splitPlanes plane %d differs", n, k)
			}
		}
		a, g := slices.Clone(base), slices.Clone(base)
		mergePlanes(a, &asmPlanes)
		mergePlanesGo(g, &goPlanes)
		if !bitsEqual(a, g) || !bitsEqual(a, next) {
			t.Fatalf("n=%d: mergePlanes does not give next's bits", n)
		}
		// Whole deltas, across the paths: the same message, and each
		// applies the other's.
		sparse := slices.Clone(base)
		for i := 0; i < n; i += 7 {
			sparse[i] = next[i]
		}
		for _, nx := range [][]float32{next, sparse, slices.Clone(base)} {
			var c DeltaCodec
			deltaAsm = true
			da, err := c.Encode(1, base, nx)
			if err != nil {
				t.Fatal(err)
			}
			deltaAsm = false
			dg, _ := c.Encode(1, base, nx)
			if !bytes.Equal(da.Planes, dg.Planes) {
				t.Fatalf("n=%d: the encodings differ (%d and %d bytes)", n, len(da.Planes), len(dg.Planes))
			}
			for _, asm := range []bool{true, false} {
				deltaAsm = asm
				p := slices.Clone(base)
				if err := c.Apply(p, da); err != nil || !bitsEqual(p, nx) {
					t.Fatalf("n=%d, assembly %v: Apply: %v", n, asm, err)
				}
			}
			deltaAsm = true
		}
	}
}
