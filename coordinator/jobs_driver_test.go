package coordinator

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	keyspace "github.com/dpcnn/dpcnn/cluster"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// A job's driver reads the time from ServerConfig.Clock, not the wall
// clock: a coordinator whose clock runs 1000 hours ahead records its
// checkpoints that far ahead, and the job still trains to the same end.
func TestDriverKeepsItsClock(t *testing.T) {
	train, test := loadMNIST(t)
	cli := testEtcd(t)
	const ahead = 1000 * time.Hour
	var reads atomic.Int64
	c := startCoordinatorWith(t, cli, "c1", t.TempDir(), func(cfg *ServerConfig) {
		cfg.Clock = func() time.Time { reads.Add(1); return time.Now().Add(ahead) }
	}, grpc.WithTransportCredentials(insecure.NewCredentials()))
	waitLeading(t, c)
	startWorkers(t, c.conn, &testWorker{id: "w-1", train: train, test: test})
	before := time.Now()
	runTinyJob(t, cli, c, tinySpec(), 1, false)

	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	rec, found, err := keyspace.GetJob(ctx, cli, "/test/", "tiny")
	if err != nil || !found {
		t.Fatalf("etcd record: %v, %v", found, err)
	}
	written := rec.Status.CheckpointWritten
	if written.Before(before.Add(ahead)) || written.After(time.Now().Add(ahead)) {
		t.Fatalf("checkpoint written at %v: want the driver's clock, %v ahead of %v", written, ahead, before)
	}
	if reads.Load() == 0 {
		t.Fatal("the driver never read its clock")
	}
}

// A term's assignment IDs carry the term in their high 32 bits and a
// counter the term's drivers share in the low 32: every ID of a term is
// above every ID of an earlier one, engines of one term number on from
// each other, and a term whose IDs are spent says so.
func TestAssignmentIDsOfATerm(t *testing.T) {
	a := newAssignmentIDs(7)
	first, ok := a.first()
	if !ok || first != 7<<32|1 {
		t.Fatalf("first ID of term 7: %#x, %v; want %#x", first, ok, uint64(7<<32|1))
	}
	a.used(first + 10)
	if next, _ := a.first(); next != first+10 {
		t.Fatalf("after an engine used 10 IDs the next starts at %#x, want %#x", next, first+10)
	}
	a.used(first) // a record of fewer IDs never takes the counter back
	if next, _ := a.first(); next != first+10 {
		t.Fatalf("the counter went back to %#x", next)
	}
	last := uint64(8<<32 - 1) // the highest ID term 7 can give out
	b := newAssignmentIDs(8)
	if next, _ := b.first(); next <= last {
		t.Fatalf("term 8 starts at %#x, not above term 7's last ID %#x", next, last)
	}
	a.used(last + 1)
	if _, ok := a.first(); ok {
		t.Fatal("a term whose counter is spent still hands out IDs")
	}
}

// The IDs a worker receives: two jobs of one term share none, each within
// the term's range, and a job of the next leader's term gets IDs above all
// of them.
func TestAssignmentIDsAcrossJobsAndTerms(t *testing.T) {
	train, test := loadMNIST(t)
	cli := testEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	c1 := startCoordinator(t, cli, "c1", t.TempDir())
	waitLeading(t, c1)
	term := func(c *testCoordinator) int64 {
		l, err := dpcnnv1.NewClusterServiceClient(c.conn).Leader(ctx, &dpcnnv1.LeaderRequest{})
		if err != nil || !l.AnsweredByLeader {
			t.Fatalf("Leader: %v, %v", l, err)
		}
		return l.Term
	}
	// run runs jobs on c with one worker of its own, stopped after, and
	// returns the IDs it received for each.
	run := func(c *testCoordinator, ids ...string) map[string][]uint64 {
		w := &testWorker{id: "w-1", train: train, test: test}
		wctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- w.run(wctx, c.conn) }()
		jobs := dpcnnv1.NewJobServiceClient(c.conn)
		for _, id := range ids {
			if _, err := jobs.SubmitJob(ctx, &dpcnnv1.SubmitJobRequest{Spec: tinySpec().JSON(), JobId: id}); err != nil {
				t.Fatal(err)
			}
		}
		out := map[string][]uint64{}
		for _, id := range ids {
			watchToEnd(t, jobs, id)
			if j, err := jobs.GetJob(ctx, &dpcnnv1.GetJobRequest{JobId: id}); err != nil || j.State != dpcnnv1.JobState_JOB_STATE_SUCCEEDED {
				t.Fatalf("job %s: %v (%s), %v", id, j.GetState(), j.GetError(), err)
			}
			out[id] = w.received(id)
		}
		stop()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		return out
	}
	checkTerm := func(term int64, ids []uint64) {
		t.Helper()
		if len(ids) == 0 {
			t.Fatal("a job gave its worker no assignments")
		}
		for _, id := range ids {
			if int64(id>>32) != term || id&(1<<32-1) == 0 {
				t.Fatalf("assignment %#x in term %d: want the term in the high 32 bits and a counter from 1", id, term)
			}
		}
	}

	t1 := term(c1)
	first := run(c1, "job-a", "job-b")
	seen := map[uint64]string{}
	for id, ids := range first {
		checkTerm(t1, ids)
		for _, a := range ids {
			if other, dup := seen[a]; dup {
				t.Fatalf("assignment %#x went out for %s and %s", a, other, id)
			}
			seen[a] = id
		}
	}

	c2 := startCoordinator(t, cli, "c2", t.TempDir())
	c1.stop()
	waitLeading(t, c2)
	t2 := term(c2)
	if t2 <= t1 {
		t.Fatalf("the new term %d is not above %d", t2, t1)
	}
	next := run(c2, "job-c")["job-c"]
	checkTerm(t2, next)
	for _, a := range next {
		for old := range seen {
			if a <= old {
				t.Fatalf("the new term's assignment %#x is not above the old term's %#x", a, old)
			}
		}
	}
}
