package coordinator

import (
	"context"

	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/worker"
)

// LocalWorkers computes everything in this process with one worker.Computer,
// micro-batch after micro-batch; its backend uses all the cores it was given.
type LocalWorkers struct {
	Computer *worker.Computer
	Test     *dataset.Set
}

// ComputeStep implements Workers.
func (l *LocalWorkers) ComputeStep(ctx context.Context, params []float32, mbs []worker.MicroBatch, leaves [][]float32) (float64, int, error) {
	if err := l.Computer.SetParams(params); err != nil {
		return 0, 0, err
	}
	var lossSum float64
	var correct int
	for i, mb := range mbs {
		if err := ctx.Err(); err != nil {
			return 0, 0, err
		}
		loss, c, err := l.Computer.Gradients(mb, leaves[i])
		if err != nil {
			return 0, 0, err
		}
		lossSum += loss
		correct += c
	}
	return lossSum, correct, nil
}

// Evaluate implements Workers.
func (l *LocalWorkers) Evaluate(ctx context.Context, params []float32, from, to int) (int, error) {
	if err := l.Computer.SetParams(params); err != nil {
		return 0, err
	}
	return l.Computer.Evaluate(l.Test, from, to)
}
