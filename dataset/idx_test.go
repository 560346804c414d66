package dataset

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"runtime"
	"strings"
	"testing"
)

// idxFile returns an IDX file with the given magic, dimensions and payload.
func idxFile(magic uint32, dims []uint32, payload []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, magic)
	for _, d := range dims {
		binary.Write(&b, binary.BigEndian, d)
	}
	b.Write(payload)
	return b.Bytes()
}

func gzipBytes(data []byte) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write(data)
	w.Close()
	return b.Bytes()
}

// smallImages is 2 images of 2×3 pixels.
func smallImages() []byte {
	return idxFile(ImagesMagic, []uint32{2, 2, 3}, []byte{0, 1, 2, 3, 4, 5, 250, 251, 252, 253, 254, 255})
}

func smallLabels() []byte { return idxFile(LabelsMagic, []uint32{3}, []byte{7, 0, 9}) }

func TestReadImages(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
	}{{"raw", smallImages()}, {"gzip", gzipBytes(smallImages())}} {
		t.Run(tc.name, func(t *testing.T) {
			im, err := ReadImages(bytes.NewReader(tc.data), "small")
			if err != nil {
				t.Fatal(err)
			}
			if im.N != 2 || im.Rows != 2 || im.Cols != 3 || im.Size() != 6 {
				t.Fatalf("got %d images of %dx%d, want 2 of 2x3", im.N, im.Rows, im.Cols)
			}
			if got := im.Image(1); !bytes.Equal(got, []byte{250, 251, 252, 253, 254, 255}) {
				t.Errorf("image 1 = %v", got)
			}
		})
	}
}

func TestReadLabels(t *testing.T) {
	for _, data := range [][]byte{smallLabels(), gzipBytes(smallLabels())} {
		labels, err := ReadLabels(bytes.NewReader(data), "small")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(labels, []byte{7, 0, 9}) {
			t.Errorf("labels = %v, want [7 0 9]", labels)
		}
	}
}

func TestReadIDXErrors(t *testing.T) {
	images, labels := smallImages(), smallLabels()
	withTrailer := append(append([]byte{}, images...), 0)
	badGzip := gzipBytes(images)
	badGzip[len(badGzip)-8] ^= 1 // the CRC
	for _, tc := range []struct {
		name   string
		data   []byte
		labels bool
		want   string
	}{
		{"empty", nil, false, "small: truncated header: got 0 bytes, want 16"},
		{"short header", images[:9], false, "truncated header: got 9 bytes, want 16"},
		{"labels as images", labels, false, "bad magic 0x00000801, want 0x00000803"},
		{"images as labels", images, true, "bad magic 0x00000803, want 0x00000801"},
		{"not unsigned bytes", idxFile(0x00000903, []uint32{1, 1, 1}, []byte{0}), false, "bad magic 0x00000903"},
		{"truncated pixels", images[:len(images)-1], false, "small: truncated: header says 2 images of 2x3 (12 bytes), got 11"},
		{"truncated gzip", gzipBytes(images)[:20], false, "small"},
		{"truncated labels", labels[:len(labels)-2], true, "truncated: header says 3 labels (3 bytes), got 1"},
		{"trailing pixels", withTrailer, false, "small: trailing data after 2 images of 2x3 (12 bytes)"},
		{"trailing gzip", gzipBytes(withTrailer), false, "trailing data"},
		{"trailing garbage after gzip", append(gzipBytes(images), 1, 2, 3), false, "gzip"},
		{"bad gzip checksum", badGzip, false, "checksum"},
		{"no images", idxFile(ImagesMagic, []uint32{0, 28, 28}, nil), false, "empty image set (0 images of 28x28)"},
		{"no columns", idxFile(ImagesMagic, []uint32{5, 28, 0}, nil), false, "empty image set"},
		{"no labels", idxFile(LabelsMagic, []uint32{0}, nil), true, "empty label set"},
		{"over the limit", idxFile(ImagesMagic, []uint32{0xffffffff, 0xffffffff, 0xffffffff}, nil), false,
			"more than the limit of 2147483648"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.labels {
				_, err = ReadLabels(bytes.NewReader(tc.data), "small")
			} else {
				_, err = ReadImages(bytes.NewReader(tc.data), "small")
			}
			if err == nil {
				t.Fatalf("no error, want one containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "dataset: small: ") {
				t.Fatalf("error %q, want it to start with %q and contain %q", err, "dataset: small: ", tc.want)
			}
		})
	}
}

// A header that claims nearly the limit with a tiny body must fail without
// allocating the claim.
func TestReadImagesHugeClaimShortBody(t *testing.T) {
	data := idxFile(ImagesMagic, []uint32{1 << 21, 32, 32}, make([]byte, 100)) // claims 2 GiB
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := ReadImages(bytes.NewReader(data), "huge")
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("error %v, want truncated", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 4*readChunk {
		t.Errorf("allocated %d bytes for a 116-byte file", got)
	}
}

func TestReadFileErrorsNamePath(t *testing.T) {
	_, err := ReadImagesFile("/nonexistent/train-images-idx3-ubyte.gz")
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/train-images-idx3-ubyte.gz") {
		t.Errorf("error %v, want it to name the path", err)
	}
	_, err = ReadLabelsFile("/nonexistent/labels")
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/labels") {
		t.Errorf("error %v, want it to name the path", err)
	}
}

func TestNewSet(t *testing.T) {
	im, err := ReadImages(bytes.NewReader(smallImages()), "small")
	if err != nil {
		t.Fatal(err)
	}
	if s, err := NewSet("small", im, []uint8{3, 9}, 10); err != nil || s.Len() != 2 || s.Classes != 10 {
		t.Fatalf("NewSet = %v, %v", s, err)
	}
	for _, tc := range []struct {
		labels  []uint8
		classes int
		want    string
	}{
		{[]uint8{1}, 10, "dataset: small: 2 images but 1 labels"},
		{[]uint8{1, 10}, 10, "dataset: small: label 10 of sample 1 is not below 10 classes"},
		{[]uint8{1, 1}, 0, "0 classes"},
	} {
		if _, err := NewSet("small", im, tc.labels, tc.classes); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewSet(%v, %d) error %v, want %q", tc.labels, tc.classes, err, tc.want)
		}
	}
	s, _ := NewSet("small", im, []uint8{3, 9}, 10)
	if err := s.CheckIndices([]int32{0, 1}); err != nil {
		t.Error(err)
	}
	if err := s.CheckIndices([]int32{1, 2}); err == nil || !strings.Contains(err.Error(), "index 2 at position 1 out of range [0, 2)") {
		t.Errorf("CheckIndices error %v", err)
	}
}

// checkImages is what the fuzz targets demand of any accepted file.
func checkImages(t *testing.T, im *Images) {
	if im.N < 1 || im.Rows < 1 || im.Cols < 1 || len(im.Pixels) != im.N*im.Rows*im.Cols {
		t.Fatalf("accepted %d images of %dx%d with %d pixels", im.N, im.Rows, im.Cols, len(im.Pixels))
	}
}

func FuzzReadImages(f *testing.F) {
	images := smallImages()
	f.Add(images)
	f.Add(gzipBytes(images))
	f.Add(images[:len(images)-1])
	f.Add(append(append([]byte{}, images...), 9))
	f.Add(gzipBytes(images)[:25])
	f.Add(idxFile(ImagesMagic, []uint32{1 << 20, 28, 28}, []byte{1, 2, 3}))
	f.Add(idxFile(ImagesMagic, []uint32{1, 1, 1}, []byte{255}))
	f.Add(smallLabels())
	f.Add([]byte{0x1f, 0x8b})
	f.Fuzz(func(t *testing.T, data []byte) {
		im, err := ReadImages(bytes.NewReader(data), "fuzz")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "dataset: fuzz: ") {
				t.Fatalf("error without context: %v", err)
			}
			return
		}
		checkImages(t, im)
	})
}

func FuzzReadLabels(f *testing.F) {
	labels := smallLabels()
	f.Add(labels)
	f.Add(gzipBytes(labels))
	f.Add(labels[:len(labels)-1])
	f.Add(append(append([]byte{}, labels...), 0))
	f.Add(gzipBytes(labels)[:20])
	f.Add(idxFile(LabelsMagic, []uint32{0xffffffff}, []byte{1}))
	f.Add(smallImages())
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := ReadLabels(bytes.NewReader(data), "fuzz")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "dataset: fuzz: ") {
				t.Fatalf("error without context: %v", err)
			}
			return
		}
		if len(got) == 0 {
			t.Fatal("accepted an empty label set")
		}
	})
}
