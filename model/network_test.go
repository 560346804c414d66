package model

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/dpcnn/dpcnn/kernels"
)

func newTestNetwork[T kernels.Float](t *testing.T, name string, maxBatch int) *Network[T] {
	t.Helper()
	s, err := Builtin(name)
	if err != nil {
		t.Fatal(err)
	}
	net, err := New(s, kernels.NewReference[T](), maxBatch)
	if err != nil {
		t.Fatal(err)
	}
	return net
}

// TestParamsLayout checks names, shapes and order of a built-in's
// parameters: layer order, weight before bias, HWIO conv weights.
func TestParamsLayout(t *testing.T) {
	net := newTestNetwork[float32](t, "simple", 1)
	var got []string
	for _, p := range net.Params() {
		got = append(got, p.Name+fmt.Sprint(p.Shape))
		if len(p.Grad) != len(p.Value) {
			t.Errorf("%s: %d gradients for %d values", p.Name, len(p.Grad), len(p.Value))
		}
	}
	want := "conv1.W[5 5 1 30] conv1.b[30] affine1.W[4320 100] affine1.b[100] affine2.W[100 10] affine2.b[10]"
	if g := strings.Join(got, " "); g != want {
		t.Errorf("params\n got %s\nwant %s", g, want)
	}
	if net.Params().Count() != 433890 || net.InputSize() != 784 || net.Classes() != 10 || net.MaxBatch() != 1 {
		t.Errorf("count %d, input %d, classes %d, max batch %d", net.Params().Count(), net.InputSize(), net.Classes(), net.MaxBatch())
	}
	if net.Backend().Name() != "reference" || net.Spec().Name != "simple" {
		t.Errorf("backend %q, spec %q", net.Backend().Name(), net.Spec().Name)
	}
}

// The flat parameter and gradient vectors are the network's own memory:
// every parameter's Value and Grad views them in Params order, without
// overlap, so writing the flat vector sets the parameters, and Backward's
// gradients show in it without a copy.
func TestFlatVectorsViewEveryParam(t *testing.T) {
	net := newTestNetwork[float32](t, "simple", 2)
	values, grads := net.FlatValues(), net.FlatGrads()
	if len(values) != net.Params().Count() || len(grads) != len(values) {
		t.Fatalf("flat vectors of %d and %d values for %d parameters", len(values), len(grads), net.Params().Count())
	}
	for i := range values {
		values[i] = float32(i)
	}
	off := 0
	for _, p := range net.Params() {
		for i, v := range p.Value {
			if v != float32(off+i) {
				t.Fatalf("%s[%d] = %v after writing the flat vector, want %d", p.Name, i, v, off+i)
			}
		}
		if cap(p.Value) != len(p.Value) || cap(p.Grad) != len(p.Grad) {
			t.Errorf("%s: Value or Grad can grow into the next parameter", p.Name)
		}
		off += len(p.Value)
	}
	net.InitParams(1)
	x := make([]float32, 2*net.InputSize())
	for i := range x {
		x[i] = float32(i%7) / 7
	}
	if _, _, err := net.Loss(x, []int32{3, 5}, nil, RunContext{Train: true}, 1); err != nil {
		t.Fatal(err)
	}
	if err := net.Backward(); err != nil {
		t.Fatal(err)
	}
	off, nonzero := 0, 0
	for _, p := range net.Params() {
		for i, g := range p.Grad {
			if grads[off+i] != g {
				t.Fatalf("%s's gradient %d is %v, the flat vector's %v", p.Name, i, g, grads[off+i])
			}
			if g != 0 {
				nonzero++
			}
		}
		off += len(p.Grad)
	}
	if nonzero == 0 {
		t.Fatal("Backward left every gradient zero")
	}
}

// TestInitParams checks the initial values: deterministic in the seed,
// different across seeds and parameters, biases zero, weights with the
// standard deviation of their layer's init, float32 the rounded float64.
func TestInitParams(t *testing.T) {
	a := newTestNetwork[float64](t, "deep", 1)
	b := newTestNetwork[float64](t, "deep", 1)
	f := newTestNetwork[float32](t, "deep", 1)
	a.InitParams(7)
	b.InitParams(7)
	f.InitParams(7)
	if !reflect.DeepEqual(a.ExportParams(), b.ExportParams()) {
		t.Fatal("same seed, different parameters")
	}
	for i, p := range a.Params() {
		for j, v := range p.Value {
			if float32(v) != f.Params()[i].Value[j] {
				t.Fatalf("%s[%d]: float32 %v is not float64 %v rounded", p.Name, j, f.Params()[i].Value[j], v)
			}
		}
	}
	// He init: std √(2/fan_in), fan_in = 3·3·C for conv, In for affine.
	wantStd := map[string]float64{
		"conv1.W": math.Sqrt(2.0 / 9), "conv2.W": math.Sqrt(2.0 / 144), "conv4.W": math.Sqrt(2.0 / 288),
		"conv6.W": math.Sqrt(2.0 / 576), "affine1.W": math.Sqrt(2.0 / 1024), "affine2.W": math.Sqrt(2.0 / 50),
	}
	for _, p := range a.Params() {
		if len(p.Shape) == 1 {
			for _, v := range p.Value {
				if v != 0 {
					t.Fatalf("%s: bias not zero", p.Name)
				}
			}
			continue
		}
		want, ok := wantStd[p.Name]
		if !ok || len(p.Value) < 2000 {
			continue // too few values for a tight estimate
		}
		var sum, sq float64
		for _, v := range p.Value {
			sum += v
			sq += v * v
		}
		n := float64(len(p.Value))
		mean, std := sum/n, math.Sqrt(sq/n)
		// Tolerances of about 4 standard errors.
		if math.Abs(mean) > 4*want/math.Sqrt(n) || math.Abs(std/want-1) > 4/math.Sqrt(2*n) {
			t.Errorf("%s: mean %.4g std %.4g, want 0 and %.4g", p.Name, mean, std, want)
		}
	}
	b.InitParams(8)
	if reflect.DeepEqual(a.Params()[0].Value, b.Params()[0].Value) {
		t.Error("seeds 7 and 8 give the same conv1.W")
	}
	// Two tensors of the same shape get different values.
	if reflect.DeepEqual(a.Params()[4].Value[:100], a.Params()[6].Value[:100]) {
		t.Error("conv3.W and conv4.W start alike")
	}
}

// TestTrainingDeterminism runs three Adam steps of the deep network, with
// dropout, on two independently built networks from the same seed and
// requires bit-identical parameters.
func TestTrainingDeterminism(t *testing.T) {
	const batch = 2
	run := func() Params[float64] {
		net := newTestNetwork[float64](t, "deep", batch)
		net.InitParams(99)
		opt, err := NewOptimizer(OptimizerSpec{Type: OptAdam}, net.Params(), Horizon{})
		if err != nil {
			t.Fatal(err)
		}
		r := newRand(4)
		x := make([]float64, batch*net.InputSize())
		for step := range uint64(3) {
			for i := range x {
				x[i] = r.Float64()
			}
			labels := []int32{int32(step), 9}
			mustLoss(t, net, x, labels, []int64{1, 2}, RunContext{Train: true, Seed: 99, Step: step}, 1.0/batch)
			mustBackward(t, net)
			opt.Update(net.Backend(), net.Params())
		}
		return net.Params()
	}
	a, b := run(), run()
	for i := range a {
		if !reflect.DeepEqual(a[i].Value, b[i].Value) {
			t.Errorf("%s: same seed, different values after 3 Adam steps", a[i].Name)
		}
	}
	fresh := newTestNetwork[float64](t, "deep", batch)
	fresh.InitParams(99)
	if reflect.DeepEqual(a[0].Value, fresh.Params()[0].Value) {
		t.Error("3 Adam steps changed nothing")
	}
}

// TestDeepDropoutNetwork checks the network-level dropout wiring: in
// training the masks depend on the step, at test time the output is
// deterministic and no samples are needed.
func TestDeepDropoutNetwork(t *testing.T) {
	net := newTestNetwork[float64](t, "deep", 2)
	net.InitParams(1)
	x := make([]float64, 2*net.InputSize())
	r := newRand(2)
	for i := range x {
		x[i] = r.Float64()
	}
	samples := []int64{10, 11}
	logits := func(rc RunContext) []float64 {
		return append([]float64(nil), mustForward(t, net, x, 2, samples, rc)...)
	}
	s1 := logits(RunContext{Train: true, Seed: 1, Step: 1})
	if again := logits(RunContext{Train: true, Seed: 1, Step: 1}); !reflect.DeepEqual(s1, again) {
		t.Error("same run context, different logits")
	}
	if s2 := logits(RunContext{Train: true, Seed: 1, Step: 2}); reflect.DeepEqual(s1, s2) {
		t.Error("the dropout masks did not change with the step")
	}
	test := logits(RunContext{})
	if again := mustForward(t, net, x, 2, nil, RunContext{Step: 5}); !reflect.DeepEqual(test, again) {
		t.Error("test-mode logits depend on the step")
	}
}

func TestPredict(t *testing.T) {
	const total = 7
	net := newTestNetwork[float64](t, "lenet", 3) // Predict must run 3 + 3 + 1
	net.InitParams(3)
	x := make([]float64, total*net.InputSize())
	r := newRand(5)
	for i := range x {
		x[i] = r.Float64()
	}
	got := make([]int32, total)
	if err := net.Predict(x, total, got); err != nil {
		t.Fatal(err)
	}
	for i := range total {
		logits := mustForward(t, net, x[i*net.InputSize():], 1, nil, RunContext{})
		best := 0
		for j, v := range logits {
			if v > logits[best] {
				best = j
			}
		}
		if got[i] != int32(best) {
			t.Errorf("sample %d: predicted %d, want %d", i, got[i], best)
		}
	}
}

// TestLossAndBackwardAllocateNothing checks that a training step reuses
// the buffers allocated by New.
func TestLossAndBackwardAllocateNothing(t *testing.T) {
	const batch = 4
	net := newTestNetwork[float32](t, "lenet", batch)
	net.InitParams(1)
	opt, err := NewOptimizer(OptimizerSpec{}, net.Params(), Horizon{})
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float32, batch*net.InputSize())
	labels := []int32{1, 2, 3, 4}
	samples := []int64{1, 2, 3, 4}
	allocs := testing.AllocsPerRun(3, func() {
		_, _, err1 := net.Loss(x[:2*net.InputSize()], labels[:2], samples, RunContext{Train: true}, 0.5) // a smaller batch too
		err2 := net.Backward()
		_, _, err3 := net.Loss(x, labels, samples, RunContext{Train: true}, 0.25)
		err4 := net.Backward()
		opt.Update(net.Backend(), net.Params())
		if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
			panic("a training step failed")
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per training step", allocs)
	}
}

func TestImportExportParams(t *testing.T) {
	a := newTestNetwork[float64](t, "lenet", 1)
	a.InitParams(5)
	ts := a.ExportParams()
	b := newTestNetwork[float32](t, "lenet", 1)
	if err := b.ImportParams(ts); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(b.ExportParams(), ts) {
		t.Error("export of an import differs")
	}
	ts[0].Data[0] = 123 // exports are copies
	if a.Params()[0].Value[0] == 123 {
		t.Error("changing an exported tensor changed the network")
	}
	before := b.ExportParams()
	for _, c := range []struct {
		name   string
		change func(ts []Tensor) []Tensor
		want   string
	}{
		{"missing tensor", func(ts []Tensor) []Tensor { return ts[:9] }, "9 tensors, want 10"},
		{"renamed", func(ts []Tensor) []Tensor { ts[1].Name = "conv1.bias"; return ts }, `tensor 1 is "conv1.bias" [6], want "conv1.b" [6]`},
		{"reshaped", func(ts []Tensor) []Tensor { ts[0].Shape = []int{5, 5, 6, 1}; return ts }, `tensor 0 is "conv1.W" [5 5 6 1], want "conv1.W" [5 5 1 6]`},
		{"short data", func(ts []Tensor) []Tensor { ts[9].Data = ts[9].Data[:3]; return ts }, "tensor 9 (affine3.b) has 3 values, want 10"},
	} {
		ts := a.ExportParams()
		ts[0].Data[0] = 42 // would show if a failed import changed anything
		err := b.ImportParams(c.change(ts))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "model: import parameters: ") {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
		if !reflect.DeepEqual(b.ExportParams(), before) {
			t.Errorf("%s: a failed import changed the parameters", c.name)
		}
	}
}

func TestNewErrors(t *testing.T) {
	s, _ := Builtin("simple")
	if _, err := New(s, kernels.NewReference[float32](), 0); err == nil || !strings.Contains(err.Error(), "max batch 0") {
		t.Errorf("max batch 0: error %v", err)
	}
	s.Classes = 7
	if _, err := New(s, kernels.NewReference[float32](), 1); err == nil || !strings.Contains(err.Error(), "want classes 7") {
		t.Errorf("invalid spec: error %v", err)
	}
}

// TestBackwardNeedsTrainingLoss checks the guard of Backward: the masks and
// activations it needs exist only after a training Loss.
func TestBackwardNeedsTrainingLoss(t *testing.T) {
	net := newTestNetwork[float32](t, "simple", 1)
	x := make([]float32, net.InputSize())
	if err := net.Backward(); err == nil || !strings.Contains(err.Error(), "backward without a training-mode Loss") {
		t.Errorf("Backward before any Loss: %v", err)
	}
	mustLoss(t, net, x, []int32{0}, nil, RunContext{}, 1)
	if err := net.Backward(); err == nil || !strings.Contains(err.Error(), "backward without a training-mode Loss") {
		t.Errorf("Backward after a test-mode Loss: %v", err)
	}
	mustLoss(t, net, x, []int32{0}, nil, RunContext{Train: true}, 1)
	mustBackward(t, net)
}

// TestPassArgumentErrors checks that bad arguments of a pass are errors
// that name the problem, and that the network computes after them.
func TestPassArgumentErrors(t *testing.T) {
	net := newTestNetwork[float32](t, "deep", 2)
	x := make([]float32, 2*net.InputSize())
	train := RunContext{Train: true}
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"label 10", func() error { _, _, err := net.Loss(x, []int32{1, 10}, []int64{1, 2}, train, 1); return err }(),
			"model: loss: row 1: label 10 outside [0, 10)"},
		{"negative label", func() error { _, _, err := net.Loss(x, []int32{-1}, []int64{1}, train, 1); return err }(),
			"row 0: label -1 outside [0, 10)"},
		{"batch 3", func() error {
			_, _, err := net.Loss(make([]float32, 3*net.InputSize()), []int32{1, 2, 3}, nil, RunContext{}, 1)
			return err
		}(),
			"model: loss: batch 3 outside [1, 2]"},
		{"short input", func() error { _, err := net.Forward(x[:100], 1, nil, RunContext{}); return err }(),
			"model: forward: input has 100 values, want 784 for a batch of 1"},
		{"no samples", func() error { _, _, err := net.Loss(x, []int32{1, 2}, []int64{1}, train, 1); return err }(),
			"dropout in training needs the dataset index of every sample: 1 for a batch of 2"},
		{"predict destinations", net.Predict(x, 2, make([]int32, 1)), "model: predict: 1 destinations for a batch of 2"},
		{"predict input", net.Predict(x, 3, make([]int32, 3)), "model: predict: input has 1568 values, want 2352 for a batch of 3"},
	} {
		if c.err == nil || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, c.err, c.want)
		}
	}
	if err := net.Backward(); err == nil {
		t.Error("Backward after failed Loss calls did not fail")
	}
	mustLoss(t, net, x, []int32{1, 2}, []int64{1, 2}, train, 1)
	mustBackward(t, net)
	if _, err := net.Forward(x, 2, nil, RunContext{}); err != nil {
		t.Error(err)
	}
}
