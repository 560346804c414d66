package worker

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dpcnn/dpcnn/cluster"
)

// startEtcd runs an embedded etcd until the test ends and returns a client
// of it.
func startEtcd(t *testing.T) *clientv3.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), hangGuard)
	defer cancel()
	endpoints, stop, err := cluster.StartEmbeddedEtcd(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	cli, err := cluster.Dial(endpoints)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// eventually polls cond until it holds, failing the test after hangGuard.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: did not happen", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDaemonWithEtcd runs a worker that knows only etcd: it registers
// itself under a lease, finds the leader by the election keys, follows the
// leadership to another coordinator, and deregisters when it stops.
func TestDaemonWithEtcd(t *testing.T) {
	cli := startEtcd(t)
	const prefix = "/wtest/"
	ctx := t.Context()
	train, test := tinySets(t)

	// Two coordinators, A leading: election keys are <prefix>leader/<lease>
	// and the oldest leads, as concurrency.Election writes them.
	a, b := newStub("A"), newStub("B")
	addrA, _ := serveStub(t, a, "127.0.0.1:0")
	addrB, _ := serveStub(t, b, "127.0.0.1:0")
	if _, err := cli.Put(ctx, cluster.LeaderKey(prefix)+"/1", addrA); err != nil {
		t.Fatal(err)
	}

	cfg := testWorkerConfig(t, "w-etcd", "", train, test)
	cfg.Etcd, cfg.Prefix, cfg.RegistrationTTL = cli, prefix, 2*time.Second
	stop := startWorker(t, cfg)

	ssA := waitStream(t, a)
	var recs []cluster.WorkerRecord
	eventually(t, "the worker registers in etcd", func() bool {
		var err error
		recs, err = cluster.ListWorkers(ctx, cli, prefix)
		return err == nil && len(recs) == 1
	})
	want := cluster.WorkerRecord{ID: "w-etcd", Address: cfg.Address, Backend: "cpu", Cores: 1, Speed: 123, Version: "test"}
	if want.Address == "" {
		want.Address = recs[0].Address // the host name
	}
	if recs[0] != want {
		t.Errorf("registered %+v, want %+v", recs[0], want)
	}
	resp, err := cli.Get(ctx, cluster.WorkerKey(prefix, "w-etcd"))
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease == 0 {
		t.Fatalf("worker key %v (err %v), want one key under a lease", resp, err)
	}

	// B takes over: A's key goes, B's stays.
	if _, err := cli.Put(ctx, cluster.LeaderKey(prefix)+"/2", addrB); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(ctx, cluster.LeaderKey(prefix)+"/1"); err != nil {
		t.Fatal(err)
	}
	ssB := waitStream(t, b)
	select {
	case <-ssA.done:
	case <-time.After(hangGuard):
		t.Fatal("the worker kept its stream to the old leader")
	}
	spec := testSpec()
	p0 := initialParams(t, spec)
	idx := []int32{9, 10, 11, 12}
	ssB.assign(t, trainAssignment(1, "job-e", spec.JSON(), 0, p0, 0, 0, subtree(0, 2, idx...)))
	grad, losses, correct := direct(t, spec, train, p0, 0, 0, idx)
	checkGradient(t, ssB.next(t), 1, 0, 2, grad, losses, correct)

	if err := stop(); err != nil {
		t.Fatal(err)
	}
	recs, err = cluster.ListWorkers(ctx, cli, prefix)
	if err != nil || len(recs) != 0 {
		t.Errorf("after shutdown the workers are %v (err %v), want none", recs, err)
	}
}
