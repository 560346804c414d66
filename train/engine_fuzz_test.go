package train

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/model"
	"github.com/dpcnn/dpcnn/philox"
	"github.com/dpcnn/dpcnn/tree"
)

// FuzzEngine drives an engine with arbitrary sequences of joins, losses,
// ticks, good and bad answers, failures, repeats and forgeries, then lets
// rescue workers finish the job. Gradients are synthetic — a pure function of
// (step, micro-batch), reduced with ReduceSubtree as a worker would — so
// no data is needed and any schedule must reproduce, bit for bit, the
// parameters after every step of a run where one worker does everything.
// The engine must never panic, assign work that is not an aligned subtree
// or goes to a dead or flagged worker, or apply a step twice.
//
//	go test ./train -run XXX -fuzz FuzzEngine -fuzztime 60s
func FuzzEngine(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 1, 0, 7, 3, 0, 3, 0, 3, 1, 2, 30, 3, 0})
	f.Add([]byte{1, 0, 0, 0, 13, 0, 2, 3, 0, 4, 1, 3, 1, 1, 1, 2, 50, 3, 0, 3, 2, 6, 0, 7, 1})
	f.Add([]byte{2, 0, 0, 0, 5, 0, 2, 2, 40, 5, 0, 3, 0, 3, 1, 4, 2, 3, 0, 6, 3, 1, 2, 3, 0, 3, 0, 3, 0})
	f.Add([]byte{0, 0, 1, 0, 2, 0, 3, 3, 1, 3, 2, 4, 0, 4, 1, 3, 0, 3, 0, 3, 0, 3, 0, 3, 0, 3, 0, 3, 0, 3, 0})
	f.Add([]byte{3, 0, 6, 0, 12, 0, 18, 2, 100, 2, 100, 3, 5, 1, 6, 3, 3, 7, 9, 6, 2, 3, 4, 3, 4, 3, 4, 3, 4})
	f.Add([]byte{0, 0, 0, 0, 1, 0, 2, 8, 0, 9, 40, 9, 3, 9, 200, 9, 1, 3, 0, 8, 1, 9, 5})
	ref := fuzzReference(f)
	f.Fuzz(func(t *testing.T, ops []byte) {
		fuzzRun(t, ops, ref)
	})
}

// fuzzJob is a job on a tiny network: eight micro-batches a step, four
// steps an epoch, six steps.
func fuzzJob() job.Spec {
	return job.Spec{
		NetworkSpec: &model.Spec{
			Name: "tiny", Input: model.InputShape{Height: 4, Width: 4, Channels: 1}, Classes: 3, Init: "he",
			Layers: []model.LayerSpec{{Type: model.LayerAffine, Units: 3}, {Type: model.LayerSoftmax}},
		},
		Steps: 6, Batch: 16, MicroBatch: 2, Seed: 5,
	}
}

const fuzzTrainLen, fuzzTestLen = 64, 21

// fuzzLeaf writes the synthetic gradient of micro-batch leaf of a step:
// mixed magnitudes, so that a wrong order of additions shows.
func fuzzLeaf(step int64, leaf int, g []float32) (loss float64) {
	s := philox.NewStream(5, uint32(step), uint32(leaf), 0xf022)
	for i := range g {
		u := s.Uint32(uint32(i))
		g[i] = (philox.ToUniform32(u) - 0.5) * float32(math.Pow(10, float64(int(u%7)-3)))
	}
	return float64(step+1) * float64(leaf+3) / 7
}

// fuzzEvenIn counts the even numbers in [from, to): the synthetic correct
// count of an evaluation, additive over any split.
func fuzzEvenIn(from, to int) int { return (to+1)/2 - (from+1)/2 }

type fuzzRef struct {
	hashes   [][32]byte // after each step
	accuracy float64
}

func fuzzReference(tb testing.TB) fuzzRef {
	h := newFuzzHarness(tb, EngineConfig{})
	h.join("solo", 0)
	h.start()
	h.drain(tb, nil)
	if h.finished == nil {
		tb.Fatalf("reference run did not finish: %v", h.failed)
	}
	return fuzzRef{hashes: h.hashes, accuracy: h.finished.TestAccuracy}
}

// pending is an assignment as the harness tracks it.
type pending struct {
	id     uint64
	worker string
	eval   bool
	step   int64
	leaves tree.Subtree
	from   int
	to     int
}

type fuzzHarness struct {
	tb       testing.TB
	eng      *Engine
	leaves   int
	params   int
	live     map[string]bool
	flagged  map[string]bool
	out      []pending
	sent     []Event // answers sent, for repeats
	badSent  bool
	hashes   [][32]byte
	now      time.Time
	finished *Result
	failed   error
	bufs     [][]float32
	losses   []float64
}

func newFuzzHarness(tb testing.TB, cfg EngineConfig) *fuzzHarness {
	b := kernels.NewCPU(1)
	spec := fuzzJob().WithDefaults()
	L := spec.Batch / spec.MicroBatch
	h := &fuzzHarness{
		tb: tb, eng: NewEngine(b, cfg), leaves: L, live: map[string]bool{}, flagged: map[string]bool{},
		now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), losses: make([]float64, L),
	}
	return h
}

func (h *fuzzHarness) start() {
	h.step(JobStarted{Spec: fuzzJob(), TrainLen: fuzzTrainLen, TestLen: fuzzTestLen})
	h.params = len(h.eng.Params())
	for range h.leaves {
		h.bufs = append(h.bufs, make([]float32, h.params))
	}
}

func (h *fuzzHarness) join(id string, speed float64) {
	h.live[id] = true
	delete(h.flagged, id)
	h.step(WorkerJoined{ID: id, Speed: speed})
}

func (h *fuzzHarness) lose(id string) {
	delete(h.live, id)
	h.out = slices.DeleteFunc(h.out, func(p pending) bool { return p.worker == id })
	h.step(WorkerLost{ID: id})
}

func (h *fuzzHarness) step(ev Event) {
	effects := h.eng.Step(ev, nil)
	applied := 0
	for _, ef := range effects {
		over := h.finished != nil || h.failed != nil
		switch ef := ef.(type) {
		case Assign:
			switch {
			case over:
				h.tb.Fatalf("assignment %d after the job ended", ef.ID)
			case !h.live[ef.Worker] || h.flagged[ef.Worker]:
				h.tb.Fatalf("assignment %d to worker %s (live %v, flagged %v)", ef.ID, ef.Worker, h.live[ef.Worker], h.flagged[ef.Worker])
			case !ef.Leaves.IsNode(h.leaves) || len(ef.Micro) != ef.Leaves.Len():
				h.tb.Fatalf("assignment %d of %v: not a subtree of %d leaves", ef.ID, ef.Leaves, h.leaves)
			}
			h.out = append(h.out, pending{id: ef.ID, worker: ef.Worker, step: ef.Step, leaves: ef.Leaves})
		case Evaluate:
			if over || !h.live[ef.Worker] || h.flagged[ef.Worker] || ef.From >= ef.To {
				h.tb.Fatalf("evaluation %d of [%d, %d) to worker %s", ef.ID, ef.From, ef.To, ef.Worker)
			}
			h.out = append(h.out, pending{id: ef.ID, worker: ef.Worker, eval: true, from: ef.From, to: ef.To})
		case Cancel:
			h.out = slices.DeleteFunc(h.out, func(p pending) bool { return p.id == ef.Assignment })
		case WorkerFlagged:
			h.flagged[ef.Worker] = true
			h.out = slices.DeleteFunc(h.out, func(p pending) bool { return p.worker == ef.Worker })
		case StepApplied:
			applied++
			if over || ef.Step != int64(len(h.hashes))+1 || applied > 1 {
				h.tb.Fatalf("step %d applied after %d steps", ef.Step, len(h.hashes))
			}
			h.hashes = append(h.hashes, paramHash(h.eng.Params()))
		case JobFinished:
			if over {
				h.tb.Fatalf("job ended twice")
			}
			h.finished = &ef.Result
		case JobFailed:
			if over {
				h.tb.Fatalf("job ended twice")
			}
			h.failed = ef.Err
		}
	}
}

// answer computes p as an honest worker would.
func (h *fuzzHarness) answer(p pending) Event {
	if p.eval {
		return EvalReceived{Worker: p.worker, Assignment: p.id, Correct: fuzzEvenIn(p.from, p.to)}
	}
	n := p.leaves.Len()
	for i := range n {
		h.losses[i] = fuzzLeaf(p.step, p.leaves.Lo+i, h.bufs[i])
	}
	grad := tree.ReduceSubtree(h.bufs[:n])
	return GradientsReceived{Worker: p.worker, Assignment: p.id, Grad: slices.Clone(grad), LeafLosses: slices.Clone(h.losses[:n]), Correct: n}
}

// drain answers everything honestly, oldest first, until the job ends.
func (h *fuzzHarness) drain(tb testing.TB, ops []byte) {
	for range 10000 {
		if h.finished != nil || h.failed != nil || len(h.out) == 0 {
			return
		}
		p := h.out[0]
		h.out = h.out[1:]
		h.step(h.answer(p))
	}
	tb.Fatalf("ops %v: job not done after 10000 answers", ops)
}

func fuzzRun(t *testing.T, ops []byte, ref fuzzRef) {
	var cfg EngineConfig
	if len(ops) > 0 {
		cfg.MinWorkers = 1 + int(ops[0]%3)
		ops = ops[1:]
	}
	h := newFuzzHarness(t, cfg)
	h.start()
	arg := func(i int) int {
		if i+1 < len(ops) {
			return int(ops[i+1])
		}
		return 0
	}
	for i := 0; i < len(ops) && h.finished == nil && h.failed == nil; i += 2 {
		a := arg(i)
		pick := func() (pending, bool) {
			if len(h.out) == 0 {
				return pending{}, false
			}
			k := a % len(h.out)
			p := h.out[k]
			h.out = slices.Delete(h.out, k, k+1)
			return p, true
		}
		switch ops[i] % 10 {
		case 0:
			h.join(fmt.Sprintf("w%d", a%6), float64((a/6)%4)*50)
		case 1:
			h.lose(fmt.Sprintf("w%d", a%6))
		case 2:
			h.now = h.now.Add(time.Duration(a) * 100 * time.Millisecond)
			h.step(Tick{Now: h.now})
		case 3:
			if p, ok := pick(); ok {
				ev := h.answer(p)
				h.sent = append(h.sent, ev)
				h.step(ev)
			}
		case 4:
			if p, ok := pick(); ok {
				ev := h.answer(p)
				if g, ok := ev.(GradientsReceived); ok {
					g.Grad[a%len(g.Grad)] = float32(math.NaN())
					ev = g
					h.badSent = true
				} else {
					ev = EvalReceived{Worker: p.worker, Assignment: p.id, Correct: -1}
				}
				h.step(ev)
			}
		case 5:
			if p, ok := pick(); ok {
				ev := h.answer(p)
				if g, ok := ev.(GradientsReceived); ok {
					g.Grad = g.Grad[:a%len(g.Grad)]
					ev = g
				}
				h.step(ev)
			}
		case 6:
			if len(h.sent) > 0 {
				h.step(h.sent[a%len(h.sent)])
			}
		case 8:
			if p, ok := pick(); ok {
				h.badSent = true
				h.step(WorkFailed{Worker: p.worker, Assignment: p.id, Err: fmt.Errorf("out of memory")})
			}
		case 9:
			if p, ok := pick(); ok {
				ev := h.answer(p)
				if g, ok := ev.(GradientsReceived); ok {
					g.Compute = time.Duration(a) * time.Millisecond
					ev = g
				}
				h.sent = append(h.sent, ev)
				h.step(ev)
			}
		case 7:
			if len(h.out) > 0 {
				p := h.out[a%len(h.out)]
				ev := h.answer(p)
				if g, ok := ev.(GradientsReceived); ok {
					g.Worker = fmt.Sprintf("w%d", (a/3)%7) // maybe another worker, maybe unknown
					h.step(g)
				} else {
					h.step(GradientsReceived{Worker: p.worker, Assignment: p.id + uint64(a) + 1000, Grad: make([]float32, h.params)})
				}
			}
		}
	}
	// A crowd of rescue workers finishes the job.
	for i := range 3 {
		h.join(fmt.Sprintf("rescue%d", i), 100)
	}
	h.drain(t, ops)
	for i, got := range h.hashes {
		if got != ref.hashes[i] {
			t.Fatalf("ops %v: parameters after step %d differ from the one-worker run", ops, i+1)
		}
	}
	switch {
	case h.failed != nil:
		// Only NaNs or failures from two workers in one round may fail
		// the job.
		if !h.badSent || !strings.Contains(h.failed.Error(), "from workers") {
			t.Fatalf("ops %v: job failed: %v", ops, h.failed)
		}
	case h.finished == nil:
		t.Fatalf("ops %v: job stalled after %d steps", ops, len(h.hashes))
	case h.finished.Steps != 6 || h.finished.TestAccuracy != ref.accuracy:
		t.Fatalf("ops %v: finished after %d steps with accuracy %v, want 6 and %v", ops, h.finished.Steps, h.finished.TestAccuracy, ref.accuracy)
	}
}
