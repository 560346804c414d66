package tree

import (
	"fmt"
	"slices"
)

// Group is a reducer's part in a step's tree: it waits for Pieces sums,
// consecutive nodes that together make the node Leaves, adds them with
// ReducePieces and passes the sum up, to the group Parent (an index into
// ReductionPlan.Groups) or, when Parent is −1, to the coordinator.
type Group struct {
	Leaves Subtree
	Parent int
	Pieces int
	// Level is 0 for a group that adds workers' results only, and one
	// more than its highest child group's otherwise.
	Level int
	// Parts are the indices (into the planned parts) of the workers'
	// results in the group's subtree, in leaf order.
	Parts []int
}

// ReductionPlan is where the sums of one step go: a tree of reducer groups
// over the workers' results, each adding at most a fan-out of sums.
type ReductionPlan struct {
	Groups []Group
	// PartGroup[i] is the group part i's result goes to, or −1 for the
	// coordinator.
	PartGroup []int
}

// Top lists the sums that reach the coordinator: how many messages it
// receives a step.
func (p ReductionPlan) Top() int {
	n := 0
	for _, g := range p.PartGroup {
		if g < 0 {
			n++
		}
	}
	for _, g := range p.Groups {
		if g.Parent < 0 {
			n++
		}
	}
	return n
}

// PlanReduction plans a tree of reducers over parts, the subtrees a step's
// leaves were given out in (nodes of the tree over leaves leaves, in any
// order, that cover the leaves exactly), in which no group adds more than
// fanOut sums and at most fanOut sums reach the coordinator. Every group's
// sums make one node of the step's tree, so adding them (ReducePieces)
// forms exactly the partial sum the coordinator would have formed there:
// the bits are those of the star. The nodes are split top down, always
// the one holding the most parts, while the level stays within fanOut.
func PlanReduction(parts []Subtree, leaves, fanOut int) (ReductionPlan, error) {
	if fanOut < 2 {
		return ReductionPlan{}, fmt.Errorf("tree: a fan-out of %d: a reducer adds at least 2 sums", fanOut)
	}
	order := make([]int, len(parts))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return parts[a].Lo - parts[b].Lo })
	at := 0
	for _, i := range order {
		p := parts[i]
		if p.Lo != at || !p.IsNode(leaves) {
			return ReductionPlan{}, fmt.Errorf("tree: part %d, %v: not the node that follows leaf %d of %d", i, p, at, leaves)
		}
		at = p.Hi
	}
	if at != leaves || leaves == 0 {
		return ReductionPlan{}, fmt.Errorf("tree: the parts cover [0, %d) of %d leaves", at, leaves)
	}
	pl := &planner{parts: parts, order: order, plan: ReductionPlan{PartGroup: make([]int, len(parts))}}
	for _, n := range pl.split(Subtree{0, leaves}, fanOut) {
		pl.build(n, -1, fanOut)
	}
	return pl.plan, nil
}

type planner struct {
	parts []Subtree
	order []int // parts' indices by their first leaf
	plan  ReductionPlan
}

// inside returns the indices (in leaf order) of the parts inside n.
func (p *planner) inside(n Subtree) []int {
	lo, _ := slices.BinarySearchFunc(p.order, n.Lo, func(i, lo int) int { return p.parts[i].Lo - lo })
	hi := lo
	for hi < len(p.order) && p.parts[p.order[hi]].Hi <= n.Hi {
		hi++
	}
	return p.order[lo:hi]
}

// halves splits a node covered by two parts or more into its two halves
// of the tree (the right one ragged at the tree's end).
func halves(n Subtree) (Subtree, Subtree) {
	span := 1
	for span < n.Len() {
		span *= 2
	}
	mid := n.Lo + span/2
	return Subtree{n.Lo, mid}, Subtree{mid, n.Hi}
}

// split cuts node n into at most fanOut consecutive nodes, splitting the
// one that holds the most parts while another fits.
func (p *planner) split(n Subtree, fanOut int) []Subtree {
	nodes := []Subtree{n}
	for len(nodes) < fanOut {
		best, most := -1, 1
		for i, m := range nodes {
			if k := len(p.inside(m)); k > most {
				best, most = i, k
			}
		}
		if best < 0 {
			break // every node is one part
		}
		l, r := halves(nodes[best])
		nodes = slices.Replace(nodes, best, best+1, l, r)
	}
	return nodes
}

// build places node n under group parent: a part's result goes there; a
// node of several parts becomes a group of its own.
func (p *planner) build(n Subtree, parent, fanOut int) int {
	in := p.inside(n)
	if len(in) == 1 {
		p.plan.PartGroup[in[0]] = parent
		return -1
	}
	g := len(p.plan.Groups)
	p.plan.Groups = append(p.plan.Groups, Group{Leaves: n, Parent: parent, Parts: slices.Clone(in)})
	kids := p.split(n, fanOut)
	p.plan.Groups[g].Pieces = len(kids)
	level := 0
	for _, k := range kids {
		if c := p.build(k, g, fanOut); c >= 0 {
			level = max(level, p.plan.Groups[c].Level+1)
		}
	}
	p.plan.Groups[g].Level = level
	return g
}
