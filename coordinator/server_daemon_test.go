package coordinator

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
	"github.com/dpcnn/dpcnn/worker"
)

// startDaemons runs n worker daemons (worker.Run) that find the leader in
// etcd, until the test ends.
func startDaemons(t *testing.T, cli *clientv3.Client, n int) {
	t.Helper()
	startDaemonsFrom(t, cli, 0, n, nil)
}

// startDaemonsFrom starts n daemons named from the first'th letter on
// ("daemon-a", …), each on one CPU thread, with the configuration changed
// by edit when it is not nil.
func startDaemonsFrom(t *testing.T, cli *clientv3.Client, first, n int, edit func(*worker.DaemonConfig)) {
	t.Helper()
	train, test := loadMNIST(t)
	dir, err := dataset.Locate("")
	if err != nil {
		t.Fatal(err)
	}
	files, err := dataset.MNISTFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := first; i < first+n; i++ {
		cfg := worker.DaemonConfig{
			ID: "daemon-" + string(rune('a'+i)), Etcd: cli, Prefix: "/test/",
			BackendName: "cpu", Threads: 1, Train: train, Test: test, DatasetFiles: files,
			ImagesPerSec: 1000, EvalBatch: 50, RegistrationTTL: time.Second,
			RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond, DrainTimeout: 5 * time.Second,
		}
		if edit != nil {
			edit(&cfg)
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

	spec := submitCheckpointingJob(ctx, t, first, 1)
	first.stop()
	waitLeading(t, second)

	jobs := dpcnnv1.NewJobServiceClient(second.conn)
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

// A coordinator restarted on the same disk resumes the job; when its newest
// checkpoint file is corrupt it says so and resumes from the one before,
// still ending with the local Trainer's parameters.
func TestServerResumesPastCorruptCheckpoint(t *testing.T) {
	cli := testEtcd(t)
	dataDir := t.TempDir()
	first := startCoordinator(t, cli, "c1", dataDir)
	waitLeading(t, first)
	startDaemons(t, cli, 2)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()

	spec := submitCheckpointingJob(ctx, t, first, 2)
	first.stop()

	files, err := jobCheckpoints(filepath.Join(dataDir, "jobs", "tiny"))
	if err != nil || len(files) != 2 {
		t.Fatalf("checkpoint files %v (%v), want the latest two", files, err)
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x10
	if err := os.WriteFile(files[0], data, 0o644); err != nil {
		t.Fatal(err)
	}
	older, _ := checkpointStep(filepath.Base(files[1]))

	second := startCoordinator(t, cli, "c2", dataDir)
	waitLeading(t, second)
	evs := watchToEnd(t, dpcnnv1.NewJobServiceClient(second.conn), "tiny")
	var warned, resumed bool
	for _, ev := range evs {
		msg := ev.GetLog().GetMessage()
		warned = warned || strings.HasPrefix(msg, "cannot resume from a checkpoint, trying an older one: checkpoint "+files[0])
		resumed = resumed || msg == fmt.Sprintf("resuming the running job from its checkpoint at step %d", older)
	}
	if !warned || !resumed {
		t.Fatalf("want a warning about %s and a resumption at step %d: events %v", files[0], older, evs)
	}
	checkTinyJob(t, cli, second, spec, 2)
}

func TestCheckpointFileNames(t *testing.T) {
	dir := t.TempDir()
	for _, step := range []int64{0, 7, 12, 100, 9} {
		if err := os.WriteFile(filepath.Join(dir, checkpointFileName(step)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, other := range []string{"checkpoint-x.ckpt", "checkpoint-12.ckpt.tmp-1", "model.onnx"} {
		if err := os.WriteFile(filepath.Join(dir, other), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := pruneCheckpoints(dir, 9); err != nil {
		t.Fatal(err)
	}
	got, err := jobCheckpoints(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{checkpointFileName(100), checkpointFileName(12), checkpointFileName(9)}
	for i := range want {
		want[i] = filepath.Join(dir, want[i])
	}
	if !slices.Equal(got, want) {
		t.Fatalf("after pruning below step 9: %v, want %v", got, want)
	}
	if files, err := jobCheckpoints(filepath.Join(dir, "missing")); files != nil || err != nil {
		t.Fatalf("a missing folder: %v, %v", files, err)
	}
}

// A job that wants more workers than are live waits, saying so, and runs
// to the undisturbed parameters once enough have joined; a fixed deadline
// from the spec is taken.
func TestServerJobWaitsForMinWorkers(t *testing.T) {
	cli := testEtcd(t)
	c := startCoordinator(t, cli, "c1", t.TempDir())
	waitLeading(t, c)
	startDaemons(t, cli, 2)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	spec := tinySpec()
	spec.MinWorkers, spec.Deadline = 3, "1m"
	jobs := dpcnnv1.NewJobServiceClient(c.conn)
	if _, err := jobs.SubmitJob(ctx, &dpcnnv1.SubmitJobRequest{Spec: spec.JSON(), JobId: "tiny"}); err != nil {
		t.Fatal(err)
	}
	for {
		j, err := jobs.GetJob(ctx, &dpcnnv1.GetJobRequest{JobId: "tiny"})
		if err != nil {
			t.Fatal(err)
		}
		if j.State == dpcnnv1.JobState_JOB_STATE_WAITING_FOR_WORKERS && strings.Contains(j.WaitingFor, "fewer than 3 workers: 2 available") {
			break
		}
		if j.State != dpcnnv1.JobState_JOB_STATE_PENDING && j.State != dpcnnv1.JobState_JOB_STATE_WAITING_FOR_WORKERS {
			t.Fatalf("job %v, want it waiting for a third worker", j)
		}
		time.Sleep(5 * time.Millisecond)
	}
	startDaemonsFrom(t, cli, 2, 1, nil)
	watchToEnd(t, jobs, "tiny")
	checkTinyJob(t, cli, c, spec, 3)
}

// submitCheckpointingJob submits the tiny job for 6 epochs (a checkpoint
// every 4 steps) to c and waits until it runs with n checkpoints written.
func submitCheckpointingJob(ctx context.Context, t *testing.T, c *testCoordinator, n int) job.Spec {
	t.Helper()
	spec := tinySpec()
	spec.Epochs = 6
	jobs := dpcnnv1.NewJobServiceClient(c.conn)
	if _, err := jobs.SubmitJob(ctx, &dpcnnv1.SubmitJobRequest{Spec: spec.JSON(), JobId: "tiny"}); err != nil {
		t.Fatal(err)
	}
	for {
		j, err := jobs.GetJob(ctx, &dpcnnv1.GetJobRequest{JobId: "tiny"})
		if err != nil {
			t.Fatal(err)
		}
		if len(j.Checkpoints) >= n && j.State == dpcnnv1.JobState_JOB_STATE_RUNNING {
			return spec
		}
		if j.State >= dpcnnv1.JobState_JOB_STATE_SUCCEEDED {
			t.Fatalf("want a running job with %d checkpoints: %v", n, j)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
