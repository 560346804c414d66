package train

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/model"
	"github.com/dpcnn/dpcnn/philox"
	"github.com/dpcnn/dpcnn/tree"
	"github.com/dpcnn/dpcnn/worker"
)

// The scenario tests drive an Engine with in-process workers in the test
// goroutine: no sockets, no sleeps, no goroutines. Which worker answers
// next is drawn from a Philox stream keyed by the seed, so every order the
// network could produce gets tried, and a failure names the seed that
// reproduces it.
var engineSeed = flag.Uint64("engine.seed", 0, "seed of the engine scenario tests' delivery order (0: the built-in seeds)")

func engineSeeds() []uint64 {
	if *engineSeed != 0 {
		return []uint64{*engineSeed}
	}
	return []uint64{1, 2}
}

// engineJob trains the book's SimpleConvNet with augmentation: five
// micro-batches a step (a ragged tree), four steps an epoch, six steps, so
// it crosses an epoch boundary (an evaluation and a checkpoint).
func engineJob() job.Spec {
	return job.Spec{
		Network: "simple", Steps: 6, Batch: 50, MicroBatch: 10, TrainLimit: 200, TestLimit: 100, Seed: 3,
		Augment: dataset.Augment{RotateDeg: 10, ShiftPx: 2},
	}
}

// dropoutJob trains a small net with dropout, whose masks are keyed by step
// and sample: seven micro-batches a step.
func dropoutJob() job.Spec {
	return job.Spec{
		NetworkSpec: &model.Spec{
			Name: "tiny-dropout", Input: model.InputShape{Height: 28, Width: 28, Channels: 1}, Classes: 10, Init: "he",
			Layers: []model.LayerSpec{
				{Type: model.LayerConv, Filters: 6, Size: 5, Stride: 2}, {Type: model.LayerReLU},
				{Type: model.LayerAffine, Units: 32}, {Type: model.LayerReLU}, {Type: model.LayerDropout, Ratio: 0.3},
				{Type: model.LayerAffine, Units: 10}, {Type: model.LayerSoftmax},
			},
		},
		Steps: 4, Batch: 56, MicroBatch: 8, TrainLimit: 200, TestLimit: 60, Seed: 11,
	}
}

// batchNormJob trains a small net with batch norm after a conv and after
// an affine layer: its statistics are per micro-batch, its running
// statistics travel with the gradients, and evaluations use them.
func batchNormJob() job.Spec {
	return job.Spec{
		NetworkSpec: &model.Spec{
			Name: "tiny-batchnorm", Input: model.InputShape{Height: 28, Width: 28, Channels: 1}, Classes: 10, Init: "he",
			Layers: []model.LayerSpec{
				{Type: model.LayerConv, Filters: 6, Size: 5, Stride: 2}, {Type: model.LayerBatchNorm}, {Type: model.LayerReLU},
				{Type: model.LayerAffine, Units: 32}, {Type: model.LayerBatchNorm, Momentum: 0.3}, {Type: model.LayerReLU},
				{Type: model.LayerAffine, Units: 10}, {Type: model.LayerSoftmax},
			},
		},
		Optimizer: model.OptimizerSpec{LR: 0.01},
		Steps:     5, Batch: 40, MicroBatch: 8, TrainLimit: 200, TestLimit: 60, Seed: 5,
	}
}

// reference is what one worker computing every micro-batch in order gives.
type reference struct {
	hash     [32]byte
	losses   []float64 // per step
	accuracy float64   // of the final parameters (or their average, model.EMASpec.Evaluate) on the test set
	average  [32]byte  // of the parameters' moving average, when the job evaluates it
}

var references = map[string]reference{}

// referenceRun trains spec the obvious way, with no engine: every
// micro-batch on one Computer, ReduceTree over all of them, one update —
// the local trainer's algorithm before there was an engine.
func referenceRun(t *testing.T, spec job.Spec) reference {
	t.Helper()
	key := string(spec.JSON())
	if r, ok := references[key]; ok {
		return r
	}
	spec = spec.WithDefaults()
	train, test := loadMNIST(t)
	b := kernels.NewCPU(1)
	defer b.Close()
	netSpec, err := spec.Model()
	if err != nil {
		t.Fatal(err)
	}
	holder, err := model.New[float32](netSpec, b, 1)
	if err != nil {
		t.Fatal(err)
	}
	holder.InitParams(spec.Seed)
	params := holder.Params()
	comp, err := worker.NewComputer(spec, b, train, spec.MicroBatch)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := dataset.NewPlan(min(train.Len(), spec.TrainLimit), spec.Batch, spec.MicroBatch, spec.Seed)
	if err != nil {
		t.Fatal(err)
	}
	opt, err := model.NewOptimizer[float32](spec.Optimizer, params, model.Horizon{PerEpoch: int64(plan.StepsPerEpoch()), Total: spec.Steps})
	if err != nil {
		t.Fatal(err)
	}
	flat := make([]float32, params.Count())
	flatten := func() { copy(flat, holder.FlatValues()) }
	idx := make([]int32, spec.Batch)
	m := spec.MicroBatch
	leaves := make([][]float32, spec.Batch/m)
	losses := make([]float64, len(leaves))
	for i := range leaves {
		leaves[i] = make([]float32, len(flat))
	}
	var ref reference
	for step := int64(0); step < spec.Steps; step++ {
		epoch, inEpoch := plan.EpochStep(step)
		plan.Step(epoch, inEpoch, idx)
		flatten()
		comp.SetParams(flat)
		for i := range leaves {
			loss, _, err := comp.Gradients(tree.MicroBatch{Epoch: epoch, Step: step, Indices: idx[i*m : (i+1)*m]}, leaves[i])
			if err != nil {
				t.Fatal(err)
			}
			losses[i] = loss
		}
		tree.ReduceTree(leaves)
		reduceLosses(losses)
		ref.losses = append(ref.losses, losses[0]/float64(spec.Batch))
		for i, g := range leaves[0] {
			holder.FlatGrads()[i] = g * (float32(1) / float32(spec.Batch))
		}
		opt.Update(b, params)
	}
	flatten()
	ref.hash = paramHash(flat)
	evaluated := flat
	if spec.Optimizer.EMA.Evaluate {
		evaluated = nil
		for _, a := range opt.Average() {
			evaluated = append(evaluated, a.Data...)
		}
		ref.average = paramHash(evaluated)
	}
	comp.SetParams(evaluated)
	testLen := min(test.Len(), spec.TestLimit)
	correct, err := comp.Evaluate(test, 0, testLen)
	if err != nil {
		t.Fatal(err)
	}
	ref.accuracy = float64(correct) / float64(testLen)
	references[key] = ref
	return ref
}

// reduceLosses sums losses into losses[0] along ReduceTree's tree, written
// out separately from reduceTree.
func reduceLosses(losses []float64) {
	for s := 1; s < len(losses); s *= 2 {
		for i := 0; i+s < len(losses); i += 2 * s {
			losses[i] += losses[i+s]
		}
	}
}

// simWorker is an in-process worker of a cluster.
type simWorker struct {
	id     string
	comp   *worker.Computer
	inbox  []wire
	held   bool // answers nothing until released
	leaves [][]float32
	losses []float64
}

// wire is an assignment as its worker received it: copied, as if it had
// crossed a network.
type wire struct {
	id       uint64
	eval     bool
	step     int64
	leaves   tree.Subtree
	micro    []tree.MicroBatch
	from, to int
	params   []float32
}

// cluster runs an Engine with simulated workers.
type cluster struct {
	t           *testing.T
	name        string
	seed        uint64
	eng         *Engine
	spec        job.Spec
	b           *kernels.CPU
	train, test *dataset.Set
	computers   map[string]*worker.Computer
	workers     []*simWorker
	flagged     map[string]bool
	draws       uint32

	log          []Effect // every effect, in order
	applied      []StepApplied
	evals        []EvalDone
	checkpoints  []*model.Checkpoint
	finished     *Result
	failed       error
	answers      int
	ignoreCancel bool

	// tamper, when set, may change a worker's answer, or hold it back by
	// returning nil.
	tamper func(w *simWorker, m wire, ev Event) Event
	// after, when set, runs after each answer has been handled.
	after func()
}

func newCluster(t *testing.T, name string, seed uint64, spec job.Spec, cfg EngineConfig) *cluster {
	t.Helper()
	train, test := loadMNIST(t)
	b := kernels.NewCPU(1)
	t.Cleanup(b.Close)
	return &cluster{
		t: t, name: name, seed: seed, eng: NewEngine(b, cfg), spec: spec.WithDefaults(), b: b, train: train, test: test,
		computers: map[string]*worker.Computer{}, flagged: map[string]bool{},
	}
}

func (c *cluster) fatalf(format string, args ...any) {
	c.t.Helper()
	c.t.Fatalf("%s, seed %d (reproduce: go test ./train -run '^%s$' -engine.seed=%d): %s",
		c.name, c.seed, c.t.Name(), c.seed, fmt.Sprintf(format, args...))
}

// start starts the job; resume may be nil.
func (c *cluster) start(resume *model.Checkpoint) []Effect {
	return c.step(JobStarted{Spec: c.spec, TrainLen: c.train.Len(), TestLen: c.test.Len(), Resume: resume})
}

// step hands the engine an event and carries out its effects.
func (c *cluster) step(ev Event) []Effect {
	c.t.Helper()
	effects := c.eng.Step(ev, nil)
	c.log = append(c.log, effects...)
	for _, ef := range effects {
		c.dispatch(ef)
	}
	return effects
}

func (c *cluster) worker(id string) *simWorker {
	for _, w := range c.workers {
		if w.id == id {
			return w
		}
	}
	return nil
}

func (c *cluster) dispatch(ef Effect) {
	c.t.Helper()
	switch ef := ef.(type) {
	case Assign:
		w := c.worker(ef.Worker)
		switch {
		case w == nil:
			c.fatalf("assignment %d to unknown worker %s", ef.ID, ef.Worker)
		case c.flagged[ef.Worker]:
			c.fatalf("assignment %d to flagged worker %s", ef.ID, ef.Worker)
		case !ef.Leaves.IsNode(c.spec.Batch/c.spec.MicroBatch) || len(ef.Micro) != ef.Leaves.Len():
			c.fatalf("assignment %d of micro-batches %v (%d given): not a subtree", ef.ID, ef.Leaves, len(ef.Micro))
		}
		m := wire{id: ef.ID, step: ef.Step, leaves: ef.Leaves, params: slices.Clone(ef.Params)}
		for _, mb := range ef.Micro {
			mb.Indices = slices.Clone(mb.Indices)
			m.micro = append(m.micro, mb)
		}
		w.inbox = append(w.inbox, m)
	case Evaluate:
		w := c.worker(ef.Worker)
		if w == nil || c.flagged[ef.Worker] {
			c.fatalf("evaluation %d for unknown or flagged worker %s", ef.ID, ef.Worker)
		}
		w.inbox = append(w.inbox, wire{id: ef.ID, eval: true, step: ef.Version, from: ef.From, to: ef.To, params: slices.Clone(ef.Params)})
	case Cancel:
		if w := c.worker(ef.Worker); w != nil && !c.ignoreCancel {
			w.inbox = slices.DeleteFunc(w.inbox, func(m wire) bool { return m.id == ef.Assignment })
		}
	case WorkerFlagged:
		c.flagged[ef.Worker] = true
	case StepApplied:
		want := c.eng.StepsApplied()
		if n := len(c.applied); n > 0 {
			want = c.applied[n-1].Step + 1
		}
		if ef.Step != want {
			c.fatalf("applied step %d after step %d", ef.Step, want-1)
		}
		c.applied = append(c.applied, ef)
	case EvalDone:
		c.evals = append(c.evals, ef)
	case PersistCheckpoint:
		c.checkpoints = append(c.checkpoints, ef.Checkpoint)
	case JobFinished:
		if c.finished != nil {
			c.fatalf("job finished twice")
		}
		c.finished = &ef.Result
	case JobFailed:
		c.failed = ef.Err
	}
}

// join adds a worker (its Computer is kept for a rejoin).
func (c *cluster) join(id string, speed float64) []Effect {
	c.t.Helper()
	if c.worker(id) == nil {
		comp := c.computers[id]
		if comp == nil {
			var err error
			comp, err = worker.NewComputer(c.spec, c.b, c.train, c.spec.MicroBatch)
			if err != nil {
				c.t.Fatal(err)
			}
			c.computers[id] = comp
		}
		w := &simWorker{id: id, comp: comp}
		for range c.spec.Batch / c.spec.MicroBatch {
			w.leaves = append(w.leaves, make([]float32, comp.ParamCount()))
			w.losses = append(w.losses, 0)
		}
		c.workers = append(c.workers, w)
		delete(c.flagged, id)
	}
	return c.step(WorkerJoined{ID: id, Speed: speed})
}

// lose kills a worker: what it had not answered is gone.
func (c *cluster) lose(id string) []Effect {
	c.t.Helper()
	c.workers = slices.DeleteFunc(c.workers, func(w *simWorker) bool { return w.id == id })
	return c.step(WorkerLost{ID: id})
}

// compute is a worker's answer to m.
func (c *cluster) compute(w *simWorker, m wire) Event {
	c.t.Helper()
	if err := w.comp.SetParams(m.params); err != nil {
		c.fatalf("%v", err)
	}
	if m.eval {
		correct, err := w.comp.Evaluate(c.test, m.from, m.to)
		if err != nil {
			c.fatalf("%v", err)
		}
		return EvalReceived{Worker: w.id, Assignment: m.id, From: m.from, To: m.to, Correct: correct}
	}
	grad, losses, correct, err := tree.ComputeSubtree(context.Background(), w.comp, m.micro, w.leaves, w.losses)
	if err != nil {
		c.fatalf("%v", err)
	}
	return GradientsReceived{Worker: w.id, Assignment: m.id, Leaves: m.leaves, Grad: grad, LeafLosses: losses, Correct: correct}
}

// deliver has one worker, drawn by the seed among those with work, answer
// its oldest assignment. It reports false when no worker can.
func (c *cluster) deliver() bool {
	c.t.Helper()
	var ready []*simWorker
	for _, w := range c.workers {
		if len(w.inbox) > 0 && !w.held {
			ready = append(ready, w)
		}
	}
	if len(ready) == 0 {
		return false
	}
	w := ready[philox.NewStream(c.seed, 0xde11, 0, 0).Uint32(c.draws)%uint32(len(ready))]
	c.draws++
	m := w.inbox[0]
	w.inbox = w.inbox[1:]
	ev := c.compute(w, m)
	if c.tamper != nil {
		if ev = c.tamper(w, m, ev); ev == nil {
			return true
		}
	}
	c.step(ev)
	c.answers++
	if c.after != nil {
		c.after()
	}
	return true
}

// run delivers until the job ends or nothing can be delivered.
func (c *cluster) run() {
	c.t.Helper()
	for c.finished == nil && c.failed == nil && c.deliver() {
	}
}

// wantDone checks that the job finished with the reference's parameters.
func (c *cluster) wantDone(ref reference) {
	c.t.Helper()
	if c.failed != nil {
		c.fatalf("job failed: %v", c.failed)
	}
	if c.finished == nil {
		c.fatalf("job stalled after %d steps; last effects %s", c.eng.StepsApplied(), describe(c.log[max(0, len(c.log)-5):]))
	}
	if c.finished.Steps != c.spec.Steps {
		c.fatalf("finished after %d steps, want %d", c.finished.Steps, c.spec.Steps)
	}
	if got := paramHash(c.eng.Params()); got != ref.hash {
		c.fatalf("parameters %x, reference %x", got[:8], ref.hash[:8])
	}
}

func describe(effects []Effect) string {
	var s []string
	for _, ef := range effects {
		switch ef := ef.(type) {
		case Assign:
			s = append(s, fmt.Sprintf("Assign{%s #%d step %d %v}", ef.Worker, ef.ID, ef.Step, ef.Leaves))
		case Evaluate:
			s = append(s, fmt.Sprintf("Evaluate{%s #%d [%d, %d)}", ef.Worker, ef.ID, ef.From, ef.To))
		case PersistCheckpoint:
			s = append(s, fmt.Sprintf("PersistCheckpoint{step %d}", ef.Checkpoint.Step))
		default:
			s = append(s, fmt.Sprintf("%T%+v", ef, ef))
		}
	}
	return strings.Join(s, ", ")
}

// effectsOf returns the effects of type E in effects.
func effectsOf[E Effect](effects []Effect) []E {
	var out []E
	for _, ef := range effects {
		if e, ok := ef.(E); ok {
			out = append(out, e)
		}
	}
	return out
}

// The same job gives bit-identical parameters, losses and accuracies with
// 1, 2, 3 or 7 workers of any speeds, answering in any order, as the
// reference (one worker, no engine) and as the local Trainer.
func TestEngineMatchesReference(t *testing.T) {
	configs := []struct {
		name   string
		speeds []float64
	}{
		{"1 worker", []float64{100}},
		{"2 workers", []float64{300, 100}},
		{"3 workers of unknown speed", []float64{0, 0, 0}},
		{"7 workers", []float64{50, 400, 0, 120, 90, 10, 250}},
	}
	for _, spec := range []job.Spec{engineJob(), dropoutJob(), batchNormJob()} {
		ref := referenceRun(t, spec)

		tr, w := newLocalRun(t, spec, 1)
		if _, err := tr.Run(context.Background(), w, nil, nil); err != nil {
			t.Fatal(err)
		}
		if got := paramHash(tr.Params()); got != ref.hash {
			t.Fatalf("%s: local Trainer ends at %x, reference at %x", netName(spec), got[:8], ref.hash[:8])
		}

		for _, cfg := range configs {
			for _, seed := range engineSeeds() {
				name := fmt.Sprintf("%s, %s", netName(spec), cfg.name)
				c := newCluster(t, name, seed, spec, EngineConfig{})
				for i, s := range cfg.speeds {
					c.join(fmt.Sprintf("w%d", i+1), s)
				}
				c.start(nil)
				c.run()
				c.wantDone(ref)
				for i, s := range c.applied {
					if s.Loss != ref.losses[i] {
						c.fatalf("step %d: loss %v, reference %v", s.Step, s.Loss, ref.losses[i])
					}
				}
				last := c.evals[len(c.evals)-1]
				if last.Accuracy != ref.accuracy || c.finished.TestAccuracy != ref.accuracy {
					c.fatalf("final accuracy %v (result %v), reference %v", last.Accuracy, c.finished.TestAccuracy, ref.accuracy)
				}
				if len(cfg.speeds) == 7 {
					checkSpread(c)
				}
			}
		}
	}
}

// checkSpread checks that a 7-worker run really spread its work: several
// workers computed gradients, and each evaluation's ranges tile the test
// set over several workers.
func checkSpread(c *cluster) {
	c.t.Helper()
	gradWorkers := map[string]bool{}
	for _, a := range effectsOf[Assign](c.log) {
		gradWorkers[a.Worker] = true
	}
	if len(gradWorkers) < 4 {
		c.fatalf("only %d workers got gradients to compute", len(gradWorkers))
	}
	byVersion := map[int64][]Evaluate{}
	for _, ev := range effectsOf[Evaluate](c.log) {
		byVersion[ev.Version] = append(byVersion[ev.Version], ev)
	}
	testLen := min(c.test.Len(), c.spec.TestLimit)
	for v, evs := range byVersion {
		next, workers := 0, map[string]bool{}
		for _, ev := range evs {
			if ev.From != next {
				c.fatalf("evaluation after step %d: range [%d, %d) after %d", v, ev.From, ev.To, next)
			}
			next = ev.To
			workers[ev.Worker] = true
		}
		if next != testLen || len(workers) < 3 {
			c.fatalf("evaluation after step %d covers [0, %d) of %d over %d workers", v, next, testLen, len(workers))
		}
	}
}

func netName(s job.Spec) string {
	if s.NetworkSpec != nil {
		return s.NetworkSpec.Name
	}
	return s.Network
}

// A worker lost in the middle of a step: its micro-batches are given to the
// others, the step completes once, and the parameters are the same. When
// it rejoins it gets work again.
func TestEngineWorkerLostMidStep(t *testing.T) {
	spec := engineJob()
	ref := referenceRun(t, spec)
	for _, seed := range engineSeeds() {
		c := newCluster(t, "3 workers, one lost in step 2", seed, spec, EngineConfig{})
		for _, id := range []string{"a", "b", "c"} {
			c.join(id, 100)
		}
		c.start(nil)
		var lost string
		var lostLeaves []tree.Subtree
		lossAt, rejoinAt := 0, 0
		c.after = func() {
			if lost == "" && c.eng.StepsApplied() == 1 {
				for _, w := range c.workers {
					if len(w.inbox) > 0 && !w.inbox[0].eval {
						lost = w.id
						for _, m := range w.inbox {
							lostLeaves = append(lostLeaves, m.leaves)
						}
						break
					}
				}
				if lost != "" {
					lossAt = len(c.log)
					c.lose(lost)
				}
			}
			if lost != "" && rejoinAt == 0 && c.eng.StepsApplied() == 3 {
				rejoinAt = len(c.log)
				c.join(lost, 100)
			}
		}
		c.run()
		c.wantDone(ref)
		if lost == "" {
			c.fatalf("no worker had work to lose in step 2")
		}
		// Every micro-batch the lost worker held went to another worker
		// before step 2 was applied.
		redone := map[int]bool{}
		for _, ef := range c.log[lossAt:] {
			if s, ok := ef.(StepApplied); ok && s.Step == 2 {
				break
			}
			if a, ok := ef.(Assign); ok && a.Step == 1 {
				if a.Worker == lost {
					c.fatalf("lost worker %s assigned %v", lost, a.Leaves)
				}
				for i := a.Leaves.Lo; i < a.Leaves.Hi; i++ {
					redone[i] = true
				}
			}
		}
		for _, l := range lostLeaves {
			for i := l.Lo; i < l.Hi; i++ {
				if !redone[i] {
					c.fatalf("micro-batch %d of lost worker %s (held %v) not reassigned; effects since: %s", i, lost, lostLeaves, describe(c.log[lossAt:]))
				}
			}
		}
		if !slices.ContainsFunc(effectsOf[Assign](c.log[rejoinAt:]), func(a Assign) bool { return a.Worker == lost }) {
			c.fatalf("worker %s rejoined and got no work", lost)
		}
		// The work given out again is counted: the lost worker's images.
		lostImages := 0
		for _, l := range lostLeaves {
			lostImages += (l.Hi - l.Lo) * spec.MicroBatch
		}
		steps := effectsOf[StepApplied](c.log)
		if got := steps[len(steps)-1].ImagesReissued; got != int64(lostImages) {
			c.fatalf("%d images reported given out again, want the %d the lost worker held", got, lostImages)
		}
	}
}

// A straggler: at its deadline (measured from Ticks; by default a multiple
// of the time its work should take at its speed) its work is given to
// another worker, whose result is taken; the straggler's late result, and
// any repeated result, are dropped.
func TestEngineStraggler(t *testing.T) {
	spec := engineJob()
	ref := referenceRun(t, spec)
	for _, seed := range engineSeeds() {
		c := newCluster(t, "straggler", seed, spec, EngineConfig{})
		c.ignoreCancel = true // the straggler answers anyway
		t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		c.step(Tick{Now: t0})
		c.join("fast", 100)
		c.join("slow", 100)
		c.start(nil)
		slow := c.worker("slow")
		slow.held = true
		var slowIDs []uint64
		for _, m := range slow.inbox {
			slowIDs = append(slowIDs, m.id)
		}
		if len(slowIDs) == 0 {
			c.fatalf("the slow worker got no work in step 1")
		}
		c.run()
		if c.eng.StepsApplied() != 0 {
			c.fatalf("step 1 applied without the slow worker's micro-batches")
		}
		if n := len(effectsOf[Assign](c.step(Tick{Now: t0.Add(time.Second)}))); n != 0 {
			c.fatalf("%d assignments copied after 1 s, before any deadline", n)
		}
		// 25 images at 100 images/s take 0.25 s; the deadline is the
		// 2 s floor.
		copies := effectsOf[Assign](c.step(Tick{Now: t0.Add(3 * time.Second)}))
		if len(copies) != len(slowIDs) || copies[0].Worker != "fast" {
			c.fatalf("at the deadline: copies %s, want the slow worker's %d given to fast", describe(c.log[len(c.log)-len(copies):]), len(slowIDs))
		}
		var captured Event
		c.tamper = func(w *simWorker, m wire, ev Event) Event {
			if g, ok := ev.(GradientsReceived); ok && captured == nil && m.step == 1 {
				g.Grad = slices.Clone(g.Grad)
				captured = g
			}
			return ev
		}
		for c.eng.StepsApplied() == 0 && c.deliver() {
		}
		if c.eng.StepsApplied() != 1 {
			c.fatalf("step 1 not applied after the copies were answered")
		}
		slow.held = false
		c.run()
		c.wantDone(ref)
		for _, id := range slowIDs {
			if !slices.ContainsFunc(effectsOf[Dropped](c.log), func(d Dropped) bool { return d.Assignment == id && d.Worker == "slow" }) {
				c.fatalf("the slow worker's late result for assignment %d was not dropped", id)
			}
		}
		if captured == nil {
			c.fatalf("no result of step 2 captured")
		}
		if got := c.step(captured); len(got) != 1 || !isDropped(got[0]) {
			c.fatalf("repeated result: %s, want one Dropped", describe(got))
		}
	}
}

func isDropped(ef Effect) bool { _, ok := ef.(Dropped); return ok }

// refusedWith reports whether effects are exactly one Refused whose error
// is target.
func refusedWith(effects []Effect, target error) bool {
	if len(effects) != 1 {
		return false
	}
	r, ok := effects[0].(Refused)
	return ok && errors.Is(r.Err, target)
}

// Results that cannot be right are refused, with a clear error and no
// other change: from an unknown worker, for an assignment never given out,
// for another worker's assignment. Bad ones from a worker — the wrong
// shape, NaNs, the wrong kind — flag it, and its work is redone elsewhere
// with the same result.
func TestEngineRefusesBadResults(t *testing.T) {
	spec := engineJob()
	ref := referenceRun(t, spec)
	for _, seed := range engineSeeds() {
		c := newCluster(t, "bad results", seed, spec, EngineConfig{})
		for _, id := range []string{"good", "short", "nan", "confused", "elsewhere"} {
			c.join(id, 100)
		}
		c.start(nil)
		P := len(c.eng.Params())
		if got := c.step(GradientsReceived{Worker: "ghost", Assignment: 1, Grad: make([]float32, P)}); !refusedWith(got, ErrUnknownWorker) {
			c.fatalf("result from an unknown worker: %s", describe(got))
		}
		if got := c.step(GradientsReceived{Worker: "good", Assignment: 1 << 40, Grad: make([]float32, P)}); !refusedWith(got, ErrUnknownAssignment) {
			c.fatalf("result for an assignment never given out: %s", describe(got))
		}
		other := c.worker("short").inbox[0].id
		if got := c.step(GradientsReceived{Worker: "good", Assignment: other, Grad: make([]float32, P)}); !refusedWith(got, ErrNotYours) {
			c.fatalf("result for another worker's assignment: %s", describe(got))
		}

		wantErr := map[string]error{"short": ErrWrongShape, "nan": ErrNonFinite, "confused": ErrWrongKind, "elsewhere": ErrOtherWork}
		badLeaves := map[string]tree.Subtree{}
		c.tamper = func(w *simWorker, m wire, ev Event) Event {
			g, ok := ev.(GradientsReceived)
			if !ok || c.flagged[w.id] || wantErr[w.id] == nil {
				return ev
			}
			badLeaves[w.id] = m.leaves
			switch w.id {
			case "short":
				g.Grad = g.Grad[:10]
			case "nan":
				g.Grad[7] = float32(math.NaN())
			case "confused":
				return EvalReceived{Worker: w.id, Assignment: m.id, Correct: 3}
			case "elsewhere": // says it computed other micro-batches
				g.Leaves = tree.Subtree{Lo: m.leaves.Lo + 1, Hi: m.leaves.Hi + 1}
			}
			return g
		}
		c.run()
		c.wantDone(ref)
		for id, target := range wantErr {
			if !slices.ContainsFunc(effectsOf[Refused](c.log), func(r Refused) bool { return r.Worker == id && errors.Is(r.Err, target) }) {
				c.fatalf("worker %s's bad result not refused with %v", id, target)
			}
			if !slices.ContainsFunc(effectsOf[WorkerFlagged](c.log), func(f WorkerFlagged) bool { return f.Worker == id }) {
				c.fatalf("worker %s not flagged", id)
			}
			l := badLeaves[id]
			for leaf := l.Lo; leaf < l.Hi; leaf++ {
				if !slices.ContainsFunc(effectsOf[Assign](c.log), func(a Assign) bool {
					return a.Worker == "good" && a.Leaves.Lo <= leaf && leaf < a.Leaves.Hi
				}) {
					c.fatalf("micro-batch %d of worker %s not recomputed by the good worker", leaf, id)
				}
			}
		}
		for _, r := range effectsOf[Refused](c.log) {
			if !strings.Contains(r.Err.Error(), "train: ") {
				c.fatalf("refusal without context: %v", r.Err)
			}
		}
	}
}

// Non-finite gradients from two workers in one step mean the model has
// diverged: the job fails instead of flagging every worker.
func TestEngineDiverged(t *testing.T) {
	c := newCluster(t, "diverged", 1, engineJob(), EngineConfig{})
	c.join("a", 0)
	c.join("b", 0)
	c.start(nil)
	c.tamper = func(w *simWorker, m wire, ev Event) Event {
		if g, ok := ev.(GradientsReceived); ok {
			g.Grad[0] = float32(math.Inf(1))
			return g
		}
		return ev
	}
	c.run()
	if c.failed == nil || !strings.Contains(c.failed.Error(), "diverged") {
		c.fatalf("job failed with %v, want divergence", c.failed)
	}
	if len(effectsOf[WorkerFlagged](c.log)) != 1 {
		c.fatalf("flagged %d workers, want the first one only", len(effectsOf[WorkerFlagged](c.log)))
	}
}

// A worker that joins in the middle of a step gets work from the next one.
func TestEngineJoinMidJob(t *testing.T) {
	spec := engineJob()
	ref := referenceRun(t, spec)
	for _, seed := range engineSeeds() {
		c := newCluster(t, "join mid-job", seed, spec, EngineConfig{})
		c.start(nil)
		c.join("first", 100)
		if got := c.join("late", 100); len(got) != 0 {
			c.fatalf("joining mid-step: %s, want nothing", describe(got))
		}
		c.run()
		c.wantDone(ref)
		first := slices.IndexFunc(c.log, func(ef Effect) bool { a, ok := ef.(Assign); return ok && a.Worker == "late" })
		applied := slices.IndexFunc(c.log, func(ef Effect) bool { _, ok := ef.(StepApplied); return ok })
		if first < 0 || first < applied || c.log[first].(Assign).Step != 1 {
			c.fatalf("late worker's first assignment at effect %d, step 1 applied at %d: %s", first, applied, describe(c.log[:max(first+1, applied+1)]))
		}
	}
}

// Below the minimum number of workers the engine waits — giving out no
// work, not even the lost worker's — and resumes when enough join.
func TestEngineMinWorkers(t *testing.T) {
	spec := engineJob()
	ref := referenceRun(t, spec)
	for _, seed := range engineSeeds() {
		c := newCluster(t, "min workers", seed, spec, EngineConfig{MinWorkers: 2})
		if w := effectsOf[Waiting](c.start(nil)); len(w) != 1 || w[0].Available != 0 || !strings.Contains(w[0].Reason, "fewer than 2 workers") {
			c.fatalf("job with no workers: %s", describe(c.log))
		}
		if got := c.join("a", 100); len(effectsOf[Waiting](got)) != 1 || len(effectsOf[Assign](got)) != 0 {
			c.fatalf("one of two workers joined: %s", describe(got))
		}
		if got := c.join("b", 100); len(effectsOf[Assign](got)) == 0 {
			c.fatalf("second worker joined: %s, want assignments", describe(got))
		}
		lostAt := -1
		c.after = func() {
			if lostAt < 0 && c.eng.StepsApplied() == 2 && len(c.worker("b").inbox) > 0 {
				lostAt = len(c.log)
				if got := c.lose("b"); len(effectsOf[Waiting](got)) != 1 {
					c.fatalf("lost one of two workers: %s, want Waiting", describe(got))
				}
			}
		}
		c.run()
		if lostAt < 0 || c.finished != nil {
			c.fatalf("worker b never lost mid-step, or the job finished with one worker")
		}
		if n := len(effectsOf[Assign](c.log[lostAt:])); n != 0 {
			c.fatalf("%d assignments while waiting", n)
		}
		if got := c.join("c", 100); len(effectsOf[Assign](got)) == 0 {
			c.fatalf("third worker joined: %s, want the lost work assigned", describe(got))
		}
		c.run()
		c.wantDone(ref)
	}
}

// Checkpoints come at the job's cadence and at the end; a job resumed from
// one (written and read back) by a new engine ends with the same bits.
func TestEngineCheckpointResume(t *testing.T) {
	spec := engineJob()
	ref := referenceRun(t, spec)
	c := newCluster(t, "checkpoints", 1, spec, EngineConfig{})
	c.runOnTwo()
	c.wantDone(ref)
	var steps []int64
	for _, ck := range c.checkpoints {
		steps = append(steps, ck.Step)
	}
	if !slices.Equal(steps, []int64{4, 6}) {
		c.fatalf("checkpoints at steps %v, want [4 6] (the epoch boundary and the end)", steps)
	}
	// The checkpoint precedes the evaluation of its step, and the job's end
	// comes last.
	if _, ok := c.log[len(c.log)-1].(JobFinished); !ok {
		c.fatalf("last effect %s, want JobFinished", describe(c.log[len(c.log)-1:]))
	}

	ck := roundTrip(t, c.checkpoints[0])
	for _, seed := range engineSeeds() {
		r := newCluster(t, "resumed at step 4", seed, spec, EngineConfig{FirstAssignment: 1000})
		for _, id := range []string{"x", "y", "z"} {
			r.join(id, 0)
		}
		r.start(ck)
		r.run()
		r.wantDone(ref)
		if r.applied[0].Step != 5 {
			r.fatalf("resumed run applied step %d first, want 5", r.applied[0].Step)
		}
		if a := effectsOf[Assign](r.log); a[0].ID != 1000 {
			r.fatalf("first assignment ID %d, want 1000", a[0].ID)
		}
		// Every ID it gave out lies in [FirstAssignment, NextAssignment),
		// where the coordinator's next engine of the term starts.
		next := r.eng.NextAssignment()
		for _, a := range effectsOf[Assign](r.log) {
			if a.ID < 1000 || a.ID >= next {
				r.fatalf("assignment ID %d outside [1000, %d)", a.ID, next)
			}
		}
		for _, e := range effectsOf[Evaluate](r.log) {
			if e.ID < 1000 || e.ID >= next {
				r.fatalf("evaluation ID %d outside [1000, %d)", e.ID, next)
			}
		}
	}

	done := newCluster(t, "resumed at the end", 1, spec, EngineConfig{})
	got := done.start(c.checkpoints[1])
	if f := effectsOf[JobFinished](got); len(f) != 1 || f[0].Result.Steps != 6 || len(got) != 1 {
		done.fatalf("resumed from the final checkpoint: %s, want JobFinished after 6 steps", describe(got))
	}
}

// A job with a learning-rate schedule, decoupled weight decay and gradient
// clipping applies each step at the schedule's rate for that step, reports
// the rate, gives the reference's bits on several workers, and a run
// resumed from its mid-job checkpoint continues on the same rates to the
// same bits (the schedule is a pure function of the optimizer's step
// count, which the checkpoint holds).
func TestEngineScheduleResume(t *testing.T) {
	spec := engineJob()
	spec.Optimizer = model.OptimizerSpec{
		LR: 0.003, WeightDecay: 0.01, ClipNorm: 0.5,
		Schedule: model.LRSchedule{Type: model.ScheduleCosine, WarmupEpochs: 0.5, MinLR: 1e-4},
	}
	ref := referenceRun(t, spec)
	if constant := referenceRun(t, engineJob()); constant.hash == ref.hash {
		t.Fatal("the schedule, decay and clipping changed nothing")
	}
	c := newCluster(t, "scheduled", 1, spec, EngineConfig{})
	c.runOnTwo()
	c.wantDone(ref)
	h := model.Horizon{PerEpoch: 4, Total: 6} // 200 samples in batches of 50, 6 steps
	for _, a := range c.applied {
		if want := spec.Optimizer.Schedule.Rate(0.003, a.Step-1, h); a.LR != want {
			c.fatalf("step %d applied at rate %v, want %v", a.Step, a.LR, want)
		}
	}
	if c.applied[0].LR >= c.applied[1].LR || c.applied[5].LR >= c.applied[2].LR {
		c.fatalf("rates %v: want a ramp up, then a fall", ratesOf(c.applied))
	}

	ck := roundTrip(t, c.checkpoints[0])
	if ck.Step != 4 || ck.Optimizer.Schedule != spec.Optimizer.Schedule {
		t.Fatalf("checkpoint at step %d with schedule %+v, want step 4 with %+v", ck.Step, ck.Optimizer.Schedule, spec.Optimizer.Schedule)
	}
	r := newCluster(t, "scheduled, resumed at step 4", 2, spec, EngineConfig{})
	r.join("x", 0)
	r.join("y", 0)
	r.start(ck)
	r.run()
	r.wantDone(ref)
	if got, want := ratesOf(r.applied), ratesOf(c.applied[4:]); !slices.Equal(got, want) {
		r.fatalf("resumed run's rates %v, want %v", got, want)
	}
}

// A job that evaluates the moving average of its parameters sends workers
// the average, under a version of its own (so no worker takes it for the
// step's parameters), reports the average's accuracy, stores the average
// in its checkpoints as the model, and a resumed run continues the average
// to the same bits.
func TestEngineEMA(t *testing.T) {
	spec := engineJob()
	spec.Optimizer.EMA = model.EMASpec{Decay: 0.9, Evaluate: true}
	ref := referenceRun(t, spec)
	check := func(c *cluster) {
		c.t.Helper()
		c.wantDone(ref)
		if c.finished.TestAccuracy != ref.accuracy {
			c.fatalf("test accuracy %v, the reference's average scores %v", c.finished.TestAccuracy, ref.accuracy)
		}
		last := c.checkpoints[len(c.checkpoints)-1]
		var avg []float32
		for _, a := range last.ModelParams() {
			avg = append(avg, a.Data...)
		}
		if got := paramHash(avg); got != ref.average {
			c.fatalf("the final checkpoint's model %x, the reference's average %x", got[:8], ref.average[:8])
		}
		evals := effectsOf[Evaluate](c.log)
		if len(evals) == 0 {
			c.fatalf("no evaluation")
		}
		for _, e := range evals {
			if e.ParamsVersion != e.Version|AverageVersion {
				c.fatalf("evaluation of step %d sent as version %#x, want the average's %#x", e.Version, e.ParamsVersion, e.Version|AverageVersion)
			}
		}
		if e := evals[len(evals)-1]; paramHash(e.Params) != ref.average {
			c.fatalf("the last evaluation's parameters are not the average")
		}
	}
	c := newCluster(t, "ema", 1, spec, EngineConfig{})
	c.runOnTwo()
	check(c)
	if avg := c.checkpoints[0].Average(); len(avg) != len(c.checkpoints[0].Params) || avg[0].Name != c.checkpoints[0].Params[0].Name {
		t.Fatalf("checkpoint average %d tensors, want one per parameter, named like it", len(avg))
	}

	ck := roundTrip(t, c.checkpoints[0])
	r := newCluster(t, "ema, resumed at step 4", 2, spec, EngineConfig{})
	r.join("x", 0)
	r.start(ck)
	r.run()
	check(r)
}

// runOnTwo runs the job from its start on two workers of different speeds.
func (c *cluster) runOnTwo() {
	c.t.Helper()
	c.join("a", 100)
	c.join("b", 50)
	c.start(nil)
	c.run()
}

// roundTrip is ck written and read back, as a resumed job gets it.
func roundTrip(t *testing.T, ck *model.Checkpoint) *model.Checkpoint {
	t.Helper()
	var buf bytes.Buffer
	if err := model.WriteCheckpoint(&buf, ck); err != nil {
		t.Fatal(err)
	}
	back, err := model.ReadCheckpoint(&buf)
	if err != nil {
		t.Fatal(err)
	}
	return back
}

func ratesOf(steps []StepApplied) []float64 {
	var out []float64
	for _, s := range steps {
		out = append(out, s.LR)
	}
	return out
}

// A bad job or checkpoint fails the job; a second job while one runs is
// refused.
func TestEngineBadJob(t *testing.T) {
	c := newCluster(t, "bad job", 1, engineJob(), EngineConfig{})
	bad := engineJob()
	bad.MicroBatch = 33
	if f := effectsOf[JobFailed](c.step(JobStarted{Spec: bad, TrainLen: 100, TestLen: 100})); len(f) != 1 || !strings.Contains(f[0].Err.Error(), "not a multiple of microBatch 33") {
		c.fatalf("bad spec: %s", describe(c.log))
	}
	c.start(nil)
	if got := c.start(nil); !refusedWith(got, ErrJobRunning) {
		c.fatalf("second job while one runs: %s", describe(got))
	}
	ck := c.eng.Checkpoint()
	ck.Seed++
	other := newCluster(t, "bad checkpoint", 1, engineJob(), EngineConfig{})
	if f := effectsOf[JobFailed](other.start(ck)); len(f) != 1 || !strings.Contains(f[0].Err.Error(), "seed") {
		other.fatalf("checkpoint of another seed: %s", describe(other.log))
	}
}

// Any cover of the leaves by aligned subtrees, each reduced on its own with
// ReduceSubtree, then combined with ReduceTree, gives the bits of
// ReduceTree over all the leaves.
func TestShares(t *testing.T) {
	ws := func(speeds ...float64) []*workerState {
		var out []*workerState
		for _, s := range speeds {
			out = append(out, &workerState{declared: s})
		}
		return out
	}
	cases := []struct {
		total  int
		speeds []float64
		want   []int
	}{
		{5, []float64{300, 100}, []int{4, 1}},
		{5, []float64{0, 0, 0}, []int{2, 1, 2}},
		{10, []float64{100, 0}, []int{5, 5}}, // unknown counts as the average
		{3, []float64{1000, 1, 1}, []int{3, 0, 0}},
		{1, []float64{1, 1, 1, 1}, []int{0, 1, 0, 0}},
	}
	for _, c := range cases {
		got := shares(c.total, ws(c.speeds...))
		if !slices.Equal(got, c.want) {
			t.Errorf("shares(%d, %v) = %v, want %v", c.total, c.speeds, got, c.want)
		}
	}
}

// With MaxWorkers the engine gives work to the earliest workers to join,
// no more; a later one steps in for one that is lost, and the result is
// the reference's bits.
func TestEngineMaxWorkers(t *testing.T) {
	spec := engineJob()
	ref := referenceRun(t, spec)
	for _, seed := range engineSeeds() {
		c := newCluster(t, "max workers", seed, spec, EngineConfig{MaxWorkers: 2})
		c.join("a", 100)
		c.join("b", 100)
		c.join("c", 100)
		c.start(nil)
		lostAt := -1
		c.after = func() {
			if lostAt < 0 && c.eng.StepsApplied() == 2 && len(c.worker("b").inbox) > 0 {
				lostAt = len(c.log)
				c.lose("b")
			}
		}
		c.run()
		if lostAt < 0 {
			c.fatalf("worker b never lost mid-step")
		}
		for i, ef := range c.log {
			a, ok := ef.(Assign)
			if !ok {
				continue
			}
			if i < lostAt && a.Worker == "c" {
				c.fatalf("assignment %d to c, the third worker, while a and b were live", a.ID)
			}
			if i >= lostAt && a.Worker == "b" {
				c.fatalf("assignment %d to b after it was lost", a.ID)
			}
		}
		gotC := false
		for _, a := range effectsOf[Assign](c.log[lostAt:]) {
			gotC = gotC || a.Worker == "c"
		}
		if !gotC {
			c.fatalf("c never stepped in for b")
		}
		c.wantDone(ref)
	}
}

// A worker whose speed estimate gives it no share is measured again: the
// reproduction of a local run where one bad first measurement left one of
// two equal workers idle for the whole job. "slow" declares 1 image/s and
// "fast" 1000, so every step's two micro-batches go to "fast" until "slow"
// has sat out probeFirstAfter steps; then it gets one. Without reported
// compute times its estimate stays 1 and the next probe waits twice as long;
// with them (equal real speeds) it keeps a share in every later step. The
// parameters are the reference's either way.
func TestEngineProbesStarvedWorker(t *testing.T) {
	spec := dropoutJob()
	spec.Steps, spec.Batch, spec.MicroBatch, spec.Seed = 3*probeFirstAfter, 16, 8, 5
	ref := referenceRun(t, spec)
	slowSteps := func(c *cluster) []int64 {
		var steps []int64
		for _, a := range effectsOf[Assign](c.log) {
			if a.Worker == "slow" {
				steps = append(steps, a.Step)
			}
		}
		return steps
	}
	for _, timed := range []bool{false, true} {
		c := newCluster(t, fmt.Sprintf("probe starved worker (compute times reported: %v)", timed), 1, spec, EngineConfig{})
		if timed {
			c.tamper = func(_ *simWorker, m wire, ev Event) Event {
				if g, ok := ev.(GradientsReceived); ok {
					g.Compute = time.Duration(len(m.micro)) * 10 * time.Millisecond
					return g
				}
				return ev
			}
		}
		c.start(nil)
		c.join("fast", 1000)
		c.join("slow", 1)
		c.run()
		c.wantDone(ref)
		got := slowSteps(c)
		// Step 0 went to "fast" alone before "slow" joined; "slow" sits
		// out steps 1 to probeFirstAfter−1 and is probed in the next.
		first := int64(probeFirstAfter)
		if !timed {
			if want := []int64{first}; !slices.Equal(got, want) {
				c.fatalf("slow worker assigned at steps %v, want %v (one probe, the next %d steps later)", got, want, 2*probeFirstAfter)
			}
			continue
		}
		var want []int64
		for s := first; s < spec.Steps; s++ {
			want = append(want, s)
		}
		if !slices.Equal(got, want) {
			c.fatalf("slow worker assigned at steps %v, want every step from its probe at %d on", got, first)
		}
	}
}
