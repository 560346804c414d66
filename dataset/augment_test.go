package dataset

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/dpcnn/dpcnn/philox"
)

// testImage is a rows×cols image with every pixel different where possible
// and a blank border, so shifts and rotations show.
func testImage(rows, cols int) []uint8 {
	im := make([]uint8, rows*cols)
	for y := 1; y < rows-1; y++ {
		for x := 1; x < cols-1; x++ {
			im[y*cols+x] = uint8(1 + (x*7+y*13)%255)
		}
	}
	return im
}

// fullAugment enables every distortion.
var fullAugment = Augment{RotateDeg: 15, ShiftPx: 1.5, CropPad: 2, Scale: 0.1, Flip: true, Elastic: Elastic{Alpha: 34, Sigma: 4}}

func TestToFloat(t *testing.T) {
	src := []uint8{0, 51, 255, 128}
	dst := make([]float32, 4)
	ToFloat(dst, src)
	want := []float32{0, 0.2, 1, 128.0 / 255}
	for i := range want {
		if dst[i] != want[i] {
			t.Errorf("ToFloat(%d) = %v, want %v", src[i], dst[i], want[i])
		}
	}
}

func TestAugmentDisabledIsToFloat(t *testing.T) {
	src := testImage(28, 28)
	want, got := make([]float32, len(src)), make([]float32, len(src))
	ToFloat(want, src)
	Augment{}.Apply(got, src, 28, 28, 1, 2, 3)
	assertSame(t, "disabled", got, want)
	// The warp itself is exact when it does nothing.
	warp(got, src, 28, 28, transform{scale: 1}, nil, nil)
	assertSame(t, "identity warp", got, want)
	if (Augment{}).Enabled() {
		t.Error("zero Augment is enabled")
	}
	for _, a := range []Augment{{RotateDeg: 1}, {ShiftPx: 1}, {CropPad: 1}, {Scale: 0.1}, {Flip: true}, {Elastic: Elastic{Alpha: 1, Sigma: 1}}} {
		if !a.Enabled() {
			t.Errorf("%+v is not enabled", a)
		}
	}
}

func assertSame(t *testing.T, what string, got, want []float32) {
	t.Helper()
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s: element %d = %v, want %v", what, i, got[i], want[i])
		}
	}
}

func assertClose(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > tol {
			t.Fatalf("%s: element %d = %v, want %v", what, i, got[i], want[i])
		}
	}
}

// Positive angles turn the image clockwise as displayed: the pixel right of
// the centre moves below it.
func TestWarpRotate90(t *testing.T) {
	const n = 5
	src := make([]uint8, n*n)
	for i := range src {
		src[i] = uint8(10 * i)
	}
	got := make([]float32, n*n)
	warp(got, src, n, n, transform{angle: math.Pi / 2, scale: 1}, nil, nil)
	want := make([]float32, n*n)
	for y := 0; y < n; y++ {
		for x := 0; x < n; x++ {
			want[y*n+x] = float32(src[(n-1-x)*n+y]) / 255
		}
	}
	assertClose(t, "rotate 90", got, want, 1e-6)
	if got[3*n+2] != float32(src[2*n+3])/255 {
		t.Errorf("pixel right of the centre did not move below it")
	}
	// A non-square image about its centre: 180° turns it upside down.
	rows, cols := 3, 4
	src = []uint8{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	got, want = make([]float32, rows*cols), make([]float32, rows*cols)
	warp(got, src, rows, cols, transform{angle: math.Pi, scale: 1}, nil, nil)
	for i := range want {
		want[i] = float32(src[rows*cols-1-i]) / 255
	}
	assertClose(t, "rotate 180", got, want, 1e-6)
}

func TestWarpShiftScaleFlip(t *testing.T) {
	const rows, cols = 6, 7
	src := make([]uint8, rows*cols)
	for i := range src {
		src[i] = uint8(i + 1)
	}
	pixel := func(x, y int) float32 {
		if x < 0 || x >= cols || y < 0 || y >= rows {
			return 0
		}
		return float32(src[y*cols+x]) / 255
	}
	got := make([]float32, rows*cols)
	for _, tc := range []struct {
		name string
		t    transform
		from func(x, y int) float32
	}{
		{"right 1", transform{scale: 1, dx: 1}, func(x, y int) float32 { return pixel(x-1, y) }},
		{"up 2", transform{scale: 1, dy: -2}, func(x, y int) float32 { return pixel(x, y+2) }},
		{"left 1 down 1", transform{scale: 1, dx: -1, dy: 1}, func(x, y int) float32 { return pixel(x+1, y-1) }},
		{"flip", transform{scale: 1, flip: true}, func(x, y int) float32 { return pixel(cols-1-x, y) }},
		{"flip then shift", transform{scale: 1, flip: true, dx: 1}, func(x, y int) float32 { return pixel(cols-x, y) }},
		{"half-pixel shift", transform{scale: 1, dx: 0.5}, func(x, y int) float32 { return (pixel(x, y) + pixel(x-1, y)) / 2 }},
		// Zoom 2× about the centre (3, 2.5): output (x, y) samples source
		// (3 + (x−3)/2, 2.5 + (y−2.5)/2).
		{"zoom 2", transform{scale: 2}, func(x, y int) float32 {
			sx, sy := 3+float64(x-3)/2, 2.5+float64(y)/2-1.25
			x0, y0 := int(math.Floor(sx)), int(math.Floor(sy))
			fx, fy := float32(sx-float64(x0)), float32(sy-float64(y0))
			return (1-fy)*((1-fx)*pixel(x0, y0)+fx*pixel(x0+1, y0)) + fy*((1-fx)*pixel(x0, y0+1)+fx*pixel(x0+1, y0+1))
		}},
	} {
		warp(got, src, rows, cols, tc.t, nil, nil)
		want := make([]float32, rows*cols)
		for y := 0; y < rows; y++ {
			for x := 0; x < cols; x++ {
				want[y*cols+x] = tc.from(x, y)
			}
		}
		assertClose(t, tc.name, got, want, 1e-6)
	}
}

// shifted returns src scaled to [0, 1] and moved by (dx, dy), zero filled.
func shifted(src []uint8, rows, cols, dx, dy int) []float32 {
	out := make([]float32, rows*cols)
	for y := 0; y < rows; y++ {
		for x := 0; x < cols; x++ {
			sx, sy := x-dx, y-dy
			if sx >= 0 && sx < cols && sy >= 0 && sy < rows {
				out[y*cols+x] = float32(src[sy*cols+sx]) / 255
			}
		}
	}
	return out
}

// Pad-and-crop is an integer shift with zero fill, and reaches every offset.
func TestCropPadIsIntegerShift(t *testing.T) {
	const rows, cols, pad = 10, 10, 2
	src := testImage(rows, cols)
	got := make([]float32, rows*cols)
	seen := map[[2]int]bool{}
	for sample := int64(0); sample < 400; sample++ {
		Augment{CropPad: pad}.Apply(got, src, rows, cols, 9, 0, sample)
		found := false
		for dy := -pad; dy <= pad && !found; dy++ {
			for dx := -pad; dx <= pad && !found; dx++ {
				if equalBits(got, shifted(src, rows, cols, dx, dy)) {
					seen[[2]int{dx, dy}], found = true, true
				}
			}
		}
		if !found {
			t.Fatalf("sample %d is not an integer shift within %d", sample, pad)
		}
	}
	if len(seen) != (2*pad+1)*(2*pad+1) {
		t.Errorf("saw %d of %d offsets", len(seen), (2*pad+1)*(2*pad+1))
	}
}

func equalBits(a, b []float32) bool {
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func TestFlipHalfTheTime(t *testing.T) {
	const rows, cols = 8, 9
	src := testImage(rows, cols)
	plain, mirrored := make([]float32, rows*cols), make([]float32, rows*cols)
	ToFloat(plain, src)
	warp(mirrored, src, rows, cols, transform{scale: 1, flip: true}, nil, nil)
	got := make([]float32, rows*cols)
	flips := 0
	const samples = 1000
	for s := int64(0); s < samples; s++ {
		Augment{Flip: true}.Apply(got, src, rows, cols, 4, 1, s)
		switch {
		case equalBits(got, mirrored):
			flips++
		case !equalBits(got, plain):
			t.Fatalf("sample %d neither plain nor mirrored", s)
		}
	}
	if flips < 420 || flips > 580 {
		t.Errorf("%d of %d flipped", flips, samples)
	}
}

func TestAugmentDeterministic(t *testing.T) {
	src := testImage(28, 28)
	apply := func(a Augment, seed uint64, epoch, sample int64) []float32 {
		out := make([]float32, len(src))
		a.Apply(out, src, 28, 28, seed, epoch, sample)
		return out
	}
	for _, a := range []Augment{fullAugment, {RotateDeg: 10}, {ShiftPx: 2}, {Scale: 0.2}, {Elastic: Elastic{Alpha: 8, Sigma: 3}}} {
		base := apply(a, 1, 5, 77)
		if !equalBits(base, apply(a, 1, 5, 77)) {
			t.Errorf("%+v: same key, different output", a)
		}
		for name, other := range map[string][]float32{
			"epoch":  apply(a, 1, 6, 77),
			"sample": apply(a, 1, 5, 78),
			"seed":   apply(a, 2, 5, 77),
		} {
			if equalBits(base, other) {
				t.Errorf("%+v: another %s gives the same output", a, name)
			}
		}
	}
}

// Each distortion draws from its own elements: enabling one leaves the
// others' draws alone.
func TestAugmentDrawsIndependent(t *testing.T) {
	s := AugmentStream(3, 1, 4)
	alone := Augment{RotateDeg: 10}.draw(s)
	with := Augment{RotateDeg: 10, Flip: true, Scale: 0.1, CropPad: 3}.draw(s)
	if alone.angle != with.angle || alone.angle == 0 {
		t.Errorf("angle %v alone, %v with others", alone.angle, with.angle)
	}
	shift := Augment{ShiftPx: 2}.draw(s)
	both := Augment{ShiftPx: 2, CropPad: 3}.draw(s)
	if d := both.dx - shift.dx; d != math.Trunc(d) || math.Abs(d) > 3 {
		t.Errorf("crop added %v to the shift, want an integer within 3", d)
	}
	for i := int64(0); i < 200; i++ {
		tr := fullAugment.draw(AugmentStream(3, 1, i))
		if math.Abs(tr.angle) > 15*math.Pi/180 || tr.scale < 0.9 || tr.scale > 1.1 || math.Abs(tr.dx) > 3.5 || math.Abs(tr.dy) > 3.5 {
			t.Fatalf("draw %+v out of the configured ranges", tr)
		}
	}
}

func TestAugmentRange(t *testing.T) {
	src := make([]uint8, 28*28)
	for i := range src {
		src[i] = 255 // all ink: interpolation must not exceed 1
	}
	out := make([]float32, len(src))
	for _, a := range []Augment{fullAugment, {RotateDeg: 180, Scale: 0.99, ShiftPx: 100}, {Elastic: Elastic{Alpha: 1000, Sigma: 0.5}}} {
		for s := int64(0); s < 50; s++ {
			a.Apply(out, src, 28, 28, 7, 0, s)
			for i, v := range out {
				if !(v >= 0 && v <= 1) {
					t.Fatalf("%+v sample %d: pixel %d = %v", a, s, i, v)
				}
			}
		}
	}
}

// Elastic distortion moves ink but keeps a smooth image: with a small alpha
// it stays close to the original.
func TestElastic(t *testing.T) {
	src := testImage(28, 28)
	plain, got := make([]float32, len(src)), make([]float32, len(src))
	ToFloat(plain, src)
	Augment{Elastic: Elastic{Alpha: 34, Sigma: 4}}.Apply(got, src, 28, 28, 1, 0, 0)
	if equalBits(got, plain) {
		t.Error("elastic distortion changed nothing")
	}
	Augment{Elastic: Elastic{Alpha: 0.01, Sigma: 4}}.Apply(got, src, 28, 28, 1, 0, 0)
	assertClose(t, "tiny elastic", got, plain, 0.01)
	for _, sigma := range []float64{0.5, 1, 4, 10} {
		var buf [maxKernelRadius + 1]float32
		w := gaussianKernel(buf[:], sigma)
		sum := float64(w[0])
		for _, v := range w[1:] {
			sum += 2 * float64(v)
		}
		if math.Abs(sum-1) > 1e-6 || len(w) != int(math.Ceil(3*sigma))+1 {
			t.Errorf("sigma %v: kernel of %d sums to %v", sigma, len(w), sum)
		}
		if e := math.Exp(-1 / (2 * sigma * sigma)); math.Abs(float64(w[1]/w[0])-e) > 1e-6 {
			t.Errorf("sigma %v: w1/w0 = %v, want %v", sigma, w[1]/w[0], e)
		}
	}
}

// Larger images than the stack scratch take the allocating path and agree
// with themselves.
func TestElasticLargeImage(t *testing.T) {
	src := testImage(40, 40)
	a, b := make([]float32, len(src)), make([]float32, len(src))
	fullAugment.Apply(a, src, 40, 40, 1, 2, 3)
	fullAugment.Apply(b, src, 40, 40, 1, 2, 3)
	if !equalBits(a, b) {
		t.Error("large image not deterministic")
	}
}

func TestApplyDoesNotAllocate(t *testing.T) {
	src := testImage(28, 28)
	dst := make([]float32, len(src))
	for _, a := range []Augment{{RotateDeg: 10, ShiftPx: 2, CropPad: 2}, fullAugment} {
		if n := testing.AllocsPerRun(20, func() { a.Apply(dst, src, 28, 28, 1, 2, 3) }); n != 0 {
			t.Errorf("%+v: %v allocations per Apply", a, n)
		}
	}
}

// The series give what math does, to within rounding.
func TestSeries(t *testing.T) {
	for x := -math.Pi; x <= math.Pi; x += 0.001 {
		s, c := sinCos(x)
		if math.Abs(s-math.Sin(x)) > 1e-15 || math.Abs(c-math.Cos(x)) > 1e-15 {
			t.Fatalf("sinCos(%v) = %v, %v, want %v, %v", x, s, c, math.Sin(x), math.Cos(x))
		}
	}
	for x := -2.0; x <= 0; x += 0.001 {
		if got, want := expSeries(x), math.Exp(x); math.Abs(got-want) > 4e-16 {
			t.Fatalf("expSeries(%v) = %v, want %v", x, got, want)
		}
	}
}

// The bits of an augmented image are part of the job's reproducibility: a
// change here changes every trained model. Update the golden sums only on
// purpose.
func TestAugmentGolden(t *testing.T) {
	src := testImage(28, 28)
	out := make([]float32, len(src))
	for _, tc := range []struct {
		a    Augment
		want string
	}{
		{Augment{RotateDeg: 15, ShiftPx: 1.5, CropPad: 2, Scale: 0.1, Flip: true}, "4c218ab9a766e343e49994f10546b5833025a7097ed46049477269c828c7dff6"},
		{fullAugment, "f849eb72c8f53a3f46c46ddd193580e0995466132101b95d04ba90b5c9fd109b"},
	} {
		h := sha256.New()
		for s := int64(0); s < 8; s++ {
			tc.a.Apply(out, src, 28, 28, 0x5eed, 3, s)
			binary.Write(h, binary.LittleEndian, out)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != tc.want {
			t.Errorf("%+v: sha256 %s, want %s", tc.a, got, tc.want)
		}
	}
}

func TestAugmentValidate(t *testing.T) {
	for _, a := range []Augment{{}, fullAugment, {RotateDeg: 180, ShiftPx: 100, CropPad: 100, Scale: 0.99, Elastic: Elastic{Alpha: 1000, Sigma: 10}}} {
		if err := a.Validate(); err != nil {
			t.Errorf("%+v: %v", a, err)
		}
	}
	for _, tc := range []struct {
		a    Augment
		want []string
	}{
		{Augment{RotateDeg: -1}, []string{"dataset: augment: rotateDeg -1, want 0 to 180"}},
		{Augment{RotateDeg: 181}, []string{"rotateDeg 181"}},
		{Augment{RotateDeg: math.NaN()}, []string{"rotateDeg NaN"}},
		{Augment{ShiftPx: -0.5}, []string{"shiftPx -0.5, want 0 to 100"}},
		{Augment{ShiftPx: math.Inf(1)}, []string{"shiftPx +Inf"}},
		{Augment{CropPad: -2}, []string{"cropPad -2, want 0 to 100"}},
		{Augment{Scale: 1}, []string{"scale 1, want 0 to below 1"}},
		{Augment{Scale: -0.1}, []string{"scale -0.1"}},
		{Augment{Elastic: Elastic{Alpha: 34}}, []string{"elastic sigma 0, want 0.5 to 10"}},
		{Augment{Elastic: Elastic{Alpha: 34, Sigma: 20}}, []string{"elastic sigma 20"}},
		{Augment{Elastic: Elastic{Alpha: -1}}, []string{"elastic alpha -1, want 0 to 1000"}},
		{Augment{Elastic: Elastic{Sigma: 4}}, []string{"elastic sigma 4 without alpha"}},
		{Augment{RotateDeg: -1, CropPad: -1, Scale: 2}, []string{"rotateDeg", "cropPad", "scale"}},
	} {
		err := tc.a.Validate()
		if err == nil {
			t.Errorf("%+v: no error", tc.a)
			continue
		}
		lines := strings.Split(err.Error(), "\n")
		if len(lines) != len(tc.want) {
			t.Errorf("%+v: %d errors %q, want %d", tc.a, len(lines), err, len(tc.want))
			continue
		}
		for i, want := range tc.want {
			if !strings.Contains(lines[i], want) {
				t.Errorf("%+v: error %q, want %q", tc.a, lines[i], want)
			}
		}
	}
}

func TestAugmentJSON(t *testing.T) {
	var a Augment
	spec := `{"rotateDeg":15,"shiftPx":1.5,"cropPad":2,"scale":0.1,"flip":true,"elastic":{"alpha":34,"sigma":4}}`
	if err := json.Unmarshal([]byte(spec), &a); err != nil {
		t.Fatal(err)
	}
	if a != fullAugment {
		t.Errorf("decoded %+v, want %+v", a, fullAugment)
	}
	out, err := json.Marshal(a)
	if err != nil || string(out) != spec {
		t.Errorf("encoded %s, %v, want %s", out, err, spec)
	}
	if out, _ := json.Marshal(Augment{}); string(out) != "{}" {
		t.Errorf("zero Augment encodes as %s", out)
	}
}

func BenchmarkApplyAffine(b *testing.B) {
	benchmarkApply(b, Augment{RotateDeg: 15, ShiftPx: 1.5, CropPad: 2, Scale: 0.1})
}

func BenchmarkApplyElastic(b *testing.B) { benchmarkApply(b, fullAugment) }

func BenchmarkToFloat(b *testing.B) { benchmarkApply(b, Augment{}) }

func benchmarkApply(b *testing.B, a Augment) {
	src := testImage(28, 28)
	dst := make([]float32, len(src))
	b.SetBytes(int64(len(src)))
	for i := 0; b.Loop(); i++ {
		a.Apply(dst, src, 28, 28, 1, 0, int64(i))
	}
}

func TestSigned(t *testing.T) {
	for _, u := range []uint32{0, 1, 255, 256, 1 << 31, 1<<31 + 1, 0xdeadbeef, 0xffffffff} {
		if got, want := signed(u), 2*philox.ToUniform(u)-1; got != want {
			t.Errorf("signed(%#x) = %v, want %v", u, got, want)
		}
		if got, want := signed32(u), 2*philox.ToUniform32(u)-1; got != want {
			t.Errorf("signed32(%#x) = %v, want %v", u, got, want)
		}
	}
}

// Any configuration that passes Validate gives images in [0, 1] without
// panicking, for any image size and key.
func FuzzAugment(f *testing.F) {
	f.Add(15.0, 1.5, 2, 0.1, true, 34.0, 4.0, uint8(28), uint8(28), uint64(1), int64(0), int64(5))
	f.Add(180.0, 100.0, 100, 0.99, false, 1000.0, 0.5, uint8(1), uint8(1), uint64(0), int64(-1), int64(-7))
	f.Add(0.0, 0.0, 0, 0.0, false, 0.0, 0.0, uint8(3), uint8(40), uint64(9), int64(1)<<40, int64(1)<<33)
	f.Fuzz(func(t *testing.T, rot, shift float64, pad int, scale float64, flip bool, alpha, sigma float64,
		rows, cols uint8, seed uint64, epoch, sample int64) {
		a := Augment{RotateDeg: rot, ShiftPx: shift, CropPad: pad, Scale: scale, Flip: flip, Elastic: Elastic{Alpha: alpha, Sigma: sigma}}
		if a.Validate() != nil || rows == 0 || cols == 0 || rows > 48 || cols > 48 {
			return
		}
		src := testImage(int(rows), int(cols))
		dst := make([]float32, len(src))
		a.Apply(dst, src, int(rows), int(cols), seed, epoch, sample)
		for i, v := range dst {
			if !(v >= 0 && v <= 1) {
				t.Fatalf("%+v: pixel %d = %v", a, i, v)
			}
		}
	})
}
