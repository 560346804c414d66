package model

import (
	"fmt"

	"github.com/dpcnn/dpcnn/kernels"
)

// layer is one step of a network's forward and backward pass. A layer owns
// its output and input-gradient buffers, sized for the network's largest
// batch when it is built, and keeps what its backward pass needs (its input,
// its output, masks, arg-maxes) from the last forward call. The heavy work is
// done by the Backend, so the same layers run on every device.
type layer[T kernels.Float] interface {
	// forward computes the output of n samples from x (n × in features)
	// and returns a view of the layer's output buffer. samples holds the
	// dataset index of each sample (used by dropout in training).
	forward(x []T, n int, rc RunContext, samples []int64) []T
	// backward takes the gradient of the output of the last forward call
	// and returns the gradient of its input (nil when the layer was built
	// without one), overwriting the layer's parameter gradients.
	backward(dy []T) []T
	// params returns the layer's parameters, weight first, or nil.
	params() []*Param[T]
	// input is the input of the last forward call.
	input() []T
}

// newLayer builds the layer of a plan for batches of up to maxBatch
// samples. needDx says whether backward must compute the input gradient; the
// first layer with parameters does not need one, which saves the most
// expensive backward convolution of all. fused marks a conv followed by a
// relu: the conv applies the ReLU itself, and the relu passes its input on.
func newLayer[T kernels.Float](b kernels.Backend[T], lp layerPlan, maxBatch int, needDx, fused bool) layer[T] {
	inLen, outLen := maxBatch*lp.In.size(), maxBatch*lp.Out.size()
	base := layerIO[T]{b: b, inSize: lp.In.size(), outSize: lp.Out.size()}
	if !(fused && lp.Spec.Type == LayerReLU) {
		base.y = make([]T, outLen)
	}
	if needDx {
		base.dx = make([]T, inLen)
	}
	ls := lp.Spec
	switch ls.Type {
	case LayerConv:
		wShape := lp.weightShape()
		return &convLayer[T]{
			layerIO: base,
			geom: kernels.ConvGeom{H: lp.In.H, W: lp.In.W, C: lp.In.C, OC: ls.Filters,
				KH: ls.Size, KW: ls.Size, Stride: lp.Stride, Pad: ls.Pad},
			w:    newParam[T](lp.Name+".W", wShape),
			bias: newParam[T](lp.Name+".b", []int{ls.Filters}),
			relu: fused,
		}
	case LayerAffine:
		return &affineLayer[T]{
			layerIO: base,
			w:       newParam[T](lp.Name+".W", lp.weightShape()),
			bias:    newParam[T](lp.Name+".b", []int{ls.Units}),
		}
	case LayerMaxPool, LayerAvgPool:
		l := &poolLayer[T]{
			layerIO: base,
			max:     ls.Type == LayerMaxPool,
			geom:    kernels.PoolGeom{H: lp.In.H, W: lp.In.W, C: lp.In.C, Size: ls.Size, Stride: lp.Stride, Pad: ls.Pad},
		}
		if l.max {
			l.argmax = make([]int32, outLen)
		}
		return l
	case LayerReLU:
		return &reluLayer[T]{layerIO: base, fused: fused}
	case LayerSigmoid:
		return &sigmoidLayer[T]{layerIO: base}
	case LayerDropout:
		return &dropoutLayer[T]{
			layerIO: base,
			mask:    make([]T, outLen),
			drop:    kernels.DropoutParams{Ratio: ls.Ratio, Inverted: ls.Inverted, Layer: uint32(lp.Index)},
		}
	case LayerLRN:
		return &lrnLayer[T]{
			layerIO: base,
			scale:   make([]T, outLen),
			lrn:     kernels.LRNParams{C: lp.In.C, Size: ls.Size, Alpha: ls.Alpha, Beta: ls.Beta, K: ls.K},
			pixels:  lp.In.H * lp.In.W,
		}
	}
	panic(fmt.Sprintf("model: layer %d (%s): no implementation of type %q", lp.Index, lp.Name, ls.Type))
}

func newParam[T kernels.Float](name string, shape []int) *Param[T] {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return &Param[T]{Name: name, Shape: shape, Value: make([]T, n), Grad: make([]T, n)}
}

// layerIO is what every layer has: its backend, its per-sample input and
// output sizes, its buffers and the input and batch size of the last
// forward call.
type layerIO[T kernels.Float] struct {
	b               kernels.Backend[T]
	inSize, outSize int
	y, dx           []T // output for maxBatch samples; input gradient, nil if not needed
	x               []T // input of the last forward call
	n               int // batch of the last forward call
}

// start records the input of a forward call and returns the output view.
func (io *layerIO[T]) start(x []T, n int) []T {
	io.x, io.n = x[:n*io.inSize], n
	return io.y[:n*io.outSize]
}

// out is the output of the last forward call.
func (io *layerIO[T]) out() []T { return io.y[:io.n*io.outSize] }

// dxView is the input-gradient view for the last batch, or nil.
func (io *layerIO[T]) dxView() []T {
	if io.dx == nil {
		return nil
	}
	return io.dx[:io.n*io.inSize]
}

func (io *layerIO[T]) params() []*Param[T] { return nil }

func (io *layerIO[T]) input() []T { return io.x }

type convLayer[T kernels.Float] struct {
	layerIO[T]
	geom    kernels.ConvGeom // N is set per call
	w, bias *Param[T]
	relu    bool // the next layer is a relu, applied here (see reluLayer)
}

func (l *convLayer[T]) forward(x []T, n int, _ RunContext, _ []int64) []T {
	y := l.start(x, n)
	l.geom.N = n
	if l.relu {
		l.b.ConvForwardReLU(l.geom, l.x, l.w.Value, l.bias.Value, y)
	} else {
		l.b.ConvForward(l.geom, l.x, l.w.Value, l.bias.Value, y)
	}
	return y
}

func (l *convLayer[T]) backward(dy []T) []T {
	l.b.ConvBackwardFilter(l.geom, l.x, dy, l.w.Grad, l.bias.Grad)
	dx := l.dxView()
	if dx != nil {
		l.b.ConvBackwardData(l.geom, dy, l.w.Value, dx)
	}
	return dx
}

func (l *convLayer[T]) params() []*Param[T] { return []*Param[T]{l.w, l.bias} }

// affineLayer reads its NHWC input as n rows of in features (h, w, c order),
// so flattening costs nothing.
type affineLayer[T kernels.Float] struct {
	layerIO[T]
	w, bias *Param[T]
}

func (l *affineLayer[T]) forward(x []T, n int, _ RunContext, _ []int64) []T {
	y := l.start(x, n)
	l.b.AffineForward(n, l.inSize, l.outSize, l.x, l.w.Value, l.bias.Value, y)
	return y
}

func (l *affineLayer[T]) backward(dy []T) []T {
	dx := l.dxView()
	l.b.AffineBackward(l.n, l.inSize, l.outSize, l.x, l.w.Value, dy, dx, l.w.Grad, l.bias.Grad)
	return dx
}

func (l *affineLayer[T]) params() []*Param[T] { return []*Param[T]{l.w, l.bias} }

type poolLayer[T kernels.Float] struct {
	layerIO[T]
	max    bool
	geom   kernels.PoolGeom // N is set per call
	argmax []int32          // max pooling: the winner of each output
}

func (l *poolLayer[T]) forward(x []T, n int, _ RunContext, _ []int64) []T {
	y := l.start(x, n)
	l.geom.N = n
	if l.max {
		l.b.MaxPoolForward(l.geom, l.x, y, l.argmax[:len(y)])
	} else {
		l.b.AvgPoolForward(l.geom, l.x, y)
	}
	return y
}

func (l *poolLayer[T]) backward(dy []T) []T {
	dx := l.dxView()
	if dx == nil {
		return nil
	}
	if l.max {
		l.b.MaxPoolBackward(l.geom, dy, l.argmax[:len(dy)], dx)
	} else {
		l.b.AvgPoolBackward(l.geom, dy, dx)
	}
	return dx
}

// reluLayer computes its ReLU, or, when fused, receives it already applied
// by the conv before it: its output is then its input, the same values, and
// it has no output buffer of its own.
type reluLayer[T kernels.Float] struct {
	layerIO[T]
	fused bool
}

func (l *reluLayer[T]) forward(x []T, n int, _ RunContext, _ []int64) []T {
	if l.fused {
		l.x, l.n = x[:n*l.inSize], n
		return l.x
	}
	y := l.start(x, n)
	l.b.ReLUForward(l.x, y)
	return y
}

func (l *reluLayer[T]) backward(dy []T) []T {
	dx := l.dxView()
	if dx != nil {
		y := l.x
		if !l.fused {
			y = l.out()
		}
		l.b.ReLUBackward(y, dy, dx)
	}
	return dx
}

type sigmoidLayer[T kernels.Float] struct{ layerIO[T] }

func (l *sigmoidLayer[T]) forward(x []T, n int, _ RunContext, _ []int64) []T {
	y := l.start(x, n)
	l.b.SigmoidForward(l.x, y)
	return y
}

func (l *sigmoidLayer[T]) backward(dy []T) []T {
	dx := l.dxView()
	if dx != nil {
		l.b.SigmoidBackward(l.out(), dy, dx)
	}
	return dx
}

// dropoutLayer draws its mask from the stream keyed by (seed, step, layer
// index, dataset index of the sample), so the mask of a sample does not
// depend on which worker or micro-batch computes it.
type dropoutLayer[T kernels.Float] struct {
	layerIO[T]
	drop kernels.DropoutParams // Train, Seed and Step are set per call
	mask []T
}

func (l *dropoutLayer[T]) forward(x []T, n int, rc RunContext, samples []int64) []T {
	y := l.start(x, n)
	l.drop.Train, l.drop.Seed, l.drop.Step = rc.Train, rc.Seed, rc.Step
	if rc.Train && len(samples) < n {
		panic(fmt.Sprintf("model: dropout in training needs the dataset index of every sample: %d for a batch of %d", len(samples), n))
	}
	if len(samples) > n {
		samples = samples[:n]
	}
	l.b.DropoutForward(l.drop, n, l.inSize, samples, l.x, y, l.mask[:len(y)])
	return y
}

func (l *dropoutLayer[T]) backward(dy []T) []T {
	dx := l.dxView()
	if dx != nil {
		l.b.DropoutBackward(l.mask[:len(dy)], dy, dx)
	}
	return dx
}

type lrnLayer[T kernels.Float] struct {
	layerIO[T]
	lrn    kernels.LRNParams // Rows is set per call
	pixels int               // H·W of one sample
	scale  []T
}

func (l *lrnLayer[T]) forward(x []T, n int, _ RunContext, _ []int64) []T {
	y := l.start(x, n)
	l.lrn.Rows = n * l.pixels
	l.b.LRNForward(l.lrn, l.x, y, l.scale[:len(y)])
	return y
}

func (l *lrnLayer[T]) backward(dy []T) []T {
	dx := l.dxView()
	if dx != nil {
		l.b.LRNBackward(l.lrn, l.x, l.out(), l.scale[:len(dy)], dy, dx)
	}
	return dx
}
