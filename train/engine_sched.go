package train

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/dpcnn/dpcnn/tree"
)

// workerState is what the engine knows of one worker.
type workerState struct {
	id       string
	declared float64 // images/s, from WorkerJoined; 0 when unknown
	measured float64 // images/s, from its results; 0 until measured
	flagged  error   // why it gets no work; nil when it does
	load     int     // images (or test samples) outstanding

	// The current busy period, for measuring the worker's speed: since
	// when it has had work outstanding, and how many training images it
	// has finished in it.
	busySince time.Time
	busyTimed bool // busySince is known (a Tick had come)
	busyDone  int
	busyEval  bool // the period held evaluation work: not a training speed
	// reportsCompute is set once the worker says how long its work took:
	// its speed is measured from that alone.
	reportsCompute bool
	// idleSteps counts the steps in a row that the speed estimates gave
	// this available worker no training work, and probeAfter how many
	// such steps earn it a probe (see probeStarved); 0 means
	// probeFirstAfter.
	idleSteps, probeAfter int
}

// speed is the worker's best known speed in images/s, 0 when unknown.
func (w *workerState) speed() float64 {
	if w.measured > 0 {
		return w.measured
	}
	return w.declared
}

// round is one step's micro-batches, or one evaluation's test samples, as
// the work items they are currently cut into.
type round struct {
	eval    bool
	version int64 // optimizer steps applied to the parameters it uses
	epoch   int64 // of a step: its epoch; of an evaluation: epochs completed
	inEpoch int
	unit    int // images per unit of an item's range: the micro-batch size, or 1
	items   []*workItem
	left    int // items not done
	correct int
	bad     []badResult // workers that went wrong
}

// badResult records a worker that went wrong in a round.
type badResult struct{ worker, what string }

// name names the round in errors.
func (r *round) name() string {
	if r.eval {
		return fmt.Sprintf("evaluation after step %d", r.version)
	}
	return fmt.Sprintf("step %d", r.version+1)
}

// unitName names the units of the round's items.
func (r *round) unitName() string {
	if r.eval {
		return "samples"
	}
	return "micro-batches"
}

// verdict says what two workers going wrong in one round means.
func (r *round) verdict(what string) string {
	if what == "non-finite gradients" {
		return "the model has diverged"
	}
	return "the job cannot be done"
}

// workItem is a piece of a round: an aligned subtree [lo, hi) of a step's
// micro-batches, or a range [lo, hi) of test samples. Items of a round are
// disjoint and cover it; an item with no holders is pending.
type workItem struct {
	lo, hi  int
	holders []*assignment // outstanding copies
	done    bool
}

// assignment is one outstanding copy of a work item on a worker.
type assignment struct {
	id       uint64
	w        *workerState
	round    *round
	item     *workItem
	images   int
	wait     time.Duration // its deadline, from when it was issued
	issued   time.Time
	timed    bool // issued is known (a Tick had come)
	backedUp bool // a copy went to another worker at the deadline
}

func (e *Engine) worker(id string) *workerState {
	for _, w := range e.workers {
		if w.id == id {
			return w
		}
	}
	return nil
}

func (e *Engine) join(ev WorkerJoined) {
	if ev.ID == "" {
		e.emit(Refused{Err: fmt.Errorf("train: worker joined with an empty ID: %w", ErrUnknownWorker)})
		return
	}
	speed := ev.Speed
	if !(speed > 0) || math.IsInf(speed, 0) {
		speed = 0 // unknown
	}
	if w := e.worker(ev.ID); w != nil {
		w.declared = speed
		return
	}
	e.workers = append(e.workers, &workerState{id: ev.ID, declared: speed})
}

// lose removes a worker; its outstanding work becomes pending, and advance
// gives it to others.
func (e *Engine) lose(id string) {
	w := e.worker(id)
	if w == nil {
		return
	}
	if j := e.job; j != nil {
		for i := 0; i < len(j.outstanding); {
			if a := j.outstanding[i]; a.w == w {
				e.release(a)
				continue
			}
			i++
		}
	}
	e.workers = slices.DeleteFunc(e.workers, func(x *workerState) bool { return x == w })
}

// available lists the workers that may be given work, in join order, at
// most MaxWorkers of them (a scratch slice, valid until the next call).
// The limit takes the earliest to join, so the same workers keep the work
// while they live, and a later one steps in for one lost or flagged.
func (e *Engine) available() []*workerState {
	e.avail = e.avail[:0]
	for _, w := range e.workers {
		if max := e.cfg.MaxWorkers; max > 0 && len(e.avail) == max {
			break
		}
		if w.flagged == nil {
			e.avail = append(e.avail, w)
		}
	}
	return e.avail
}

// advance starts whatever can start after an event: with enough workers,
// the pending work of the round in flight, or the next step; with too few,
// it reports Waiting (once for each number of workers available).
func (e *Engine) advance() {
	j := e.job
	if j == nil || j.phase != phaseRunning {
		return
	}
	avail := e.available()
	if need := e.cfg.MinWorkers; len(avail) < need {
		if e.waiting != len(avail) {
			e.waiting = len(avail)
			reason := fmt.Sprintf("fewer than %d workers: %d available", need, len(avail))
			if flagged := len(e.workers) - len(avail); flagged > 0 {
				reason += fmt.Sprintf(", %d flagged", flagged)
			}
			e.emit(Waiting{Reason: reason, Need: need, Available: len(avail)})
		}
		return
	}
	e.waiting = -1
	if j.train == nil && j.eval == nil {
		e.startStep()
	}
	r := j.eval
	if r == nil {
		r = j.train
	}
	e.assignPending(r, avail)
}

// startStep plans the next step: its global batch, cut into micro-batches,
// as one pending item, the root of the tree.
func (e *Engine) startStep() {
	j := e.job
	perEpoch := j.sched.PerEpoch
	epoch, inEpoch := j.step/perEpoch, int(j.step%perEpoch)
	j.order.Step(epoch, inEpoch, j.idx)
	m := j.spec.MicroBatch
	for i := range j.micro {
		j.micro[i] = tree.MicroBatch{Epoch: epoch, Step: j.step, Indices: j.idx[i*m : (i+1)*m]}
	}
	clear(j.roots)
	clear(j.losses)
	j.train = &round{
		version: j.step, epoch: epoch, inEpoch: inEpoch, unit: m,
		items: []*workItem{{lo: 0, hi: len(j.micro)}}, left: 1,
	}
}

// startEval plans an evaluation of the current parameters on the whole
// test set, as one pending item.
func (e *Engine) startEval() {
	j := e.job
	if j.spec.Optimizer.EMA.Evaluate {
		j.avgFlat = j.avgFlat[:0]
		for _, t := range j.opt.Average() {
			j.avgFlat = append(j.avgFlat, t.Data...)
		}
	}
	j.eval = &round{
		eval: true, version: j.step, epoch: j.epoch, unit: 1,
		items: []*workItem{{lo: 0, hi: j.testLen}}, left: 1,
	}
}

// assignPending lays the round's pending items out in order and cuts them
// into contiguous shares in proportion to the workers' speeds; each share
// is given as the aligned subtrees (or sample ranges) it spans.
func (e *Engine) assignPending(r *round, avail []*workerState) {
	total := 0
	for _, it := range r.items {
		if !it.done && len(it.holders) == 0 {
			total += it.hi - it.lo
		}
	}
	if total == 0 {
		return
	}
	quota := shares(total, avail)
	if !r.eval && total == len(e.job.micro) {
		probeStarved(quota, avail)
	}
	items := make([]*workItem, 0, len(r.items)+len(avail))
	var pieces []tree.Subtree
	wi := 0
	for _, it := range r.items {
		if it.done || len(it.holders) > 0 {
			items = append(items, it)
			continue
		}
		for pos := it.lo; pos < it.hi; {
			for quota[wi] == 0 {
				wi++
			}
			end := min(it.hi, pos+quota[wi])
			quota[wi] -= end - pos
			pieces = pieces[:0]
			if r.eval {
				pieces = append(pieces, tree.Subtree{Lo: pos, Hi: end})
			} else {
				pieces = tree.SplitSubtrees(pieces, pos, end, len(e.job.micro))
			}
			for _, p := range pieces {
				piece := it
				if p.Lo != it.lo || p.Hi != it.hi {
					piece = &workItem{lo: p.Lo, hi: p.Hi}
				}
				items = append(items, piece)
				e.issue(avail[wi], r, piece)
			}
			pos = end
		}
	}
	r.items = items
	r.left = 0
	for _, it := range items {
		if !it.done {
			r.left++
		}
	}
}

// shares cuts total units into contiguous shares in proportion to the
// workers' speeds (a worker of unknown speed counts as the average of the
// known ones; when none is known, all shares are equal). Boundaries are the
// rounded cumulative proportions, so the shares add up to total exactly.
func shares(total int, ws []*workerState) []int {
	fallback := fallbackSpeed(ws)
	sum := 0.0
	for _, w := range ws {
		sum += speedOr(w, fallback)
	}
	q := make([]int, len(ws))
	acc, prev := 0.0, 0
	for i, w := range ws {
		acc += speedOr(w, fallback)
		b := int(math.Floor(float64(total)*acc/sum + 0.5))
		if i == len(ws)-1 || b > total {
			b = total
		}
		q[i] = b - prev
		prev = b
	}
	return q
}

// Probing a starved worker: a worker's speed is measured only from work
// it does, so an estimate that makes its share round to zero would never
// be corrected. One slow first measurement (a worker's first step pays for
// its warm-up) left one of two equal workers idle for a whole job, halving
// its speed. So when a worker's share of a step would be zero for the
// probeFirstAfter-th step in a row, it gets one unit of that step instead,
// taken from the largest share, and is measured again. A probe that leaves it still without a share
// of its own doubles the wait before the next, up to probeMaxAfter, so a
// worker that really is much slower costs at most one slow step in
// probeMaxAfter.
const (
	probeFirstAfter = 20
	probeMaxAfter   = 1280
)

// probeStarved moves one unit of a fresh step's quota to each available
// worker that is due a probe (see probeFirstAfter), from the largest share
// that keeps at least one. The shares decide only who computes what, never
// the bits.
func probeStarved(quota []int, avail []*workerState) {
	for i, w := range avail {
		if w.probeAfter == 0 {
			w.probeAfter = probeFirstAfter
		}
		if quota[i] > 0 {
			w.idleSteps, w.probeAfter = 0, probeFirstAfter
			continue
		}
		if w.idleSteps++; w.idleSteps < w.probeAfter {
			continue
		}
		big := 0
		for k := range quota {
			if quota[k] > quota[big] {
				big = k
			}
		}
		if quota[big] < 2 {
			continue
		}
		quota[big]--
		quota[i]++
		w.idleSteps, w.probeAfter = 0, min(2*w.probeAfter, probeMaxAfter)
	}
}

// fallbackSpeed is the speed assumed for a worker whose speed is unknown:
// the average of the known ones, or 1 when none is known.
func fallbackSpeed(ws []*workerState) float64 {
	known, n := 0.0, 0
	for _, w := range ws {
		if s := w.speed(); s > 0 {
			known += s
			n++
		}
	}
	if n == 0 {
		return 1
	}
	return known / float64(n)
}

func speedOr(w *workerState, fallback float64) float64 {
	if s := w.speed(); s > 0 {
		return s
	}
	return fallback
}

// issue gives an item to a worker.
func (e *Engine) issue(w *workerState, r *round, it *workItem) {
	j := e.job
	a := &assignment{id: e.nextID, w: w, round: r, item: it, images: (it.hi - it.lo) * r.unit}
	e.nextID++
	if w.load == 0 {
		w.busySince, w.busyTimed, w.busyDone, w.busyEval = e.now, e.clock, 0, false
	}
	w.load += a.images
	if r.eval {
		w.busyEval = true
	} else {
		j.issued += int64(a.images)
	}
	a.wait = e.deadline(w)
	a.issued, a.timed = e.now, e.clock
	it.holders = append(it.holders, a)
	j.outstanding = append(j.outstanding, a)
	if r.eval {
		params, version := j.flat, r.version
		if j.spec.Optimizer.EMA.Evaluate {
			params, version = j.avgFlat, r.version|AverageVersion
		}
		e.emit(Evaluate{Worker: w.id, ID: a.id, Version: r.version, ParamsVersion: version, From: it.lo, To: it.hi, Params: params})
		return
	}
	e.emit(Assign{
		Worker: w.id, ID: a.id, Step: r.version, Epoch: r.epoch, Leaves: tree.Subtree{Lo: it.lo, Hi: it.hi},
		Micro: j.micro[it.lo:it.hi], Params: j.flat,
	})
}

// deadline is how long the worker's newest assignment may take: a multiple
// of the time its whole queue should take at its speed.
func (e *Engine) deadline(w *workerState) time.Duration {
	if e.cfg.Deadline > 0 {
		return e.cfg.Deadline
	}
	s := w.speed()
	if s <= 0 {
		return e.cfg.UnknownSpeedDeadline
	}
	secs := e.cfg.DeadlineFactor * float64(w.load) / s
	if secs > 24*3600 {
		return 24 * time.Hour
	}
	return max(time.Duration(secs*float64(time.Second)), e.cfg.MinDeadline)
}

// release takes an assignment off the books: off its item (which becomes
// pending when it was the last copy) and its worker's load.
func (e *Engine) release(a *assignment) {
	j := e.job
	i, _ := j.findOutstanding(a.id)
	j.outstanding = slices.Delete(j.outstanding, i, i+1)
	a.item.holders = slices.DeleteFunc(a.item.holders, func(x *assignment) bool { return x == a })
	a.w.load -= a.images
}

// withdraw releases an assignment whose result is no longer wanted, telling
// the driver when cancel is set.
func (e *Engine) withdraw(a *assignment, cancel bool) {
	e.release(a)
	if cancel {
		e.emit(Cancel{Worker: a.w.id, Assignment: a.id})
	}
}

// lookup returns the outstanding assignment with the given ID, or nil.
func (e *Engine) lookup(id uint64) *assignment {
	j := e.job
	if j == nil {
		return nil
	}
	i, ok := j.findOutstanding(id)
	if !ok {
		return nil
	}
	return j.outstanding[i]
}

// measure updates a worker's speed at the end of a busy period of training
// work.
func (e *Engine) measure(w *workerState) {
	if w.busyTimed && !w.busyEval && !w.reportsCompute && w.busyDone > 0 && e.now.After(w.busySince) {
		w.measured = ObserveSpeed(w.measured, w.busyDone, e.now.Sub(w.busySince))
	}
	w.busyTimed, w.busyDone, w.busyEval = false, 0, false
}

func (e *Engine) tick(now time.Time) {
	if e.clock && !now.After(e.now) {
		return
	}
	first := !e.clock
	e.now, e.clock = now, true
	j := e.job
	if j == nil {
		return
	}
	if first {
		for _, a := range j.outstanding {
			a.issued, a.timed = now, true
		}
		for _, w := range e.workers {
			if w.load > 0 {
				w.busySince, w.busyTimed = now, true
			}
		}
	}
	e.checkDeadlines()
}

// checkDeadlines gives a copy of every overdue assignment to another worker
// (once); the first result to come back is taken.
func (e *Engine) checkDeadlines() {
	j := e.job
	if j.phase != phaseRunning {
		return
	}
	avail := e.available()
	if len(avail) < e.cfg.MinWorkers {
		return
	}
	for i, n := 0, len(j.outstanding); i < n; i++ {
		a := j.outstanding[i]
		if !a.timed || a.backedUp || e.now.Before(a.issued.Add(a.wait)) {
			continue
		}
		alt := backupFor(a, avail)
		if alt == nil {
			continue // nobody else to ask; look again at the next tick
		}
		a.backedUp = true
		e.slowDown(a.w)
		e.emit(Straggler{Worker: a.w.id, Assignment: a.id, Waited: e.now.Sub(a.issued), Deadline: a.wait, Backup: alt.id})
		e.issue(alt, a.round, a.item)
	}
}

// backupFor picks the worker expected to finish a copy of a's item first,
// among those that hold no copy of it.
func backupFor(a *assignment, avail []*workerState) *workerState {
	fallback := fallbackSpeed(avail)
	var best *workerState
	bestTime := 0.0
	for _, w := range avail {
		if slices.ContainsFunc(a.item.holders, func(x *assignment) bool { return x.w == w }) {
			continue
		}
		t := float64(w.load+a.images) / speedOr(w, fallback)
		if best == nil || t < bestTime {
			best, bestTime = w, t
		}
	}
	return best
}

// slowDown caps the speed of a worker that missed a deadline at what it
// has shown in its current busy period, so its next shares are smaller.
func (e *Engine) slowDown(w *workerState) {
	if !w.busyTimed || !e.now.After(w.busySince) {
		return
	}
	bound := float64(w.busyDone+w.load) / e.now.Sub(w.busySince).Seconds()
	if s := w.speed(); s <= 0 || s > bound {
		w.measured = bound
	}
}

// findOutstanding finds the outstanding assignment with the given ID (they
// are kept in ascending ID order), or where it would be.
func (j *jobState) findOutstanding(id uint64) (int, bool) {
	return slices.BinarySearchFunc(j.outstanding, id, func(x *assignment, id uint64) int { return cmp.Compare(x.id, id) })
}
