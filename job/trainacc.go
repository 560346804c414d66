package job

import "github.com/dpcnn/dpcnn/model"

// TrainAccuracyConditions says under what the training accuracy of a step
// is measured: "dropout on", "augmented", both joined by ", ", or "" when
// the step sees the plain images through the inference network. The step's
// own forward pass is what it counts, so with the book's dropout (and
// augmentation) it sits far below the test accuracy; a reader who is not
// told so takes "acc 0.52" beside a test accuracy of 0.97 for a bug.
func (s Spec) TrainAccuracyConditions() string {
	var dropout bool
	if m, err := s.Model(); err == nil {
		for _, l := range m.Layers {
			dropout = dropout || l.Type == model.LayerDropout && l.Ratio > 0
		}
	}
	switch aug := s.Augment.Enabled(); {
	case dropout && aug:
		return "dropout on, augmented"
	case dropout:
		return "dropout on"
	case aug:
		return "augmented"
	}
	return ""
}
