package dataset

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// IDX magic numbers: two zero bytes, the element type (0x08, unsigned byte)
// and the number of dimensions.
const (
	ImagesMagic = 0x00000803
	LabelsMagic = 0x00000801
)

// MaxPayload is the largest payload, in bytes, that the readers accept. It
// bounds what a hostile or damaged header can make us hold in memory (MNIST's
// largest file has 47,040,000 bytes of pixels).
const MaxPayload = 1 << 31

// readChunk is the first allocation for a payload, which then doubles as
// bytes arrive: a header that claims more than the body holds fails after
// reading the body, not after allocating the claim.
const readChunk = 1 << 20

// Images is a set of greyscale images in IDX layout: N images of Rows×Cols
// bytes, each row-major, one after another.
type Images struct {
	N, Rows, Cols int
	Pixels        []uint8 // N*Rows*Cols bytes, 0 = background, 255 = ink
}

// Size returns the number of pixels of one image.
func (im *Images) Size() int { return im.Rows * im.Cols }

// Image returns the pixels of image i (a view, not a copy).
func (im *Images) Image(i int) []uint8 {
	n := im.Rows * im.Cols
	return im.Pixels[i*n : (i+1)*n : (i+1)*n]
}

// ReadImages reads an IDX image file (magic 0x00000803), raw or gzip
// compressed. name is used in errors only.
func ReadImages(r io.Reader, name string) (*Images, error) {
	dims, body, err := readIDX(r, name, ImagesMagic, 3)
	if err != nil {
		return nil, err
	}
	n, rows, cols := dims[0], dims[1], dims[2]
	if n == 0 || rows == 0 || cols == 0 {
		return nil, fmt.Errorf("dataset: %s: empty image set (%d images of %dx%d)", name, n, rows, cols)
	}
	pixels, err := readPayload(body, name, uint64(n)*uint64(rows)*uint64(cols),
		fmt.Sprintf("%d images of %dx%d", n, rows, cols))
	if err != nil {
		return nil, err
	}
	return &Images{N: int(n), Rows: int(rows), Cols: int(cols), Pixels: pixels}, nil
}

// ReadLabels reads an IDX label file (magic 0x00000801), raw or gzip
// compressed. name is used in errors only.
func ReadLabels(r io.Reader, name string) ([]uint8, error) {
	dims, body, err := readIDX(r, name, LabelsMagic, 1)
	if err != nil {
		return nil, err
	}
	if dims[0] == 0 {
		return nil, fmt.Errorf("dataset: %s: empty label set", name)
	}
	return readPayload(body, name, uint64(dims[0]), fmt.Sprintf("%d labels", dims[0]))
}

// ReadImagesFile reads the IDX image file at path.
func ReadImagesFile(path string) (*Images, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	defer f.Close()
	return ReadImages(f, path)
}

// ReadLabelsFile reads the IDX label file at path.
func ReadLabelsFile(path string) ([]uint8, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	defer f.Close()
	return ReadLabels(f, path)
}

// readIDX decompresses r if it starts with the gzip magic bytes, checks the
// IDX magic number and dimension count, and returns the dimensions and the
// reader positioned at the payload.
func readIDX(r io.Reader, name string, magic uint32, ndims int) ([]uint32, io.Reader, error) {
	br := bufio.NewReader(r)
	var body io.Reader = br
	if head, _ := br.Peek(2); len(head) == 2 && head[0] == 0x1f && head[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("dataset: %s: gzip: %w", name, err)
		}
		body = gzipErrors{gz}
	}
	header := make([]byte, 4+4*ndims)
	// The magic number first, so that a file of the wrong kind is named as
	// such even when it is shorter than the header we expect.
	if err := readHeader(body, name, header, 0, 4); err != nil {
		return nil, nil, err
	}
	if got := binary.BigEndian.Uint32(header); got != magic {
		return nil, nil, fmt.Errorf("dataset: %s: bad magic 0x%08x, want 0x%08x", name, got, magic)
	}
	if err := readHeader(body, name, header, 4, len(header)); err != nil {
		return nil, nil, err
	}
	dims := make([]uint32, ndims)
	for i := range dims {
		dims[i] = binary.BigEndian.Uint32(header[4+4*i:])
	}
	return dims, body, nil
}

// readHeader reads header[from:to].
func readHeader(r io.Reader, name string, header []byte, from, to int) error {
	n, err := io.ReadFull(r, header[from:to])
	if err == nil {
		return nil
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("dataset: %s: truncated header: got %d bytes, want %d", name, from+n, len(header))
	}
	return fmt.Errorf("dataset: %s: read header: %w", name, err)
}

// gzipErrors marks the errors of a gzip stream as such (the gzip reader
// reports a cut stream as a bare io.ErrUnexpectedEOF), keeping io.EOF as is.
type gzipErrors struct{ r io.Reader }

func (g gzipErrors) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("gzip: %w", err)
	}
	return n, err
}

// readPayload reads exactly size bytes and then checks that nothing follows.
// It grows its buffer as bytes arrive, so a short body with a large claimed
// size fails without the claimed allocation.
func readPayload(r io.Reader, name string, size uint64, what string) ([]uint8, error) {
	if size > MaxPayload {
		return nil, fmt.Errorf("dataset: %s: header claims %s (%d bytes), more than the limit of %d", name, what, size, uint64(MaxPayload))
	}
	want := int(size)
	buf := make([]byte, 0, min(want, readChunk))
	for len(buf) < want {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(2*cap(buf), want))
			copy(grown, buf)
			buf = grown
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			if len(buf) < want {
				return nil, fmt.Errorf("dataset: %s: truncated: header says %s (%d bytes), got %d", name, what, want, len(buf))
			}
			break
		}
		if err != nil {
			return nil, fmt.Errorf("dataset: %s: read %s: after %d of %d bytes: %w", name, what, len(buf), want, err)
		}
	}
	// Reading on to EOF also makes gzip check its CRC and length trailer.
	var extra [1]byte
	n, err := io.ReadFull(r, extra[:])
	switch {
	case n > 0:
		return nil, fmt.Errorf("dataset: %s: trailing data after %s (%d bytes)", name, what, want)
	case err != io.EOF:
		return nil, fmt.Errorf("dataset: %s: after %s: %w", name, what, err)
	}
	return buf, nil
}
