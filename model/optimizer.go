package model

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/dpcnn/dpcnn/kernels"
)

// WithDefaults returns the spec with every zero field that applies to its
// type set to the book's default: type adam; lr 0.001 for Adam and 0.01 for
// the others; momentum 0.9; β1 0.9, β2 0.999 and eps 1e-7 for Adam. Fields
// that do not apply to the type are left alone.
func (s OptimizerSpec) WithDefaults() OptimizerSpec {
	if s.Type == "" {
		s.Type = OptAdam
	}
	if s.LR == 0 {
		s.LR = 0.01
		if s.Type == OptAdam {
			s.LR = 0.001
		}
	}
	switch s.Type {
	case OptMomentum:
		if s.Momentum == 0 {
			s.Momentum = 0.9
		}
	case OptAdam:
		if s.Beta1 == 0 {
			s.Beta1 = 0.9
		}
		if s.Beta2 == 0 {
			s.Beta2 = 0.999
		}
		if s.Eps == 0 {
			s.Eps = 1e-7
		}
	}
	return s
}

// Validate reports the first problem of the spec: an unknown type, a
// hyper-parameter out of range (lr and eps must be positive, momentum and
// the βs in [0, 1)), or one set for a type that does not use it. Zero fields
// are valid; they mean the default.
func (s OptimizerSpec) Validate() error {
	known := []string{OptSGD, OptMomentum, OptAdaGrad, OptAdam}
	if s.Type != "" && !slices.Contains(known, s.Type) {
		return fmt.Errorf("model: optimizer: unknown type %q (known: sgd, momentum, adagrad, adam)", s.Type)
	}
	t := s.WithDefaults().Type
	fail := func(format string, args ...any) error {
		return fmt.Errorf("model: optimizer %s: %s", t, fmt.Sprintf(format, args...))
	}
	inUnit := func(x float64) bool { return x >= 0 && x < 1 }
	switch {
	case !(s.LR >= 0) || math.IsInf(s.LR, 0):
		return fail("lr %v: must be a positive number", s.LR)
	case !inUnit(s.Momentum):
		return fail("momentum %v: must be in [0, 1)", s.Momentum)
	case !inUnit(s.Beta1):
		return fail("beta1 %v: must be in [0, 1)", s.Beta1)
	case !inUnit(s.Beta2):
		return fail("beta2 %v: must be in [0, 1)", s.Beta2)
	case !(s.Eps >= 0) || math.IsInf(s.Eps, 0):
		return fail("eps %v: must be a positive number", s.Eps)
	case s.Momentum != 0 && t != OptMomentum:
		return fail("momentum does not apply")
	case (s.Beta1 != 0 || s.Beta2 != 0 || s.Eps != 0) && t != OptAdam:
		return fail("beta1, beta2 and eps apply to adam only")
	case !(s.WeightDecay >= 0) || s.WeightDecay >= 1:
		return fail("weightDecay %v: must be in [0, 1)", s.WeightDecay)
	case !(s.ClipNorm >= 0) || math.IsInf(s.ClipNorm, 0):
		return fail("clipNorm %v: must be a positive number (0: no clipping)", s.ClipNorm)
	case !(s.EMA.Decay >= 0) || s.EMA.Decay >= 1:
		return fail("ema decay %v: must be in (0, 1), e.g. 0.999", s.EMA.Decay)
	case s.EMA.Evaluate && s.EMA.Decay == 0:
		return fail("ema evaluate: no average is kept without a decay")
	}
	if err := s.Schedule.Validate(s.WithDefaults().LR); err != nil {
		return fail("%v", err)
	}
	return nil
}

// slotNames are the per-parameter state of an optimizer, in the order
// State lists them: its type's, then the moving average's.
func slotNames(s OptimizerSpec) []string {
	var names []string
	switch s.WithDefaults().Type {
	case OptMomentum:
		names = []string{"v"}
	case OptAdaGrad:
		names = []string{"h"}
	case OptAdam:
		names = []string{"m", "v"}
	}
	if s.EMA.Decay > 0 {
		names = append(names, EMASlot)
	}
	return names
}

// NewOptimizer validates the spec, fills in its defaults and returns an
// optimizer for the parameter set, with its state at zero, for a job of
// the length h. h may be zero when the schedule does not depend on it (a
// constant rate).
func NewOptimizer[T kernels.Float](s OptimizerSpec, ps Params[T], h Horizon) (Optimizer[T], error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	s = s.WithDefaults()
	if err := s.Schedule.CheckHorizon(h); err != nil {
		return nil, fmt.Errorf("model: optimizer %s: %w", s.Type, err)
	}
	o := &optimizer[T]{spec: s, horizon: h, slotNames: slotNames(s)}
	for _, p := range ps {
		o.names = append(o.names, p.Name)
		o.shapes = append(o.shapes, slices.Clone(p.Shape))
		slots := make([][]T, len(o.slotNames))
		for k := range slots {
			slots[k] = make([]T, len(p.Value))
		}
		o.slots = append(o.slots, slots)
	}
	return o, nil
}

// optimizer implements every type: they differ only in their slots and in
// the Backend update they call.
type optimizer[T kernels.Float] struct {
	spec      OptimizerSpec
	horizon   Horizon
	slotNames []string
	steps     int64
	names     []string // of the parameters, for State and Restore
	shapes    [][]int
	slots     [][][]T // [parameter][slot][element]
}

func (o *optimizer[T]) Spec() OptimizerSpec { return o.spec }

func (o *optimizer[T]) Rate() float64 { return o.spec.Schedule.Rate(o.spec.LR, o.steps, o.horizon) }

// Update applies one step: clipping, decay, then the type's update, all at
// the schedule's rate for this step. ps must be the parameter set the
// optimizer was made for.
func (o *optimizer[T]) Update(b kernels.Backend[T], ps Params[T]) {
	if len(ps) != len(o.slots) {
		panic(fmt.Sprintf("model: optimizer for %d parameters updating %d", len(o.slots), len(ps)))
	}
	s := o.spec
	for i, p := range ps {
		if len(p.Value) != len(p.Grad) || (len(o.slotNames) > 0 && len(p.Value) != len(o.slots[i][0])) {
			panic(fmt.Sprintf("model: optimizer: parameter %d (%s) does not match the one the optimizer was made for", i, p.Name))
		}
	}
	lr := o.Rate()
	if s.ClipNorm > 0 {
		clipGrads(ps, s.ClipNorm)
	}
	if s.EMA.Decay > 0 && o.steps == 0 {
		for i, p := range ps {
			copy(o.slots[i][len(o.slotNames)-1], p.Value) // the average starts at the initial parameters
		}
	}
	for i, p := range ps {
		if !p.trained() {
			// A running statistic: its Grad is the step's batch
			// statistic, averaged in at the layer's momentum.
			average(p.Value, p.Grad, p.StatMomentum)
			continue
		}
		if s.WeightDecay > 0 && strings.HasSuffix(p.Name, ".W") {
			decay(p.Value, float64(lr*s.WeightDecay))
		}
		switch s.Type {
		case OptSGD:
			b.SGDUpdate(lr, p.Value, p.Grad)
		case OptMomentum:
			b.MomentumUpdate(lr, s.Momentum, p.Value, p.Grad, o.slots[i][0])
		case OptAdaGrad:
			b.AdaGradUpdate(lr, p.Value, p.Grad, o.slots[i][0])
		case OptAdam:
			a := kernels.AdamParams{LR: lr, Beta1: s.Beta1, Beta2: s.Beta2, Eps: s.Eps, T: int(o.steps + 1)}
			b.AdamUpdate(a, p.Value, p.Grad, o.slots[i][0], o.slots[i][1])
		}
	}
	o.steps++
	if s.EMA.Decay > 0 {
		d := min(s.EMA.Decay, float64(1+o.steps)/float64(10+o.steps))
		for i, p := range ps {
			average(o.slots[i][len(o.slotNames)-1], p.Value, 1-d)
		}
	}
}

// average moves avg toward v by the fraction f: avg += f·(v − avg), the
// product rounded before the sum.
func average[T kernels.Float](avg, v []T, f float64) {
	for j, x := range v {
		a := float64(avg[j])
		avg[j] = T(a + float64(f*(float64(x)-a)))
	}
}

// Average returns the moving average of the parameters as tensors named
// like them, or nil when the optimizer keeps none.
func (o *optimizer[T]) Average() []Tensor {
	if o.spec.EMA.Decay == 0 {
		return nil
	}
	out := make([]Tensor, len(o.slots))
	for i, slots := range o.slots {
		avg := slots[len(o.slotNames)-1]
		t := Tensor{Name: o.names[i], Shape: slices.Clone(o.shapes[i]), Data: make([]float32, len(avg))}
		for j, v := range avg {
			t.Data[j] = float32(v)
		}
		out[i] = t
	}
	return out
}

// GradNorm is the global L2 norm of the parameters' gradients, summed in
// float64 in parameter order (the same bits on every machine). Running
// statistics, whose Grad is no gradient, are left out.
func GradNorm[T kernels.Float](ps Params[T]) float64 {
	var sum float64
	for _, p := range ps {
		if !p.trained() {
			continue
		}
		for _, g := range p.Grad {
			sum += float64(float64(g) * float64(g))
		}
	}
	return math.Sqrt(sum)
}

// clipGrads scales every gradient by limit/norm when the global norm is
// above limit, each product rounded once.
func clipGrads[T kernels.Float](ps Params[T], limit float64) {
	norm := GradNorm(ps)
	if !(norm > limit) {
		return
	}
	scale := limit / norm
	for _, p := range ps {
		if !p.trained() {
			continue
		}
		for j, g := range p.Grad {
			p.Grad[j] = T(float64(g) * scale)
		}
	}
}

// decay multiplies every value by 1 − f, each product rounded once.
func decay[T kernels.Float](v []T, f float64) {
	keep := 1 - f
	for j, x := range v {
		v[j] = T(float64(x) * keep)
	}
}

func (o *optimizer[T]) State() OptimizerState {
	st := OptimizerState{Steps: o.steps}
	for i, slots := range o.slots {
		for k, slot := range slots {
			t := Tensor{Name: o.names[i] + "." + o.slotNames[k], Shape: slices.Clone(o.shapes[i]), Data: make([]float32, len(slot))}
			for j, v := range slot {
				t.Data[j] = float32(v)
			}
			st.Slots = append(st.Slots, t)
		}
	}
	return st
}

func (o *optimizer[T]) Restore(st OptimizerState) error {
	if err := o.matchState(st); err != nil {
		return fmt.Errorf("model: restore optimizer %s: %w", o.spec.Type, err)
	}
	o.steps = st.Steps
	next := 0
	for _, slots := range o.slots {
		for _, slot := range slots {
			for j, v := range st.Slots[next].Data {
				slot[j] = T(v)
			}
			next++
		}
	}
	return nil
}

// matchState checks that st is a state of this optimizer for this
// parameter set.
func (o *optimizer[T]) matchState(st OptimizerState) error {
	if st.Steps < 0 {
		return fmt.Errorf("steps %d: must not be negative", st.Steps)
	}
	if want := len(o.slots) * len(o.slotNames); len(st.Slots) != want {
		return fmt.Errorf("%d slots, want %d", len(st.Slots), want)
	}
	next := 0
	for i, slots := range o.slots {
		for k, slot := range slots {
			t, name := st.Slots[next], o.names[i]+"."+o.slotNames[k]
			if t.Name != name || !slices.Equal(t.Shape, o.shapes[i]) {
				return fmt.Errorf("slot %d is %q %v, want %q %v", next, t.Name, t.Shape, name, o.shapes[i])
			}
			if len(t.Data) != len(slot) {
				return fmt.Errorf("slot %d (%s) has %d values, want %d", next, t.Name, len(t.Data), len(slot))
			}
			next++
		}
	}
	return nil
}
