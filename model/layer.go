package model

import (
	"fmt"

	"github.com/dpcnn/dpcnn/kernels"
)

// layer is one step of a network's forward and backward pass. A layer owns
// its output and input-gradient tensors, allocated on the network's device
// for its largest batch when it is built, and keeps what its backward pass
// needs (its input, its output, masks, arg-maxes) from the last forward
// call. The heavy work is done by the Device, so the same layers run on
// every backend, in host memory or in a device's own.
type layer[T kernels.Float] interface {
	// forward computes the output of n samples from x (n × in features)
	// and returns a view of the layer's output tensor. samples holds the
	// dataset index of each sample (used by dropout in training).
	forward(x kernels.Tensor[T], n int, rc RunContext, samples kernels.Tensor[int64]) kernels.Tensor[T]
	// backward takes the gradient of the output of the last forward call
	// and returns the gradient of its input (the zero Tensor when the
	// layer was built without one), overwriting the layer's parameter
	// gradients.
	backward(dy kernels.Tensor[T]) kernels.Tensor[T]
	// params returns the layer's parameters, weight first, or nil.
	params() []*Param[T]
	// input is the input of the last forward call.
	input() kernels.Tensor[T]
}

// tensors allocates a network's tensors on its device and frees them all
// at the end. The first allocation that fails is kept in err; the ones
// after it are not tried and give zero Tensors.
type tensors[T kernels.Float] struct {
	mem     kernels.Memory // nil: host memory
	err     error
	floats  []kernels.Tensor[T]
	indices []kernels.Tensor[int32]
	samples []kernels.Tensor[int64]
}

func allocate[E kernels.Elem](mem kernels.Memory, err *error, all *[]kernels.Tensor[E], n int) kernels.Tensor[E] {
	if *err != nil {
		return kernels.Tensor[E]{}
	}
	t, e := kernels.Alloc[E](mem, n)
	if e != nil {
		*err = fmt.Errorf("model: allocate %d elements on the device: %w", n, e)
		return kernels.Tensor[E]{}
	}
	*all = append(*all, t)
	return t
}

func (a *tensors[T]) float(n int) kernels.Tensor[T] { return allocate(a.mem, &a.err, &a.floats, n) }
func (a *tensors[T]) index(n int) kernels.Tensor[int32] {
	return allocate(a.mem, &a.err, &a.indices, n)
}
func (a *tensors[T]) sample(n int) kernels.Tensor[int64] {
	return allocate(a.mem, &a.err, &a.samples, n)
}

// free releases every tensor and returns the first error.
func (a *tensors[T]) free() error {
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	for _, t := range a.floats {
		keep(kernels.Free(a.mem, t))
	}
	for _, t := range a.indices {
		keep(kernels.Free(a.mem, t))
	}
	for _, t := range a.samples {
		keep(kernels.Free(a.mem, t))
	}
	a.floats, a.indices, a.samples = nil, nil, nil
	return first
}

// newLayer builds the layer of a plan on d for batches of up to maxBatch
// samples, its tensors from a and its parameters from f. needDx says whether backward must compute
// the input gradient; the first layer with parameters does not need one,
// which saves the most expensive backward convolution of all. fused marks
// a conv followed by a relu: the conv applies the ReLU itself, and the
// relu passes its input on.
func newLayer[T kernels.Float](d kernels.Device[T], a *tensors[T], f *flatParams[T], lp layerPlan, maxBatch int, needDx, fused bool) layer[T] {
	inLen, outLen := maxBatch*lp.In.size(), maxBatch*lp.Out.size()
	base := layerIO[T]{d: d, inSize: lp.In.size(), outSize: lp.Out.size()}
	if !(fused && lp.Spec.Type == LayerReLU) {
		base.y = a.float(outLen)
	}
	if needDx {
		base.dx = a.float(inLen)
	}
	ls := lp.Spec
	switch ls.Type {
	case LayerConv:
		return &convLayer[T]{
			layerIO: base,
			geom: kernels.ConvGeom{H: lp.In.H, W: lp.In.W, C: lp.In.C, OC: ls.Filters,
				KH: ls.Size, KW: ls.Size, Stride: lp.Stride, Pad: ls.Pad},
			w:    newParam(f, lp.Name+".W", lp.weightShape()),
			bias: newParam(f, lp.Name+".b", []int{ls.Filters}),
			relu: fused,
		}
	case LayerAffine:
		return &affineLayer[T]{
			layerIO: base,
			w:       newParam(f, lp.Name+".W", lp.weightShape()),
			bias:    newParam(f, lp.Name+".b", []int{ls.Units}),
		}
	case LayerMaxPool, LayerAvgPool:
		l := &poolLayer[T]{
			layerIO: base,
			max:     ls.Type == LayerMaxPool,
			geom:    kernels.PoolGeom{H: lp.In.H, W: lp.In.W, C: lp.In.C, Size: ls.Size, Stride: lp.Stride, Pad: ls.Pad},
		}
		if l.max {
			l.argmax = a.index(outLen)
		}
		return l
	case LayerReLU:
		return &reluLayer[T]{layerIO: base, fused: fused}
	case LayerSigmoid:
		return &sigmoidLayer[T]{layerIO: base}
	case LayerDropout:
		return &dropoutLayer[T]{
			layerIO: base,
			mask:    a.float(outLen),
			drop:    kernels.DropoutParams{Ratio: ls.Ratio, Inverted: ls.Inverted, Layer: uint32(lp.Index)},
		}
	case LayerBatchNorm:
		c := []int{lp.In.C}
		l := &batchNormLayer[T]{
			layerIO:   base,
			bn:        kernels.BatchNormParams{C: lp.In.C, Eps: ls.batchNormEps()},
			pixels:    lp.In.H * lp.In.W,
			gamma:     newParam(f, lp.Name+bnGamma, c),
			beta:      newParam(f, lp.Name+bnBeta, c),
			mean:      newParam(f, lp.Name+bnMean, c),
			variance:  newParam(f, lp.Name+bnVar, c),
			batchMean: a.float(lp.In.C),
			invStd:    a.float(lp.In.C),
		}
		l.mean.StatMomentum = ls.batchNormMomentum()
		l.variance.StatMomentum = ls.batchNormMomentum()
		return l
	case LayerLRN:
		return &lrnLayer[T]{
			layerIO: base,
			scale:   a.float(outLen),
			lrn:     kernels.LRNParams{C: lp.In.C, Size: ls.Size, Alpha: ls.Alpha, Beta: ls.Beta, K: ls.K},
			pixels:  lp.In.H * lp.In.W,
		}
	}
	panic(fmt.Sprintf("model: layer %d (%s): no implementation of type %q", lp.Index, lp.Name, ls.Type))
}

// flatParams is the storage of a network's parameters: one vector of
// values and one of gradients on the device (and, on a device of its own,
// their host copies), which every parameter's tensors and Value and Grad
// slices view in Params order. So the flat parameter vector the wire,
// checkpoints' hashes and the reduction tree speak of is the network's
// own memory, and a pass moves the parameters and gradients over the bus
// in one copy each.
type flatParams[T kernels.Float] struct {
	value, grad kernels.Tensor[T] // on the device
	Value, Grad []T               // host memory: value's and grad's own slices, or host copies
	next        int               // elements handed out so far
}

// newFlatParams allocates n parameters' storage from a.
func newFlatParams[T kernels.Float](a *tensors[T], n int) *flatParams[T] {
	f := &flatParams[T]{value: a.float(n), grad: a.float(n)}
	if a.mem == nil {
		f.Value, f.Grad = f.value.Host(), f.grad.Host()
	} else {
		f.Value, f.Grad = make([]T, n), make([]T, n)
	}
	return f
}

// newParam makes the next parameter of the flat storage. A failed
// allocation left zero tensors: the parameter then views nothing, and
// New returns the allocation's error.
func newParam[T kernels.Float](f *flatParams[T], name string, shape []int) *Param[T] {
	n := 1
	for _, d := range shape {
		n *= d
	}
	p := &Param[T]{Name: name, Shape: shape}
	if f.value.IsZero() {
		return p
	}
	lo, hi := f.next, f.next+n
	f.next = hi
	p.value, p.grad = f.value.Slice(lo, hi), f.grad.Slice(lo, hi)
	p.Value, p.Grad = f.Value[lo:hi:hi], f.Grad[lo:hi:hi]
	return p
}

// layerIO is what every layer has: its device, its per-sample input and
// output sizes, its tensors and the input and batch size of the last
// forward call.
type layerIO[T kernels.Float] struct {
	d               kernels.Device[T]
	inSize, outSize int
	y, dx           kernels.Tensor[T] // output for maxBatch samples; input gradient, zero if not needed
	x               kernels.Tensor[T] // input of the last forward call
	n               int               // batch of the last forward call
}

// start records the input of a forward call and returns the output view.
func (io *layerIO[T]) start(x kernels.Tensor[T], n int) kernels.Tensor[T] {
	io.x, io.n = x.Slice(0, n*io.inSize), n
	return io.y.Slice(0, n*io.outSize)
}

// out is the output of the last forward call.
func (io *layerIO[T]) out() kernels.Tensor[T] { return io.y.Slice(0, io.n*io.outSize) }

// dxView is the input-gradient view for the last batch, or the zero
// Tensor.
func (io *layerIO[T]) dxView() kernels.Tensor[T] {
	if io.dx.IsZero() {
		return kernels.Tensor[T]{}
	}
	return io.dx.Slice(0, io.n*io.inSize)
}

func (io *layerIO[T]) params() []*Param[T] { return nil }

func (io *layerIO[T]) input() kernels.Tensor[T] { return io.x }

type convLayer[T kernels.Float] struct {
	layerIO[T]
	geom    kernels.ConvGeom // N is set per call
	w, bias *Param[T]
	relu    bool // the next layer is a relu, applied here (see reluLayer)
}

func (l *convLayer[T]) forward(x kernels.Tensor[T], n int, _ RunContext, _ kernels.Tensor[int64]) kernels.Tensor[T] {
	y := l.start(x, n)
	l.geom.N = n
	if l.relu {
		l.d.ConvForwardReLU(l.geom, l.x, l.w.value, l.bias.value, y)
	} else {
		l.d.ConvForward(l.geom, l.x, l.w.value, l.bias.value, y)
	}
	return y
}

func (l *convLayer[T]) backward(dy kernels.Tensor[T]) kernels.Tensor[T] {
	l.d.ConvBackwardFilter(l.geom, l.x, dy, l.w.grad, l.bias.grad)
	dx := l.dxView()
	if !dx.IsZero() {
		l.d.ConvBackwardData(l.geom, dy, l.w.value, dx)
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

func (l *affineLayer[T]) forward(x kernels.Tensor[T], n int, _ RunContext, _ kernels.Tensor[int64]) kernels.Tensor[T] {
	y := l.start(x, n)
	l.d.AffineForward(n, l.inSize, l.outSize, l.x, l.w.value, l.bias.value, y)
	return y
}

func (l *affineLayer[T]) backward(dy kernels.Tensor[T]) kernels.Tensor[T] {
	dx := l.dxView()
	l.d.AffineBackward(l.n, l.inSize, l.outSize, l.x, l.w.value, dy, dx, l.w.grad, l.bias.grad)
	return dx
}

func (l *affineLayer[T]) params() []*Param[T] { return []*Param[T]{l.w, l.bias} }

type poolLayer[T kernels.Float] struct {
	layerIO[T]
	max    bool
	geom   kernels.PoolGeom      // N is set per call
	argmax kernels.Tensor[int32] // max pooling: the winner of each output
}

func (l *poolLayer[T]) forward(x kernels.Tensor[T], n int, _ RunContext, _ kernels.Tensor[int64]) kernels.Tensor[T] {
	y := l.start(x, n)
	l.geom.N = n
	if l.max {
		l.d.MaxPoolForward(l.geom, l.x, y, l.argmax.Slice(0, y.Len()))
	} else {
		l.d.AvgPoolForward(l.geom, l.x, y)
	}
	return y
}

func (l *poolLayer[T]) backward(dy kernels.Tensor[T]) kernels.Tensor[T] {
	dx := l.dxView()
	if dx.IsZero() {
		return dx
	}
	if l.max {
		l.d.MaxPoolBackward(l.geom, dy, l.argmax.Slice(0, dy.Len()), dx)
	} else {
		l.d.AvgPoolBackward(l.geom, dy, dx)
	}
	return dx
}

// reluLayer computes its ReLU, or, when fused, receives it already applied
// by the conv before it: its output is then its input, the same values, and
// it has no output tensor of its own.
type reluLayer[T kernels.Float] struct {
	layerIO[T]
	fused bool
}

func (l *reluLayer[T]) forward(x kernels.Tensor[T], n int, _ RunContext, _ kernels.Tensor[int64]) kernels.Tensor[T] {
	if l.fused {
		l.x, l.n = x.Slice(0, n*l.inSize), n
		return l.x
	}
	y := l.start(x, n)
	l.d.ReLUForward(l.x, y)
	return y
}

func (l *reluLayer[T]) backward(dy kernels.Tensor[T]) kernels.Tensor[T] {
	dx := l.dxView()
	if !dx.IsZero() {
		y := l.x
		if !l.fused {
			y = l.out()
		}
		l.d.ReLUBackward(y, dy, dx)
	}
	return dx
}

type sigmoidLayer[T kernels.Float] struct{ layerIO[T] }

func (l *sigmoidLayer[T]) forward(x kernels.Tensor[T], n int, _ RunContext, _ kernels.Tensor[int64]) kernels.Tensor[T] {
	y := l.start(x, n)
	l.d.SigmoidForward(l.x, y)
	return y
}

func (l *sigmoidLayer[T]) backward(dy kernels.Tensor[T]) kernels.Tensor[T] {
	dx := l.dxView()
	if !dx.IsZero() {
		l.d.SigmoidBackward(l.out(), dy, dx)
	}
	return dx
}

// dropoutLayer draws its mask from the stream keyed by (seed, step, layer
// index, dataset index of the sample), so the mask of a sample does not
// depend on which worker or micro-batch computes it. In training samples
// must hold one index per sample (the network checks).
type dropoutLayer[T kernels.Float] struct {
	layerIO[T]
	drop kernels.DropoutParams // Train, Seed and Step are set per call
	mask kernels.Tensor[T]
}

func (l *dropoutLayer[T]) forward(x kernels.Tensor[T], n int, rc RunContext, samples kernels.Tensor[int64]) kernels.Tensor[T] {
	y := l.start(x, n)
	l.drop.Train, l.drop.Seed, l.drop.Step = rc.Train, rc.Seed, rc.Step
	if samples.Len() > n {
		samples = samples.Slice(0, n)
	}
	l.d.DropoutForward(l.drop, n, l.inSize, samples, l.x, y, l.mask.Slice(0, y.Len()))
	return y
}

func (l *dropoutLayer[T]) backward(dy kernels.Tensor[T]) kernels.Tensor[T] {
	dx := l.dxView()
	if !dx.IsZero() {
		l.d.DropoutBackward(l.mask.Slice(0, dy.Len()), dy, dx)
	}
	return dx
}

type lrnLayer[T kernels.Float] struct {
	layerIO[T]
	lrn    kernels.LRNParams // Rows is set per call
	pixels int               // H·W of one sample
	scale  kernels.Tensor[T]
}

func (l *lrnLayer[T]) forward(x kernels.Tensor[T], n int, _ RunContext, _ kernels.Tensor[int64]) kernels.Tensor[T] {
	y := l.start(x, n)
	l.lrn.Rows = n * l.pixels
	l.d.LRNForward(l.lrn, l.x, y, l.scale.Slice(0, y.Len()))
	return y
}

func (l *lrnLayer[T]) backward(dy kernels.Tensor[T]) kernels.Tensor[T] {
	dx := l.dxView()
	if !dx.IsZero() {
		l.d.LRNBackward(l.lrn, l.x, l.out(), l.scale.Slice(0, dy.Len()), dy, dx)
	}
	return dx
}

// batchNormLayer normalises each channel over the rows of its batch (the
// pixels of every sample after a conv, the samples after an affine layer)
// in training, and with its running statistics at test time. A network
// computes batch statistics per call, so in data-parallel training per
// micro-batch: they depend on the job's microBatch, never on how many
// workers compute the micro-batches.
//
// The running statistics are parameters of their own (Param.StatMomentum):
// a training pass writes the batch's mean and unbiased variance, weighted
// by statWeight, into their Grad, so they travel and are summed with the
// gradients, and the optimizer averages them in.
type batchNormLayer[T kernels.Float] struct {
	layerIO[T]
	bn                kernels.BatchNormParams // Rows and StatWeight are set per call
	pixels            int                     // H·W of one sample
	gamma, beta       *Param[T]
	mean, variance    *Param[T] // running statistics
	batchMean, invStd kernels.Tensor[T]
	// statWeight is the weight of the batch statistics written as the
	// running statistics' gradients: samples × gradScale in a training
	// Loss, 0 (none written) in any other pass.
	statWeight float64
}

func (l *batchNormLayer[T]) forward(x kernels.Tensor[T], n int, rc RunContext, _ kernels.Tensor[int64]) kernels.Tensor[T] {
	y := l.start(x, n)
	l.bn.Rows = n * l.pixels
	if !rc.Train {
		l.d.BatchNormForwardInfer(l.bn, l.x, l.gamma.value, l.beta.value, l.mean.value, l.variance.value, y)
		return y
	}
	l.bn.StatWeight = l.statWeight
	var meanStat, varStat kernels.Tensor[T]
	if l.statWeight != 0 {
		meanStat, varStat = l.mean.grad, l.variance.grad
	}
	l.d.BatchNormForwardTrain(l.bn, l.x, l.gamma.value, l.beta.value, y, l.batchMean, l.invStd, meanStat, varStat)
	return y
}

func (l *batchNormLayer[T]) backward(dy kernels.Tensor[T]) kernels.Tensor[T] {
	dx := l.dxView()
	l.d.BatchNormBackward(l.bn, l.x, l.gamma.value, l.batchMean, l.invStd, dy, dx, l.gamma.grad, l.beta.grad)
	return dx
}

func (l *batchNormLayer[T]) params() []*Param[T] {
	return []*Param[T]{l.gamma, l.beta, l.mean, l.variance}
}
