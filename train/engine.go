package train

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/model"
	"github.com/dpcnn/dpcnn/tree"
)

// Engine is the training engine: a deterministic state machine that plans
// each step, hands its micro-batches out to workers as aligned subtrees of
// the reduction tree, combines their sums in the tree's fixed order, applies
// the optimizer, evaluates and checkpoints at the job's cadence, and copes
// with workers that join, die, straggle or answer wrongly.
//
// It does no I/O and keeps no clock: events go in through Step, effects come
// out of it, and time is whatever the Ticks say. The same events always give
// the same effects. One goroutine (the driver) owns an Engine; it is not
// safe for concurrent use.
//
// The trained parameters are bit-for-bit those of one worker computing every
// micro-batch and reducing them with ReduceTree, whatever the number of
// workers, their speeds, the order results arrive in, and the work redone
// after failures (on the same kind of backend).
type Engine struct {
	cfg     EngineConfig
	backend kernels.Backend[float32]

	workers []*workerState // in the order they joined
	now     time.Time
	clock   bool   // a Tick has set now
	nextID  uint64 // of the next assignment
	waiting int    // workers available when Waiting was last reported; −1 when not waiting
	out     []Effect
	avail   []*workerState // scratch

	job *jobState // nil until the first JobStarted
}

// EngineConfig tunes an Engine; zero fields take their defaults.
type EngineConfig struct {
	// MinWorkers is the number of workers below which training pauses
	// (default 1).
	MinWorkers int
	// MaxWorkers, when positive, is the most workers given work: the
	// earliest to join of those not flagged (0: all of them).
	MaxWorkers int
	// Deadline, when set, is how long any assignment may stay outstanding
	// before a copy of it is given to another worker (the first result
	// wins). Otherwise the deadline is DeadlineFactor times the time the
	// worker's queue should take at its measured speed, at least
	// MinDeadline, or UnknownSpeedDeadline while its speed is unknown.
	Deadline             time.Duration
	DeadlineFactor       float64       // default 4
	MinDeadline          time.Duration // default 2 s
	UnknownSpeedDeadline time.Duration // default 60 s
	// FirstAssignment is the first assignment ID; the engine numbers its
	// assignments from it, one after another (NextAssignment). A
	// coordinator passes one above any an earlier engine or leader used,
	// so that late answers to those are never mistaken for new ones
	// (default 1).
	FirstAssignment uint64
}

func (c EngineConfig) withDefaults() EngineConfig {
	if c.MinWorkers < 1 {
		c.MinWorkers = 1
	}
	if c.DeadlineFactor <= 0 {
		c.DeadlineFactor = 4
	}
	if c.MinDeadline <= 0 {
		c.MinDeadline = 2 * time.Second
	}
	if c.UnknownSpeedDeadline <= 0 {
		c.UnknownSpeedDeadline = time.Minute
	}
	if c.FirstAssignment == 0 {
		c.FirstAssignment = 1
	}
	return c
}

type jobPhase int

const (
	phaseRunning jobPhase = iota
	phaseFinished
	phaseFailed
)

// jobState is everything of the job being trained.
type jobState struct {
	spec    job.Spec
	net     *model.Network[float32] // holds the parameters, their flat vector and the gradient the optimizer applies
	params  model.Params[float32]
	opt     model.Optimizer[float32]
	plan    dataset.Plan
	order   *dataset.Order
	testLen int
	sched   job.Schedule // optimizer steps of the job, in all and per epoch
	total   int64        // sched.Total
	phase   jobPhase
	result  Result

	step  int64     // optimizer steps applied
	epoch int64     // epochs completed
	flat  []float32 // the parameters after step updates, as sent to workers
	// avgFlat is the moving average of the parameters, as sent to workers
	// for evaluation when the job evaluates it (model.EMASpec.Evaluate).
	avgFlat []float32

	train           *round // the step in flight, if any
	eval            *round // the evaluation in flight, if any
	finishAfterEval bool

	idx         []int32           // the step's global batch
	micro       []tree.MicroBatch // its micro-batches
	bufs        [][]float32       // per leaf, allocated when first used
	roots       [][]float32       // bufs[i] when leaf i is a received subtree's root, else nil
	losses      []float64         // loss sums of the leaves
	outstanding []*assignment     // by ascending ID

	// issued counts the training images handed out, copies included, and
	// applied those of the steps applied, both since the job (re)started
	// in this engine: the difference is work given out more than once.
	issued, applied int64
}

// NewEngine returns an engine that applies optimizer updates on b.
func NewEngine(b kernels.Backend[float32], cfg EngineConfig) *Engine {
	cfg = cfg.withDefaults()
	return &Engine{cfg: cfg, backend: b, nextID: cfg.FirstAssignment, waiting: -1}
}

// Step hands the engine one event and appends the effects it causes to dst,
// which it returns.
func (e *Engine) Step(ev Event, dst []Effect) []Effect {
	e.out = dst
	switch ev := ev.(type) {
	case JobStarted:
		e.startJob(ev)
	case WorkerJoined:
		e.join(ev)
	case WorkerLost:
		e.lose(ev.ID)
	case GradientsReceived:
		e.gradients(ev)
	case SumReceived:
		e.sum(ev)
	case ResultLost:
		if a := e.take(ev.Worker, ev.Assignment); a != nil {
			e.release(a) // pending again: advance gives it out
		}
	case EvalReceived:
		e.evalResult(ev)
	case WorkFailed:
		e.workFailed(ev)
	case Tick:
		e.tick(ev.Now)
	default:
		e.emit(Refused{Err: fmt.Errorf("train: engine: unknown event %T", ev)})
	}
	e.advance()
	out := e.out
	e.out = nil
	return out
}

func (e *Engine) emit(ef Effect) { e.out = append(e.out, ef) }

// startJob validates the job, initialises (or restores) its parameters and
// optimizer, and makes it the engine's job.
func (e *Engine) startJob(ev JobStarted) {
	if e.job != nil && e.job.phase == phaseRunning {
		e.emit(Refused{Err: fmt.Errorf("train: start job %q: %w", ev.Spec.Name, ErrJobRunning)})
		return
	}
	j, err := newJobState(ev.Spec, e.backend, ev.TrainLen, ev.TestLen)
	if err == nil && ev.Resume != nil {
		err = j.restore(ev.Resume)
	}
	if err != nil {
		e.emit(JobFailed{Err: err})
		return
	}
	e.job = j
	for _, w := range e.workers {
		w.flagged = nil // a new job is a fresh start
	}
	e.waiting = -1
	if j.phase == phaseFinished {
		e.finish() // resumed from its final checkpoint
	}
}

func newJobState(spec job.Spec, b kernels.Backend[float32], trainLen, testLen int) (*jobState, error) {
	spec = spec.WithDefaults()
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if trainLen < 1 || testLen < 1 {
		return nil, fmt.Errorf("train: data sets of %d training and %d test samples: want at least 1 of each", trainLen, testLen)
	}
	netSpec, err := spec.Model()
	if err != nil {
		return nil, err
	}
	holder, err := model.New[float32](netSpec, b, 1)
	if err != nil {
		return nil, err
	}
	holder.InitParams(spec.Seed)
	params := holder.Params()
	sched, err := spec.Schedule(trainLen)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	opt, err := model.NewOptimizer[float32](spec.Optimizer, params, model.Horizon{PerEpoch: sched.PerEpoch, Total: sched.Total})
	if err != nil {
		return nil, err
	}
	trainLen = spec.TrainSamples(job.Data{TrainLen: trainLen})
	if spec.TestLimit > 0 {
		testLen = min(testLen, spec.TestLimit)
	}
	plan, err := dataset.NewPlan(trainLen, spec.Batch, spec.MicroBatch, spec.Seed)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	leaves := plan.MicrosPerStep()
	j := &jobState{
		spec: spec, net: holder, params: params, opt: opt, plan: plan, order: dataset.NewOrder(plan),
		testLen: testLen, sched: sched, total: sched.Total,
		result: Result{TestAccuracy: math.NaN()},
		flat:   make([]float32, params.Count()),
		idx:    make([]int32, spec.Batch),
		micro:  make([]tree.MicroBatch, leaves),
		bufs:   make([][]float32, leaves),
		roots:  make([][]float32, leaves),
		losses: make([]float64, leaves),
	}
	j.snapshot()
	return j, nil
}

// snapshot copies the parameters into flat, the vector sent to workers,
// which stays as it is while the next step changes the parameters.
func (j *jobState) snapshot() { copy(j.flat, j.net.FlatValues()) }

// restore resumes the job from a checkpoint of it, changing nothing on an
// error.
func (j *jobState) restore(c *model.Checkpoint) error {
	if c == nil {
		return errors.New("train: restore: no checkpoint")
	}
	if c.Seed != j.spec.Seed {
		return fmt.Errorf("train: checkpoint seed %d differs from the job's %d", c.Seed, j.spec.Seed)
	}
	if len(c.Params) != len(j.params) {
		return fmt.Errorf("train: checkpoint has %d parameter tensors, network has %d", len(c.Params), len(j.params))
	}
	for i, p := range j.params {
		cp := c.Params[i]
		if cp.Name != p.Name || len(cp.Data) != len(p.Value) {
			return fmt.Errorf("train: checkpoint tensor %d is %s[%d], network wants %s[%d]", i, cp.Name, len(cp.Data), p.Name, len(p.Value))
		}
	}
	if c.Step < 0 || c.Epoch < 0 || c.Epoch > c.Step/j.sched.PerEpoch {
		return fmt.Errorf("train: checkpoint at step %d, epoch %d: not a step boundary of this job", c.Step, c.Epoch)
	}
	if err := j.opt.Restore(c.OptimizerState); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	for i, p := range j.params {
		copy(p.Value, c.Params[i].Data)
	}
	j.step, j.epoch = c.Step, c.Epoch
	j.snapshot()
	j.phase = phaseRunning
	if j.step >= j.total {
		j.phase = phaseFinished
	}
	return nil
}

// Restore resumes the job from a checkpoint of it. It is for a job that
// has no work in flight (a driver that resumes before any worker joined);
// a coordinator taking over a job passes JobStarted.Resume instead.
func (e *Engine) Restore(c *model.Checkpoint) error {
	j := e.job
	switch {
	case j == nil:
		return errors.New("train: restore: no job started")
	case j.train != nil || j.eval != nil:
		return fmt.Errorf("train: restore: step %d is in flight", j.step+1)
	}
	return j.restore(c)
}

// Outstanding reports whether assignment id awaits its result.
func (e *Engine) Outstanding(id uint64) bool { return e.lookup(id) != nil }

// NextAssignment is the ID the engine's next assignment will have: every
// ID it gave out is in [FirstAssignment, NextAssignment).
func (e *Engine) NextAssignment() uint64 { return e.nextID }

// Spec is the job with defaults filled in (zero before JobStarted).
func (e *Engine) Spec() job.Spec {
	if e.job == nil {
		return job.Spec{}
	}
	return e.job.spec
}

// Plan is the job's batch plan.
func (e *Engine) Plan() dataset.Plan {
	if e.job == nil {
		return dataset.Plan{}
	}
	return e.job.plan
}

// Schedule is the job's optimizer steps, in all and per epoch (zero before
// JobStarted).
func (e *Engine) Schedule() job.Schedule {
	if e.job == nil {
		return job.Schedule{}
	}
	return e.job.sched
}

// TotalSteps is the number of optimizer steps the job runs.
func (e *Engine) TotalSteps() int64 {
	if e.job == nil {
		return 0
	}
	return e.job.total
}

// StepsApplied is the number of optimizer steps applied so far.
func (e *Engine) StepsApplied() int64 {
	if e.job == nil {
		return 0
	}
	return e.job.step
}

// EpochsDone is the number of epochs completed.
func (e *Engine) EpochsDone() int64 {
	if e.job == nil {
		return 0
	}
	return e.job.epoch
}

// Params returns the current parameters as a flat vector, in parameter
// order (the engine's buffer: read-only, valid until the next step is
// applied).
func (e *Engine) Params() []float32 {
	if e.job == nil {
		return nil
	}
	return e.job.flat
}

// Checkpoint captures the job at the current step boundary (nil before
// JobStarted).
func (e *Engine) Checkpoint() *model.Checkpoint {
	if e.job == nil {
		return nil
	}
	return e.job.checkpoint()
}

func (j *jobState) checkpoint() *model.Checkpoint {
	netSpec, _ := j.spec.Model() // validated when the job started
	ps := make([]model.Tensor, len(j.params))
	for i, p := range j.params {
		ps[i] = model.Tensor{Name: p.Name, Shape: append([]int(nil), p.Shape...), Data: append([]float32(nil), p.Value...)}
	}
	return &model.Checkpoint{
		Spec: netSpec, Optimizer: j.opt.Spec(), OptimizerState: j.opt.State(),
		Step: j.step, Epoch: j.epoch, Seed: j.spec.Seed, Params: ps, Job: j.spec.JSON(),
	}
}

// finish ends the job.
func (e *Engine) finish() {
	j := e.job
	j.phase = phaseFinished
	j.result.Steps, j.result.Epochs = j.step, j.epoch
	res := j.result
	res.EpochAccuracy = append([]float64(nil), j.result.EpochAccuracy...)
	e.emit(JobFinished{Result: res})
}

// fail ends the job with err, cancelling what is outstanding.
func (e *Engine) fail(err error) {
	j := e.job
	for len(j.outstanding) > 0 {
		e.withdraw(j.outstanding[0], true)
	}
	j.train, j.eval = nil, nil
	j.phase = phaseFailed
	e.emit(JobFailed{Err: err})
}
