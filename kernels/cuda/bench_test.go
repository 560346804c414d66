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
// model.Network with its tensors in GPU memory ("cuda": the parameters and
// the batch in, the losses and the gradients out, Adam on the host-slice
// Backend as the coordinator runs it) and the same network through the
// Backend's host-slice methods ("cuda-per-call": every layer's tensors
// copied in and out) — and on the CPU backend with every core at batch 100
// and 1000 for comparison. Run it with a fixed count of steps, e.g.
//
//	cuda.test -test.run XXX -test.bench TrainDeep -test.benchtime 20x
func BenchmarkTrainDeep(b *testing.B) {
	for _, batch := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("cuda/batch=%d", batch), func(b *testing.B) {
			benchTrainDeep(b, deviceBackend(b), batch)
		})
	}
	for _, batch := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("cuda-per-call/batch=%d", batch), func(b *testing.B) {
			benchTrainDeep(b, hostSlices{deviceBackend(b)}, batch)
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
	defer net.Close()
	net.InitParams(1)
	opt, err := model.NewOptimizer(model.OptimizerSpec{}, net.Params(), model.Horizon{})
	if err != nil {
		b.Fatal(err)
	}
	x, labels, samples := syntheticBatch(batch, net.InputSize(), 1)
	step := func(i int) {
		if _, _, err := net.Loss(x, labels, samples, model.RunContext{Train: true, Seed: 1, Step: uint64(i)}, 1/float32(batch)); err != nil {
			b.Fatal(err)
		}
		if err := net.Backward(); err != nil {
			b.Fatal(err)
		}
		opt.Update(backend, net.Params())
	}
	step(0) // scratch buffers grow to size in the first step
	steps := 0
	for b.Loop() {
		steps++
		step(steps)
	}
	b.ReportMetric(float64(steps*batch)/b.Elapsed().Seconds(), "images/s")
}
