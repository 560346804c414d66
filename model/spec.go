package model

// Spec is a network described as data: the input shape, the number of
// classes and an ordered list of layers. It travels inside job specs and
// checkpoints as JSON (or YAML, which is read into the same fields).
type Spec struct {
	// Name is informational ("deep", "simple", or a user's own).
	Name string `json:"name,omitempty"`
	// Input is the shape of one sample.
	Input InputShape `json:"input"`
	// Classes is the number of outputs of the last affine layer.
	Classes int `json:"classes"`
	// Init is the default weight initialisation of conv and affine layers:
	// "he" (std √(2/fan_in)), "xavier" (std √(1/fan_in)) or "std:X" (a fixed
	// standard deviation X, e.g. "std:0.01"). Biases start at zero.
	Init string `json:"init,omitempty"`
	// Layers run in order; the last one must be "softmax"
	// (softmax with cross-entropy loss).
	Layers []LayerSpec `json:"layers"`
}

// InputShape is the shape of one sample, NHWC without the N.
type InputShape struct {
	Height   int `json:"height"`
	Width    int `json:"width"`
	Channels int `json:"channels"`
}

// Layer types of the spec vocabulary.
const (
	LayerConv    = "conv"    // convolution: filters, size, stride (1), pad (0)
	LayerReLU    = "relu"    // rectified linear unit
	LayerSigmoid = "sigmoid" // logistic sigmoid
	LayerMaxPool = "maxpool" // max pooling: size, stride (= size), pad (0)
	LayerAvgPool = "avgpool" // average pooling: size, stride (= size), pad (0)
	LayerAffine  = "affine"  // fully connected: units; flattens its input (h, w, c order)
	LayerDropout = "dropout" // dropout: ratio, inverted
	LayerLRN     = "lrn"     // local response normalisation across channels: size, alpha, beta, k
	// batch normalisation of each channel: eps (1e-5), momentum (0.1)
	LayerBatchNorm = "batchnorm"
	LayerSoftmax   = "softmax" // softmax with cross-entropy loss; must be last
)

// LayerSpec is one layer of a Spec. Only the fields of its Type apply; a
// zero Stride means the type's default.
type LayerSpec struct {
	Type string `json:"type"`
	// Name is the layer's parameter prefix; empty means type plus a
	// 1-based count of that type ("conv1", "affine2").
	Name string `json:"name,omitempty"`

	Filters int `json:"filters,omitempty"` // conv: output channels
	Size    int `json:"size,omitempty"`    // conv: kernel side; pools: window side; lrn: channels summed
	Stride  int `json:"stride,omitempty"`  // conv: default 1; pools: default Size
	Pad     int `json:"pad,omitempty"`     // conv, pools: zero padding on every side

	Units int `json:"units,omitempty"` // affine: outputs
	// Init overrides Spec.Init for this conv or affine layer.
	Init string `json:"init,omitempty"`

	Ratio    float64 `json:"ratio,omitempty"`    // dropout: probability of dropping a unit
	Inverted bool    `json:"inverted,omitempty"` // dropout: scale at train time instead of test time

	Alpha float64 `json:"alpha,omitempty"` // lrn
	Beta  float64 `json:"beta,omitempty"`  // lrn
	K     float64 `json:"k,omitempty"`     // lrn

	// Eps is added to a batchnorm's variance (0: DefaultBatchNormEps).
	Eps float64 `json:"eps,omitempty"`
	// Momentum is the fraction by which a batchnorm's running statistics
	// move toward each step's batch statistics (0: DefaultBatchNormMomentum),
	// as in PyTorch.
	Momentum float64 `json:"momentum,omitempty"`
}

// The batch-norm defaults, PyTorch's.
const (
	DefaultBatchNormEps      = 1e-5
	DefaultBatchNormMomentum = 0.1
)

// batchNormEps and batchNormMomentum are the layer's values after defaults.
func (ls LayerSpec) batchNormEps() float64 {
	if ls.Eps == 0 {
		return DefaultBatchNormEps
	}
	return ls.Eps
}

func (ls LayerSpec) batchNormMomentum() float64 {
	if ls.Momentum == 0 {
		return DefaultBatchNormMomentum
	}
	return ls.Momentum
}
