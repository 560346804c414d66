package model

import (
	"fmt"
	"slices"

	"github.com/dpcnn/dpcnn/kernels"
)

// RunContext says how a forward pass runs: in training (dropout draws masks)
// or at test time, and which masks it draws. A dropout layer keys its masks
// by kernels.DropoutParams{Seed, Step, Layer: its index in Spec.Layers} and
// the dataset index of each sample.
type RunContext struct {
	Train bool
	Seed  uint64
	Step  uint64
}

// Network is a network built from a Spec on one Backend, with every buffer
// allocated up front for batches of up to its maximum size: a training step
// allocates nothing. It is not safe for concurrent use: give each goroutine
// a network of its own, on a backend of its own.
type Network[T kernels.Float] struct {
	spec     Spec
	b        kernels.Backend[T]
	maxBatch int
	inSize   int // features of one input sample
	classes  int

	layers []layer[T] // every layer but the final softmax
	// firstParam is the index of the first layer with parameters: backward
	// stops there, as nothing before it has anything to learn.
	firstParam int
	params     Params[T]
	initStd    []float64 // per parameter: std of its initial values, 0 for biases

	probs, dlogits []T // softmax outputs and loss gradient, maxBatch × classes

	batch       int  // batch of the last forward pass
	canBackward bool // the last pass was Loss in training: Backward may run
}

// New validates the spec and builds its network for batches of up to
// maxBatch samples. Parameters start at zero; call InitParams or
// ImportParams.
func New[T kernels.Float](s Spec, b kernels.Backend[T], maxBatch int) (*Network[T], error) {
	plans, err := s.plan()
	if err != nil {
		return nil, err
	}
	if maxBatch < 1 {
		return nil, fmt.Errorf("model: new network: max batch %d: must be at least 1", maxBatch)
	}
	perSample := 0
	for _, lp := range plans {
		perSample += 2 * lp.Out.size()
	}
	if _, ok := mulLimit(1<<40, perSample, maxBatch); !ok {
		return nil, fmt.Errorf("model: new network: max batch %d: activations would need more than 2^40 elements", maxBatch)
	}
	layerPlans := plans[:len(plans)-1] // the softmax is the loss, not a layer
	s.Layers = slices.Clone(s.Layers)  // later changes to the caller's spec must not show in Spec()
	n := &Network[T]{
		spec:       s,
		b:          b,
		maxBatch:   maxBatch,
		inSize:     plans[0].In.size(),
		classes:    s.Classes,
		firstParam: len(layerPlans),
		probs:      make([]T, maxBatch*s.Classes),
		dlogits:    make([]T, maxBatch*s.Classes),
	}
	for i, lp := range layerPlans {
		if lp.hasParams() {
			n.firstParam = i
			break
		}
	}
	for i, lp := range layerPlans {
		// A conv followed by a relu computes both in one backend call
		// (ConvForwardReLU); the relu layer then only masks the gradient.
		fused := (lp.Spec.Type == LayerConv && i+1 < len(layerPlans) && layerPlans[i+1].Spec.Type == LayerReLU) ||
			(lp.Spec.Type == LayerReLU && i > 0 && layerPlans[i-1].Spec.Type == LayerConv)
		l := newLayer(b, lp, maxBatch, i > n.firstParam, fused)
		n.layers = append(n.layers, l)
		for _, p := range l.params() {
			n.params = append(n.params, p)
			std := 0.0
			if len(p.Shape) > 1 {
				std = lp.InitStd
			}
			n.initStd = append(n.initStd, std)
		}
	}
	return n, nil
}

// Spec is the spec the network was built from.
func (n *Network[T]) Spec() Spec { return n.spec }

// Backend is the backend the network computes on.
func (n *Network[T]) Backend() kernels.Backend[T] { return n.b }

// Params is the network's parameter set, in layer order, weights before
// biases. The values are live: changing them changes the network.
func (n *Network[T]) Params() Params[T] { return n.params }

// MaxBatch is the largest batch a forward pass accepts.
func (n *Network[T]) MaxBatch() int { return n.maxBatch }

// InputSize is the number of values of one input sample (H·W·C).
func (n *Network[T]) InputSize() int { return n.inSize }

// Classes is the number of outputs per sample.
func (n *Network[T]) Classes() int { return n.classes }

// Forward runs batch samples x (batch × H × W × C, NHWC) through every
// layer and returns their logits, batch × classes, as a view of an internal
// buffer that the next pass overwrites. samples holds the dataset index of
// each sample; it keys the dropout masks in training and may be nil at test
// time. batch must be in [1, MaxBatch] and x at least batch × InputSize long.
func (n *Network[T]) Forward(x []T, batch int, samples []int64, rc RunContext) []T {
	if batch < 1 || batch > n.maxBatch {
		panic(fmt.Sprintf("model: forward: batch %d outside [1, %d]", batch, n.maxBatch))
	}
	if len(x) < batch*n.inSize {
		panic(fmt.Sprintf("model: forward: input has %d values, want %d for a batch of %d", len(x), batch*n.inSize, batch))
	}
	n.batch, n.canBackward = batch, false
	a := x[:batch*n.inSize]
	for _, l := range n.layers {
		a = l.forward(a, batch, rc, samples)
	}
	return a
}

// Loss runs a forward pass over len(labels) samples, then softmax with
// cross-entropy, and returns the summed loss and the number of samples whose
// arg-max is their label. The gradient of the loss with respect to the
// logits is scaled by gradScale (1/batch for a mean, 1 for a sum) and kept,
// together with every activation, for Backward. Labels must be in
// [0, classes).
func (n *Network[T]) Loss(x []T, labels []int32, samples []int64, rc RunContext, gradScale T) (lossSum float64, correct int) {
	batch := len(labels)
	logits := n.Forward(x, batch, samples, rc)
	m := batch * n.classes
	lossSum, correct = n.b.SoftmaxCrossEntropy(batch, n.classes, logits, labels, gradScale, n.probs[:m], n.dlogits[:m])
	n.canBackward = rc.Train
	return lossSum, correct
}

// Backward propagates the loss gradient of the last Loss call, which must
// have run in training, back through every layer and overwrites every
// parameter's Grad with the gradient summed over the batch (times the
// gradScale given to Loss).
func (n *Network[T]) Backward() {
	if !n.canBackward {
		panic("model: backward without a training-mode Loss before it")
	}
	dy := n.dlogits[:n.batch*n.classes]
	for i := len(n.layers) - 1; i >= n.firstParam; i-- {
		dy = n.layers[i].backward(dy)
	}
}

// Predict writes the arg-max class of each of batch samples of x to dst,
// running at test time (no dropout masks). Batches larger than MaxBatch are
// run in chunks.
func (n *Network[T]) Predict(x []T, batch int, dst []int32) {
	if len(dst) < batch {
		panic(fmt.Sprintf("model: predict: %d destinations for a batch of %d", len(dst), batch))
	}
	for start := 0; start < batch; start += n.maxBatch {
		m := min(n.maxBatch, batch-start)
		logits := n.Forward(x[start*n.inSize:], m, nil, RunContext{})
		for i := range m {
			row := logits[i*n.classes : (i+1)*n.classes]
			best := 0
			for j, v := range row {
				if v > row[best] {
					best = j
				}
			}
			dst[start+i] = int32(best)
		}
	}
}
