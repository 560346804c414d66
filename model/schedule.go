package model

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/dpcnn/dpcnn/kernels"
)

// Learning-rate schedules of LRSchedule.Type.
const (
	ScheduleConstant    = "constant"    // the optimizer's lr throughout
	ScheduleStep        = "step"        // lr·gamma^⌊epoch/every⌋
	ScheduleExponential = "exponential" // lr·gamma^epoch
	ScheduleCosine      = "cosine"      // from lr down to minLR along half a cosine, step by step
	ScheduleOneCycle    = "onecycle"    // up from lr/divFactor to lr, then down to lr/divFactor/finalDivFactor
)

// LRSchedule sets the learning rate of every step as a pure function of
// the step's index and the job's length (Horizon), so a job resumed from
// a checkpoint (which holds the optimizer's step count) continues on
// exactly the rates it would have had. The optimizer's lr is the base (for
// onecycle, the peak). The forms are PyTorch's: StepLR and ExponentialLR
// stepped once per epoch, CosineAnnealingLR and OneCycleLR (cosine
// annealing, momentum not cycled) once per step, so a PyTorch twin of a
// recipe runs on the same rates. Zero fields take the type's defaults.
type LRSchedule struct {
	Type string `json:"type,omitempty"`
	// WarmupEpochs ramps the rate up linearly over the first epochs (the
	// k-th step of the ramp runs at k/ramp of the schedule's rate);
	// constant, step, exponential and cosine (which then anneals over
	// the steps after the ramp). Fractions of an epoch are allowed.
	WarmupEpochs float64 `json:"warmupEpochs,omitempty"`
	// Every is the epochs between two decays of step (default 1).
	Every int `json:"every,omitempty"`
	// Gamma is the factor of each decay, in (0, 1]: step (default 0.1),
	// exponential (default 0.9).
	Gamma float64 `json:"gamma,omitempty"`
	// MinLR is cosine's rate at the end (default 0).
	MinLR float64 `json:"minLR,omitempty"`
	// PctStart is onecycle's share of the steps spent rising (default
	// 0.3); DivFactor sets its first rate, lr/DivFactor (default 25), and
	// FinalDivFactor its last, lr/DivFactor/FinalDivFactor (default 1e4).
	PctStart       float64 `json:"pctStart,omitempty"`
	DivFactor      float64 `json:"divFactor,omitempty"`
	FinalDivFactor float64 `json:"finalDivFactor,omitempty"`
}

// Horizon is the job a schedule runs over: its optimizer steps per epoch
// and in all.
type Horizon struct {
	PerEpoch, Total int64
}

// WithDefaults returns the schedule with the zero fields of its type set
// to their defaults; the zero schedule is constant.
func (s LRSchedule) WithDefaults() LRSchedule {
	if s.Type == "" {
		s.Type = ScheduleConstant
	}
	switch s.Type {
	case ScheduleStep:
		if s.Every == 0 {
			s.Every = 1
		}
		if s.Gamma == 0 {
			s.Gamma = 0.1
		}
	case ScheduleExponential:
		if s.Gamma == 0 {
			s.Gamma = 0.9
		}
	case ScheduleOneCycle:
		if s.PctStart == 0 {
			s.PctStart = 0.3
		}
		if s.DivFactor == 0 {
			s.DivFactor = 25
		}
		if s.FinalDivFactor == 0 {
			s.FinalDivFactor = 1e4
		}
	}
	return s
}

// Validate reports the first problem of the schedule for a base rate of
// lr: an unknown type, a field out of range, or one set for a type that
// does not use it.
func (s LRSchedule) Validate(lr float64) error {
	known := []string{ScheduleConstant, ScheduleStep, ScheduleExponential, ScheduleCosine, ScheduleOneCycle}
	if s.Type != "" && !slices.Contains(known, s.Type) {
		return fmt.Errorf("schedule: unknown type %q (known: constant, step, exponential, cosine, onecycle)", s.Type)
	}
	t := s.WithDefaults().Type
	fail := func(format string, args ...any) error {
		return fmt.Errorf("schedule %s: %s", t, fmt.Sprintf(format, args...))
	}
	finite := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
	switch {
	case !finite(s.WarmupEpochs) || s.WarmupEpochs < 0:
		return fail("warmupEpochs %v: must be a number of epochs, 0 or more", s.WarmupEpochs)
	case s.Every < 0:
		return fail("every %d: must be at least 1 epoch", s.Every)
	case !finite(s.Gamma) || s.Gamma < 0 || s.Gamma > 1:
		return fail("gamma %v: must be in (0, 1]", s.Gamma)
	case !finite(s.MinLR) || s.MinLR < 0 || (s.MinLR > 0 && s.MinLR >= lr):
		return fail("minLR %v: must be at least 0 and below the lr %v", s.MinLR, lr)
	case !finite(s.PctStart) || s.PctStart < 0 || s.PctStart >= 1:
		return fail("pctStart %v: must be in (0, 1)", s.PctStart)
	case !finite(s.DivFactor) || (s.DivFactor != 0 && s.DivFactor < 1):
		return fail("divFactor %v: must be at least 1", s.DivFactor)
	case !finite(s.FinalDivFactor) || (s.FinalDivFactor != 0 && s.FinalDivFactor < 1):
		return fail("finalDivFactor %v: must be at least 1", s.FinalDivFactor)
	case s.WarmupEpochs != 0 && t == ScheduleOneCycle:
		return fail("warmupEpochs does not apply: onecycle rises over pctStart of the steps")
	case s.Every != 0 && t != ScheduleStep:
		return fail("every applies to step only")
	case s.Gamma != 0 && t != ScheduleStep && t != ScheduleExponential:
		return fail("gamma applies to step and exponential only")
	case s.MinLR != 0 && t != ScheduleCosine:
		return fail("minLR applies to cosine only")
	case (s.PctStart != 0 || s.DivFactor != 0 || s.FinalDivFactor != 0) && t != ScheduleOneCycle:
		return fail("pctStart, divFactor and finalDivFactor apply to onecycle only")
	}
	return nil
}

// NeedsHorizon says whether the schedule depends on the job's length.
func (s LRSchedule) NeedsHorizon() bool {
	return s.WithDefaults().Type != ScheduleConstant || s.WarmupEpochs > 0
}

// ErrNoHorizon is returned for a schedule that needs the job's length
// when none was given.
var ErrNoHorizon = errors.New("the schedule needs the job's steps per epoch and in all")

// CheckHorizon reports whether the schedule can run over h: a known
// length where it needs one, and a warm-up shorter than the job.
func (s LRSchedule) CheckHorizon(h Horizon) error {
	if !s.NeedsHorizon() {
		return nil
	}
	if h.PerEpoch < 1 || h.Total < 1 {
		return fmt.Errorf("schedule %s: %w", s.WithDefaults().Type, ErrNoHorizon)
	}
	if w := s.warmupSteps(h); w >= h.Total && s.WithDefaults().Type == ScheduleCosine {
		return fmt.Errorf("schedule cosine: the warm-up of %d steps leaves none of the job's %d to anneal over", w, h.Total)
	}
	return nil
}

func (s LRSchedule) warmupSteps(h Horizon) int64 {
	return int64(math.Round(s.WarmupEpochs * float64(h.PerEpoch)))
}

// Rate returns the learning rate of the update with 0-based index step
// (the optimizer's count of updates before it), for a base rate of lr.
// Every product that feeds a sum is rounded by an explicit conversion (so
// no compiler fuses it into a multiply-add) and the cosine is cosPi, not
// math.Cos: the same rate, bit for bit, on every machine the coordinator
// may run on.
func (s LRSchedule) Rate(lr float64, step int64, h Horizon) float64 {
	s = s.WithDefaults()
	if !s.NeedsHorizon() {
		return lr
	}
	step = max(step, 0)
	epoch := step / max(h.PerEpoch, 1)
	warm := s.warmupSteps(h)
	var rate float64
	switch s.Type {
	case ScheduleConstant:
		rate = lr
	case ScheduleStep:
		rate = lr * kernels.PowInt(s.Gamma, int(epoch/int64(s.Every)))
	case ScheduleExponential:
		rate = lr * kernels.PowInt(s.Gamma, int(epoch))
	case ScheduleCosine:
		span := max(h.Total-warm, 1)
		t := min(max(step-warm, 0), span)
		// From lr down, so the first rate is the base exactly.
		rate = lr - float64((lr-s.MinLR)*(1-cosPi(float64(t)/float64(span)))/2)
	case ScheduleOneCycle:
		return s.oneCycle(lr, step, h.Total)
	}
	if step < warm {
		rate *= float64(step+1) / float64(warm)
	}
	return rate
}

// oneCycle is PyTorch's OneCycleLR with cosine annealing: the rate rises
// from lr/DivFactor to lr over the first PctStart of the steps, then falls
// to lr/DivFactor/FinalDivFactor at the last.
func (s LRSchedule) oneCycle(lr float64, step, total int64) float64 {
	first := lr / s.DivFactor
	last := first / s.FinalDivFactor
	peak := float64(s.PctStart*float64(total)) - 1 // the step at the peak
	end := float64(total - 1)
	anneal := func(from, to, pct float64) float64 { return to + float64((from-to)/2*(cosPi(pct)+1)) }
	x := float64(step)
	switch {
	case x <= peak:
		if peak <= 0 {
			return lr
		}
		return anneal(first, lr, x/peak)
	case x >= end:
		return last
	default:
		return anneal(lr, last, (x-peak)/(end-peak))
	}
}

// cosPi returns cos(πx) for x in [0, 1] (clamped), within an ulp or two,
// with the same bits everywhere: the Taylor series of cos z to z²² for
// z = πx in [0, π/2] (the next term is below 1e-19), each product rounded
// before it is added, and cos(πx) = −cos(π(1−x)) above ½; exact at 0, ½
// and 1.
func cosPi(x float64) float64 {
	x = min(max(x, 0), 1)
	sign := 1.0
	if x > 0.5 {
		x, sign = 1-x, -1
	}
	z := float64(math.Pi * x)
	z2 := float64(z * z)
	// Horner: cos z = 1 − z²/(1·2)(1 − z²/(3·4)(1 − …)).
	sum := 1.0
	for k := 11; k >= 1; k-- {
		sum = 1 - float64(float64(z2/float64((2*k-1)*(2*k)))*sum)
	}
	if x == 0.5 {
		return 0
	}
	return sign * sum
}
