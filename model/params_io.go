package model

import (
	"fmt"
	"slices"
)

// Export returns float32 copies of the parameter values, as checkpoints and
// the wire store them.
func (ps Params[T]) Export() []Tensor {
	ts := make([]Tensor, len(ps))
	for i, p := range ps {
		ts[i] = Tensor{Name: p.Name, Shape: slices.Clone(p.Shape), Data: make([]float32, len(p.Value))}
		for j, v := range p.Value {
			ts[i].Data[j] = float32(v)
		}
	}
	return ts
}

// Import sets the parameter values from tensors that must match the set
// one for one, in order, by name and shape. On a mismatch it returns an
// error naming the first one and changes nothing.
func (ps Params[T]) Import(ts []Tensor) error {
	if err := ps.matchTensors(ts); err != nil {
		return fmt.Errorf("model: import parameters: %w", err)
	}
	for i, p := range ps {
		for j, v := range ts[i].Data {
			p.Value[j] = T(v)
		}
	}
	return nil
}

// matchTensors checks that ts has the names, shapes and sizes of ps.
func (ps Params[T]) matchTensors(ts []Tensor) error {
	if len(ts) != len(ps) {
		return fmt.Errorf("%d tensors, want %d", len(ts), len(ps))
	}
	for i, p := range ps {
		t := ts[i]
		if t.Name != p.Name || !slices.Equal(t.Shape, p.Shape) {
			return fmt.Errorf("tensor %d is %q %v, want %q %v", i, t.Name, t.Shape, p.Name, p.Shape)
		}
		if len(t.Data) != len(p.Value) {
			return fmt.Errorf("tensor %d (%s) has %d values, want %d", i, t.Name, len(t.Data), len(p.Value))
		}
	}
	return nil
}

// ExportParams returns float32 copies of the network's parameters.
func (n *Network[T]) ExportParams() []Tensor { return n.params.Export() }

// ImportParams sets the network's parameters from tensors matching its
// parameter set by order, name and shape; on a mismatch it changes nothing.
func (n *Network[T]) ImportParams(ts []Tensor) error { return n.params.Import(ts) }
