package coordinator

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// CPU and CUDA kernels sum in different orders, so a job computes on one
// kind of worker: a worker of the other kind gets none of its work, and the
// job log says why, instead of the result silently depending on who
// computed what.
func TestServerKeepsAJobOnOneBackendKind(t *testing.T) {
	cli := testEtcd(t)
	c := startCoordinator(t, cli, "c1", t.TempDir())
	waitLeading(t, c)
	workers := dpcnnv1.NewWorkerServiceClient(c.conn)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()

	// A GPU worker, as the protocol sees one: joined with its data set,
	// its Work stream open, counting the assignments it receives.
	join := &dpcnnv1.JoinRequest{WorkerId: "gpu-1", Backend: "cuda", Cores: 1, ImagesPerSec: 1e6}
	joined, err := workers.Join(ctx, join)
	if err != nil {
		t.Fatal(err)
	}
	join.Dataset = joined.Dataset
	if joined, err = workers.Join(ctx, join); err != nil {
		t.Fatal(err)
	}
	stream, err := workers.Work(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&dpcnnv1.WorkerMessage{Kind: &dpcnnv1.WorkerMessage_Hello{Hello: &dpcnnv1.Hello{WorkerId: "gpu-1", Session: joined.Session}}}); err != nil {
		t.Fatal(err)
	}
	var assigned atomic.Int64
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				return
			}
			if m.GetAssignment() != nil {
				assigned.Add(1)
			}
		}
	}()
	startDaemons(t, cli, 1)

	jobs := dpcnnv1.NewJobServiceClient(c.conn)
	if _, err := jobs.SubmitJob(ctx, &dpcnnv1.SubmitJobRequest{Spec: tinySpec().JSON(), JobId: "on-cpu", Backend: "cpu"}); err != nil {
		t.Fatal(err)
	}
	var logs []string
	var end dpcnnv1.JobState
	for _, ev := range watchToEnd(t, jobs, "on-cpu") {
		if l := ev.GetLog(); l != nil {
			logs = append(logs, l.Message)
		}
		if sc := ev.GetStateChange(); sc != nil {
			end = sc.NewState
		}
	}
	if end != dpcnnv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job ended %v", end)
	}
	if n := assigned.Load(); n != 0 {
		t.Errorf("the CUDA worker got %d assignments of a CPU job", n)
	}
	all := strings.Join(logs, "\n")
	if want := "worker gpu-1 computes on cuda and takes no part: the job computes on cpu"; strings.Count(all, want) != 1 {
		t.Errorf("the job log should say once %q:\n%s", want, all)
	}
}
