package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// startEtcd starts an embedded etcd and a client of it, both stopped when
// the test ends.
func startEtcd(t *testing.T) *clientv3.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	endpoints, stop, err := StartEmbeddedEtcd(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	cli, err := Dial(endpoints)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// eventually polls cond every 50 ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestWorkerRegistration(t *testing.T) {
	cli := startEtcd(t)
	ctx := context.Background()
	const prefix = "/test/"

	stopA, err := RegisterWorker(ctx, cli, prefix, WorkerRecord{ID: "a", Backend: "cpu", Cores: 2, Speed: 100, Version: "v1"}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer stopA()
	crashCtx, crash := context.WithCancel(ctx)
	stopB, err := RegisterWorker(crashCtx, cli, prefix, WorkerRecord{ID: "b", Backend: "cuda", Address: "host:1"}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer stopB()

	workers, err := ListWorkers(ctx, cli, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(workers) != 2 || workers[0] != (WorkerRecord{ID: "a", Backend: "cpu", Cores: 2, Speed: 100, Version: "v1"}) || workers[1].ID != "b" || workers[1].Address != "host:1" {
		t.Fatalf("workers = %+v, want a and b", workers)
	}

	// Renewals keep a live worker registered past its TTL.
	time.Sleep(2500 * time.Millisecond)
	if workers, _ := ListWorkers(ctx, cli, prefix); len(workers) != 2 {
		t.Fatalf("after 2.5 s of renewals: workers = %+v, want 2", workers)
	}

	// A worker that stops renewing (as if it died) disappears when its lease
	// expires; one that stops cleanly disappears at once.
	crash()
	eventually(t, 10*time.Second, "crashed worker b still registered", func() bool {
		ws, err := ListWorkers(ctx, cli, prefix)
		return err == nil && len(ws) == 1 && ws[0].ID == "a"
	})
	stopA()
	if ws, err := ListWorkers(ctx, cli, prefix); err != nil || len(ws) != 0 {
		t.Fatalf("after stop: workers = %+v, %v; want none", ws, err)
	}

	if _, err := RegisterWorker(ctx, cli, prefix, WorkerRecord{ID: "x/y"}, time.Second); err == nil {
		t.Fatal("RegisterWorker accepted id x/y")
	}
}

func TestLeaderElection(t *testing.T) {
	cli := startEtcd(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const prefix = "/test/"

	if _, err := LeaderAddress(ctx, cli, prefix); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("LeaderAddress before any election: err = %v, want ErrNoLeader", err)
	}
	watch := WatchLeader(ctx, cli, prefix)
	if l := <-watch; l != (Leader{}) {
		t.Fatalf("first watched leader = %+v, want none", l)
	}

	campaign := func(addr string) (*concurrency.Session, *concurrency.Election) {
		s, err := concurrency.NewSession(cli, concurrency.WithTTL(1))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s, concurrency.NewElection(s, LeaderKey(prefix))
	}
	s1, e1 := campaign("127.0.0.1:1001")
	if err := e1.Campaign(ctx, "127.0.0.1:1001"); err != nil {
		t.Fatal(err)
	}
	l, err := LeaderAddress(ctx, cli, prefix)
	if err != nil || l.Address != "127.0.0.1:1001" || l.Key != e1.Key() || l.Term != e1.Rev() {
		t.Fatalf("LeaderAddress = %+v, %v; want 127.0.0.1:1001 at %s rev %d", l, err, e1.Key(), e1.Rev())
	}
	if got := <-watch; got != l {
		t.Fatalf("watched leader = %+v, want %+v", got, l)
	}

	// A second candidate waits; when the first one's session dies (its
	// lease expires) the second leads and the watch sees it.
	won := make(chan error, 1)
	_, e2 := campaign("127.0.0.1:1002")
	go func() { won <- e2.Campaign(ctx, "127.0.0.1:1002") }()
	select {
	case err := <-won:
		t.Fatalf("second candidate won while the first leads: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	s1.Orphan() // stop renewing without revoking: the leader "crashed"
	if err := <-won; err != nil {
		t.Fatal(err)
	}
	var got Leader
	for got.Address != "127.0.0.1:1002" {
		select {
		case got = <-watch:
		case <-time.After(10 * time.Second):
			t.Fatal("the watch did not see the new leader")
		}
	}
	if got.Term <= l.Term {
		t.Fatalf("new leader's term %d, want above %d", got.Term, l.Term)
	}
}

func TestJobRecords(t *testing.T) {
	cli := startEtcd(t)
	ctx := context.Background()
	const prefix = "/test/"

	st := JobStatus{State: dpcnnv1.JobState_JOB_STATE_PENDING, Name: "first", Created: time.Unix(100, 0).UTC()}
	rec, created, err := CreateJob(ctx, cli, prefix, "job-1", []byte(`{"a":1}`), st)
	if err != nil || !created || rec.ID != "job-1" {
		t.Fatalf("CreateJob = %+v, %v, %v", rec, created, err)
	}
	if _, created, err := CreateJob(ctx, cli, prefix, "job-1", []byte(`{"a":1}`), st); err != nil || created {
		t.Fatalf("CreateJob again with the same spec: created %v, err %v; want the existing job", created, err)
	}
	if _, _, err := CreateJob(ctx, cli, prefix, "job-1", []byte(`{"a":2}`), st); !errors.Is(err, ErrJobExists) {
		t.Fatalf("CreateJob with another spec: err = %v, want ErrJobExists", err)
	}
	if _, _, err := CreateJob(ctx, cli, prefix, "Job_1", []byte(`{}`), st); err == nil {
		t.Fatal("CreateJob accepted id Job_1")
	}
	if _, _, err := CreateJob(ctx, cli, prefix, "job-2", []byte(`{"b":1}`), st); err != nil {
		t.Fatal(err)
	}

	running := st
	running.State, running.Step, running.Loss = dpcnnv1.JobState_JOB_STATE_RUNNING, 7, 0.5
	if err := PutJobStatus(ctx, cli, prefix, "job-1", running); err != nil {
		t.Fatal(err)
	}
	failedGuard := clientv3.Compare(clientv3.CreateRevision(prefix+"nothing"), ">", 0)
	if err := PutJobStatus(ctx, cli, prefix, "job-1", JobStatus{State: dpcnnv1.JobState_JOB_STATE_FAILED}, failedGuard); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("PutJobStatus with a broken guard: err = %v, want ErrNotLeader", err)
	}
	got, found, err := GetJob(ctx, cli, prefix, "job-1")
	if err != nil || !found || string(got.Spec) != `{"a":1}` || got.Status.State != dpcnnv1.JobState_JOB_STATE_RUNNING || got.Status.Step != 7 || !got.Status.Created.Equal(st.Created) {
		t.Fatalf("GetJob = %+v, %v, %v", got, found, err)
	}
	if _, found, err := GetJob(ctx, cli, prefix, "nope"); err != nil || found {
		t.Fatalf("GetJob(nope): found %v, err %v", found, err)
	}
	jobs, err := ListJobs(ctx, cli, prefix)
	if err != nil || len(jobs) != 2 || jobs[0].ID != "job-1" || jobs[1].ID != "job-2" || jobs[0].Status.Step != 7 {
		t.Fatalf("ListJobs = %+v, %v", jobs, err)
	}
}

func TestSplitEndpoints(t *testing.T) {
	got := SplitEndpoints(" http://a:1, ,http://b:2,")
	if len(got) != 2 || got[0] != "http://a:1" || got[1] != "http://b:2" {
		t.Fatalf("SplitEndpoints = %q", got)
	}
}

// A client host that is no IP address, or one off loopback without TLS, is
// refused before anything listens.
func TestEmbeddedEtcdClientHost(t *testing.T) {
	for host, want := range map[string]string{
		"etcd.example": `client host "etcd.example" is not an IP address`,
		"10.1.2.3":     "serving clients on 10.1.2.3 needs TLS",
	} {
		_, _, err := StartEmbeddedEtcd(context.Background(), t.TempDir(), WithClientHost(host))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("WithClientHost(%q): %v, want an error saying %q", host, err, want)
		}
	}
}

// Job records store the state as the enum's name, and records the previous
// version wrote, with the state as a word, still load: through GetJob and
// ListJobs from etcd, and through the codec for every word.
func TestJobStatusStates(t *testing.T) {
	cli := startEtcd(t)
	ctx := context.Background()
	const prefix = "/test/"
	st := JobStatus{State: dpcnnv1.JobState_JOB_STATE_WAITING_FOR_WORKERS, Name: "new", Step: 3}
	if _, _, err := CreateJob(ctx, cli, prefix, "job-new", []byte(`{}`), st); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, JobStatusKey(prefix, "job-new"))
	if err != nil || len(resp.Kvs) != 1 || !strings.Contains(string(resp.Kvs[0].Value), `"state":"JOB_STATE_WAITING_FOR_WORKERS"`) {
		t.Fatalf("stored status %q (%v), want the state by the enum's name", resp.Kvs, err)
	}
	// A record as the previous version wrote it.
	old := `{"state":"succeeded","step":40,"epoch":2,"loss":0.25,"trainAccuracy":0.9,"testAccuracy":0.95,"imagesPerSec":100,"liveWorkers":0,` +
		`"checkpoint":"/data/jobs/job-old/checkpoint-0000000040.ckpt","updated":"2025-01-01T00:00:00Z","name":"old","created":"2025-01-01T00:00:00Z"}`
	if _, err := cli.Put(ctx, JobKey(prefix, "job-old"), `{}`); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, JobStatusKey(prefix, "job-old"), old); err != nil {
		t.Fatal(err)
	}
	got, found, err := GetJob(ctx, cli, prefix, "job-old")
	if err != nil || !found || got.Status.State != dpcnnv1.JobState_JOB_STATE_SUCCEEDED || !got.Status.Ended() ||
		got.Status.Step != 40 || got.Status.Name != "old" || got.Status.Checkpoint == "" {
		t.Fatalf("GetJob of an old record = %+v, %v, %v", got, found, err)
	}
	jobs, err := ListJobs(ctx, cli, prefix)
	if err != nil || len(jobs) != 2 || jobs[0].Status.State != dpcnnv1.JobState_JOB_STATE_WAITING_FOR_WORKERS ||
		jobs[1].Status.State != dpcnnv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("ListJobs = %+v, %v", jobs, err)
	}

	for name, v := range dpcnnv1.JobState_value {
		s := dpcnnv1.JobState(v)
		for _, stored := range []string{name, s.Word()} {
			var st JobStatus
			if err := json.Unmarshal([]byte(`{"state":"`+stored+`","step":5}`), &st); err != nil || st.Step != 5 || st.State != s {
				t.Errorf("a status stored with state %q reads as %v (step %d), %v; want %v", stored, st.State, st.Step, err, s)
			}
		}
		b, err := json.Marshal(JobStatus{State: s})
		var back JobStatus
		if err == nil {
			err = json.Unmarshal(b, &back)
		}
		if err != nil || back.State != s {
			t.Errorf("%v round trip: %s, %v, %v", s, b, back.State, err)
		}
	}
	var unknown JobStatus
	if err := json.Unmarshal([]byte(`{"state":"paused","step":1}`), &unknown); err != nil || unknown.State != dpcnnv1.JobState_JOB_STATE_UNSPECIFIED || unknown.Step != 1 {
		t.Errorf("an unknown state reads as %v, %v; want UNSPECIFIED and the rest of the record", unknown.State, err)
	}
}
