package coordinator

import (
	"time"

	"github.com/dpcnn/dpcnn/metrics"
	"github.com/dpcnn/dpcnn/train"
	"github.com/dpcnn/dpcnn/tree"
)

// stepTimes times the phases of the step in progress at the driver's
// boundary with the engine, which has no clock of its own: the engine's
// handling of the step's results (reduce, and the last one's, which ends
// in the optimizer update), the sending of its assignments (broadcast),
// and the wait from its first assignment to its last result. They are
// measured on real time, not ServerConfig.Clock, which tests may stop.
type stepTimes struct {
	firstAssign time.Time     // zero until the step's first assignment is sent
	reduce      time.Duration // engine time on the step's results but the last
	broadcast   time.Duration // sending the step's assignments
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

// stepTimed records the applied step's phases and starts the next step's.
func (d *driver) stepTimed(ef train.StepApplied) {
	m, t := d.s.cfg.Metrics, &d.times
	m.StepApplied(ef.Images, ef.Loss)
	if t.callResult {
		if !t.firstAssign.IsZero() {
			m.Phase(metrics.PhaseWait, t.callStart.Sub(t.firstAssign))
		}
		m.Phase(metrics.PhaseReduce, t.reduce)
		m.Phase(metrics.PhaseOptimizer, t.callTook)
	}
	if t.broadcast > 0 {
		m.Phase(metrics.PhaseBroadcast, t.broadcast)
	}
	t.applied = true
	t.firstAssign, t.reduce, t.broadcast = time.Time{}, 0, 0
	clear(t.given)
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
