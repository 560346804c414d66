package worker

import (
	"context"
	"fmt"
)

// ComputeSubtree is a worker's side of an Assign. With c's parameters set
// to the assignment's, it computes the gradient sum of each micro-batch
// mbs[i] into leaves[i] and its loss sum into losses[i], reduces the
// gradients with ReduceSubtree, and returns what GradientsReceived carries
// back: the subtree's gradient sum (leaves[0]), the leaves' loss sums
// (losses[:len(mbs)]) and the correct count. leaves and losses must have
// at least len(mbs) elements, each leaf c.ParamCount() long.
func ComputeSubtree(ctx context.Context, c *Computer, mbs []MicroBatch, leaves [][]float32, losses []float64) (grad []float32, leafLosses []float64, correct int, err error) {
	n := len(mbs)
	if n == 0 || n > len(leaves) || n > len(losses) {
		return nil, nil, 0, fmt.Errorf("worker: subtree of %d micro-batches for %d leaf buffers", n, min(len(leaves), len(losses)))
	}
	for i, mb := range mbs {
		if err := ctx.Err(); err != nil {
			return nil, nil, 0, err
		}
		loss, ok, err := c.Gradients(mb, leaves[i])
		if err != nil {
			return nil, nil, 0, err
		}
		losses[i] = loss
		correct += ok
	}
	return ReduceSubtree(leaves[:n]), losses[:n], correct, nil
}
