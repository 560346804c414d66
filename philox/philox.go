package philox

import "math/bits"

const (
	m0 = 0xD2511F53
	m1 = 0xCD9E8D57
	w0 = 0x9E3779B9
	w1 = 0xBB67AE85
)

// Block returns the four 32-bit outputs of Philox4x32-10 for one counter.
func Block(key [2]uint32, ctr [4]uint32) [4]uint32 {
	k0, k1 := key[0], key[1]
	c0, c1, c2, c3 := ctr[0], ctr[1], ctr[2], ctr[3]
	for r := 0; r < 10; r++ {
		hi0, lo0 := bits.Mul32(m0, c0)
		hi1, lo1 := bits.Mul32(m1, c2)
		c0, c1, c2, c3 = hi1^c1^k0, lo1, hi0^c3^k1, lo0
		k0 += w0
		k1 += w1
	}
	return [4]uint32{c0, c1, c2, c3}
}

// Stream identifies one independent sequence of random numbers: the key comes
// from the job's seed, the three words from whatever the draw belongs to (for
// example step, layer and sample index). Element i of the stream is
// Uniform(i).
type Stream struct {
	key   [2]uint32
	words [3]uint32
}

// NewStream returns the stream keyed by seed and the three words a, b, c.
func NewStream(seed uint64, a, b, c uint32) Stream {
	return Stream{key: [2]uint32{uint32(seed), uint32(seed >> 32)}, words: [3]uint32{a, b, c}}
}

// Uint32 returns element i of the stream. Elements come four to a Philox
// block: element i is lane i%4 of the block whose first counter word is i/4.
func (s Stream) Uint32(i uint32) uint32 {
	out := Block(s.key, [4]uint32{i / 4, s.words[0], s.words[1], s.words[2]})
	return out[i%4]
}

// Block4 returns elements 4j..4j+3 at once, for callers that consume a
// stream in order.
func (s Stream) Block4(j uint32) [4]uint32 {
	return Block(s.key, [4]uint32{j, s.words[0], s.words[1], s.words[2]})
}

// ToUniform maps a random word to a float64 in [0, 1) with 32 bits of
// resolution.
func ToUniform(u uint32) float64 { return float64(u) * (1.0 / 4294967296.0) }

// ToUniform32 maps a random word to a float32 in [0, 1) with 24 bits of
// resolution, exactly representable, so CPU and GPU agree.
func ToUniform32(u uint32) float32 { return float32(u>>8) * (1.0 / 16777216.0) }

// Uniform returns element i of the stream as a float64 in [0, 1).
func (s Stream) Uniform(i uint32) float64 { return ToUniform(s.Uint32(i)) }
