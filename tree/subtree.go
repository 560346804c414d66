package tree

import (
	"context"
	"fmt"
)

// MicroBatch is one unit of work, a leaf of the tree: the dataset indices of
// its samples, and the epoch and step they belong to (augmentation is keyed
// by the epoch, dropout by the step). Both count from 0; messages for people
// name step s as "step s+1", as the coordinator does.
type MicroBatch struct {
	Epoch   int64
	Step    int64
	Indices []int32
}

// Replica is a network replica (a worker.Computer) that computes the
// gradient sum of one micro-batch with the parameters it was given.
type Replica interface {
	// Gradients computes the summed gradient of mb's loss into grad and
	// returns the summed loss and the number of correctly classified
	// samples.
	Gradients(mb MicroBatch, grad []float32) (lossSum float64, correct int, err error)
}

// ComputeSubtree is a worker's side of an Assign. With c's parameters set
// to the assignment's, it computes the gradient sum of each micro-batch
// mbs[i] into leaves[i] and its loss sum into losses[i], reduces the
// gradients with ReduceSubtree, and returns what GradientsReceived carries
// back: the subtree's gradient sum (leaves[0]), the leaves' loss sums
// (losses[:len(mbs)]) and the correct count. leaves and losses must have
// at least len(mbs) elements, each leaf as long as c's gradient.
func ComputeSubtree(ctx context.Context, c Replica, mbs []MicroBatch, leaves [][]float32, losses []float64) (grad []float32, leafLosses []float64, correct int, err error) {
	n := len(mbs)
	if n == 0 || n > len(leaves) || n > len(losses) {
		return nil, nil, 0, fmt.Errorf("tree: subtree of %d micro-batches for %d leaf buffers", n, min(len(leaves), len(losses)))
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
