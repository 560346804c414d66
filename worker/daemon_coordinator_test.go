package worker_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/dpcnn/dpcnn/cluster"
	"github.com/dpcnn/dpcnn/coordinator"
	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/model"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
	"github.com/dpcnn/dpcnn/train"
	"github.com/dpcnn/dpcnn/worker"
)

// hangGuard bounds every wait: a hang fails the test. It is not a timing.
const hangGuard = 60 * time.Second

// TestDaemonsTrainWithCoordinator runs the real thing over loopback: an
// embedded etcd, a coordinator.Server, and two worker daemons that find it
// through etcd — one with MNIST in memory, one that fetches the data set
// from the coordinator. A submitted job succeeds, and its parameters are
// bit for bit those of the local Trainer. Stopped, the workers leave etcd.
func TestDaemonsTrainWithCoordinator(t *testing.T) {
	if testing.Short() {
		t.Skip("loads MNIST three times")
	}
	dir, err := dataset.Locate("")
	if err != nil {
		t.Skip("no MNIST: ", err)
	}
	trainSet, test, err := dataset.LoadMNIST(dir)
	if err != nil {
		t.Fatal(err)
	}
	files, err := dataset.MNISTFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), hangGuard)
	defer cancel()

	endpoints, stopEtcd, err := cluster.StartEmbeddedEtcd(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer stopEtcd()
	cli, err := cluster.Dial(endpoints)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	const prefix = "/wc/"

	optimizer := kernels.NewCPU(1)
	defer optimizer.Close()
	srv, err := coordinator.NewServer(coordinator.ServerConfig{
		ID: "c1", Etcd: cli, Prefix: prefix, DataDir: t.TempDir(), MNISTDir: dir, Backend: optimizer,
		SessionTTL: time.Second, HeartbeatInterval: 200 * time.Millisecond, TickInterval: 50 * time.Millisecond,
		StatusInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveCtx, stopServe := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(serveCtx, lis) }()
	defer func() {
		stopServe()
		if err := <-served; err != nil {
			t.Errorf("coordinator: %v", err)
		}
	}()

	// The workers know only etcd.
	stops := map[string]func() error{}
	for _, id := range []string{"w-mem", "w-fetch"} {
		b := kernels.NewCPU(1)
		defer b.Close()
		cfg := worker.DaemonConfig{
			ID: id, Etcd: cli, Prefix: prefix, Backend: b, Version: "test", ImagesPerSec: -1,
			RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond, RegistrationTTL: 2 * time.Second,
		}
		if id == "w-mem" {
			cfg.Train, cfg.Test, cfg.DatasetFiles = trainSet, test, files
		} else {
			cfg.CacheDir = t.TempDir()
		}
		wctx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- worker.Run(wctx, cfg) }()
		stops[id] = sync.OnceValue(func() error {
			stop()
			select {
			case err := <-done:
				return err
			case <-time.After(hangGuard):
				return errors.New("did not stop")
			}
		})
		defer stops[id]()
	}

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(dpcnnv1.MaxMessageSize)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Both workers must have opened their streams before the job starts,
	// so that both take part.
	for {
		ws, err := dpcnnv1.NewClusterServiceClient(conn).ListWorkers(ctx, &dpcnnv1.ListWorkersRequest{})
		ready := 0
		for _, w := range ws.GetWorkers() {
			if w.GetState() == dpcnnv1.WorkerState_WORKER_STATE_IDLE {
				ready++
			}
		}
		if err == nil && ready == 2 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the workers never became ready: %v, %v", ws, err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	spec := job.Spec{Network: "simple", Epochs: 1, Batch: 50, MicroBatch: 10, TrainLimit: 200, TestLimit: 100, Seed: 5,
		Optimizer: model.OptimizerSpec{LR: 0.005}}
	jobs := dpcnnv1.NewJobServiceClient(conn)
	if _, err := jobs.SubmitJob(ctx, &dpcnnv1.SubmitJobRequest{Spec: spec.JSON(), JobId: "wjob"}); err != nil {
		t.Fatal(err)
	}
	watch, err := jobs.WatchJob(ctx, &dpcnnv1.WatchJobRequest{JobId: "wjob"})
	if err != nil {
		t.Fatal(err)
	}
	for {
		_, err := watch.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
	}
	got, err := jobs.GetJob(ctx, &dpcnnv1.GetJobRequest{JobId: "wjob"})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetState() != dpcnnv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job ended %v: %s", got.GetState(), got.GetError())
	}

	stream, err := jobs.DownloadCheckpoint(ctx, &dpcnnv1.DownloadCheckpointRequest{JobId: "wjob"})
	if err != nil {
		t.Fatal(err)
	}
	ckpt, err := model.ReadCheckpoint(bytes.NewReader(downloadFile(t, stream.Recv)))
	if err != nil {
		t.Fatal(err)
	}
	var distributed []float32
	for _, p := range ckpt.Params {
		distributed = append(distributed, p.Data...)
	}

	b := kernels.NewCPU(1)
	defer b.Close()
	tr, err := train.NewTrainer(spec, b, trainSet.Len(), test.Len(), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	comp, err := worker.NewComputer(tr.Spec(), b, trainSet, 100)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Run(ctx, &train.LocalWorkers{Computer: comp, Test: test}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if hashFloats(tr.Params()) != hashFloats(distributed) {
		t.Fatal("the distributed parameters differ from the local Trainer's")
	}

	for id, stop := range stops {
		if err := stop(); err != nil {
			t.Errorf("worker %s: %v", id, err)
		}
	}
	if recs, err := cluster.ListWorkers(ctx, cli, prefix); err != nil || len(recs) != 0 {
		t.Errorf("registered after shutdown: %v (err %v)", recs, err)
	}
}

// downloadFile reads a file stream and checks its size and sum.
func downloadFile(t *testing.T, recv func() (*dpcnnv1.FileChunk, error)) []byte {
	t.Helper()
	var info *dpcnnv1.FileInfo
	var data []byte
	for {
		c, err := recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if c.GetInfo() != nil {
			info = c.GetInfo()
		}
		data = append(data, c.GetData()...)
	}
	sum := sha256.Sum256(data)
	if info == nil || int64(len(data)) != info.GetSize() || hex.EncodeToString(sum[:]) != info.GetSha256() {
		t.Fatalf("download of %d bytes does not match %v", len(data), info)
	}
	return data
}

func hashFloats(v []float32) string {
	var b bytes.Buffer
	for _, f := range v {
		b.Write(dpcnnv1.AppendFloat32s(nil, []float32{f}))
	}
	sum := sha256.Sum256(b.Bytes())
	return hex.EncodeToString(sum[:])
}
