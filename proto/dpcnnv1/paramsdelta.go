package dpcnnv1

import (
	"errors"
	"fmt"
	"math"
)

// Block tags of ParamsDelta.planes (worker.proto gives the format).
const (
	blockZero   = 0x00
	blockRaw    = 0x01
	blockSparse = 0x02
)

// DeltaCodec encodes and applies ParamsDelta messages, reusing its buffers
// from one vector to the next (a coordinator encodes one delta a step, a
// worker applies one). A DeltaCodec is not safe for concurrent use.
type DeltaCodec struct {
	planes [4][]byte
	levels [][]byte // a bitmap buffer per level of sparse nesting
	tmp    [][]byte // encoder: a candidate encoding per level
}

// Encode returns the ParamsDelta that turns base, the parameters of
// baseVersion, into next. The message's bytes are its own: base and next
// may change after it returns.
func (c *DeltaCodec) Encode(baseVersion uint64, base, next []float32) (*ParamsDelta, error) {
	if len(base) != len(next) {
		return nil, fmt.Errorf("params delta: base of %d parameters, next of %d", len(base), len(next))
	}
	if len(next) > math.MaxUint32 {
		return nil, fmt.Errorf("params delta: %d parameters, more than a delta counts", len(next))
	}
	n := len(next)
	c.grow(n)
	splitPlanes(&c.planes, base, next)
	// At most a tag and the raw bytes per plane: one allocation, the
	// message's own.
	out := make([]byte, 0, 4+4*n)
	for k := range c.planes {
		out = c.encodeBlock(out, c.planes[k][:n], 0)
	}
	return &ParamsDelta{BaseVersion: baseVersion, Count: uint32(n), Planes: out}, nil
}

// encodeBlock appends the shortest block of the three kinds for p.
func (c *DeltaCodec) encodeBlock(dst, p []byte, level int) []byte {
	nonzero := countNonzero(p)
	if nonzero == 0 {
		return append(dst, blockZero)
	}
	// Sparse costs its bitmap's block (at least a byte) and the nonzero
	// bytes; it can only win when they fall short of the raw bytes.
	if nonzero+1 < len(p) {
		bitmap := c.level(level, (len(p)+7)/8)
		markNonzero(bitmap, p)
		for len(c.tmp) <= level {
			c.tmp = append(c.tmp, nil)
		}
		sparse := c.encodeBlock(c.tmp[level][:0], bitmap, level+1)
		c.tmp[level] = sparse
		if len(sparse)+nonzero < len(p) {
			dst = append(dst, blockSparse)
			dst = append(dst, sparse...)
			return appendNonzero(dst, p, nonzero)
		}
	}
	dst = append(dst, blockRaw)
	return append(dst, p...)
}

// Apply turns params, which hold d's base version, into the version d
// encodes, in place. It decodes and checks all of d before it writes, so
// on error params are unchanged. The caller checks that it holds
// d.BaseVersion.
func (c *DeltaCodec) Apply(params []float32, d *ParamsDelta) error {
	if d == nil {
		return errors.New("params delta: none")
	}
	n := len(params)
	if int64(d.GetCount()) != int64(n) {
		return fmt.Errorf("params delta: %d parameters, the replica holds %d", d.GetCount(), n)
	}
	c.grow(n)
	src := d.GetPlanes()
	for k := range c.planes {
		var err error
		if src, err = c.decodeBlock(src, c.planes[k][:n], 0); err != nil {
			return fmt.Errorf("params delta: plane %d: %w", k, err)
		}
	}
	if len(src) != 0 {
		return fmt.Errorf("params delta: %d bytes after the fourth plane", len(src))
	}
	mergePlanes(params, &c.planes)
	return nil
}

// decodeBlock decodes one block of len(dst) bytes from src into dst and
// returns what follows it.
func (c *DeltaCodec) decodeBlock(src, dst []byte, level int) ([]byte, error) {
	if len(src) == 0 {
		return nil, fmt.Errorf("block of %d bytes: the data ends before its tag", len(dst))
	}
	tag, src := src[0], src[1:]
	switch tag {
	case blockZero:
		clear(dst)
		return src, nil
	case blockRaw:
		if len(src) < len(dst) {
			return nil, fmt.Errorf("raw block of %d bytes: %d left", len(dst), len(src))
		}
		copy(dst, src)
		return src[len(dst):], nil
	case blockSparse:
		bitmap := c.level(level, (len(dst)+7)/8)
		src, err := c.decodeBlock(src, bitmap, level+1)
		if err != nil {
			return nil, fmt.Errorf("bitmap: %w", err)
		}
		if extra := len(dst) & 7; extra != 0 && bitmap[len(bitmap)-1]>>extra != 0 {
			return nil, fmt.Errorf("sparse block of %d bytes: its bitmap marks bytes past its end", len(dst))
		}
		marked := countMarked(bitmap)
		if marked > len(src) {
			return nil, fmt.Errorf("sparse block of %d bytes: its bitmap marks %d, %d left", len(dst), marked, len(src))
		}
		if marked == 0 {
			clear(dst)
			return src, nil
		}
		expandMarked(dst, bitmap, src[:marked])
		return src[marked:], nil
	}
	return nil, fmt.Errorf("block tag %#x: want 0 (zero), 1 (raw) or 2 (sparse)", tag)
}

// grow makes the planes hold n bytes each.
func (c *DeltaCodec) grow(n int) {
	for k := range c.planes {
		if cap(c.planes[k]) < n {
			c.planes[k] = make([]byte, n)
		}
	}
}

// level returns the bitmap buffer of a nesting level, n bytes long. Each
// level's bitmap is an eighth of the level above, so there are at most
// about log8(count) + 1 of them.
func (c *DeltaCodec) level(level, n int) []byte {
	for len(c.levels) <= level {
		c.levels = append(c.levels, nil)
	}
	if cap(c.levels[level]) < n {
		c.levels[level] = make([]byte, n)
	}
	return c.levels[level][:n]
}
