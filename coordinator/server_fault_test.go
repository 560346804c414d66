package coordinator

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
	"github.com/dpcnn/dpcnn/worker"
)

// faultyBackend is a CPU backend that fails on purpose while broken is
// set: its loss kernel panics as a kernel assertion does (or, with
// outOfRange, with a runtime index error), the faults a bad job or a bug
// raises inside a worker's computation.
type faultyBackend struct {
	kernels.Backend[float32]
	broken     *atomic.Bool
	outOfRange bool
}

func (b *faultyBackend) SoftmaxCrossEntropy(n, classes int, logits []float32, labels []int32, scale float32, probs, dlogits []float32) (float64, int) {
	if b.broken.Load() {
		if b.outOfRange {
			var none []int
			_ = none[len(labels)] // index out of range, on purpose
		}
		panic(fmt.Sprintf("kernels: faulty: row 0: label %d outside [0, 2) (on purpose)", labels[0]))
	}
	return b.Backend.SoftmaxCrossEntropy(n, classes, logits, labels, scale, probs, dlogits)
}

// startFaultyDaemons starts n worker daemons on faulty backends, the
// second one failing with a runtime error.
func startFaultyDaemons(t *testing.T, cli *clientv3.Client, n int, broken *atomic.Bool) {
	t.Helper()
	startDaemonsFrom(t, cli, 0, n, func(cfg *worker.DaemonConfig) {
		b := kernels.NewCPU(1)
		t.Cleanup(b.Close)
		cfg.Backend = &faultyBackend{Backend: b, broken: broken, outOfRange: cfg.ID == "daemon-b"}
	})
}

// runToEnd submits spec as job id and returns the job once it has ended,
// with its log lines.
func runToEnd(t *testing.T, c *testCoordinator, id string) (*dpcnnv1.Job, []string) {
	t.Helper()
	jobs := dpcnnv1.NewJobServiceClient(c.conn)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	if _, err := jobs.SubmitJob(ctx, &dpcnnv1.SubmitJobRequest{Spec: tinySpec().JSON(), JobId: id}); err != nil {
		t.Fatal(err)
	}
	var logs []string
	for _, ev := range watchToEnd(t, jobs, id) {
		if l := ev.GetLog(); l != nil {
			logs = append(logs, l.Message)
		}
	}
	j, err := jobs.GetJob(ctx, &dpcnnv1.GetJobRequest{JobId: id})
	if err != nil {
		t.Fatal(err)
	}
	return j, logs
}

// A panic inside the workers' computation fails their assignments, not
// the worker processes: the coordinator fails the job once its work has
// failed on FailingWorkers distinct workers, naming each worker, the step
// and the cause in the job's error and log, and the same workers then
// train the next job to the end.
func TestServerFailsAJobWhoseWorkFaultsAndWorkersLiveOn(t *testing.T) {
	cli := testEtcd(t)
	c := startCoordinator(t, cli, "c1", t.TempDir())
	waitLeading(t, c)
	var broken atomic.Bool
	broken.Store(true)
	startFaultyDaemons(t, cli, 2, &broken)

	j, logs := runToEnd(t, c, "doomed")
	if j.State != dpcnnv1.JobState_JOB_STATE_FAILED {
		t.Fatalf("job ended %v (%s), want FAILED", j.State, j.Error)
	}
	for _, want := range []string{"failures from workers daemon-", "worker daemon-a: job doomed", "worker daemon-b: job doomed",
		"step 1: subtree", "fault in gradients of step 1", "label", "outside [0, 2) (on purpose)", "index out of range", "the job cannot be done"} {
		if !strings.Contains(j.Error, want) {
			t.Errorf("the job's error lacks %q:\n%s", want, j.Error)
		}
	}
	t.Logf("the job failed: %s", j.Error)
	if all := strings.Join(logs, "\n"); !strings.Contains(all, "fault in gradients") {
		t.Errorf("the job log does not give the cause:\n%s", all)
	}

	broken.Store(false)
	if j, _ := runToEnd(t, c, "after"); j.State != dpcnnv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("the next job on the same workers ended %v: %s", j.State, j.Error)
	}
}

// With a single worker, a fault fails the job at once rather than leave it
// waiting for ever for an unflagged worker.
func TestServerFailsAJobWhoseOnlyWorkerFaults(t *testing.T) {
	cli := testEtcd(t)
	c := startCoordinator(t, cli, "c1", t.TempDir())
	waitLeading(t, c)
	var broken atomic.Bool
	broken.Store(true)
	startFaultyDaemons(t, cli, 1, &broken)

	j, _ := runToEnd(t, c, "alone")
	if j.State != dpcnnv1.JobState_JOB_STATE_FAILED || !strings.Contains(j.Error, "no other live worker is left to redo it") ||
		!strings.Contains(j.Error, "on purpose") {
		t.Fatalf("job ended %v: %s", j.State, j.Error)
	}
	broken.Store(false)
	if j, _ := runToEnd(t, c, "after"); j.State != dpcnnv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("the next job on the same worker ended %v: %s", j.State, j.Error)
	}
}
