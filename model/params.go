package model

import "github.com/dpcnn/dpcnn/kernels"

// Param is one named parameter tensor of a network with its gradient.
// Names are "<layer>.W" and "<layer>.b" ("conv1.W", "affine2.b"). Shapes:
// conv weights [KH, KW, C, OC] (HWIO, see package kernels), affine weights
// [In, Out], biases [Out].
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

	// value and grad are the tensors on the network's device (in host
	// memory, Value and Grad themselves); zero outside a network.
	value, grad kernels.Tensor[T]
}

// Params is a network's parameter set, in layer order, weights before biases.
// The order is part of the checkpoint and wire formats.
type Params[T kernels.Float] []*Param[T]

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
