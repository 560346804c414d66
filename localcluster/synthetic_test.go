package localcluster

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/model"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// Synthetic workers train the deep net's job to its end: their gradients
// are of the network's true size (the coordinator refuses any other),
// every step reports its phases, and the compute phase is at least the
// synthetic time set for a micro-batch (a lower bound only: the machine is
// shared), the six phases adding up to the step.
func TestSyntheticWorkersReportStepPhases(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const perMicroBatch = 30 * time.Millisecond
	lc, err := Start(ctx, Config{Dir: t.TempDir(), Workers: 2, Threads: 2, Backend: "cpu", Synthetic: perMicroBatch})
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Stop()
	opts, err := lc.Transport.DialOptions(lc.Coordinator)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(lc.Coordinator, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	jobs := dpcnnv1.NewJobServiceClient(conn)
	// Two micro-batches a step, one for each worker.
	spec := job.Spec{Network: "deep", Steps: 5, Epochs: 1, Batch: 100, MicroBatch: 50, TestLimit: 100, Seed: 3,
		MinWorkers: 2, Optimizer: model.OptimizerSpec{LR: 0.001}}
	if _, err := jobs.SubmitJob(ctx, &dpcnnv1.SubmitJobRequest{Spec: spec.JSON(), JobId: "synthetic"}); err != nil {
		t.Fatal(err)
	}
	stream, err := jobs.WatchJob(ctx, &dpcnnv1.WatchJobRequest{JobId: "synthetic"})
	if err != nil {
		t.Fatal(err)
	}
	phases := map[int64]*dpcnnv1.StepPhases{}
	for {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if p := ev.GetProgress(); p != nil && p.Phases != nil {
			phases[p.GlobalStep] = p.Phases
		}
		if sc := ev.GetStateChange(); sc != nil && sc.NewState.Ended() {
			if sc.NewState != dpcnnv1.JobState_JOB_STATE_SUCCEEDED {
				t.Fatalf("job %s: %s", sc.NewState.Word(), sc.Reason)
			}
			break
		}
	}
	if len(phases) != int(spec.Steps) {
		t.Fatalf("phases reported for %d of %d steps: %v", len(phases), spec.Steps, phases)
	}
	for step, p := range phases {
		if p.Results != 2 {
			t.Errorf("step %d: %d results, want one from each of the 2 workers", step, p.Results)
		}
		if time.Duration(p.ComputeNanos) < perMicroBatch {
			t.Errorf("step %d: compute %s, less than the synthetic %s of its micro-batch", step, time.Duration(p.ComputeNanos), perMicroBatch)
		}
		sum := p.ComputeNanos + p.WaitNanos + p.TransferNanos + p.ReduceNanos + p.OptimizerNanos + p.BroadcastNanos
		if p.WaitNanos > 0 && sum != p.StepNanos {
			t.Errorf("step %d: the phases add up to %d ns, the step took %d ns", step, sum, p.StepNanos)
		}
		if p.WaitNanos == 0 && sum < p.StepNanos {
			t.Errorf("step %d: no wait, yet the phases (%d ns) fall short of the step (%d ns)", step, sum, p.StepNanos)
		}
		if p.OptimizerNanos <= 0 || p.BroadcastNanos <= 0 || p.TransferNanos <= 0 {
			t.Errorf("step %d: optimizer %d, broadcast %d, transfer %d ns: each should be measured", step, p.OptimizerNanos, p.BroadcastNanos, p.TransferNanos)
		}
	}
}
