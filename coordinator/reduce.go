package coordinator

// ReduceTree sums leaves into leaves[0] along a fixed pairwise tree: at
// stride s = 1, 2, 4, … leaf i absorbs leaf i+s for every i that is a
// multiple of 2s. The order of every floating-point addition depends only on
// the number of leaves — never on which worker computed a leaf or when it
// arrived — so the sum, and with it the trained parameters, are bit-for-bit
// the same however the micro-batches were spread. A worker that computes a
// whole aligned subtree (leaves i..i+2^k−1 with i a multiple of 2^k) and
// reduces it with ReduceTree returns exactly the partial sum the tree would
// have formed at that node.
func ReduceTree(leaves [][]float32) {
	for s := 1; s < len(leaves); s *= 2 {
		for i := 0; i+s < len(leaves); i += 2 * s {
			dst, src := leaves[i], leaves[i+s]
			for j := range dst {
				dst[j] += src[j]
			}
		}
	}
}
