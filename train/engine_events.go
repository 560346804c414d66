package train

import (
	"errors"
	"fmt"
	"time"

	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/model"
	"github.com/dpcnn/dpcnn/tree"
)

// Event is an input of the Engine: one of JobStarted, WorkerJoined,
// WorkerLost, GradientsReceived, SumReceived, ResultLost, EvalReceived,
// WorkFailed and Tick, passed by value.
type Event interface{ engineEvent() }

// JobStarted starts a job (one at a time; another may start once it has
// finished or failed).
type JobStarted struct {
	Spec job.Spec
	// TrainLen and TestLen are the sizes of the data sets the workers hold,
	// before the job's limits.
	TrainLen, TestLen int
	// Resume, when set, continues the job from this checkpoint of it
	// instead of from its initial parameters.
	Resume *model.Checkpoint
}

// WorkerJoined adds a worker, or updates the speed of one already there. A
// worker that rejoins after WorkerLost starts afresh (any flag is cleared).
type WorkerJoined struct {
	ID string
	// Speed is the worker's measured training throughput in images/s;
	// 0 means unknown (the worker gets an average share until the engine
	// has measured it).
	Speed float64
}

// WorkerLost removes a worker; its outstanding work is given to others.
// Losing an unknown worker does nothing.
type WorkerLost struct{ ID string }

// GradientsReceived is a worker's answer to an Assign.
type GradientsReceived struct {
	Worker     string
	Assignment uint64
	// Leaves, when set, is the subtree the worker says it computed (the
	// wire's echo); a result whose Leaves are not its assignment's is
	// refused. The zero Subtree says nothing.
	Leaves tree.Subtree
	// Grad is the subtree's gradient sum as ReduceSubtree returns it, in
	// parameter order; the engine copies it.
	Grad []float32
	// LeafLosses holds the loss sum of each of the subtree's
	// micro-batches; the engine adds them along the tree (ReduceLosses).
	LeafLosses []float64
	Correct    int // correctly classified training samples
	// Compute, when set, is the time the worker spent computing; the
	// engine measures the worker's speed from it (otherwise from Ticks).
	Compute time.Duration
}

// SumReceived is a reducer's answer for several assignments of one step at
// once: Grad is the sum of their gradient sums, added with
// tree.ReducePieces, for consecutive subtrees that together make one node
// of the reduction tree, so the engine takes it as that node's sum and the
// bits are those of the parts arriving one by one. Each part is the
// GradientsReceived its worker would have sent, less its Grad (ignored).
// If any part cannot be taken, the whole sum is refused or dropped and the
// parts stay outstanding.
type SumReceived struct {
	Parts []GradientsReceived
	Grad  []float32
}

// ResultLost says that an assignment's result was lost on its way: it
// went up a tree of reducers, and a reducer died holding it, or passed up
// a sum the engine could not take. The work is given out again (perhaps
// to the same worker, which is not flagged: the loss was not its doing).
type ResultLost struct {
	Worker     string
	Assignment uint64
}

// EvalReceived is a worker's answer to an Evaluate.
type EvalReceived struct {
	Worker     string
	Assignment uint64
	// From and To, when To is set, are the samples the worker says it
	// evaluated (the wire's echo); a count for another range than its
	// assignment's is refused.
	From, To int
	Correct  int
}

// WorkFailed reports that a worker cannot do an assignment (the network
// does not fit its memory, an index is out of its data set). The worker is
// flagged and the work given to another; when a second worker fails in the
// same round, the failure is the job's own and the job fails.
type WorkFailed struct {
	Worker     string
	Assignment uint64
	Err        error
}

// Tick moves the engine's clock to Now (it never goes back). Deadlines are
// checked, and worker speeds measured, against the ticks only; until the
// first tick, nothing times out.
type Tick struct{ Now time.Time }

func (JobStarted) engineEvent()        {}
func (WorkerJoined) engineEvent()      {}
func (WorkerLost) engineEvent()        {}
func (GradientsReceived) engineEvent() {}
func (SumReceived) engineEvent()       {}
func (ResultLost) engineEvent()        {}
func (EvalReceived) engineEvent()      {}
func (WorkFailed) engineEvent()        {}
func (Tick) engineEvent()              {}

// Effect is an output of the Engine, for its driver to carry out in the
// order given. Slices in effects (Params, Micro and its Indices) belong to
// the engine: they are read-only and hold their values until the step they
// belong to is applied, so the driver sends them (or copies them) before it
// hands the engine the event that completes that step.
//
// Ordering: a step's StepApplied comes first, then its PersistCheckpoint
// (when one is due), then its Evaluate effects (when an evaluation is due),
// and the next step's Assigns only after the evaluation's EvalDone.
// JobFinished is always the job's last effect, after its final checkpoint.
type Effect interface{ engineEffect() }

// Assign asks a worker to compute one aligned subtree of a step: the
// gradient sum of each micro-batch with parameters Params, reduced with
// ReduceSubtree, answered by GradientsReceived (see ComputeSubtree).
type Assign struct {
	Worker string
	ID     uint64
	// Step is the 0-based global step; Params are the parameters after
	// Step optimizer updates (their version is Step).
	Step   int64
	Epoch  int64
	Leaves tree.Subtree // the micro-batches of the step this covers
	// Micro holds micro-batches Leaves.Lo … Leaves.Hi−1 of the step.
	Micro  []tree.MicroBatch
	Params []float32
}

// StepApplied reports one optimizer step.
type StepApplied struct {
	Step          int64 // optimizer steps applied, counting this one
	Epoch         int64 // the 0-based epoch the step belongs to
	InEpoch       int   // the step's 0-based index within its epoch
	Loss          float64
	TrainAccuracy float64
	LR            float64 // the learning rate the step applied
	Images        int
	EpochDone     bool // the step was the last of its epoch
	// ImagesReissued counts the training images given out more than once
	// since the job (re)started in this engine: the work of lost, slow or
	// wrong workers handed to others, and backup copies. It is the work
	// failures cost (an upper bound: a withdrawn copy may not have been
	// computed).
	ImagesReissued int64
	// Evaluate is set when an evaluation of the new parameters follows;
	// its EvalDone comes before the next step starts.
	Evaluate bool
}

// Evaluate asks a worker how many of test samples [From, To) the model with
// Params (after Version steps) classifies correctly, answered by
// EvalReceived. ParamsVersion is the number Params are known by, for a
// worker that holds them already: Version for the raw parameters,
// Version|AverageVersion for their moving average (model.EMASpec).
type Evaluate struct {
	Worker        string
	ID            uint64
	Version       int64
	ParamsVersion int64
	From, To      int
	Params        []float32
}

// AverageVersion marks the version of a moving average of the parameters,
// which a worker must not take for the parameters of the same step.
const AverageVersion = int64(1) << 62

// EvalDone reports a finished evaluation of the whole test set.
type EvalDone struct {
	Version  int64 // optimizer steps applied to the evaluated parameters
	Epoch    int64 // epochs completed at that point
	Correct  int
	Total    int
	Accuracy float64
}

// PersistCheckpoint asks the driver to store a checkpoint (its own copy).
type PersistCheckpoint struct{ Checkpoint *model.Checkpoint }

// JobFinished reports the end of the job. Elapsed and ImagesPerSec of the
// result are left for the driver, which has the clock.
type JobFinished struct{ Result Result }

// JobFailed reports a job that cannot go on (a bad spec or checkpoint, a
// diverged model).
type JobFailed struct{ Err error }

// Waiting reports that training is paused until more workers join.
type Waiting struct {
	Reason          string
	Need, Available int
}

// Straggler reports a worker that missed an assignment's deadline: a copy
// of the work went to Backup (the first result wins), and the worker's
// next shares shrink to the speed it has shown.
type Straggler struct {
	Worker     string
	Assignment uint64
	Waited     time.Duration // since the assignment was issued
	Deadline   time.Duration
	Backup     string
}

// Refused reports an input the engine would not take; it changed nothing
// but what the error says (a worker flagged, its work given to others).
type Refused struct {
	Worker     string
	Assignment uint64
	Err        error
}

// Dropped reports a result for an assignment that is no longer outstanding:
// late (its work was redone elsewhere and taken), a duplicate, or for a step
// or job that is over. It is harmless.
type Dropped struct {
	Worker     string
	Assignment uint64
	Reason     string
}

// WorkerFlagged reports a worker whose result was bad: it gets no more work
// (its outstanding work is given to others) until it is lost and rejoins.
type WorkerFlagged struct {
	Worker string
	Err    error
}

// Cancel tells the driver that a worker's outstanding assignment is no
// longer needed; advisory (a result that comes anyway is dropped).
type Cancel struct {
	Worker     string
	Assignment uint64
}

func (Assign) engineEffect()            {}
func (StepApplied) engineEffect()       {}
func (Evaluate) engineEffect()          {}
func (EvalDone) engineEffect()          {}
func (PersistCheckpoint) engineEffect() {}
func (JobFinished) engineEffect()       {}
func (JobFailed) engineEffect()         {}
func (Waiting) engineEffect()           {}
func (Refused) engineEffect()           {}
func (Dropped) engineEffect()           {}
func (WorkerFlagged) engineEffect()     {}
func (Cancel) engineEffect()            {}
func (Straggler) engineEffect()         {}

// Errors of Refused effects, wrapped with their context.
var (
	ErrUnknownWorker     = errors.New("unknown worker")
	ErrUnknownAssignment = errors.New("unknown assignment")
	ErrNotYours          = errors.New("assignment belongs to another worker")
	ErrWrongKind         = errors.New("wrong kind of result")
	ErrWrongShape        = errors.New("wrong gradient shape")
	ErrNonFinite         = errors.New("non-finite result")
	ErrWorkFailed        = errors.New("worker could not do the work")
	ErrBadCount          = errors.New("correct count out of range")
	ErrOtherWork         = errors.New("result for other work than assigned")
	ErrJobRunning        = errors.New("a job is already running")
)

func (a *assignment) describe() string {
	if a.round.eval {
		return fmt.Sprintf("worker %s: assignment %d (evaluate samples [%d, %d) after step %d)",
			a.w.id, a.id, a.item.lo, a.item.hi, a.round.version)
	}
	return fmt.Sprintf("worker %s: assignment %d (step %d, micro-batches [%d, %d))",
		a.w.id, a.id, a.round.version+1, a.item.lo, a.item.hi)
}
