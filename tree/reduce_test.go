package tree

import (
	"math"
	"slices"
	"testing"

	"github.com/dpcnn/dpcnn/philox"
)

func TestReduceSubtreeAnyCover(t *testing.T) {
	s := philox.NewStream(7, 0x7ee, 0, 0)
	draw := uint32(0)
	next := func(n int) int { draw++; return int(s.Uint32(draw) % uint32(n)) }
	const width = 16
	for trial := range 300 {
		L := 1 + next(40)
		leaves := make([][]float32, L)
		for i := range leaves {
			leaves[i] = make([]float32, width)
			for j := range leaves[i] {
				// Mixed magnitudes, so that a different order of
				// additions would show in the bits.
				leaves[i][j] = float32(next(2000)-1000) * float32(math.Pow(10, float64(next(12)-6)))
			}
		}
		want := cloneLeaves(leaves)
		ReduceTree(want)

		var cover []Subtree
		for lo := 0; lo < L; {
			hi := lo + 1 + next(L-lo)
			cover = SplitSubtrees(cover, lo, hi, L)
			lo = hi
		}
		roots := make([][]float32, L)
		for _, st := range cover {
			if !st.IsNode(L) {
				t.Fatalf("trial %d: SplitSubtrees gave %v, not a node of %d leaves", trial, st, L)
			}
			roots[st.Lo] = ReduceSubtree(cloneLeaves(leaves[st.Lo:st.Hi]))
		}
		ReduceTree(roots)
		if !slices.Equal(roots[0], want[0]) {
			t.Fatalf("trial %d: %d leaves, cover %v: sum %v, whole tree %v", trial, L, cover, roots[0][:3], want[0][:3])
		}
	}
}

// ReduceLosses adds along ReduceTree's tree.
func TestReduceLosses(t *testing.T) {
	big, one := 1e17, 1.0
	losses := []float64{big, one, -big, one, 0.5}
	if got, want := ReduceLosses(losses), ((big+one)+(-big+one))+0.5; got != want || got == (((big+one)-big)+one)+0.5 {
		t.Fatalf("ReduceLosses = %v, want %v", got, want)
	}
}

func cloneLeaves(leaves [][]float32) [][]float32 {
	out := make([][]float32, len(leaves))
	for i, l := range leaves {
		out[i] = slices.Clone(l)
	}
	return out
}

func TestSplitSubtrees(t *testing.T) {
	cases := []struct {
		lo, hi, leaves int
		want           []Subtree
	}{
		{0, 5, 5, []Subtree{{0, 5}}},
		{0, 8, 8, []Subtree{{0, 8}}},
		{0, 3, 8, []Subtree{{0, 2}, {2, 3}}},
		{3, 8, 8, []Subtree{{3, 4}, {4, 8}}},
		{4, 7, 7, []Subtree{{4, 7}}},
		{5, 7, 7, []Subtree{{5, 6}, {6, 7}}},
		{1, 7, 12, []Subtree{{1, 2}, {2, 4}, {4, 6}, {6, 7}}},
		{2, 2, 4, nil},
	}
	for _, c := range cases {
		if got := SplitSubtrees(nil, c.lo, c.hi, c.leaves); !slices.Equal(got, c.want) {
			t.Errorf("SplitSubtrees(%d, %d, %d) = %v, want %v", c.lo, c.hi, c.leaves, got, c.want)
		}
	}
	for _, n := range []Subtree{{0, 5}, {4, 5}, {0, 4}, {2, 4}, {3, 4}} {
		if !n.IsNode(5) {
			t.Errorf("%v is not a node of 5 leaves", n)
		}
	}
	for _, n := range []Subtree{{1, 3}, {2, 5}, {0, 3}, {4, 6}, {-1, 0}, {3, 3}, {3, 5}} {
		if n.IsNode(5) {
			t.Errorf("%v is a node of 5 leaves", n)
		}
	}
}

func TestReduceTreeOrder(t *testing.T) {
	// Five leaves: ((l0+l1)+(l2+l3))+l4, exactly.
	leaves := [][]float32{{1e8}, {1}, {-1e8}, {1}, {0.5}}
	ReduceTree(leaves)
	want := (float32(1e8) + 1) + (float32(-1e8) + 1) + 0.5
	if leaves[0][0] != want {
		t.Fatalf("ReduceTree = %v, want %v", leaves[0][0], want)
	}
}
