package dataset

import (
	"errors"
	"fmt"
	"math"
)

// Permutation returns the order in which the n samples are visited in the
// given epoch: a uniformly random permutation of 0..n-1 that is a pure
// function of (seed, epoch, n).
func Permutation(seed uint64, epoch int64, n int) []int32 {
	perm := make([]int32, n)
	FillPermutation(perm, seed, epoch)
	return perm
}

// FillPermutation writes Permutation(seed, epoch, len(perm)) to perm.
//
// It is a Fisher–Yates shuffle of the identity whose swaps are drawn in order
// from PermutationStream(seed, epoch) with exact bounded draws, so every
// permutation is equally likely and every machine computes the same one.
func FillPermutation(perm []int32, seed uint64, epoch int64) {
	if len(perm) > math.MaxInt32 {
		panic(fmt.Sprintf("dataset: permutation of %d samples: more than int32 indices allow", len(perm)))
	}
	for i := range perm {
		perm[i] = int32(i)
	}
	c := newCursor(PermutationStream(seed, epoch), 0)
	for i := len(perm) - 1; i > 0; i-- {
		j := c.below(uint32(i + 1))
		perm[i], perm[j] = perm[j], perm[i]
	}
}

// Plan cuts each epoch into steps and each step into micro-batches.
//
// Epoch e visits the samples in the order Permutation(Seed, e, N). Step s of
// the epoch takes positions [s·Batch, (s+1)·Batch) of that order, so an epoch
// has N/Batch steps and the last N mod Batch samples of each order are not
// visited in that epoch (as with the book's random batches, every step has a
// full batch; a different permutation next epoch leaves out different ones).
// Micro-batch k of a step is positions [k·Micro, (k+1)·Micro) of the step.
type Plan struct {
	N     int    // samples in the data set
	Batch int    // samples per step (the global batch)
	Micro int    // samples per micro-batch; divides Batch
	Seed  uint64 // the job's seed
}

// NewPlan returns the plan for n samples, global batch batch and micro-batch
// micro, or an error naming what is wrong with them.
func NewPlan(n, batch, micro int, seed uint64) (Plan, error) {
	p := Plan{N: n, Batch: batch, Micro: micro, Seed: seed}
	return p, p.Validate()
}

// Validate reports every rule p breaks, one error each.
func (p Plan) Validate() error {
	var errs []error
	if p.N < 1 || p.N > math.MaxInt32 {
		errs = append(errs, fmt.Errorf("dataset: plan: %d samples, want 1 to %d", p.N, math.MaxInt32))
	}
	if p.Batch < 1 {
		errs = append(errs, fmt.Errorf("dataset: plan: batch %d, want at least 1", p.Batch))
	} else if p.N >= 1 && p.Batch > p.N {
		errs = append(errs, fmt.Errorf("dataset: plan: batch %d larger than the %d samples: an epoch would have no step", p.Batch, p.N))
	}
	if p.Micro < 1 {
		errs = append(errs, fmt.Errorf("dataset: plan: micro-batch %d, want at least 1", p.Micro))
	} else if p.Batch >= 1 && p.Batch%p.Micro != 0 {
		errs = append(errs, fmt.Errorf("dataset: plan: micro-batch %d does not divide batch %d", p.Micro, p.Batch))
	}
	return errors.Join(errs...)
}

// StepsPerEpoch returns N/Batch: the partial batch left over is dropped.
func (p Plan) StepsPerEpoch() int { return p.N / p.Batch }

// MicrosPerStep returns Batch/Micro.
func (p Plan) MicrosPerStep() int { return p.Batch / p.Micro }

// EpochStep splits a step count since the start of training, global ≥ 0, into
// its epoch and its step within that epoch.
func (p Plan) EpochStep(global int64) (epoch int64, step int) {
	if global < 0 {
		panic(fmt.Sprintf("dataset: negative global step %d", global))
	}
	per := int64(p.StepsPerEpoch())
	return global / per, int(global % per)
}

// Step writes the Batch sample indices of the given step to dst. It computes
// the epoch's permutation each time; use an Order to reuse it across steps.
func (p Plan) Step(epoch int64, step int, dst []int32) {
	o := NewOrder(p)
	o.Step(epoch, step, dst)
}

// MicroBatch writes the Micro sample indices of micro-batch k of the given
// step to dst, computing the epoch's permutation as Step does.
func (p Plan) MicroBatch(epoch int64, step, k int, dst []int32) {
	o := NewOrder(p)
	o.MicroBatch(epoch, step, k, dst)
}

// Order answers a Plan's questions with the permutation of the last epoch
// asked about kept, so consecutive steps of an epoch cost a copy each. Its
// answers are those of the Plan's. An Order is not safe for concurrent use.
type Order struct {
	plan  Plan
	epoch int64
	perm  []int32 // nil until the first epoch is computed
}

// NewOrder returns an empty cache for p, which must be valid.
func NewOrder(p Plan) *Order {
	if err := p.Validate(); err != nil {
		panic(err.Error())
	}
	return &Order{plan: p}
}

// Plan returns the plan the order belongs to.
func (o *Order) Plan() Plan { return o.plan }

// Epoch returns the permutation of the given epoch. The slice belongs to the
// Order: it must not be changed and holds until an Order method is called for
// another epoch.
func (o *Order) Epoch(epoch int64) []int32 {
	if epoch < 0 {
		panic(fmt.Sprintf("dataset: negative epoch %d", epoch))
	}
	if o.perm == nil || o.epoch != epoch {
		if o.perm == nil {
			o.perm = make([]int32, o.plan.N)
		}
		FillPermutation(o.perm, o.plan.Seed, epoch)
		o.epoch = epoch
	}
	return o.perm
}

// Step writes the Batch sample indices of the given step to dst.
func (o *Order) Step(epoch int64, step int, dst []int32) {
	p := o.plan
	if step < 0 || step >= p.StepsPerEpoch() {
		panic(fmt.Sprintf("dataset: step %d out of range [0, %d)", step, p.StepsPerEpoch()))
	}
	if len(dst) != p.Batch {
		panic(fmt.Sprintf("dataset: step buffer of %d, want batch %d", len(dst), p.Batch))
	}
	copy(dst, o.Epoch(epoch)[step*p.Batch:])
}

// MicroBatch writes the Micro sample indices of micro-batch k of the given
// step to dst.
func (o *Order) MicroBatch(epoch int64, step, k int, dst []int32) {
	p := o.plan
	if step < 0 || step >= p.StepsPerEpoch() {
		panic(fmt.Sprintf("dataset: step %d out of range [0, %d)", step, p.StepsPerEpoch()))
	}
	if k < 0 || k >= p.MicrosPerStep() {
		panic(fmt.Sprintf("dataset: micro-batch %d out of range [0, %d)", k, p.MicrosPerStep()))
	}
	if len(dst) != p.Micro {
		panic(fmt.Sprintf("dataset: micro-batch buffer of %d, want %d", len(dst), p.Micro))
	}
	copy(dst, o.Epoch(epoch)[step*p.Batch+k*p.Micro:])
}
