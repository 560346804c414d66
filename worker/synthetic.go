package worker

import (
	"fmt"
	"math"
	"time"

	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/job"
)

// syntheticReplica stands in for a Computer in a synthetic worker
// (DaemonConfig.Synthetic): it skips the math, and after the set time per
// micro-batch answers with a gradient of the job's true size, so that
// everything around the math (the parameters decoded, the subtree reduced,
// the result encoded and sent, and all of the coordinator's work) costs
// what it costs in a real run. Benchmarks measure the coordinator with it
// at worker counts one machine could not compute for.
type syntheticReplica struct {
	perMicroBatch time.Duration
	microBatch    int
	grad          []float32 // every leaf's gradient: small, fixed, not zero
}

func newSyntheticReplica(spec job.Spec, perMicroBatch time.Duration) (*syntheticReplica, error) {
	netSpec, err := spec.Model()
	if err != nil {
		return nil, err
	}
	n, err := netSpec.ParamCount()
	if err != nil {
		return nil, err
	}
	grad := make([]float32, n)
	for i := range grad {
		// Values of every magnitude a real gradient has, so that no
		// encoding could send them cheaper than real ones.
		grad[i] = float32(math.Sin(float64(i)*0.7)) * 1e-3
	}
	return &syntheticReplica{perMicroBatch: perMicroBatch, microBatch: spec.MicroBatch, grad: grad}, nil
}

func (s *syntheticReplica) ParamCount() int { return len(s.grad) }

func (s *syntheticReplica) SetParams(flat []float32) error {
	if len(flat) != len(s.grad) {
		return fmt.Errorf("worker: %d parameters received, network has %d", len(flat), len(s.grad))
	}
	return nil
}

// Gradients waits the set time and copies the fixed gradient; the loss
// is that of a uniform guess over ten classes, and nothing is correct.
func (s *syntheticReplica) Gradients(mb MicroBatch, grad []float32) (lossSum float64, correct int, err error) {
	if len(grad) != len(s.grad) {
		return 0, 0, fmt.Errorf("worker: gradient buffer of %d, network has %d parameters", len(grad), len(s.grad))
	}
	time.Sleep(s.perMicroBatch)
	copy(grad, s.grad)
	return float64(len(mb.Indices)) * math.Log(10), 0, nil
}

// Evaluate counts nothing correct, at once: a synthetic run's accuracy
// means nothing.
func (s *syntheticReplica) Evaluate(*dataset.Set, int, int) (int, error) { return 0, nil }

func (s *syntheticReplica) Close() error { return nil }
