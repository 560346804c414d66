package coordinator

import (
	"context"

	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/tree"
	"github.com/dpcnn/dpcnn/worker"
)

// LocalWorkers computes everything in this process with one worker.Computer,
// micro-batch after micro-batch; its backend uses all the cores it was given.
type LocalWorkers struct {
	Computer *worker.Computer
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
