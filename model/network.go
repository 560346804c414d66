package model

import (
	"errors"
	"fmt"
	"slices"
	"strings"

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

// Network is a network built from a Spec on one Backend. Its parameters,
// gradients and activations are tensors of the backend's Device
// (kernels.DeviceOf), all allocated up front for batches of up to its
// maximum size, so a training step allocates nothing:
//
//   - on the CPU and reference backends they are host memory, the
//     parameters' Value and Grad slices among them, and the network calls
//     the Backend's methods on them directly;
//   - on a backend with memory of its own (CUDA) they stay in device
//     memory: a pass uploads the parameters (Params' Value) and the batch,
//     Loss downloads the per-sample losses and correct flags, Backward the
//     gradients (into Params' Grad), Forward the logits; nothing else
//     crosses the bus.
//
// Device failures are returned: the Device latches the first one and the
// network returns it from the call that issued the work (Loss, Backward,
// Forward, Predict), as it returns bad arguments. It is not safe for
// concurrent use: give each goroutine a network of its own, on a backend of
// its own.
type Network[T kernels.Float] struct {
	spec     Spec
	b        kernels.Backend[T]
	d        kernels.Device[T]
	mem      kernels.Memory // d.Memory(): nil when the tensors are host memory
	maxBatch int
	inSize   int // features of one input sample
	classes  int

	layers []layer[T]  // every layer but the final softmax
	plans  []layerPlan // of each of layers: name, type, shapes
	// firstParam is the index of the first layer with parameters: backward
	// stops there, as nothing before it has anything to learn.
	firstParam int
	params     Params[T]
	flat       *flatParams[T] // the storage every parameter views
	initStd    []float64      // per parameter: std of its initial values, 0 for constants
	initConst  []float64      // per parameter with initStd 0: its initial value (0, or 1 for batch norm's scale and variance)
	norms      []*batchNormLayer[T]
	dropout    bool // some layer is a dropout: training needs sample indices

	all            tensors[T]
	probs, dlogits kernels.Tensor[T] // softmax outputs and loss gradient, maxBatch × classes
	// On a device of its own: the batch, its labels and sample indices,
	// and the host copy of Forward's logits.
	x       kernels.Tensor[T]
	labels  kernels.Tensor[int32]
	samples kernels.Tensor[int64]
	logits  []T

	batch       int  // batch of the last forward pass
	canBackward bool // the last pass was Loss in training: Backward may run
}

// New validates the spec and builds its network on b's Device for batches
// of up to maxBatch samples. Parameters start at zero; call InitParams or
// ImportParams. On a backend with memory of its own, release the network
// with Close.
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
	d := kernels.DeviceOf(b)
	n := &Network[T]{
		spec:       s,
		b:          b,
		d:          d,
		mem:        d.Memory(),
		maxBatch:   maxBatch,
		inSize:     plans[0].In.size(),
		classes:    s.Classes,
		firstParam: len(layerPlans),
		plans:      layerPlans,
	}
	n.all.mem = n.mem
	n.probs = n.all.float(maxBatch * s.Classes)
	n.dlogits = n.all.float(maxBatch * s.Classes)
	if n.mem != nil {
		n.x = n.all.float(maxBatch * n.inSize)
		n.labels = n.all.index(maxBatch)
		n.samples = n.all.sample(maxBatch)
		n.logits = make([]T, maxBatch*s.Classes)
	}
	total := 0
	for i, lp := range layerPlans {
		if lp.hasParams() && n.firstParam == len(layerPlans) {
			n.firstParam = i
		}
		total += lp.paramCount()
	}
	n.flat = newFlatParams(&n.all, total)
	for i, lp := range layerPlans {
		// A conv followed by a relu computes both in one backend call
		// (ConvForwardReLU); the relu layer then only masks the gradient.
		fused := (lp.Spec.Type == LayerConv && i+1 < len(layerPlans) && layerPlans[i+1].Spec.Type == LayerReLU) ||
			(lp.Spec.Type == LayerReLU && i > 0 && layerPlans[i-1].Spec.Type == LayerConv)
		n.dropout = n.dropout || lp.Spec.Type == LayerDropout
		l := newLayer(d, &n.all, n.flat, lp, maxBatch, i > n.firstParam, fused)
		n.layers = append(n.layers, l)
		if bn, ok := l.(*batchNormLayer[T]); ok {
			n.norms = append(n.norms, bn)
		}
		for _, p := range l.params() {
			n.params = append(n.params, p)
			std, constant := 0.0, 0.0
			switch {
			case len(p.Shape) > 1:
				std = lp.InitStd
			case strings.HasSuffix(p.Name, bnGamma), strings.HasSuffix(p.Name, bnVar):
				constant = 1
			}
			n.initStd = append(n.initStd, std)
			n.initConst = append(n.initConst, constant)
		}
	}
	if n.all.err != nil {
		err := n.all.err
		n.all.free()
		return nil, err
	}
	return n, nil
}

// Close releases the network's tensors on a device of the backend's own;
// in host memory it has nothing to do. The network must not be used after.
func (n *Network[T]) Close() error {
	if n.mem == nil {
		return nil
	}
	n.canBackward = false
	return n.all.free()
}

// Spec is the spec the network was built from.
func (n *Network[T]) Spec() Spec { return n.spec }

// Backend is the backend the network computes on.
func (n *Network[T]) Backend() kernels.Backend[T] { return n.b }

// Params is the network's parameter set, in layer order, weights before
// biases, in host memory. The values are live: changing them changes what
// the next pass computes with.
func (n *Network[T]) Params() Params[T] { return n.params }

// FlatValues is the flat parameter vector: every parameter's Value, in
// Params order, concatenated. It is not a copy: each Value is a view of
// it, so copying a vector into it sets the parameters, and it changes as
// they do. The wire's parameter tensors and gradient sums are laid out
// as it is.
func (n *Network[T]) FlatValues() []T { return n.flat.Value }

// FlatGrads is the flat gradient vector, every parameter's Grad in Params
// order, viewed the same way: Backward overwrites it.
func (n *Network[T]) FlatGrads() []T { return n.flat.Grad }

// MaxBatch is the largest batch a forward pass accepts.
func (n *Network[T]) MaxBatch() int { return n.maxBatch }

// InputSize is the number of values of one input sample (H·W·C).
func (n *Network[T]) InputSize() int { return n.inSize }

// Classes is the number of outputs per sample.
func (n *Network[T]) Classes() int { return n.classes }

// errNoTrainingLoss is Backward's answer without a training Loss before it.
var errNoTrainingLoss = errors.New("model: backward without a training-mode Loss before it")

// checkBatch refuses a batch the network cannot take.
func (n *Network[T]) checkBatch(what string, x []T, batch int) error {
	if batch < 1 || batch > n.maxBatch {
		return fmt.Errorf("model: %s: batch %d outside [1, %d]", what, batch, n.maxBatch)
	}
	if len(x) < batch*n.inSize {
		return fmt.Errorf("model: %s: input has %d values, want %d for a batch of %d", what, len(x), batch*n.inSize, batch)
	}
	return nil
}

// uploadParams copies the parameters' host values to the device (in host
// memory they are the tensors already).
func (n *Network[T]) uploadParams() {
	if n.mem == nil {
		return
	}
	kernels.Upload(n.mem, n.flat.value, n.flat.Value)
}

// forward stages batch samples of x (and their dataset indices) on the
// device, runs every layer and returns the logits tensor. The batch has
// been checked; the parameters are on the device.
//
// statWeight is the weight of the batch statistics that batch-norm layers
// write as their running statistics' gradients in training: batch ×
// gradScale for Loss, 0 (none written) for the other passes.
func (n *Network[T]) forward(x []T, batch int, samples []int64, rc RunContext, statWeight float64) kernels.Tensor[T] {
	n.batch, n.canBackward = batch, false
	for _, l := range n.norms {
		l.statWeight = statWeight
	}
	x = x[:batch*n.inSize]
	samples = samples[:min(len(samples), batch)]
	var a kernels.Tensor[T]
	var st kernels.Tensor[int64]
	if n.mem == nil {
		a = kernels.HostTensor(x)
		if samples != nil {
			st = kernels.HostTensor(samples)
		}
	} else {
		a = n.x.Slice(0, len(x))
		kernels.Upload(n.mem, a, x)
		if len(samples) > 0 {
			st = n.samples.Slice(0, len(samples))
			kernels.Upload(n.mem, st, samples)
		}
	}
	for _, l := range n.layers {
		a = l.forward(a, batch, rc, st)
	}
	return a
}

// Forward runs batch samples x (batch × H × W × C, NHWC) through every
// layer and returns their logits, batch × classes, in host memory that the
// next pass overwrites. samples holds the dataset index of each sample; it
// keys the dropout masks in training and may be nil at test time. batch
// must be in [1, MaxBatch] and x at least batch × InputSize long.
func (n *Network[T]) Forward(x []T, batch int, samples []int64, rc RunContext) ([]T, error) {
	if err := n.checkBatch("forward", x, batch); err != nil {
		return nil, err
	}
	if err := n.checkSamples("forward", batch, samples, rc); err != nil {
		return nil, err
	}
	n.uploadParams()
	logits := n.forward(x, batch, samples, rc, 0)
	out := logits.Host()
	if n.mem != nil {
		out = n.logits[:logits.Len()]
		kernels.Download(n.mem, out, logits)
	}
	if err := n.d.Sync(); err != nil {
		return nil, fmt.Errorf("model: forward: %w", err)
	}
	return out, nil
}

// checkSamples refuses a training pass of a network with dropout without
// the dataset index of every sample.
func (n *Network[T]) checkSamples(what string, batch int, samples []int64, rc RunContext) error {
	if n.dropout && rc.Train && len(samples) < batch {
		return fmt.Errorf("model: %s: dropout in training needs the dataset index of every sample: %d for a batch of %d", what, len(samples), batch)
	}
	return nil
}

// Loss runs a forward pass over len(labels) samples, then softmax with
// cross-entropy, and returns the summed loss and the number of samples whose
// arg-max is their label. The gradient of the loss with respect to the
// logits is scaled by gradScale (1/batch for a mean, 1 for a sum) and kept,
// together with every activation, for Backward. Labels must be in
// [0, classes). A bad argument or a device failure is an error.
func (n *Network[T]) Loss(x []T, labels []int32, samples []int64, rc RunContext, gradScale T) (lossSum float64, correct int, err error) {
	batch := len(labels)
	if err := n.checkBatch("loss", x, batch); err != nil {
		return 0, 0, err
	}
	if err := n.checkSamples("loss", batch, samples, rc); err != nil {
		return 0, 0, err
	}
	for i, label := range labels {
		if label < 0 || int(label) >= n.classes {
			return 0, 0, fmt.Errorf("model: loss: row %d: label %d outside [0, %d)", i, label, n.classes)
		}
	}
	n.uploadParams()
	logits := n.forward(x, batch, samples, rc, float64(batch)*float64(gradScale))
	lt := kernels.HostTensor(labels)
	if n.mem != nil {
		lt = n.labels.Slice(0, batch)
		kernels.Upload(n.mem, lt, labels)
	}
	m := batch * n.classes
	lossSum, correct = n.d.SoftmaxCrossEntropy(batch, n.classes, logits, lt, gradScale, n.probs.Slice(0, m), n.dlogits.Slice(0, m))
	if err := n.d.Sync(); err != nil {
		return 0, 0, fmt.Errorf("model: loss: %w", err)
	}
	n.canBackward = rc.Train
	return lossSum, correct, nil
}

// Backward propagates the loss gradient of the last Loss call, which must
// have run in training, back through every layer and overwrites every
// parameter's Grad with the gradient summed over the batch (times the
// gradScale given to Loss). A device failure is an error.
func (n *Network[T]) Backward() error {
	if !n.canBackward {
		return errNoTrainingLoss
	}
	dy := n.dlogits.Slice(0, n.batch*n.classes)
	for i := len(n.layers) - 1; i >= n.firstParam; i-- {
		dy = n.layers[i].backward(dy)
	}
	if n.mem != nil {
		kernels.Download(n.mem, n.flat.Grad, n.flat.grad)
	}
	if err := n.d.Sync(); err != nil {
		return fmt.Errorf("model: backward: %w", err)
	}
	return nil
}

// Predict writes the arg-max class of each of batch samples of x to dst,
// running at test time (no dropout masks). Batches larger than MaxBatch are
// run in chunks. A bad argument or a device failure is an error.
func (n *Network[T]) Predict(x []T, batch int, dst []int32) error {
	if len(dst) < batch {
		return fmt.Errorf("model: predict: %d destinations for a batch of %d", len(dst), batch)
	}
	if len(x) < batch*n.inSize {
		return fmt.Errorf("model: predict: input has %d values, want %d for a batch of %d", len(x), batch*n.inSize, batch)
	}
	n.uploadParams()
	for start := 0; start < batch; start += n.maxBatch {
		m := min(n.maxBatch, batch-start)
		logits := n.forward(x[start*n.inSize:], m, nil, RunContext{}, 0)
		rows := logits.Host()
		if n.mem != nil {
			rows = n.logits[:logits.Len()]
			kernels.Download(n.mem, rows, logits)
		}
		if err := n.d.Sync(); err != nil {
			return fmt.Errorf("model: predict: %w", err)
		}
		for i := range m {
			row := rows[i*n.classes : (i+1)*n.classes]
			best := 0
			for j, v := range row {
				if v > row[best] {
					best = j
				}
			}
			dst[start+i] = int32(best)
		}
	}
	return nil
}
