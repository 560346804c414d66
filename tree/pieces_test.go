package tree

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// A node's sum formed from any split of it into received pieces is the
// partial sum ReduceTree forms there, bit for bit: for trees of awkward
// sizes (ragged last nodes), every node, and random splits into
// sub-nodes; and the pieces are left as they were.
func TestReducePiecesMatchesReduceTree(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const width = 33
	for _, leaves := range []int{1, 2, 3, 5, 8, 13, 21, 32, 37} {
		grads := make([][]float32, leaves)
		for i := range grads {
			grads[i] = make([]float32, width)
			for j := range grads[i] {
				grads[i][j] = float32(r.NormFloat64() * math.Pow(10, float64(r.IntN(7)-3)))
			}
		}
		for lo := 0; lo < leaves; lo++ {
			for hi := lo + 1; hi <= leaves; hi++ {
				node := Subtree{lo, hi}
				if !node.IsNode(leaves) {
					continue
				}
				// The node's sum as ReduceTree forms it: reduce the node's
				// leaves alone, relative positions keep the pairing.
				want := ReduceSubtree(cloneAll(grads[lo:hi]))
				for trial := range 4 {
					var pieces []Piece
					var parts []Subtree
					if trial == 0 {
						parts = []Subtree{node}
					} else {
						parts = randomSplit(r, lo, hi, leaves)
					}
					for _, p := range parts {
						pieces = append(pieces, Piece{Leaves: p, Sum: ReduceSubtree(cloneAll(grads[p.Lo:p.Hi]))})
					}
					before := make([][]float32, len(pieces))
					for i, p := range pieces {
						before[i] = slices.Clone(p.Sum)
					}
					got, err := ReducePieces(node, pieces, leaves, func() []float32 { return make([]float32, width) })
					if err != nil {
						t.Fatalf("%d leaves, %v from %v: %v", leaves, node, parts, err)
					}
					if !slices.EqualFunc(got, want, func(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) }) {
						t.Fatalf("%d leaves, %v from %v: not ReduceTree's bits", leaves, node, parts)
					}
					for i, p := range pieces {
						if !slices.Equal(p.Sum, before[i]) {
							t.Fatalf("%d leaves, %v: piece %d was written to", leaves, node, i)
						}
					}
				}
			}
		}
	}
}

func cloneAll(vs [][]float32) [][]float32 {
	out := make([][]float32, len(vs))
	for i, v := range vs {
		out[i] = slices.Clone(v)
	}
	return out
}

// randomSplit cuts [lo, hi) into consecutive nodes, each a node of the
// tree, chosen at random among the splits SplitSubtrees allows.
func randomSplit(r *rand.Rand, lo, hi, leaves int) []Subtree {
	var out []Subtree
	for lo < hi {
		// The nodes that start at lo and fit, from a leaf up.
		var fits []Subtree
		for span := 1; lo%span == 0 && lo+1 <= hi; span *= 2 {
			s := Subtree{lo, min(lo+span, leaves)}
			if s.Hi > hi {
				break
			}
			if s.IsNode(leaves) {
				fits = append(fits, s)
			}
			if s.Hi == leaves {
				break
			}
		}
		s := fits[r.IntN(len(fits))]
		out = append(out, s)
		lo = s.Hi
	}
	return out
}

func TestReducePiecesRefusesBadPieces(t *testing.T) {
	v := func() []float32 { return make([]float32, 2) }
	for _, tc := range []struct {
		node   Subtree
		pieces []Subtree
		want   string
	}{
		{Subtree{0, 3}, []Subtree{{0, 2}, {2, 3}}, "not a node"},
		{Subtree{0, 4}, []Subtree{{0, 2}}, "cover [0, 2)"},
		{Subtree{0, 4}, []Subtree{{0, 2}, {3, 4}}, "follows leaf 2"},
		{Subtree{0, 4}, []Subtree{{0, 1}, {1, 3}}, "follows leaf 1"},
	} {
		var pieces []Piece
		for _, p := range tc.pieces {
			pieces = append(pieces, Piece{Leaves: p, Sum: v()})
		}
		if _, err := ReducePieces(tc.node, pieces, 8, v); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v from %v: %v; want an error saying %q", tc.node, tc.pieces, err, tc.want)
		}
	}
}
