package dataset

import "fmt"

// Fill writes the network input of the samples indices to x, in NHWC layout
// (len(indices)×Rows×Cols×1, pixels scaled to [0, 1]), their labels to
// labels and their sample indices, widened, to samples (the key of their
// dropout masks). Each image is augmented by aug for the given seed and
// epoch, or only scaled when aug is not Enabled. labels or samples may be nil
// when not wanted.
//
// Fill works on one goroutine and allocates nothing for MNIST-sized images;
// callers that want parallelism split indices (the result of a sample does
// not depend on which call computed it). Indices must be samples of s;
// check those from outside the process with CheckIndices first.
func (s *Set) Fill(indices []int32, aug Augment, seed uint64, epoch int64, x []float32, labels []int32, samples []int64) {
	size := s.Rows * s.Cols
	if len(x) != len(indices)*size {
		panic(fmt.Sprintf("dataset: Fill: input buffer of %d for %d samples of %dx%d", len(x), len(indices), s.Rows, s.Cols))
	}
	if labels != nil && len(labels) != len(indices) {
		panic(fmt.Sprintf("dataset: Fill: %d labels for %d samples", len(labels), len(indices)))
	}
	if samples != nil && len(samples) != len(indices) {
		panic(fmt.Sprintf("dataset: Fill: %d sample indices for %d samples", len(samples), len(indices)))
	}
	enabled := aug.Enabled()
	for i, idx := range indices {
		if idx < 0 || int(idx) >= s.N {
			panic(fmt.Sprintf("dataset: Fill: index %d out of range [0, %d)", idx, s.N))
		}
		dst := x[i*size : (i+1)*size]
		src := s.Image(int(idx))
		if enabled {
			aug.Apply(dst, src, s.Rows, s.Cols, seed, epoch, int64(idx))
		} else {
			ToFloat(dst, src)
		}
		if labels != nil {
			labels[i] = int32(s.Labels[idx])
		}
		if samples != nil {
			samples[i] = int64(idx)
		}
	}
}
