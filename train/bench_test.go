package train

import (
	"context"
	"testing"
	"time"

	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/worker"
)

// BenchmarkTrainStep times whole training steps of each built-in network on
// the CPU backend at batch 100, as `cnnctl train` runs them: batch filled from
// MNIST, forward, backward, reduction and Adam update, on all cores
// (GOMAXPROCS). It reports images/s.
//
//	go test ./train -run XXX -bench TrainStep -benchtime 50x
func BenchmarkTrainStep(b *testing.B) {
	for _, net := range []string{"deep", "simple", "lenet"} {
		b.Run(net, func(b *testing.B) {
			train, test := loadMNIST(b)
			cpu := kernels.NewCPU(0)
			defer cpu.Close()
			spec := job.Spec{Network: net, Epochs: 1000, Batch: 100, Seed: 1}
			tr, err := NewTrainer(spec, cpu, train.Len(), test.Len(), time.Now)
			if err != nil {
				b.Fatal(err)
			}
			comp, err := worker.NewComputer(tr.Spec(), cpu, train, 100)
			if err != nil {
				b.Fatal(err)
			}
			w := &LocalWorkers{Computer: comp, Test: test}
			perEpoch := int(tr.eng.Schedule().PerEpoch)
			step := 0
			for b.Loop() {
				if _, _, err := tr.trainStep(context.Background(), w, int64(step/perEpoch), step%perEpoch); err != nil {
					b.Fatal(err)
				}
				step++
			}
			b.ReportMetric(float64(step*spec.Batch)/b.Elapsed().Seconds(), "images/s")
		})
	}
}

// BenchmarkInference times test-mode classification of the deep network at
// batch 100 on the CPU backend.
func BenchmarkInference(b *testing.B) {
	train, test := loadMNIST(b)
	cpu := kernels.NewCPU(0)
	defer cpu.Close()
	spec := job.Spec{Network: "deep", Epochs: 1, Batch: 100, Seed: 1}.WithDefaults()
	comp, err := worker.NewComputer(spec, cpu, train, 100)
	if err != nil {
		b.Fatal(err)
	}
	images := 0
	for b.Loop() {
		from := (images / 100 % 100) * 100
		if _, err := comp.Evaluate(test, from, from+100); err != nil {
			b.Fatal(err)
		}
		images += 100
	}
	b.ReportMetric(float64(images)/b.Elapsed().Seconds(), "images/s")
}
