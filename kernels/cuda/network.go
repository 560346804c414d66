package cuda

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"unsafe"

	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/model"
)

// Network is a model.Spec's network held on the GPU for whole training
// steps: parameters, gradients and every activation live in device memory,
// so a step moves only the parameters in (SetParams, when they change), the
// batch in, the per-sample losses out and the gradients out (Grads) — not
// each layer's tensors, as model.Network on a Backend does through the
// kernels.Backend interface. It computes exactly what model.Network
// computes on the same Backend, with the same kernels and GEMMs in the same
// order, so the two agree bit for bit (TestResidentNetworkMatchesModel).
//
// Parameters and gradients are flat vectors in model.Network's Params
// order (layer by layer, weight then bias), as the worker exchanges them.
// Like Backend, it panics with *Error when the device fails, and it is not
// safe for concurrent use.
type Network struct {
	b        *Backend
	maxBatch int
	inSize   int
	classes  int
	layers   []*netLayer
	// firstParam is the first layer with parameters: backward stops there.
	firstParam int
	names      []string
	shapes     [][]int
	count      int // parameters
	// spans places each parameter tensor in the flat host vector and in
	// the device buffers, where every tensor starts on a 256-byte boundary
	// (as a buffer of its own would, so cuBLAS sees the alignment it sees
	// through the Backend and picks the same kernels).
	spans    []paramSpan
	devCount int // floats of the padded device layout

	params, grads       buffer
	x, labels, samples  buffer
	probs, dlogits      buffer
	rowLoss, rowCorrect buffer
	hostRowLoss         []float64
	hostRowCorrect      []int32
	predictBuf          []float32
	batch               int
	canBackward         bool
	paramsSet           bool
}

// paramSpan is one parameter tensor's place in the host and device
// layouts.
type paramSpan struct{ host, dev, len int }

// deviceAlign is the alignment of each tensor in the device layout, in
// floats (256 bytes, cuMemAlloc's).
const deviceAlign = 64

// addParam appends a tensor of length floats to both layouts and returns
// its device offset.
func (n *Network) addParam(length int) int {
	sp := paramSpan{host: n.count, dev: n.devCount, len: length}
	n.spans = append(n.spans, sp)
	n.count += length
	n.devCount += (length + deviceAlign - 1) / deviceAlign * deviceAlign
	return sp.dev
}

// netLayer is one layer on the device: its kind, shapes and buffers, and
// where its parameters sit in the flat vectors.
type netLayer struct {
	spec          model.LayerSpec
	index         int // in Spec.Layers: keys dropout masks
	in, out       [3]int
	stride        int
	needDx        bool
	relu, fused   bool // a conv applying the next relu; a relu applied by its conv
	wOff, bOff    int  // float offsets into the device params/grads; -1 without
	y, dx, aux    buffer
	x             devPtr // input of the last forward pass
	n             int
	inLen, outLen int // per sample
}

// NewNetwork builds s on b's device for batches of up to maxBatch. The
// spec is validated by model.New, whose parameter names and shapes the
// network checks its own layout against.
func NewNetwork(b *Backend, s model.Spec, maxBatch int) (*Network, error) {
	if maxBatch < 1 {
		return nil, fmt.Errorf("cuda: network: max batch %d: must be at least 1", maxBatch)
	}
	shadow, err := model.New[float32](s, kernels.NewReference[float32](), 1)
	if err != nil {
		return nil, err
	}
	n := &Network{b: b, maxBatch: maxBatch, inSize: shadow.InputSize(), classes: s.Classes}
	for _, p := range shadow.Params() {
		n.names = append(n.names, p.Name)
		n.shapes = append(n.shapes, slices.Clone(p.Shape))
	}
	cur := [3]int{s.Input.Height, s.Input.Width, s.Input.Channels}
	var shapes [][]int
	n.firstParam = -1
	body := s.Layers[:len(s.Layers)-1] // the last is the softmax
	for i, ls := range body {
		l := &netLayer{spec: ls, index: i, in: cur, wOff: -1, bOff: -1, out: cur}
		switch ls.Type {
		case model.LayerConv:
			l.stride = max(ls.Stride, 1)
			l.out = [3]int{(cur[0]+2*ls.Pad-ls.Size)/l.stride + 1, (cur[1]+2*ls.Pad-ls.Size)/l.stride + 1, ls.Filters}
			l.relu = i+1 < len(body) && body[i+1].Type == model.LayerReLU
			l.wOff = n.addParam(ls.Size * ls.Size * cur[2] * ls.Filters)
			l.bOff = n.addParam(ls.Filters)
			shapes = append(shapes, []int{ls.Size, ls.Size, cur[2], ls.Filters}, []int{ls.Filters})
		case model.LayerAffine:
			l.out = [3]int{1, 1, ls.Units}
			in := cur[0] * cur[1] * cur[2]
			l.wOff = n.addParam(in * ls.Units)
			l.bOff = n.addParam(ls.Units)
			shapes = append(shapes, []int{in, ls.Units}, []int{ls.Units})
		case model.LayerMaxPool, model.LayerAvgPool:
			l.stride = ls.Stride
			if l.stride == 0 {
				l.stride = ls.Size
			}
			l.out = [3]int{(cur[0]+2*ls.Pad-ls.Size)/l.stride + 1, (cur[1]+2*ls.Pad-ls.Size)/l.stride + 1, cur[2]}
		case model.LayerReLU:
			l.fused = i > 0 && body[i-1].Type == model.LayerConv
		case model.LayerSigmoid, model.LayerDropout, model.LayerLRN:
		default:
			return nil, fmt.Errorf("cuda: network: layer %d: type %q has no device implementation", i, ls.Type)
		}
		if l.wOff >= 0 && n.firstParam < 0 {
			n.firstParam = i
		}
		l.inLen, l.outLen = cur[0]*cur[1]*cur[2], l.out[0]*l.out[1]*l.out[2]
		n.layers = append(n.layers, l)
		cur = l.out
	}
	if n.firstParam < 0 {
		n.firstParam = len(n.layers)
	}
	for i, l := range n.layers {
		l.needDx = i > n.firstParam
	}
	// The layout must be model.Network's, parameter for parameter.
	if len(shapes) != len(n.shapes) {
		return nil, fmt.Errorf("cuda: network: %d parameter tensors, model has %d", len(shapes), len(n.shapes))
	}
	for i := range shapes {
		if !slices.Equal(shapes[i], n.shapes[i]) {
			return nil, fmt.Errorf("cuda: network: parameter %s has shape %v here, %v in model", n.names[i], shapes[i], n.shapes[i])
		}
	}
	if got := cur[0] * cur[1] * cur[2]; got != s.Classes {
		return nil, fmt.Errorf("cuda: network: %d outputs for %d classes", got, s.Classes)
	}
	n.hostRowLoss = make([]float64, maxBatch)
	n.hostRowCorrect = make([]int32, maxBatch)
	err = b.dev.do(func() error { return n.allocate(b.dev) })
	if err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// allocate sizes every device buffer for maxBatch. Runs inside do.
func (n *Network) allocate(d gpu) error {
	m := n.maxBatch
	sizes := []struct {
		buf    *buffer
		floats int
	}{
		{&n.params, n.devCount}, {&n.grads, n.devCount}, {&n.x, m * n.inSize}, {&n.labels, m},
		{&n.samples, 2 * m}, {&n.probs, m * n.classes}, {&n.dlogits, m * n.classes},
		{&n.rowLoss, 2 * m}, {&n.rowCorrect, m},
	}
	for _, l := range n.layers {
		if !l.fused {
			sizes = append(sizes, struct {
				buf    *buffer
				floats int
			}{&l.y, m * l.outLen})
		}
		if l.needDx {
			sizes = append(sizes, struct {
				buf    *buffer
				floats int
			}{&l.dx, m * l.inLen})
		}
		switch l.spec.Type {
		case model.LayerMaxPool, model.LayerDropout, model.LayerLRN:
			sizes = append(sizes, struct {
				buf    *buffer
				floats int
			}{&l.aux, m * l.outLen})
		}
	}
	for _, s := range sizes {
		if err := ensure(d, s.buf, uintptr(4*max(s.floats, 1))); err != nil {
			return err
		}
	}
	return nil
}

// Close frees the network's device memory (not the Backend's).
func (n *Network) Close() error {
	if n.b == nil || n.b.dev == nil {
		return nil
	}
	return n.b.dev.do(func() error {
		bufs := []*buffer{&n.params, &n.grads, &n.x, &n.labels, &n.samples, &n.probs, &n.dlogits, &n.rowLoss, &n.rowCorrect}
		for _, l := range n.layers {
			bufs = append(bufs, &l.y, &l.dx, &l.aux)
		}
		var first error
		for _, b := range bufs {
			if err := free(n.b.dev, b); err != nil && first == nil {
				first = err
			}
		}
		return first
	})
}

// ParamCount is the length of the flat parameter and gradient vectors.
func (n *Network) ParamCount() int { return n.count }

// ParamNames and ParamShapes describe the flat vector's tensors, in order.
func (n *Network) ParamNames() []string { return n.names }

// ParamShapes gives the shape of each parameter tensor.
func (n *Network) ParamShapes() [][]int { return n.shapes }

// InputSize is the number of values of one input sample.
func (n *Network) InputSize() int { return n.inSize }

// MaxBatch is the largest batch a pass accepts.
func (n *Network) MaxBatch() int { return n.maxBatch }

// SetParams uploads a flat parameter vector.
func (n *Network) SetParams(flat []float32) error {
	if len(flat) != n.count {
		return fmt.Errorf("cuda: network: %d parameters given, network has %d", len(flat), n.count)
	}
	err := n.b.dev.do(func() error {
		for _, sp := range n.spans {
			if err := n.b.dev.copyIn(n.params.ptr.offset(sp.dev), unsafe.Pointer(&flat[sp.host]), uintptr(4*sp.len)); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		n.paramsSet = true
	}
	return err
}

// Grads downloads the gradients of the last Backward into dst, a flat
// vector of ParamCount values.
func (n *Network) Grads(dst []float32) error {
	if len(dst) != n.count {
		return fmt.Errorf("cuda: network: gradient vector of %d for %d parameters", len(dst), n.count)
	}
	return n.b.dev.do(func() error {
		for _, sp := range n.spans {
			if err := download(n.b.dev, dst[sp.host:sp.host+sp.len], n.grads.ptr.offset(sp.dev)); err != nil {
				return err
			}
		}
		return nil
	})
}

// forward runs every layer on the batch already in n.x and returns the
// logits' device address. Runs inside do.
func (n *Network) forward(d gpu, batch int, rc model.RunContext) (devPtr, error) {
	a := n.x.ptr
	for _, l := range n.layers {
		var err error
		if a, err = n.layerForward(d, l, a, batch, rc); err != nil {
			return 0, fmt.Errorf("layer %d (%s): %w", l.index, l.spec.Type, err)
		}
	}
	return a, nil
}

func convGeom(l *netLayer, batch int) kernels.ConvGeom {
	return kernels.ConvGeom{N: batch, H: l.in[0], W: l.in[1], C: l.in[2], OC: l.spec.Filters,
		KH: l.spec.Size, KW: l.spec.Size, Stride: l.stride, Pad: l.spec.Pad}
}

func poolGeom(l *netLayer, batch int) kernels.PoolGeom {
	return kernels.PoolGeom{N: batch, H: l.in[0], W: l.in[1], C: l.in[2], Size: l.spec.Size, Stride: l.stride, Pad: l.spec.Pad}
}

func lrnParams(l *netLayer, batch int) kernels.LRNParams {
	return kernels.LRNParams{Rows: batch * l.in[0] * l.in[1], C: l.in[2], Size: l.spec.Size, Alpha: l.spec.Alpha, Beta: l.spec.Beta, K: l.spec.K}
}

// dropoutParams is the layer's kernels.DropoutParams, keyed as
// model.Network keys them (the layer's index in Spec.Layers).
func dropoutParams(l *netLayer, rc model.RunContext) kernels.DropoutParams {
	return kernels.DropoutParams{Ratio: l.spec.Ratio, Inverted: l.spec.Inverted, Train: rc.Train, Seed: rc.Seed, Step: rc.Step, Layer: uint32(l.index)}
}

// layerForward mirrors model's layers' forward methods on device tensors.
func (n *Network) layerForward(d gpu, l *netLayer, x devPtr, batch int, rc model.RunContext) (devPtr, error) {
	l.x, l.n = x, batch
	y := l.y.ptr
	outN := int64(batch * l.outLen)
	switch l.spec.Type {
	case model.LayerConv:
		epilogue := "dp_add_bias"
		if l.relu {
			epilogue = "dp_add_bias_relu"
		}
		return y, n.b.convForwardOn(d, convGeom(l, batch), x, n.params.ptr.offset(l.wOff), n.params.ptr.offset(l.bOff), y, epilogue)
	case model.LayerAffine:
		return y, n.b.affineForwardOn(d, batch, l.inLen, l.outLen, x, n.params.ptr.offset(l.wOff), n.params.ptr.offset(l.bOff), y)
	case model.LayerMaxPool:
		g := poolGeom(l, batch)
		return y, d.launch("dp_maxpool_fwd", outN, append([]any{x, y, l.aux.ptr}, poolArgs(g)...)...)
	case model.LayerAvgPool:
		g := poolGeom(l, batch)
		return y, d.launch("dp_avgpool_fwd", outN, append([]any{x, y}, poolArgs(g)...)...)
	case model.LayerReLU:
		if l.fused {
			return x, nil
		}
		return y, d.launch("dp_relu_fwd", outN, x, y, outN)
	case model.LayerSigmoid:
		return y, d.launch("dp_sigmoid_fwd", outN, x, y, outN)
	case model.LayerDropout:
		p := dropoutParams(l, rc)
		if !p.Train {
			return y, d.launch("dp_scale", outN, x, y, outN, float32(kernels.DropoutTestScale(p)))
		}
		blocks := int64(batch) * int64((l.outLen+3)/4)
		return y, d.launch("dp_dropout_fwd", blocks, x, y, l.aux.ptr, n.samples.ptr, int64(batch), int64(l.outLen),
			uint32(p.Seed), uint32(p.Seed>>32), uint32(p.Step), p.Layer, float32(p.Ratio), float32(kernels.DropoutScale(p)))
	case model.LayerLRN:
		p := lrnParams(l, batch)
		before, after := lrnWindow(p)
		return y, d.launch("dp_lrn_fwd", outN, x, y, l.aux.ptr, int64(p.Rows), int64(p.C), before, after,
			p.K, p.Alpha/float64(p.Size), p.Beta)
	}
	return 0, fmt.Errorf("no device forward for %q", l.spec.Type)
}

// layerBackward mirrors model's layers' backward methods; it returns the
// input gradient's address, 0 when the layer computes none.
func (n *Network) layerBackward(d gpu, l *netLayer, dy devPtr) (devPtr, error) {
	batch := l.n
	dx := devPtr(0)
	if l.needDx {
		dx = l.dx.ptr
	}
	inN := int64(batch * l.inLen)
	switch l.spec.Type {
	case model.LayerConv:
		g := convGeom(l, batch)
		if err := n.b.convBackwardFilterOn(d, g, l.x, dy, n.grads.ptr.offset(l.wOff), n.grads.ptr.offset(l.bOff)); err != nil {
			return 0, err
		}
		if dx != 0 {
			return dx, n.b.convBackwardDataOn(d, g, dy, n.params.ptr.offset(l.wOff), dx)
		}
		return 0, nil
	case model.LayerAffine:
		return dx, n.b.affineBackwardOn(d, batch, l.inLen, l.outLen, l.x, n.params.ptr.offset(l.wOff), dy, dx,
			n.grads.ptr.offset(l.wOff), n.grads.ptr.offset(l.bOff))
	}
	if dx == 0 {
		return 0, nil
	}
	switch l.spec.Type {
	case model.LayerMaxPool:
		return dx, d.launch("dp_maxpool_bwd", inN, append([]any{dy, l.aux.ptr, dx}, poolArgs(poolGeom(l, batch))...)...)
	case model.LayerAvgPool:
		return dx, d.launch("dp_avgpool_bwd", inN, append([]any{dy, dx}, poolArgs(poolGeom(l, batch))...)...)
	case model.LayerReLU:
		y := l.y.ptr
		if l.fused {
			y = l.x // the conv's output, after the relu
		}
		return dx, d.launch("dp_relu_bwd", inN, y, dy, dx, inN)
	case model.LayerSigmoid:
		return dx, d.launch("dp_sigmoid_bwd", inN, l.y.ptr, dy, dx, inN)
	case model.LayerDropout:
		return dx, d.launch("dp_mul", inN, dy, l.aux.ptr, dx, inN)
	case model.LayerLRN:
		p := lrnParams(l, batch)
		before, after := lrnWindow(p)
		return dx, d.launch("dp_lrn_bwd", inN, l.x, l.y.ptr, l.aux.ptr, dy, dx, int64(p.Rows), int64(p.C),
			before, after, p.Beta, 2*p.Alpha*p.Beta/float64(p.Size))
	}
	return 0, fmt.Errorf("no device backward for %q", l.spec.Type)
}

// checkBatch refuses a batch the network cannot take.
func (n *Network) checkBatch(x []float32, batch int) error {
	if batch < 1 || batch > n.maxBatch {
		return fmt.Errorf("cuda: network: batch %d outside [1, %d]", batch, n.maxBatch)
	}
	if len(x) < batch*n.inSize {
		return fmt.Errorf("cuda: network: input has %d values, want %d for a batch of %d", len(x), batch*n.inSize, batch)
	}
	if !n.paramsSet {
		return errors.New("cuda: network: no parameters (call SetParams first)")
	}
	return nil
}

// Loss runs a forward pass over len(labels) samples of x, then softmax
// with cross-entropy, as model.Network.Loss: it returns the summed loss and
// the number of correct samples, and keeps the loss gradient, scaled by
// gradScale, for Backward. Bad arguments and device failures are errors.
func (n *Network) Loss(x []float32, labels []int32, samples []int64, rc model.RunContext, gradScale float32) (lossSum float64, correct int, err error) {
	batch := len(labels)
	if err := n.checkBatch(x, batch); err != nil {
		return 0, 0, err
	}
	for i, label := range labels {
		if label < 0 || int(label) >= n.classes {
			return 0, 0, fmt.Errorf("cuda: network: row %d: label %d outside [0, %d)", i, label, n.classes)
		}
	}
	if rc.Train && len(samples) < batch {
		return 0, 0, fmt.Errorf("cuda: network: dropout in training needs the dataset index of every sample: %d for a batch of %d", len(samples), batch)
	}
	n.batch, n.canBackward = batch, false
	rowLoss, rowCorrect := n.hostRowLoss[:batch], n.hostRowCorrect[:batch]
	err = n.b.try(func(d gpu) error {
		if _, err := upload(d, &n.x, x[:batch*n.inSize]); err != nil {
			return err
		}
		if _, err := upload(d, &n.labels, labels); err != nil {
			return err
		}
		if len(samples) > 0 {
			if _, err := upload(d, &n.samples, samples[:min(len(samples), batch)]); err != nil {
				return err
			}
		}
		logits, err := n.forward(d, batch, rc)
		if err != nil {
			return err
		}
		if err := d.launch("dp_softmax_xent", int64(batch), logits, n.labels.ptr, n.probs.ptr, n.dlogits.ptr,
			n.rowLoss.ptr, n.rowCorrect.ptr, int64(batch), int64(n.classes), float64(gradScale), math.Log(1e-7)); err != nil {
			return err
		}
		if err := download(d, rowLoss, n.rowLoss.ptr); err != nil {
			return err
		}
		return download(d, rowCorrect, n.rowCorrect.ptr)
	})
	if err != nil {
		return 0, 0, err
	}
	for i := range batch {
		lossSum += rowLoss[i]
		correct += int(rowCorrect[i])
	}
	n.canBackward = rc.Train
	return lossSum, correct, nil
}

// Backward propagates the loss gradient of the last Loss call (in
// training) and overwrites the device gradients; Grads fetches them.
func (n *Network) Backward() error {
	if !n.canBackward {
		return errors.New("cuda: network: backward without a training-mode Loss before it")
	}
	return n.b.try(func(d gpu) error {
		dy := n.dlogits.ptr
		for i := len(n.layers) - 1; i >= n.firstParam; i-- {
			l := n.layers[i]
			var err error
			if dy, err = n.layerBackward(d, l, dy); err != nil {
				return fmt.Errorf("layer %d (%s) backward: %w", l.index, l.spec.Type, err)
			}
		}
		return nil
	})
}

// Predict writes the arg-max class of each of batch samples of x to dst,
// at test time, in chunks of at most MaxBatch.
func (n *Network) Predict(x []float32, batch int, dst []int32) error {
	if len(dst) < batch {
		return fmt.Errorf("cuda: network: predict: %d destinations for a batch of %d", len(dst), batch)
	}
	for start := 0; start < batch; start += n.maxBatch {
		m := min(n.maxBatch, batch-start)
		chunk := x[start*n.inSize:]
		if err := n.checkBatch(chunk, m); err != nil {
			return err
		}
		if cap(n.predictBuf) < m*n.classes {
			n.predictBuf = make([]float32, n.maxBatch*n.classes)
		}
		logits := n.predictBuf[:m*n.classes]
		err := n.b.try(func(d gpu) error {
			if _, err := upload(d, &n.x, chunk[:m*n.inSize]); err != nil {
				return err
			}
			lp, err := n.forward(d, m, model.RunContext{})
			if err != nil {
				return err
			}
			return download(d, logits, lp)
		})
		n.canBackward = false
		if err != nil {
			return err
		}
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
	return nil
}
