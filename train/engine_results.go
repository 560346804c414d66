package train

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/dpcnn/dpcnn/tree"
)

// take finds the outstanding assignment a result answers. When there is
// none it reports why — Dropped for a result that is merely late or
// repeated, Refused for one that cannot be right — and returns nil.
func (e *Engine) take(workerID string, id uint64) *assignment {
	w := e.worker(workerID)
	if w == nil {
		e.emit(Refused{Worker: workerID, Assignment: id,
			Err: fmt.Errorf("train: worker %q: result for assignment %d: %w", workerID, id, ErrUnknownWorker)})
		return nil
	}
	a := e.lookup(id)
	if a == nil {
		if id >= e.cfg.FirstAssignment && id < e.nextID {
			e.emit(Dropped{Worker: workerID, Assignment: id, Reason: "no longer outstanding: late, repeated, or its round is over"})
		} else {
			e.emit(Refused{Worker: workerID, Assignment: id,
				Err: fmt.Errorf("train: worker %s: result for assignment %d, never given out: %w", workerID, id, ErrUnknownAssignment)})
		}
		return nil
	}
	if a.w != w {
		e.emit(Refused{Worker: workerID, Assignment: id,
			Err: fmt.Errorf("train: worker %s: result for assignment %d, given to %s: %w", workerID, id, a.w.id, ErrNotYours)})
		return nil
	}
	return a
}

// takeKind is take for a result of one kind, refusing one of the other.
func (e *Engine) takeKind(workerID string, id uint64, eval bool) *assignment {
	a := e.take(workerID, id)
	if a != nil && a.round.eval != eval {
		want := "gradients"
		if a.round.eval {
			want = "an evaluation"
		}
		e.reject(a, fmt.Errorf("train: %s: %w: want %s", a.describe(), ErrWrongKind, want))
		return nil
	}
	return a
}

// reject refuses a bad result and flags the worker that sent it.
func (e *Engine) reject(a *assignment, err error) {
	e.emit(Refused{Worker: a.w.id, Assignment: a.id, Err: err})
	e.release(a)
	e.flag(a.w, err)
}

// flag stops giving a worker work and takes back what it holds.
func (e *Engine) flag(w *workerState, err error) {
	if w.flagged != nil {
		return
	}
	w.flagged = err
	e.emit(WorkerFlagged{Worker: w.id, Err: err})
	j := e.job
	for i := 0; i < len(j.outstanding); {
		if a := j.outstanding[i]; a.w == w {
			e.withdraw(a, true)
			continue
		}
		i++
	}
}

// complete takes a good result for a's item: the item is done, and its
// other copies are withdrawn. compute is the time the worker says it
// spent, 0 when it does not say.
func (e *Engine) complete(a *assignment, compute time.Duration) {
	it, w := a.item, a.w
	it.done = true
	a.round.left--
	if !a.round.eval {
		w.busyDone += a.images
		if compute > 0 {
			w.reportsCompute = true
			w.measured = ObserveSpeed(w.measured, a.images, compute)
		}
	}
	e.release(a)
	if w.load == 0 {
		e.measure(w)
	}
	for len(it.holders) > 0 {
		e.withdraw(it.holders[0], true)
	}
}

func (e *Engine) gradients(ev GradientsReceived) {
	a := e.takeKind(ev.Worker, ev.Assignment, false)
	if a == nil || !e.checkResult(a, ev, ev.Grad) {
		return
	}
	e.job.setRoot(a.item.lo, ev.Grad)
	e.completeResult(a, ev)
}

// setRoot keeps a copy of grad as the sum of the received subtree whose
// first leaf is lo.
func (j *jobState) setRoot(lo int, grad []float32) {
	dst := j.bufs[lo]
	if dst == nil {
		dst = make([]float32, len(j.flat))
		j.bufs[lo] = dst
	}
	copy(dst, grad)
	j.roots[lo] = dst
}

// checkResult checks a result for a's subtree and refuses a bad one; grad
// is the gradient sum to check with it (the result's own, or a reducer's
// whole sum with its first part), nil to leave it out.
func (e *Engine) checkResult(a *assignment, ev GradientsReceived, grad []float32) bool {
	j := e.job
	it := a.item
	switch {
	case ev.Leaves != (tree.Subtree{}) && ev.Leaves != (tree.Subtree{Lo: it.lo, Hi: it.hi}):
		e.reject(a, fmt.Errorf("train: %s: the result is for micro-batches [%d, %d): %w",
			a.describe(), ev.Leaves.Lo, ev.Leaves.Hi, ErrOtherWork))
		return false
	case grad != nil && len(grad) != len(j.flat):
		e.reject(a, fmt.Errorf("train: %s: gradient of %d values, the network has %d parameters: %w",
			a.describe(), len(grad), len(j.flat), ErrWrongShape))
		return false
	case len(ev.LeafLosses) != it.hi-it.lo:
		e.reject(a, fmt.Errorf("train: %s: %d loss sums for %d micro-batches: %w",
			a.describe(), len(ev.LeafLosses), it.hi-it.lo, ErrWrongShape))
		return false
	case ev.Correct < 0 || ev.Correct > a.images:
		e.reject(a, fmt.Errorf("train: %s: %d correct of %d images: %w", a.describe(), ev.Correct, a.images, ErrBadCount))
		return false
	}
	var err error
	if grad != nil {
		err = CheckFinite(grad)
	}
	for i, l := range ev.LeafLosses {
		if err == nil && (math.IsNaN(l) || math.IsInf(l, 0)) {
			err = fmt.Errorf("loss sum of micro-batch %d is %v", it.lo+i, l)
		}
	}
	if err != nil {
		e.badWork(a, ErrNonFinite, err, "non-finite gradients")
		return false
	}
	return true
}

// completeResult takes a checked result's losses and count, completes a,
// and applies the step when it was the last.
func (e *Engine) completeResult(a *assignment, ev GradientsReceived) {
	j := e.job
	copy(j.losses[a.item.lo:a.item.hi], ev.LeafLosses)
	a.round.correct += ev.Correct
	e.complete(a, ev.Compute)
	if a.round.left == 0 {
		e.applyStep()
	}
}

// sum takes a reducer's sum of several parts (SumReceived): every part
// must be outstanding, of one step, in order, together one node of the
// tree; then the sum stands at the node's first leaf, as one worker's
// result for the whole node would.
func (e *Engine) sum(ev SumReceived) {
	if len(ev.Parts) == 0 {
		e.emit(Refused{Err: errors.New("train: a sum of no parts")})
		return
	}
	j := e.job
	if j != nil && len(ev.Grad) != len(j.flat) {
		e.emit(Refused{Err: fmt.Errorf("train: a sum of %d values, the network has %d parameters: %w", len(ev.Grad), len(j.flat), ErrWrongShape)})
		return
	}
	as := make([]*assignment, len(ev.Parts))
	for i, p := range ev.Parts {
		a := e.takeKind(p.Worker, p.Assignment, false)
		if a == nil {
			return // said why; the other parts stay outstanding
		}
		if i > 0 && (a.round != as[0].round || a.item.lo != as[i-1].item.hi) {
			e.emit(Refused{Worker: p.Worker, Assignment: p.Assignment,
				Err: fmt.Errorf("train: a sum's part %d, %s: not the subtree after part %d's in the same step: %w", i, a.describe(), i-1, ErrOtherWork)})
			return
		}
		as[i] = a
	}
	node := tree.Subtree{Lo: as[0].item.lo, Hi: as[len(as)-1].item.hi}
	if !node.IsNode(len(j.roots)) {
		e.emit(Refused{Err: fmt.Errorf("train: a sum of micro-batches %v: not a node of the step's tree of %d: %w", node, len(j.roots), ErrOtherWork)})
		return
	}
	for i, a := range as {
		grad := ev.Grad
		if i > 0 {
			grad = nil // checked with the first part
		}
		if !e.checkResult(a, ev.Parts[i], grad) {
			return
		}
	}
	j.setRoot(node.Lo, ev.Grad)
	for i, a := range as {
		e.completeResult(a, ev.Parts[i])
	}
}

// FailingWorkers is K: a job fails once its work has gone wrong on this
// many distinct workers in one step or evaluation. One worker going wrong
// may be the worker's fault (a broken device, too little memory), so its
// work is redone elsewhere; two going wrong on the same work is the job's
// own fault (a diverged model, an impossible job).
const FailingWorkers = 2

// badWork handles an assignment a worker could not do right (non-finite
// numbers, or a failure it reported): refused, the worker flagged and the
// work redone elsewhere — unless FailingWorkers distinct workers have now
// gone wrong in the same round, or no live worker is left unflagged to
// redo it: then the job fails, with every worker's cause.
func (e *Engine) badWork(a *assignment, kind, detail error, what string) {
	r := a.round
	this := fmt.Sprintf("%s (%s [%d, %d): %v)", a.w.id, r.unitName(), a.item.lo, a.item.hi, detail)
	for _, b := range r.bad {
		if b.worker != a.w.id {
			e.fail(fmt.Errorf("train: %s: %s from workers %s and %s: %s", r.name(), what, b.what, this, r.verdict(what)))
			return
		}
	}
	r.bad = append(r.bad, badResult{worker: a.w.id, what: this})
	e.reject(a, fmt.Errorf("train: %s: %w: %v", a.describe(), kind, detail))
	if len(e.available()) == 0 {
		// Waiting would wait for ever: the workers there are all flagged,
		// and one that rejoins is flagged again by the same fault.
		e.fail(fmt.Errorf("train: %s: %s from worker %s, and no other live worker is left to redo it: %s", r.name(), what, this, r.verdict(what)))
	}
}

func (e *Engine) workFailed(ev WorkFailed) {
	a := e.take(ev.Worker, ev.Assignment)
	if a == nil {
		return
	}
	e.badWork(a, ErrWorkFailed, ev.Err, "failures")
}

func (e *Engine) evalResult(ev EvalReceived) {
	a := e.takeKind(ev.Worker, ev.Assignment, true)
	if a == nil {
		return
	}
	if ev.To != 0 && (ev.From != a.item.lo || ev.To != a.item.hi) {
		e.reject(a, fmt.Errorf("train: %s: the count is for samples [%d, %d): %w", a.describe(), ev.From, ev.To, ErrOtherWork))
		return
	}
	if ev.Correct < 0 || ev.Correct > a.images {
		e.reject(a, fmt.Errorf("train: %s: %d correct of %d samples: %w", a.describe(), ev.Correct, a.images, ErrBadCount))
		return
	}
	a.round.correct += ev.Correct
	e.complete(a, 0)
	if a.round.left == 0 {
		e.evalDone()
	}
}

// applyStep finishes the reduction tree over the received subtree sums,
// applies one optimizer update with their mean, and reports the step;
// then a checkpoint, an evaluation or the end of the job, as due.
func (e *Engine) applyStep() {
	j := e.job
	r := j.train
	j.train = nil
	tree.ReduceTree(j.roots)
	sum := j.roots[0]
	if err := CheckFinite(sum); err != nil {
		e.fail(fmt.Errorf("train: step %d: %w", r.version+1, err))
		return
	}
	grads, scale := j.net.FlatGrads(), float32(1)/float32(j.spec.Batch)
	for i, g := range sum {
		grads[i] = g * scale // the mean gradient, each one product rounded once
	}
	lr := j.opt.Rate()
	j.opt.Update(e.backend, j.params)
	j.step++
	j.snapshot()

	batch := float64(j.spec.Batch)
	loss := tree.ReduceLosses(j.losses) / batch
	j.result.FinalLoss = loss
	epochDone := j.step%j.sched.PerEpoch == 0
	if epochDone {
		j.epoch = r.epoch + 1
	}
	last := j.step >= j.total
	evalDue := last || (epochDone && j.epoch%int64(j.spec.EvalEvery) == 0)
	checkpointDue := last || (epochDone && j.epoch%int64(j.spec.CheckpointEvery) == 0)
	j.applied += int64(j.spec.Batch)
	e.emit(StepApplied{
		Step: j.step, Epoch: r.epoch, InEpoch: r.inEpoch, Loss: loss, TrainAccuracy: float64(r.correct) / batch, LR: lr,
		Images: j.spec.Batch, EpochDone: epochDone, Evaluate: evalDue, ImagesReissued: j.issued - j.applied,
	})
	if checkpointDue {
		e.emit(PersistCheckpoint{Checkpoint: j.checkpoint()})
	}
	switch {
	case evalDue:
		j.finishAfterEval = last
		e.startEval()
	case last:
		e.finish()
	}
}

func (e *Engine) evalDone() {
	j := e.job
	r := j.eval
	j.eval = nil
	acc := float64(r.correct) / float64(j.testLen)
	j.result.TestAccuracy = acc
	j.result.EpochAccuracy = append(j.result.EpochAccuracy, acc)
	e.emit(EvalDone{Version: r.version, Epoch: r.epoch, Correct: r.correct, Total: j.testLen, Accuracy: acc})
	if j.finishAfterEval {
		e.finish()
	}
}

// CheckFinite reports the first NaN or infinity in a gradient, which would
// otherwise poison every parameter at the next update.
func CheckFinite(g []float32) error {
	// A float32 is NaN or ±Inf exactly when its exponent bits are all set;
	// testing the bits directly keeps this pass cheap on every result.
	const exponent = 0x7f800000
	for i, v := range g {
		if math.Float32bits(v)&exponent == exponent {
			return fmt.Errorf("gradient element %d is %v", i, v)
		}
	}
	return nil
}
