package tree

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// Summing a step along a planned tree of reducers gives the star's bits:
// for step sizes of awkward leaf counts, random ways the leaves were
// given out, and fan-outs 2 to 9; every group adds at most the fan-out,
// its pieces make its node, and at most the fan-out reach the coordinator.
func TestPlanReductionKeepsTheBits(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	const width = 17
	for _, leaves := range []int{1, 2, 3, 7, 16, 37, 64, 100, 255} {
		grads := make([][]float32, leaves)
		for i := range grads {
			grads[i] = make([]float32, width)
			for j := range grads[i] {
				grads[i][j] = float32(r.NormFloat64() * math.Pow(10, float64(r.IntN(7)-3)))
			}
		}
		star := ReduceSubtree(cloneAll(grads))
		for trial := range 6 {
			parts := randomSplit(r, 0, leaves, leaves)
			if trial == 0 {
				parts = SplitSubtrees(nil, 0, leaves, leaves)
			}
			r.Shuffle(len(parts), func(i, j int) { parts[i], parts[j] = parts[j], parts[i] })
			for fan := 2; fan <= 9; fan++ {
				plan, err := PlanReduction(parts, leaves, fan)
				if err != nil {
					t.Fatalf("%d leaves, %v, fan-out %d: %v", leaves, parts, fan, err)
				}
				got := sumAlong(t, plan, parts, grads, leaves, fan)
				if !slices.EqualFunc(got, star, func(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) }) {
					t.Fatalf("%d leaves, %v, fan-out %d: not the star's bits", leaves, parts, fan)
				}
				if top := plan.Top(); top > fan {
					t.Fatalf("%d leaves, fan-out %d: %d sums reach the coordinator", leaves, fan, top)
				}
			}
		}
	}
}

// sumAlong reduces the parts' sums group by group as reducers would (the
// children of each group gathered from the plan, added with ReducePieces),
// then as the coordinator does: the sums that reach it at their first
// leaves, and ReduceTree.
func sumAlong(t *testing.T, plan ReductionPlan, parts []Subtree, grads [][]float32, leaves, fan int) []float32 {
	t.Helper()
	got := make([][]Piece, len(plan.Groups))
	var top []Piece
	put := func(g int, p Piece) {
		if g < 0 {
			top = append(top, p)
		} else {
			got[g] = append(got[g], p)
		}
	}
	for i, p := range parts {
		put(plan.PartGroup[i], Piece{Leaves: p, Sum: ReduceSubtree(cloneAll(grads[p.Lo:p.Hi]))})
	}
	// Children come before parents only bottom up: run the groups from
	// the highest index (build appends parents first).
	for g := len(plan.Groups) - 1; g >= 0; g-- {
		grp := plan.Groups[g]
		ps := got[g]
		if len(ps) != grp.Pieces || len(ps) > fan {
			t.Fatalf("group %d %v waits for %d pieces and got %d (fan-out %d)", g, grp.Leaves, grp.Pieces, len(ps), fan)
		}
		slices.SortFunc(ps, func(a, b Piece) int { return a.Leaves.Lo - b.Leaves.Lo })
		sum, err := ReducePieces(grp.Leaves, ps, leaves, func() []float32 { return make([]float32, len(grads[0])) })
		if err != nil {
			t.Fatalf("group %d: %v", g, err)
		}
		put(grp.Parent, Piece{Leaves: grp.Leaves, Sum: sum})
	}
	at := make([][]float32, leaves)
	for _, p := range top {
		at[p.Leaves.Lo] = slices.Clone(p.Sum)
	}
	ReduceTree(at)
	return at[0]
}

// A plan needs parts that are nodes and cover the step, and a fan-out of
// two at least; it says what is wrong.
func TestPlanReductionRefusesBadParts(t *testing.T) {
	for _, c := range []struct {
		parts  []Subtree
		leaves int
		fan    int
		want   string
	}{
		{[]Subtree{{0, 2}, {2, 4}}, 4, 1, "fan-out of 1"},
		{[]Subtree{{0, 2}}, 4, 2, "cover [0, 2) of 4"},
		{[]Subtree{{0, 2}, {1, 4}}, 4, 2, "not the node that follows leaf 2"},
		{[]Subtree{{0, 3}, {3, 4}}, 4, 2, "not the node"},
	} {
		_, err := PlanReduction(c.parts, c.leaves, c.fan)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v of %d, fan-out %d: %v, want %q", c.parts, c.leaves, c.fan, err, c.want)
		}
	}
}

// With equal parts, the plan is the balanced tree a reader expects: 64
// workers at a fan-out of 8 make 8 groups of 8, whose 8 sums reach the
// coordinator; 8 workers need no reducer.
func TestPlanReductionShape(t *testing.T) {
	plan, err := PlanReduction(singles(64), 64, 8)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Groups) != 8 || plan.Top() != 8 {
		t.Fatalf("64 parts, fan-out 8: %d groups, %d at the top; want 8 and 8", len(plan.Groups), plan.Top())
	}
	for _, g := range plan.Groups {
		if g.Pieces != 8 || g.Level != 0 || len(g.Parts) != 8 {
			t.Fatalf("group %+v: want 8 pieces of workers", g)
		}
	}
	plan, _ = PlanReduction(singles(8), 8, 8)
	if len(plan.Groups) != 0 || plan.Top() != 8 {
		t.Fatalf("8 parts, fan-out 8: %d groups; want none", len(plan.Groups))
	}
	plan, _ = PlanReduction(singles(512), 512, 8)
	if plan.Top() != 8 || len(plan.Groups) != 8+64 {
		t.Fatalf("512 parts, fan-out 8: %d groups, %d at the top; want 72 and 8", len(plan.Groups), plan.Top())
	}
}

// singles gives out each of n leaves on its own.
func singles(n int) []Subtree {
	out := make([]Subtree, n)
	for i := range out {
		out[i] = Subtree{i, i + 1}
	}
	return out
}
