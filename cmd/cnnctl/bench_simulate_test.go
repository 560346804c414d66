package main

import (
	"encoding/json"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dpcnn/dpcnn/benchmark"
)

// The JSON of a simulated series is bench scaling's schema with the
// model beside it, and star and tree train the same parameters (the
// table says nothing of them; the simulate package's tests check it).
func TestBenchSimulateJSON(t *testing.T) {
	plots := t.TempDir()
	stdout, stderr, err := runCLISplit(t, "bench", "simulate", "--workers", "1,16", "--topology", "tree", "--fan-out", "2",
		"--compute-ms", "10", "--steps", "2", "--warmup", "1", "--fail", "3@2", "--json",
		"--plot", plots, "--plot-width", "640", "--plot-height", "400")
	if err != nil {
		t.Fatalf("bench simulate: %v\n%s", err, stderr)
	}
	var s benchmark.Scaling
	if err := json.Unmarshal([]byte(stdout), &s); err != nil {
		t.Fatalf("--json output: %v\n%s", err, stdout)
	}
	m := s.Simulated
	if m == nil || m.Topology != "tree" || m.FanOut != 2 || m.ComputeMs != 10 || len(m.Failures) != 1 || m.Failures[0] != "3@2" {
		t.Fatalf("simulated block %+v: want the tree of fan-out 2, 10 ms and the failure 3@2", m)
	}
	if s.Cluster != "simulated" || s.Mode != "weak" || len(s.Points) != 2 || s.Points[1].Batch != 1600 || s.Points[0].Efficiency != 1 {
		t.Fatalf("result %+v: want two weak-scaling points, the second of batch 1600", s)
	}
	for _, p := range s.Points {
		if d := p.PhasesMs.Sum() - p.StepMs; math.Abs(d) > 1e-6 {
			t.Errorf("%d workers: phases add up to %.4f ms, the step is %.4f", p.Workers, p.PhasesMs.Sum(), p.StepMs)
		}
	}
	if !strings.Contains(stderr, "16 workers, tree:") {
		t.Errorf("no progress line for 16 workers on stderr:\n%s", stderr)
	}
	for _, name := range []string{benchmark.ThroughputPlot, benchmark.PhasesPlot} {
		f, err := os.Open(filepath.Join(plots, name))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil || img.Bounds().Dx() != 640 {
			t.Errorf("%s: %v, %v", name, err, img.Bounds())
		}
	}
}

// Calibrated on the measured emulated run committed beside the README
// (docs/bench: its one-worker point, and its largest point's reduce and
// broadcast per message), the simulated star predicts each measured
// count's throughput within 15%.
func TestBenchSimulateAgreesWithMeasurement(t *testing.T) {
	const measured = "../../docs/bench/scaling-emulated-10gbit.json"
	stdout, stderr, err := runCLISplit(t, "bench", "simulate", "--workers", "1,2,4,8", "--topology", "star",
		"--calibrate", measured, "--json", "-q")
	if err != nil {
		t.Fatalf("bench simulate --calibrate: %v\n%s", err, stderr)
	}
	var s benchmark.Scaling
	if err := json.Unmarshal([]byte(stdout), &s); err != nil {
		t.Fatal(err)
	}
	if s.Simulated == nil || len(s.Simulated.Agreement) != 4 || s.Simulated.CalibratedFrom != measured {
		t.Fatalf("simulated %+v: want agreement at 4 counts, calibrated from %s", s.Simulated, measured)
	}
	if s.Simulated.Link.BitsPerSec != 10e9 || s.Simulated.Link.LatencyMs != 0.2 {
		t.Errorf("link %+v: want the measured run's emulated 10 Gbit/s, 0.2 ms", s.Simulated.Link)
	}
	for _, a := range s.Simulated.Agreement {
		t.Logf("%d workers: measured %.0f images/s, simulated %.0f (%+.1f%%)", a.Workers, a.MeasuredImagesPerSec, a.SimulatedImagesPerSec, 100*a.Error)
		if math.Abs(a.Error) > 0.15 {
			t.Errorf("%d workers: simulated %.0f images/s against %.0f measured: %+.1f%%, want within 15%%",
				a.Workers, a.SimulatedImagesPerSec, a.MeasuredImagesPerSec, 100*a.Error)
		}
	}
}

func TestBenchSimulateRefusesBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--workers", "1,8"}, "--compute-ms: give the measured compute time"},
		{[]string{"--compute-ms", "5", "--topology", "ring"}, `topology "ring"`},
		{[]string{"--compute-ms", "5", "--fail", "3"}, `--fail "3": want WORKER@STEP`},
		{[]string{"--compute-ms", "5", "--fail", "9@1", "--workers", "1,8"}, "failure of worker 9"},
		{[]string{"--compute-ms", "5", "--bandwidth", "fast"}, `--bandwidth "fast"`},
		{[]string{"--compute-ms", "5", "--workers", "1,5000"}, "want 1 to 4096"},
		{[]string{"--compute-ms", "5", "--calibrate", "x.json"}, "--compute-ms and --calibrate"},
		{[]string{"--calibrate", "no-such-file.json"}, "no-such-file.json"},
		{[]string{"--compute-ms", "5", "--workers", "2,2"}, "2 is given twice"},
		{[]string{"--compute-ms", "5", "--delta-apply-ms", "1"}, "--delta-apply-ms goes with --params-delta"},
		{[]string{"--compute-ms", "5", "--slowdown", "3"}, "--slowdown goes with --stragglers"},
		{[]string{"--compute-ms", "5", "--topology", "star", "--fan-out", "8"}, "does not apply to --topology star"},
		{[]string{"--compute-ms", "5", "--params-delta", "2"}, "want a fraction in [0, 1]"},
		{[]string{"--compute-ms", "5", "--net", "nope"}, `unknown built-in network "nope"`},
	} {
		_, _, err := runCLISplit(t, append([]string{"bench", "simulate", "-q"}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v; want an error saying %q", tc.args, err, tc.want)
		}
	}
}
