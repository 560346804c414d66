package model

import "github.com/dpcnn/dpcnn/kernels"

// Param is one named parameter tensor of a network with its gradient.
// Names are "<layer>.W" and "<layer>.b" ("conv1.W", "affine2.b") for conv
// and affine layers, "<layer>.gamma", ".beta", ".mean" and ".var" for
// batch norm. Shapes: conv weights [KH, KW, C, OC] (HWIO, see package
// kernels), affine weights [In, Out], biases [Out], batch norm's [C].
//
// Value and Grad are host memory. On a backend that computes in host memory
// they are the very tensors the network computes with; on one with memory
// of its own (CUDA) they are the host side of them: every pass uploads
// Value, and Backward downloads Grad.
type Param[T kernels.Float] struct {
	Name  string
	Shape []int
	Value []T
	Grad  []T
	// StatMomentum is not zero for a batch norm's running statistic
	// (".mean", ".var"): it is learnt by averaging, not by gradients. Its
	// Grad holds the batch's statistic weighted like a gradient sum (times
	// the samples and the loss's gradScale), so the reduction that sums
	// and divides gradients gives the global batch's mean of its
	// micro-batches' statistics, and optimizers move Value toward that by
	// this fraction instead of stepping (see Optimizer.Update).
	StatMomentum float64

	// value and grad are the tensors on the network's device (in host
	// memory, Value and Grad themselves); zero outside a network.
	value, grad kernels.Tensor[T]
}

// Params is a network's parameter set, in layer order, weights before biases.
// The order is part of the checkpoint and wire formats.
type Params[T kernels.Float] []*Param[T]

// trained reports whether p is learnt by the optimizer's gradient step
// (every parameter but a running statistic).
func (p *Param[T]) trained() bool { return p.StatMomentum == 0 }

// Count is the total number of scalar parameters.
func (ps Params[T]) Count() int {
	n := 0
	for _, p := range ps {
		n += len(p.Value)
	}
	return n
}

// Lookup returns the parameter with the given name, or nil.
func (ps Params[T]) Lookup(name string) *Param[T] {
	for _, p := range ps {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Tensor is a named float32 tensor as stored in checkpoints and sent over the
// wire.
type Tensor struct {
	Name  string
	Shape []int
	Data  []float32
}
