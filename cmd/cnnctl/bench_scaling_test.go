package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dpcnn/dpcnn/benchmark"
)

// runCLISplit runs cnnctl and returns its stdout and stderr apart.
func runCLISplit(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

// Synthetic workers at 1 and 3 workers of an embedded cluster, weak
// scaling: the JSON has the fixed schema, each point's global batch is the
// per-worker batch times its workers, the compute phase is at least the
// synthetic time set (a lower bound: the machine is shared) and within the
// step, the efficiency is the speedup over the
// workers, and the plots decode as PNGs of the size asked for.
func TestBenchScalingSyntheticJSONAndPlots(t *testing.T) {
	plots := t.TempDir()
	stdout, stderr, err := runCLISplit(t, "bench", "scaling", "--synthetic", "--compute-ms", "15", "--workers", "1,3",
		"--net", "deep", "--per-worker-batch", "50", "--micro-batch", "50", "--steps", "4", "--warmup", "1", "--repeat", "2",
		"--json", "--plot", plots, "--plot-width", "640", "--plot-height", "400")
	if err != nil {
		t.Fatalf("bench scaling: %v\n%s", err, stderr)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(stdout), &raw); err != nil {
		t.Fatalf("--json output is not one JSON object: %v\n%s", err, stdout)
	}
	points, _ := raw["points"].([]any)
	if raw["net"] != "deep" || len(points) != 2 {
		t.Fatalf("net %v, %d points; want deep and 2:\n%s", raw["net"], len(points), stdout)
	}
	for _, p := range points {
		pt := p.(map[string]any)
		for _, k := range []string{"workers", "imagesPerSec", "stepMs", "phasesMs", "coordinatorMsPerWorker", "efficiency"} {
			if _, ok := pt[k]; !ok {
				t.Errorf("a point lacks %q: %v", k, pt)
			}
		}
		phases, _ := pt["phasesMs"].(map[string]any)
		for _, k := range []string{"compute", "wait", "transfer", "reduce", "optimizer", "broadcast"} {
			if _, ok := phases[k]; !ok {
				t.Errorf("phasesMs lacks %q: %v", k, phases)
			}
		}
	}
	s, err := benchmark.ReadScalingJSON(strings.NewReader(stdout))
	if err != nil {
		t.Fatal(err)
	}
	if !s.Synthetic || s.ComputeMs != 15 || s.Mode != "weak" || s.Cluster != "embedded" || s.Repeat != 2 || s.Steps != 4 {
		t.Errorf("settings %+v", s)
	}
	for i, pt := range s.Points {
		if pt.Batch != 50*pt.Workers {
			t.Errorf("%d workers: global batch %d, want %d", pt.Workers, pt.Batch, 50*pt.Workers)
		}
		if pt.PhasesMs.Compute < 15 {
			t.Errorf("%d workers: compute %.3f ms, less than the synthetic 15 ms", pt.Workers, pt.PhasesMs.Compute)
		}
		if pt.PhasesMs.Compute > pt.StepMs || !(pt.ImagesPerSec > 0) {
			t.Errorf("%d workers: compute %.3f ms in a step of %.3f ms, %v images/s", pt.Workers, pt.PhasesMs.Compute, pt.StepMs, pt.ImagesPerSec)
		}
		if got := pt.Speedup / float64(pt.Workers); abs(got-pt.Efficiency) > 1e-9 {
			t.Errorf("%d workers: efficiency %v, speedup/workers %v", pt.Workers, pt.Efficiency, got)
		}
		if i == 0 && (pt.Speedup != 1 || pt.Efficiency != 1) {
			t.Errorf("the first point's speedup %v and efficiency %v, want 1", pt.Speedup, pt.Efficiency)
		}
	}
	entries, _ := os.ReadDir(plots)
	if len(entries) == 0 {
		t.Fatal("--plot wrote nothing")
	}
	for _, e := range entries {
		f, err := os.Open(filepath.Join(plots, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		if b := img.Bounds(); b.Dx() != 640 || b.Dy() != 400 {
			t.Errorf("%s: %dx%d, want 640x400", e.Name(), b.Dx(), b.Dy())
		}
	}
	if !strings.Contains(stderr, "round 2/2, 3 workers") {
		t.Errorf("no progress line for the last run:\n%s", stderr)
	}
	// The untimed warm-up job runs first, on the largest count.
	if w, r := strings.Index(stderr, "warm-up job on 3 workers (not counted)"), strings.Index(stderr, "round 1/2"); w < 0 || r < 0 || w > r {
		t.Errorf("no warm-up job on 3 workers before the first round:\n%s", stderr)
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// Strong scaling as a CSV: the header and a row per worker count, every
// point at the --batch given.
func TestBenchScalingCSV(t *testing.T) {
	stdout, stderr, err := runCLISplit(t, "bench", "scaling", "--synthetic", "--compute-ms", "2", "--workers", "1,2",
		"--net", "simple", "--batch", "40", "--micro-batch", "10", "--steps", "3", "--warmup", "1", "--repeat", "1", "--csv", "--quiet")
	if err != nil {
		t.Fatalf("bench scaling --csv: %v\n%s", err, stderr)
	}
	if stderr != "" {
		t.Errorf("--quiet, yet stderr has:\n%s", stderr)
	}
	rows, err := csv.NewReader(strings.NewReader(stdout)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || rows[0][0] != "workers" || rows[1][0] != "1" || rows[2][0] != "2" || rows[1][1] != "40" || rows[2][1] != "40" {
		t.Errorf("CSV rows %q, want a header and the 1- and 2-worker rows at batch 40", rows)
	}
}

func TestBenchScalingRefusesBadFlags(t *testing.T) {
	wantRefusals(t, []string{"bench", "scaling"}, []refusal{
		{[]string{"--workers", "0,2"}, "--workers"},
		{[]string{"--workers", "2,2"}, "given twice"},
		{[]string{"--repeat", "0"}, "--repeat 0"},
		{[]string{"--steps", "0"}, "--steps 0"},
		{[]string{"--synthetic"}, "--compute-ms"},
		{[]string{"--compute-ms", "5"}, "--synthetic"},
		{[]string{"--bandwidth", "1Gbit"}, "--netem"},
		{[]string{"--netem", "--bandwidth", "fast"}, "--bandwidth"},
		{[]string{"--workers", "8", "--batch", "100", "--micro-batch", "25"}, "too few to give each worker one"},
		{[]string{"--per-worker-batch", "30", "--micro-batch", "25"}, "not a multiple"},
		{[]string{"--json", "--csv"}, "choose one"},
		{[]string{"--coordinator", "127.0.0.1:1", "--synthetic", "--compute-ms", "3"}, "real cluster"},
		{[]string{"--params-delta-min-workers", "-1"}, "--params-delta-min-workers -1"},
		{[]string{"--coordinator", "127.0.0.1:1", "--params-delta-min-workers", "2"}, "the coordinator's own flag"},
		{[]string{"--topology", "ring"}, `topology "ring"`},
		{[]string{"--tree-fan-out", "1"}, "--tree-fan-out 1"},
		{[]string{"--coordinator", "127.0.0.1:1", "--topology", "tree"}, "the coordinator's own flags"},
	})
}

func TestParseBitRate(t *testing.T) {
	for in, want := range map[string]float64{"10Gbit": 1e10, "1gbit": 1e9, "500Mbit": 5e8, "64kbit": 64e3, "1000": 1000, "2.5Gbit": 2.5e9} {
		if got, err := parseBitRate(in); err != nil || got != want {
			t.Errorf("parseBitRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "fast", "-1Gbit", "0", "Gbit"} {
		if _, err := parseBitRate(in); err == nil {
			t.Errorf("parseBitRate(%q) took it", in)
		}
	}
}

// Emulated nodes: the workers and the coordinator in network namespaces of
// their own, links of 1 Gbit/s and 2 ms. The result says how the links were
// emulated, and each result's transfer, a round trip through the links,
// takes at least twice the latency (a lower bound only). Needs root and
// iproute2; DPCNN_REQUIRE_NETNS=1 (CI) fails instead of skipping.
func TestBenchScalingNetem(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("DPCNN_REQUIRE_NETNS") == "1" {
			t.Fatal("network namespaces need root (DPCNN_REQUIRE_NETNS=1)")
		}
		t.Skip("network namespaces need root")
	}
	stdout, stderr, err := runCLISplit(t, "bench", "scaling", "--netem", "--bandwidth", "1Gbit", "--latency", "2ms",
		"--synthetic", "--compute-ms", "5", "--workers", "1,2", "--net", "deep", "--per-worker-batch", "50", "--micro-batch", "50",
		"--steps", "3", "--warmup", "1", "--repeat", "1", "--json", "--quiet")
	if err != nil {
		t.Fatalf("bench scaling --netem: %v\n%s", err, stderr)
	}
	s, err := benchmark.ReadScalingJSON(strings.NewReader(stdout))
	if err != nil {
		t.Fatal(err)
	}
	if s.Emulated == nil || s.Emulated.BitsPerSec != 1e9 || s.Emulated.LatencyMs != 2 || s.Emulated.How == "" {
		t.Fatalf("emulated link %+v, want 1 Gbit/s, 2 ms and how", s.Emulated)
	}
	for _, pt := range s.Points {
		if pt.PhasesMs.Transfer < 4 {
			t.Errorf("%d workers: transfer %.3f ms, less than the 4 ms round trip of two 2 ms links", pt.Workers, pt.PhasesMs.Transfer)
		}
	}
}

// The tree on the emulated network: four workers, each on a host of its
// own, push their sums to each other's reduce service and fetch their
// parameters from each other across the shaped links (fan-out 2: two of
// the four fetch from a relay), and no push or fetch fails. Needs root
// and iproute2, as TestBenchScalingNetem.
func TestBenchScalingNetemTree(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("DPCNN_REQUIRE_NETNS") == "1" {
			t.Fatal("network namespaces need root (DPCNN_REQUIRE_NETNS=1)")
		}
		t.Skip("network namespaces need root")
	}
	_, stderr, err := runCLISplit(t, "-v", "bench", "scaling", "--netem", "--bandwidth", "1Gbit", "--latency", "1ms",
		"--synthetic", "--compute-ms", "5", "--workers", "4", "--per-worker-batch", "50", "--micro-batch", "50",
		"--steps", "3", "--warmup", "1", "--repeat", "1", "--topology", "tree", "--tree-fan-out", "2", "--csv", "-q")
	if err != nil {
		t.Fatalf("bench scaling --netem --topology tree: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "topology=tree") {
		t.Errorf("no tree on the emulated network:\n%s", stderr)
	}
	for _, bad := range []string{"reducer unreachable", "parameters not fetched"} {
		if strings.Contains(stderr, bad) {
			t.Errorf("the workers could not reach each other (%q):\n%s", bad, stderr)
		}
	}
	if !strings.Contains(stderr, "served parameters") {
		t.Errorf("no worker served another its parameters:\n%s", stderr)
	}
}

// --params-delta-min-workers reaches the embedded coordinator: with 1 it
// sends deltas to the two workers, and says so.
func TestBenchScalingParamsDeltaThreshold(t *testing.T) {
	_, stderr, err := runCLISplit(t, "-v", "bench", "scaling", "--synthetic", "--compute-ms", "2", "--workers", "2",
		"--per-worker-batch", "50", "--micro-batch", "50", "--steps", "3", "--warmup", "1", "--repeat", "1",
		"--params-delta-min-workers", "1", "--csv", "-q")
	if err != nil {
		t.Fatalf("bench scaling: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "parameters go as deltas") {
		t.Errorf("no deltas with --params-delta-min-workers 1:\n%s", stderr)
	}
}

// --topology tree reaches the embedded coordinator: four workers' sums go
// up a tree of fan-out 2, and the job's log says so; the workers reach
// each other's reduce service over the local cluster's mutual TLS.
func TestBenchScalingTopologyTree(t *testing.T) {
	_, stderr, err := runCLISplit(t, "-v", "bench", "scaling", "--synthetic", "--compute-ms", "2", "--workers", "4",
		"--per-worker-batch", "50", "--micro-batch", "50", "--steps", "3", "--warmup", "1", "--repeat", "1",
		"--topology", "tree", "--tree-fan-out", "2", "--csv", "-q")
	if err != nil {
		t.Fatalf("bench scaling: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "topology chosen") || !strings.Contains(stderr, "topology=tree") {
		t.Errorf("no tree with --topology tree:\n%s", stderr)
	}
	if strings.Contains(stderr, "reducer unreachable") {
		t.Errorf("the workers could not push to each other:\n%s", stderr)
	}
}
