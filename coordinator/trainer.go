// Package coordinator drives training: it plans each step's global batch,
// has it computed by workers, reduces their gradients in a fixed order and
// applies one optimizer step.
package coordinator

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/model"
	"github.com/dpcnn/dpcnn/worker"
)

// Workers computes what the trainer hands out: the leaf gradients of a step
// and evaluations. LocalWorkers runs them in process; the distributed
// trainer sends them over gRPC. The trainer's loop is the same for both.
type Workers interface {
	// ComputeStep sets the workers' parameters and fills leaves[i] with
	// the gradient sum of micro-batch mbs[i]; it returns the summed loss
	// and correct count of the whole step.
	ComputeStep(ctx context.Context, params []float32, mbs []worker.MicroBatch, leaves [][]float32) (lossSum float64, correct int, err error)
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

// Trainer holds the authoritative parameters and optimizer state of one job.
type Trainer struct {
	spec    job.Spec
	backend kernels.Backend[float32]
	params  model.Params[float32]
	opt     model.Optimizer[float32]
	plan    dataset.Plan
	order   *dataset.Order
	testLen int

	step  int64 // optimizer steps applied
	epoch int64 // epochs completed

	flat   []float32
	leaves [][]float32
	mbs    []worker.MicroBatch
	idx    []int32
}

// NewTrainer initialises a job's parameters from its seed. b applies the
// optimizer updates; trainLen and testLen are the sizes of the data sets the
// workers hold (before the job's limits).
func NewTrainer(spec job.Spec, b kernels.Backend[float32], trainLen, testLen int) (*Trainer, error) {
	spec = spec.WithDefaults()
	if err := spec.Validate(); err != nil {
		return nil, err
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
	opt, err := model.NewOptimizer[float32](spec.Optimizer, params)
	if err != nil {
		return nil, err
	}
	if spec.TrainLimit > 0 {
		trainLen = min(trainLen, spec.TrainLimit)
	}
	if spec.TestLimit > 0 {
		testLen = min(testLen, spec.TestLimit)
	}
	plan, err := dataset.NewPlan(trainLen, spec.Batch, spec.MicroBatch, spec.Seed)
	if err != nil {
		return nil, fmt.Errorf("coordinator: %w", err)
	}
	t := &Trainer{
		spec: spec, backend: b, params: params, opt: opt, plan: plan, order: dataset.NewOrder(plan), testLen: testLen,
		flat: make([]float32, params.Count()),
		idx:  make([]int32, spec.Batch),
	}
	micro := spec.Batch / spec.MicroBatch
	t.leaves = make([][]float32, micro)
	t.mbs = make([]worker.MicroBatch, micro)
	for i := range t.leaves {
		t.leaves[i] = make([]float32, params.Count())
	}
	return t, nil
}

// Spec is the job with defaults filled in.
func (t *Trainer) Spec() job.Spec { return t.spec }

// TotalSteps is the number of optimizer steps the job runs.
func (t *Trainer) TotalSteps() int64 {
	total := int64(t.spec.Epochs) * int64(t.plan.StepsPerEpoch())
	if t.spec.Steps > 0 && (t.spec.Epochs == 0 || t.spec.Steps < total) {
		total = t.spec.Steps
	}
	return total
}

// Params returns the current parameters as a flat vector (shared buffer,
// valid until the next step).
func (t *Trainer) Params() []float32 {
	off := 0
	for _, p := range t.params {
		off += copy(t.flat[off:], p.Value)
	}
	return t.flat
}

// Run trains until the job's epochs or steps are done (resuming where a
// restored checkpoint left off), calling report after every step, and
// checkpoint at the cadence of the job and at the end.
func (t *Trainer) Run(ctx context.Context, w Workers, report func(Progress), checkpoint func(*model.Checkpoint) error) (*Result, error) {
	start := time.Now()
	total := t.TotalSteps()
	perEpoch := int64(t.plan.StepsPerEpoch())
	epochs := (total + perEpoch - 1) / perEpoch
	res := &Result{TestAccuracy: math.NaN()}
	var images int64
	for t.step < total {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		epoch := t.step / perEpoch
		inEpoch := int(t.step % perEpoch)
		loss, acc, err := t.trainStep(ctx, w, epoch, inEpoch)
		if err != nil {
			return res, fmt.Errorf("coordinator: step %d: %w", t.step+1, err)
		}
		images += int64(t.spec.Batch)
		elapsed := time.Since(start)
		p := Progress{
			Epoch: epoch + 1, Epochs: epochs, Step: inEpoch + 1, StepsPerEpoch: int(perEpoch),
			GlobalStep: t.step, Steps: total, Loss: loss, TrainAccuracy: acc,
			ImagesPerSec: float64(images) / elapsed.Seconds(), Elapsed: elapsed,
		}
		res.FinalLoss = loss
		epochDone := t.step%perEpoch == 0
		if epochDone {
			t.epoch = epoch + 1
		}
		last := t.step == total
		if last || (epochDone && t.epoch%int64(t.spec.EvalEvery) == 0) {
			correct, err := w.Evaluate(ctx, t.Params(), 0, t.testLen)
			if err != nil {
				return res, fmt.Errorf("coordinator: evaluate after step %d: %w", t.step, err)
			}
			p.Evaluated = true
			p.TestAccuracy = float64(correct) / float64(t.testLen)
			res.TestAccuracy = p.TestAccuracy
			res.EpochAccuracy = append(res.EpochAccuracy, p.TestAccuracy)
		}
		if report != nil {
			report(p)
		}
		if checkpoint != nil && (last || (epochDone && t.epoch%int64(t.spec.CheckpointEvery) == 0)) {
			if err := checkpoint(t.Checkpoint()); err != nil {
				return res, fmt.Errorf("coordinator: checkpoint at step %d: %w", t.step, err)
			}
		}
	}
	res.Steps, res.Epochs = t.step, t.epoch
	res.Elapsed = time.Since(start)
	if res.Elapsed > 0 {
		res.ImagesPerSec = float64(images) / res.Elapsed.Seconds()
	}
	return res, nil
}

// trainStep computes one global batch and applies one optimizer step.
func (t *Trainer) trainStep(ctx context.Context, w Workers, epoch int64, inEpoch int) (loss, acc float64, err error) {
	t.order.Step(epoch, inEpoch, t.idx)
	m := t.spec.MicroBatch
	for i := range t.mbs {
		t.mbs[i] = worker.MicroBatch{Epoch: epoch, Step: t.step, Indices: t.idx[i*m : (i+1)*m]}
	}
	lossSum, correct, err := w.ComputeStep(ctx, t.Params(), t.mbs, t.leaves)
	if err != nil {
		return 0, 0, err
	}
	ReduceTree(t.leaves)
	if err := CheckFinite(t.leaves[0]); err != nil {
		return 0, 0, err
	}
	scale := float32(1) / float32(t.spec.Batch)
	off := 0
	for _, p := range t.params {
		g := t.leaves[0][off : off+len(p.Grad)]
		for j := range g {
			p.Grad[j] = g[j] * scale
		}
		off += len(p.Grad)
	}
	t.opt.Update(t.backend, t.params)
	t.step++
	return lossSum / float64(t.spec.Batch), float64(correct) / float64(t.spec.Batch), nil
}

// CheckFinite reports the first NaN or infinity in a gradient, which would
// otherwise poison every parameter at the next update.
func CheckFinite(g []float32) error {
	for i, v := range g {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("gradient element %d is %v", i, v)
		}
	}
	return nil
}

// Checkpoint captures the run at the current step boundary.
func (t *Trainer) Checkpoint() *model.Checkpoint {
	netSpec, _ := t.spec.Model() // validated in NewTrainer
	ps := make([]model.Tensor, len(t.params))
	for i, p := range t.params {
		ps[i] = model.Tensor{Name: p.Name, Shape: append([]int(nil), p.Shape...), Data: append([]float32(nil), p.Value...)}
	}
	return &model.Checkpoint{
		Spec: netSpec, Optimizer: t.opt.Spec(), OptimizerState: t.opt.State(),
		Step: t.step, Epoch: t.epoch, Seed: t.spec.Seed, Params: ps, Job: t.spec.JSON(),
	}
}

// Restore resumes from a checkpoint of the same job.
func (t *Trainer) Restore(c *model.Checkpoint) error {
	if c.Seed != t.spec.Seed {
		return fmt.Errorf("coordinator: checkpoint seed %d differs from the job's %d", c.Seed, t.spec.Seed)
	}
	if len(c.Params) != len(t.params) {
		return fmt.Errorf("coordinator: checkpoint has %d parameter tensors, network has %d", len(c.Params), len(t.params))
	}
	for i, p := range t.params {
		cp := c.Params[i]
		if cp.Name != p.Name || len(cp.Data) != len(p.Value) {
			return fmt.Errorf("coordinator: checkpoint tensor %d is %s[%d], network wants %s[%d]", i, cp.Name, len(cp.Data), p.Name, len(p.Value))
		}
	}
	if err := t.opt.Restore(c.OptimizerState); err != nil {
		return fmt.Errorf("coordinator: %w", err)
	}
	for i, p := range t.params {
		copy(p.Value, c.Params[i].Data)
	}
	t.step, t.epoch = c.Step, c.Epoch
	return nil
}
