package simulate

import (
	"slices"
	"time"

	"github.com/dpcnn/dpcnn/train"
	"github.com/dpcnn/dpcnn/tree"
)

// The tree keeps the bits the way a real one must: a sum may only be
// added to the sum of the subtree beside it in the engine's pairwise tree.
// So the workers are its leaves, in the order of their micro-batches, and
// its inner nodes are reducers that add FanOut consecutive sums: those of
// FanOut workers, or of FanOut reducers of the level below, up to a level
// of at most FanOut sums, which go to the coordinator. The reducers run
// on the workers' hosts (the i-th reducer from the top on the i-th
// worker's host, one a host unless the fan-out is 2), beside the worker.
//
// Parameters come down the same tree: the coordinator sends them to the
// hosts of the top reducers, each reducer's host relays them to the hosts
// of the reducers below it, and a bottom reducer's host to its workers,
// each host getting them once (from the first reducer above it that
// reaches it); a top host relays them once they are all in (they come
// whole in its assignment), the others as each chunk comes in. (The same
// heap over the step's workers the coordinator lays: the i-th host from
// the top relays to hosts k(i+1) … k(i+1)+k−1.)
//
// A reducer waits for all its sums. When a host dies, its worker's sum
// is lost and the engine gives the work to another, whose sum goes to the
// coordinator; the reducers above the hole cannot add across it, so they
// pass the sums they hold up unadded, one message each. Its reducer, if
// it had one, is gone too: the sums sent to it go to its parent instead,
// which adds them in their order.

// treeLeaf is a worker's place in its step's tree.
type treeLeaf struct {
	w      *simWorker
	a      train.Assign
	parent *reducer // nil: the coordinator
}

// reducer is an inner node of a step's tree.
type reducer struct {
	host     *simWorker
	parent   *reducer // nil: the coordinator
	expect   int      // sums it waits for
	got      int      // sums begun to arrive
	maxLast  time.Duration
	pieces   []piece // the sums received
	holed    bool    // a sum below it is lost: it passes the pieces up unadded
	sent     bool
	children []*reducer  // the reducers below, or
	leaves   []*treeLeaf // the workers below (a bottom reducer)
}

// treeStep is one step's tree.
type treeStep struct {
	leaves   map[*simWorker]*treeLeaf
	hosted   map[*simWorker][]*reducer // the reducers each host runs
	relays   map[*simWorker][]*simWorker
	topHosts []*simWorker // the hosts the coordinator sends the parameters to
}

// sendTree builds a step's tree over its first assignments and sends the
// parameters down it. A worker given two of them gets the second straight
// from the coordinator.
func (s *sim) sendTree(as []train.Assign, st *stepStats) {
	k := s.cfg.FanOut
	as = slices.Clone(as)
	slices.SortStableFunc(as, func(a, b train.Assign) int { return a.Leaves.Lo - b.Leaves.Lo })
	t := &treeStep{leaves: map[*simWorker]*treeLeaf{}, hosted: map[*simWorker][]*reducer{}, relays: map[*simWorker][]*simWorker{}}
	var leaves []*treeLeaf
	for _, a := range as {
		w := s.byID[a.Worker]
		if t.leaves[w] != nil {
			s.sendDirect(a)
			continue
		}
		l := &treeLeaf{w: w, a: a}
		t.leaves[w] = l
		leaves = append(leaves, l)
	}
	// Levels of reducers, bottom up, until at most k sums are left.
	var levels [][]*reducer
	for width := len(leaves); width > k; width = len(levels[len(levels)-1]) {
		var level []*reducer
		for i := 0; i < width; i += k {
			r := &reducer{}
			if len(levels) == 0 {
				r.leaves = leaves[i:min(i+k, width)]
				for _, l := range r.leaves {
					l.parent = r
				}
				r.expect = len(r.leaves)
			} else {
				r.children = levels[len(levels)-1][i:min(i+k, width)]
				for _, c := range r.children {
					c.parent = r
				}
				r.expect = len(r.children)
			}
			level = append(level, r)
		}
		levels = append(levels, level)
	}
	// Hosts, from the top: one reducer a host while there are hosts
	// enough (there are fewer reducers than workers from a fan-out of 3).
	h := 0
	for i := len(levels) - 1; i >= 0; i-- {
		for _, r := range levels[i] {
			r.host = leaves[h%len(leaves)].w
			t.hosted[r.host] = append(t.hosted[r.host], r)
			h++
		}
	}
	// Each host gets the parameters once, from the first reducer above it
	// that reaches it, top down.
	reached := map[*simWorker]bool{}
	if len(levels) == 0 {
		for _, l := range leaves {
			t.topHosts = append(t.topHosts, l.w)
		}
	} else {
		for _, r := range levels[len(levels)-1] {
			if !reached[r.host] {
				reached[r.host] = true
				t.topHosts = append(t.topHosts, r.host)
			}
		}
	}
	for i := len(levels) - 1; i >= 0; i-- {
		for _, r := range levels[i] {
			for _, c := range r.children {
				if !reached[c.host] {
					reached[c.host] = true
					t.relays[r.host] = append(t.relays[r.host], c.host)
				}
			}
			for _, l := range r.leaves {
				if !reached[l.w] {
					reached[l.w] = true
					t.relays[r.host] = append(t.relays[r.host], l.w)
				}
			}
		}
	}
	s.tree = t
	for _, host := range t.topHosts {
		ready := s.encode(st)
		s.q.schedule(ready, func() { s.down(t, host, &s.coord, ready, ready) })
	}
}

// down moves the parameters to host from the node that holds them from
// first (first chunk) to last (last byte), and on: host relays them as
// they arrive, and its worker computes once they are all in.
func (s *sim) down(t *treeStep, host *simWorker, from *port, first, last time.Duration) {
	if host.dead {
		return
	}
	fa, la := s.transfer(from, &host.port, first, last, s.downBytes)
	for _, next := range t.relays[host] {
		if from == &s.coord {
			// Its assignment carried the parameters whole: passed on
			// once all of it is in.
			s.q.schedule(la, func() { s.down(t, next, &host.port, la, la) })
		} else {
			s.q.schedule(fa, func() { s.down(t, next, &host.port, fa, la) })
		}
	}
	l := t.leaves[host]
	s.q.schedule(la, func() {
		done, ok := s.compute(host, l.a)
		if !ok {
			return
		}
		s.q.schedule(done, func() {
			if !host.dead {
				s.sendUp(t, host, l.parent, []piece{resultPiece(s.result(l.a))}, s.now)
			}
		})
	})
}

// sendUp sends sums from host to r (the coordinator when nil), one
// message each, whose last bytes leave no sooner than last; a sum sent to
// the reducer on its own host arrives at once.
func (s *sim) sendUp(t *treeStep, host *simWorker, r *reducer, sums []piece, last time.Duration) {
	if r != nil && len(sums) > 1 {
		r.expect += len(sums) - 1 // pieces in place of one sum
	}
	for _, sum := range sums {
		if r == nil {
			_, la := s.transfer(&host.port, &s.coord, s.now, last, s.msgBytes)
			s.q.schedule(la, func() { s.receive(la, sum) })
			continue
		}
		if r.host == host {
			s.arrive(t, r, sum, last)
			continue
		}
		fa, la := s.transfer(&host.port, &r.host.port, s.now, last, s.msgBytes)
		s.q.schedule(fa, func() {
			if !r.host.dead {
				s.arrive(t, r, sum, la)
			}
		})
	}
}

// arrive takes a sum begun to arrive at r, whose last byte comes at last;
// once all have begun, r sends their sum up as they come in, its last
// byte after theirs and after r has added them all.
func (s *sim) arrive(t *treeStep, r *reducer, sum piece, last time.Duration) {
	r.got++
	r.maxLast = max(r.maxLast, last)
	r.pieces = append(r.pieces, sum)
	s.flushReducer(t, r)
}

func (s *sim) flushReducer(t *treeStep, r *reducer) {
	if r.sent || r.got < r.expect || r.host.dead {
		return
	}
	if !s.cfg.CutThroughSums && s.now < r.maxLast {
		// Store-and-forward: nothing leaves before every sum is in.
		s.q.schedule(r.maxLast, func() { s.flushReducer(t, r) })
		return
	}
	r.sent = true
	if r.holed {
		if r.parent != nil {
			r.parent.holed = true
		}
		s.sendUp(t, r.host, r.parent, r.pieces, r.maxLast)
		return
	}
	sum, ok := s.addPieces(r.pieces)
	if !ok {
		// The sums do not make one node of the tree (the engine split the
		// step unevenly): adding them would change the bits, so they go up
		// as they are.
		if r.parent != nil {
			r.parent.holed = true
		}
		s.sendUp(t, r.host, r.parent, r.pieces, r.maxLast)
		return
	}
	c := s.cfg.Costs
	adds := time.Duration(len(r.pieces) - 1)
	if !s.cfg.CutThroughSums {
		done := s.now + adds*c.Reduce // all in: add them, then send
		s.q.schedule(done, func() { s.sendUp(t, r.host, r.parent, []piece{sum}, done) })
		return
	}
	chunkShare := float64(min(s.cfg.ChunkBytes, s.msgBytes)) / float64(s.msgBytes)
	last := max(s.now+adds*c.Reduce, r.maxLast+time.Duration(float64(c.Reduce)*chunkShare))
	s.sendUp(t, r.host, r.parent, []piece{sum}, last)
}

// piece is a sum on its way up: one worker's result, or a reducer's sum of
// consecutive subtrees that make the node Leaves.
type piece struct {
	leaves tree.Subtree
	parts  []train.GradientsReceived // their Grad left out, but for a single result's
	grad   []float32
	owned  bool // grad is the simulation's buffer, to be given back once read
}

func resultPiece(r train.GradientsReceived) piece {
	return piece{leaves: r.Leaves, parts: []train.GradientsReceived{r}, grad: r.Grad}
}

// addPieces adds a reducer's sums in the tree's order (tree.ReducePieces),
// when they make one node of the step's tree; the buffers of the sums it
// added go back to the pool.
func (s *sim) addPieces(ps []piece) (piece, bool) {
	if len(ps) == 1 {
		// The node itself: passed on as it is, its buffer with it
		// (ReducePieces would return that buffer, and giving it back to
		// the pool here let the next sum overwrite it on its way up).
		return ps[0], true
	}
	ps = slices.Clone(ps)
	slices.SortFunc(ps, func(a, b piece) int { return a.leaves.Lo - b.leaves.Lo })
	node := tree.Subtree{Lo: ps[0].leaves.Lo, Hi: ps[len(ps)-1].leaves.Hi}
	in := make([]tree.Piece, len(ps))
	for i, p := range ps {
		in[i] = tree.Piece{Leaves: p.leaves, Sum: p.grad}
	}
	grad, err := tree.ReducePieces(node, in, s.leaves, s.buffer)
	if err != nil {
		return piece{}, false
	}
	out := piece{leaves: node, grad: grad, owned: true}
	for _, p := range ps {
		for _, r := range p.parts {
			r.Grad = nil
			out.parts = append(out.parts, r)
		}
		if p.owned {
			s.release(p.grad)
		}
	}
	return out, true
}

// treeDeath takes host out of its step's tree as it dies: its worker's
// sum leaves a hole in its reducer, and the sums sent to its own reducer
// go to that reducer's parent.
func (s *sim) treeDeath(host *simWorker) {
	t := s.tree
	if t == nil {
		return
	}
	if l := t.leaves[host]; l != nil && l.parent != nil {
		p := l.parent
		p.expect--
		p.holed = true
		s.q.schedule(s.now, func() { s.flushReducer(t, p) })
	}
	for _, r := range t.hosted[host] {
		own := slices.Contains(r.leaves, t.leaves[host])
		n := len(r.children) + len(r.leaves)
		if own {
			n-- // the dead worker's own sum, lost
		}
		for _, c := range r.children {
			c.parent = r.parent
		}
		for _, l := range r.leaves {
			l.parent = r.parent
		}
		if p := r.parent; p != nil {
			p.expect += n - 1
			p.holed = p.holed || own || r.holed
			s.q.schedule(s.now, func() { s.flushReducer(t, p) })
		}
	}
}
