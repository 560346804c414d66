package digitimage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/color/palette"
	"image/draw"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dpcnn/dpcnn/dataset"
)

// seven draws a thick "7" in ink on paper, w×h, off the picture's centre
// (in its left half) so that the centring has work to do. Each pixel is
// ink where its centre lies within the stroke's half width of one of the
// two segments: hard edges, as a scan thresholded to two tones.
func seven(w, h int, ink, paper color.Color) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Rect, image.NewUniform(paper), image.Point{}, draw.Src)
	fw, fh := float64(w), float64(h)
	segments := [][4]float64{
		{0.10 * fw, 0.20 * fh, 0.45 * fw, 0.20 * fh}, // the bar
		{0.45 * fw, 0.20 * fh, 0.25 * fw, 0.85 * fh}, // the stem
	}
	half := 0.05 * fh
	for y := range h {
		for x := range w {
			px, py := float64(x)+0.5, float64(y)+0.5
			for _, s := range segments {
				if distToSegment(px, py, s) <= half {
					img.Set(x, y, ink)
				}
			}
		}
	}
	return img
}

func distToSegment(px, py float64, s [4]float64) float64 {
	dx, dy := s[2]-s[0], s[3]-s[1]
	t := max(0, min(1, ((px-s[0])*dx+(py-s[1])*dy)/(dx*dx+dy*dy)))
	return math.Hypot(px-(s[0]+t*dx), py-(s[1]+t*dy))
}

// inkBox is the bounding box of the nonzero pixels of a Size×Size field.
func inkBox(p []uint8) image.Rectangle {
	var r image.Rectangle
	for i, v := range p {
		if v > 0 {
			r = r.Union(image.Rect(i%Size, i/Size, i%Size+1, i/Size+1))
		}
	}
	return r
}

// centreOfMass is in pixel indices, as MNIST's centring computes it.
func centreOfMass(p []uint8) (x, y float64) {
	var m float64
	for i, v := range p {
		m += float64(v)
		x += float64(v) * float64(i%Size)
		y += float64(v) * float64(i/Size)
	}
	return x / m, y / m
}

// checkMNISTLike holds d to MNIST's geometry: 28×28, the ink's longer side
// 20 pixels, the centre of mass within half a pixel of (14, 14) on each axis
// (a whole-pixel shift can do no better), full ink reached.
func checkMNISTLike(t *testing.T, d Digit) {
	t.Helper()
	if len(d.Pixels) != Size*Size {
		t.Fatalf("%d pixels, want %d", len(d.Pixels), Size*Size)
	}
	box := inkBox(d.Pixels)
	if long := max(box.Dx(), box.Dy()); long != BoxSize {
		t.Errorf("ink box %v: longer side %d, want %d", box, long, BoxSize)
	}
	if cx, cy := centreOfMass(d.Pixels); math.Abs(cx-centre) > 0.5 || math.Abs(cy-centre) > 0.5 {
		t.Errorf("centre of mass (%.2f, %.2f), want within 0.5 of (%d, %d)", cx, cy, centre, centre)
	}
	peak := uint8(0)
	for _, v := range d.Pixels {
		peak = max(peak, v)
	}
	if peak != 255 {
		t.Errorf("strongest pixel %d, want 255", peak)
	}
}

func TestLightBackgroundIsInverted(t *testing.T) {
	img := seven(200, 120, color.Black, color.White)
	d, err := Normalize(img)
	if err != nil {
		t.Fatal(err)
	}
	if d.Background != BackgroundLight {
		t.Errorf("background %q, want %q", d.Background, BackgroundLight)
	}
	checkMNISTLike(t, d)
	// MNIST's polarity: the corners are background (0), the ink light.
	if d.Pixels[0] != 0 || d.Pixels[Size*Size-1] != 0 {
		t.Errorf("corners %d and %d, want 0: the picture was not inverted", d.Pixels[0], d.Pixels[Size*Size-1])
	}
	// The "7" is taller than wide: its height is the box's 20.
	if box := inkBox(d.Pixels); box.Dy() != BoxSize || box.Dx() >= BoxSize {
		t.Errorf("ink box %v of a tall 7: want 20 high and narrower", box)
	}
	if want := image.Rect(14, 18, 96, 108); !d.Box.In(want) || d.Box.Dx() < 70 {
		t.Errorf("ink box in the picture %v, want about %v", d.Box, want)
	}
}

func TestDarkBackgroundIsNotInverted(t *testing.T) {
	light, err := Normalize(seven(200, 120, color.Black, color.White))
	if err != nil {
		t.Fatal(err)
	}
	dark, err := Normalize(seven(200, 120, color.White, color.Black))
	if err != nil {
		t.Fatal(err)
	}
	if dark.Background != BackgroundDark {
		t.Errorf("background %q, want %q", dark.Background, BackgroundDark)
	}
	checkMNISTLike(t, dark)
	// White on black is the negative of black on white: the same digit.
	if !bytes.Equal(dark.Pixels, light.Pixels) {
		t.Errorf("white on black and black on white give different digits")
	}
	// Grey paper and grey ink: the contrast is stretched to the same digit.
	grey, err := Normalize(seven(200, 120, color.Gray{Y: 60}, color.Gray{Y: 200}))
	if err != nil {
		t.Fatal(err)
	}
	if grey.Background != BackgroundLight || maxDiff(grey.Pixels, light.Pixels) > 1 {
		t.Errorf("grey on grey: background %q, differs from black on white by %d", grey.Background, maxDiff(grey.Pixels, light.Pixels))
	}
}

func TestTransparentBackgroundReadsOpacity(t *testing.T) {
	want, err := Normalize(seven(200, 120, color.White, color.Black))
	if err != nil {
		t.Fatal(err)
	}
	for _, ink := range []color.Color{color.Black, color.White, color.RGBA{R: 200, A: 255}} {
		d, err := Normalize(seven(200, 120, ink, color.Transparent))
		if err != nil {
			t.Fatal(err)
		}
		if d.Background != BackgroundTransparent || !bytes.Equal(d.Pixels, want.Pixels) {
			t.Errorf("ink %v on transparent: background %q, differs from white on black by %d", ink, d.Background, maxDiff(d.Pixels, want.Pixels))
		}
	}
}

func TestAnySize(t *testing.T) {
	want, err := Normalize(seven(200, 120, color.Black, color.White))
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range [][2]int{{28, 28}, {50, 30}, {1000, 600}, {60, 400}} {
		d, err := Normalize(seven(size[0], size[1], color.Black, color.White))
		if err != nil {
			t.Fatalf("%v: %v", size, err)
		}
		checkMNISTLike(t, d)
		// The drawings of the same aspect ratio as 200×120 are the same
		// shape at other resolutions, so they come out close to it, though
		// not equal: the strokes' edges fall on other pixels. (The drawing
		// stretches with the picture: the 28×28 and 60×400 sevens are
		// other shapes.)
		if c := cosine(d.Pixels, want.Pixels); size[0]*120 == size[1]*200 && c < 0.95 {
			t.Errorf("%v: cosine similarity %.3f to the 200×120 picture's digit, want at least 0.95", size, c)
		}
	}
	// A thin vertical bar: its box is 20 high, and its width follows the
	// aspect ratio (4 of 40 → 2 of 20).
	bar := image.NewGray(image.Rect(0, 0, 30, 50))
	for y := 5; y < 45; y++ {
		for x := 13; x < 17; x++ {
			bar.SetGray(x, y, color.Gray{Y: 255})
		}
	}
	d, err := Normalize(bar)
	if err != nil {
		t.Fatal(err)
	}
	if box := inkBox(d.Pixels); box.Dy() != BoxSize || box.Dx() != 2 {
		t.Errorf("a 4×40 bar comes out as a box of %v, want 2×20", box)
	}
}

// The pixel formats PNG decodes to (grey, 16-bit grey, paletted, RGBA,
// 16-bit RGBA) give the same digit as the picture they hold.
func TestPNGPixelFormats(t *testing.T) {
	src := seven(200, 120, color.Black, color.White)
	want, err := Normalize(src)
	if err != nil {
		t.Fatal(err)
	}
	convert := func(dst draw.Image) image.Image {
		draw.Draw(dst, dst.Bounds(), src, image.Point{}, draw.Src)
		return dst
	}
	r := src.Rect
	for name, img := range map[string]image.Image{
		"gray":     convert(image.NewGray(r)),
		"gray16":   convert(image.NewGray16(r)),
		"paletted": convert(image.NewPaletted(r, palette.Plan9)),
		"rgba":     src,
		"nrgba64":  convert(image.NewNRGBA64(r)),
	} {
		var buf bytes.Buffer
		if err := png.Encode(&buf, img); err != nil {
			t.Fatal(err)
		}
		d, err := Decode(buf.Bytes())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(d.Pixels, want.Pixels) {
			t.Errorf("%s PNG differs from the picture by %d", name, maxDiff(d.Pixels, want.Pixels))
		}
	}
}

func TestJPEG(t *testing.T) {
	src := seven(200, 120, color.Black, color.White)
	want, err := Normalize(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, quality := range []int{50, 90} {
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, src, &jpeg.Options{Quality: quality}); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "seven.jpg")
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		d, err := ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if d.Background != BackgroundLight {
			t.Errorf("quality %d: background %q, want %q", quality, d.Background, BackgroundLight)
		}
		checkMNISTLike(t, d)
		// JPEG rings around the strokes' hard edges, up to a quarter of
		// the grey range at quality 50: none of it counts in the box.
		if d.Box != want.Box {
			t.Errorf("quality %d: the JPEG's ink box %v, the picture's %v: its ringing counted as ink", quality, d.Box, want.Box)
		}
		// At quality 90 the ringing stays under the noise floor: the same
		// digit. At 50 the ringing above it widens the region resampled,
		// which falls on the 20-pixel grid at another phase (a fraction of
		// a pixel), so the strokes' grey edges differ: the same digit in
		// shape.
		if c := cosine(d.Pixels, want.Pixels); c < 0.95 {
			t.Errorf("quality %d: the JPEG's digit has a cosine similarity of %.3f to the picture's, want at least 0.95", quality, c)
		}
		if m := meanDiff(d.Pixels, want.Pixels); quality == 90 && m > 1 {
			t.Errorf("quality %d: the JPEG differs from the picture by %.1f per pixel on average", quality, m)
		}
	}
}

// An MNIST digit written out as a picture comes back as it was, but for
// its faintest pixels (under NoiseFloor, set to 0) and the stretch of its
// strongest to 255.
func TestMNISTDigitsComeBack(t *testing.T) {
	dir, err := dataset.Locate("")
	if err != nil {
		t.Skipf("MNIST not available: %v", err)
	}
	_, test, err := dataset.LoadMNIST(dir)
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	moved := 0
	for i := range n {
		src := &image.Gray{Pix: test.Image(i), Stride: Size, Rect: image.Rect(0, 0, Size, Size)}
		d, err := Normalize(src)
		if err != nil {
			t.Fatalf("test image %d: %v", i, err)
		}
		if d.Background != BackgroundDark {
			t.Errorf("test image %d: background %q", i, d.Background)
		}
		if diff := maxDiff(d.Pixels, src.Pix); diff > 12 {
			moved++
		}
	}
	// The few whose faint pixels tipped the centre of mass across a half
	// pixel move by one pixel: the network, trained on MNIST's own
	// centring, sees at most that.
	t.Logf("%d of %d MNIST test digits changed by more than 12 of 255 in some pixel", moved, n)
	if moved > n/100 {
		t.Errorf("%d of %d MNIST test digits changed by more than 12 of 255 in some pixel, want at most 1%%", moved, n)
	}
}

func TestBlankPicture(t *testing.T) {
	for name, img := range map[string]image.Image{
		"white": image.NewUniform(color.White),
		"grey":  image.NewUniform(color.Gray{Y: 128}),
		"faint": seven(200, 120, color.Gray{Y: 240}, color.White), // 6% contrast
		"empty": image.NewGray(image.Rectangle{}),
	} {
		if u, ok := img.(*image.Uniform); ok {
			img = &boundedUniform{u, image.Rect(0, 0, 50, 40)}
		}
		_, err := Normalize(img)
		if name == "empty" {
			if err == nil || !strings.Contains(err.Error(), "no pixels") {
				t.Errorf("empty picture: %v, want an error saying it has no pixels", err)
			}
			continue
		}
		if !errors.Is(err, ErrNoInk) {
			t.Errorf("%s picture: %v, want ErrNoInk", name, err)
		}
	}
}

type boundedUniform struct {
	*image.Uniform
	r image.Rectangle
}

func (b *boundedUniform) Bounds() image.Rectangle { return b.r }

func TestBadFiles(t *testing.T) {
	var buf bytes.Buffer
	if err := png.Encode(&buf, seven(200, 120, color.Black, color.White)); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	corrupt := bytes.Clone(good)
	for i := len(corrupt) / 2; i < len(corrupt)/2+64; i++ {
		corrupt[i] ^= 0x5a
	}
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"truncated.png", good[:len(good)/2], "truncated PNG"},
		{"corrupt.png", corrupt, "corrupt PNG"},
		{"header.png", good[:20], "truncated PNG"},
		{"notes.png", []byte("seven, drawn by hand"), "not a PNG or JPEG"},
		{"empty.png", nil, "the file is empty"},
	} {
		path := filepath.Join(dir, c.name)
		if err := os.WriteFile(path, c.data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := ReadFile(path)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming the file and saying %q", c.name, err, c.want)
		}
	}
	missing := filepath.Join(dir, "missing.png")
	if _, err := ReadFile(missing); err == nil || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: %v, want not-exist naming the file", err)
	}
	blank := filepath.Join(dir, "blank.png")
	buf.Reset()
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, 28, 28))); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(blank, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(blank); !errors.Is(err, ErrNoInk) || !strings.Contains(err.Error(), blank) {
		t.Errorf("blank file: %v, want ErrNoInk naming the file", err)
	}
}

// A small file that declares an enormous picture is refused before the
// decoder allocates it.
func TestHugePictureRefused(t *testing.T) {
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, 1, 1))); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	// IHDR's width and height are the 8 bytes after the signature (8),
	// the chunk length (4) and its type (4); its CRC, over the type and
	// the 13 bytes of data, follows them.
	copy(data[16:24], []byte{0, 1, 0, 0, 0, 1, 0, 0}) // 65536×65536
	binary.BigEndian.PutUint32(data[29:33], crc32.ChecksumIEEE(data[12:29]))
	if _, err := Decode(data); err == nil || !strings.Contains(err.Error(), "65536×65536") {
		t.Errorf("a PNG declaring 65536×65536 pixels: %v, want refused for its size", err)
	}
}

func maxDiff(a, b []uint8) int {
	d := 0
	for i := range a {
		d = max(d, int(a[i])-int(b[i]), int(b[i])-int(a[i]))
	}
	return d
}

func meanDiff(a, b []uint8) float64 {
	s := 0
	for i := range a {
		s += max(int(a[i])-int(b[i]), int(b[i])-int(a[i]))
	}
	return float64(s) / float64(len(a))
}

// cosine is the cosine similarity of two digits as vectors: 1 for the
// same picture, whatever its contrast.
func cosine(a, b []uint8) float64 {
	var ab, aa, bb float64
	for i := range a {
		ab += float64(a[i]) * float64(b[i])
		aa += float64(a[i]) * float64(a[i])
		bb += float64(b[i]) * float64(b[i])
	}
	return ab / math.Sqrt(aa*bb)
}
