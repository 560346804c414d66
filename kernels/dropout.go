package kernels

import "github.com/dpcnn/dpcnn/philox"

// DropoutStream is the counter-based stream from which the mask of one
// sample in one dropout layer at one step is drawn. Element j decides unit j.
// Every backend draws from exactly this stream (the CUDA kernel computes the
// same Philox blocks), so any worker gives a sample the same mask.
func DropoutStream(d DropoutParams, sample int64) philox.Stream {
	return philox.NewStream(d.Seed, uint32(d.Step), d.Layer, uint32(sample))
}

// DropoutKeep reports whether unit j survives, given element j of the
// sample's stream: kept when its 24-bit uniform is at least Ratio, so a unit
// is dropped with probability Ratio (the book's rand > ratio, up to the
// resolution of the draw).
func DropoutKeep(d DropoutParams, u uint32) bool {
	return philox.ToUniform32(u) >= float32(d.Ratio)
}

// DropoutScale is the multiplier of a kept unit in training: 1 in the book's
// form, 1/(1−Ratio) for inverted dropout.
func DropoutScale(d DropoutParams) float64 {
	if d.Inverted {
		return 1 / (1 - d.Ratio)
	}
	return 1
}

// DropoutTestScale is the multiplier of every unit at test time: 1−Ratio in
// the book's form, 1 for inverted dropout.
func DropoutTestScale(d DropoutParams) float64 {
	if d.Inverted {
		return 1
	}
	return 1 - d.Ratio
}

// FillDropoutMask writes the training-time multipliers of one sample's cols
// units to mask. It is the single definition of the mask that backends call
// (or, on a GPU, reproduce).
func FillDropoutMask[T Float](d DropoutParams, sample int64, mask []T) {
	s := DropoutStream(d, sample)
	keep := T(DropoutScale(d))
	for j0 := 0; j0 < len(mask); j0 += 4 {
		b := s.Block4(uint32(j0 / 4))
		for lane := 0; lane < 4 && j0+lane < len(mask); lane++ {
			if DropoutKeep(d, b[lane]) {
				mask[j0+lane] = keep
			} else {
				mask[j0+lane] = 0
			}
		}
	}
}
