package train

import (
	"context"

	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/tree"
)

// Replica is the network replica LocalWorkers computes with: a
// worker.Computer, which this package knows only through its methods.
type Replica interface {
	tree.Replica
	// ParamCount is the length of the flat parameter and gradient
	// vectors.
	ParamCount() int
	// SetParams copies a flat parameter vector into the replica.
	SetParams(flat []float32) error
	// Evaluate classifies samples [from, to) of set in test mode and
	// returns how many it got right.
	Evaluate(set *dataset.Set, from, to int) (correct int, err error)
}

// LocalWorkers computes everything in this process with one Replica,
// micro-batch after micro-batch; its backend uses all the cores it was given.
type LocalWorkers struct {
	Computer Replica
	Test     *dataset.Set

	leaves [][]float32
	losses []float64
}

// Compute implements Workers.
func (l *LocalWorkers) Compute(ctx context.Context, a Assign) ([]float32, []float64, int, error) {
	if err := l.Computer.SetParams(a.Params); err != nil {
		return nil, nil, 0, err
	}
	for len(l.leaves) < len(a.Micro) {
		l.leaves = append(l.leaves, make([]float32, l.Computer.ParamCount()))
		l.losses = append(l.losses, 0)
	}
	return tree.ComputeSubtree(ctx, l.Computer, a.Micro, l.leaves, l.losses)
}

// Evaluate implements Workers.
func (l *LocalWorkers) Evaluate(ctx context.Context, params []float32, from, to int) (int, error) {
	if err := l.Computer.SetParams(params); err != nil {
		return 0, err
	}
	return l.Computer.Evaluate(l.Test, from, to)
}
