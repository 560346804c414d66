// Package tree is the fixed pairwise reduction tree over a step's
// micro-batches: its aligned subtrees (the units of work), the order in
// which gradient and loss sums are added, and a worker's computation of one
// subtree. The training engine (package train) and the workers both use
// it, so that every sum is formed in the same order wherever it is
// computed.
//
// It imports nothing of this module: it knows gradients only as float32
// vectors and a network replica only through the Replica interface.
package tree
