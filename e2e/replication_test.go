package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dpcnn/dpcnn/cluster"
	"github.com/dpcnn/dpcnn/coordinator"
	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// replicatedJob is 48 steps of SimpleConvNet: eight epochs of 6 steps, a
// checkpoint every other epoch (every 12 steps) and an evaluation after
// each, whose status the leader writes to etcd at once, so that the job's
// record shows steps past the latest checkpoint mid interval.
func replicatedJob() job.Spec {
	return job.Spec{
		Name: "replicated", Network: "simple", Epochs: 8, Batch: 50, MicroBatch: 10,
		TrainLimit: 300, TestLimit: 100, Seed: 13, CheckpointEvery: 2,
	}.WithDefaults()
}

// TestFailoverWithoutSharedDisk runs etcd, two coordinators with data
// folders of their own and three workers as processes over mutual TLS. Once
// the job has written a few checkpoints the leader is killed (SIGKILL) mid
// interval and its data folder deleted: the standby, which the leader
// pushed every checkpoint to before recording it, resumes from the latest
// checkpoint the job reported, redoing at most one checkpoint interval, and
// the job ends with the undisturbed in-process run's parameters. A third
// coordinator that joins after the failover gets the final checkpoint and
// model, and the checkpoint and the model download from the new leader.
func TestFailoverWithoutSharedDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster of processes: skipped with -short")
	}
	mnistDir, train, test := mnist(t)
	bin := buildCommands(t)
	tmp := t.TempDir()
	tls := makeClusterTLS(t, bin, tmp)
	endpoints := runEtcdCommand(t, localStarter(t), bin, tmp, tls)
	cli := tls.dialEtcd(t, endpoints)

	coords := map[string]*process{}
	dataDir := func(id string) string { return filepath.Join(tmp, "data-"+id) }
	startCoord := func(id string) {
		args := append([]string{"--listen", "127.0.0.1:0", "--etcd", endpoints, "--data-dir", dataDir(id),
			"--mnist", mnistDir, "--id", id, "--threads", "1", "--log-level", "warn"}, tls.coordinator...)
		coords[id] = startProcess(t, id, filepath.Join(bin, "coordinator"), args...)
	}
	startCoord("c1")
	waitLeader(t, cli, "")
	startCoord("c2")
	standby := waitKey(t, cli, cluster.CoordinatorKey(cluster.DefaultPrefix, "c2"))
	for i := range 3 {
		id := fmt.Sprintf("w%d", i+1)
		startProcess(t, id, filepath.Join(bin, "worker"), append([]string{"--etcd", endpoints, "--id", id, "--threads", "1",
			"--log-level", "warn", "--data", mnistDir}, tls.worker...)...)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	leader := currentLeader(ctx, t, cli, "")
	conn := tls.dial(t, leader.Address)
	waitIdleWorkers(ctx, t, dpcnnv1.NewClusterServiceClient(conn), 3)
	spec := replicatedJob()
	const interval = 12 // steps between checkpoints: 2 epochs of 300 images in steps of 50
	jobs := dpcnnv1.NewJobServiceClient(conn)
	if _, err := jobs.SubmitJob(ctx, &dpcnnv1.SubmitJobRequest{Spec: spec.JSON(), JobId: "replicated"}); err != nil {
		t.Fatal(err)
	}

	var (
		lastStep, checkpointSeen int64 = 0, -1
		killed                   string
		killedAt                 time.Time
		killStep                 int64 // the last step seen applied before the kill
		checkpointAtKill         int64 // the latest checkpoint the job had reported then
		recordAtKill             cluster.JobStatus
		resumedFrom              int64 = -1
		resumeTook               time.Duration
		final                    dpcnnv1.JobState
		follow                   = jobFollower{cli: cli, tls: tls, id: "replicated"}
	)
	stream, err := jobs.WatchJob(ctx, &dpcnnv1.WatchJobRequest{JobId: "replicated"})
	if err != nil {
		t.Fatal(err)
	}
	// `cnnctl watch`, as a Kubernetes Job's `cnnctl submit job --wait` runs,
	// given the standby's address (a Service reaches either coordinator):
	// it follows the redirect to the leader, and when the leader dies it
	// must go back to the address it was given, wait while no coordinator
	// leads, and resume on the new leader to the job's end. It used to exit
	// 1 at the kill ("the coordinator no longer leads").
	cnnctlWatch := startProcess(t, "cnnctl watch", filepath.Join(bin, "cnnctl"),
		append([]string{"watch", "replicated", "--coordinator", standby, "--leader-wait", "60s"}, tls.cnnctl...)...)
	for final == dpcnnv1.JobState_JOB_STATE_UNSPECIFIED {
		ev, err := stream.Recv()
		if err != nil {
			if killed == "" || errors.Is(err, io.EOF) {
				t.Fatalf("watch: %v", err)
			}
			// The leader is gone: follow the job to the next one, and
			// start a third coordinator that joins late.
			leader, jobs, stream = follow.rewatch(ctx, t, err)
			if _, ok := coords["c3"]; !ok {
				startCoord("c3")
			}
			continue
		}
		switch k := ev.Kind.(type) {
		case *dpcnnv1.JobEvent_Checkpoint:
			checkpointSeen = max(checkpointSeen, k.Checkpoint.Step)
		case *dpcnnv1.JobEvent_Log:
			if m, ok := strings.CutPrefix(k.Log.Message, "resuming the running job from its checkpoint at step "); ok {
				resumedFrom, _ = strconv.ParseInt(m, 10, 64)
			}
		case *dpcnnv1.JobEvent_StateChange:
			if s := k.StateChange.NewState; s >= dpcnnv1.JobState_JOB_STATE_SUCCEEDED {
				final = s
			}
		case *dpcnnv1.JobEvent_Progress:
			p := k.Progress
			if killed != "" && resumeTook == 0 && resumedFrom >= 0 && p.GlobalStep > resumedFrom {
				resumeTook = time.Since(killedAt)
			}
			lastStep = max(lastStep, p.GlobalStep)
			if killed != "" || lastStep <= 2*interval {
				continue
			}
			// Kill the leader mid interval, once the job's record shows
			// steps past its second checkpoint or later.
			rec, _, err := cluster.GetJob(ctx, cli, cluster.DefaultPrefix, "replicated")
			if err != nil {
				t.Fatal(err)
			}
			if st := rec.Status; st.CheckpointStep >= 2*interval && st.Step > st.CheckpointStep {
				killed, follow.deadKey = leaderID(t, coords, leader), leader.Key
				coords[killed].kill(t)
				killedAt, killStep, recordAtKill = time.Now(), lastStep, st
				checkpointAtKill = max(checkpointSeen, st.CheckpointStep)
				if err := os.RemoveAll(dataDir(killed)); err != nil {
					t.Fatal(err)
				}
				t.Logf("step %d: killed the leader %s and deleted its data folder; the job had recorded step %d and its checkpoint at step %d",
					killStep, killed, st.Step, checkpointAtKill)
			}
		}
	}
	if killed == "" || final != dpcnnv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job ended %v; the leader killed: %q", final, killed)
	}

	// Resumed from the latest checkpoint the job reported (it was on the
	// standby's disk before it was reported), so at most one interval of
	// steps is redone: the test saw killStep applied, and the job reports
	// the steps its record had seen applied past the checkpoint.
	if resumedFrom < checkpointAtKill {
		t.Fatalf("the new leader resumed from step %d; the job had reported its checkpoint at step %d before the leader died", resumedFrom, checkpointAtKill)
	}
	if resumeTook == 0 || resumeTook > leaderRecoveryTarget {
		t.Errorf("the new leader applied its first step %s after the kill; the target is %s", resumeTook.Round(time.Millisecond), leaderRecoveryTarget)
	}
	j, err := jobs.GetJob(ctx, &dpcnnv1.GetJobRequest{JobId: "replicated"})
	if err != nil {
		t.Fatal(err)
	}
	redone := j.Progress.GetStepsRedone()
	if seen := killStep - resumedFrom; seen > interval || redone > interval || redone < recordAtKill.Step-resumedFrom {
		t.Fatalf("steps redone: %d seen (the leader died after step %d, the new one resumed from %d), %d reported (the record had step %d); "+
			"want the record's and at most one checkpoint interval (%d)", seen, killStep, resumedFrom, redone, recordAtKill.Step, interval)
	}
	select {
	case <-cnnctlWatch.done:
	case <-ctx.Done():
		t.Fatal("cnnctl watch did not end with the job")
	}
	if code := cnnctlWatch.cmd.ProcessState.ExitCode(); code != 0 || !strings.Contains(cnnctlWatch.out.String(), "succeeded") {
		t.Errorf("cnnctl watch through the failover: exit %d, want 0 and the job's success:\n%s", code, cnnctlWatch.out.String())
	}
	// The new leader's first events reach the resumed watch: their
	// numbers continue above the old leader's (they used to start again
	// at 1, and a watch resuming after the last number it saw skipped
	// them).
	if !strings.Contains(cnnctlWatch.out.String(), "resuming the running job from its checkpoint") {
		t.Errorf("cnnctl watch missed the new leader's first events:\n%s", cnnctlWatch.out.String())
	}
	// `cnnctl leader` names the new leader, asked at any coordinator (in
	// Kubernetes its id is the pod to port-forward to).
	if got, want := strings.TrimSpace(runCommand(ctx, t, filepath.Join(bin, "cnnctl"),
		append([]string{"leader", "--id-only", "--coordinator", standby}, tls.cnnctl...)...)), leaderID(t, coords, leader); got != want {
		t.Errorf("cnnctl leader --id-only = %q, want %s", got, want)
	}
	status := runCommand(ctx, t, filepath.Join(bin, "cnnctl"), append([]string{"status", "replicated", "--coordinator", leader.Address}, tls.cnnctl...)...)
	if want := fmt.Sprintf(", %d steps redone", redone); !strings.Contains(status, want) {
		t.Errorf("cnnctl status lacks %q:\n%s", want, status)
	}

	// The result: bit for bit the undisturbed run's.
	dl, err := jobs.DownloadCheckpoint(ctx, &dpcnnv1.DownloadCheckpointRequest{JobId: "replicated"})
	got := readCheckpoint(t, receive(t, dl, err))
	ref := trainInProcess(t, spec, train, test)
	if got.Step != ref.Step || paramsSum(got) != paramsSum(ref) || j.LatestCheckpoint.GetParamsSha256() != paramsSum(ref) {
		t.Fatalf("after the failover: step %d, parameters sha256 %s (reported %s); undisturbed: step %d, %s",
			got.Step, paramsSum(got), j.LatestCheckpoint.GetParamsSha256(), ref.Step, paramsSum(ref))
	}
	onnx := filepath.Join(tmp, "model.onnx")
	runCommand(ctx, t, filepath.Join(bin, "cnnctl"), append([]string{"download", "replicated", "--model", "-o", onnx, "--coordinator", leader.Address}, tls.cnnctl...)...)
	if st, err := os.Stat(onnx); err != nil || st.Size() < 1000 {
		t.Errorf("downloaded model: %v, %v", st, err)
	}

	// The late standby holds the final checkpoint and model, as the new
	// leader does.
	newLeader := leaderID(t, coords, leader)
	name := fmt.Sprintf("checkpoint-%010d.ckpt", j.LatestCheckpoint.GetStep())
	for _, f := range []string{name, "model.onnx"} {
		want := filepath.Join(dataDir(newLeader), "jobs", "replicated", f)
		if _, err := os.Stat(want); err != nil {
			t.Fatalf("the new leader %s: %v", newLeader, err)
		}
		have := filepath.Join(dataDir("c3"), "jobs", "replicated", f)
		for deadline := time.Now().Add(20 * time.Second); !sameFile(t, have, want); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the late standby c3 lacks %s as %s holds it", f, newLeader)
			}
		}
	}
	if _, err := coordinator.ReadCheckpointFile(filepath.Join(dataDir("c3"), "jobs", "replicated", name)); err != nil {
		t.Fatal(err)
	}
	t.Logf("failover: the leader %s died after step %d with its checkpoint at step %d reported; the new leader %s resumed from step %d "+
		"(%d steps redone seen, %d reported; interval %d) and applied its first step %s after the kill",
		killed, killStep, checkpointAtKill, newLeader, resumedFrom, killStep-resumedFrom, redone, interval, resumeTook.Round(time.Millisecond))
}

// sameFile says whether the files at a and b both exist with equal bytes.
func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		return false
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(x) == string(y)
}
