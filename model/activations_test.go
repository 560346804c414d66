package model

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// Activations gives every layer's output in the spec's shapes; the last is
// Forward's logits, and a max pool's maps are its input's, pooled.
func TestActivationsOfEveryLayer(t *testing.T) {
	for _, name := range []string{"deep", "simple", "lenet"} {
		t.Run(name, func(t *testing.T) {
			net := newTestNetwork[float64](t, name, 2)
			net.InitParams(3)
			rng := rand.New(rand.NewPCG(1, 2))
			x := make([]float64, 2*net.InputSize())
			for i := range x {
				x[i] = rng.Float64()
			}
			acts, err := net.Activations(x, 2)
			if err != nil {
				t.Fatal(err)
			}
			plans, _ := net.Spec().plan()
			if len(acts) != len(plans)-1 {
				t.Fatalf("%d activations for %d layers before the softmax", len(acts), len(plans)-1)
			}
			for i, a := range acts {
				lp := plans[i]
				if a.Index != lp.Index || a.Name != lp.Name || a.Type != lp.Spec.Type || a.Height != lp.Out.H ||
					a.Width != lp.Out.W || a.Channels != lp.Out.C || len(a.Values) != 2*lp.Out.size() {
					t.Errorf("activation %d: %s %s %dx%dx%d with %d values; the plan says %s %s %s",
						i, a.Name, a.Type, a.Height, a.Width, a.Channels, len(a.Values), lp.Name, lp.Spec.Type, lp.Out)
				}
				if a.Type == LayerMaxPool && i > 0 {
					in, s := acts[i-1], lp.Spec.Size
					// Sample 1, channel 0, the top-left window.
					var m float64 = -1e300
					for dy := range s {
						for dx := range s {
							m = max(m, in.Values[in.Height*in.Width*in.Channels+(dy*in.Width+dx)*in.Channels])
						}
					}
					if got := a.Values[a.Height*a.Width*a.Channels]; got != m {
						t.Errorf("%s: pooled %v, the maximum of its window is %v", a.Name, got, m)
					}
				}
			}
			logits := mustForward(t, net, x, 2, nil, RunContext{})
			if last := acts[len(acts)-1]; !slices.Equal(last.Values, logits) {
				t.Errorf("the last activation %v differs from Forward's logits %v", last.Values, logits)
			}
		})
	}
	net := newTestNetwork[float32](t, "simple", 1)
	if _, err := net.Activations(make([]float32, 10), 1); err == nil {
		t.Error("Activations of a short input: no error")
	}
}
