package coordinator

import (
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/train"
	"github.com/dpcnn/dpcnn/worker"
)

// The server's results are compared with an in-process run of the same job
// (train.Trainer with one train.LocalWorkers), which computes exactly what a
// cluster does.

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
func newLocalRun(t *testing.T, spec job.Spec, threads int) (*train.Trainer, *train.LocalWorkers) {
	t.Helper()
	trainSet, test := loadMNIST(t)
	b := kernels.NewCPU(threads)
	t.Cleanup(b.Close)
	tr, err := train.NewTrainer(spec, b, trainSet.Len(), test.Len(), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	comp, err := worker.NewComputer(tr.Spec(), b, trainSet, 100)
	if err != nil {
		t.Fatal(err)
	}
	return tr, &train.LocalWorkers{Computer: comp, Test: test}
}

func paramHash(params []float32) [32]byte {
	h := sha256.New()
	binary.Write(h, binary.LittleEndian, params)
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}
