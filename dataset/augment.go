package dataset

import (
	"errors"
	"fmt"
	"math"

	"github.com/dpcnn/dpcnn/philox"
)

// Augment says how training images are randomly distorted. The zero value
// does nothing. It is part of a job spec, so it has JSON names, and it is
// checked with Validate when a job is submitted.
//
// Each sample's distortion is a pure function of (seed, epoch, sample index):
// its parameters come from AugmentStream, always from the same elements
// whatever else is enabled, so any worker produces exactly the same input for
// a sample, and a sample looks different in every epoch. Rotation, scaling,
// flipping, the shift and the crop compose into one affine map, and elastic
// distortion displaces the points where that map is applied; the source is
// then sampled once, bilinearly, with zero (background) outside the image.
type Augment struct {
	// RotateDeg rotates by an angle drawn uniformly from ±RotateDeg degrees
	// about the image centre; positive angles turn the image clockwise as
	// displayed (rows going down). 0 to 180.
	RotateDeg float64 `json:"rotateDeg,omitempty"`
	// ShiftPx translates by a distance drawn uniformly from ±ShiftPx pixels,
	// independently along each axis; fractional shifts interpolate. 0 to 100.
	ShiftPx float64 `json:"shiftPx,omitempty"`
	// CropPad pads the image by CropPad pixels of background on every side
	// and crops a random window of the original size back out of it: an
	// integer shift drawn uniformly from -CropPad..CropPad along each axis,
	// with zero fill. 0 to 100.
	CropPad int `json:"cropPad,omitempty"`
	// Scale zooms by a factor drawn uniformly from 1±Scale (0.1 means 90% to
	// 110%) about the image centre. 0 to below 1.
	Scale float64 `json:"scale,omitempty"`
	// Flip mirrors the image left to right with probability 1/2. It is off
	// by default and usually wrong for digits: a mirrored 2, 3, 4, 5, 7 or 9
	// is not that digit (or not a digit at all), so flipping teaches the
	// network images of no class. It is meant for data sets whose classes are
	// symmetric.
	Flip bool `json:"flip,omitempty"`
	// Elastic is Simard-style elastic distortion.
	Elastic Elastic `json:"elastic,omitzero"`
}

// Elastic is the elastic distortion of Simard, Steinkraus and Platt ("Best
// practices for convolutional neural networks applied to visual document
// analysis", 2003): every pixel gets a random displacement, uniform in
// [-1, 1) along each axis, the two displacement fields are smoothed with a
// Gaussian of standard deviation Sigma (zero outside the image) and scaled by
// Alpha. The paper used Alpha 34 and Sigma 4 on MNIST. It is the expensive
// part of augmentation: about (6·Sigma+1)·4 multiply-adds per pixel.
type Elastic struct {
	Alpha float64 `json:"alpha,omitempty"` // displacement scale in pixels, 0 to 1000; 0 turns it off
	Sigma float64 `json:"sigma,omitempty"` // smoothing in pixels, 0.5 to 10 when Alpha > 0
}

// Limits of Augment's fields; beyond them a distortion destroys the image or
// costs too much.
const (
	maxRotateDeg    = 180
	maxShiftPx      = 100
	maxCropPad      = 100
	maxElasticAlpha = 1000
	minElasticSigma = 0.5
	maxElasticSigma = 10
)

// Where the parameters of a sample sit in its stream. Each has its own
// elements, so enabling one distortion does not change the draws of another.
const (
	slotAngle   = 0
	slotScale   = 1
	slotShiftX  = 2
	slotShiftY  = 3
	slotFlip    = 4 // elements 4..7 form the second block; 5..7 are unused
	slotCropX   = 16
	slotCropY   = 32 // bounded draws may take a few more elements after their slot
	slotElastic = 64 // the x field, then the y field from the next multiple of 4
)

// Enabled reports whether a changes images at all.
func (a Augment) Enabled() bool {
	return a.RotateDeg != 0 || a.ShiftPx != 0 || a.CropPad != 0 || a.Scale != 0 || a.Flip ||
		a.Elastic.Alpha != 0
}

// Validate reports every rule a breaks, one error each.
func (a Augment) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("dataset: augment: "+format, args...))
	}
	inRange := func(name string, v, lo, hi float64) {
		if math.IsNaN(v) || v < lo || v > hi {
			bad("%s %v, want %v to %v", name, v, lo, hi)
		}
	}
	inRange("rotateDeg", a.RotateDeg, 0, maxRotateDeg)
	inRange("shiftPx", a.ShiftPx, 0, maxShiftPx)
	if a.CropPad < 0 || a.CropPad > maxCropPad {
		bad("cropPad %d, want 0 to %d", a.CropPad, maxCropPad)
	}
	if math.IsNaN(a.Scale) || a.Scale < 0 || a.Scale >= 1 {
		bad("scale %v, want 0 to below 1 (a factor of 1±scale must stay positive)", a.Scale)
	}
	inRange("elastic alpha", a.Elastic.Alpha, 0, maxElasticAlpha)
	switch {
	case a.Elastic.Alpha > 0:
		inRange("elastic sigma", a.Elastic.Sigma, minElasticSigma, maxElasticSigma)
	case a.Elastic.Sigma != 0:
		bad("elastic sigma %v without alpha: set alpha to enable elastic distortion", a.Elastic.Sigma)
	}
	return errors.Join(errs...)
}

// ToFloat writes src's pixels scaled to [0, 1] (x/255) to dst, which has
// len(src) elements.
func ToFloat(dst []float32, src []uint8) {
	if len(dst) != len(src) {
		panic(fmt.Sprintf("dataset: ToFloat: %d outputs for %d pixels", len(dst), len(src)))
	}
	for i, p := range src {
		dst[i] = float32(p) / 255
	}
}

// Apply writes the augmented image of sample in epoch, scaled to [0, 1], to
// dst. src is the sample's rows×cols pixels; dst has as many elements. When
// a is not Enabled it is ToFloat. a should have passed Validate.
//
// Apply does not allocate for images of up to 32×32 pixels. Its
// floating-point arithmetic is rounded explicitly and uses no math function,
// so every platform gives the same bits (amd64 with GOAMD64=v3 and arm64,
// which fuse multiply-adds where allowed, emit no fused instruction for it).
func (a Augment) Apply(dst []float32, src []uint8, rows, cols int, seed uint64, epoch, sample int64) {
	n := rows * cols
	if rows < 1 || cols < 1 || len(src) != n || len(dst) != n {
		panic(fmt.Sprintf("dataset: Apply: %d outputs and %d pixels for a %dx%d image", len(dst), len(src), rows, cols))
	}
	if !a.Enabled() {
		ToFloat(dst, src)
		return
	}
	s := AugmentStream(seed, epoch, sample)
	t := a.draw(s)
	if a.Elastic.Alpha > 0 {
		a.applyElastic(dst, src, rows, cols, t, s)
		return
	}
	warp(dst, src, rows, cols, t, nil, nil)
}

// transform is one sample's drawn distortion, other than elastic.
type transform struct {
	angle  float64 // radians, clockwise as displayed
	scale  float64 // zoom factor
	dx, dy float64 // translation in pixels, shift and crop together
	flip   bool    // mirror left to right
}

// signed maps a random word to [-1, 1) exactly: 2·philox.ToUniform(u) − 1,
// written without an addition that a compiler could fuse.
func signed(u uint32) float64 { return float64(int64(u)-1<<31) * (1.0 / (1 << 31)) }

// signed32 is signed at the 24-bit resolution of philox.ToUniform32.
func signed32(u uint32) float32 { return float32(int32(u>>8)-1<<23) * (1.0 / (1 << 23)) }

// draw computes the sample's transform from its stream.
func (a Augment) draw(s philox.Stream) transform {
	b0, b1 := s.Block4(slotAngle/4), s.Block4(slotFlip/4)
	t := transform{scale: 1}
	if a.RotateDeg > 0 {
		t.angle = float64(signed(b0[slotAngle])*a.RotateDeg) * (math.Pi / 180)
	}
	if a.Scale > 0 {
		t.scale = 1 + float64(signed(b0[slotScale])*a.Scale)
	}
	if a.ShiftPx > 0 {
		t.dx = float64(signed(b0[slotShiftX]) * a.ShiftPx)
		t.dy = float64(signed(b0[slotShiftY]) * a.ShiftPx)
	}
	if a.Flip {
		t.flip = b1[slotFlip%4]>>31 == 1
	}
	if p := a.CropPad; p > 0 {
		cx, cy := newCursor(s, slotCropX), newCursor(s, slotCropY)
		t.dx += float64(int(cx.below(uint32(2*p+1))) - p)
		t.dy += float64(int(cy.below(uint32(2*p+1))) - p)
	}
	return t
}

// warp samples src (rows×cols) through t into dst, bilinearly, with zero
// outside src. When ex and ey are not nil, output pixel i is taken from the
// point displaced by (ex[i], ey[i]) before t is undone.
//
// t maps source points p to output points c + d + scale·R(angle)·(F(p) − c),
// where c is the image centre, d the translation and F the mirror about the
// centre when flipping; warp applies its inverse to every output pixel.
func warp(dst []float32, src []uint8, rows, cols int, t transform, ex, ey []float32) {
	sin, cos := sinCos(t.angle)
	inv := 1 / t.scale
	// Inverse rotation and scaling: rows of (1/scale)·R(−angle).
	m00, m01 := float64(cos*inv), float64(sin*inv)
	m10, m11 := -m01, m00
	if t.flip {
		m00, m01 = -m00, -m01
	}
	cx, cy := float64(float64(cols-1)/2), float64(float64(rows-1)/2)
	i := 0
	for y := 0; y < rows; y++ {
		for x := 0; x < cols; x++ {
			px, py := float64(x), float64(y)
			if ex != nil {
				px += float64(ex[i])
				py += float64(ey[i])
			}
			qx, qy := px-cx-t.dx, py-cy-t.dy
			sx := cx + (float64(m00*qx) + float64(m01*qy))
			sy := cy + (float64(m10*qx) + float64(m11*qy))
			v := bilinear(src, rows, cols, sx, sy) / 255
			if v > 1 { // by rounding; comparisons, as min and max are slow on floats
				v = 1
			}
			dst[i] = float32(v)
			i++
		}
	}
}

// bilinear interpolates src at (x, y) with zero outside the image.
func bilinear(src []uint8, rows, cols int, x, y float64) float64 {
	x0, y0 := math.Floor(x), math.Floor(y)
	fx, fy := x-x0, y-y0
	ix, iy := int(x0), int(y0)
	var p00, p01, p10, p11 float64
	if ix >= 0 && iy >= 0 && ix < cols-1 && iy < rows-1 {
		i := iy*cols + ix
		p00, p01 = float64(src[i]), float64(src[i+1])
		p10, p11 = float64(src[i+cols]), float64(src[i+cols+1])
	} else {
		if x0 < -1 || y0 < -1 || x0 > float64(cols) || y0 > float64(rows) || x0 != x0 || y0 != y0 {
			return 0 // far outside (checked in floats: int(x0) may overflow)
		}
		pixel := func(c, r int) float64 {
			if c < 0 || c >= cols || r < 0 || r >= rows {
				return 0
			}
			return float64(src[r*cols+c])
		}
		p00, p01, p10, p11 = pixel(ix, iy), pixel(ix+1, iy), pixel(ix, iy+1), pixel(ix+1, iy+1)
	}
	top := float64((1-fx)*p00) + float64(fx*p01)
	bottom := float64((1-fx)*p10) + float64(fx*p11)
	return float64((1-fy)*top) + float64(fy*bottom)
}

// elasticStack is the scratch, in float32s, that applyElastic keeps on the
// stack: the two displacement fields, a temporary and a padded line for
// images up to 32×32.
const elasticStack = 3*32*32 + 32 + 2*maxKernelRadius

// applyElastic draws the sample's smoothed displacement fields and warps.
func (a Augment) applyElastic(dst []float32, src []uint8, rows, cols int, t transform, s philox.Stream) {
	n := rows * cols
	var kernel [maxKernelRadius + 1]float32
	w := gaussianKernel(kernel[:], a.Elastic.Sigma)
	r := len(w) - 1
	need := 3*n + max(rows, cols) + 2*r
	var stack [elasticStack]float32
	scratch := stack[:]
	if need > len(scratch) {
		scratch = make([]float32, need)
	}
	ex, ey, tmp, line := scratch[:n], scratch[n:2*n], scratch[2*n:3*n], scratch[3*n:need]
	alpha := float32(a.Elastic.Alpha)
	yStart := uint32(slotElastic + (n+3)/4*4)
	for f, field := range [2][]float32{ex, ey} {
		start := uint32(slotElastic)
		if f == 1 {
			start = yStart
		}
		for i := 0; i < n; i += 4 {
			b := s.Block4((start + uint32(i)) / 4)
			for lane := 0; lane < 4 && i+lane < n; lane++ {
				field[i+lane] = signed32(b[lane])
			}
		}
		smooth(field, tmp, line, rows, cols, w, alpha)
	}
	warp(dst, src, rows, cols, t, ex, ey)
}

// maxKernelRadius is the radius of the Gaussian at maxElasticSigma.
const maxKernelRadius = 3 * maxElasticSigma

// gaussianKernel writes the half kernel w[0..r] of the normalised Gaussian of
// standard deviation sigma, truncated at r = ceil(3·sigma) (at most
// len(buf)-1), and returns it. exp(−k²/2σ²) is built from one exp by
// products, with the series below, so that every platform agrees.
func gaussianKernel(buf []float32, sigma float64) []float32 {
	r := min(int(math.Ceil(3*sigma)), len(buf)-1)
	q := expSeries(-1 / float64(2*float64(sigma*sigma)))
	var w [maxKernelRadius + 1]float64
	w[0] = 1
	step, q2 := q, float64(q*q) // step = q^(2k+1)
	sum := 1.0
	for k := 1; k <= r; k++ {
		w[k] = float64(w[k-1] * step)
		step = float64(step * q2)
		sum += float64(2 * w[k])
	}
	out := buf[:r+1]
	for k := range out {
		out[k] = float32(w[k] / sum)
	}
	return out
}

// smooth convolves field (rows×cols) with the separable kernel w (half
// kernel, w[0] the centre) along rows then columns, with zero outside, and
// scales it by alpha. tmp is as large as field; line holds a row or a column
// with len(w)−1 zeros on either side.
func smooth(field, tmp, line []float32, rows, cols int, w []float32, alpha float32) {
	r := len(w) - 1
	clear(line)
	for y := 0; y < rows; y++ {
		copy(line[r:], field[y*cols:(y+1)*cols])
		convolveLine(tmp[y*cols:(y+1)*cols], 1, line, w, 1)
	}
	for x := 0; x < cols; x++ {
		for y := 0; y < rows; y++ {
			line[r+y] = tmp[y*cols+x]
		}
		clear(line[r+rows:])
		convolveLine(field[x:], cols, line, w, alpha)
	}
}

// convolveLine writes alpha·(w * line) for every unpadded position of line
// to out[0], out[stride], …; w[0] is added first, then both neighbours at
// distance 1, 2, … (the zero padding adds nothing but keeps the order).
func convolveLine(out []float32, stride int, line, w []float32, alpha float32) {
	r := len(w) - 1
	for i, o := 0, 0; i+2*r < len(line); i, o = i+1, o+stride {
		if o >= len(out) {
			break
		}
		c := line[i+r:]
		acc := float32(w[0] * c[0])
		for k := 1; k <= r; k++ {
			acc += float32(w[k] * line[i+r-k])
			acc += float32(w[k] * c[k])
		}
		if alpha != 1 {
			acc = float32(alpha * acc)
		}
		out[o] = acc
	}
}

// sinCos returns sin x and cos x for |x| ≤ π by their Taylor series, each
// operation rounded explicitly: math.Sincos may differ in the last bit
// between platforms, and a sample must come out the same on every worker.
// The truncation error is below 1e-18; rounding keeps it within 1e-15.
func sinCos(x float64) (sin, cos float64) {
	x2 := float64(x * x)
	sinTerm, cosTerm := x, 1.0
	sin, cos = x, 1
	for k := 1; k <= 16; k++ {
		sinTerm = float64(float64(-sinTerm*x2) / float64((2*k)*(2*k+1)))
		cosTerm = float64(float64(-cosTerm*x2) / float64((2*k-1)*(2*k)))
		sin += sinTerm
		cos += cosTerm
	}
	return sin, cos
}

// expSeries returns e^x for −2 ≤ x ≤ 0 by its Taylor series, each operation
// rounded explicitly (see sinCos). The truncation error is below 1e-20.
func expSeries(x float64) float64 {
	term, sum := 1.0, 1.0
	for k := 1; k <= 30; k++ {
		term = float64(float64(term*x) / float64(k))
		sum += term
	}
	return sum
}
