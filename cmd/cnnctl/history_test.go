package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dpcnn/dpcnn/model"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
	"github.com/dpcnn/dpcnn/viz"
)

// historyLines reads a history.jsonl's header and lines as JSON, with no
// help from readHistory.
func historyLines(t *testing.T, path string) (historyHeader, []map[string]any) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var hd historyHeader
	var lines []map[string]any
	sc := bufio.NewScanner(f)
	for n := 0; sc.Scan(); n++ {
		if n == 0 {
			if err := json.Unmarshal(sc.Bytes(), &hd); err != nil {
				t.Fatalf("%s header: %v", path, err)
			}
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%s:%d: %v", path, n+1, err)
		}
		lines = append(lines, m)
	}
	return hd, lines
}

// checkCurvesPNG draws history with cnnctl viz curves and checks the
// picture.
func checkCurvesPNG(t *testing.T, history string) {
	t.Helper()
	png1 := filepath.Join(t.TempDir(), "curves.png")
	out, err := runCLI(t, "viz", "curves", "--history", history, "-o", png1, "--width", "900", "--height", "600")
	if err != nil {
		t.Fatalf("viz curves: %v\n%s", err, out)
	}
	if strings.TrimSpace(out) != png1 {
		t.Errorf("viz curves printed %q, want the path %s", out, png1)
	}
	checkPNGSize(t, png1, 900, 600)
}

func checkPNGSize(t *testing.T, path string, width, height int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: not a PNG: %v", path, err)
	}
	if s := img.Bounds().Size(); s.X != width || s.Y != height {
		t.Errorf("%s is %v, want %dx%d", path, s, width, height)
	}
}

// Both ways of cnnctl train write a history of the run that viz curves
// draws: 200 images in batches of 50 are 4 steps, evaluated after the
// last.
func TestTrainWritesHistoryCurves(t *testing.T) {
	args := []string{"train", "--net", "simple", "--epochs", "1", "--batch", "50", "--train-limit", "200", "--test-limit", "100", "--rotate", "5",
		"--lr", "0.004", "--schedule", "cosine"}
	for _, mode := range []struct {
		name  string
		flags []string
	}{{"in-process", []string{"--in-process"}}, {"local cluster", nil}} {
		t.Run(mode.name, func(t *testing.T) {
			dir := t.TempDir()
			out, err := runCLI(t, append(append(args, mode.flags...), "--out", dir)...)
			if err != nil {
				t.Fatalf("train: %v\n%s", err, out)
			}
			path := filepath.Join(dir, historyFile)
			if !strings.Contains(out, "history: "+path) {
				t.Errorf("train output does not name %s:\n%s", path, out)
			}
			hd, lines := historyLines(t, path)
			if hd.Format != historyFormat || hd.TrainAccuracyConditions != "augmented" {
				t.Errorf("header %+v, want format %s and augmented", hd, historyFormat)
			}
			// In process every step reports; a watcher of the cluster
			// may miss a plain report should it fall behind, never the
			// evaluated one.
			if mode.flags != nil && len(lines) != 4 || len(lines) < 1 || len(lines) > 4 {
				t.Fatalf("%d lines of steps, want 4:\n%v", len(lines), lines)
			}
			prev, prevLR := 0.0, 1.0
			for i, l := range lines {
				step, _ := l["step"].(float64)
				_, evaluated := l["testAccuracy"]
				if step <= prev || l["epoch"] != 1.0 || l["loss"] == nil || l["trainAccuracy"] == nil || evaluated != (i == len(lines)-1) {
					t.Errorf("line %d: %v", i+2, l)
				}
				// The cosine schedule's rates, from the base down.
				lr, _ := l["lr"].(float64)
				if want := (model.LRSchedule{Type: model.ScheduleCosine}).Rate(0.004, int64(step)-1, model.Horizon{PerEpoch: 4, Total: 4}); lr != want || lr >= prevLR {
					t.Errorf("line %d: lr %v, want %v, below the last line's %v", i+2, lr, want, prevLR)
				}
				prev, prevLR = step, lr
			}
			// (In process, where every step reports.)
			if !strings.Contains(out, " lr 0.004 ") && mode.flags != nil {
				t.Errorf("the progress lines do not show the first step's rate 0.004:\n%s", out)
			}
			if last := lines[len(lines)-1]; last["step"] != 4.0 {
				t.Errorf("the last line is of step %v, want 4", last["step"])
			}
			h, err := readHistory(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(h.Points) != len(lines) || !h.Points[len(h.Points)-1].Evaluated || h.TrainAccuracyConditions != "augmented" {
				t.Errorf("readHistory: %+v", h)
			}
			checkCurvesPNG(t, path)
		})
	}
}

// A job's retained events make its history: the progress reports, a
// step once, the latest report last.
func TestHistoryOfEvents(t *testing.T) {
	progress := func(step, epoch int64, eval *dpcnnv1.Evaluation) *dpcnnv1.JobEvent {
		return &dpcnnv1.JobEvent{Kind: &dpcnnv1.JobEvent_Progress{Progress: &dpcnnv1.JobProgress{
			GlobalStep: step, Epoch: epoch, ElapsedNanos: step * int64(time.Second), Loss: 2 / float64(step), TrainAccuracy: 0.1 * float64(step), Evaluation: eval}}}
	}
	eval := func(step int64, acc float64) *dpcnnv1.Evaluation {
		return &dpcnnv1.Evaluation{GlobalStep: step, TestAccuracy: acc}
	}
	events := []*dpcnnv1.JobEvent{
		{Kind: &dpcnnv1.JobEvent_StateChange{StateChange: &dpcnnv1.StateChange{NewState: dpcnnv1.JobState_JOB_STATE_RUNNING}}},
		progress(2, 1, nil),         // a new leader's stand-in for the history it lost
		progress(2, 1, eval(2, .5)), // the same step, now with its evaluation
		{Kind: &dpcnnv1.JobEvent_Log{Log: &dpcnnv1.LogLine{Message: "slow"}}},
		progress(4, 2, eval(4, .7)),
		progress(3, 2, eval(3, .6)), // redone after a restart: the first is kept
		progress(4, 2, eval(4, .7)), // seen twice
	}
	h := historyOfEvents(events, progress(5, 3, nil).GetProgress(), "augmented")
	want := []viz.Point{
		{Step: 2, Epoch: 1, Elapsed: 2 * time.Second, Loss: 1, TrainAccuracy: 0.2},
		{Step: 2, Epoch: 1, Elapsed: 2 * time.Second, Loss: 1, TrainAccuracy: 0.2, Evaluated: true, TestAccuracy: .5},
		{Step: 4, Epoch: 2, Elapsed: 4 * time.Second, Loss: .5, TrainAccuracy: 0.4, Evaluated: true, TestAccuracy: .7},
		{Step: 5, Epoch: 3, Elapsed: 5 * time.Second, Loss: .4, TrainAccuracy: 0.5},
	}
	if h.TrainAccuracyConditions != "augmented" || len(h.Points) != len(want) {
		t.Fatalf("history %+v, want the points %+v", h, want)
	}
	for i := range want {
		if g, w := h.Points[i], want[i]; g.Step != w.Step || g.Epoch != w.Epoch || g.Elapsed != w.Elapsed || g.Evaluated != w.Evaluated ||
			math.Abs(g.Loss-w.Loss) > 1e-12 || math.Abs(g.TrainAccuracy-w.TrainAccuracy) > 1e-12 || g.TestAccuracy != w.TestAccuracy {
			t.Errorf("point %d = %+v, want %+v", i, g, w)
		}
	}
	// The latest report is left out when an event already has it.
	if h := historyOfEvents(events, progress(4, 2, eval(4, .7)).GetProgress(), ""); len(h.Points) != 3 {
		t.Errorf("latest report seen again: %d points, want 3", len(h.Points))
	}
	if h := historyOfEvents(nil, nil, ""); len(h.Points) != 0 {
		t.Errorf("no events: %+v", h)
	}
}

// A history survives its file: what the writer writes the reader reads,
// a diverged loss included.
func TestHistoryRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", historyFile)
	w, err := createHistory(path, "dropout on, augmented")
	if err != nil {
		t.Fatal(err)
	}
	w.addEvent(progress4(1, nil))
	w.addEvent(&dpcnnv1.JobEvent{Kind: &dpcnnv1.JobEvent_Log{Log: &dpcnnv1.LogLine{Message: "not history"}}})
	w.addEvent(progress4(2, &dpcnnv1.Evaluation{TestAccuracy: 0.25}))
	w.addEvent(progress4(2, &dpcnnv1.Evaluation{TestAccuracy: 0.25})) // seen twice
	nan := progress4(3, nil)
	nan.GetProgress().Loss = math.NaN()
	w.addEvent(nan)
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
	if err := w.close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	h, err := readHistory(path)
	if err != nil {
		t.Fatal(err)
	}
	if h.TrainAccuracyConditions != "dropout on, augmented" || len(h.Points) != 3 {
		t.Fatalf("read %+v", h)
	}
	p := h.Points
	if p[0].Step != 1 || p[0].Evaluated || p[1].Step != 2 || !p[1].Evaluated || p[1].TestAccuracy != 0.25 ||
		p[1].Elapsed != 2*time.Second || p[1].Loss != 0.5 || !math.IsNaN(p[2].Loss) {
		t.Errorf("read %+v", p)
	}
}

func progress4(step int64, eval *dpcnnv1.Evaluation) *dpcnnv1.JobEvent {
	return &dpcnnv1.JobEvent{Kind: &dpcnnv1.JobEvent_Progress{Progress: &dpcnnv1.JobProgress{
		GlobalStep: step, Epoch: 1, ElapsedNanos: step * int64(time.Second), Loss: 1 / float64(step), TrainAccuracy: 0.5, Evaluation: eval}}}
}

// What is not a history is refused, naming the file and the line.
func TestHistoryCorruptLine(t *testing.T) {
	dir := t.TempDir()
	header := `{"format":"dpcnn-history-v1","trainAccuracyConditions":""}` + "\n"
	good := `{"step":1,"epoch":1,"elapsedSeconds":0.5,"loss":2.3,"trainAccuracy":0.1}` + "\n"
	for _, c := range []struct {
		name, text, want string
	}{
		{"truncated", header + good + `{"step":2,"epoch":1,"elaps`, "bad.jsonl:3: "},
		{"not json", header + good + good + "step 3 loss 2\n", "bad.jsonl:4: "},
		{"unknown field", header + `{"step":1,"epoch":1,"elapsedSeconds":0.5,"loss":2.3,"trainAccuracy":0.1,"momentum":0.9}` + "\n", `bad.jsonl:2: json: unknown field "momentum"`},
		{"two values", header + strings.TrimSpace(good) + good, "bad.jsonl:2: more than one JSON value"},
		{"negative step", header + `{"step":-1,"epoch":1,"elapsedSeconds":0.5,"loss":2.3,"trainAccuracy":0.1}` + "\n", "bad.jsonl:2: step -1"},
		{"no header", good, "bad.jsonl:1: not a training history"},
		{"events, not history", `{"sequence":"1","jobId":"x","stateChange":{}}` + "\n", "bad.jsonl:1: not a training history"},
		{"empty", "", "bad.jsonl: empty"},
		{"no steps yet", header, "no progress reports yet"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, "bad.jsonl")
			if err := os.WriteFile(path, []byte(c.text), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := readHistory(path); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want one containing %q", err, c.want)
			}
			// cnnctl viz curves says the same and writes nothing.
			png1 := filepath.Join(dir, "x.png")
			if _, err := runCLI(t, "viz", "curves", "--history", path, "-o", png1); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("viz curves: err = %v, want one containing %q", err, c.want)
			}
			if _, err := os.Stat(png1); err == nil {
				t.Errorf("viz curves wrote %s from a bad history", png1)
			}
		})
	}
}

// viz curves --job draws a job on a coordinator from its events.
func TestVizCurvesOfJob(t *testing.T) {
	addr := serveFake(t, &fakeCoordinator{})
	path := filepath.Join(t.TempDir(), "job.png")
	out, err := runCLI(t, "viz", "curves", "--job", "job-1", "--coordinator", addr, "-o", path, "--width", "640", "--height", "480")
	if err != nil {
		t.Fatalf("viz curves --job: %v\n%s", err, out)
	}
	checkPNGSize(t, path, 640, 480)
	if _, err := runCLI(t, "viz", "curves", "--job", "nosuchjob", "--coordinator", addr, "-o", path); err == nil || !strings.Contains(err.Error(), "nosuchjob") {
		t.Errorf("an unknown job: %v", err)
	}
}

func TestVizCurvesFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "--history FILE"},
		{[]string{"--history", "h.jsonl", "--job", "j"}, "one of them"},
		{[]string{"--history", "h.jsonl", "--width", "10"}, "want at least"},
		{[]string{"--history", filepath.Join(t.TempDir(), "none.jsonl")}, "none.jsonl"},
	} {
		if _, err := runCLI(t, append([]string{"viz", "curves"}, c.args...)...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("viz curves %s: err = %v, want one containing %q", strings.Join(c.args, " "), err, c.want)
		}
	}
}

// A job resumed by a new leader starts its clock again: the history's
// wall time goes on from the last report before the restart.
func TestHistoryElapsedAcrossRestart(t *testing.T) {
	var q historySeq
	for _, c := range []struct {
		step    int64
		elapsed time.Duration
		keep    bool
		want    time.Duration
	}{
		{1, 1 * time.Second, true, 1 * time.Second},
		{2, 2 * time.Second, true, 2 * time.Second},
		{2, 2 * time.Second, false, 0},                     // seen twice
		{3, 500 * time.Millisecond, true, 2 * time.Second}, // the new leader's first report
		{4, 1500 * time.Millisecond, true, 3 * time.Second},
	} {
		p, ok := q.next(viz.Point{Step: c.step, Epoch: 1, Elapsed: c.elapsed})
		if ok != c.keep || ok && p.Elapsed != c.want {
			t.Errorf("step %d at %s: kept %v at %s, want %v at %s", c.step, c.elapsed, ok, p.Elapsed, c.keep, c.want)
		}
	}
}
