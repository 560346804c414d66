package dpcnnv1

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"unsafe"
)

// AppendFloat32s appends src to dst as little-endian IEEE-754 float32 bytes,
// 4 per element, every bit kept (NaN payloads included), and returns the
// extended slice. Pass a reused buffer's dst[:0] to encode without
// allocating.
func AppendFloat32s(dst []byte, src []float32) []byte {
	n := len(dst)
	dst = slices.Grow(dst, 4*len(src))[:n+4*len(src)]
	if littleEndian {
		copy(dst[n:], float32Bytes(src))
	} else {
		putFloat32sPortable(dst[n:], src)
	}
	return dst
}

// DecodeFloat32s decodes little-endian float32 bytes into dst, which must
// have exactly len(src)/4 elements. It fails, leaving dst unchanged, when
// src is not a whole number of float32s or holds a different count.
func DecodeFloat32s(dst []float32, src []byte) error {
	if len(src)%4 != 0 {
		return fmt.Errorf("dpcnnv1: %d bytes of float32 data: not a multiple of 4", len(src))
	}
	if len(src)/4 != len(dst) {
		return fmt.Errorf("dpcnnv1: %d float32s of data, want %d", len(src)/4, len(dst))
	}
	if littleEndian {
		copy(float32Bytes(dst), src)
	} else {
		decodeFloat32sPortable(dst, src)
	}
	return nil
}

// float32Bytes views s's memory as bytes. Only on a little-endian machine
// is that view the wire format; there it turns encoding and decoding into
// one memmove.
func float32Bytes(s []float32) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), 4*len(s))
}

// putFloat32sPortable is the fast paths' reference: for every i,
// dst[4i:4i+4] = the little-endian bytes of math.Float32bits(src[i]).
// len(dst) must be 4*len(src).
func putFloat32sPortable(dst []byte, src []float32) {
	_ = dst[:4*len(src)]
	for i, v := range src {
		binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
	}
}

// decodeFloat32sPortable is the reference of DecodeFloat32s' fast path:
// dst[i] = math.Float32frombits(the little-endian uint32 at src[4i:]).
// len(src) must be 4*len(dst).
func decodeFloat32sPortable(dst []float32, src []byte) {
	_ = src[:4*len(dst)]
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
	}
}

// NewTensor returns a Tensor holding data with the given name and shape.
// The shape's product must be len(data); anything else is a programmer
// error and panics.
func NewTensor(name string, shape []int, data []float32) *Tensor {
	t := new(Tensor)
	t.SetFloat32s(name, shape, data)
	return t
}

// SetFloat32s makes t hold data with the given name and shape, reusing t's
// buffers: a sender that re-encodes the parameters every step into the same
// message allocates nothing once the buffers have grown (gRPC has encoded a
// message by the time Send returns, so it may be refilled then). The
// shape's product must be len(data); anything else is a programmer error
// and panics.
func (t *Tensor) SetFloat32s(name string, shape []int, data []float32) {
	n := 1
	for _, d := range shape {
		if d < 0 {
			panic(fmt.Sprintf("dpcnnv1: tensor %q: negative dimension in shape %v", name, shape))
		}
		n *= d
	}
	if n != len(data) {
		panic(fmt.Sprintf("dpcnnv1: tensor %q: shape %v holds %d elements, data %d", name, shape, n, len(data)))
	}
	t.Name = name
	t.Shape = t.Shape[:0]
	for _, d := range shape {
		t.Shape = append(t.Shape, int64(d))
	}
	t.Data = AppendFloat32s(t.Data[:0], data)
}

// Elements checks that t's shape is sound (no negative dimension, at most
// math.MaxInt32 elements) and matches its data, and returns the element
// count. Call it, or DecodeInto, on every tensor received.
func (t *Tensor) Elements() (int, error) {
	n := int64(1)
	for _, d := range t.Shape {
		if d < 0 {
			return 0, fmt.Errorf("dpcnnv1: tensor %q: shape %v has a negative dimension", t.Name, t.Shape)
		}
		if d != 0 && n > math.MaxInt32/d {
			return 0, fmt.Errorf("dpcnnv1: tensor %q: shape %v holds more than %d elements", t.Name, t.Shape, math.MaxInt32)
		}
		n *= d
	}
	if len(t.Data)%4 != 0 {
		return 0, fmt.Errorf("dpcnnv1: tensor %q: %d bytes of data: not a multiple of 4", t.Name, len(t.Data))
	}
	if int64(len(t.Data)/4) != n {
		return 0, fmt.Errorf("dpcnnv1: tensor %q: shape %v holds %d elements, data %d", t.Name, t.Shape, n, len(t.Data)/4)
	}
	return int(n), nil
}

// DecodeInto checks t (see Elements) and decodes its elements into dst,
// which must have exactly as many. It fails, leaving dst unchanged, when t
// is malformed or its size differs from dst's.
func (t *Tensor) DecodeInto(dst []float32) error {
	n, err := t.Elements()
	if err != nil {
		return err
	}
	if n != len(dst) {
		return fmt.Errorf("dpcnnv1: tensor %q: %d elements, want %d", t.Name, n, len(dst))
	}
	return DecodeFloat32s(dst, t.Data)
}
