package model

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
	"runtime"
	"strings"
	"testing"

	"github.com/dpcnn/dpcnn/kernels"
)

// TestScheduleRates checks every schedule against its formula written out
// by hand (PyTorch's StepLR, ExponentialLR, CosineAnnealingLR and
// OneCycleLR), at the steps where the forms turn.
func TestScheduleRates(t *testing.T) {
	h := Horizon{PerEpoch: 10, Total: 100}
	cos := func(x float64) float64 { return math.Cos(math.Pi * x) }
	for _, c := range []struct {
		name string
		s    LRSchedule
		step int64
		want float64
	}{
		{"constant", LRSchedule{}, 57, 0.1},
		{"step, first epoch", LRSchedule{Type: ScheduleStep, Every: 3, Gamma: 0.5}, 29, 0.1},
		{"step, first decay", LRSchedule{Type: ScheduleStep, Every: 3, Gamma: 0.5}, 30, 0.1 * 0.5},
		{"step, third decay", LRSchedule{Type: ScheduleStep, Every: 3, Gamma: 0.5}, 99, 0.1 * 0.5 * 0.5 * 0.5},
		{"step, default gamma and every", LRSchedule{Type: ScheduleStep}, 25, 0.1 * 0.1 * 0.1},
		{"exponential", LRSchedule{Type: ScheduleExponential, Gamma: 0.8}, 34, 0.1 * 0.8 * 0.8 * 0.8},
		{"exponential, default gamma", LRSchedule{Type: ScheduleExponential}, 10, 0.1 * 0.9},
		{"cosine, start", LRSchedule{Type: ScheduleCosine}, 0, 0.1},
		{"cosine, middle", LRSchedule{Type: ScheduleCosine, MinLR: 0.02}, 50, 0.06},
		{"cosine, quarter", LRSchedule{Type: ScheduleCosine}, 25, 0.1 * (1 + cos(0.25)) / 2},
		{"cosine, past the end", LRSchedule{Type: ScheduleCosine, MinLR: 0.02}, 100, 0.02},
		{"warm-up, first step", LRSchedule{WarmupEpochs: 2}, 0, 0.1 / 20},
		{"warm-up, last ramp step", LRSchedule{WarmupEpochs: 2}, 19, 0.1},
		{"warm-up, then step decay", LRSchedule{Type: ScheduleStep, WarmupEpochs: 1.5, Gamma: 0.5}, 12, 0.1 * 0.5 * 13 / 15},
		{"cosine after warm-up", LRSchedule{Type: ScheduleCosine, WarmupEpochs: 2}, 60, 0.1 * (1 + cos(40.0/80)) / 2},
		{"onecycle, first", LRSchedule{Type: ScheduleOneCycle}, 0, 0.1 / 25},
		{"onecycle, peak", LRSchedule{Type: ScheduleOneCycle}, 29, 0.1},
		{"onecycle, rising", LRSchedule{Type: ScheduleOneCycle}, 10, 0.1 + (0.004-0.1)/2*(cos(10.0/29)+1)},
		{"onecycle, falling", LRSchedule{Type: ScheduleOneCycle}, 60, 0.004e-4 + (0.1-0.004e-4)/2*(cos(31.0/70)+1)},
		{"onecycle, last", LRSchedule{Type: ScheduleOneCycle}, 99, 0.1 / 25 / 1e4},
	} {
		got := c.s.Rate(0.1, c.step, h)
		if math.Abs(got-c.want) > 1e-15*c.want {
			t.Errorf("%s: rate at step %d = %.17g, want %.17g", c.name, c.step, got, c.want)
		}
	}
}

// TestScheduleRatesStayInRange walks every step of every type: rates are
// positive, never above the base (onecycle's peak), and the annealing
// schedules never rise after their warm-up or peak.
func TestScheduleRatesStayInRange(t *testing.T) {
	h := Horizon{PerEpoch: 7, Total: 61}
	for _, s := range []LRSchedule{
		{}, {Type: ScheduleStep, Every: 2}, {Type: ScheduleExponential}, {Type: ScheduleCosine, WarmupEpochs: 1.3},
		{Type: ScheduleCosine, MinLR: 0.001}, {Type: ScheduleOneCycle, PctStart: 0.25},
	} {
		prev, peaked := 0.0, false
		for step := range h.Total {
			r := s.Rate(0.01, step, h)
			if !(r > 0 && r <= 0.01) {
				t.Fatalf("%+v: rate %v at step %d, want in (0, 0.01]", s, r, step)
			}
			if peaked && r > prev {
				t.Fatalf("%+v: rate rose from %v to %v at step %d after its peak", s, prev, r, step)
			}
			peaked = peaked || r == 0.01 || (s.Type == ScheduleOneCycle && r < prev)
			prev = r
		}
	}
}

// TestCosPiMatchesMathCos: the portable cosine agrees with math.Cos over
// the whole range a schedule uses, to the rounding of π·x that math.Cos's
// argument carries.
func TestCosPiMatchesMathCos(t *testing.T) {
	for i := 0; i <= 10000; i++ {
		x := float64(i) / 10000
		got, want := cosPi(x), math.Cos(math.Pi*x)
		if math.Abs(got-want) > 1e-15 {
			t.Fatalf("cosPi(%v) = %.17g, math.Cos gives %.17g", x, got, want)
		}
	}
	if cosPi(0) != 1 || cosPi(0.5) != 0 || cosPi(1) != -1 || cosPi(-0.5) != 1 || cosPi(2) != -1 {
		t.Errorf("cosPi ends: %v %v %v, clamped %v %v", cosPi(0), cosPi(0.5), cosPi(1), cosPi(-0.5), cosPi(2))
	}
	if r := (LRSchedule{Type: ScheduleCosine}).Rate(0.1, 0, Horizon{PerEpoch: 1, Total: 5}); r != 0.1 {
		t.Errorf("cosine's first rate %.17g, want the base 0.1 exactly", r)
	}
}

func TestScheduleRefuses(t *testing.T) {
	for _, c := range []struct {
		s    LRSchedule
		want string
	}{
		{LRSchedule{Type: "linear"}, `unknown type "linear"`},
		{LRSchedule{Type: ScheduleStep, Gamma: 1.5}, "gamma 1.5"},
		{LRSchedule{Type: ScheduleStep, Every: -1}, "every -1"},
		{LRSchedule{Type: ScheduleCosine, MinLR: 0.5}, "below the lr"},
		{LRSchedule{WarmupEpochs: math.NaN()}, "warmupEpochs"},
		{LRSchedule{Type: ScheduleOneCycle, PctStart: 1}, "pctStart 1"},
		{LRSchedule{Type: ScheduleOneCycle, DivFactor: 0.5}, "divFactor"},
		{LRSchedule{Type: ScheduleOneCycle, WarmupEpochs: 1}, "warmupEpochs does not apply"},
		{LRSchedule{Type: ScheduleCosine, Gamma: 0.5}, "gamma applies to step and exponential only"},
		{LRSchedule{Type: ScheduleStep, MinLR: 0.01}, "minLR applies to cosine only"},
		{LRSchedule{Every: 2}, "every applies to step only"},
		{LRSchedule{Type: ScheduleCosine, PctStart: 0.2}, "apply to onecycle only"},
	} {
		err := OptimizerSpec{LR: 0.1, Schedule: c.s}.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one containing %q", c.s, err, c.want)
		}
	}
	ps := testParams()
	if _, err := NewOptimizer(OptimizerSpec{Schedule: LRSchedule{Type: ScheduleCosine}}, ps, Horizon{}); err == nil || !strings.Contains(err.Error(), "steps per epoch") {
		t.Errorf("cosine without a horizon: %v, want a refusal naming the job's steps", err)
	}
	if _, err := NewOptimizer(OptimizerSpec{Schedule: LRSchedule{Type: ScheduleCosine, WarmupEpochs: 2}}, ps, Horizon{PerEpoch: 5, Total: 10}); err == nil || !strings.Contains(err.Error(), "none of the job's 10") {
		t.Errorf("cosine warm-up as long as the job: %v, want a refusal", err)
	}
	if _, err := NewOptimizer(OptimizerSpec{}, ps, Horizon{}); err != nil {
		t.Errorf("a constant rate needs no horizon: %v", err)
	}
	for _, o := range []OptimizerSpec{{WeightDecay: -0.1}, {WeightDecay: 1}, {ClipNorm: -1}, {ClipNorm: math.Inf(1)}} {
		if err := o.Validate(); err == nil {
			t.Errorf("%+v: accepted", o)
		}
	}
}

// TestOptimizerDecayAndClip checks one SGD step with decoupled weight
// decay and gradient clipping against the formulas by hand: the gradient
// scaled to the clip norm, the weight (not the bias) shrunk by 1 − lr·wd,
// then the step.
func TestOptimizerDecayAndClip(t *testing.T) {
	b := kernels.NewReference[float64]()
	ps := testParams()
	norm := math.Sqrt(0.1*0.1 + 0.2*0.2 + 0.3*0.3 + 0.5*0.5 + 0.25*0.25)
	scale := 0.2 / norm
	want := make([][]float64, len(ps))
	for i, p := range ps {
		for j, v := range p.Value {
			if i == 0 { // conv1.W decays
				v *= 1 - 0.1*0.05
			}
			want[i] = append(want[i], v-0.1*p.Grad[j]*scale)
		}
	}
	o, err := NewOptimizer(OptimizerSpec{Type: OptSGD, LR: 0.1, WeightDecay: 0.05, ClipNorm: 0.2}, ps, Horizon{})
	if err != nil {
		t.Fatal(err)
	}
	if GradNorm(ps) != norm {
		t.Errorf("GradNorm = %v, want %v", GradNorm(ps), norm)
	}
	o.Update(b, ps)
	checkValues(t, "sgd with decay and clipping", ps, want)
	if got := GradNorm(ps); math.Abs(got-0.2) > 1e-15 {
		t.Errorf("gradient norm after clipping %v, want 0.2", got)
	}

	// A gradient already shorter than the limit is left alone.
	ps = testParams()
	o, _ = NewOptimizer(OptimizerSpec{Type: OptSGD, LR: 0.1, ClipNorm: 10}, ps, Horizon{})
	o.Update(b, ps)
	if ps[0].Grad[2] != 0.3 {
		t.Errorf("a short gradient was scaled: %v", ps[0].Grad)
	}
}

// TestOptimizerScheduleResumes: an optimizer restored from the state of one
// that ran k steps applies the same rates and reaches the same bits, in its
// parameters and their moving average, as one that ran straight through. (float32, the type checkpoints hold the
// slots in.)
func TestOptimizerScheduleResumes(t *testing.T) {
	b := kernels.NewReference[float32]()
	spec := OptimizerSpec{LR: 0.01, WeightDecay: 0.1, ClipNorm: 0.3, Schedule: LRSchedule{Type: ScheduleOneCycle}, EMA: EMASpec{Decay: 0.8}}
	h := Horizon{PerEpoch: 3, Total: 9}
	grads := func(ps Params[float32], step int) {
		for i, p := range ps {
			for j := range p.Grad {
				p.Grad[j] = float32(math.Sin(float64(step*7+i*3+j)) / 2)
			}
		}
	}
	straight := testParams32()
	o, err := NewOptimizer(spec, straight, h)
	if err != nil {
		t.Fatal(err)
	}
	var rates []float64
	for step := range 9 {
		grads(straight, step)
		rates = append(rates, o.Rate())
		o.Update(b, straight)
	}
	first := testParams32()
	a, _ := NewOptimizer(spec, first, h)
	for step := range 4 {
		grads(first, step)
		a.Update(b, first)
	}
	resumed := testParams32()
	for i := range resumed {
		copy(resumed[i].Value, first[i].Value)
	}
	r, _ := NewOptimizer(spec, resumed, h)
	if err := r.Restore(a.State()); err != nil {
		t.Fatal(err)
	}
	for step := 4; step < 9; step++ {
		grads(resumed, step)
		if r.Rate() != rates[step] {
			t.Fatalf("resumed rate at step %d = %v, want %v", step, r.Rate(), rates[step])
		}
		r.Update(b, resumed)
	}
	for i := range straight {
		for j := range straight[i].Value {
			if resumed[i].Value[j] != straight[i].Value[j] {
				t.Fatalf("%s[%d]: resumed %v, straight %v", straight[i].Name, j, resumed[i].Value[j], straight[i].Value[j])
			}
		}
	}
	ra, sa := r.Average(), o.Average()
	for i := range sa {
		for j := range sa[i].Data {
			if ra[i].Data[j] != sa[i].Data[j] {
				t.Fatalf("average of %s[%d]: resumed %v, straight %v", sa[i].Name, j, ra[i].Data[j], sa[i].Data[j])
			}
		}
	}
}

func testParams32() Params[float32] {
	var out Params[float32]
	for _, p := range testParams() {
		q := &Param[float32]{Name: p.Name, Shape: p.Shape}
		for j := range p.Value {
			q.Value = append(q.Value, float32(p.Value[j]))
			q.Grad = append(q.Grad, float32(p.Grad[j]))
		}
		out = append(out, q)
	}
	return out
}

// scheduleGolden is the SHA-256 of the rates of every schedule type over a
// short job, and of a parameter set after steps of decay and clipping
// (scheduleSameBits). CI checks it on amd64, with -tags noasm and on arm64
// under qemu, as it does the training hashes of TestSameBitsEveryPath.
const scheduleGolden = "5d3d8ea1a16cdeeecb73cdb3ea0ac3e4ac6cbfe9d679cb24a287b15d48a0b8c4"

// TestScheduleSameBits: the rates and the decay and clipping arithmetic
// give the same bits on every machine the coordinator may run on.
func TestScheduleSameBits(t *testing.T) {
	if got := scheduleSameBits(); got != scheduleGolden {
		t.Errorf("rates and decay on %s: hash %s, want %s", runtime.GOARCH, got, scheduleGolden)
	}
}

func scheduleSameBits() string {
	h := sha256.New()
	hz := Horizon{PerEpoch: 13, Total: 97}
	for _, s := range []LRSchedule{
		{}, {WarmupEpochs: 1.7}, {Type: ScheduleStep, Every: 2, Gamma: 0.3}, {Type: ScheduleExponential, WarmupEpochs: 0.5},
		{Type: ScheduleCosine, MinLR: 1e-5, WarmupEpochs: 2}, {Type: ScheduleOneCycle, PctStart: 0.21},
	} {
		for step := range hz.Total {
			binary.Write(h, binary.LittleEndian, s.Rate(0.0031, step, hz))
		}
	}
	b := kernels.NewReference[float32]()
	ps := testParams32()
	o, err := NewOptimizer(OptimizerSpec{LR: 0.01, WeightDecay: 0.07, ClipNorm: 0.11, Schedule: LRSchedule{Type: ScheduleCosine}}, ps, Horizon{PerEpoch: 2, Total: 8})
	if err != nil {
		panic(err)
	}
	for step := range 8 {
		for i, p := range ps {
			for j := range p.Grad {
				p.Grad[j] = float32(step-i) / float32(j+3)
			}
		}
		o.Update(b, ps)
	}
	for _, p := range ps {
		binary.Write(h, binary.LittleEndian, p.Value)
	}
	return hex.EncodeToString(h.Sum(nil))
}
