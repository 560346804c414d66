package train

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/model"
)

// Workers computes what the trainer hands out: the engine's assignments
// and evaluations. LocalWorkers runs them in process; the distributed
// trainer drives the same Engine over gRPC instead.
type Workers interface {
	// Compute carries out an assignment (see ComputeSubtree) and returns
	// the subtree's gradient sum, its leaves' loss sums (both valid until
	// the next call) and its correct count.
	Compute(ctx context.Context, a Assign) (grad []float32, leafLosses []float64, correct int, err error)
	// Evaluate returns how many of test samples [from, to) the model
	// with params classifies correctly.
	Evaluate(ctx context.Context, params []float32, from, to int) (correct int, err error)
}

// Progress is what the trainer reports after every step and evaluation.
type Progress struct {
	Epoch, Epochs       int64 // 1-based epoch being trained, and the total
	Step, StepsPerEpoch int   // 1-based step within the epoch
	GlobalStep, Steps   int64 // optimizer steps applied so far, and the total
	Loss                float64
	TrainAccuracy       float64
	LR                  float64 // the learning rate the step applied
	ImagesPerSec        float64
	Elapsed             time.Duration
	// Evaluated is set on the report that follows an evaluation.
	Evaluated    bool
	TestAccuracy float64
}

// Result summarises a finished run.
type Result struct {
	Steps         int64
	Epochs        int64
	FinalLoss     float64
	TestAccuracy  float64 // of the last evaluation; NaN when none ran
	Elapsed       time.Duration
	ImagesPerSec  float64
	EpochAccuracy []float64 // test accuracy after each evaluated epoch
}

// Trainer trains a job in this process: it drives an Engine with one
// local worker, so a local run computes exactly what a distributed one
// does.
type Trainer struct {
	eng   *Engine
	clock Clock

	queue  []Effect // the engine's effects not yet carried out
	head   int
	joined bool // the local worker has joined the engine
}

// localWorker is the ID of the Trainer's one worker.
const localWorker = "local"

// Clock reads the time: time.Now in production, a fake in tests. The
// training core never reads the wall clock itself; a Trainer reads its clock
// only to report the elapsed time and the throughput.
type Clock func() time.Time

// NewTrainer initialises a job's parameters from its seed. b applies the
// optimizer updates; trainLen and testLen are the sizes of the data sets the
// workers hold (before the job's limits); clock times the run (time.Now).
func NewTrainer(spec job.Spec, b kernels.Backend[float32], trainLen, testLen int, clock Clock) (*Trainer, error) {
	if clock == nil {
		return nil, errors.New("train: a trainer needs a clock (time.Now)")
	}
	eng := NewEngine(b, EngineConfig{})
	for _, ef := range eng.Step(JobStarted{Spec: spec, TrainLen: trainLen, TestLen: testLen}, nil) {
		if f, ok := ef.(JobFailed); ok {
			return nil, f.Err
		}
	}
	return &Trainer{eng: eng, clock: clock}, nil
}

// Engine is the trainer's engine.
func (t *Trainer) Engine() *Engine { return t.eng }

// Spec is the job with defaults filled in.
func (t *Trainer) Spec() job.Spec { return t.eng.Spec() }

// TotalSteps is the number of optimizer steps the job runs.
func (t *Trainer) TotalSteps() int64 { return t.eng.TotalSteps() }

// Params returns the current parameters as a flat vector (shared buffer,
// valid until the next step).
func (t *Trainer) Params() []float32 { return t.eng.Params() }

// Checkpoint captures the run at the current step boundary.
func (t *Trainer) Checkpoint() *model.Checkpoint { return t.eng.Checkpoint() }

// Restore resumes from a checkpoint of the same job, before Run.
func (t *Trainer) Restore(c *model.Checkpoint) error { return t.eng.Restore(c) }

// Run trains until the job's epochs or steps are done (resuming where a
// restored checkpoint left off), calling report after every step, and
// checkpoint at the cadence of the job and at the end.
func (t *Trainer) Run(ctx context.Context, w Workers, report func(Progress), checkpoint func(*model.Checkpoint) error) (*Result, error) {
	start := t.clock()
	sched := t.eng.Schedule()
	total, perEpoch, epochs := sched.Total, sched.PerEpoch, sched.Epochs()
	res := &Result{TestAccuracy: math.NaN()}
	var images int64
	finish := func() (*Result, error) {
		res.Steps, res.Epochs = t.eng.StepsApplied(), t.eng.EpochsDone()
		res.Elapsed = t.clock().Sub(start)
		if res.Elapsed > 0 {
			res.ImagesPerSec = float64(images) / res.Elapsed.Seconds()
		}
		return res, nil
	}
	if t.eng.StepsApplied() >= total {
		return finish()
	}
	var held Progress // a step's report, held for its evaluation
	err := t.pump(ctx, w, func(ef Effect) (bool, error) {
		switch ef := ef.(type) {
		case StepApplied:
			images += int64(ef.Images)
			elapsed := t.clock().Sub(start)
			p := Progress{
				Epoch: ef.Epoch + 1, Epochs: epochs, Step: ef.InEpoch + 1, StepsPerEpoch: int(perEpoch),
				GlobalStep: ef.Step, Steps: total, Loss: ef.Loss, TrainAccuracy: ef.TrainAccuracy, LR: ef.LR,
				ImagesPerSec: float64(images) / elapsed.Seconds(), Elapsed: elapsed,
			}
			res.FinalLoss = ef.Loss
			if ef.Evaluate {
				held = p
			} else if report != nil {
				report(p)
			}
		case EvalDone:
			held.Evaluated, held.TestAccuracy = true, ef.Accuracy
			res.TestAccuracy = ef.Accuracy
			res.EpochAccuracy = append(res.EpochAccuracy, ef.Accuracy)
			if report != nil {
				report(held)
			}
		case PersistCheckpoint:
			if checkpoint != nil {
				if err := checkpoint(ef.Checkpoint); err != nil {
					return true, fmt.Errorf("train: checkpoint at step %d: %w", ef.Checkpoint.Step, err)
				}
			}
		case JobFinished:
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return res, err
	}
	return finish()
}

// trainStep drives the engine through one training step, which must be
// step inEpoch of the given epoch, and returns its loss and accuracy.
func (t *Trainer) trainStep(ctx context.Context, w Workers, epoch int64, inEpoch int) (loss, acc float64, err error) {
	err = t.pump(ctx, w, func(ef Effect) (bool, error) {
		s, ok := ef.(StepApplied)
		if !ok {
			return false, nil
		}
		if s.Epoch != epoch || s.InEpoch != inEpoch {
			return true, fmt.Errorf("train: applied step %d of epoch %d, want step %d of epoch %d", s.InEpoch, s.Epoch, inEpoch, epoch)
		}
		loss, acc = s.Loss, s.TrainAccuracy
		return true, nil
	})
	return loss, acc, err
}

// pump carries out the engine's effects with w — computing assignments
// and evaluations and handing their results back — and shows each to on,
// until on says stop or fails. An effect that means the local worker
// failed ends the run with its error.
func (t *Trainer) pump(ctx context.Context, w Workers, on func(Effect) (stop bool, err error)) error {
	if !t.joined {
		t.queue = t.eng.Step(WorkerJoined{ID: localWorker}, t.queue)
		t.joined = true
	}
	for t.head < len(t.queue) {
		ef := t.queue[t.head]
		t.queue[t.head] = nil
		t.head++
		if t.head == len(t.queue) {
			t.queue, t.head = t.queue[:0], 0
		}
		switch ef := ef.(type) {
		case Assign:
			if err := ctx.Err(); err != nil {
				return err
			}
			grad, losses, correct, err := w.Compute(ctx, ef)
			if err != nil {
				return fmt.Errorf("train: step %d: %w", ef.Step+1, err)
			}
			t.queue = t.eng.Step(GradientsReceived{Worker: ef.Worker, Assignment: ef.ID, Grad: grad, LeafLosses: losses, Correct: correct}, t.queue)
		case Evaluate:
			correct, err := w.Evaluate(ctx, ef.Params, ef.From, ef.To)
			if err != nil {
				return fmt.Errorf("train: evaluate after step %d: %w", ef.Version, err)
			}
			t.queue = t.eng.Step(EvalReceived{Worker: ef.Worker, Assignment: ef.ID, Correct: correct}, t.queue)
		case Refused:
			return ef.Err
		case WorkerFlagged:
			return ef.Err
		case JobFailed:
			return ef.Err
		}
		if stop, err := on(ef); stop || err != nil {
			return err
		}
	}
	return errors.New("train: training stalled: the engine has no work for the local worker")
}
