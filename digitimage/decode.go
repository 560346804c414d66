package digitimage

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"os"
)

// The signatures that tell the formats apart: PNG's eight bytes and JPEG's
// start-of-image marker.
var (
	pngSignature  = []byte("\x89PNG\r\n\x1a\n")
	jpegSignature = []byte{0xff, 0xd8, 0xff}
)

// The ends of whole files: PNG's IEND chunk (its type and CRC) and JPEG's
// end-of-image marker. A file that fails to decode and lacks its end was
// cut short; one that has it is corrupt.
var (
	pngEnd  = []byte("IEND\xaeB`\x82")
	jpegEnd = []byte{0xff, 0xd9}
)

// ReadFile reads the PNG or JPEG picture at path and normalises it. Its
// errors name the file and what is wrong with it: missing, not a PNG or
// JPEG, truncated, corrupt, too large, or without ink (ErrNoInk, wrapped).
func ReadFile(path string) (Digit, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Digit{}, fmt.Errorf("digitimage: %w", err) // *PathError: names the file
	}
	d, err := decode(data)
	if err != nil {
		return Digit{}, fmt.Errorf("digitimage: %s: %w", path, err)
	}
	return d, nil
}

// Decode decodes a PNG or JPEG picture and normalises it.
func Decode(data []byte) (Digit, error) {
	d, err := decode(data)
	if err != nil {
		return Digit{}, fmt.Errorf("digitimage: %w", err)
	}
	return d, nil
}

func decode(data []byte) (Digit, error) {
	img, err := decodeImage(data)
	if err != nil {
		return Digit{}, err
	}
	return normalize(img)
}

// decodeImage decodes data by its signature with image/png or image/jpeg
// itself, so that what is accepted does not depend on which decoders other
// packages of the program register with package image.
func decodeImage(data []byte) (image.Image, error) {
	var format string
	var end []byte
	var decodeConfig func(io.Reader) (image.Config, error)
	var decodeAll func(io.Reader) (image.Image, error)
	switch {
	case len(data) == 0:
		return nil, errors.New("the file is empty")
	case bytes.HasPrefix(data, pngSignature):
		format, end, decodeConfig, decodeAll = "PNG", pngEnd, png.DecodeConfig, png.Decode
	case bytes.HasPrefix(data, jpegSignature):
		format, end, decodeConfig, decodeAll = "JPEG", jpegEnd, jpeg.DecodeConfig, jpeg.Decode
	default:
		return nil, fmt.Errorf("not a PNG or JPEG picture (it starts % x)", data[:min(len(data), 8)])
	}
	cfg, err := decodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, decodeError(format, !bytes.HasSuffix(data, end), err)
	}
	if int64(cfg.Width)*int64(cfg.Height) > MaxPixels {
		return nil, fmt.Errorf("the %s declares %d×%d pixels, more than the %d million pixels this package reads", format, cfg.Width, cfg.Height, MaxPixels>>20)
	}
	img, err := decodeAll(bytes.NewReader(data))
	if err != nil {
		return nil, decodeError(format, !bytes.HasSuffix(data, end), err)
	}
	return img, nil
}

// decodeError says whether a file that failed to decode was cut short (a
// download or copy that stopped: the decoder ran out of data, or the file
// lacks its format's end) or holds data the decoder cannot read (corrupt).
// The decoders alone cannot tell: image/png reports a short picture as
// "not enough pixel data" whether the file stops early or its data is bad.
func decodeError(format string, endMissing bool, err error) error {
	if endMissing || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("truncated %s: the file ends before the picture does (%w)", format, err)
	}
	return fmt.Errorf("corrupt %s: %w", format, err)
}
