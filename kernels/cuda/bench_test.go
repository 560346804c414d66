package cuda

import (
	"fmt"
	"testing"

	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/model"
)

// BenchmarkTrainDeep measures deep-net training throughput: one step is
// Loss (forward and softmax-cross-entropy), Backward and an Adam update of
// the built-in "deep" network on synthetic MNIST-sized inputs, as
// scripts/bench_torch_gpu.py does in PyTorch. It reports images/s on the
// CUDA backend at batch 100, 1000 and 10000 (per-worker batches) two ways —
// model.Network on the Backend ("cuda", every layer's tensors copied in and
// out) and the device-resident Network ("cuda-resident": parameters in,
// gradients out, Adam on the Backend) — and on the CPU backend with every
// core at batch 100 and 1000 for comparison.
// Run it with a fixed count of steps, e.g.
//
//	cuda.test -test.run XXX -test.bench TrainDeep -test.benchtime 20x
func BenchmarkTrainDeep(b *testing.B) {
	for _, batch := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("cuda/batch=%d", batch), func(b *testing.B) {
			benchTrainDeep(b, deviceBackend(b), batch)
		})
	}
	for _, batch := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("cuda-resident/batch=%d", batch), func(b *testing.B) {
			benchTrainDeepResident(b, deviceBackend(b), batch)
		})
	}
	for _, batch := range []int{100, 1000} {
		b.Run(fmt.Sprintf("cpu/batch=%d", batch), func(b *testing.B) {
			cpu := kernels.NewCPU(0)
			defer cpu.Close()
			benchTrainDeep(b, cpu, batch)
		})
	}
}

func benchTrainDeep(b *testing.B, backend kernels.Backend[float32], batch int) {
	s, err := model.Builtin("deep")
	if err != nil {
		b.Fatal(err)
	}
	net, err := model.New(s, backend, batch)
	if err != nil {
		b.Fatal(err)
	}
	net.InitParams(1)
	opt, err := model.NewOptimizer(model.OptimizerSpec{}, net.Params())
	if err != nil {
		b.Fatal(err)
	}
	x, labels, samples := syntheticBatch(batch, net.InputSize(), 1)
	step := func(i int) {
		net.Loss(x, labels, samples, model.RunContext{Train: true, Seed: 1, Step: uint64(i)}, 1/float32(batch))
		net.Backward()
		opt.Update(backend, net.Params())
	}
	step(0) // device buffers grow to size in the first step
	if cb, ok := backend.(*Backend); ok {
		if err := cb.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	steps := 0
	for b.Loop() {
		steps++
		step(steps)
	}
	b.ReportMetric(float64(steps*batch)/b.Elapsed().Seconds(), "images/s")
}

// benchTrainDeepResident is one worker step on the resident Network plus
// the optimizer: parameters uploaded, Loss, Backward, gradients
// downloaded, an Adam update of the flat vectors on the backend.
func benchTrainDeepResident(b *testing.B, backend *Backend, batch int) {
	s, err := model.Builtin("deep")
	if err != nil {
		b.Fatal(err)
	}
	init, err := model.New[float32](s, kernels.NewReference[float32](), 1)
	if err != nil {
		b.Fatal(err)
	}
	init.InitParams(1)
	var params []float32
	for _, p := range init.Params() {
		params = append(params, p.Value...)
	}
	net, err := NewNetwork(backend, s, batch)
	if err != nil {
		b.Fatal(err)
	}
	defer net.Close()
	grads := make([]float32, len(params))
	m, v := make([]float32, len(params)), make([]float32, len(params))
	x, labels, samples := syntheticBatch(batch, net.InputSize(), 1)
	step := func(i int) {
		if err := net.SetParams(params); err != nil {
			b.Fatal(err)
		}
		if _, _, err := net.Loss(x, labels, samples, model.RunContext{Train: true, Seed: 1, Step: uint64(i)}, 1/float32(batch)); err != nil {
			b.Fatal(err)
		}
		if err := net.Backward(); err != nil {
			b.Fatal(err)
		}
		if err := net.Grads(grads); err != nil {
			b.Fatal(err)
		}
		backend.AdamUpdate(kernels.AdamParams{LR: 0.001, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, T: i + 1}, params, grads, m, v)
	}
	step(0)
	if err := backend.Sync(); err != nil {
		b.Fatal(err)
	}
	steps := 0
	for b.Loop() {
		steps++
		step(steps)
	}
	b.ReportMetric(float64(steps*batch)/b.Elapsed().Seconds(), "images/s")
}
