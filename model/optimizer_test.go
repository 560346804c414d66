package model

import (
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/dpcnn/dpcnn/kernels"
)

// testParams is a two-tensor parameter set with fixed values and
// gradients.
func testParams() Params[float64] {
	return Params[float64]{
		{Name: "conv1.W", Shape: []int{1, 1, 1, 3}, Value: []float64{0.5, -1, 2}, Grad: []float64{0.1, -0.2, 0.3}},
		{Name: "conv1.b", Shape: []int{2}, Value: []float64{0, 1}, Grad: []float64{-0.5, 0.25}},
	}
}

func closeTo(a, b float64) bool { return math.Abs(a-b) <= 1e-12*max(1, math.Abs(b)) }

func checkValues(t *testing.T, what string, ps Params[float64], want [][]float64) {
	t.Helper()
	for i, p := range ps {
		for j, v := range p.Value {
			if !closeTo(v, want[i][j]) {
				t.Errorf("%s: %s[%d] = %.17g, want %.17g", what, p.Name, j, v, want[i][j])
			}
		}
	}
}

// TestOptimizerOneStep checks one update of each optimizer against the
// book's formulas written out by hand.
func TestOptimizerOneStep(t *testing.T) {
	b := kernels.NewReference[float64]()
	for _, c := range []struct {
		spec OptimizerSpec
		step func(p, g float64) float64 // the new value, from a zero state
	}{
		{OptimizerSpec{Type: OptSGD, LR: 0.1}, func(p, g float64) float64 { return p - 0.1*g }},
		// v = 0.9·0 − lr·g; p += v.
		{OptimizerSpec{Type: OptMomentum, LR: 0.1}, func(p, g float64) float64 { return p - 0.1*g }},
		// h = g²; p −= lr·g/(√h + 1e-7).
		{OptimizerSpec{Type: OptAdaGrad, LR: 0.1}, func(p, g float64) float64 { return p - 0.1*g/(math.Abs(g)+1e-7) }},
		// t = 1: lr_t = lr·√(1−β2)/(1−β1); m = (1−β1)g; v = (1−β2)g².
		{OptimizerSpec{Type: OptAdam, LR: 0.01}, func(p, g float64) float64 {
			lrT := 0.01 * math.Sqrt(1-0.999) / (1 - 0.9)
			return p - lrT*(0.1*g)/(math.Sqrt(0.001*g*g)+1e-7)
		}},
	} {
		ps := testParams()
		want := make([][]float64, len(ps))
		for i, p := range ps {
			for j := range p.Value {
				want[i] = append(want[i], c.step(p.Value[j], p.Grad[j]))
			}
		}
		o, err := NewOptimizer(c.spec, ps, Horizon{})
		if err != nil {
			t.Fatal(err)
		}
		o.Update(b, ps)
		checkValues(t, c.spec.Type, ps, want)
		if st := o.State(); st.Steps != 1 {
			t.Errorf("%s: %d steps after one update", c.spec.Type, st.Steps)
		}
	}
}

// TestMomentumTwoSteps checks that the velocity carries over.
func TestMomentumTwoSteps(t *testing.T) {
	ps := testParams()
	o, err := NewOptimizer(OptimizerSpec{Type: OptMomentum, LR: 0.1, Momentum: 0.5}, ps, Horizon{})
	if err != nil {
		t.Fatal(err)
	}
	p0, g := ps[0].Value[2], ps[0].Grad[2]
	b := kernels.NewReference[float64]()
	o.Update(b, ps)
	o.Update(b, ps)
	v1 := -0.1 * g
	v2 := 0.5*v1 - 0.1*g
	if got, want := ps[0].Value[2], p0+v1+v2; !closeTo(got, want) {
		t.Errorf("after two steps %v, want %v", got, want)
	}
}

// TestAdamBook runs three Adam steps with changing gradients against the
// book's Adam class (common/optimizer.py), which keeps m and v and
// computes lr_t = lr·√(1−β2^t)/(1−β1^t) with t counted from 1.
func TestAdamBook(t *testing.T) {
	const lr, beta1, beta2 = 0.001, 0.9, 0.999
	ps := testParams()
	o, err := NewOptimizer(OptimizerSpec{}, ps, Horizon{}) // all defaults: Adam
	if err != nil {
		t.Fatal(err)
	}
	if got := o.Spec(); got != (OptimizerSpec{Type: OptAdam, LR: lr, Beta1: beta1, Beta2: beta2, Eps: 1e-7}) {
		t.Fatalf("default spec %+v", got)
	}
	type state struct{ p, m, v float64 }
	var book [][]state
	for _, p := range ps {
		var row []state
		for _, v := range p.Value {
			row = append(row, state{p: v})
		}
		book = append(book, row)
	}
	b := kernels.NewReference[float64]()
	for step := 1; step <= 3; step++ {
		for i, p := range ps {
			for j := range p.Grad {
				p.Grad[j] = math.Sin(float64(step*7 + i*3 + j)) // a different gradient every step
			}
		}
		o.Update(b, ps)
		lrT := lr * math.Sqrt(1-math.Pow(beta2, float64(step))) / (1 - math.Pow(beta1, float64(step)))
		for i, p := range ps {
			for j, g := range p.Grad {
				s := &book[i][j]
				s.m += (1 - beta1) * (g - s.m)
				s.v += (1 - beta2) * (g*g - s.v)
				s.p -= lrT * s.m / (math.Sqrt(s.v) + 1e-7)
				if !closeTo(p.Value[j], s.p) {
					t.Errorf("step %d: %s[%d] = %.17g, want %.17g", step, p.Name, j, p.Value[j], s.p)
				}
			}
		}
	}
	st := o.State()
	if st.Steps != 3 || len(st.Slots) != 4 {
		t.Fatalf("state: %d steps, %d slots", st.Steps, len(st.Slots))
	}
	if st.Slots[2].Name != "conv1.b.m" || float64(st.Slots[2].Data[1]) != float64(float32(book[1][1].m)) {
		t.Errorf("slot 2: %+v, want conv1.b.m with m %v", st.Slots[2], book[1][1].m)
	}
}

// TestOptimizerStateRoundTrip stops an optimizer after two steps, restores
// its state into a fresh one and checks both take the same third step.
func TestOptimizerStateRoundTrip(t *testing.T) {
	b := kernels.NewReference[float64]()
	for _, typ := range []string{OptSGD, OptMomentum, OptAdaGrad, OptAdam} {
		psA := testParams()
		a, err := NewOptimizer(OptimizerSpec{Type: typ}, psA, Horizon{})
		if err != nil {
			t.Fatal(err)
		}
		a.Update(b, psA)
		a.Update(b, psA)
		st := a.State()
		// float32 slots: restore into a state that is exactly representable.
		if err := a.Restore(st); err != nil {
			t.Fatalf("%s: restore own state: %v", typ, err)
		}
		psB := testParams()
		for i := range psB {
			copy(psB[i].Value, psA[i].Value)
		}
		c, err := NewOptimizer(OptimizerSpec{Type: typ}, psB, Horizon{})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Restore(st); err != nil {
			t.Fatalf("%s: restore: %v", typ, err)
		}
		if !reflect.DeepEqual(c.State(), st) {
			t.Errorf("%s: restored state differs", typ)
		}
		a.Update(b, psA)
		c.Update(b, psB)
		for i := range psA {
			if !reflect.DeepEqual(psA[i].Value, psB[i].Value) {
				t.Errorf("%s: %s after restore: %v, want %v", typ, psA[i].Name, psB[i].Value, psA[i].Value)
			}
		}
	}
}

func TestOptimizerRestoreMismatch(t *testing.T) {
	ps := testParams()
	o, err := NewOptimizer(OptimizerSpec{Type: OptAdam}, ps, Horizon{})
	if err != nil {
		t.Fatal(err)
	}
	o.Update(kernels.NewReference[float64](), ps)
	good := o.State()
	for _, c := range []struct {
		name   string
		change func(st *OptimizerState)
		want   string
	}{
		{"negative steps", func(st *OptimizerState) { st.Steps = -1 }, "steps -1"},
		{"missing slot", func(st *OptimizerState) { st.Slots = st.Slots[:3] }, "3 slots, want 4"},
		{"renamed slot", func(st *OptimizerState) { st.Slots[1].Name = "conv1.W.h" }, `slot 1 is "conv1.W.h" [1 1 1 3], want "conv1.W.v"`},
		{"reshaped slot", func(st *OptimizerState) { st.Slots[3].Shape = []int{1, 2} }, "slot 3"},
		{"short data", func(st *OptimizerState) { st.Slots[0].Data = st.Slots[0].Data[:2] }, "slot 0 (conv1.W.m) has 2 values, want 3"},
	} {
		st := o.State()
		st.Slots[0].Data[0] = 42 // would show if a failed Restore changed anything
		c.change(&st)
		err := o.Restore(st)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "model: restore optimizer adam: ") {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
		if !reflect.DeepEqual(o.State(), good) {
			t.Errorf("%s: a failed Restore changed the state", c.name)
		}
	}
}

func TestOptimizerSpecValidate(t *testing.T) {
	for _, s := range []OptimizerSpec{
		{}, {Type: OptSGD}, {Type: OptMomentum, Momentum: 0.5}, {Type: OptAdaGrad, LR: 0.5},
		{Type: OptAdam, Beta1: 0.5, Beta2: 0.9, Eps: 1e-8},
	} {
		if err := s.Validate(); err != nil {
			t.Errorf("%+v: %v", s, err)
		}
		if err := s.WithDefaults().Validate(); err != nil {
			t.Errorf("%+v with defaults: %v", s, err)
		}
	}
	for _, c := range []struct {
		spec OptimizerSpec
		want string
	}{
		{OptimizerSpec{Type: "rmsprop"}, `model: optimizer: unknown type "rmsprop"`},
		{OptimizerSpec{Type: OptSGD, LR: -1}, "model: optimizer sgd: lr -1"},
		{OptimizerSpec{Type: OptSGD, LR: math.NaN()}, "model: optimizer sgd: lr NaN"},
		{OptimizerSpec{Type: OptMomentum, Momentum: 1}, "model: optimizer momentum: momentum 1"},
		{OptimizerSpec{Type: OptAdam, Beta1: 1}, "model: optimizer adam: beta1 1"},
		{OptimizerSpec{Type: OptAdam, Beta2: -0.1}, "model: optimizer adam: beta2 -0.1"},
		{OptimizerSpec{Type: OptAdam, Eps: math.Inf(1)}, "model: optimizer adam: eps +Inf"},
		{OptimizerSpec{Type: OptSGD, Momentum: 0.9}, "model: optimizer sgd: momentum does not apply"},
		{OptimizerSpec{Type: OptAdaGrad, Beta1: 0.9}, "model: optimizer adagrad: beta1, beta2 and eps apply to adam only"},
		{OptimizerSpec{Momentum: 0.9}, "model: optimizer adam: momentum does not apply"},
	} {
		err := c.spec.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one containing %q", c.spec, err, c.want)
		}
		if _, err := NewOptimizer(c.spec, testParams(), Horizon{}); err == nil {
			t.Errorf("%+v: NewOptimizer accepted it", c.spec)
		}
	}
	for _, c := range []struct{ in, want OptimizerSpec }{
		{OptimizerSpec{Type: OptSGD}, OptimizerSpec{Type: OptSGD, LR: 0.01}},
		{OptimizerSpec{Type: OptMomentum}, OptimizerSpec{Type: OptMomentum, LR: 0.01, Momentum: 0.9}},
		{OptimizerSpec{Type: OptAdaGrad, LR: 0.1}, OptimizerSpec{Type: OptAdaGrad, LR: 0.1}},
		{OptimizerSpec{Type: OptAdam, Beta2: 0.99}, OptimizerSpec{Type: OptAdam, LR: 0.001, Beta1: 0.9, Beta2: 0.99, Eps: 1e-7}},
	} {
		if got := c.in.WithDefaults(); got != c.want {
			t.Errorf("%+v.WithDefaults() = %+v, want %+v", c.in, got, c.want)
		}
	}
}

// TestOptimizerEMA checks the moving average against its formula by hand
// over two SGD steps: it starts at the initial parameters and moves by
// 1 − min(decay, (1+t)/(10+t)) toward them after update t; it is a slot
// of the state, and a checkpoint's model when the job evaluates it.
func TestOptimizerEMA(t *testing.T) {
	b := kernels.NewReference[float64]()
	ps := testParams()
	spec := OptimizerSpec{Type: OptSGD, LR: 0.1, EMA: EMASpec{Decay: 0.5, Evaluate: true}}
	o, err := NewOptimizer(spec, ps, Horizon{})
	if err != nil {
		t.Fatal(err)
	}
	avg := make([][]float64, len(ps))
	for i, p := range ps {
		avg[i] = append([]float64(nil), p.Value...)
	}
	for step := int64(1); step <= 2; step++ {
		o.Update(b, ps)
		d := min(0.5, float64(1+step)/float64(10+step)) // 2/11, then 0.5
		for i, p := range ps {
			for j, v := range p.Value {
				avg[i][j] += (1 - d) * (v - avg[i][j])
			}
		}
	}
	got := o.Average()
	for i, p := range ps {
		if got[i].Name != p.Name {
			t.Fatalf("average %d is named %q, want %q", i, got[i].Name, p.Name)
		}
		for j := range p.Value {
			if !closeTo(float64(got[i].Data[j]), float64(float32(avg[i][j]))) {
				t.Errorf("average of %s[%d] = %v, want %v", p.Name, j, got[i].Data[j], avg[i][j])
			}
		}
	}
	st := o.State()
	if len(st.Slots) != 2 || st.Slots[0].Name != "conv1.W.ema" {
		t.Fatalf("state slots %d, first %q: want one ema slot a parameter", len(st.Slots), st.Slots[0].Name)
	}
	c := &Checkpoint{Optimizer: o.Spec(), OptimizerState: st, Params: []Tensor{{Name: "conv1.W", Shape: []int{1, 1, 1, 3}}, {Name: "conv1.b", Shape: []int{2}}}}
	if m := c.ModelParams(); &m[0].Data[0] != &st.Slots[0].Data[0] {
		t.Errorf("ModelParams of a job that evaluates the average is not the average")
	}
	c.Optimizer.EMA.Evaluate = false
	if m := c.ModelParams(); m[0].Data != nil {
		t.Errorf("ModelParams of a job that evaluates its raw parameters is not them")
	}
	if (&Checkpoint{}).Average() != nil {
		t.Errorf("a checkpoint without an average has one")
	}
	for _, bad := range []EMASpec{{Decay: 1}, {Decay: -0.1}, {Evaluate: true}} {
		if err := (OptimizerSpec{EMA: bad}).Validate(); err == nil {
			t.Errorf("ema %+v accepted", bad)
		}
	}
}
