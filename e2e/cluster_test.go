package e2e

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/dpcnn/dpcnn/model"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// Three workers over loopback gRPC train a job to the end; it learns, the
// model it reports evaluates to the accuracy it reported, and its
// parameters are bit-for-bit those of one in-process worker.
func TestThreeWorkersTrainLikeOne(t *testing.T) {
	dir, train, test := mnist(t)
	cli, _ := startEtcd(t)
	addr := startCoordinator(t, cli, dir)
	startWorkers(t, cli, 3, dir, train, test)
	conn := dial(t, addr)
	jobs := dpcnnv1.NewJobServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()

	spec := smallJob(7)
	run := submitAndWatch(ctx, t, jobs, spec)
	if run.State != dpcnnv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job %s ended %v: %s", run.ID, run.State, run.Reason)
	}
	const steps = 2 * 300 / 50
	if len(run.Losses) != steps || len(run.Evaluations) != 2 {
		t.Fatalf("saw %d steps and %d evaluations, want %d and 2", len(run.Losses), len(run.Evaluations), steps)
	}
	if first, last := run.Losses[0], run.Losses[steps-1]; !(last < first) {
		t.Errorf("loss did not fall: %v", run.Losses)
	}
	if run.Workers != 3 {
		t.Errorf("at most %d live workers computed the job, want 3", run.Workers)
	}

	// The job as the coordinator reports it.
	j, err := jobs.GetJob(ctx, &dpcnnv1.GetJobRequest{JobId: run.ID})
	if err != nil {
		t.Fatal(err)
	}
	final := run.Evaluations[len(run.Evaluations)-1]
	if j.LastEvaluation == nil || j.LastEvaluation.Correct != final.Correct || j.LatestCheckpoint == nil || j.LatestCheckpoint.Step != steps {
		t.Errorf("GetJob: evaluation %v, checkpoint %v; watched %v", j.LastEvaluation, j.LatestCheckpoint, final)
	}

	// The checkpoint evaluates to the reported accuracy.
	stream, err := jobs.DownloadCheckpoint(ctx, &dpcnnv1.DownloadCheckpointRequest{JobId: run.ID})
	data := receive(t, stream, err)
	ckpt := readCheckpoint(t, data)
	if ckpt.Step != steps {
		t.Errorf("checkpoint at step %d, want %d", ckpt.Step, steps)
	}
	if got := evaluate(t, ckpt, test, spec.TestLimit); int64(got) != final.Correct || final.Samples != int64(spec.TestLimit) {
		t.Errorf("the checkpoint classifies %d/%d test samples correctly; the job reported %d/%d", got, spec.TestLimit, final.Correct, final.Samples)
	}
	// The ONNX model is the checkpoint's.
	stream, err = jobs.DownloadModel(ctx, &dpcnnv1.DownloadModelRequest{JobId: run.ID})
	onnx := receive(t, stream, err)
	var want bytes.Buffer
	if err := model.ExportONNX(&want, ckpt.Spec, ckpt.Params, model.ONNXOptions{ProducerVersion: "e2e"}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(onnx, want.Bytes()) {
		t.Errorf("downloaded model (%d bytes) differs from the checkpoint's export (%d bytes)", len(onnx), want.Len())
	}

	// Bit for bit the parameters of one worker in process.
	ref := trainInProcess(t, spec, train, test)
	if got, want := paramsSum(ckpt), paramsSum(ref); got != want {
		t.Errorf("parameters after %d steps with 3 workers: sha256 %s; with 1 in-process worker: %s (seed %d; reproduce: go test ./e2e -run TestThreeWorkersTrainLikeOne)",
			steps, got, want, spec.Seed)
	}

	workers, err := dpcnnv1.NewClusterServiceClient(conn).ListWorkers(ctx, &dpcnnv1.ListWorkersRequest{})
	if err != nil || len(workers.Workers) != 3 {
		t.Errorf("ListWorkers: %v, %v", workers, err)
	}
}
