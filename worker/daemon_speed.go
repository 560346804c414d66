package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/tree"
)

// Shape of the start-up benchmark: micro-batches of speedBatch blank
// images through the deep network, forward and backward, for at least
// speedMinTime and at most speedMaxRounds rounds after one warm-up round.
const (
	speedBatch     = 16
	speedMinTime   = 200 * time.Millisecond
	speedMaxRounds = 8
)

// MeasureSpeed measures the training throughput of b, in images per
// second, on micro-batches of the built-in deep network: the figure a
// worker joins with, until the coordinator has timed its results. It
// takes a fraction of a second on a CPU backend.
func MeasureSpeed(b kernels.Backend[float32]) (float64, error) {
	spec := job.Spec{Network: "deep", Batch: speedBatch, Steps: 1}.WithDefaults()
	set, err := blankMNIST(speedBatch)
	if err != nil {
		return 0, err
	}
	c, err := NewComputer(spec, b, set, 1)
	if err != nil {
		return 0, fmt.Errorf("worker: measure speed: %w", err)
	}
	defer c.Close()
	idx := make([]int32, speedBatch)
	for i := range idx {
		idx[i] = int32(i)
	}
	leaves := [][]float32{make([]float32, c.ParamCount())}
	losses := make([]float64, 1)
	round := func(step int64) error {
		_, _, _, err := tree.ComputeSubtree(context.Background(), c, []MicroBatch{{Step: step, Indices: idx}}, leaves, losses)
		return err
	}
	if err := round(0); err != nil {
		return 0, fmt.Errorf("worker: measure speed: %w", err)
	}
	start := time.Now()
	rounds := 0
	for rounds < speedMaxRounds && (rounds == 0 || time.Since(start) < speedMinTime) {
		if err := round(int64(rounds + 1)); err != nil {
			return 0, fmt.Errorf("worker: measure speed: %w", err)
		}
		rounds++
	}
	return float64(rounds*speedBatch) / time.Since(start).Seconds(), nil
}

// blankMNIST is a set of n blank 28×28 images labelled 0: timing needs the
// shapes, not the pixels.
func blankMNIST(n int) (*dataset.Set, error) {
	const side = 28
	images := &dataset.Images{N: n, Rows: side, Cols: side, Pixels: make([]uint8, n*side*side)}
	return dataset.NewSet("benchmark", images, make([]uint8, n), dataset.MNISTClasses)
}
