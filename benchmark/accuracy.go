package benchmark

import (
	"encoding/csv"
	"fmt"
	"image/color"
	"io"
	"math"
	"path/filepath"
	"strconv"
	"text/tabwriter"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
)

// Accuracy is the result of `cnnctl bench accuracy`: time to a test
// accuracy, MLPerf-style, over seeded runs.
type Accuracy struct {
	Net    string  `json:"net"`
	Target float64 `json:"target"`
	// Workers is the worker count of the embedded cluster (0 on a real
	// one); Cluster says where it ran, Machine on what.
	Workers int           `json:"workers,omitempty"`
	Cluster string        `json:"cluster"`
	Machine string        `json:"machine,omitempty"`
	Runs    []AccuracyRun `json:"runs"`
	// Reached and NotReached count the runs; OlympicMeanSeconds is the
	// mean time of the runs that reached the target without the fastest
	// and the slowest (the plain mean below three), NaN-free: 0 when none
	// did. Spread is over the same reached runs.
	Reached            int     `json:"reached"`
	NotReached         int     `json:"notReached"`
	OlympicMeanSeconds float64 `json:"olympicMeanSeconds"`
	Spread             Spread  `json:"spread"`
}

// AccuracyRun is one seeded run: whether and when it first reached the
// target (wall time from before the data was touched, evaluation
// included), and the parameters' hash at its end, which pins the run.
type AccuracyRun struct {
	Seed         uint64          `json:"seed"`
	Reached      bool            `json:"reached"`
	Seconds      float64         `json:"seconds"` // to the target; the whole run's time when not reached
	Step         int64           `json:"step"`
	Epoch        int64           `json:"epoch"`
	BestAccuracy float64         `json:"bestAccuracy"`
	ParamsSHA256 string          `json:"paramsSha256"`
	Curve        []AccuracyPoint `json:"curve"` // every evaluation
}

// AccuracyPoint is one evaluation of a run.
type AccuracyPoint struct {
	Seconds  float64 `json:"seconds"`
	Step     int64   `json:"step"`
	Accuracy float64 `json:"accuracy"`
}

// Summarize counts the runs and fills the olympic mean and spread of the
// reached runs' times.
func (a *Accuracy) Summarize() {
	var times []float64
	a.Reached, a.NotReached = 0, 0
	for _, r := range a.Runs {
		if r.Reached {
			a.Reached++
			times = append(times, r.Seconds)
		} else {
			a.NotReached++
		}
	}
	a.OlympicMeanSeconds, a.Spread = 0, SpreadOf(times)
	if m := OlympicMean(times); !math.IsNaN(m) {
		a.OlympicMeanSeconds = m
	}
}

// WriteAccuracyTable writes a for a terminal.
func WriteAccuracyTable(w io.Writer, a Accuracy) error {
	fmt.Fprintf(w, "%s to test accuracy %.4f; cluster: %s; machine: %s\n\n", a.Net, a.Target, a.Cluster, a.Machine)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "seed\treached\tseconds\tstep\tepoch\tbest accuracy\tparams sha256")
	for _, r := range a.Runs {
		fmt.Fprintf(tw, "%d\t%v\t%.1f\t%d\t%d\t%.4f\t%s\n", r.Seed, r.Reached, r.Seconds, r.Step, r.Epoch, r.BestAccuracy, r.ParamsSHA256)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\n%d of %d runs reached %.4f; olympic mean %.1f s (min %.1f, max %.1f, stddev %.1f)\n",
		a.Reached, len(a.Runs), a.Target, a.OlympicMeanSeconds, a.Spread.Min, a.Spread.Max, a.Spread.StdDev)
	return err
}

// WriteAccuracyJSON writes a as indented JSON.
func WriteAccuracyJSON(w io.Writer, a Accuracy) error { return writeJSON(w, a) }

// ReadAccuracyJSON reads what WriteAccuracyJSON wrote, refusing unknown
// fields.
func ReadAccuracyJSON(r io.Reader) (Accuracy, error) {
	return readJSON[Accuracy](r, "an accuracy result")
}

// AccuracyCSVHeader is the first row WriteAccuracyCSV writes.
var AccuracyCSVHeader = []string{"seed", "reached", "seconds", "step", "epoch", "bestAccuracy", "paramsSha256"}

// WriteAccuracyCSV writes one row per run under AccuracyCSVHeader.
func WriteAccuracyCSV(w io.Writer, a Accuracy) error {
	cw := csv.NewWriter(w)
	cw.Write(AccuracyCSVHeader)
	for _, r := range a.Runs {
		cw.Write([]string{strconv.FormatUint(r.Seed, 10), strconv.FormatBool(r.Reached), strconv.FormatFloat(r.Seconds, 'g', -1, 64),
			strconv.FormatInt(r.Step, 10), strconv.FormatInt(r.Epoch, 10), strconv.FormatFloat(r.BestAccuracy, 'g', -1, 64), r.ParamsSHA256})
	}
	cw.Flush()
	return cw.Error()
}

// AccuracyPlot is the file PlotAccuracy writes into its folder.
const AccuracyPlot = "accuracy-time.png"

// PlotAccuracy writes a width × height PNG of every run's test accuracy
// against wall time, with the target as a dashed line, into dir.
func PlotAccuracy(a Accuracy, dir string, width, height int) (string, error) {
	if len(a.Runs) == 0 {
		return "", fmt.Errorf("benchmark: no runs to plot")
	}
	if width < MinPlotWidth || height < MinPlotHeight {
		return "", fmt.Errorf("benchmark: plots of %d×%d pixels: want at least %d×%d", width, height, MinPlotWidth, MinPlotHeight)
	}
	p := newPlot(fmt.Sprintf("%s: test accuracy against wall time (target %.4f)", a.Net, a.Target), "wall time (s)", "test accuracy")
	maxT := 0.0
	for i, r := range a.Runs {
		var xys plotter.XYs
		for _, c := range r.Curve {
			xys = append(xys, plotter.XY{X: c.Seconds, Y: c.Accuracy})
			maxT = max(maxT, c.Seconds)
		}
		if len(xys) == 0 {
			continue
		}
		line, points, err := plotter.NewLinePoints(xys)
		if err != nil {
			return "", fmt.Errorf("benchmark: plot: %w", err)
		}
		c := phaseColours[i%len(phaseColours)]
		line.Color, points.Color = c, c
		p.Add(line, points)
		p.Legend.Add("seed "+strconv.FormatUint(r.Seed, 10), line, points)
	}
	target, err := plotter.NewLine(plotter.XYs{{X: 0, Y: a.Target}, {X: max(maxT, 1), Y: a.Target}})
	if err != nil {
		return "", fmt.Errorf("benchmark: plot: %w", err)
	}
	target.Color = color.RGBA{0x90, 0x90, 0x90, 0xff}
	target.Dashes = dashes
	p.Add(target)
	p.Legend.Add("target", target)
	p.Legend.Top = false
	p.Legend.Left = false
	path := filepath.Join(dir, AccuracyPlot)
	return path, writePNG(path, []*plot.Plot{p}, width, height)
}
