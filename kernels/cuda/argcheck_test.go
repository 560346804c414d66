package cuda

import (
	"fmt"
	"strings"
	"testing"

	"github.com/dpcnn/dpcnn/kernels"
)

// panicMessage runs f and returns what it panicked with, as text, or ""
// when it returned normally.
func panicMessage(f func()) (msg string) {
	defer func() {
		switch r := recover().(type) {
		case nil:
		case error:
			msg = r.Error()
		default:
			msg = fmt.Sprint(r)
		}
	}()
	f()
	return ""
}

// TestArgumentChecksMatchCPU makes bad calls of every method on the CPU
// backend and on a CUDA backend without a device: the checks run on the
// host before the device is touched, so they work here, and each must
// refuse the call with the CPU's message (naming cuda instead of cpu).
func TestArgumentChecksMatchCPU(t *testing.T) {
	cpu := kernels.NewCPU(1)
	defer cpu.Close()
	noDevice := &Backend{}
	s := func(n int) []float32 { return make([]float32, n) }
	idx := func(n int) []int32 { return make([]int32, n) }
	conv := kernels.ConvGeom{N: 2, H: 5, W: 5, C: 3, OC: 4, KH: 3, KW: 3, Stride: 1, Pad: 1}
	in, out, filt, cols := conv.InLen(), conv.OutLen(), conv.FilterLen(), conv.ColRows()*conv.ColCols()
	badConv := conv
	badConv.Stride = 0
	pool := kernels.PoolGeom{N: 2, H: 4, W: 4, C: 3, Size: 2, Stride: 2}
	pin, pout := pool.InLen(), pool.OutLen()
	badPool := pool
	badPool.Pad = 2
	lrn := kernels.LRNParams{Rows: 4, C: 5, Size: 3, Alpha: 1, Beta: 0.75, K: 1}
	bn := kernels.BatchNormParams{Rows: 4, C: 5, Eps: 1e-5, StatWeight: 0.1}
	drop := kernels.DropoutParams{Ratio: 0.5, Train: true}
	adam := kernels.AdamParams{LR: 0.001, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, T: 1}

	cases := []struct {
		name string
		call func(b kernels.Backend[float32])
	}{
		{"Gemm c", func(b kernels.Backend[float32]) { b.Gemm(false, false, 2, 3, 4, 1, s(8), 4, s(12), 3, 0, s(5), 3) }},
		{"Gemm a", func(b kernels.Backend[float32]) { b.Gemm(true, false, 2, 3, 4, 1, s(7), 2, s(12), 3, 0, s(6), 3) }},
		{"Gemm b", func(b kernels.Backend[float32]) { b.Gemm(false, true, 2, 3, 4, 1, s(8), 4, s(11), 4, 1, s(6), 3) }},
		{"Im2Col geometry", func(b kernels.Backend[float32]) { b.Im2Col(badConv, s(in), s(cols)) }},
		{"Im2Col x", func(b kernels.Backend[float32]) { b.Im2Col(conv, s(in-1), s(cols)) }},
		{"Im2Col col", func(b kernels.Backend[float32]) { b.Im2Col(conv, s(in), s(cols-1)) }},
		{"Col2Im col", func(b kernels.Backend[float32]) { b.Col2Im(conv, s(cols-1), s(in)) }},
		{"Col2Im dx", func(b kernels.Backend[float32]) { b.Col2Im(conv, s(cols), s(in-1)) }},
		{"ConvForward geometry", func(b kernels.Backend[float32]) { b.ConvForward(badConv, s(in), s(filt), s(4), s(out)) }},
		{"ConvForward w", func(b kernels.Backend[float32]) { b.ConvForward(conv, s(in), s(filt-1), s(4), s(out)) }},
		{"ConvForward bias", func(b kernels.Backend[float32]) { b.ConvForward(conv, s(in), s(filt), s(3), s(out)) }},
		{"ConvForward y", func(b kernels.Backend[float32]) { b.ConvForward(conv, s(in), s(filt), s(4), s(out-1)) }},
		{"ConvForwardReLU x", func(b kernels.Backend[float32]) { b.ConvForwardReLU(conv, s(in-1), s(filt), s(4), s(out)) }},
		{"ConvBackwardData dx", func(b kernels.Backend[float32]) { b.ConvBackwardData(conv, s(out), s(filt), s(in-1)) }},
		{"ConvBackwardData dy", func(b kernels.Backend[float32]) { b.ConvBackwardData(conv, s(out-1), s(filt), s(in)) }},
		{"ConvBackwardFilter dbias", func(b kernels.Backend[float32]) { b.ConvBackwardFilter(conv, s(in), s(out), s(filt), s(3)) }},
		{"ConvBackwardFilter dw", func(b kernels.Backend[float32]) { b.ConvBackwardFilter(conv, s(in), s(out), s(filt-1), s(4)) }},
		{"AddBias y", func(b kernels.Backend[float32]) { b.AddBias(3, 4, s(4), s(11)) }},
		{"AddBias bias", func(b kernels.Backend[float32]) { b.AddBias(3, 4, s(3), s(12)) }},
		{"MaxPoolForward geometry", func(b kernels.Backend[float32]) { b.MaxPoolForward(badPool, s(pin), s(pout), idx(pout)) }},
		{"MaxPoolForward argmax", func(b kernels.Backend[float32]) { b.MaxPoolForward(pool, s(pin), s(pout), idx(pout-1)) }},
		{"MaxPoolBackward dx", func(b kernels.Backend[float32]) { b.MaxPoolBackward(pool, s(pout), idx(pout), s(pin-1)) }},
		{"AvgPoolForward y", func(b kernels.Backend[float32]) { b.AvgPoolForward(pool, s(pin), s(pout-1)) }},
		{"AvgPoolBackward dx", func(b kernels.Backend[float32]) { b.AvgPoolBackward(pool, s(pout), s(pin-1)) }},
		{"ReLUForward y", func(b kernels.Backend[float32]) { b.ReLUForward(s(9), s(8)) }},
		{"ReLUBackward dx", func(b kernels.Backend[float32]) { b.ReLUBackward(s(9), s(9), s(8)) }},
		{"ReLUBackward y", func(b kernels.Backend[float32]) { b.ReLUBackward(s(8), s(9), s(9)) }},
		{"SigmoidForward y", func(b kernels.Backend[float32]) { b.SigmoidForward(s(9), s(8)) }},
		{"SigmoidBackward y", func(b kernels.Backend[float32]) { b.SigmoidBackward(s(8), s(9), s(9)) }},
		{"AffineForward bias", func(b kernels.Backend[float32]) { b.AffineForward(2, 3, 4, s(6), s(12), s(3), s(8)) }},
		{"AffineForward y", func(b kernels.Backend[float32]) { b.AffineForward(2, 3, 4, s(6), s(12), s(4), s(7)) }},
		{"AffineBackward dx", func(b kernels.Backend[float32]) { b.AffineBackward(2, 3, 4, s(6), s(12), s(8), s(5), s(12), s(4)) }},
		{"AffineBackward dw", func(b kernels.Backend[float32]) { b.AffineBackward(2, 3, 4, s(6), s(12), s(8), nil, s(11), s(4)) }},
		{"SoftmaxCrossEntropy labels", func(b kernels.Backend[float32]) {
			b.SoftmaxCrossEntropy(3, 10, s(30), idx(2), 1, s(30), s(30))
		}},
		{"SoftmaxCrossEntropy bad label", func(b kernels.Backend[float32]) {
			b.SoftmaxCrossEntropy(3, 10, s(30), []int32{1, 10, 2}, 1, s(30), s(30))
		}},
		{"SoftmaxCrossEntropy probs", func(b kernels.Backend[float32]) {
			b.SoftmaxCrossEntropy(3, 10, s(30), idx(3), 1, s(29), s(30))
		}},
		{"DropoutForward samples", func(b kernels.Backend[float32]) { b.DropoutForward(drop, 3, 4, make([]int64, 2), s(12), s(12), s(12)) }},
		{"DropoutForward mask", func(b kernels.Backend[float32]) { b.DropoutForward(drop, 3, 4, make([]int64, 3), s(12), s(12), s(11)) }},
		{"DropoutForward x", func(b kernels.Backend[float32]) { b.DropoutForward(drop, 3, 4, make([]int64, 3), s(11), s(12), s(12)) }},
		{"DropoutBackward mask", func(b kernels.Backend[float32]) { b.DropoutBackward(s(11), s(12), s(12)) }},
		{"LRNForward scale", func(b kernels.Backend[float32]) { b.LRNForward(lrn, s(20), s(20), s(19)) }},
		{"LRNBackward dy", func(b kernels.Backend[float32]) { b.LRNBackward(lrn, s(20), s(20), s(20), s(19), s(20)) }},
		{"BatchNormForwardTrain x", func(b kernels.Backend[float32]) {
			b.BatchNormForwardTrain(bn, s(19), s(5), s(5), s(20), s(5), s(5), nil, nil)
		}},
		{"BatchNormForwardTrain beta", func(b kernels.Backend[float32]) {
			b.BatchNormForwardTrain(bn, s(20), s(5), s(4), s(20), s(5), s(5), s(5), s(5))
		}},
		{"BatchNormForwardTrain invStd", func(b kernels.Backend[float32]) {
			b.BatchNormForwardTrain(bn, s(20), s(5), s(5), s(20), s(5), s(4), nil, nil)
		}},
		{"BatchNormForwardTrain varStat", func(b kernels.Backend[float32]) {
			b.BatchNormForwardTrain(bn, s(20), s(5), s(5), s(20), s(5), s(5), s(5), s(4))
		}},
		{"BatchNormForwardInfer runVar", func(b kernels.Backend[float32]) {
			b.BatchNormForwardInfer(bn, s(20), s(5), s(5), s(5), s(4), s(20))
		}},
		{"BatchNormForwardInfer y", func(b kernels.Backend[float32]) {
			b.BatchNormForwardInfer(bn, s(20), s(5), s(5), s(5), s(5), s(19))
		}},
		{"BatchNormBackward dx", func(b kernels.Backend[float32]) {
			b.BatchNormBackward(bn, s(20), s(5), s(5), s(5), s(20), s(19), s(5), s(5))
		}},
		{"BatchNormBackward dy", func(b kernels.Backend[float32]) {
			b.BatchNormBackward(bn, s(20), s(5), s(5), s(5), s(19), nil, s(5), s(5))
		}},
		{"BatchNormBackward dbeta", func(b kernels.Backend[float32]) {
			b.BatchNormBackward(bn, s(20), s(5), s(5), s(5), s(20), nil, s(5), s(4))
		}},
		{"SGDUpdate g", func(b kernels.Backend[float32]) { b.SGDUpdate(0.1, s(5), s(4)) }},
		{"MomentumUpdate v", func(b kernels.Backend[float32]) { b.MomentumUpdate(0.1, 0.9, s(5), s(5), s(4)) }},
		{"AdaGradUpdate h", func(b kernels.Backend[float32]) { b.AdaGradUpdate(0.1, s(5), s(5), s(4)) }},
		{"AdamUpdate v", func(b kernels.Backend[float32]) { b.AdamUpdate(adam, s(5), s(5), s(5), s(4)) }},
	}
	for _, c := range cases {
		cpuMsg := panicMessage(func() { c.call(cpu) })
		cudaMsg := panicMessage(func() { c.call(noDevice) })
		if cpuMsg == "" {
			t.Errorf("%s: the CPU backend accepted the call; the case is wrong", c.name)
			continue
		}
		want := strings.Replace(cpuMsg, "kernels: cpu:", "kernels: cuda:", 1)
		if cudaMsg != want {
			t.Errorf("%s: cuda panicked with %q, want %q", c.name, cudaMsg, want)
		}
	}
}

// TestValidCallsReachTheDevice checks that a call whose arguments are fine
// gets past the checks: on a backend without a device it then says so
// rather than computing anything.
func TestValidCallsReachTheDevice(t *testing.T) {
	msg := panicMessage(func() { (&Backend{}).ReLUForward(make([]float32, 4), make([]float32, 4)) })
	if !strings.Contains(msg, "backend is not open") {
		t.Errorf("valid call on a closed backend panicked with %q", msg)
	}
	// Empty work needs no device at all.
	if msg := panicMessage(func() { (&Backend{}).ReLUForward(nil, nil) }); msg != "" {
		t.Errorf("empty ReLUForward panicked: %s", msg)
	}
	if msg := panicMessage(func() { (&Backend{}).Gemm(false, false, 0, 3, 3, 1, nil, 3, nil, 3, 0, nil, 3) }); msg != "" {
		t.Errorf("Gemm with m = 0 panicked: %s", msg)
	}
}
