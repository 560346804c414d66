package model

import (
	"fmt"

	"github.com/dpcnn/dpcnn/kernels"
)

// Activation is one layer's output for a batch, as Activations returns it.
type Activation[T kernels.Float] struct {
	// Index is the layer's position in Spec.Layers; Name and Type are its
	// name ("conv1", …) and type.
	Index      int
	Name, Type string
	// Height, Width and Channels shape one sample's output (an affine
	// layer's is 1 × 1 × its units).
	Height, Width, Channels int
	// Values holds batch × Height × Width × Channels values, NHWC, a copy
	// in host memory.
	Values []T
}

// Activations runs batch samples x through the network at test time
// (dropout off) and returns every layer's output, in order, the last one
// being the logits. A convolution that is followed by a ReLU computes both
// in one kernel, so its output is already rectified: the two layers show
// the same maps. It is for looking inside a network (the feature maps of
// cnnctl viz), not for speed: every output is copied to the host.
func (n *Network[T]) Activations(x []T, batch int) ([]Activation[T], error) {
	if err := n.checkBatch("activations", x, batch); err != nil {
		return nil, err
	}
	n.uploadParams()
	logits := n.forward(x, batch, nil, RunContext{}, 0)
	out := make([]Activation[T], len(n.layers))
	for i, lp := range n.plans {
		// A layer's output is the next one's input; the last one's is
		// what forward returned.
		t := logits
		if i+1 < len(n.layers) {
			t = n.layers[i+1].input()
		}
		vals := make([]T, batch*lp.Out.size())
		if t.Len() != len(vals) {
			return nil, fmt.Errorf("model: activations: layer %d (%s) holds %d values, want %d", lp.Index, lp.Name, t.Len(), len(vals))
		}
		if n.mem != nil {
			kernels.Download(n.mem, vals, t)
		} else {
			copy(vals, t.Host())
		}
		out[i] = Activation[T]{Index: lp.Index, Name: lp.Name, Type: lp.Spec.Type,
			Height: lp.Out.H, Width: lp.Out.W, Channels: lp.Out.C, Values: vals}
	}
	if err := n.d.Sync(); err != nil {
		return nil, fmt.Errorf("model: activations: %w", err)
	}
	return out, nil
}
