package benchmark

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// The smallest plot PlotScaling draws: below it titles and ticks crowd out
// the data.
const MinPlotWidth, MinPlotHeight = 320, 240

// The files PlotScaling writes into its folder.
const (
	ThroughputPlot = "scaling-throughput.png"
	PhasesPlot     = "scaling-phases.png"
)

// PlotScaling writes two width × height pixel PNGs of s into dir:
// ThroughputPlot (images/s against workers beside the ideal line, and the
// scaling efficiency below it) and PhasesPlot (each worker count's step
// time as its phases stacked). It returns their paths.
func PlotScaling(s Scaling, dir string, width, height int) ([]string, error) {
	if len(s.Points) == 0 {
		return nil, errors.New("benchmark: no points to plot")
	}
	if width < MinPlotWidth || height < MinPlotHeight {
		return nil, fmt.Errorf("benchmark: plots of %d×%d pixels: want at least %d×%d", width, height, MinPlotWidth, MinPlotHeight)
	}
	title := s.Net + ", " + s.Mode + " scaling"
	if s.Simulated != nil {
		title += ", simulated"
	} else if s.Synthetic {
		title += ", synthetic workers"
	}
	if s.Emulated != nil {
		title += ", emulated links"
	}
	through, err := throughputPlots(s, title)
	if err != nil {
		return nil, err
	}
	phases, err := phasesPlot(s, title)
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, f := range []struct {
		name  string
		plots []*plot.Plot
	}{{ThroughputPlot, through}, {PhasesPlot, []*plot.Plot{phases}}} {
		path := filepath.Join(dir, f.name)
		if err := writePNG(path, f.plots, width, height); err != nil {
			return nil, err
		}
		paths = append(paths, path)
	}
	return paths, nil
}

var (
	measuredColour = color.RGBA{0x30, 0x60, 0xc0, 0xff}
	idealColour    = color.RGBA{0x90, 0x90, 0x90, 0xff}
	comparedColour = color.RGBA{0xd0, 0x40, 0x30, 0xff}
	// phaseColours follow Phases.Values: compute, wait, transfer, reduce,
	// optimizer, broadcast.
	phaseColours = [6]color.Color{
		color.RGBA{0x40, 0x90, 0x40, 0xff}, color.RGBA{0xe0, 0xb0, 0x30, 0xff}, color.RGBA{0x40, 0x80, 0xd0, 0xff},
		color.RGBA{0xc0, 0x50, 0x40, 0xff}, color.RGBA{0x90, 0x50, 0xb0, 0xff}, color.RGBA{0x60, 0x60, 0x60, 0xff},
	}
	dashes     = []vg.Length{vg.Points(4), vg.Points(3)}
	phaseNames = [6]string{"compute", "wait", "transfer", "reduce", "optimizer", "broadcast"}
)

func throughputPlots(s Scaling, title string) ([]*plot.Plot, error) {
	perWorker := s.Points[0].ImagesPerSec / float64(s.Points[0].Workers)
	var measured, ideal, eff plotter.XYs
	for _, p := range s.Points {
		x := float64(p.Workers)
		measured = append(measured, plotter.XY{X: x, Y: p.ImagesPerSec})
		ideal = append(ideal, plotter.XY{X: x, Y: perWorker * x})
		eff = append(eff, plotter.XY{X: x, Y: 100 * p.Efficiency})
	}
	label := "measured"
	var compared, comparedEff plotter.XYs
	if m := s.Simulated; m != nil {
		label = "simulated (" + m.Topology + ")"
		if len(m.Agreement) > 0 {
			first := m.Agreement[0]
			per := first.MeasuredImagesPerSec / float64(first.Workers)
			for _, a := range m.Agreement {
				x := float64(a.Workers)
				compared = append(compared, plotter.XY{X: x, Y: a.MeasuredImagesPerSec})
				comparedEff = append(comparedEff, plotter.XY{X: x, Y: 100 * a.MeasuredImagesPerSec / (per * x)})
			}
		}
	}
	top := newPlot(title, "workers", "images/s")
	bottom := newPlot("scaling efficiency", "workers", "efficiency (%)")
	bottom.Y.Min = 0
	bottom.Y.Max = 110
	for _, l := range []struct {
		p      *plot.Plot
		xys    plotter.XYs
		colour color.Color
		name   string
		dashed bool
	}{{top, ideal, idealColour, "ideal (linear)", true}, {top, measured, measuredColour, label, false}, {bottom, eff, measuredColour, "", false}} {
		line, points, err := plotter.NewLinePoints(l.xys)
		if err != nil {
			return nil, fmt.Errorf("benchmark: plot: %w", err)
		}
		line.Color, points.Color = l.colour, l.colour
		if l.dashed {
			line.Dashes = dashes
		}
		l.p.Add(line, points)
		if l.name != "" {
			l.p.Legend.Add(l.name, line, points)
		}
	}
	if len(compared) > 0 {
		// The measured points the simulation was calibrated on, beside it.
		for i, xys := range []plotter.XYs{compared, comparedEff} {
			points, err := plotter.NewScatter(xys)
			if err != nil {
				return nil, fmt.Errorf("benchmark: plot: %w", err)
			}
			points.Color, points.Shape = comparedColour, draw.CrossGlyph{}
			points.Radius = vg.Points(5)
			if i == 0 {
				top.Add(points)
				top.Legend.Add("measured", points)
			} else {
				bottom.Add(points)
			}
		}
	}
	// Counts that span decades (1 to 4,096 simulated workers) on a log
	// axis, or all but the largest crowd into its corner.
	if lo, hi := s.Points[0].Workers, s.Points[len(s.Points)-1].Workers; lo > 0 && hi >= 32*lo {
		for _, p := range []*plot.Plot{top, bottom} {
			p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
		}
	}
	top.Legend.Top, top.Legend.Left = true, true
	top.Y.Min = 0
	return []*plot.Plot{top, bottom}, nil
}

func phasesPlot(s Scaling, title string) (*plot.Plot, error) {
	p := newPlot(title+": step time by phase", "workers", "ms per step")
	var names []string
	for _, pt := range s.Points {
		names = append(names, strconv.Itoa(pt.Workers))
	}
	p.NominalX(names...)
	var below *plotter.BarChart
	for i := range phaseNames {
		var v plotter.Values
		for _, pt := range s.Points {
			v = append(v, pt.PhasesMs.Values()[i])
		}
		bars, err := plotter.NewBarChart(v, vg.Points(24))
		if err != nil {
			return nil, fmt.Errorf("benchmark: plot: %w", err)
		}
		bars.Color = phaseColours[i]
		bars.LineStyle.Width = 0
		if below != nil {
			bars.StackOn(below)
		}
		below = bars
		p.Add(bars)
		p.Legend.Add(phaseNames[i], bars)
	}
	p.Legend.Top = true
	p.Y.Min = 0
	return p, nil
}

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Add(plotter.NewGrid())
	return p
}

// writePNG draws plots one above the other on a width × height picture.
func writePNG(path string, plots []*plot.Plot, width, height int) error {
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	dpi := max(64, min(96*width/1000, 96*height/600, 192))
	c := vgimg.NewWith(vgimg.UseImage(img), vgimg.UseDPI(dpi))
	dc := draw.New(c)
	tiles := draw.Tiles{Rows: len(plots), Cols: 1, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 4}
	grid := make([][]*plot.Plot, len(plots))
	for i, p := range plots {
		grid[i] = []*plot.Plot{p}
	}
	for j, row := range plot.Align(grid, tiles, dc) {
		for i, tc := range row {
			grid[j][i].Draw(tc)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, c.Image()); err != nil {
		f.Close()
		return fmt.Errorf("benchmark: write %s: %w", path, err)
	}
	return f.Close()
}
