package dataset

import "github.com/dpcnn/dpcnn/philox"

// Domain tags: the third word of the philox streams this package draws from.
//
// Dropout draws from philox.NewStream(seed, step, layer, sample) with a
// sample index below 2^31 (sample indices are int32), so a third word with its
// top bit set can never name a dropout stream; the two tags below have it set
// and differ from each other, so augmentation, permutation and dropout never
// share random numbers even when an epoch number equals a step number.
const (
	// AugmentTag keys augmentation: NewStream(seed, epoch, sample, AugmentTag).
	AugmentTag uint32 = 0xA06E_0001
	// PermutationTag keys the epoch order: NewStream(seed, epoch, 0, PermutationTag).
	PermutationTag uint32 = 0xA06E_0002
)

// AugmentStream is the stream from which the augmentation of one sample in
// one epoch is drawn. The epoch is taken modulo 2^32.
func AugmentStream(seed uint64, epoch int64, sample int64) philox.Stream {
	return philox.NewStream(seed, uint32(epoch), uint32(sample), AugmentTag)
}

// PermutationStream is the stream from which the order of one epoch is drawn.
// The epoch is taken modulo 2^32.
func PermutationStream(seed uint64, epoch int64) philox.Stream {
	return philox.NewStream(seed, uint32(epoch), 0, PermutationTag)
}

// cursor reads a stream's elements in order, from a starting element, one
// Philox block at a time.
type cursor struct {
	stream philox.Stream
	next   uint32 // element to return next
	block  [4]uint32
	loaded uint32 // block index held in block, valid when has
	has    bool
}

func newCursor(s philox.Stream, start uint32) cursor {
	return cursor{stream: s, next: start}
}

// uint32 returns the next element.
func (c *cursor) uint32() uint32 {
	b := c.next / 4
	if !c.has || c.loaded != b {
		c.block, c.loaded, c.has = c.stream.Block4(b), b, true
	}
	v := c.block[c.next%4]
	c.next++
	return v
}

// below returns a uniform integer in [0, n), n > 0, exactly (Lemire's
// multiply-and-reject method: the rare draws that would bias the result are
// rejected and the next element is taken).
func (c *cursor) below(n uint32) uint32 {
	m := uint64(c.uint32()) * uint64(n)
	if uint32(m) < n {
		threshold := -n % n // 2^32 mod n
		for uint32(m) < threshold {
			m = uint64(c.uint32()) * uint64(n)
		}
	}
	return uint32(m >> 32)
}
