package dpcnnv1

import (
	"encoding/binary"
	"math"
	"math/bits"
	"slices"
)

// The byte kernels of DeltaCodec. Each works on a whole vector; on amd64
// with AVX-512 (VBMI2) the dispatchers (paramsdelta_amd64.go) run the
// assembly on the leading multiple of 64 bytes and these on the rest,
// elsewhere these alone. TestParamsDeltaKernelsAgree holds the two to the
// same bytes.
//
// The loops work on eight bytes at a time and without branches on the
// data: the planes' bytes are close to random, and a branch per byte
// mispredicted its way to ten times the time.

const (
	sevens = 0x7f7f7f7f7f7f7f7f
	highs  = 0x8080808080808080
)

// splitPlanesGo writes the bytes of base[i] ^ next[i] into planes[k][i],
// the most significant in plane 0, for i < len(next).
func splitPlanesGo(planes *[4][]byte, base, next []float32) {
	n := len(next)
	p0, p1, p2, p3 := planes[0][:n], planes[1][:n], planes[2][:n], planes[3][:n]
	for i := range n {
		x := math.Float32bits(base[i]) ^ math.Float32bits(next[i])
		p0[i], p1[i], p2[i], p3[i] = byte(x>>24), byte(x>>16), byte(x>>8), byte(x)
	}
}

// mergePlanesGo XORs into params[i] the word whose bytes are planes[k][i].
func mergePlanesGo(params []float32, planes *[4][]byte) {
	n := len(params)
	p0, p1, p2, p3 := planes[0][:n], planes[1][:n], planes[2][:n], planes[3][:n]
	for i := range params {
		x := uint32(p0[i])<<24 | uint32(p1[i])<<16 | uint32(p2[i])<<8 | uint32(p3[i])
		params[i] = math.Float32frombits(math.Float32bits(params[i]) ^ x)
	}
}

// nonzeroHighs sets the high bit of each byte of x that is not zero, and
// clears the rest.
func nonzeroHighs(x uint64) uint64 {
	return ((x & sevens) + sevens | x) & highs
}

func countNonzeroGo(p []byte) int {
	n, i := 0, 0
	for ; i+8 <= len(p); i += 8 {
		n += bits.OnesCount64(nonzeroHighs(binary.LittleEndian.Uint64(p[i:])))
	}
	for ; i < len(p); i++ {
		n += int((uint(p[i]) + 0xff) >> 8)
	}
	return n
}

// markNonzeroGo sets bit i % 8 of bitmap[i / 8] where p[i] is not zero,
// and clears the others.
func markNonzeroGo(bitmap, p []byte) {
	i := 0
	for ; i+8 <= len(p); i += 8 {
		// The high bits, shifted to the bytes' low bits, gathered into the
		// top byte by the multiply (byte k's bit lands on bit 56 + k).
		h := nonzeroHighs(binary.LittleEndian.Uint64(p[i:])) >> 7
		bitmap[i>>3] = byte(h * 0x0102040810204080 >> 56)
	}
	if i < len(p) {
		var b byte
		for j := i; j < len(p); j++ {
			b |= byte((uint(p[j])+0xff)>>8) << (j - i)
		}
		bitmap[i>>3] = b
	}
}

// appendNonzeroGo appends p's nonzero bytes, of which there are nonzero.
func appendNonzeroGo(dst, p []byte, nonzero int) []byte {
	at := len(dst)
	dst = slices.Grow(dst, nonzero+1)[:at+nonzero+1] // one spare: every byte is written, zeros overwritten
	for _, b := range p {
		dst[at] = b
		at += int((uint(b) + 0xff) >> 8)
	}
	return dst[:at]
}

// countMarked is the number of bits set in bitmap.
func countMarked(bitmap []byte) int {
	n, i := 0, 0
	for ; i+8 <= len(bitmap); i += 8 {
		n += bits.OnesCount64(binary.LittleEndian.Uint64(bitmap[i:]))
	}
	for ; i < len(bitmap); i++ {
		n += bits.OnesCount8(bitmap[i])
	}
	return n
}

// expandMarkedGo sets dst[i] to the next of values where bit i of bitmap
// is set, and to zero elsewhere; values holds exactly the marked bytes.
func expandMarkedGo(dst, bitmap, values []byte) {
	if len(values) == 0 {
		clear(dst)
		return
	}
	// Every byte takes the next value and keeps it only where marked; the
	// read index stops at the last value, so it stays in range.
	at, last := 0, len(values)-1
	for i := range dst {
		bit := int(bitmap[i>>3]>>(i&7)) & 1
		dst[i] = values[min(at, last)] & -byte(bit)
		at += bit
	}
}
