package worker

import (
	"fmt"

	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/model"
	"github.com/dpcnn/dpcnn/tree"
)

// MicroBatch is one unit of work, a leaf of the reduction tree (see
// tree.MicroBatch).
type MicroBatch = tree.MicroBatch

// Computer computes the gradients of micro-batches of one job.
type Computer struct {
	spec job.Spec
	// net holds the parameters, gradients and activations on the
	// backend's device (host memory for the CPU, GPU memory for CUDA): a
	// step moves the parameters and the batch in, the losses and the
	// gradients out.
	net   *model.Network[float32]
	train *dataset.Set

	x       []float32
	labels  []int32
	samples []int64
	preds   []int32
}

// NewComputer builds the job's network on b, sized for micro-batches of
// spec.MicroBatch samples and evaluation batches of evalBatch. Release it
// with Close.
func NewComputer(spec job.Spec, b kernels.Backend[float32], train *dataset.Set, evalBatch int) (_ *Computer, err error) {
	defer recoverFault("building the network", &err)
	netSpec, err := spec.Model()
	if err != nil {
		return nil, err
	}
	in := netSpec.Input
	if in.Height != train.Rows || in.Width != train.Cols || in.Channels != 1 {
		return nil, fmt.Errorf("worker: network input %dx%dx%d does not fit the data set's %dx%dx1 images",
			in.Height, in.Width, in.Channels, train.Rows, train.Cols)
	}
	maxBatch := max(spec.MicroBatch, evalBatch)
	net, err := model.New[float32](netSpec, b, maxBatch)
	if err != nil {
		return nil, err
	}
	sample := in.Height * in.Width * in.Channels
	return &Computer{
		spec:    spec,
		net:     net,
		train:   train,
		x:       make([]float32, maxBatch*sample),
		labels:  make([]int32, maxBatch),
		samples: make([]int64, maxBatch),
		preds:   make([]int32, maxBatch),
	}, nil
}

// ParamCount is the length of the flat parameter and gradient vectors.
func (c *Computer) ParamCount() int { return len(c.net.FlatValues()) }

// SetParams copies a flat parameter vector (parameters in Params order,
// concatenated) into the replica; the next computation takes them to the
// device.
func (c *Computer) SetParams(flat []float32) (err error) {
	defer recoverFault("setting the parameters", &err)
	if len(flat) != c.ParamCount() {
		return fmt.Errorf("worker: %d parameters received, network has %d", len(flat), c.ParamCount())
	}
	copy(c.net.FlatValues(), flat)
	return nil
}

// Close releases what the replica holds on a device; the Computer must
// not be used after.
func (c *Computer) Close() error { return c.net.Close() }

// Gradients computes the summed (not averaged) gradient of the micro-batch's
// loss into grad, a flat vector in Params order, and returns the summed loss
// and the number of correctly classified samples. A device failure is an
// error, and so is a fault inside the computation (a kernel's assertion),
// recovered as a *ComputeFault.
func (c *Computer) Gradients(mb MicroBatch, grad []float32) (lossSum float64, correct int, err error) {
	defer recoverFault(fmt.Sprintf("gradients of step %d", mb.Step+1), &err)
	n := len(mb.Indices)
	switch {
	case n == 0 || n > len(c.labels):
		return 0, 0, fmt.Errorf("worker: micro-batch of %d samples, want 1..%d", n, len(c.labels))
	case len(grad) != c.ParamCount():
		return 0, 0, fmt.Errorf("worker: gradient buffer of %d, network has %d parameters", len(grad), c.ParamCount())
	}
	if err := c.train.CheckIndices(mb.Indices); err != nil {
		return 0, 0, fmt.Errorf("worker: step %d: %w", mb.Step+1, err)
	}
	sample := len(c.x) / len(c.labels)
	c.train.Fill(mb.Indices, c.spec.Augment, c.spec.Seed, mb.Epoch, c.x[:n*sample], c.labels[:n], c.samples[:n])
	rc := model.RunContext{Train: true, Seed: c.spec.Seed, Step: uint64(mb.Step)}
	if lossSum, correct, err = c.net.Loss(c.x[:n*sample], c.labels[:n], c.samples[:n], rc, 1); err != nil {
		return 0, 0, fmt.Errorf("worker: step %d: %w", mb.Step+1, err)
	}
	if err := c.net.Backward(); err != nil {
		return 0, 0, fmt.Errorf("worker: step %d: %w", mb.Step+1, err)
	}
	copy(grad, c.net.FlatGrads())
	return lossSum, correct, nil
}

// Evaluate classifies samples [from, to) of set in test mode and returns how
// many it got right. A device failure, or a fault inside the computation,
// is an error.
func (c *Computer) Evaluate(set *dataset.Set, from, to int) (correct int, err error) {
	defer recoverFault(fmt.Sprintf("evaluating test samples [%d, %d)", from, to), &err)
	return Evaluate(NetworkPredictor{c.net}, set, from, to, c.x, c.labels, c.samples, c.preds)
}

// Predictor classifies a batch of images in test mode.
type Predictor interface {
	Predict(x []float32, batch int, dst []int32) error
}

// NetworkPredictor is a model.Network as a Predictor.
type NetworkPredictor struct{ Net *model.Network[float32] }

// Predict classifies batch images of x into dst.
func (p NetworkPredictor) Predict(x []float32, batch int, dst []int32) error {
	return p.Net.Predict(x, batch, dst)
}

// Evaluate classifies samples [from, to) of set with net in test mode, in
// batches of len(labels), using the given buffers (x holds len(labels)
// images), and returns how many it got right.
func Evaluate(net Predictor, set *dataset.Set, from, to int, x []float32, labels []int32, samples []int64, preds []int32) (correct int, err error) {
	if from < 0 || to > set.Len() || from > to {
		return 0, fmt.Errorf("worker: evaluate samples [%d, %d) of a set of %d", from, to, set.Len())
	}
	batch := len(labels)
	sample := len(x) / batch
	idx := make([]int32, batch)
	for lo := from; lo < to; lo += batch {
		n := min(batch, to-lo)
		for i := range n {
			idx[i] = int32(lo + i)
		}
		set.Fill(idx[:n], dataset.Augment{}, 0, 0, x[:n*sample], labels[:n], samples[:n])
		if err := net.Predict(x[:n*sample], n, preds[:n]); err != nil {
			return correct, err
		}
		for i := range n {
			if preds[i] == labels[i] {
				correct++
			}
		}
	}
	return correct, nil
}
