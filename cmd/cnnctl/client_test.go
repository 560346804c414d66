package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
	"github.com/dpcnn/dpcnn/secure"
)

// fakeCoordinator serves JobService and ClusterService from canned data,
// so the client commands are tested without a real coordinator (the e2e
// package runs them against one). follower makes it refuse jobs and workers
// with UNAVAILABLE and name leader instead.
type fakeCoordinator struct {
	dpcnnv1.UnimplementedJobServiceServer
	dpcnnv1.UnimplementedClusterServiceServer

	follower  bool
	leader    string
	leadAfter int    // > 0: a follower that leads from its leadAfter+1st call on (an election ends)
	file      []byte // what downloads send
	fileSum   string // the SHA-256 downloads announce; default the true one

	mu        sync.Mutex
	submitted []*dpcnnv1.SubmitJobRequest
	calls     int
}

func (f *fakeCoordinator) refuse() error {
	f.mu.Lock()
	f.calls++
	elected := f.leadAfter > 0 && f.calls > f.leadAfter
	f.mu.Unlock()
	if f.follower && !elected {
		// As a coordinator refuses: the leader in a LeaderResponse detail
		// (and, for people, in the message).
		st, err := status.New(codes.Unavailable, "coordinator c-2 does not lead").
			WithDetails(&dpcnnv1.LeaderResponse{CoordinatorId: "c-1", Address: f.leader})
		if err != nil {
			panic(err)
		}
		return st.Err()
	}
	return nil
}

var fakeJob = &dpcnnv1.Job{
	Id: "job-1", Name: "mnist", State: dpcnnv1.JobState_JOB_STATE_RUNNING, Backend: "cpu",
	// The book's deep net, whose dropout the training accuracy's label
	// names.
	SpecJson:         job.Spec{Network: "deep", Batch: 100, Epochs: 2}.WithDefaults().JSON(),
	CreatedUnixNanos: time.Now().Add(-time.Minute).UnixNano(),
	Progress: &dpcnnv1.JobProgress{Epoch: 1, Epochs: 2, StepInEpoch: 3, StepsPerEpoch: 6, GlobalStep: 3, TotalSteps: 12,
		Loss: 1.25, TrainAccuracy: 0.5, ImagesPerSec: 900, LiveWorkers: 3, EtaNanos: int64(9 * time.Second),
		ImagesReissued: 40, StepsRedone: 2, Straggler: "w-2", StragglerWaitNanos: int64(2500 * time.Millisecond)},
	LastEvaluation:   &dpcnnv1.Evaluation{Epoch: 1, GlobalStep: 6, TestAccuracy: 0.75, Correct: 150, Samples: 200},
	LatestCheckpoint: &dpcnnv1.CheckpointInfo{Step: 6, Epoch: 1, Size: 10, Sha256: strings.Repeat("ab", 32), ParamsSha256: strings.Repeat("cd", 32)},
	Checkpoints: []*dpcnnv1.CheckpointInfo{
		{Step: 3, Epoch: 0, Size: 10, Sha256: strings.Repeat("12", 32), ParamsSha256: strings.Repeat("34", 32)},
		{Step: 6, Epoch: 1, Size: 10, Sha256: strings.Repeat("ab", 32), ParamsSha256: strings.Repeat("cd", 32)},
	},
}

func (f *fakeCoordinator) SubmitJob(_ context.Context, r *dpcnnv1.SubmitJobRequest) (*dpcnnv1.Job, error) {
	if err := f.refuse(); err != nil {
		return nil, err
	}
	if _, err := job.Parse(r.Spec); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	f.mu.Lock()
	f.submitted = append(f.submitted, r)
	f.mu.Unlock()
	return &dpcnnv1.Job{Id: "job-1", State: dpcnnv1.JobState_JOB_STATE_PENDING}, nil
}

func (f *fakeCoordinator) GetJob(_ context.Context, r *dpcnnv1.GetJobRequest) (*dpcnnv1.Job, error) {
	if err := f.refuse(); err != nil {
		return nil, err
	}
	switch r.JobId {
	case "job-1":
		return fakeJob, nil
	case "job-failing":
		return &dpcnnv1.Job{Id: r.JobId, State: dpcnnv1.JobState_JOB_STATE_RUNNING}, nil
	}
	return nil, status.Errorf(codes.NotFound, "job %q not found", r.JobId)
}

func (f *fakeCoordinator) ListJobs(_ context.Context, r *dpcnnv1.ListJobsRequest) (*dpcnnv1.ListJobsResponse, error) {
	if err := f.refuse(); err != nil {
		return nil, err
	}
	// Two pages, so the client must follow the token.
	if r.PageToken == "" {
		return &dpcnnv1.ListJobsResponse{Jobs: []*dpcnnv1.Job{fakeJob}, NextPageToken: "p2"}, nil
	}
	return &dpcnnv1.ListJobsResponse{Jobs: []*dpcnnv1.Job{{Id: "job-0", State: dpcnnv1.JobState_JOB_STATE_SUCCEEDED}}}, nil
}

func (f *fakeCoordinator) CancelJob(_ context.Context, r *dpcnnv1.CancelJobRequest) (*dpcnnv1.Job, error) {
	if err := f.refuse(); err != nil {
		return nil, err
	}
	return &dpcnnv1.Job{Id: r.JobId, State: dpcnnv1.JobState_JOB_STATE_CANCELLED, Error: r.Reason}, nil
}

// fakeEvents is a short job's life, from start to success.
func fakeEvents() []*dpcnnv1.JobEvent {
	state := func(seq uint64, from, to dpcnnv1.JobState) *dpcnnv1.JobEvent {
		return &dpcnnv1.JobEvent{Sequence: seq, JobId: "job-1", Kind: &dpcnnv1.JobEvent_StateChange{StateChange: &dpcnnv1.StateChange{OldState: from, NewState: to}}}
	}
	progress := func(seq uint64, step int64, eval *dpcnnv1.Evaluation) *dpcnnv1.JobEvent {
		return &dpcnnv1.JobEvent{Sequence: seq, JobId: "job-1", Kind: &dpcnnv1.JobEvent_Progress{Progress: &dpcnnv1.JobProgress{
			Epoch: 1, Epochs: 1, StepInEpoch: step, StepsPerEpoch: 2, GlobalStep: step, TotalSteps: 2,
			Loss: 2.0 / float64(step), LiveWorkers: 2, Evaluation: eval}}}
	}
	return []*dpcnnv1.JobEvent{
		state(1, dpcnnv1.JobState_JOB_STATE_PENDING, dpcnnv1.JobState_JOB_STATE_RUNNING),
		{Sequence: 2, JobId: "job-1", Kind: &dpcnnv1.JobEvent_WorkersChanged{WorkersChanged: &dpcnnv1.WorkersChanged{Live: 2, Joined: []string{"w-1", "w-2"}}}},
		{Sequence: 3, JobId: "job-1", Kind: &dpcnnv1.JobEvent_Log{Log: &dpcnnv1.LogLine{Level: dpcnnv1.LogLevel_LOG_LEVEL_WARN, Source: "worker w-1", Message: "slow"}}},
		progress(4, 1, nil),
		progress(5, 2, &dpcnnv1.Evaluation{Epoch: 1, GlobalStep: 2, TestAccuracy: 0.5, Correct: 100, Samples: 200}),
		{Sequence: 6, JobId: "job-1", Kind: &dpcnnv1.JobEvent_Checkpoint{Checkpoint: &dpcnnv1.CheckpointInfo{Step: 2, Epoch: 1, Size: 10, Sha256: strings.Repeat("cd", 32)}}},
		state(7, dpcnnv1.JobState_JOB_STATE_RUNNING, dpcnnv1.JobState_JOB_STATE_SUCCEEDED),
	}
}

func (f *fakeCoordinator) WatchJob(r *dpcnnv1.WatchJobRequest, s grpc.ServerStreamingServer[dpcnnv1.JobEvent]) error {
	if err := f.refuse(); err != nil {
		return err
	}
	if r.JobId == "job-failing" {
		return s.Send(&dpcnnv1.JobEvent{Sequence: 1, JobId: r.JobId, Kind: &dpcnnv1.JobEvent_StateChange{StateChange: &dpcnnv1.StateChange{
			OldState: dpcnnv1.JobState_JOB_STATE_RUNNING, NewState: dpcnnv1.JobState_JOB_STATE_FAILED, Reason: "loss is NaN at step 3"}}})
	}
	for _, ev := range fakeEvents() {
		if ev.Sequence > r.AfterSequence {
			if err := s.Send(ev); err != nil {
				return err
			}
		}
	}
	return nil
}

func (f *fakeCoordinator) ListJobEvents(_ context.Context, r *dpcnnv1.ListJobEventsRequest) (*dpcnnv1.ListJobEventsResponse, error) {
	if err := f.refuse(); err != nil {
		return nil, err
	}
	// Pages of three, so the client must ask again.
	var page []*dpcnnv1.JobEvent
	all := fakeEvents()
	for _, ev := range all {
		if ev.Sequence > r.AfterSequence && len(page) < 3 {
			page = append(page, ev)
		}
	}
	more := len(page) > 0 && page[len(page)-1].Sequence < all[len(all)-1].Sequence
	return &dpcnnv1.ListJobEventsResponse{Events: page, More: more}, nil
}

func (f *fakeCoordinator) sendFile(name string, s grpc.ServerStreamingServer[dpcnnv1.FileChunk]) error {
	sum := sha256.Sum256(f.file)
	info := &dpcnnv1.FileInfo{Name: name, Size: int64(len(f.file)), Sha256: hex.EncodeToString(sum[:])}
	if f.fileSum != "" {
		info.Sha256 = f.fileSum
	}
	// Chunks of 4 bytes, to exercise the reassembly.
	for off := 0; off == 0 || off < len(f.file); off += 4 {
		c := &dpcnnv1.FileChunk{Offset: int64(off), Data: f.file[off:min(off+4, len(f.file))]}
		if off == 0 {
			c.Info = info
		}
		if err := s.Send(c); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeCoordinator) DownloadCheckpoint(r *dpcnnv1.DownloadCheckpointRequest, s grpc.ServerStreamingServer[dpcnnv1.FileChunk]) error {
	if err := f.refuse(); err != nil {
		return err
	}
	return f.sendFile("checkpoint.ckpt", s)
}

func (f *fakeCoordinator) DownloadModel(r *dpcnnv1.DownloadModelRequest, s grpc.ServerStreamingServer[dpcnnv1.FileChunk]) error {
	if err := f.refuse(); err != nil {
		return err
	}
	return f.sendFile("model.onnx", s)
}

func (f *fakeCoordinator) ListWorkers(context.Context, *dpcnnv1.ListWorkersRequest) (*dpcnnv1.ListWorkersResponse, error) {
	if err := f.refuse(); err != nil {
		return nil, err
	}
	return &dpcnnv1.ListWorkersResponse{Workers: []*dpcnnv1.WorkerInfo{
		{Id: "w-1", Backend: "cpu", Cores: 2, ImagesPerSec: 812, State: dpcnnv1.WorkerState_WORKER_STATE_BUSY, JobId: "job-1", Version: "dev",
			LastSeenUnixNanos: time.Now().UnixNano()},
	}}, nil
}

func (f *fakeCoordinator) Leader(context.Context, *dpcnnv1.LeaderRequest) (*dpcnnv1.LeaderResponse, error) {
	if f.follower {
		return &dpcnnv1.LeaderResponse{CoordinatorId: "c-1", Address: f.leader}, nil
	}
	return &dpcnnv1.LeaderResponse{CoordinatorId: "c-1", AnsweredByLeader: true}, nil
}

// serveFake serves f on a free loopback port until the test ends and
// returns its address.
func serveFake(t *testing.T, f *fakeCoordinator) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	dpcnnv1.RegisterJobServiceServer(s, f)
	dpcnnv1.RegisterClusterServiceServer(s, f)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

func TestClientCommands(t *testing.T) {
	f := &fakeCoordinator{file: []byte("checkpoint bytes, thirty-three.")}
	addr := serveFake(t, f)
	dir := t.TempDir()
	ckpt := filepath.Join(dir, "got.ckpt")
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"status", "job-1"}, []string{"state:", "running", "epoch 1/2 step 3/6 loss 1.2500 train acc 0.500 (dropout on)", "eta 9s workers 3", "0.7500 (150/200)", "step 6, epoch 1, 10 bytes",
			"40 images given out again, 2 steps redone", "slowest worker:  w-2 (an assignment waited 2.5s",
			"checkpoints:", "PARAMS SHA256", strings.Repeat("34", 32), strings.Repeat("cd", 32)}},
		{[]string{"status", "job-1", "-o", "json"}, []string{`"id": "job-1"`, `"JOB_STATE_RUNNING"`}},
		{[]string{"list"}, []string{"JOB", "job-1", "mnist", "running", "3/12", "0.7500", "job-0", "succeeded"}},
		{[]string{"list", "--limit", "1"}, []string{"job-1"}},
		{[]string{"cancel", "job-1"}, []string{"job job-1: cancelled"}},
		{[]string{"logs", "job-1"}, []string{"state pending -> running", "workers: 2 live, joined w-1 w-2", "warn [worker w-1] slow",
			"epoch 1: test accuracy 0.5000 (100/200)", "checkpoint at step 2", "state running -> succeeded"}},
		{[]string{"watch", "job-1"}, []string{"epoch 1/1 step 1/2 loss 2.0000 train acc 0.000 (dropout on)", "workers 2", "epoch 1: test accuracy 0.5000", "state running -> succeeded"}},
		{[]string{"workers"}, []string{"WORKER", "w-1", "busy", "cpu", "812", "job-1", "dev"}},
		{[]string{"download", "job-1", "--checkpoint", "-o", ckpt}, []string{ckpt + ": 31 bytes, sha256 "}},
		{[]string{"submit", "job", "--net", "simple", "--epochs", "1", "--id", "mine", "--backend", "cpu", "--name", "first"}, []string{"job job-1 submitted (pending)"}},
		{[]string{"submit", "job", "--net", "simple", "--epochs", "1", "--wait"}, []string{"job job-1 submitted", "epoch 1: test accuracy 0.5000", "succeeded"}},
	}
	for _, c := range cases {
		got, err := runCLI(t, append(c.args, "--coordinator", addr)...)
		if err != nil {
			t.Errorf("cnnctl %s: %v\n%s", strings.Join(c.args, " "), err, got)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("cnnctl %s: output lacks %q:\n%s", strings.Join(c.args, " "), w, got)
			}
		}
	}
	if strings.Count(mustRun(t, "list", "--limit", "1", "--coordinator", addr), "job-") != 1 {
		t.Errorf("list --limit 1 printed more than one job")
	}
	if b, err := os.ReadFile(ckpt); err != nil || !bytes.Equal(b, f.file) {
		t.Errorf("downloaded %q, %v; want %q", b, err, f.file)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.submitted) != 2 || f.submitted[0].JobId != "mine" || f.submitted[0].Backend != "cpu" {
		t.Fatalf("submitted %v", f.submitted)
	}
	s, err := job.Parse(f.submitted[0].Spec)
	if err != nil || s.Network != "simple" || s.Epochs != 1 || s.Name != "first" {
		t.Errorf("submitted spec %s: %+v, %v", f.submitted[0].Spec, s, err)
	}
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	got, err := runCLI(t, args...)
	if err != nil {
		t.Fatalf("cnnctl %s: %v\n%s", strings.Join(args, " "), err, got)
	}
	return got
}

// watch and logs with --output json print every event as one line of
// JSON that reads back as the JobEvent the coordinator sent.
func TestClientEventsAsJSONLines(t *testing.T) {
	addr := serveFake(t, &fakeCoordinator{})
	want := fakeEvents()
	for _, cmd := range []string{"watch", "logs"} {
		got := mustRun(t, cmd, "job-1", "-o", "json", "--coordinator", addr)
		lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
		if len(lines) != len(want) {
			t.Errorf("cnnctl %s -o json printed %d lines, want one for each of the %d events:\n%s", cmd, len(lines), len(want), got)
			continue
		}
		for i, line := range lines {
			var ev dpcnnv1.JobEvent
			if err := protojson.Unmarshal([]byte(line), &ev); err != nil {
				t.Errorf("cnnctl %s -o json, line %d %q: %v", cmd, i+1, line, err)
			} else if !proto.Equal(&ev, want[i]) {
				t.Errorf("cnnctl %s -o json, line %d reads as %v, want %v", cmd, i+1, &ev, want[i])
			}
		}
	}
}

// A follower names the leader; the client goes there once.
func TestClientFollowsLeader(t *testing.T) {
	leader := serveFake(t, &fakeCoordinator{})
	follower := &fakeCoordinator{follower: true, leader: leader}
	addr := serveFake(t, follower)
	got := mustRun(t, "status", "job-1", "--coordinator", addr)
	if !strings.Contains(got, "job-1") {
		t.Errorf("status via a follower:\n%s", got)
	}
	got = mustRun(t, "watch", "job-1", "--coordinator", addr)
	if !strings.Contains(got, "succeeded") {
		t.Errorf("watch via a follower:\n%s", got)
	}
	// A follower naming another follower is followed once only.
	loop := &fakeCoordinator{follower: true}
	loopAddr := serveFake(t, loop)
	loop.leader = loopAddr
	other := serveFake(t, &fakeCoordinator{follower: true, leader: loopAddr})
	_, err := runCLI(t, "status", "job-1", "--coordinator", other, "--leader-wait", "300ms")
	if err == nil || !strings.Contains(err.Error(), "is unavailable") || !strings.Contains(err.Error(), "does not lead") ||
		!strings.Contains(err.Error(), "--leader-wait 300ms") {
		t.Errorf("status via two followers: err = %v", err)
	}
}

// While no coordinator leads (an election, a cluster still starting: the
// refusals name no leader), the client asks again, with backoff, for up to
// --leader-wait: a Kubernetes Job's `cnnctl submit job --wait` started
// with the cluster failed in a second before this.
func TestClientWaitsForALeader(t *testing.T) {
	f := &fakeCoordinator{follower: true, leadAfter: 3}
	addr := serveFake(t, f)
	if _, err := runCLI(t, "submit", "job", "--net", "simple", "--coordinator", addr, "--leader-wait", "0"); err == nil ||
		!strings.Contains(err.Error(), "does not lead") {
		t.Fatalf("submit with --leader-wait 0 while none leads: err = %v", err)
	}
	got, err := runCLI(t, "submit", "job", "--net", "simple", "--coordinator", addr, "--leader-wait", "30s")
	if err != nil || !strings.Contains(got, "submitted") {
		t.Fatalf("submit while an election ends: %v\n%s", err, got)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.submitted) != 1 || f.calls != 4 {
		t.Errorf("%d submissions in %d calls, want 1 in 4 (3 refused)", len(f.submitted), f.calls)
	}
}

func TestClientDownloadRefusesCorruptFile(t *testing.T) {
	f := &fakeCoordinator{file: []byte("model bytes"), fileSum: strings.Repeat("0", 64)}
	addr := serveFake(t, f)
	out := filepath.Join(t.TempDir(), "model.onnx")
	_, err := runCLI(t, "download", "job-1", "--model", "-o", out, "--coordinator", addr)
	if err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("download with a wrong sha256: err = %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(out)); len(ents) != 0 {
		t.Errorf("a refused download left files: %v", ents)
	}
}

func TestClientBadInput(t *testing.T) {
	f := &fakeCoordinator{}
	addr := serveFake(t, f)
	// A port nothing listens on: take one and close it.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("network: simple\nbatch: 100\nmicroBatch: 33\n"), 0o644)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"status"}, "accepts 1 arg"},
		{[]string{"status", "a", "b"}, "accepts 1 arg"},
		{[]string{"status", "job-1", "-o", "yaml"}, `--output "yaml"`},
		{[]string{"watch", "job-1", "-o", "yaml"}, `--output "yaml"`},
		{[]string{"logs", "job-1", "-o", "yaml"}, `--output "yaml"`},
		{[]string{"status", "nope"}, `status nope: job "nope" not found`},
		{[]string{"status", "job-1", "--coordinator", "localhost"}, `--coordinator "localhost"`},
		{[]string{"status", "job-1", "--coordinator", "127.0.0.1:http"}, "port"},
		{[]string{"status", "job-1", "--coordinator", dead}, "coordinator " + dead + " is unavailable"},
		{[]string{"status", "job-1", "--timeout", "0s"}, "--timeout 0s"},
		{[]string{"list", "--state", "sleeping"}, `--state "sleeping"`},
		{[]string{"list", "--limit", "-1"}, "--limit -1"},
		{[]string{"download", "job-1", "-o", "x"}, "--model or --checkpoint"},
		{[]string{"download", "job-1", "--model", "--checkpoint", "-o", "x"}, "--model or --checkpoint"},
		{[]string{"download", "job-1", "--model"}, "--out"},
		{[]string{"download", "job-1", "--checkpoint", "--logits", "-o", "x"}, "--logits"},
		{[]string{"download", "job-1", "--checkpoint", "-o", filepath.Join(dir, "missing", "x")}, "no such file"},
		{[]string{"submit"}, "say what to submit"},
		{[]string{"submit", "frob"}, "unknown command"},
		{[]string{"submit", "job", "--net", "resnet"}, `"resnet" is neither a built-in network`},
		{[]string{"submit", "job", "-f", bad}, "not a multiple of microBatch 33"},
		{[]string{"submit", "job", "--batch", "-5"}, "batch -5"},
		{[]string{"submit", "job", "--backend", "tpu"}, `--backend "tpu"`},
		{[]string{"watch", "job-failing"}, "job job-failing failed: loss is NaN at step 3"},
		{[]string{"workers", "extra"}, "unknown command"},
	}
	for _, c := range cases {
		args := c.args
		noSubcommand := args[0] == "submit" && (len(args) == 1 || args[1] != "job")
		if !noSubcommand && !strings.Contains(strings.Join(args, " "), "--coordinator") {
			args = append(args, "--coordinator", addr)
		}
		got, err := runCLI(t, args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("cnnctl %s: err = %v, want one containing %q (output %q)", strings.Join(c.args, " "), err, c.want, got)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.submitted) != 0 {
		t.Errorf("bad submissions reached the coordinator: %v", f.submitted)
	}
}

func TestCoordinatorFromEnv(t *testing.T) {
	addr := serveFake(t, &fakeCoordinator{})
	t.Setenv("DPCNN_COORDINATOR", addr)
	if got := mustRun(t, "status", "job-1"); !strings.Contains(got, "running") {
		t.Errorf("status with DPCNN_COORDINATOR:\n%s", got)
	}
}

// A watch that broke because its coordinator lost the lead is retried for
// the whole --leader-wait from the moment it broke, however long it ran.
// The window used to count from the watch's start, so the local cluster's
// train, whose only coordinator had stepped down during a 3 s etcd stall,
// ended at epoch 18 of 20 (and a local cluster's client waited not at all).
func TestStreamWaitsForLeaderAfterLongRun(t *testing.T) {
	if localLeaderWait <= 0 {
		t.Fatalf("the local cluster's client waits %s for its coordinator to lead again", localLeaderWait)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing answers there: asking it who leads fails at once
	c := &client{timeout: time.Second, leaderWait: 2 * time.Second, transport: secure.Client{Insecure: true}}
	if err := c.connect(addr); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	noLeader := func() error {
		st, err := status.New(codes.Unavailable, "the coordinator no longer leads").WithDetails(&dpcnnv1.LeaderResponse{})
		if err != nil {
			t.Fatal(err)
		}
		return st.Err()
	}
	calls := 0
	err = c.stream(context.Background(), "watch", func(ctx context.Context, progressed func()) error {
		calls++
		switch calls {
		case 1: // events for longer than the wait, then the lead is lost
			progressed()
			time.Sleep(2500 * time.Millisecond)
			return noLeader()
		case 2, 3: // the election under way
			return noLeader()
		}
		return nil // the coordinator leads again
	})
	if err != nil || calls != 4 {
		t.Fatalf("after %d calls: %v; want the watch resumed on the fourth", calls, err)
	}

	// Without progress the wait still ends.
	calls = 0
	start := time.Now()
	err = c.stream(context.Background(), "watch", func(ctx context.Context, progressed func()) error {
		calls++
		return noLeader()
	})
	if err == nil || !strings.Contains(err.Error(), "--leader-wait") {
		t.Fatalf("a coordinator that never leads again: %v after %d calls; want the leader-wait error", err, calls)
	}
	if waited := time.Since(start); waited > 10*time.Second {
		t.Fatalf("gave up only after %s", waited)
	}
}
