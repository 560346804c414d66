package coordinator

import (
	"time"

	"github.com/dpcnn/dpcnn/metrics"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
	"github.com/dpcnn/dpcnn/train"
	"github.com/dpcnn/dpcnn/tree"
)

// stepTimes times the phases of the step in progress (see
// dpcnnv1.StepPhases) at the driver's boundary with the engine, which has
// no clock of its own: the engine's handling of the step's results
// (reduce, and the last one's, which ends in the optimizer update), the
// building and queuing of its assignments (broadcast), and, from the
// results, the workers' compute and the network's part of each round
// trip (transfer); the wait is what is left of the step. They are
// measured on real time, not ServerConfig.Clock, which tests may stop.
type stepTimes struct {
	firstAssign time.Time     // zero until the step's first assignment is sent
	reduce      time.Duration // engine time on the step's results but the last
	broadcast   time.Duration // building and queuing the step's assignments
	// Of the step's training results: how many, and the sums of their
	// compute and transfer times (transfer of those whose round trip and
	// time held are both known).
	results, transfers int
	compute, transfer  time.Duration
	// Of the engine call now carrying out its effects: when it began,
	// how long it took, and whether it took a result.
	callStart   time.Time
	callTook    time.Duration
	callResult  bool
	applied     bool                  // the call applied a step
	given       map[tree.Subtree]bool // the step's subtrees given out, to count reassignments
	evalGiven   map[int]bool          // the evaluation's ranges given out, by start
	evalPending bool
}

// timeEngineCall runs one engine call and notes its times.
func (d *driver) timeEngineCall(ev train.Event) {
	_, result := ev.(train.GradientsReceived)
	if _, sum := ev.(train.SumReceived); sum {
		result = true
	}
	t := &d.times
	t.callStart, t.callResult, t.applied = time.Now(), result, false
	d.effects = d.eng.Step(ev, d.effects[:0])
	t.callTook = time.Since(t.callStart)
}

// engineCallDone adds the engine call's time to the step's reduction
// unless it applied the step (stepTimed has taken it then).
func (d *driver) engineCallDone() {
	if t := &d.times; t.callResult && !t.applied {
		t.reduce += t.callTook
	}
}

// assignSent notes the sending of an assignment of the step, which took
// took, and counts a reassignment when its subtree was given out before,
// which it reports.
func (d *driver) assignSent(leaves tree.Subtree, took time.Duration) (again bool) {
	t := &d.times
	if t.firstAssign.IsZero() {
		t.firstAssign = time.Now().Add(-took)
	}
	t.broadcast += took
	if t.given == nil {
		t.given = map[tree.Subtree]bool{}
	}
	again = t.given[leaves]
	if again {
		d.s.cfg.Metrics.Reassigned()
	}
	t.given[leaves] = true
	return again
}

// evalSent counts a reassignment when the evaluation's range from was
// given out before.
func (d *driver) evalSent(from int) {
	t := &d.times
	if t.evalGiven == nil {
		t.evalGiven = map[int]bool{}
	}
	if t.evalGiven[from] {
		d.s.cfg.Metrics.Reassigned()
	}
	t.evalGiven[from] = true
}

// resultTimed notes a training result's compute time, as the worker timed
// it, and its transfer: the round trip less the time the worker held the
// assignment.
func (d *driver) resultTimed(r *dpcnnv1.WorkResult, roundTrip time.Duration) {
	if r.GetTrain() == nil {
		return
	}
	t := &d.times
	t.results++
	t.compute += time.Duration(max(r.GetComputeNanos(), 0))
	if held := time.Duration(r.GetHeldNanos()); held > 0 && roundTrip > 0 {
		t.transfers++
		t.transfer += max(roundTrip-held, 0)
	}
}

// stepTimed records the applied step's phases, starts the next step's, and
// returns the phases for the step's progress report (nil when the step was
// not timed from its first assignment, as the first after a restart may
// not be).
func (d *driver) stepTimed(ef train.StepApplied) *dpcnnv1.StepPhases {
	m, t := d.s.cfg.Metrics, &d.times
	m.StepApplied(ef.Images, ef.Loss)
	var ph *dpcnnv1.StepPhases
	if t.callResult && !t.firstAssign.IsZero() && t.results > 0 {
		step := time.Since(t.firstAssign)
		compute := t.compute / time.Duration(t.results)
		var transfer time.Duration
		if t.transfers > 0 {
			transfer = t.transfer / time.Duration(t.transfers)
		}
		wait := max(step-compute-transfer-t.reduce-t.callTook-t.broadcast, 0)
		ph = &dpcnnv1.StepPhases{
			StepNanos: int64(step), ComputeNanos: int64(compute), WaitNanos: int64(wait), TransferNanos: int64(transfer),
			ReduceNanos: int64(t.reduce), OptimizerNanos: int64(t.callTook), BroadcastNanos: int64(t.broadcast),
			Results: int32(t.results),
		}
		m.Phase(metrics.PhaseCompute, compute)
		m.Phase(metrics.PhaseTransfer, transfer)
		m.Phase(metrics.PhaseWait, wait)
	}
	if t.callResult {
		m.Phase(metrics.PhaseReduce, t.reduce)
		m.Phase(metrics.PhaseOptimizer, t.callTook)
	}
	if t.broadcast > 0 {
		m.Phase(metrics.PhaseBroadcast, t.broadcast)
	}
	t.applied = true
	t.firstAssign, t.reduce, t.broadcast = time.Time{}, 0, 0
	t.results, t.transfers, t.compute, t.transfer = 0, 0, 0, 0
	clear(t.given)
	return ph
}

// evalTimed records an evaluation's result and starts the next one's count.
func (d *driver) evalTimed(ef train.EvalDone) {
	d.s.cfg.Metrics.Evaluated(ef.Accuracy)
	clear(d.times.evalGiven)
}

// hasOutstanding says whether the stream holds unanswered assignments.
func (w *workStream) hasOutstanding() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.outstanding) > 0
}
