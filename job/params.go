package job

import (
	"fmt"

	"github.com/dpcnn/dpcnn/model"
)

// The flat parameter vector is a job's network parameters, or their
// gradients, as one vector: the tensors of model.Params in order (layer
// order, weights before biases, each row-major), concatenated. Parameters
// travel to workers and gradient sums come back in it, the reduction tree
// adds it, and MaxParams bounds it. These four functions are the only
// places that lay it out; each wants flat to hold exactly ps.Count()
// values and panics otherwise (callers size it from the network).

// FlattenValues copies the parameters' values into flat.
func FlattenValues(flat []float32, ps model.Params[float32]) {
	checkFlat("flatten values", flat, ps)
	off := 0
	for _, p := range ps {
		off += copy(flat[off:], p.Value)
	}
}

// FlattenGrads copies the parameters' gradients into flat.
func FlattenGrads(flat []float32, ps model.Params[float32]) {
	checkFlat("flatten gradients", flat, ps)
	off := 0
	for _, p := range ps {
		off += copy(flat[off:], p.Grad)
	}
}

// SetValues copies flat into the parameters' values.
func SetValues(ps model.Params[float32], flat []float32) {
	checkFlat("set values", flat, ps)
	off := 0
	for _, p := range ps {
		off += copy(p.Value, flat[off:])
	}
}

// SetGrads sets the parameters' gradients to flat's values times scale
// (each one product, rounded once).
func SetGrads(ps model.Params[float32], flat []float32, scale float32) {
	checkFlat("set gradients", flat, ps)
	off := 0
	for _, p := range ps {
		g := flat[off : off+len(p.Grad)]
		for i := range g {
			p.Grad[i] = g[i] * scale
		}
		off += len(p.Grad)
	}
}

func checkFlat(what string, flat []float32, ps model.Params[float32]) {
	if n := ps.Count(); len(flat) != n {
		panic(fmt.Sprintf("job: %s: a flat vector of %d values for %d parameters", what, len(flat), n))
	}
}
