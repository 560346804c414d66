package kernels

import "fmt"

// Float is the element type of tensors: float32 for training, float64 for
// gradient checks.
type Float interface{ ~float32 | ~float64 }

// ConvGeom describes a 2-D convolution over an NHWC batch: N images of H×W
// pixels with C channels, OC filters of KH×KW taps, the same stride and zero
// padding on both axes.
type ConvGeom struct {
	N, H, W, C int
	OC         int
	KH, KW     int
	Stride     int
	Pad        int
}

// OH is the output height.
func (g ConvGeom) OH() int { return (g.H+2*g.Pad-g.KH)/g.Stride + 1 }

// OW is the output width.
func (g ConvGeom) OW() int { return (g.W+2*g.Pad-g.KW)/g.Stride + 1 }

// InLen is the length of the input batch.
func (g ConvGeom) InLen() int { return g.N * g.H * g.W * g.C }

// OutLen is the length of the output batch.
func (g ConvGeom) OutLen() int { return g.N * g.OH() * g.OW() * g.OC }

// FilterLen is the number of filter weights (KH·KW·C·OC).
func (g ConvGeom) FilterLen() int { return g.KH * g.KW * g.C * g.OC }

// ColRows is the number of rows of the im2col matrix (one per output pixel
// of the whole batch) and ColCols its number of columns (one per filter tap
// and input channel).
func (g ConvGeom) ColRows() int { return g.N * g.OH() * g.OW() }

// ColCols is KH·KW·C.
func (g ConvGeom) ColCols() int { return g.KH * g.KW * g.C }

// Validate reports a geometry that cannot be computed.
func (g ConvGeom) Validate() error {
	switch {
	case g.N < 1 || g.H < 1 || g.W < 1 || g.C < 1:
		return fmt.Errorf("kernels: conv input %dx%dx%dx%d: every size must be at least 1", g.N, g.H, g.W, g.C)
	case g.OC < 1 || g.KH < 1 || g.KW < 1:
		return fmt.Errorf("kernels: conv filters %dx%dx%d: every size must be at least 1", g.OC, g.KH, g.KW)
	case g.Stride < 1:
		return fmt.Errorf("kernels: conv stride %d: must be at least 1", g.Stride)
	case g.Pad < 0:
		return fmt.Errorf("kernels: conv pad %d: must not be negative", g.Pad)
	case g.H+2*g.Pad < g.KH || g.W+2*g.Pad < g.KW:
		return fmt.Errorf("kernels: conv filter %dx%d larger than padded input %dx%d", g.KH, g.KW, g.H+2*g.Pad, g.W+2*g.Pad)
	}
	return nil
}

// PoolGeom describes max or average pooling over an NHWC batch with a
// Size×Size window, a stride and zero padding. Padded cells never win a max
// and are not counted in an average (count_include_pad = false, as ONNX's
// default).
type PoolGeom struct {
	N, H, W, C int
	Size       int
	Stride     int
	Pad        int
}

// OH is the output height.
func (g PoolGeom) OH() int { return (g.H+2*g.Pad-g.Size)/g.Stride + 1 }

// OW is the output width.
func (g PoolGeom) OW() int { return (g.W+2*g.Pad-g.Size)/g.Stride + 1 }

// InLen is the length of the input batch.
func (g PoolGeom) InLen() int { return g.N * g.H * g.W * g.C }

// OutLen is the length of the output batch.
func (g PoolGeom) OutLen() int { return g.N * g.OH() * g.OW() * g.C }

// Validate reports a geometry that cannot be computed.
func (g PoolGeom) Validate() error {
	switch {
	case g.N < 1 || g.H < 1 || g.W < 1 || g.C < 1:
		return fmt.Errorf("kernels: pool input %dx%dx%dx%d: every size must be at least 1", g.N, g.H, g.W, g.C)
	case g.Size < 1 || g.Stride < 1:
		return fmt.Errorf("kernels: pool size %d stride %d: both must be at least 1", g.Size, g.Stride)
	case g.Pad < 0 || g.Pad >= g.Size:
		return fmt.Errorf("kernels: pool pad %d: must be in [0, size %d)", g.Pad, g.Size)
	case g.H+2*g.Pad < g.Size || g.W+2*g.Pad < g.Size:
		return fmt.Errorf("kernels: pool window %d larger than padded input %dx%d", g.Size, g.H+2*g.Pad, g.W+2*g.Pad)
	}
	return nil
}

// LRNParams is local response normalisation across channels (AlexNet):
// y = x / (K + Alpha/Size · Σ x²)^Beta, the sum over the Size channels
// centred on the channel (ONNX LRN semantics).
type LRNParams struct {
	Rows  int // N·H·W: number of pixels
	C     int // channels per pixel
	Size  int
	Alpha float64
	Beta  float64
	K     float64
}

// BatchNormParams is batch normalisation over Rows rows of C channels
// (NHWC data: Rows = N·H·W pixels after a conv, N samples after an
// affine layer), each channel normalised over all Rows rows.
type BatchNormParams struct {
	Rows, C int
	Eps     float64 // added to the variance
	// StatWeight scales the statistics a training forward pass writes for
	// the running averages (see BatchNormForwardTrain).
	StatWeight float64
}

// DropoutParams selects a dropout mask. The mask bit of feature j of the
// sample with dataset index s is drawn from the counter-based stream keyed by
// (Seed, Step, Layer, s), element j, so it does not depend on which worker or
// micro-batch computes the sample.
type DropoutParams struct {
	Ratio    float64 // probability of dropping a unit, in [0, 1)
	Inverted bool    // scale kept units by 1/(1-Ratio) in training, identity at test
	Train    bool    // draw a mask; otherwise the test-time form
	Seed     uint64
	Step     uint64
	Layer    uint32
}

// AdamParams are the hyper-parameters of one Adam update at step T (T ≥ 1),
// with the book's bias correction folded into the learning rate:
// lr_t = LR·√(1−β2^T)/(1−β1^T); m += (1−β1)(g−m); v += (1−β2)(g²−v);
// p −= lr_t·m/(√v + Eps).
type AdamParams struct {
	LR, Beta1, Beta2, Eps float64
	T                     int
}
