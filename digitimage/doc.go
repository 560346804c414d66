// Package digitimage turns a picture of one handwritten digit — a PNG or a
// JPEG of any size, light ink on dark or dark ink on light — into the 28×28
// grey image an MNIST network expects. That is its one job.
//
// # The procedure
//
// It follows what LeCun, Cortes and Burges did to NIST's digits to make
// MNIST:
//
//  1. Grey: each pixel's luminance (Rec. 601: 0.299 R + 0.587 G + 0.114 B),
//     the picture composited over white. When the picture's border is mostly
//     transparent, the ink is the opacity instead, whatever its colour.
//  2. Polarity: MNIST is light ink (255) on a dark background (0). When the
//     median of the outer ring of pixels is light, the picture is inverted.
//  3. Contrast: the ring's median is the background level and the strongest
//     pixel full ink; values are stretched between the two, and what stays
//     below NoiseFloor of that range (paper texture, JPEG noise) is set to
//     background. A picture with no pixel ContrastMin away from its
//     background has no ink: ErrNoInk.
//  4. Size: the ink is scaled, keeping its aspect ratio, so that the longer
//     side of its bounding box is BoxSize (20) pixels. The box is that of
//     the pixels from BoxThreshold of the range, so that JPEG's ringing
//     around the strokes does not count in it. Catmull-Rom resampling
//     filters as it shrinks (anti-aliasing, which is where MNIST's grey
//     levels came from) and interpolates as it grows. The result is
//     stretched again so that its strongest pixel is full ink: every MNIST
//     digit reaches 250 or more.
//  5. Place: the box is put in a Size×Size (28×28) field so that its centre
//     of mass, in pixel indices, lands on the pixel nearest (14, 14), moved
//     by whole pixels as in MNIST (whose digits' centres of mass lie within
//     half a pixel of (14, 14)). Ink pushed past the field's edge is cut.
//
// An MNIST digit written out as an image comes back unchanged but for its
// faintest pixels (below NoiseFloor) and the stretch of its strongest to
// 255, as its box is already 20 pixels and its centre of mass already
// within half a pixel of (14, 14).
//
// # Output
//
// Digit.Pixels are bytes in MNIST's IDX layout (row-major, 0 the
// background, 255 full ink), so that the network input is made from them
// exactly as from the training data (dataset.ToFloat: x/255); MNIST's own
// pixels are 8-bit, so nothing finer is lost.
//
// # Imports
//
// The standard library (image/png and image/jpeg decode; the formats are
// sniffed here, so other decoders registered in the program are not used)
// and golang.org/x/image/draw for the resampling. No package of this module:
// it knows nothing of networks or data sets.
package digitimage
