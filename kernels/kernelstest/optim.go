package kernelstest

import (
	"fmt"
	"testing"

	"github.com/dpcnn/dpcnn/kernels"
)

// optimCounts are parameter lengths for the update tests.
var optimCounts = []int{0, 1, 7, 8, 33, 1000}

// TestOptimizers checks SGDUpdate, MomentumUpdate, AdaGradUpdate and
// AdamUpdate: every parameter and slot they update, on state of realistic
// magnitude (moments of gradients of order 0.1).
func TestOptimizers(t *testing.T, b kernels.Backend[float32]) {
	t.Run("SGD", func(t *testing.T) {
		rng := newRand(1400)
		var f failures
		for _, n := range optimCounts {
			for _, lr := range []float64{0.01, 1} {
				what := fmt.Sprintf("SGDUpdate n=%d lr=%v", n, lr)
				p := randomBuffer(rng, "p", n, -1, 1)
				g := randomBuffer(rng, "g", n, -1, 1)
				want := p.wide()
				ref().SGDUpdate(lr, want, g.wide())
				b.SGDUpdate(lr, p.data(), g.data())
				f.note(t, g.checkUnchanged(t, what) && p.checkGuards(t, what) && compare(t, what, p.data(), want, elementTol, nil))
			}
		}
	})
	t.Run("Momentum", func(t *testing.T) {
		rng := newRand(1401)
		var f failures
		for _, n := range optimCounts {
			for _, hp := range [][2]float64{{0.01, 0.9}, {0.1, 0.5}, {0.01, 0}} {
				lr, mu := hp[0], hp[1]
				what := fmt.Sprintf("MomentumUpdate n=%d lr=%v momentum=%v", n, lr, mu)
				p := randomBuffer(rng, "p", n, -1, 1)
				g := randomBuffer(rng, "g", n, -1, 1)
				v := randomBuffer(rng, "v", n, -0.1, 0.1)
				wantP, wantV := p.wide(), v.wide()
				ref().MomentumUpdate(lr, mu, wantP, g.wide(), wantV)
				b.MomentumUpdate(lr, mu, p.data(), g.data(), v.data())
				f.note(t, g.checkUnchanged(t, what) && p.checkGuards(t, what) && v.checkGuards(t, what) &&
					compare(t, what+" v", v.data(), wantV, elementTol, nil) &&
					compare(t, what+" p", p.data(), wantP, elementTol, nil))
			}
		}
	})
	t.Run("AdaGrad", func(t *testing.T) {
		rng := newRand(1402)
		var f failures
		for _, n := range optimCounts {
			for _, lr := range []float64{0.01, 0.5} {
				what := fmt.Sprintf("AdaGradUpdate n=%d lr=%v", n, lr)
				p := randomBuffer(rng, "p", n, -1, 1)
				g := randomBuffer(rng, "g", n, -1, 1)
				h := randomBuffer(rng, "h", n, 0, 1)
				if n > 0 {
					// A fresh slot with a zero gradient: 0/(0 + 1e-7).
					h.data()[0], g.data()[0] = 0, 0
					h.seal()
					g.seal()
				}
				wantP, wantH := p.wide(), h.wide()
				ref().AdaGradUpdate(lr, wantP, g.wide(), wantH)
				b.AdaGradUpdate(lr, p.data(), g.data(), h.data())
				f.note(t, g.checkUnchanged(t, what) && p.checkGuards(t, what) && h.checkGuards(t, what) &&
					compare(t, what+" h", h.data(), wantH, elementTol, nil) &&
					compare(t, what+" p", p.data(), wantP, elementTol, nil))
			}
		}
	})
	t.Run("Adam", func(t *testing.T) {
		rng := newRand(1403)
		var f failures
		for _, n := range optimCounts {
			for _, a := range []kernels.AdamParams{
				{LR: 0.001, Beta1: 0.9, Beta2: 0.999, Eps: 1e-7, T: 1},
				{LR: 0.001, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, T: 2},
				{LR: 0.01, Beta1: 0.8, Beta2: 0.99, Eps: 1e-7, T: 1000},
			} {
				what := fmt.Sprintf("AdamUpdate n=%d %+v", n, a)
				p := randomBuffer(rng, "p", n, -1, 1)
				g := randomBuffer(rng, "g", n, -0.1, 0.1)
				m := randomBuffer(rng, "m", n, -0.1, 0.1)
				v := randomBuffer(rng, "v", n, 0.001, 0.01)
				if a.T == 1 {
					// The first step starts from zero moments.
					clear(m.data())
					clear(v.data())
					m.seal()
					v.seal()
				}
				wantP, wantM, wantV := p.wide(), m.wide(), v.wide()
				ref().AdamUpdate(a, wantP, g.wide(), wantM, wantV)
				b.AdamUpdate(a, p.data(), g.data(), m.data(), v.data())
				f.note(t, g.checkUnchanged(t, what) && p.checkGuards(t, what) && m.checkGuards(t, what) && v.checkGuards(t, what) &&
					compare(t, what+" m", m.data(), wantM, elementTol, nil) &&
					compare(t, what+" v", v.data(), wantV, elementTol, nil) &&
					compare(t, what+" p", p.data(), wantP, elementTol, nil))
			}
		}
	})
}
