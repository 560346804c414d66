package coordinator

import (
	"context"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
	"github.com/dpcnn/dpcnn/worker"
)

// startDaemons runs n worker daemons (worker.Run) that find the leader in
// etcd, until the test ends.
func startDaemons(t *testing.T, cli *clientv3.Client, n int) {
	t.Helper()
	train, test := loadMNIST(t)
	dir, err := dataset.Locate("")
	if err != nil {
		t.Fatal(err)
	}
	files, err := worker.LocalDatasetFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range n {
		cfg := worker.DaemonConfig{
			ID: "daemon-" + string(rune('a'+i)), Etcd: cli, Prefix: "/test/",
			BackendName: "cpu", Threads: 1, Train: train, Test: test, DatasetFiles: files,
			ImagesPerSec: 1000, EvalBatch: 50, RegistrationTTL: time.Second,
			RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond, DrainTimeout: 5 * time.Second,
		}
		wg.Go(func() {
			if err := worker.Run(ctx, cfg); err != nil {
				t.Errorf("worker %s: %v", cfg.ID, err)
			}
		})
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

// The real worker daemon, finding the leader through etcd, trains the job
// to the local Trainer's parameters.
func TestServerWithWorkerDaemons(t *testing.T) {
	cli := testEtcd(t)
	c := startCoordinator(t, cli, "c1", t.TempDir())
	waitLeading(t, c)
	startDaemons(t, cli, 2)
	runTinyJob(t, cli, c, tinySpec(), 2, false)
}

// When the leader stops mid-job, the standby takes over, resumes the job
// from its latest checkpoint with the daemons that follow it, and ends with
// the local Trainer's parameters.
func TestServerFailover(t *testing.T) {
	cli := testEtcd(t)
	dataDir := t.TempDir() // shared, as a volume would be
	first := startCoordinator(t, cli, "c1", dataDir)
	waitLeading(t, first)
	second := startCoordinator(t, cli, "c2", dataDir)
	startDaemons(t, cli, 2)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()

	spec := tinySpec()
	spec.Epochs = 6 // a checkpoint every 4 steps
	jobs := dpcnnv1.NewJobServiceClient(first.conn)
	if _, err := jobs.SubmitJob(ctx, &dpcnnv1.SubmitJobRequest{Spec: spec.JSON(), JobId: "tiny"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(hangGuard)
	for {
		j, err := jobs.GetJob(ctx, &dpcnnv1.GetJobRequest{JobId: "tiny"})
		if err != nil {
			t.Fatal(err)
		}
		if j.LatestCheckpoint != nil {
			if j.State != dpcnnv1.JobState_JOB_STATE_RUNNING {
				t.Fatalf("job %v after its first checkpoint, want running", j.State)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint: job %v", j)
		}
		time.Sleep(5 * time.Millisecond)
	}
	first.stop()
	waitLeading(t, second)

	jobs = dpcnnv1.NewJobServiceClient(second.conn)
	evs := watchToEnd(t, jobs, "tiny")
	resumed := false
	for _, ev := range evs {
		if l := ev.GetLog(); l != nil && l.Level == dpcnnv1.LogLevel_LOG_LEVEL_INFO && len(l.Message) > 8 && l.Message[:8] == "resuming" {
			resumed = true
		}
	}
	if !resumed {
		t.Fatalf("the new leader did not resume the job from a checkpoint: events %v", evs)
	}
	checkTinyJob(t, cli, second, spec, 2)
}
