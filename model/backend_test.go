package model

import (
	"math"
	"testing"

	"github.com/dpcnn/dpcnn/kernels"
)

// TestCPUBackendMatchesReference trains one step of every built-in (and the
// AlexNet-style spec) on the float32 CPU backend and on the float64
// reference from the same parameters, and compares the loss, the correct
// count and every gradient tensor by name, as llm.c checks its kernels end to
// end. Tolerance: |cpu − ref| ≤ 1e-4·max|ref| over the tensor; float32
// rounding through a dozen layers stays near 1e-6 of it.
func TestCPUBackendMatchesReference(t *testing.T) {
	cpu := kernels.NewCPU(2)
	defer cpu.Close()
	specs := []Spec{alexNetSpec()}
	for _, name := range BuiltinNames() {
		s, _ := Builtin(name)
		specs = append(specs, s)
	}
	for _, s := range specs {
		t.Run(s.Name, func(t *testing.T) {
			const batch = 3
			ref, err := New(s, kernels.NewReference[float64](), batch)
			if err != nil {
				t.Fatal(err)
			}
			fast, err := New[float32](s, cpu, batch)
			if err != nil {
				t.Fatal(err)
			}
			ref.InitParams(21)
			if err := ref.ImportParams(ref.ExportParams()); err != nil { // round to float32 on both sides
				t.Fatal(err)
			}
			if err := fast.ImportParams(ref.ExportParams()); err != nil {
				t.Fatal(err)
			}
			r := newRand(21)
			x64 := make([]float64, batch*ref.InputSize())
			x32 := make([]float32, len(x64))
			for i := range x64 {
				x32[i] = r.Float32()
				x64[i] = float64(x32[i])
			}
			labels := []int32{1, 7, 3}
			samples := []int64{4, 40, 400}
			rc := RunContext{Train: true, Seed: 21, Step: 2}
			refLoss, refCorrect := mustLoss(t, ref, x64, labels, samples, rc, 1.0/batch)
			fastLoss, fastCorrect := mustLoss(t, fast, x32, labels, samples, rc, 1.0/batch)
			if math.Abs(refLoss-fastLoss) > 1e-5*refLoss || refCorrect != fastCorrect {
				t.Errorf("loss %v, %d correct; reference %v, %d correct", fastLoss, fastCorrect, refLoss, refCorrect)
			}
			mustBackward(t, ref)
			mustBackward(t, fast)
			worstAll := 0.0
			for i, rp := range ref.Params() {
				fp := fast.Params()[i]
				scale := 0.0
				for _, g := range rp.Grad {
					scale = max(scale, math.Abs(g))
				}
				worst, at := 0.0, 0
				for j, g := range rp.Grad {
					if d := math.Abs(float64(fp.Grad[j]) - g); d > worst {
						worst, at = d, j
					}
				}
				worstAll = max(worstAll, worst/scale)
				if worst > 1e-4*scale {
					t.Errorf("%s[%d]: gradient %v, reference %v (tensor max %v)", rp.Name, at, fp.Grad[at], rp.Grad[at], scale)
				}
			}
			t.Logf("loss %v vs %v; worst gradient difference %.2g of its tensor's largest", fastLoss, refLoss, worstAll)
		})
	}
}
