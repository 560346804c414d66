package train

import (
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/tree"
)

var updateScripts = flag.Bool("engine.update", false, "rewrite the expected effects in train/testdata/engine/*.txt")

// TestEngineScripts runs the scripts in testdata/engine: each line that is
// not indented is a command; the indented lines after it are the effects it
// must cause, as the golden transcript. Gradients are synthetic (see
// fuzzLeaf), so the transcripts depend on the engine alone. Run with
// -engine.update to rewrite the transcripts, then read the diff.
//
// Commands:
//
//	engine [min=N] [deadline=DUR]        configure the engine (first line)
//	start [steps=N] [batch=N] [micro=N] [train=N] [test=N] [every=N]
//	join ID [SPEED]                      a worker joins (images/s)
//	lose ID                              a worker is lost
//	tick DUR                             the clock reads start + DUR
//	answer ID [nan|short|wrongkind|elsewhere] [from=W] [compute=DUR]
//	                                     the worker answers assignment ID
//	                                     (elsewhere: naming other work)
//	fail ID                              the worker cannot do assignment ID
//	drain                                answer everything, oldest first
func TestEngineScripts(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "engine", "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts in testdata/engine: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			got := runScript(t, file, string(data))
			if got == string(data) {
				return
			}
			if *updateScripts {
				if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			t.Errorf("%s: transcript differs (rerun with -engine.update and read the diff):\n%s", file, firstDiff(string(data), got))
		})
	}
}

func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := range max(len(w), len(g)) {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\nwant %q\n got %q", i+1, wl, gl)
		}
	}
	return ""
}

// scriptRun is the state of one script.
type scriptRun struct {
	t       *testing.T
	eng     *Engine
	b       *kernels.CPU
	cfg     EngineConfig
	t0      time.Time
	params  int
	sent    map[uint64]pending // every assignment given out
	open    []uint64           // not yet answered, in order
	bufs    [][]float32
	losses  []float64
	spec    job.Spec
	testLen int
}

func runScript(t *testing.T, file, script string) string {
	s := &scriptRun{t: t, sent: map[uint64]pending{}, t0: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	s.b = kernels.NewCPU(1)
	defer s.b.Close()
	var out strings.Builder
	for n, line := range strings.Split(strings.TrimRight(script, "\n"), "\n") {
		if strings.HasPrefix(line, " ") {
			continue // an expected effect, regenerated below
		}
		out.WriteString(line + "\n")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		effects, err := s.command(strings.Fields(line))
		if err != nil {
			t.Fatalf("%s:%d: %s: %v", file, n+1, line, err)
		}
		for _, ef := range effects {
			out.WriteString("  " + s.render(ef) + "\n")
		}
	}
	return out.String()
}

func (s *scriptRun) command(f []string) ([]Effect, error) {
	args := map[string]string{}
	var pos []string
	for _, a := range f[1:] {
		if k, v, ok := strings.Cut(a, "="); ok {
			args[k] = v
		} else {
			pos = append(pos, a)
		}
	}
	num := func(key string, def int) int {
		if v, ok := args[key]; ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				s.t.Fatalf("%s=%s: %v", key, v, err)
			}
			return n
		}
		return def
	}
	if s.eng == nil && f[0] != "engine" {
		s.eng = NewEngine(s.b, s.cfg)
	}
	switch f[0] {
	case "engine":
		s.cfg.MinWorkers = num("min", 0)
		if d, ok := args["deadline"]; ok {
			dur, err := time.ParseDuration(d)
			if err != nil {
				return nil, err
			}
			s.cfg.Deadline = dur
		}
		s.eng = NewEngine(s.b, s.cfg)
		return nil, nil
	case "start":
		spec := fuzzJob()
		spec.Steps = int64(num("steps", 3))
		spec.Batch = num("batch", 10)
		spec.MicroBatch = num("micro", 2)
		spec.EvalEvery = num("every", 1)
		s.spec = spec.WithDefaults()
		s.testLen = num("test", 21)
		effects := s.step(JobStarted{Spec: spec, TrainLen: num("train", 20), TestLen: s.testLen})
		s.params = len(s.eng.Params())
		s.bufs, s.losses = nil, make([]float64, spec.Batch/spec.MicroBatch)
		for range spec.Batch / spec.MicroBatch {
			s.bufs = append(s.bufs, make([]float32, s.params))
		}
		return effects, nil
	case "join":
		if len(pos) < 1 {
			return nil, fmt.Errorf("join needs an ID")
		}
		speed := 0.0
		if len(pos) > 1 {
			v, err := strconv.ParseFloat(pos[1], 64)
			if err != nil {
				return nil, err
			}
			speed = v
		}
		return s.step(WorkerJoined{ID: pos[0], Speed: speed}), nil
	case "lose":
		if len(pos) != 1 {
			return nil, fmt.Errorf("lose needs an ID")
		}
		return s.step(WorkerLost{ID: pos[0]}), nil
	case "tick":
		if len(pos) != 1 {
			return nil, fmt.Errorf("tick needs a duration")
		}
		d, err := time.ParseDuration(pos[0])
		if err != nil {
			return nil, err
		}
		return s.step(Tick{Now: s.t0.Add(d)}), nil
	case "answer":
		if len(pos) < 1 {
			return nil, fmt.Errorf("answer needs an assignment ID")
		}
		id, err := strconv.ParseUint(pos[0], 10, 64)
		if err != nil {
			return nil, err
		}
		p, ok := s.sent[id]
		if !ok {
			p = pending{id: id, worker: args["from"], leaves: tree.Subtree{Lo: 0, Hi: 1}}
		}
		ev := s.answer(p)
		if from, ok := args["from"]; ok {
			switch e := ev.(type) {
			case GradientsReceived:
				e.Worker = from
				ev = e
			case EvalReceived:
				e.Worker = from
				ev = e
			}
		}
		for _, how := range pos[1:] {
			g, isGrad := ev.(GradientsReceived)
			switch {
			case how == "elsewhere" && isGrad:
				g.Leaves = tree.Subtree{Lo: g.Leaves.Lo + 1, Hi: g.Leaves.Hi + 1}
				ev = g
			case how == "elsewhere":
				e := ev.(EvalReceived)
				e.From++
				ev = e
			case how == "nan" && isGrad:
				g.Grad[1] = float32(math.NaN())
				ev = g
			case how == "short" && isGrad:
				g.Grad = g.Grad[:3]
				ev = g
			case how == "wrongkind" && isGrad:
				ev = EvalReceived{Worker: g.Worker, Assignment: g.Assignment, Correct: 1}
			default:
				return nil, fmt.Errorf("cannot answer %s with %q", pos[0], how)
			}
		}
		if d, ok := args["compute"]; ok {
			dur, err := time.ParseDuration(d)
			if err != nil {
				return nil, err
			}
			g, ok := ev.(GradientsReceived)
			if !ok {
				return nil, fmt.Errorf("compute= on an evaluation")
			}
			g.Compute = dur
			ev = g
		}
		if _, forged := args["from"]; !forged {
			s.open = slices.DeleteFunc(s.open, func(x uint64) bool { return x == id })
		}
		return s.step(ev), nil
	case "fail":
		if len(pos) != 1 {
			return nil, fmt.Errorf("fail needs an assignment ID")
		}
		id, err := strconv.ParseUint(pos[0], 10, 64)
		if err != nil {
			return nil, err
		}
		s.open = slices.DeleteFunc(s.open, func(x uint64) bool { return x == id })
		return s.step(WorkFailed{Worker: s.sent[id].worker, Assignment: id, Err: fmt.Errorf("out of memory")}), nil
	case "drain":
		var all []Effect
		for len(s.open) > 0 {
			id := s.open[0]
			s.open = s.open[1:]
			all = append(all, s.step(s.answer(s.sent[id]))...)
		}
		return all, nil
	}
	return nil, fmt.Errorf("unknown command %q", f[0])
}

func (s *scriptRun) step(ev Event) []Effect {
	effects := s.eng.Step(ev, nil)
	for _, ef := range effects {
		switch ef := ef.(type) {
		case Assign:
			s.sent[ef.ID] = pending{id: ef.ID, worker: ef.Worker, step: ef.Step, leaves: ef.Leaves}
			s.open = append(s.open, ef.ID)
		case Evaluate:
			s.sent[ef.ID] = pending{id: ef.ID, worker: ef.Worker, eval: true, from: ef.From, to: ef.To}
			s.open = append(s.open, ef.ID)
		case Cancel:
			s.open = slices.DeleteFunc(s.open, func(x uint64) bool { return x == ef.Assignment })
		case WorkerFlagged:
			s.open = slices.DeleteFunc(s.open, func(x uint64) bool { return s.sent[x].worker == ef.Worker })
		}
	}
	return effects
}

// answer is an honest worker's answer to p, with synthetic gradients.
func (s *scriptRun) answer(p pending) Event {
	if p.eval {
		return EvalReceived{Worker: p.worker, Assignment: p.id, From: p.from, To: p.to, Correct: fuzzEvenIn(p.from, p.to)}
	}
	n := p.leaves.Len()
	for i := range n {
		s.losses[i] = fuzzLeaf(p.step, p.leaves.Lo+i, s.bufs[i])
	}
	grad := tree.ReduceSubtree(s.bufs[:n])
	return GradientsReceived{Worker: p.worker, Assignment: p.id, Leaves: p.leaves, Grad: slices.Clone(grad), LeafLosses: slices.Clone(s.losses[:n]), Correct: n}
}

func (s *scriptRun) render(ef Effect) string {
	switch ef := ef.(type) {
	case Assign:
		return fmt.Sprintf("assign %s #%d step %d micro-batches %v", ef.Worker, ef.ID, ef.Step, ef.Leaves)
	case Evaluate:
		return fmt.Sprintf("evaluate %s #%d version %d samples [%d, %d)", ef.Worker, ef.ID, ef.Version, ef.From, ef.To)
	case StepApplied:
		return fmt.Sprintf("applied step %d (epoch %d, #%d) loss %.6f acc %.2f images %d epoch-done %v evaluate %v",
			ef.Step, ef.Epoch, ef.InEpoch, ef.Loss, ef.TrainAccuracy, ef.Images, ef.EpochDone, ef.Evaluate)
	case EvalDone:
		return fmt.Sprintf("eval-done version %d epoch %d: %d/%d = %.4f", ef.Version, ef.Epoch, ef.Correct, ef.Total, ef.Accuracy)
	case PersistCheckpoint:
		return fmt.Sprintf("checkpoint step %d epoch %d", ef.Checkpoint.Step, ef.Checkpoint.Epoch)
	case JobFinished:
		return fmt.Sprintf("finished steps %d epochs %d final loss %.6f accuracy %.4f", ef.Result.Steps, ef.Result.Epochs, ef.Result.FinalLoss, ef.Result.TestAccuracy)
	case JobFailed:
		return fmt.Sprintf("failed: %v", ef.Err)
	case Waiting:
		return fmt.Sprintf("waiting: %s", ef.Reason)
	case Refused:
		return fmt.Sprintf("refused %s #%d: %v", ef.Worker, ef.Assignment, ef.Err)
	case Dropped:
		return fmt.Sprintf("dropped %s #%d: %s", ef.Worker, ef.Assignment, ef.Reason)
	case WorkerFlagged:
		return fmt.Sprintf("flagged %s", ef.Worker)
	case Cancel:
		return fmt.Sprintf("cancel %s #%d", ef.Worker, ef.Assignment)
	case Straggler:
		return fmt.Sprintf("straggler %s #%d waited %s of %s: backup to %s", ef.Worker, ef.Assignment, ef.Waited, ef.Deadline, ef.Backup)
	}
	return fmt.Sprintf("%T", ef)
}
