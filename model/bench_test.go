package model

import (
	"testing"

	"github.com/dpcnn/dpcnn/kernels"
)

// BenchmarkTrainStep times one Loss + Backward + Adam update of each
// built-in network on the float32 reference backend (a baseline for the
// fast backends), batch 8.
func BenchmarkTrainStep(b *testing.B) {
	const batch = 8
	for _, name := range BuiltinNames() {
		b.Run(name, func(b *testing.B) {
			s, _ := Builtin(name)
			net, err := New(s, kernels.NewReference[float32](), batch)
			if err != nil {
				b.Fatal(err)
			}
			net.InitParams(1)
			opt, err := NewOptimizer(OptimizerSpec{}, net.Params(), Horizon{})
			if err != nil {
				b.Fatal(err)
			}
			x := make([]float32, batch*net.InputSize())
			r := newRand(1)
			for i := range x {
				x[i] = r.Float32()
			}
			labels := make([]int32, batch)
			samples := make([]int64, batch)
			for i := range labels {
				labels[i], samples[i] = int32(i%10), int64(i)
			}
			steps := 0
			for b.Loop() {
				mustLoss(b, net, x, labels, samples, RunContext{Train: true, Step: uint64(steps)}, 1.0/batch)
				mustBackward(b, net)
				opt.Update(net.Backend(), net.Params())
				steps++
			}
			b.ReportMetric(float64(steps*batch)/b.Elapsed().Seconds(), "samples/s")
		})
	}
}

// BenchmarkDeepCPU times a training step (Loss, Backward, Adam) and a
// test-mode forward pass of the deep network on the CPU backend at batch
// 100, on all cores: the per-worker work of `cnnctl train`, without the
// data pipeline. Profile it with -cpuprofile.
func BenchmarkDeepCPU(b *testing.B) {
	const batch = 100
	s, _ := Builtin("deep")
	cpu := kernels.NewCPU(0)
	defer cpu.Close()
	net, err := New(s, cpu, batch)
	if err != nil {
		b.Fatal(err)
	}
	net.InitParams(1)
	opt, err := NewOptimizer(OptimizerSpec{Type: "adam"}, net.Params(), Horizon{})
	if err != nil {
		b.Fatal(err)
	}
	r := newRand(1)
	x := make([]float32, batch*net.InputSize())
	for i := range x {
		x[i] = r.Float32()
	}
	labels := make([]int32, batch)
	samples := make([]int64, batch)
	for i := range labels {
		labels[i], samples[i] = int32(i%10), int64(i)
	}
	b.Run("Train", func(b *testing.B) {
		steps := 0
		for b.Loop() {
			mustLoss(b, net, x, labels, samples, RunContext{Train: true, Step: uint64(steps)}, 1.0/batch)
			mustBackward(b, net)
			opt.Update(net.Backend(), net.Params())
			steps++
		}
		b.ReportMetric(float64(steps*batch)/b.Elapsed().Seconds(), "images/s")
	})
	b.Run("Inference", func(b *testing.B) {
		for b.Loop() {
			mustForward(b, net, x, batch, nil, RunContext{})
		}
		b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "images/s")
	})
}
