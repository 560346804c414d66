package worker

import (
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/kernels"
)

// panickingBackend panics when armed: in its loss kernel with a runtime
// error (an index out of range), as a bug would, and in its affine kernel
// as an assertion would.
type panickingBackend struct {
	kernels.Backend[float32]
	armedLoss, armedAffine bool
}

func (b *panickingBackend) SoftmaxCrossEntropy(n, classes int, logits []float32, labels []int32, scale float32, probs, dlogits []float32) (float64, int) {
	if b.armedLoss {
		return float64(labels[n+1_000_000]), 0 // out of range on purpose
	}
	return b.Backend.SoftmaxCrossEntropy(n, classes, logits, labels, scale, probs, dlogits)
}

func (b *panickingBackend) AffineForward(n, in, out int, x, w, bias, y []float32) {
	if b.armedAffine {
		panic("kernels: affine fault (on purpose)")
	}
	b.Backend.AffineForward(n, in, out, x, w, bias, y)
}

// tinySet is n blank 28×28 images labelled 0 to 9 in turn.
func tinySet(t *testing.T, n int) *dataset.Set {
	t.Helper()
	labels := make([]uint8, n)
	for i := range labels {
		labels[i] = uint8(i % 10)
	}
	set, err := dataset.NewSet("tiny", &dataset.Images{N: n, Rows: 28, Cols: 28, Pixels: make([]uint8, n*28*28)}, labels, 10)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// A panic inside a Computer's computation comes back as a *ComputeFault
// that says what was computed and wraps the panic's error, and the
// Computer computes the next micro-batch as if nothing had happened.
func TestComputerRecoversFaults(t *testing.T) {
	b := &panickingBackend{Backend: kernels.NewReference[float32](), armedLoss: true}
	set := tinySet(t, 20)
	comp, err := NewComputer(job.Spec{Network: "lenet", Batch: 4, MicroBatch: 4, Steps: 1}.WithDefaults(), b, set, 4)
	if err != nil {
		t.Fatal(err)
	}
	grad := make([]float32, comp.ParamCount())
	mb := MicroBatch{Epoch: 0, Step: 2, Indices: []int32{0, 1, 2, 3}}
	_, _, err = comp.Gradients(mb, grad)
	var fault *ComputeFault
	var rt runtime.Error
	if !errors.As(err, &fault) || !errors.As(err, &rt) || !strings.Contains(err.Error(), "worker: fault in gradients of step 3: runtime error: index out of range") {
		t.Fatalf("Gradients: %v", err)
	}
	if !strings.Contains(string(fault.Stack), "SoftmaxCrossEntropy") {
		t.Errorf("the fault's stack does not show where it happened:\n%s", fault.Stack)
	}
	b.armedLoss, b.armedAffine = false, true
	if _, err := comp.Evaluate(set, 0, 8); err == nil || !strings.Contains(err.Error(), "fault in evaluating test samples [0, 8): kernels: affine fault (on purpose)") {
		t.Errorf("Evaluate: %v", err)
	}

	b.armedAffine = false
	if _, _, err := comp.Gradients(mb, grad); err != nil {
		t.Fatalf("after the fault: %v", err)
	}
	if _, err := comp.Evaluate(set, 0, 8); err != nil {
		t.Fatalf("after the fault: %v", err)
	}
}

// failingDevice is the reference backend's host Device, whose Sync reports
// an injected failure once when armed, as a device that latched an error
// during a pass does.
type failingDevice struct {
	kernels.Device[float32]
	fail error
}

func (d *failingDevice) Sync() error {
	if err := d.fail; err != nil {
		d.fail = nil
		return err
	}
	return d.Device.Sync()
}

// failingBackend is the reference backend with failingDevice as its
// Device.
type failingBackend struct {
	kernels.Backend[float32]
	dev *failingDevice
}

func (b *failingBackend) Device() kernels.Device[float32] { return b.dev }

// A device failure comes back from Gradients and Evaluate as an error that
// wraps it, says which step failed, and is not a fault (no panic was
// involved); the Computer computes the next micro-batch as usual.
func TestComputerReturnsDeviceErrors(t *testing.T) {
	ref := kernels.NewReference[float32]()
	b := &failingBackend{Backend: ref, dev: &failingDevice{Device: kernels.OnHost[float32](ref)}}
	set := tinySet(t, 20)
	comp, err := NewComputer(job.Spec{Network: "lenet", Batch: 4, MicroBatch: 4, Steps: 1}.WithDefaults(), b, set, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer comp.Close()
	grad := make([]float32, comp.ParamCount())
	mb := MicroBatch{Epoch: 0, Step: 2, Indices: []int32{0, 1, 2, 3}}
	injected := errors.New("ConvForward: cuda: cuMemAlloc_v2: CUDA_ERROR_OUT_OF_MEMORY (2) (injected)")
	b.dev.fail = injected
	_, _, err = comp.Gradients(mb, grad)
	var fault *ComputeFault
	if !errors.Is(err, injected) || errors.As(err, &fault) || err.Error() != "worker: step 3: model: loss: "+injected.Error() {
		t.Errorf("Gradients on a failing device: %v", err)
	}
	b.dev.fail = injected
	if _, err := comp.Evaluate(set, 0, 8); !errors.Is(err, injected) || errors.As(err, &fault) {
		t.Errorf("Evaluate on a failing device: %v", err)
	}
	loss, _, err := comp.Gradients(mb, grad)
	if err != nil || loss == 0 {
		t.Fatalf("after the failure: loss %v, %v", loss, err)
	}
}
