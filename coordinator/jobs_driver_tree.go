package coordinator

import (
	"fmt"
	"log/slog"
	"slices"

	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
	"github.com/dpcnn/dpcnn/train"
	"github.com/dpcnn/dpcnn/tree"
)

// The tree of reducers. With the star every worker's gradient sum crosses
// the coordinator's one link each step; with the tree the coordinator
// appoints some of the step's workers reducers (those that serve
// ReduceService): each adds the sums of a few consecutive nodes of the
// step's fixed pairwise tree into the sum of the node they make
// (tree.PlanReduction, tree.ReducePieces) and passes it up, so at most
// TreeFanOut sums reach the coordinator a step, and the bits are the
// star's. The coordinator still decides everything: the plan is made from
// the engine's assignments as they are given out, the reducers hold
// nothing past the step, and every way a sum can go missing ends in the
// engine giving that work out again:
//
//   - a part's work ends without its result coming up the tree (its
//     worker failed it or was lost, a backup answered first): its group
//     and the groups above it are flushed, and pass what they hold up
//     unadded (checkTree);
//   - a reducer is lost: the groups above it are flushed, and the parts
//     below it whose sums it may have held are given out again
//     (reducerLost, resultsLost);
//   - a sum the engine refuses: its parts are given out again (piece).
//
// Work given out again goes without a route, straight to the coordinator.

// The topologies of ServerConfig.Topology.
const (
	TopologyAuto = "auto"
	TopologyStar = "star"
	TopologyTree = "tree"
)

// DefaultTreeFanOut is the most sums a reducer adds, and the most workers
// a relay passes the parameters to: at 4 a tree of 64 workers is three
// levels deep and the coordinator receives 4 sums a step instead of 64.
// It is the simulator's best at scale with the tree as built (parameters
// passed on chunk by chunk but for the first hop, sums sent up once every
// sum is in: cnnctl bench simulate --compute-ms 25.3 --topology tree
// --fan-out 2|4|8): 81.1% at 64 workers and 71.7% at 1,024, against 79.7
// and 69.4% at a fan-out of 2 and 79.1 and 67.8% at 8; a node sends its
// children their messages one after another, so a wide node is slow, and
// a narrow tree deep.
const DefaultTreeFanOut = 4

// DefaultTreeMinWorkers is the number of live workers serving
// ReduceService from which TopologyAuto sends the sums up a tree (and the
// parameters down it). Up to a fan-out of workers a tree is the star. At
// 8 the star, sending the parameters as deltas from 8 workers on
// (DefaultParamsDeltaMinWorkers), is 0.2 ms a step ahead in the simulator
// (30.00 ms against 30.22 at 10 Gbit/s and 25.3 ms of compute, the tree's
// relays taking whole vectors); from 9 the tree leads, and the gap grows
// with every worker (31.01 against 33.16 ms at 16).
const DefaultTreeMinWorkers = 9

// CheckTopology says whether t names a topology.
func CheckTopology(t string) error {
	switch t {
	case "", TopologyAuto, TopologyStar, TopologyTree:
		return nil
	}
	return fmt.Errorf("topology %q: want %s, %s or %s", t, TopologyAuto, TopologyStar, TopologyTree)
}

// pieceResult is a sum that came up the tree to the coordinator.
type pieceResult struct {
	ws *workStream
	p  *dpcnnv1.Piece
}

func (pieceResult) driverInput() {}

// stepTree is one step's tree of reducer groups.
type stepTree struct {
	step   int64
	groups []*treeGroup            // parents before their children
	parts  map[uint64]*treePart    // the step's routed assignments, by ID
	byHost map[string][]*treeGroup // the groups each reducer holds
}

type treeGroup struct {
	id      uint64
	leaves  tree.Subtree // the node whose sum it forms
	host    string
	parent  *treeGroup // nil: the group's sum goes to the coordinator
	flushed bool
	parts   []uint64 // the assignments in its subtree
}

type treePart struct {
	worker string
	group  *treeGroup // where its result goes; nil: the coordinator
	// done is set once the part's result has come up, or its loss has
	// been handled.
	done bool
}

// planTree plans a tree of reducers over the step whose assignments the
// engine has just given out, when the topology calls for one: their
// routes go with the assignments, and the reducers' groups go out first.
func (d *driver) planTree() {
	var assigns []train.Assign
	for _, ef := range d.effects {
		if a, ok := ef.(train.Assign); ok {
			if len(assigns) > 0 && a.Step != assigns[0].Step {
				return
			}
			assigns = append(assigns, a)
		}
	}
	if len(assigns) < 2 {
		return // a step's own start gives out all of its leaves at once
	}
	spec := d.eng.Spec()
	leaves := spec.Batch / spec.MicroBatch
	parts := make([]tree.Subtree, len(assigns))
	for i, a := range assigns {
		parts[i] = a.Leaves
	}
	serving := 0
	for _, dw := range d.workers {
		if dw.ws.reduce != "" {
			serving++
		}
	}
	plan, err := tree.PlanReduction(parts, leaves, d.s.cfg.TreeFanOut)
	if err != nil {
		return // not the whole step (work given out again): no tree
	}
	topology, why := d.chooseTopology(serving)
	if topology != TopologyTree {
		d.topologyChosen(topology, why, assigns[0].Step, nil)
		d.tree, d.relays = nil, nil
		d.reducersChanged()
		return
	}
	d.planRelays(assigns)
	t := &stepTree{step: assigns[0].Step, parts: map[uint64]*treePart{}, byHost: map[string][]*treeGroup{}}
	for _, g := range plan.Groups {
		var parent *treeGroup
		if g.Parent >= 0 {
			parent = t.groups[g.Parent] // planned before its children
		}
		ids := make([]uint64, len(g.Parts))
		for i, p := range g.Parts {
			ids[i] = assigns[p].ID
		}
		host := d.chooseReducer(t, g, assigns)
		d.lastGroup++
		tg := &treeGroup{id: d.lastGroup, leaves: g.Leaves, host: host, parent: parent, parts: ids}
		t.groups = append(t.groups, tg)
		t.byHost[host] = append(t.byHost[host], tg)
	}
	d.tree = t
	d.reducersChanged()
	d.topologyChosen(TopologyTree, why, t.step, &plan)
	for i, g := range plan.Groups {
		tg := t.groups[i]
		dw := d.workers[tg.host]
		d.touched[dw.ws] = true
		dw.ws.send(&dpcnnv1.CoordinatorMessage{Kind: &dpcnnv1.CoordinatorMessage_Reduce{Reduce: &dpcnnv1.ReduceWork{
			JobId: d.id, Step: t.step, Group: tg.id,
			FirstLeaf: uint32(g.Leaves.Lo), LeafCount: uint32(g.Leaves.Len()), StepLeaves: uint32(leaves),
			Pieces: uint32(g.Pieces), Up: d.route(tg.parent)}}})
	}
	if d.routes == nil {
		d.routes = map[uint64]*dpcnnv1.ReduceRoute{}
	}
	clear(d.routes)
	for i, a := range assigns {
		var g *treeGroup
		if pg := plan.PartGroup[i]; pg >= 0 {
			g = t.groups[pg]
			d.routes[a.ID] = d.route(g)
		}
		t.parts[a.ID] = &treePart{worker: a.Worker, group: g}
	}
}

// reducersChanged tells the workers' streams how many groups of the
// current tree they add, for ListWorkers.
func (d *driver) reducersChanged() {
	for id, dw := range d.workers {
		n := 0
		if d.tree != nil {
			n = len(d.tree.byHost[id])
		}
		dw.ws.mu.Lock()
		dw.ws.reducerGroups = n
		dw.ws.mu.Unlock()
	}
}

// chooseTopology picks the step's topology given the live workers that
// serve ReduceService, and says why.
func (d *driver) chooseTopology(serving int) (string, string) {
	cfg := d.s.cfg
	switch {
	case cfg.Topology == TopologyStar:
		return TopologyStar, "the coordinator is configured for the star"
	case serving < 2:
		return TopologyStar, fmt.Sprintf("%d of the job's workers serve reduction, a tree needs 2", serving)
	case cfg.Topology == TopologyTree:
		return TopologyTree, "the coordinator is configured for the tree"
	case serving < cfg.TreeMinWorkers:
		return TopologyStar, fmt.Sprintf("%d workers serve reduction, fewer than the %d from which a tree pays", serving, cfg.TreeMinWorkers)
	}
	return TopologyTree, fmt.Sprintf("%d workers serve reduction, at least the %d from which a tree pays", serving, cfg.TreeMinWorkers)
}

// topologyChosen logs the topology when it changes.
func (d *driver) topologyChosen(topology, why string, step int64, plan *tree.ReductionPlan) {
	if topology == d.topology {
		return
	}
	d.topology = topology
	msg := fmt.Sprintf("step %d: gradient sums go straight to the coordinator (star): %s", step+1, why)
	attrs := []any{"topology", topology, "step", step + 1, "why", why}
	if plan != nil {
		levels := 0
		for _, g := range plan.Groups {
			levels = max(levels, g.Level+1)
		}
		msg = fmt.Sprintf("step %d: gradient sums go up a tree of %d reducer groups, %d levels deep, %d sums reaching the coordinator a step: %s",
			step+1, len(plan.Groups), levels, plan.Top(), why)
		attrs = append(attrs, "groups", len(plan.Groups), "levels", levels, "top", plan.Top(), "fan_out", d.s.cfg.TreeFanOut)
	}
	d.log.Info("topology chosen", attrs...)
	d.logLine(dpcnnv1.LogLevel_LOG_LEVEL_INFO, msg)
}

// chooseReducer picks the worker that reduces group g: one of the
// group's own workers that serves reduction and holds the fewest groups
// yet (its own result then needs no push), else any such worker.
func (d *driver) chooseReducer(t *stepTree, g tree.Group, assigns []train.Assign) string {
	best, load := "", 0
	consider := func(id string) {
		dw := d.workers[id]
		if dw == nil || dw.ws.reduce == "" {
			return
		}
		if n := len(t.byHost[id]); best == "" || n < load {
			best, load = id, n
		}
	}
	for _, p := range g.Parts {
		consider(assigns[p].Worker)
	}
	if best == "" || load > 0 {
		ids := make([]string, 0, len(d.workers))
		for id := range d.workers {
			ids = append(ids, id)
		}
		slices.Sort(ids) // the same choice for the same cluster
		for _, id := range ids {
			consider(id)
		}
	}
	return best
}

// route is where a sum goes to reach group g (the coordinator for nil).
func (d *driver) route(g *treeGroup) *dpcnnv1.ReduceRoute {
	if g == nil {
		return &dpcnnv1.ReduceRoute{}
	}
	return &dpcnnv1.ReduceRoute{ReducerId: g.host, Address: d.workers[g.host].ws.reduce, Group: g.id}
}

// flush makes group g and the groups above it pass their sums up unadded.
func (d *driver) flush(g *treeGroup) {
	hosts := map[string][]uint64{}
	for ; g != nil; g = g.parent {
		if !g.flushed {
			g.flushed = true
			hosts[g.host] = append(hosts[g.host], g.id)
		}
	}
	for host, ids := range hosts {
		if dw := d.workers[host]; dw != nil {
			dw.ws.send(&dpcnnv1.CoordinatorMessage{Kind: &dpcnnv1.CoordinatorMessage_Flush{Flush: &dpcnnv1.FlushReduce{JobId: d.id, Groups: ids}}})
		}
	}
}

// checkTree flushes the groups that wait in vain: those with a part whose
// work ended without its result coming up the tree.
func (d *driver) checkTree() {
	t := d.tree
	if t == nil {
		return
	}
	for id, p := range t.parts {
		if !p.done && !d.eng.Outstanding(id) {
			p.done = true
			if p.group != nil && !p.group.flushed {
				d.log.Debug("reducer group flushed: a part's work ended outside the tree", "assignment", id, "group", p.group.id)
				d.flush(p.group)
			}
		}
	}
}

// reducerLost handles the loss of worker id as a reducer: the groups
// above its own pass their sums up unadded, and it returns the parts below
// them (of other workers) whose sums it may have held, for resultsLost
// once the engine has taken the worker out.
func (d *driver) reducerLost(id string) []uint64 {
	t := d.tree
	if t == nil || len(t.byHost[id]) == 0 {
		return nil
	}
	var held []uint64
	for _, g := range t.byHost[id] {
		g.flushed = true // it is gone
		d.flush(g.parent)
		for _, a := range g.parts {
			if p := t.parts[a]; p != nil && !p.done && p.worker != id {
				p.done = true
				held = append(held, a)
			}
		}
	}
	delete(t.byHost, id)
	slices.Sort(held)
	held = slices.Compact(held)
	if len(held) > 0 {
		d.logLine(dpcnnv1.LogLevel_LOG_LEVEL_WARN, fmt.Sprintf("step %d: reducer %s was lost; the %d assignments whose sums it may have held are given out again", t.step+1, id, len(held)))
	}
	return held
}

// resultsLost gives out again the assignments (still outstanding) whose
// results were lost on their way up.
func (d *driver) resultsLost(ids []uint64) {
	for _, id := range ids {
		if !d.eng.Outstanding(id) || d.tree == nil {
			continue
		}
		p := d.tree.parts[id]
		if p == nil {
			continue
		}
		if dw := d.workers[p.worker]; dw != nil {
			dw.ws.setOutstanding(id, false)
		}
		d.step(train.ResultLost{Worker: p.worker, Assignment: id})
	}
}

// piece takes a sum that came up the tree: one worker's result, or a
// reducer's sum of several, which the engine takes as one node's sum.
func (d *driver) piece(ws *workStream, p *dpcnnv1.Piece) {
	grad := d.decodeGradient(p.GetGradientSum(), p.GetFrom(), 0)
	parts := make([]train.GradientsReceived, len(p.Parts))
	ids := make([]uint64, len(p.Parts))
	for i, pp := range p.Parts {
		r := pp.GetResult()
		if r.GetTrain() == nil {
			d.log.Warn("a sum with a part that is no training result: refused", "from", p.GetFrom(), "worker", pp.GetWorkerId())
			d.logLine(dpcnnv1.LogLevel_LOG_LEVEL_WARN, fmt.Sprintf("refused: a sum from %s with a part of worker %s that is no training result", p.GetFrom(), pp.GetWorkerId()))
			return
		}
		var pws *workStream
		if dw := d.workers[pp.GetWorkerId()]; dw != nil {
			pws = dw.ws
			rtt := pws.answered(r.AssignmentId)
			d.resultTimed(r, rtt)
		}
		parts[i] = d.trainReceived(pws, pp.GetWorkerId(), r, nil)
		ids[i] = r.AssignmentId
	}
	if t := d.tree; t != nil {
		node := tree.Subtree{Lo: int(p.GetFirstLeaf()), Hi: int(p.GetFirstLeaf() + p.GetLeafCount())}
		for _, id := range ids {
			if tp := t.parts[id]; tp != nil {
				tp.done = true
			}
		}
		if tp := t.parts[ids[0]]; tp != nil {
			d.skippedGroup(tp.group, node)
		}
	}
	if len(parts) == 1 {
		ev := parts[0]
		ev.Grad = grad
		d.step(ev)
	} else {
		d.step(train.SumReceived{Parts: parts, Grad: grad})
	}
	// A part still outstanding was refused with its sum (or left
	// outstanding by a refused part beside it): its result is lost.
	for i, id := range ids {
		if d.eng.Outstanding(id) {
			if dw := d.workers[parts[i].Worker]; dw != nil {
				dw.ws.setOutstanding(id, false)
			}
			d.log.Debug("a part of a refused sum is given out again", slog.String("worker", parts[i].Worker), slog.Uint64("assignment", id))
			d.step(train.ResultLost{Worker: parts[i].Worker, Assignment: id})
		}
	}
}

// skippedGroup flushes the group a sum of node should have gone to on its
// way up from group g, when it came to the coordinator instead (its
// reducer could not be reached): that group waits for it in vain. A sum
// that rightly reaches the coordinator has every group around it flushed,
// or none.
func (d *driver) skippedGroup(g *treeGroup, node tree.Subtree) {
	for ; g != nil; g = g.parent {
		if g.leaves == node || g.leaves.Lo > node.Lo || g.leaves.Hi < node.Hi {
			continue // the sum's own group, or one inside it
		}
		if !g.flushed {
			d.log.Debug("reducer group flushed: a sum for it came to the coordinator", "group", g.id, "leaves", node.String())
			d.flush(g)
		}
		return
	}
}
