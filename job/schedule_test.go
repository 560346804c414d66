package job

import (
	"strings"
	"testing"
)

// TestSchedule holds the one plan of a job's steps: an epoch is the samples
// drawn from over the batch (the partial batch dropped), the job Epochs of
// them or Steps when that comes first, and a batch no epoch fits is an
// error.
func TestSchedule(t *testing.T) {
	cases := []struct {
		name                  string
		epochs, batch, limit  int
		steps                 int64
		trainLen              int
		perEpoch, total, ends int64
	}{
		{"epochs", 3, 100, 0, 0, 60000, 600, 1800, 3},
		{"partial batch dropped", 2, 7, 0, 0, 50, 7, 14, 2},
		{"train limit", 2, 10, 35, 0, 60000, 3, 6, 2},
		{"limit above the data", 1, 10, 90, 0, 40, 4, 4, 1},
		{"steps first", 5, 10, 0, 7, 40, 4, 7, 2},
		{"steps beyond the epochs", 1, 10, 0, 9, 40, 4, 4, 1},
		{"steps alone", 0, 10, 0, 9, 40, 4, 9, 3},
	}
	for _, c := range cases {
		s := Spec{Epochs: c.epochs, Batch: c.batch, TrainLimit: c.limit, Steps: c.steps}
		got, err := s.Schedule(c.trainLen)
		if err != nil || got.PerEpoch != c.perEpoch || got.Total != c.total || got.Epochs() != c.ends {
			t.Errorf("%s: Schedule(%d) = %+v (%d epochs), %v; want %d per epoch, %d in all, %d epochs",
				c.name, c.trainLen, got, got.Epochs(), err, c.perEpoch, c.total, c.ends)
		}
	}
	for _, c := range []struct {
		s        Spec
		trainLen int
		want     string
	}{
		{Spec{Epochs: 1, Batch: 100}, 60, "batch 100 exceeds the 60 training samples"},
		{Spec{Epochs: 1, Batch: 50, TrainLimit: 40}, 60, "batch 50 exceeds the 40 training samples"},
		{Spec{Epochs: 1, Batch: 10}, 0, "no step fits"},
		{Spec{Epochs: 1}, 60, "no step fits"},
	} {
		if _, err := c.s.Schedule(c.trainLen); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v.Schedule(%d) = %v, want an error saying %q", c.s, c.trainLen, err, c.want)
		}
	}
}
