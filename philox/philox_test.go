package philox

import "testing"

// Known-answer vectors from the Random123 distribution (kat_vectors,
// philox4x32 with 10 rounds).
func TestKnownAnswers(t *testing.T) {
	cases := []struct {
		ctr  [4]uint32
		key  [2]uint32
		want [4]uint32
	}{
		{[4]uint32{0, 0, 0, 0}, [2]uint32{0, 0}, [4]uint32{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
		{[4]uint32{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, [2]uint32{0xffffffff, 0xffffffff}, [4]uint32{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
		{[4]uint32{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, [2]uint32{0xa4093822, 0x299f31d0}, [4]uint32{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
	}
	for _, c := range cases {
		if got := Block(c.key, c.ctr); got != c.want {
			t.Errorf("Block(%#x, %#x) = %#x, want %#x", c.key, c.ctr, got, c.want)
		}
	}
}

func TestStreamElementsMatchBlocks(t *testing.T) {
	s := NewStream(0x1234_5678_9abc_def0, 7, 3, 11)
	for j := uint32(0); j < 5; j++ {
		b := s.Block4(j)
		for lane := uint32(0); lane < 4; lane++ {
			if got := s.Uint32(4*j + lane); got != b[lane] {
				t.Fatalf("element %d = %#x, want %#x", 4*j+lane, got, b[lane])
			}
		}
	}
}

func TestUniformRange(t *testing.T) {
	if ToUniform32(0xffffffff) >= 1 || ToUniform(0xffffffff) >= 1 {
		t.Fatal("uniform reached 1")
	}
	s := NewStream(1, 0, 0, 0)
	var sum float64
	const n = 20000
	for i := uint32(0); i < n; i++ {
		sum += s.Uniform(i)
	}
	if mean := sum / n; mean < 0.48 || mean > 0.52 {
		t.Fatalf("mean of %d uniforms = %v, want about 0.5", n, mean)
	}
}
