package tree

import (
	"fmt"
	"math/bits"
)

// ReduceTree sums leaves into leaves[0] along a fixed pairwise tree: at
// stride s = 1, 2, 4, … leaf i absorbs leaf i+s for every i that is a
// multiple of 2s. The order of every floating-point addition depends only on
// the number of leaves — never on which worker computed a leaf or when it
// arrived — so the sum, and with it the trained parameters, are bit-for-bit
// the same however the micro-batches were spread.
//
// A worker that computes a whole aligned subtree (a Subtree of the step)
// reduces it with ReduceSubtree and returns exactly the partial sum the tree
// would have formed at that node. The coordinator puts each subtree's sum at
// the subtree's first leaf and leaves the subtree's other leaves nil: a nil
// leaf has already been folded into its subtree's root, and ReduceTree
// skips it, finishing the tree exactly as if it had held every leaf.
func ReduceTree(leaves [][]float32) {
	for s := 1; s < len(leaves); s *= 2 {
		for i := 0; i+s < len(leaves); i += 2 * s {
			src := leaves[i+s]
			if src == nil {
				continue // inside a subtree reduced elsewhere
			}
			dst := leaves[i]
			if dst == nil {
				panic(fmt.Sprintf("tree: reduction tree: leaf %d is a subtree root but leaf %d is not", i+s, i))
			}
			for j := range dst {
				dst[j] += src[j]
			}
		}
	}
}

// ReduceSubtree is the worker's side of the reduction: it sums the leaves of
// one assigned subtree (leaves[i] is the gradient sum of the subtree's i-th
// micro-batch) into leaves[0] along the same tree as ReduceTree, and
// returns it.
func ReduceSubtree(leaves [][]float32) []float32 {
	if len(leaves) == 0 {
		panic("tree: ReduceSubtree of no leaves")
	}
	ReduceTree(leaves)
	return leaves[0]
}

// ReduceLosses sums the leaves' loss sums into losses[0] along the same
// tree, and returns it: the step's loss is the same however it was spread.
func ReduceLosses(losses []float64) float64 {
	for s := 1; s < len(losses); s *= 2 {
		for i := 0; i+s < len(losses); i += 2 * s {
			losses[i] += losses[i+s]
		}
	}
	return losses[0]
}

// Subtree is a node of the reduction tree over a step's L micro-batches
// (leaves): leaves [Lo, Hi) where, for the smallest power of two 2^k ≥
// Hi−Lo, Lo is a multiple of 2^k and Hi = min(Lo+2^k, L). These are the
// units of work a worker can reduce on its own with no change to the order
// of the additions.
type Subtree struct{ Lo, Hi int }

// Len is the number of micro-batches in the subtree.
func (s Subtree) Len() int { return s.Hi - s.Lo }

func (s Subtree) String() string { return fmt.Sprintf("[%d, %d)", s.Lo, s.Hi) }

// IsNode reports whether s is a node of the tree over leaves leaves.
func (s Subtree) IsNode(leaves int) bool {
	n := s.Hi - s.Lo
	if s.Lo < 0 || n < 1 || s.Hi > leaves {
		return false
	}
	span := 1 << bits.Len(uint(n-1)) // smallest power of two ≥ n
	return s.Lo%span == 0 && (n == span || s.Hi == leaves)
}

// SplitSubtrees appends to dst the aligned subtrees of the tree over leaves
// leaves that cover [lo, hi) in order, taking at each position the largest
// subtree that starts there and fits, and returns it.
func SplitSubtrees(dst []Subtree, lo, hi, leaves int) []Subtree {
	if lo < 0 || lo > hi || hi > leaves {
		panic(fmt.Sprintf("tree: SplitSubtrees [%d, %d) of %d leaves", lo, hi, leaves))
	}
	for lo < hi {
		if hi == leaves && (Subtree{lo, hi}).IsNode(leaves) {
			return append(dst, Subtree{lo, hi}) // the ragged last node
		}
		span := 1
		for lo%(2*span) == 0 && lo+2*span <= hi {
			span *= 2
		}
		dst = append(dst, Subtree{lo, lo + span})
		lo += span
	}
	return dst
}
