package main

import (
	"encoding/csv"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dpcnn/dpcnn/benchmark"
)

// Three seeded runs of a small job on the embedded cluster against a
// target it reaches within its epochs: every run reached it and stopped at
// its first evaluation at the target, with its parameters' hash; the olympic mean lies within the
// runs' times; the JSON reads back strictly and the plot decodes at the
// asked size. The same seed twice gives the same hash.
func TestBenchAccuracyReachedRuns(t *testing.T) {
	plots := t.TempDir()
	args := []string{"bench", "accuracy", "--net", "simple", "--epochs", "4", "--batch", "100", "--micro-batch", "50",
		"--train-limit", "1000", "--test-limit", "200", "--target", "0.4", "--workers", "2", "--threads", "2"}
	stdout, stderr, err := runCLISplit(t, append(args, "--seeds", "3", "--json", "--plot", plots, "--plot-width", "640", "--plot-height", "400")...)
	if err != nil {
		t.Fatalf("bench accuracy: %v\n%s", err, stderr)
	}
	a, err := benchmark.ReadAccuracyJSON(strings.NewReader(stdout))
	if err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	if len(a.Runs) != 3 || a.Reached != 3 || a.NotReached != 0 || a.Target != 0.4 || a.Net != "simple" {
		t.Fatalf("result %+v", a)
	}
	for i, r := range a.Runs {
		if r.Seed != uint64(1+i) || !r.Reached || len(r.ParamsSHA256) != 64 || len(r.Curve) == 0 || r.Seconds <= 0 {
			t.Fatalf("run %d: %+v; want seed %d reached, with a params hash", i, r, 1+i)
		}
		// The run stops at the first evaluation at the target.
		last := r.Curve[len(r.Curve)-1]
		for _, c := range r.Curve[:len(r.Curve)-1] {
			if c.Accuracy >= a.Target {
				t.Errorf("run %d: reached %g at step %d, but timed to step %d", i, c.Accuracy, c.Step, r.Step)
			}
		}
		if last.Accuracy < a.Target || last.Step != r.Step || last.Seconds != r.Seconds || r.Epoch != int64(len(r.Curve)) {
			t.Errorf("run %d: %+v: its time and step are not those of its first evaluation at the target", i, r)
		}
	}
	if a.OlympicMeanSeconds < a.Spread.Min || a.OlympicMeanSeconds > a.Spread.Max {
		t.Errorf("olympic mean %g outside the runs' %g … %g", a.OlympicMeanSeconds, a.Spread.Min, a.Spread.Max)
	}
	if f, err := os.Open(filepath.Join(plots, benchmark.AccuracyPlot)); err != nil {
		t.Fatal(err)
	} else {
		img, err := png.Decode(f)
		f.Close()
		if err != nil || img.Bounds().Dx() != 640 || img.Bounds().Dy() != 400 {
			t.Fatalf("plot: %v, %v; want a 640x400 PNG", err, img.Bounds())
		}
	}
	again, _, err := runCLISplit(t, append(args, "--seeds", "1", "--csv")...)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(strings.NewReader(again)).ReadAll()
	if err != nil || len(rows) != 2 || strings.Join(rows[0], ",") != strings.Join(benchmark.AccuracyCSVHeader, ",") {
		t.Fatalf("csv %q, %v", again, err)
	}
	if rows[1][6] != a.Runs[0].ParamsSHA256 {
		t.Errorf("seed 1 twice: parameters %s and %s", a.Runs[0].ParamsSHA256, rows[1][6])
	}
}

// A target no run reaches is counted as not reached, the run ending with
// its job; the table says so.
func TestBenchAccuracyCountsRunsNotReached(t *testing.T) {
	stdout, stderr, err := runCLISplit(t, "bench", "accuracy", "--net", "simple", "--epochs", "1", "--batch", "100", "--micro-batch", "50",
		"--train-limit", "500", "--test-limit", "100", "--target", "1", "--seeds", "1", "--workers", "1", "--threads", "1")
	if err != nil {
		t.Fatalf("bench accuracy: %v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, "0 of 1 runs reached 1.0000") || !strings.Contains(stdout, "false") {
		t.Errorf("table:\n%s", stdout)
	}
}

func TestBenchAccuracyRefusesBadFlags(t *testing.T) {
	wantRefusals(t, []string{"bench", "accuracy"}, []refusal{
		{[]string{"--target", "1.5"}, "--target 1.5"},
		{[]string{"--target", "0"}, "--target 0"},
		{[]string{"--seeds", "0"}, "--seeds 0"},
		{[]string{"--json", "--csv"}, "choose one"},
		{[]string{"--eval-every", "2"}, "--eval-every 2"},
	})
}
