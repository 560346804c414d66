package coordinator

import (
	"fmt"
	"slices"

	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
	"github.com/dpcnn/dpcnn/train"
)

// Parameters down the tree. When a step's sums go up a tree of reducers,
// its parameters go down one: the coordinator sends them to at most
// TreeFanOut of the step's workers, and every other worker fetches them
// from one that has them (Assignment.params_from, ReduceService.Params),
// so the coordinator's link carries a fan-out of vectors a step instead
// of one per worker. The parameters are the same bits whichever way they
// come. The tree is a heap over the step's workers that need the new
// version, in the step's order with those that serve ReduceService first:
// the first TreeFanOut fetch from the coordinator (inline, whole), and
// worker j fetches from worker j/TreeFanOut − 1, which serves. A worker
// that cannot have its parameters from its relay says so
// (WorkFailure.params_unreached); its work is given out again, with the
// parameters inline, and a relay that did not answer relays no more in
// the job.

// relayTree is the current step's tree of parameter relays.
type relayTree struct {
	version int64
	// from holds the relays of the step's assignments not yet sent;
	// relayOf the relay of each assignment sent with params_from, until
	// its work ends; whole the workers that relay this step, which get
	// whole parameters, never a delta.
	from    map[uint64]*dpcnnv1.ParamsSource
	relayOf map[uint64]string
	whole   map[string]bool
}

// planRelays plans the parameters' way down to the step's assignments
// (the whole step, given out at once, on the tree topology).
func (d *driver) planRelays(assigns []train.Assign) {
	version := assigns[0].Step
	evaluating := map[string]bool{} // they get the version with their evaluation
	for _, ef := range d.effects {
		if e, ok := ef.(train.Evaluate); ok {
			evaluating[e.Worker] = true
		}
	}
	var nodes []train.Assign
	seen := map[string]bool{}
	for _, a := range assigns {
		dw := d.workers[a.Worker]
		if seen[a.Worker] || dw == nil || !dw.ws.relays || dw.version == version || evaluating[a.Worker] {
			seen[a.Worker] = true
			continue
		}
		seen[a.Worker] = true
		nodes = append(nodes, a)
	}
	serves := func(a train.Assign) bool {
		return d.workers[a.Worker].ws.reduce != "" && !d.badRelay[a.Worker]
	}
	slices.SortStableFunc(nodes, func(x, y train.Assign) int {
		switch sx, sy := serves(x), serves(y); {
		case sx == sy:
			return 0
		case sx:
			return -1
		}
		return 1
	})
	fan := max(d.s.cfg.TreeFanOut, 2)
	t := &relayTree{version: version, from: map[uint64]*dpcnnv1.ParamsSource{}, relayOf: map[uint64]string{}, whole: map[string]bool{}}
	for j := fan; j < len(nodes); j++ {
		parent := nodes[j/fan-1]
		if !serves(parent) {
			continue // from the coordinator
		}
		t.from[nodes[j].ID] = &dpcnnv1.ParamsSource{WorkerId: parent.Worker, Address: d.workers[parent.Worker].ws.reduce}
		t.whole[parent.Worker] = true
	}
	d.relays = t
}

// relayedParams puts the parameters' relay on assignment a for worker dw,
// when the step's tree gives it one, and reports whether it did.
func (d *driver) relayedParams(dw *driverWorker, a *dpcnnv1.Assignment, version int64) bool {
	t := d.relays
	if t == nil || t.version != version {
		return false
	}
	src := t.from[a.AssignmentId]
	if src == nil {
		return false
	}
	delete(t.from, a.AssignmentId)
	if d.workers[src.WorkerId] == nil {
		return false // the relay was lost
	}
	a.ParamsFrom = src
	t.relayOf[a.AssignmentId] = src.WorkerId
	d.s.cfg.Metrics.ParamsRelayed()
	return true
}

// relaysWhole reports whether worker id relays the step's parameters, so
// must be sent them whole.
func (d *driver) relaysWhole(id string, version int64) bool {
	t := d.relays
	return t != nil && t.version == version && t.whole[id]
}

// paramsUnreached takes a worker's failure to get an assignment's
// parameters from its relay: the work is given out again, with the
// parameters inline, and a relay that did not answer relays no more.
func (d *driver) paramsUnreached(dw *driverWorker, f *dpcnnv1.WorkFailure) {
	dw.version = -1
	relay := ""
	if t := d.relays; t != nil {
		relay = t.relayOf[f.AssignmentId]
		delete(t.relayOf, f.AssignmentId)
	}
	if relay != "" && f.GetParamsRelayDown() && !d.badRelay[relay] {
		if d.badRelay == nil {
			d.badRelay = map[string]bool{}
		}
		d.badRelay[relay] = true
		d.log.Warn("a parameter relay did not answer: it relays no more in this job", "relay", relay, "worker", dw.ws.worker, "err", f.GetMessage())
		d.logLine(dpcnnv1.LogLevel_LOG_LEVEL_WARN, fmt.Sprintf("worker %s could not fetch its parameters from worker %s, which relays no more parameters in this job: %s", dw.ws.worker, relay, f.GetMessage()))
	} else {
		d.log.Debug("parameters not reached down the tree: the work goes out again with them", "worker", dw.ws.worker, "relay", relay, "err", f.GetMessage())
	}
	if d.eng.Outstanding(f.AssignmentId) {
		d.step(train.ResultLost{Worker: dw.ws.worker, Assignment: f.AssignmentId})
	}
}
