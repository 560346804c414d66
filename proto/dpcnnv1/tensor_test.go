package dpcnnv1

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

// specialBits are float32 bit patterns a byte-order bug or a float
// conversion would damage: signed zeros, infinities, NaNs with payloads
// (quiet and signalling), denormals and asymmetric byte patterns.
var specialBits = []uint32{
	0x00000000, 0x80000000, 0x3f800000, 0xbf800000, 0x7f800000, 0xff800000,
	0x7fc00000, 0x7fa00001, 0xffc12345, 0x00000001, 0x807fffff, 0x01020304, 0xfedcba98,
}

// testFloats returns n float32s cycling through specialBits and ordinary
// values.
func testFloats(n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		if i%3 == 0 {
			s[i] = math.Float32frombits(specialBits[(i/3)%len(specialBits)])
		} else {
			s[i] = float32(i)*0.37 - 11
		}
	}
	return s
}

func sameBits(a, b []float32) int {
	if len(a) != len(b) {
		return 0
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i
		}
	}
	return -1
}

func TestAppendFloat32sIsLittleEndian(t *testing.T) {
	got := AppendFloat32s(nil, []float32{1, -2, math.Float32frombits(0x01020304)})
	want := []byte{0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0, 0x04, 0x03, 0x02, 0x01}
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendFloat32s = % x, want % x", got, want)
	}
}

func TestFloat32sRoundTripKeepsEveryBit(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 7, 64, 1001} {
		src := testFloats(n)
		enc := AppendFloat32s(nil, src)
		ref := make([]byte, 4*n)
		putFloat32sPortable(ref, src)
		if !bytes.Equal(enc, ref) {
			t.Fatalf("n=%d: AppendFloat32s differs from the portable reference", n)
		}
		dst := make([]float32, n)
		if err := DecodeFloat32s(dst, enc); err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if i := sameBits(dst, src); i >= 0 {
			t.Fatalf("n=%d: element %d decoded as %#08x, want %#08x", n, i, math.Float32bits(dst[i]), math.Float32bits(src[i]))
		}
		refDst := make([]float32, n)
		decodeFloat32sPortable(refDst, enc)
		if i := sameBits(refDst, src); i >= 0 {
			t.Fatalf("n=%d: portable decode differs at element %d", n, i)
		}
	}
}

func TestAppendFloat32sKeepsPrefix(t *testing.T) {
	buf := make([]byte, 3, 64)
	copy(buf, "abc")
	got := AppendFloat32s(buf, []float32{1})
	if string(got[:3]) != "abc" || len(got) != 7 || !bytes.Equal(got[3:], []byte{0, 0, 0x80, 0x3f}) {
		t.Fatalf("AppendFloat32s(%q, [1]) = % x", "abc", got)
	}
}

func TestDecodeFloat32sRejects(t *testing.T) {
	cases := []struct {
		bytes, floats int
		want          string
	}{
		{1, 0, "1 bytes of float32 data: not a multiple of 4"},
		{3, 1, "not a multiple of 4"},
		{5, 1, "not a multiple of 4"},
		{4002, 1000, "not a multiple of 4"},
		{8, 1, "2 float32s of data, want 1"},
		{4, 2, "1 float32s of data, want 2"},
		{0, 1, "0 float32s of data, want 1"},
	}
	for _, c := range cases {
		dst := []float32{}
		for range c.floats {
			dst = append(dst, 42)
		}
		err := DecodeFloat32s(dst, make([]byte, c.bytes))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("DecodeFloat32s(%d floats, %d bytes) = %v, want an error containing %q", c.floats, c.bytes, err, c.want)
		}
		for i, v := range dst {
			if v != 42 {
				t.Errorf("DecodeFloat32s(%d floats, %d bytes) changed dst[%d] on error", c.floats, c.bytes, i)
			}
		}
	}
}

func TestTensorElements(t *testing.T) {
	cases := []struct {
		shape []int64
		bytes int
		want  string // empty: valid
		n     int
	}{
		{[]int64{2, 3}, 24, "", 6},
		{nil, 4, "", 1}, // a scalar
		{[]int64{0, 5}, 0, "", 0},
		{[]int64{2, 3}, 20, "holds 6 elements, data 5", 0},
		{[]int64{2, 3}, 25, "not a multiple of 4", 0},
		{[]int64{2, -3}, 0, "negative dimension", 0},
		{[]int64{1 << 20, 1 << 20}, 0, "more than 2147483647 elements", 0},
		{[]int64{math.MaxInt64, 2}, 0, "more than", 0},
		{[]int64{0, math.MaxInt64, math.MaxInt64}, 0, "", 0},
	}
	for _, c := range cases {
		tn := &Tensor{Name: "w", Shape: c.shape, Data: make([]byte, c.bytes)}
		n, err := tn.Elements()
		switch {
		case c.want == "" && (err != nil || n != c.n):
			t.Errorf("shape %v, %d bytes: Elements() = %d, %v, want %d", c.shape, c.bytes, n, err, c.n)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("shape %v, %d bytes: Elements() = %d, %v, want an error containing %q", c.shape, c.bytes, n, err, c.want)
		case err != nil && !strings.Contains(err.Error(), `tensor "w"`):
			t.Errorf("error %q does not name the tensor", err)
		}
	}
}

func TestTensorSetAndDecodeInto(t *testing.T) {
	src := testFloats(12)
	tn := NewTensor("conv1.W", []int{2, 2, 1, 3}, src)
	if tn.Name != "conv1.W" || len(tn.Shape) != 4 || tn.Shape[3] != 3 || len(tn.Data) != 48 {
		t.Fatalf("NewTensor = %v", tn)
	}
	dst := make([]float32, 12)
	if err := tn.DecodeInto(dst); err != nil {
		t.Fatal(err)
	}
	if i := sameBits(dst, src); i >= 0 {
		t.Fatalf("element %d differs", i)
	}
	if err := tn.DecodeInto(make([]float32, 11)); err == nil || !strings.Contains(err.Error(), "12 elements, want 11") {
		t.Fatalf("DecodeInto into 11 = %v", err)
	}
	tn.Shape = tn.Shape[:3]
	if err := tn.DecodeInto(dst); err == nil {
		t.Fatal("DecodeInto accepted a shape that does not match the data")
	}
}

func TestSetFloat32sReusesBuffers(t *testing.T) {
	params := testFloats(4096)
	tn := NewTensor("params", []int{len(params)}, params)
	shape := []int{len(params)}
	allocs := testing.AllocsPerRun(10, func() { tn.SetFloat32s("params", shape, params) })
	if allocs != 0 {
		t.Fatalf("SetFloat32s into a grown tensor allocates %v times, want 0", allocs)
	}
}

func TestSetFloat32sPanicsOnShapeMismatch(t *testing.T) {
	for _, shape := range [][]int{{2, 2}, {-1, -3}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("SetFloat32s(shape %v, 3 elements) did not panic", shape)
				}
			}()
			new(Tensor).SetFloat32s("x", shape, make([]float32, 3))
		}()
	}
}

func FuzzDecodeFloat32s(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{1, 2, 3})
	f.Add([]byte{0, 0, 0x80, 0x3f, 1, 0, 0xa0, 0x7f})
	f.Add(bytes.Repeat([]byte{0xff}, 17))
	f.Fuzz(func(t *testing.T, data []byte) {
		dst := make([]float32, len(data)/4)
		err := DecodeFloat32s(dst, data)
		if (err != nil) != (len(data)%4 != 0) {
			t.Fatalf("DecodeFloat32s(%d bytes) = %v", len(data), err)
		}
		if err != nil {
			return
		}
		if back := AppendFloat32s(nil, dst); !bytes.Equal(back, data) {
			t.Fatalf("decode then encode changed the bytes: % x -> % x", data, back)
		}
	})
}

// Encoding 1M parameters (a 4 MB message) is a memmove on little-endian
// machines; the portable loop is the big-endian fallback.
func BenchmarkAppendFloat32s(b *testing.B) {
	src := testFloats(1 << 20)
	buf := make([]byte, 0, 4*len(src))
	b.SetBytes(int64(4 * len(src)))
	for b.Loop() {
		buf = AppendFloat32s(buf[:0], src)
	}
}

func BenchmarkAppendFloat32sPortable(b *testing.B) {
	src := testFloats(1 << 20)
	buf := make([]byte, 4*len(src))
	b.SetBytes(int64(4 * len(src)))
	for b.Loop() {
		putFloat32sPortable(buf, src)
	}
}

func BenchmarkDecodeFloat32s(b *testing.B) {
	src := AppendFloat32s(nil, testFloats(1<<20))
	dst := make([]float32, 1<<20)
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		if err := DecodeFloat32s(dst, src); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeFloat32sPortable(b *testing.B) {
	src := AppendFloat32s(nil, testFloats(1<<20))
	dst := make([]float32, 1<<20)
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		decodeFloat32sPortable(dst, src)
	}
}
