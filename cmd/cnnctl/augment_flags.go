package main

import (
	"github.com/spf13/pflag"

	"github.com/dpcnn/dpcnn/dataset"
)

func registerAugmentFlags(fs *pflag.FlagSet, a *dataset.Augment) {
	fs.Float64Var(&a.RotateDeg, "rotate", 0, "augment: rotate by up to ± this many degrees")
	fs.Float64Var(&a.ShiftPx, "shift", 0, "augment: shift by up to ± this many pixels on each axis")
	fs.IntVar(&a.CropPad, "crop-pad", 0, "augment: pad by this many pixels, then crop a random 28x28 window")
	fs.Float64Var(&a.Scale, "scale", 0, "augment: zoom by a factor in 1 ± this fraction")
	fs.BoolVar(&a.Flip, "flip", false, "augment: mirror left-right half the time (off by default: a mirrored digit is often no digit)")
	fs.Float64Var(&a.Elastic.Alpha, "elastic-alpha", 0, "augment: elastic distortion strength in pixels (Simard et al. used 34)")
	fs.Float64Var(&a.Elastic.Sigma, "elastic-sigma", 0, "augment: elastic distortion smoothing in pixels (Simard et al. used 4)")
}

// mergeAugmentFlags copies into dst the augmentation flags that were given
// explicitly, or all of them when there is no job file.
func mergeAugmentFlags(fs *pflag.FlagSet, all bool, dst *dataset.Augment, flags dataset.Augment) {
	set := func(name string) bool { return all || fs.Changed(name) }
	if set("rotate") {
		dst.RotateDeg = flags.RotateDeg
	}
	if set("shift") {
		dst.ShiftPx = flags.ShiftPx
	}
	if set("crop-pad") {
		dst.CropPad = flags.CropPad
	}
	if set("scale") {
		dst.Scale = flags.Scale
	}
	if set("flip") {
		dst.Flip = flags.Flip
	}
	if set("elastic-alpha") {
		dst.Elastic.Alpha = flags.Elastic.Alpha
	}
	if set("elastic-sigma") {
		dst.Elastic.Sigma = flags.Elastic.Sigma
	}
}
