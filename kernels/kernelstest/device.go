package kernelstest

import (
	"testing"

	"github.com/dpcnn/dpcnn/kernels"
)

// TestDevice runs the suite on d, a Device of b: every operation d has
// runs on d (see ViaDevice), the rest on b.
func TestDevice(t *testing.T, b kernels.Backend[float32], d kernels.Device[float32]) {
	TestBackend(t, ViaDevice(t, b, d))
}

// ViaDevice is b with every operation that d has computed on d instead:
// each slice argument is uploaded into a tensor of d's own (one tensor for
// arguments that are the same slice, so the in-place forms stay in place),
// the operation runs on the tensors, every tensor is downloaded back into
// its slice (inputs too, so that an operation writing an input shows) and
// freed, and d is synchronised, an error failing t. Gemm, Im2Col, Col2Im,
// AddBias and the optimizer updates, which a Device does not have, are
// b's. It lets the conformance suite, written on slices, check a Device.
func ViaDevice(t testing.TB, b kernels.Backend[float32], d kernels.Device[float32]) kernels.Backend[float32] {
	return &viaDevice{Backend: b, t: t, d: d}
}

type viaDevice struct {
	kernels.Backend[float32]
	t testing.TB
	d kernels.Device[float32]
}

// staging is the tensors of one call.
type staging struct {
	v       *viaDevice
	floats  []stagedFloats
	indices []stagedIndices
	samples []kernels.Tensor[int64]
}

type stagedFloats struct {
	host []float32
	dev  kernels.Tensor[float32]
}

type stagedIndices struct {
	host []int32
	dev  kernels.Tensor[int32]
}

func (v *viaDevice) begin() *staging { return &staging{v: v} }

// same reports slices with the same first element and length.
func same[E any](a, b []E) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// f is the tensor of s: the zero Tensor for nil, else s uploaded.
func (s *staging) f(host []float32) kernels.Tensor[float32] {
	if host == nil {
		return kernels.Tensor[float32]{}
	}
	for _, st := range s.floats {
		if same(st.host, host) {
			return st.dev
		}
	}
	m := s.v.d.Memory()
	dev, err := kernels.Alloc[float32](m, len(host))
	if err != nil {
		s.v.t.Fatalf("%s: allocate %d floats: %v", s.v.d.Name(), len(host), err)
	}
	kernels.Upload(m, dev, host)
	s.floats = append(s.floats, stagedFloats{host, dev})
	return dev
}

// i is f for int32 slices.
func (s *staging) i(host []int32) kernels.Tensor[int32] {
	if host == nil {
		return kernels.Tensor[int32]{}
	}
	for _, st := range s.indices {
		if same(st.host, host) {
			return st.dev
		}
	}
	m := s.v.d.Memory()
	dev, err := kernels.Alloc[int32](m, len(host))
	if err != nil {
		s.v.t.Fatalf("%s: allocate %d indices: %v", s.v.d.Name(), len(host), err)
	}
	kernels.Upload(m, dev, host)
	s.indices = append(s.indices, stagedIndices{host, dev})
	return dev
}

// samples uploads dataset indices, which no operation writes.
func (s *staging) s(host []int64) kernels.Tensor[int64] {
	if host == nil {
		return kernels.Tensor[int64]{}
	}
	m := s.v.d.Memory()
	dev, err := kernels.Alloc[int64](m, len(host))
	if err != nil {
		s.v.t.Fatalf("%s: allocate %d samples: %v", s.v.d.Name(), len(host), err)
	}
	kernels.Upload(m, dev, host)
	s.samples = append(s.samples, dev)
	return dev
}

// end downloads and frees every tensor and synchronises.
func (s *staging) end() {
	m := s.v.d.Memory()
	for _, st := range s.floats {
		kernels.Download(m, st.host, st.dev)
	}
	for _, st := range s.indices {
		kernels.Download(m, st.host, st.dev)
	}
	if err := s.v.d.Sync(); err != nil {
		s.v.t.Fatalf("%s: %v", s.v.d.Name(), err)
	}
	for _, st := range s.floats {
		s.free(kernels.Free(m, st.dev))
	}
	for _, st := range s.indices {
		s.free(kernels.Free(m, st.dev))
	}
	for _, dev := range s.samples {
		s.free(kernels.Free(m, dev))
	}
}

func (s *staging) free(err error) {
	if err != nil {
		s.v.t.Fatalf("%s: free: %v", s.v.d.Name(), err)
	}
}

func (v *viaDevice) ConvForward(g kernels.ConvGeom, x, w, bias, y []float32) {
	s := v.begin()
	v.d.ConvForward(g, s.f(x), s.f(w), s.f(bias), s.f(y))
	s.end()
}

func (v *viaDevice) ConvForwardReLU(g kernels.ConvGeom, x, w, bias, y []float32) {
	s := v.begin()
	v.d.ConvForwardReLU(g, s.f(x), s.f(w), s.f(bias), s.f(y))
	s.end()
}

func (v *viaDevice) ConvBackwardData(g kernels.ConvGeom, dy, w, dx []float32) {
	s := v.begin()
	v.d.ConvBackwardData(g, s.f(dy), s.f(w), s.f(dx))
	s.end()
}

func (v *viaDevice) ConvBackwardFilter(g kernels.ConvGeom, x, dy, dw, dbias []float32) {
	s := v.begin()
	v.d.ConvBackwardFilter(g, s.f(x), s.f(dy), s.f(dw), s.f(dbias))
	s.end()
}

func (v *viaDevice) MaxPoolForward(g kernels.PoolGeom, x, y []float32, argmax []int32) {
	s := v.begin()
	v.d.MaxPoolForward(g, s.f(x), s.f(y), s.i(argmax))
	s.end()
}

func (v *viaDevice) MaxPoolBackward(g kernels.PoolGeom, dy []float32, argmax []int32, dx []float32) {
	s := v.begin()
	v.d.MaxPoolBackward(g, s.f(dy), s.i(argmax), s.f(dx))
	s.end()
}

func (v *viaDevice) AvgPoolForward(g kernels.PoolGeom, x, y []float32) {
	s := v.begin()
	v.d.AvgPoolForward(g, s.f(x), s.f(y))
	s.end()
}

func (v *viaDevice) AvgPoolBackward(g kernels.PoolGeom, dy, dx []float32) {
	s := v.begin()
	v.d.AvgPoolBackward(g, s.f(dy), s.f(dx))
	s.end()
}

func (v *viaDevice) ReLUForward(x, y []float32) {
	s := v.begin()
	v.d.ReLUForward(s.f(x), s.f(y))
	s.end()
}

func (v *viaDevice) ReLUBackward(y, dy, dx []float32) {
	s := v.begin()
	v.d.ReLUBackward(s.f(y), s.f(dy), s.f(dx))
	s.end()
}

func (v *viaDevice) SigmoidForward(x, y []float32) {
	s := v.begin()
	v.d.SigmoidForward(s.f(x), s.f(y))
	s.end()
}

func (v *viaDevice) SigmoidBackward(y, dy, dx []float32) {
	s := v.begin()
	v.d.SigmoidBackward(s.f(y), s.f(dy), s.f(dx))
	s.end()
}

func (v *viaDevice) AffineForward(n, in, out int, x, w, bias, y []float32) {
	s := v.begin()
	v.d.AffineForward(n, in, out, s.f(x), s.f(w), s.f(bias), s.f(y))
	s.end()
}

func (v *viaDevice) AffineBackward(n, in, out int, x, w, dy, dx, dw, dbias []float32) {
	s := v.begin()
	v.d.AffineBackward(n, in, out, s.f(x), s.f(w), s.f(dy), s.f(dx), s.f(dw), s.f(dbias))
	s.end()
}

func (v *viaDevice) SoftmaxCrossEntropy(n, classes int, logits []float32, labels []int32, scale float32, probs, dlogits []float32) (float64, int) {
	s := v.begin()
	loss, correct := v.d.SoftmaxCrossEntropy(n, classes, s.f(logits), s.i(labels), scale, s.f(probs), s.f(dlogits))
	s.end()
	return loss, correct
}

func (v *viaDevice) DropoutForward(d kernels.DropoutParams, rows, cols int, samples []int64, x, y, mask []float32) {
	s := v.begin()
	v.d.DropoutForward(d, rows, cols, s.s(samples), s.f(x), s.f(y), s.f(mask))
	s.end()
}

func (v *viaDevice) DropoutBackward(mask, dy, dx []float32) {
	s := v.begin()
	v.d.DropoutBackward(s.f(mask), s.f(dy), s.f(dx))
	s.end()
}

func (v *viaDevice) LRNForward(p kernels.LRNParams, x, y, scale []float32) {
	s := v.begin()
	v.d.LRNForward(p, s.f(x), s.f(y), s.f(scale))
	s.end()
}

func (v *viaDevice) LRNBackward(p kernels.LRNParams, x, y, scale, dy, dx []float32) {
	s := v.begin()
	v.d.LRNBackward(p, s.f(x), s.f(y), s.f(scale), s.f(dy), s.f(dx))
	s.end()
}

func (v *viaDevice) BatchNormForwardTrain(p kernels.BatchNormParams, x, gamma, beta, y, mean, invStd, meanStat, varStat []float32) {
	s := v.begin()
	v.d.BatchNormForwardTrain(p, s.f(x), s.f(gamma), s.f(beta), s.f(y), s.f(mean), s.f(invStd), s.f(meanStat), s.f(varStat))
	s.end()
}

func (v *viaDevice) BatchNormForwardInfer(p kernels.BatchNormParams, x, gamma, beta, runMean, runVar, y []float32) {
	s := v.begin()
	v.d.BatchNormForwardInfer(p, s.f(x), s.f(gamma), s.f(beta), s.f(runMean), s.f(runVar), s.f(y))
	s.end()
}

func (v *viaDevice) BatchNormBackward(p kernels.BatchNormParams, x, gamma, mean, invStd, dy, dx, dgamma, dbeta []float32) {
	s := v.begin()
	v.d.BatchNormBackward(p, s.f(x), s.f(gamma), s.f(mean), s.f(invStd), s.f(dy), s.f(dx), s.f(dgamma), s.f(dbeta))
	s.end()
}
