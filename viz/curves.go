package viz

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Point is one progress report of a training run.
type Point struct {
	Step    int64         // optimizer steps applied
	Epoch   int64         // 1-based epoch of the step; 0 for a report of an evaluation alone
	Elapsed time.Duration // training time when reported
	// Loss and TrainAccuracy are the step's own, over its global batch.
	Loss, TrainAccuracy float64
	// LR is the learning rate the step applied; 0 when unknown.
	LR float64
	// TestAccuracy is meaningful only when Evaluated: not every step is
	// followed by an evaluation.
	TestAccuracy float64
	Evaluated    bool
}

// History is a run's progress reports, oldest first.
type History struct {
	Points []Point
	// TrainAccuracyConditions is what the training accuracy is measured
	// under (job.Spec.TrainAccuracyConditions, e.g. "dropout on"); ""
	// when it is the test-time network on the training images as they are.
	TrainAccuracyConditions string
}

// The smallest picture Curves draws: below it the four panels' titles,
// ticks and labels crowd out the data and each other.
const (
	MinCurvesWidth  = 480
	MinCurvesHeight = 320
)

// curvesDPI is the resolution of a width × height picture: text and
// lines keep their size relative to the picture, as at 96 DPI in
// 1200 × 800 pixels, within limits that keep small text readable and
// large text in proportion.
func curvesDPI(width, height int) int {
	dpi := min(96*width/1200, 96*height/800)
	return max(64, min(dpi, 192))
}

// Curves writes a width × height pixel PNG of h in four panels: loss
// against step (top left), training and test accuracy against step (top
// right), and the same two against wall time in seconds (below). From
// 120 steps on, the steps' values are drawn faint under their running
// mean (smoothingWindow). Losses and accuracies that are not finite (a
// diverged run) are left out. The same history gives the same bytes.
func Curves(w io.Writer, h History, width, height int) error {
	if len(h.Points) == 0 {
		return errors.New("viz: no progress reports to draw curves of (empty history)")
	}
	if width < MinCurvesWidth || height < MinCurvesHeight {
		return fmt.Errorf("viz: curves of %d×%d pixels: want at least %d×%d", width, height, MinCurvesWidth, MinCurvesHeight)
	}
	trainLabel := "train"
	if h.TrainAccuracyConditions != "" {
		trainLabel = fmt.Sprintf("train (%s)", h.TrainAccuracyConditions)
	}
	step := func(p Point) float64 { return float64(p.Step) }
	wall := func(p Point) float64 { return p.Elapsed.Seconds() }
	steps := 0
	for _, p := range h.Points {
		if trainReport(p) {
			steps++
		}
	}
	// A step's loss and accuracy are of one batch, too noisy to read
	// a trend off: with many steps they are drawn faint under their
	// running mean.
	window := smoothingWindow(steps)
	note := ""
	if window > 1 {
		note = fmt.Sprintf("\n(faint: each step; solid: mean of %d)", window)
	}
	var plots [2][2]*plot.Plot
	for row, x := range []struct {
		label string
		of    func(Point) float64
		by    string
	}{{"step", step, "step"}, {"wall time (s)", wall, "wall time"}} {
		loss := curvesPlot("loss by "+x.by+note, x.label, "loss")
		if err := addSteps(loss, series(h.Points, x.of, trainReport, func(p Point) float64 { return p.Loss }), window, "", lossColour); err != nil {
			return err
		}
		acc := curvesPlot("accuracy by "+x.by+note, x.label, "accuracy")
		if err := addSteps(acc, series(h.Points, x.of, trainReport, func(p Point) float64 { return p.TrainAccuracy }), window, trainLabel, trainColour); err != nil {
			return err
		}
		if err := addEvaluations(acc, series(h.Points, x.of, func(p Point) bool { return p.Evaluated }, func(p Point) float64 { return p.TestAccuracy }), "test", testColour); err != nil {
			return err
		}
		acc.Legend.Top = false // accuracy rises: the lower right is where the lines are not
		acc.Legend.Left = false
		acc.Legend.XOffs, acc.Legend.YOffs = -vg.Millimeter*2, vg.Millimeter*2 // off the axes
		plots[row] = [2]*plot.Plot{loss, acc}
	}

	img := image.NewRGBA(image.Rect(0, 0, width, height))
	c := vgimg.NewWith(vgimg.UseImage(img), vgimg.UseDPI(curvesDPI(width, height)))
	dc := draw.New(c)
	tiles := draw.Tiles{Rows: 2, Cols: 2, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 4}
	grid := [][]*plot.Plot{plots[0][:], plots[1][:]}
	for j, row := range plot.Align(grid, tiles, dc) {
		for i, tc := range row {
			grid[j][i].Draw(tc)
		}
	}
	// The best compression of few colours: anti-aliased lines in full
	// colour make PNGs three times the size.
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(w, paletted(c.Image())); err != nil {
		return fmt.Errorf("viz: write curves: %w", err)
	}
	return nil
}

var (
	lossColour  = color.RGBA{0xc0, 0x30, 0x20, 0xff}
	trainColour = color.RGBA{0x40, 0x70, 0xc0, 0xff}
	testColour  = color.RGBA{0x20, 0x90, 0x30, 0xff}
)

// trainReport says whether p reports a training step: a report of an
// evaluation alone has no loss or training accuracy of its own.
func trainReport(p Point) bool { return p.Epoch > 0 }

func curvesPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Add(plotter.NewGrid())
	return p
}

// series is the (x, y) of the points that have the value, finite ones
// only (plotter refuses NaN and infinities).
func series(points []Point, x func(Point) float64, has func(Point) bool, y func(Point) float64) plotter.XYs {
	var xys plotter.XYs
	for _, p := range points {
		if !has(p) {
			continue
		}
		px, py := x(p), y(p)
		if math.IsNaN(px) || math.IsInf(px, 0) || math.IsNaN(py) || math.IsInf(py, 0) {
			continue
		}
		xys = append(xys, plotter.XY{X: px, Y: py})
	}
	return xys
}

// smoothingWindow is the number of steps of the running mean drawn over
// n steps: about a fortieth of them, odd so it is centred on a step; 1
// (none) for few steps.
func smoothingWindow(n int) int {
	w := n / 40
	if w < 3 {
		return 1
	}
	return w | 1
}

// runningMean is the mean of each point's y and its neighbours', window
// points in all (fewer at the ends), at the point's x.
func runningMean(xys plotter.XYs, window int) plotter.XYs {
	half := window / 2
	out := make(plotter.XYs, len(xys))
	for i := range xys {
		lo, hi := max(0, i-half), min(len(xys), i+half+1)
		sum := 0.0
		for _, p := range xys[lo:hi] {
			sum += p.Y
		}
		out[i] = plotter.XY{X: xys[i].X, Y: sum / float64(hi-lo)}
	}
	return out
}

// addSteps adds a per-step series to p: a line, or with window > 1 the
// line faint and its running mean over it. The legend entry, when label
// is not empty, is the solid line.
func addSteps(p *plot.Plot, xys plotter.XYs, window int, label string, c color.RGBA) error {
	if len(xys) == 0 {
		return nil // nothing of this series to draw
	}
	solid := xys
	if window > 1 {
		if _, err := addLine(p, xys, tint(c), vg.Points(0.75)); err != nil {
			return fmt.Errorf("viz: curve %q: %w", label, err)
		}
		solid = runningMean(xys, window)
	}
	l, err := addLine(p, solid, c, vg.Points(1.25))
	if err != nil {
		return fmt.Errorf("viz: curve %q: %w", label, err)
	}
	if label != "" {
		p.Legend.Add(label, l)
	}
	return nil
}

// addEvaluations adds the test accuracies to p, a line through dots:
// evaluations are few, and a lone one makes no line.
func addEvaluations(p *plot.Plot, xys plotter.XYs, label string, c color.RGBA) error {
	if len(xys) == 0 {
		return nil // no evaluation yet
	}
	l, err := addLine(p, xys, c, vg.Points(1.25))
	if err != nil {
		return fmt.Errorf("viz: curve %q: %w", label, err)
	}
	s, err := plotter.NewScatter(xys)
	if err != nil {
		return fmt.Errorf("viz: curve %q: %w", label, err)
	}
	s.GlyphStyle.Color = c
	s.GlyphStyle.Shape = draw.CircleGlyph{}
	s.GlyphStyle.Radius = vg.Points(2.5)
	p.Add(s)
	p.Legend.Add(label, l, s)
	return nil
}

// tint is c a third as strong, on white: opaque, so faint lines that
// cross stay as faint.
func tint(c color.RGBA) color.RGBA {
	t := func(v uint8) uint8 { return 0xff - (0xff-v)/3 }
	return color.RGBA{t(c.R), t(c.G), t(c.B), 0xff}
}

func addLine(p *plot.Plot, xys plotter.XYs, c color.Color, width vg.Length) (*plotter.Line, error) {
	l, err := plotter.NewLine(xys)
	if err != nil {
		return nil, err
	}
	l.Color = c
	l.Width = width
	p.Add(l)
	return l, nil
}

// curvesPalette is every colour of a curves picture: greys for text, axes
// and grid, and each curve's colour blended with white, for its tint and
// its anti-aliased edges.
var curvesPalette = func() color.Palette {
	var p color.Palette
	const levels = 16
	for i := range levels {
		v := uint8(0xff * i / (levels - 1))
		p = append(p, color.RGBA{v, v, v, 0xff})
	}
	for _, c := range []color.RGBA{lossColour, trainColour, testColour} {
		for i := 1; i < levels; i++ { // i = 0 is white, a grey already
			mix := func(v uint8) uint8 { return uint8(0xff - (0xff-int(v))*i/(levels-1)) }
			p = append(p, color.RGBA{mix(c.R), mix(c.G), mix(c.B), 0xff})
		}
	}
	return p
}()

// paletted is img in curvesPalette, each pixel its nearest colour.
func paletted(img image.Image) *image.Paletted {
	b := img.Bounds()
	out := image.NewPaletted(b, curvesPalette)
	near := map[color.Color]uint8{} // most pixels are one of a few colours
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := img.At(x, y)
			i, ok := near[c]
			if !ok {
				i = uint8(curvesPalette.Index(c))
				near[c] = i
			}
			out.SetColorIndex(x, y, i)
		}
	}
	return out
}
