package model

import "github.com/dpcnn/dpcnn/kernels"

// Optimizer types of OptimizerSpec.Type.
const (
	OptSGD      = "sgd"
	OptMomentum = "momentum"
	OptAdaGrad  = "adagrad"
	OptAdam     = "adam"
)

// OptimizerSpec selects an optimizer and its hyper-parameters. Zero fields
// take the book's defaults: lr 0.001 for Adam and 0.01 for the others,
// momentum 0.9, β1 0.9, β2 0.999, eps 1e-7, a constant rate, no weight
// decay, no clipping.
type OptimizerSpec struct {
	Type     string  `json:"type"`
	LR       float64 `json:"lr,omitempty"`
	Momentum float64 `json:"momentum,omitempty"`
	Beta1    float64 `json:"beta1,omitempty"`
	Beta2    float64 `json:"beta2,omitempty"`
	Eps      float64 `json:"eps,omitempty"`
	// Schedule varies the rate over the job, from LR as its base.
	Schedule LRSchedule `json:"schedule,omitzero"`
	// WeightDecay, decoupled from the gradient (AdamW; Loshchilov and
	// Hutter), shrinks every weight by the factor 1 − rate·WeightDecay
	// before each update, the rate being the schedule's. It applies to the
	// conv and affine weights (".W"), not to biases.
	WeightDecay float64 `json:"weightDecay,omitempty"`
	// ClipNorm, when set, scales the step's mean gradient down to that
	// global L2 norm (over every parameter) when it is longer.
	ClipNorm float64 `json:"clipNorm,omitempty"`
	// EMA, when its Decay is set, keeps an exponential moving average of
	// the parameters beside them (an optimizer slot, "<param>.ema", so
	// checkpoints hold it and a resumed job continues it exactly).
	EMA EMASpec `json:"ema,omitzero"`
}

// EMASpec is the moving average of the parameters. After update t (1 for
// the first), avg += (1 − d)(param − avg) with d = min(Decay, (1+t)/(10+t)),
// TensorFlow's ExponentialMovingAverage with num_updates: the average
// starts at the initial parameters and follows them closely until enough
// steps have passed for Decay to mean what it says.
type EMASpec struct {
	// Decay in (0, 1), typically 0.999 to 0.9999; 0 keeps no average.
	Decay float64 `json:"decay,omitempty"`
	// Evaluate makes the average the job's model: its evaluations, its
	// exported model and what cnnctl eval, predict and export read from
	// its checkpoints use the average in place of the raw parameters.
	Evaluate bool `json:"evaluate,omitempty"`
}

// EMASlot is the optimizer slot that holds a parameter's moving average.
const EMASlot = "ema"

// OptimizerState is everything an optimizer carries between steps, in a form
// checkpoints can store: the number of updates applied (Adam's t) and its
// per-parameter slots, named "<param>.<slot>" ("conv1.W.m", "conv1.W.v",
// "affine1.b.h"), in parameter order.
type OptimizerState struct {
	Steps int64
	Slots []Tensor
}

// Optimizer updates a parameter set from its gradients.
type Optimizer[T kernels.Float] interface {
	// Spec is the optimizer's configuration with defaults filled in.
	Spec() OptimizerSpec
	// Update applies one step to every parameter from its Grad (which
	// clipping may scale in place); a running statistic
	// (Param.StatMomentum) is moved toward its Grad instead, with no
	// decay and outside the clipping norm.
	Update(b kernels.Backend[T], ps Params[T])
	// Rate is the learning rate the next Update applies.
	Rate() float64
	// Average is the moving average of the parameters (OptimizerSpec.EMA)
	// as tensors named like them, or nil when none is kept.
	Average() []Tensor
	// State returns a copy of the optimizer's state.
	State() OptimizerState
	// Restore replaces the state; it fails, changing nothing, when the
	// slots do not match the parameter set.
	Restore(st OptimizerState) error
}
