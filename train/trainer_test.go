package train

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/model"
	"github.com/dpcnn/dpcnn/worker"
)

var mnist struct {
	once        sync.Once
	train, test *dataset.Set
	err         error
}

func loadMNIST(t testing.TB) (train, test *dataset.Set) {
	t.Helper()
	mnist.once.Do(func() {
		dir, err := dataset.Locate("")
		if err != nil {
			mnist.err = err
			return
		}
		mnist.train, mnist.test, mnist.err = dataset.LoadMNIST(dir)
	})
	if mnist.err != nil {
		t.Fatal(mnist.err)
	}
	return mnist.train, mnist.test
}

// newLocalRun builds a trainer and one in-process worker for spec.
func newLocalRun(t *testing.T, spec job.Spec, threads int) (*Trainer, *LocalWorkers) {
	t.Helper()
	train, test := loadMNIST(t)
	b := kernels.NewCPU(threads)
	t.Cleanup(b.Close)
	tr, err := NewTrainer(spec, b, train.Len(), test.Len(), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	comp, err := worker.NewComputer(tr.Spec(), b, train, 100)
	if err != nil {
		t.Fatal(err)
	}
	return tr, &LocalWorkers{Computer: comp, Test: test}
}

func paramHash(params []float32) [32]byte {
	h := sha256.New()
	binary.Write(h, binary.LittleEndian, params)
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

func smallJob() job.Spec {
	return job.Spec{
		Network: "simple", Epochs: 2, Batch: 50, MicroBatch: 25, TrainLimit: 500, TestLimit: 200, Seed: 3,
		Augment: dataset.Augment{RotateDeg: 10, ShiftPx: 2},
	}
}

func TestTrainerLearns(t *testing.T) {
	spec := smallJob()
	spec.Optimizer.LR = 0.005
	tr, w := newLocalRun(t, spec, 2)
	var first, last float64
	var reports, evals int
	var ckpts []*model.Checkpoint
	res, err := tr.Run(context.Background(), w, func(p Progress) {
		if reports == 0 {
			first = p.Loss
		}
		last = p.Loss
		reports++
		if p.Evaluated {
			evals++
		}
	}, func(c *model.Checkpoint) error { ckpts = append(ckpts, c); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if res.Steps != 20 || reports != 20 || evals != 2 || len(ckpts) != 2 {
		t.Fatalf("steps %d, reports %d, evaluations %d, checkpoints %d; want 20, 20, 2, 2", res.Steps, reports, evals, len(ckpts))
	}
	if !(last < first) || math.IsNaN(res.TestAccuracy) || res.TestAccuracy < 0.5 {
		t.Fatalf("loss %.3f -> %.3f, test accuracy %.3f: not learning", first, last, res.TestAccuracy)
	}
}

// The trained parameters are a pure function of the job: the same on 1 and
// 2 threads, and the same when the run is stopped at a checkpoint, encoded
// (as the coordinator writes it to disk), and resumed by a new trainer.
func TestTrainerDeterministic(t *testing.T) {
	spec := smallJob()
	spec.Network = "deep"
	spec.Epochs = 1
	spec.Steps = 4
	run := func(threads int) [32]byte {
		tr, w := newLocalRun(t, spec, threads)
		if _, err := tr.Run(context.Background(), w, nil, nil); err != nil {
			t.Fatal(err)
		}
		return paramHash(tr.Params())
	}
	one, two := run(1), run(2)
	if one != two {
		t.Fatalf("parameters after %d steps differ: 1 thread %x, 2 threads %x", spec.Steps, one[:8], two[:8])
	}

	half := spec
	half.Steps = 2
	tr, w := newLocalRun(t, half, 2)
	if _, err := tr.Run(context.Background(), w, nil, nil); err != nil {
		t.Fatal(err)
	}
	var encoded bytes.Buffer
	if err := model.WriteCheckpoint(&encoded, tr.Checkpoint()); err != nil {
		t.Fatal(err)
	}
	c, err := model.ReadCheckpoint(&encoded)
	if err != nil {
		t.Fatal(err)
	}
	resumed, w2 := newLocalRun(t, spec, 2)
	if err := resumed.Restore(c); err != nil {
		t.Fatal(err)
	}
	if _, err := resumed.Run(context.Background(), w2, nil, nil); err != nil {
		t.Fatal(err)
	}
	if got := paramHash(resumed.Params()); got != one {
		t.Fatalf("resumed run ends at %x, uninterrupted run at %x", got[:8], one[:8])
	}
}

func TestRestoreRefusesOtherJob(t *testing.T) {
	tr, _ := newLocalRun(t, smallJob(), 1)
	c := tr.Checkpoint()
	c.Seed++
	if err := tr.Restore(c); err == nil {
		t.Fatal("checkpoint of another seed accepted")
	}
}
