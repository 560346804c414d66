//go:build amd64 && !noasm

package dpcnnv1

import (
	"slices"
	"unsafe"

	"golang.org/x/sys/cpu"
)

// deltaAsm says whether the byte kernels run the assembly
// (paramsdelta_amd64.s): AVX-512 with VBMI's byte permutes and VBMI2's
// byte compress and expand, and BMI2's BZHI. It is a variable so that the
// tests can compare both paths on one machine.
var deltaAsm = cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VBMI &&
	cpu.X86.HasAVX512VBMI2 && cpu.X86.HasBMI2 && cpu.X86.HasPOPCNT

// The assembly works on whole blocks: 16 parameters, or 64 plane bytes.
//
//go:noescape
func splitPlanesAVX512(p0, p1, p2, p3 *byte, base, next *float32, n int)

//go:noescape
func mergePlanesAVX512(params *float32, p0, p1, p2, p3 *byte, n int)

//go:noescape
func countNonzeroAVX512(p *byte, n int) int

//go:noescape
func markNonzeroAVX512(bitmap, p *byte, n int)

// compressNonzeroAVX512 writes p's nonzero bytes to dst and returns their
// number; it stores 64 bytes at a time, so dst must have 64 bytes of room
// past them.
//
//go:noescape
func compressNonzeroAVX512(dst, p *byte, n int) int

// expandMarkedAVX512 expands values into dst by bitmap and returns the
// values it took; it reads only those.
//
//go:noescape
func expandMarkedAVX512(dst, bitmap, values *byte, n int) int

func splitPlanes(planes *[4][]byte, base, next []float32) {
	n := len(next)
	head := 0
	if deltaAsm && n >= 16 {
		head = n &^ 15
		_, _, _, _, _ = planes[0][head-1], planes[1][head-1], planes[2][head-1], planes[3][head-1], base[head-1]
		splitPlanesAVX512(&planes[0][0], &planes[1][0], &planes[2][0], &planes[3][0], &base[0], &next[0], head)
	}
	if head < n {
		tail := [4][]byte{planes[0][head:n], planes[1][head:n], planes[2][head:n], planes[3][head:n]}
		splitPlanesGo(&tail, base[head:n], next[head:n])
	}
}

func mergePlanes(params []float32, planes *[4][]byte) {
	n := len(params)
	head := 0
	if deltaAsm && n >= 16 {
		head = n &^ 15
		_, _, _, _ = planes[0][head-1], planes[1][head-1], planes[2][head-1], planes[3][head-1]
		mergePlanesAVX512(&params[0], &planes[0][0], &planes[1][0], &planes[2][0], &planes[3][0], head)
	}
	if head < n {
		tail := [4][]byte{planes[0][head:n], planes[1][head:n], planes[2][head:n], planes[3][head:n]}
		mergePlanesGo(params[head:n], &tail)
	}
}

func countNonzero(p []byte) int {
	if !deltaAsm || len(p) < 64 {
		return countNonzeroGo(p)
	}
	head := len(p) &^ 63
	return countNonzeroAVX512(&p[0], head) + countNonzeroGo(p[head:])
}

func markNonzero(bitmap, p []byte) {
	if !deltaAsm || len(p) < 64 {
		markNonzeroGo(bitmap, p)
		return
	}
	head := len(p) &^ 63
	_ = bitmap[head>>3-1]
	markNonzeroAVX512(&bitmap[0], &p[0], head)
	markNonzeroGo(bitmap[head>>3:], p[head:])
}

func appendNonzero(dst, p []byte, nonzero int) []byte {
	if !deltaAsm || len(p) < 64 {
		return appendNonzeroGo(dst, p, nonzero)
	}
	head := len(p) &^ 63
	at := len(dst)
	room := slices.Grow(dst, nonzero+64)[:at+nonzero+64]
	w := compressNonzeroAVX512(&room[at], &p[0], head)
	return appendNonzeroGo(room[:at+w], p[head:], nonzero-w)
}

func expandMarked(dst, bitmap, values []byte) {
	if !deltaAsm || len(dst) < 64 {
		expandMarkedGo(dst, bitmap, values)
		return
	}
	head := len(dst) &^ 63
	_ = bitmap[head>>3-1]
	// The caller's values are exactly the bitmap's marked bytes, so the
	// head's are among them.
	took := expandMarkedAVX512(&dst[0], &bitmap[0], unsafe.SliceData(values), head)
	expandMarkedGo(dst[head:], bitmap[head>>3:], values[took:])
}
