package coordinator

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// A worker's heartbeat lists what it holds. When it lists an assignment
// but not an earlier one it was sent and has not answered, that one never
// reached it (or it dropped it): the coordinator ends the stream with
// DATA_LOSS, naming both, and the worker's work goes to the others.
// Heartbeats that list nothing, or what was sent in order, end nothing.
func TestServerEndsAStreamThatMissedAnAssignment(t *testing.T) {
	train, test := loadMNIST(t)
	cli := testEtcd(t)
	c := startCoordinator(t, cli, "c1", t.TempDir())
	waitLeading(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()

	client := dpcnnv1.NewWorkerServiceClient(c.conn)
	joined, err := client.Join(ctx, &dpcnnv1.JoinRequest{WorkerId: "w-gap", Backend: "cpu", Cores: 1, ImagesPerSec: 3000, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := client.Work(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&dpcnnv1.WorkerMessage{Kind: &dpcnnv1.WorkerMessage_Hello{Hello: &dpcnnv1.Hello{WorkerId: "w-gap", Session: joined.Session}}}); err != nil {
		t.Fatal(err)
	}
	// Four micro-batches a step, and a worker joined after this one, a
	// third as fast: this one's share, [0, 3), goes out as two aligned
	// subtrees, [0, 2) and [2, 3), two assignments.
	waitStreams := func(n int) {
		t.Helper()
		for {
			l, err := dpcnnv1.NewClusterServiceClient(c.conn).ListWorkers(ctx, &dpcnnv1.ListWorkersRequest{})
			if err != nil {
				t.Fatal(err)
			}
			open := 0
			for _, w := range l.Workers {
				if w.State == dpcnnv1.WorkerState_WORKER_STATE_IDLE {
					open++
				}
			}
			if open == n {
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%d workers with open streams, want %d", open, n)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	waitStreams(1)
	startWorkers(t, c.conn, &testWorker{id: "w-other", train: train, test: test})
	waitStreams(2)
	spec := tinySpec()
	spec.MicroBatch = 25
	spec.Batch, spec.TrainLimit = 100, 200
	beat := func(busy ...uint64) {
		t.Helper()
		if err := stream.Send(&dpcnnv1.WorkerMessage{Kind: &dpcnnv1.WorkerMessage_Heartbeat{Heartbeat: &dpcnnv1.Heartbeat{BusyAssignmentIds: busy}}}); err != nil {
			t.Fatal(err)
		}
	}
	beat() // alive, though it waited for the other worker
	jobs := dpcnnv1.NewJobServiceClient(c.conn)
	if _, err := jobs.SubmitJob(ctx, &dpcnnv1.SubmitJobRequest{Spec: spec.JSON(), JobId: "gap"}); err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for len(ids) < 2 {
		m, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if a := m.GetAssignment(); a != nil {
			ids = append(ids, a.AssignmentId)
		}
	}
	if ids[0] >= ids[1] {
		t.Fatalf("assignments %v: want them in growing order", ids)
	}
	beat()
	beat(ids[0])
	beat(ids[0], ids[1])
	beat(ids[1]) // the worker never got ids[0]
	for {
		_, err := stream.Recv()
		if err == nil {
			continue
		}
		want := fmt.Sprintf("lists assignment %d as received but not the earlier [%d]", ids[1], ids[0])
		if status.Code(err) != codes.DataLoss || !strings.Contains(err.Error(), want) {
			t.Fatalf("the stream ended with %v; want DATA_LOSS saying %q", err, want)
		}
		break
	}
	watchToEnd(t, jobs, "gap")
	if j, err := jobs.GetJob(ctx, &dpcnnv1.GetJobRequest{JobId: "gap"}); err != nil || j.State != dpcnnv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("the job ended %v (%s), %v; want the other worker to finish it", j.GetState(), j.GetError(), err)
	}
}
