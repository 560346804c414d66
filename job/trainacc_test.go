package job

import (
	"testing"

	"github.com/dpcnn/dpcnn/dataset"
)

// The label of the training accuracy names what the step's forward pass
// ran with: the deep net's dropout, augmentation, both or neither.
func TestTrainAccuracyConditions(t *testing.T) {
	cases := []struct {
		spec Spec
		want string
	}{
		{Spec{Network: "deep"}, "dropout on"},
		{Spec{Network: "simple"}, ""},
		{Spec{Network: "lenet", Augment: dataset.Augment{RotateDeg: 10}}, "augmented"},
		{Spec{Network: "deep", Augment: dataset.Augment{ShiftPx: 2}}, "dropout on, augmented"},
		{Spec{Network: "no such net"}, ""},
	}
	for _, c := range cases {
		if got := c.spec.WithDefaults().TrainAccuracyConditions(); got != c.want {
			t.Errorf("%s with %+v: %q, want %q", c.spec.Network, c.spec.Augment, got, c.want)
		}
	}
}
