// Package philox implements the Philox4x32-10 counter-based random number
// generator (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
// SC'11).
//
// A counter-based generator has no state: the n-th number of a stream is a
// pure
// function of (key, counter). That is what makes training deterministic
// across
// any number of workers: a dropout mask or an augmentation is keyed by
// (seed, step or epoch, layer, sample index), so whichever worker — CPU or
// GPU —
// computes a sample draws exactly the same numbers for it. The same function
// is
// written in CUDA C for the GPU backend; both must agree bit for bit.
//
// It imports nothing of this module: the kernels and the data set draw from
// it.
package philox
