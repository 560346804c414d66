package simulate

import (
	"time"

	"github.com/dpcnn/dpcnn/train"
)

// treeNode is a worker's place in one step's tree.
type treeNode struct {
	w        *simWorker
	a        train.Assign
	parent   *treeNode // nil: the coordinator
	children []*treeNode
	// waiting counts the sums this node still waits for to begin
	// arriving: its children's, or their children's once a child died.
	waiting int
	added   int           // sums received and added to its own
	maxLast time.Duration // the last byte of the latest of them
	own     bool          // its own gradient is computed and encoded
	results []train.GradientsReceived
	sent    bool
}

// sendTree sends a step's first assignments down a fixed FanOut-ary tree
// of their workers, in the engine's order: the coordinator sends to the
// first FanOut, the node at index i forwards to those at FanOut·(i+1) …
// FanOut·(i+1)+FanOut−1. A worker given two of them gets the second
// straight from the coordinator.
func (s *sim) sendTree(as []train.Assign, st *stepStats) {
	k := s.cfg.FanOut
	s.tree = map[*simWorker]*treeNode{}
	var nodes []*treeNode
	for _, a := range as {
		w := s.byID[a.Worker]
		if s.tree[w] != nil {
			s.sendDirect(a)
			continue
		}
		n := &treeNode{w: w, a: a}
		s.tree[w] = n
		nodes = append(nodes, n)
	}
	for i, n := range nodes {
		for c := k * (i + 1); c < k*(i+1)+k && c < len(nodes); c++ {
			n.children = append(n.children, nodes[c])
			nodes[c].parent = n
		}
		n.waiting = len(n.children)
	}
	for i := 0; i < k && i < len(nodes); i++ {
		n := nodes[i]
		ready := s.encode(st)
		s.q.schedule(ready, func() { s.down(n, &s.coord, ready, ready) })
	}
}

// down moves the parameters to n from the node that holds them from first
// (first chunk) to last (last byte), and on: n forwards them to its
// children as they arrive, and computes once they are all in.
func (s *sim) down(n *treeNode, from *port, first, last time.Duration) {
	if n.w.dead {
		return
	}
	fa, la := s.transfer(from, &n.w.port, first, last)
	for _, c := range n.children {
		s.q.schedule(fa, func() { s.down(c, &n.w.port, fa, la) })
	}
	s.q.schedule(la, func() {
		done, ok := s.compute(n.w, n.a)
		if !ok {
			return
		}
		s.q.schedule(done, func() {
			n.own = true
			n.results = append(n.results, s.result(n.a))
			s.up(n)
		})
	})
}

// up sends n's sum to its parent once its own gradient is ready and every
// sum it waits for has begun to arrive: the sum leaves as they are added,
// chunk by chunk, and its last byte after their last and after n has
// added them all.
func (s *sim) up(n *treeNode) {
	if n.sent || !n.own || n.waiting > 0 || n.w.dead {
		return
	}
	n.sent = true
	c := s.cfg.Costs
	chunkShare := float64(min(s.cfg.ChunkBytes, s.msgBytes)) / float64(s.msgBytes)
	last := max(s.now+time.Duration(n.added)*c.Reduce, n.maxLast+time.Duration(float64(c.Reduce)*chunkShare))
	if n.parent == nil {
		_, la := s.transfer(&n.w.port, &s.coord, s.now, last)
		s.q.schedule(la, func() { s.receive(la, n.results) })
		return
	}
	p := n.parent
	fa, la := s.transfer(&n.w.port, &p.w.port, s.now, last)
	s.q.schedule(fa, func() {
		if p.w.dead {
			// It died after this sum left: the sum is lost with it, and
			// the engine's deadlines give its work out again.
			return
		}
		p.waiting--
		p.added++
		p.maxLast = max(p.maxLast, la)
		p.results = append(p.results, n.results...)
		s.up(p)
	})
}

// reparent takes a node that died out of its step's tree: its children
// send their sums to its parent instead (the coordinator for a top node).
func (s *sim) reparent(n *treeNode) {
	for _, c := range n.children {
		c.parent = n.parent
	}
	if p := n.parent; p != nil {
		p.waiting += len(n.children) - 1
		s.q.schedule(s.now, func() { s.up(p) })
	}
	n.children = nil
}
