package digitimage

import (
	"errors"
	"fmt"
	"image"
	"math"
	"slices"

	"golang.org/x/image/draw"
)

const (
	// Size is the side of the field a digit is placed in: MNIST's 28.
	Size = 28
	// BoxSize is the longer side of the ink's bounding box once scaled:
	// MNIST's 20, which leaves a margin of 4 pixels for the centring.
	BoxSize = 20
	// centre is the pixel index the centre of mass is moved to on both axes.
	centre = Size / 2
	// NoiseFloor is the fraction of the range from background to full ink
	// below which a pixel counts as background and is set to 0: it clears
	// paper texture and JPEG noise. MNIST's own faintest edge pixels (1 to
	// 12 of 255) fall under it too, which moves nothing that matters.
	NoiseFloor = 0.05
	// BoxThreshold is the fraction of that range from which a pixel counts
	// in the ink's bounding box, which sets the scale: JPEG rings up to a
	// quarter of the range around hard edges (quality 50), and the box
	// must not grow with it. MNIST's digits measure 20 pixels at this
	// threshold as at any (all but about 0.2% of them).
	BoxThreshold = 0.3
	// ContrastMin is how far, as a fraction of the grey scale, the strongest
	// pixel must stand out from the background for the picture to have ink.
	ContrastMin = 0.1
	// MaxPixels bounds the pictures read (width × height), so that a small
	// file declaring a huge picture is refused before it is decoded.
	MaxPixels = 64 << 20
)

// ErrNoInk is the error of a picture with nothing drawn on it.
var ErrNoInk = errors.New("no ink: no pixel stands out from the background by a tenth of the grey scale (a blank picture?)")

// Background is what a picture's border showed, which decided how its ink
// was read.
type Background string

const (
	// BackgroundDark is MNIST's own polarity: light ink on dark, used as is.
	BackgroundDark Background = "dark"
	// BackgroundLight is dark ink on light (paper): the grey was inverted.
	BackgroundLight Background = "light"
	// BackgroundTransparent is ink on nothing: the ink is the opacity.
	BackgroundTransparent Background = "transparent"
)

// Digit is a picture made ready for an MNIST network.
type Digit struct {
	// Pixels are Size×Size bytes, row-major, 0 the background and 255 full
	// ink: MNIST's IDX layout and scale.
	Pixels []uint8
	// Background says how the picture's ink was read.
	Background Background
	// Box is the ink's bounding box in the picture's coordinates.
	Box image.Rectangle
}

// Normalize makes img an MNIST digit by the procedure of the package
// documentation. A picture without ink is ErrNoInk (wrapped).
func Normalize(img image.Image) (Digit, error) {
	d, err := normalize(img)
	if err != nil {
		return Digit{}, fmt.Errorf("digitimage: %w", err)
	}
	return d, nil
}

func normalize(img image.Image) (Digit, error) {
	b := img.Bounds()
	if b.Empty() {
		return Digit{}, errors.New("the picture has no pixels")
	}
	if int64(b.Dx())*int64(b.Dy()) > MaxPixels {
		return Digit{}, fmt.Errorf("the picture has %d×%d pixels, more than the %d million pixels this package reads", b.Dx(), b.Dy(), MaxPixels>>20)
	}
	ink, bg := inkOf(img)
	w, h := b.Dx(), b.Dy()
	level := median(ring(w, h, func(x, y int) float64 { return ink[y*w+x] }))
	peak := slices.Max(ink)
	if peak-level < ContrastMin {
		return Digit{}, ErrNoInk
	}
	all, box := stretch(ink, w, level, peak)
	if box.Empty() { // cannot happen: the peak is stretched to 1
		return Digit{}, ErrNoInk
	}
	scaled := scale(ink, w, all, float64(BoxSize)/float64(max(box.Dx(), box.Dy())))
	pixels, err := place(scaled)
	if err != nil {
		return Digit{}, err
	}
	return Digit{Pixels: pixels, Background: bg, Box: box.Add(b.Min)}, nil
}

// inkOf returns how much ink each pixel of img holds, in [0, 1] row by row,
// and what the border said: light ink on dark as is, dark on light
// inverted, and on a transparent border the opacity.
func inkOf(img image.Image) ([]float64, Background) {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	// pixel returns the luminance of (x, y) over white and its opacity.
	pixel := func(x, y int) (lum, alpha float64) {
		r, g, bl, a := img.At(b.Min.X+x, b.Min.Y+y).RGBA() // alpha-premultiplied
		// What the premultiplied colour leaves uncovered shows the white
		// behind it.
		over := float64(0xffff - a)
		lum = (0.299*(float64(r)+over) + 0.587*(float64(g)+over) + 0.114*(float64(bl)+over)) / 0xffff
		return min(lum, 1), float64(a) / 0xffff
	}
	transparent := median(ring(w, h, func(x, y int) float64 { _, a := pixel(x, y); return a })) < 0.5
	ink := make([]float64, w*h)
	for y := range h {
		for x := range w {
			lum, alpha := pixel(x, y)
			if transparent {
				ink[y*w+x] = alpha
			} else {
				ink[y*w+x] = lum
			}
		}
	}
	if transparent {
		return ink, BackgroundTransparent
	}
	if median(ring(w, h, func(x, y int) float64 { return ink[y*w+x] })) <= 0.5 {
		return ink, BackgroundDark
	}
	for i, l := range ink {
		ink[i] = 1 - l
	}
	return ink, BackgroundLight
}

// ring returns the values v gives the outermost pixels of a w×h picture:
// its background, unless the ink covers most of the border.
func ring(w, h int, v func(x, y int) float64) []float64 {
	out := make([]float64, 0, 2*(w+h))
	for y := range h {
		if y == 0 || y == h-1 {
			for x := range w {
				out = append(out, v(x, y))
			}
			continue
		}
		out = append(out, v(0, y))
		if w > 1 {
			out = append(out, v(w-1, y))
		}
	}
	return out
}

// median sorts v and returns its middle value (the upper of the two middle
// ones for an even count).
func median(v []float64) float64 {
	slices.Sort(v)
	return v[len(v)/2]
}

// stretch maps ink from [level, peak] onto [0, 1] in place, setting what
// stays below NoiseFloor to 0, and returns the bounding box of the rest
// (all the ink there is) and that of the pixels from BoxThreshold (the
// ink's box, which the scale is taken from).
func stretch(ink []float64, w int, level, peak float64) (all, box image.Rectangle) {
	for i, v := range ink {
		v = min((v-level)/(peak-level), 1)
		if v < NoiseFloor {
			v = 0
		}
		ink[i] = v
		if v == 0 {
			continue
		}
		x, y := i%w, i/w
		px := image.Rect(x, y, x+1, y+1)
		all = all.Union(px)
		if v >= BoxThreshold {
			box = box.Union(px)
		}
	}
	return all, box
}

// scale resamples the region r of ink (a picture w wide) by factor f,
// rounding its sides to whole pixels, and stretches the result so that its
// strongest pixel is 1. The result is row-major, its width and height those
// of the scaled region.
func scale(ink []float64, w int, r image.Rectangle, f float64) scaledInk {
	src := image.NewGray16(r)
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			i := src.PixOffset(x, y)
			v := uint16(math.Round(ink[y*w+x] * 0xffff))
			src.Pix[i], src.Pix[i+1] = uint8(v>>8), uint8(v)
		}
	}
	side := func(n int) int { return max(1, int(math.Round(float64(n)*f))) }
	dst := image.NewGray16(image.Rect(0, 0, side(r.Dx()), side(r.Dy())))
	// Catmull-Rom widens its kernel by the shrink factor, so a large
	// picture is averaged down rather than sampled (no aliasing), and at a
	// factor of 1 it reproduces its input exactly.
	draw.CatmullRom.Scale(dst, dst.Rect, src, src.Rect, draw.Src, nil)
	s := scaledInk{w: dst.Rect.Dx(), h: dst.Rect.Dy(), v: make([]float64, dst.Rect.Dx()*dst.Rect.Dy())}
	peak := 0.0
	for i := range s.v {
		s.v[i] = float64(uint16(dst.Pix[2*i])<<8|uint16(dst.Pix[2*i+1])) / 0xffff
		peak = max(peak, s.v[i])
	}
	if peak > 0 { // else nothing is left, which place reports
		for i := range s.v {
			s.v[i] /= peak
		}
	}
	return s
}

// scaledInk is the ink of the scaled region, row-major, w×h.
type scaledInk struct {
	w, h int
	v    []float64
}

// place puts s in the Size×Size field with its centre of mass (in pixel
// indices) on the pixel nearest (centre, centre), by a whole-pixel shift,
// and returns the field as bytes.
func place(s scaledInk) ([]uint8, error) {
	var mass, mx, my float64
	for i, v := range s.v {
		mass += v
		mx += v * float64(i%s.w)
		my += v * float64(i/s.w)
	}
	if mass == 0 { // the resampling left nothing of a speck
		return nil, ErrNoInk
	}
	dx := int(math.Round(centre - mx/mass))
	dy := int(math.Round(centre - my/mass))
	out := make([]uint8, Size*Size)
	for i, v := range s.v {
		x, y := i%s.w+dx, i/s.w+dy
		if x >= 0 && x < Size && y >= 0 && y < Size {
			out[y*Size+x] = uint8(math.Round(v * 255))
		}
	}
	return out, nil
}
