package backends_test

import (
	"math"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/dpcnn/dpcnn/backends"
	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/model"
	"github.com/dpcnn/dpcnn/worker"
)

// TestWorkerComputesOnTheDevice runs the worker's Computer on the CUDA
// backend (whose network keeps its tensors in GPU memory) and
// on the CPU, with the same parameters, micro-batches and evaluation, and
// checks that the losses, gradients and predictions agree within float32
// rounding. It needs a GPU: without one it skips, saying why, and
// DPCNN_REQUIRE_CUDA=1 (scripts/gpu-check.sh run) makes that a failure.
func TestWorkerComputesOnTheDevice(t *testing.T) {
	gpu, err := backends.Open("cuda", 0)
	if err != nil {
		if os.Getenv("DPCNN_REQUIRE_CUDA") == "1" {
			t.Fatalf("DPCNN_REQUIRE_CUDA=1: %v", err)
		}
		t.Skipf("no CUDA device: %v", err)
	}
	defer backends.Close(gpu)
	cpu, err := backends.Open("cpu", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer backends.Close(cpu)

	rng := rand.New(rand.NewPCG(5, 6))
	const n, side = 64, 28
	images := &dataset.Images{N: n, Rows: side, Cols: side, Pixels: make([]uint8, n*side*side)}
	for i := range images.Pixels {
		images.Pixels[i] = uint8(rng.IntN(256))
	}
	labels := make([]uint8, n)
	for i := range labels {
		labels[i] = uint8(rng.IntN(10))
	}
	set, err := dataset.NewSet("random", images, labels, dataset.MNISTClasses)
	if err != nil {
		t.Fatal(err)
	}
	for _, net := range []string{"simple", "deep", "lenet"} {
		t.Run(net, func(t *testing.T) {
			spec := job.Spec{Network: net, Batch: 32, MicroBatch: 16, Seed: 9, Steps: 1}.WithDefaults()
			onGPU, err := worker.NewComputer(spec, gpu, set, 32)
			if err != nil {
				t.Fatal(err)
			}
			defer onGPU.Close()
			onCPU, err := worker.NewComputer(spec, cpu, set, 32)
			if err != nil {
				t.Fatal(err)
			}
			defer onCPU.Close()

			netSpec, err := spec.Model()
			if err != nil {
				t.Fatal(err)
			}
			init, err := model.New[float32](netSpec, cpu, 1)
			if err != nil {
				t.Fatal(err)
			}
			init.InitParams(spec.Seed)
			var params []float32
			for _, p := range init.Params() {
				params = append(params, p.Value...)
			}
			for _, c := range []*worker.Computer{onGPU, onCPU} {
				if err := c.SetParams(params); err != nil {
					t.Fatal(err)
				}
			}
			idx := make([]int32, spec.MicroBatch)
			for i := range idx {
				idx[i] = int32(rng.IntN(n))
			}
			mb := worker.MicroBatch{Epoch: 0, Step: 3, Indices: idx}
			gGPU, gCPU := make([]float32, len(params)), make([]float32, len(params))
			lossGPU, correctGPU, err := onGPU.Gradients(mb, gGPU)
			if err != nil {
				t.Fatal(err)
			}
			lossCPU, correctCPU, err := onCPU.Gradients(mb, gCPU)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(lossGPU-lossCPU) > 1e-4*math.Abs(lossCPU)+1e-4 || correctGPU != correctCPU {
				t.Errorf("loss %v (%d correct) on the device, %v (%d) on the CPU", lossGPU, correctGPU, lossCPU, correctCPU)
			}
			scale := 0.0
			for _, g := range gCPU {
				scale = max(scale, math.Abs(float64(g)))
			}
			for i := range gCPU {
				if d := math.Abs(float64(gGPU[i] - gCPU[i])); d > 1e-3*scale+1e-6 || math.IsNaN(float64(gGPU[i])) {
					t.Fatalf("gradient %d: %v on the device, %v on the CPU (largest %v)", i, gGPU[i], gCPU[i], scale)
				}
			}
			cGPU, err := onGPU.Evaluate(set, 0, n)
			if err != nil {
				t.Fatal(err)
			}
			cCPU, err := onCPU.Evaluate(set, 0, n)
			if err != nil {
				t.Fatal(err)
			}
			if d := cGPU - cCPU; d < -1 || d > 1 {
				t.Errorf("%d of %d right on the device, %d on the CPU", cGPU, n, cCPU)
			}
		})
	}
}
