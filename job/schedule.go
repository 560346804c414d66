package job

import (
	"fmt"

	"github.com/dpcnn/dpcnn/dataset"
)

// Schedule is the job's optimizer steps, in all and per epoch, as the
// training engine runs them, the coordinator reports them and cnnctl
// shows them.
type Schedule struct {
	// PerEpoch is the steps of one epoch: the training samples the job
	// draws from over the batch, the partial batch left over dropped (as
	// dataset.Plan cuts an epoch).
	PerEpoch int64
	// Total is the steps of the job: Epochs epochs, or Steps when that is
	// set and comes first.
	Total int64
}

// Epochs is the number of epochs the job's steps reach into (the last
// may be partial when Steps ends the job).
func (s Schedule) Epochs() int64 { return (s.Total + s.PerEpoch - 1) / s.PerEpoch }

// Schedule returns the job's steps on a training set of trainLen samples
// (before TrainLimit), or an error when no step fits: a batch larger than
// the samples the job draws from, or no samples at all. Call it on
// WithDefaults' result.
func (s Spec) Schedule(trainLen int) (Schedule, error) {
	n := s.TrainSamples(Data{TrainLen: trainLen})
	switch {
	case n < 1 || s.Batch < 1:
		return Schedule{}, fmt.Errorf("job: a batch of %d over %d training samples: no step fits", s.Batch, n)
	case s.Batch > n:
		return Schedule{}, fmt.Errorf("job: batch %d exceeds the %d training samples it draws from", s.Batch, n)
	}
	sc := Schedule{PerEpoch: int64(dataset.Plan{N: n, Batch: s.Batch}.StepsPerEpoch())}
	sc.Total = int64(s.Epochs) * sc.PerEpoch
	if s.Steps > 0 && (s.Epochs == 0 || s.Steps < sc.Total) {
		sc.Total = s.Steps
	}
	return sc, nil
}
