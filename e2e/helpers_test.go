package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/dpcnn/dpcnn/cluster"
	"github.com/dpcnn/dpcnn/coordinator"
	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/model"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
	"github.com/dpcnn/dpcnn/secure"
	"github.com/dpcnn/dpcnn/train"
	"github.com/dpcnn/dpcnn/worker"
)

// smallJob is a job that trains in a second or two: SimpleConvNet on 300
// training images, evaluated on 200, in steps of 50 images cut into five
// micro-batches, so that three workers share every step.
func smallJob(seed uint64) job.Spec {
	s := job.Spec{
		Name: "e2e", Network: "simple", Epochs: 2, Batch: 50, MicroBatch: 10,
		TrainLimit: 300, TestLimit: 200, Seed: seed,
	}.WithDefaults()
	return s
}

// mnist locates and loads MNIST as cnnctl does ($DPCNN_MNIST_DIR, else the
// GoMNIST module).
func mnist(t *testing.T) (dir string, train, test *dataset.Set) {
	t.Helper()
	dir, err := dataset.Locate("")
	if err != nil {
		t.Fatal(err)
	}
	train, test, err = dataset.LoadMNIST(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, train, test
}

// testLogger sends the cluster's warnings and errors to the test log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// startEtcd runs an embedded etcd for the test and returns a client.
func startEtcd(t *testing.T) (*clientv3.Client, []string) {
	t.Helper()
	endpoints, stop, err := cluster.StartEmbeddedEtcd(context.Background(), filepath.Join(t.TempDir(), "etcd"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	cli, err := cluster.Dial(endpoints)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli, endpoints
}

// startCoordinator serves a coordinator on a free loopback port until the
// test ends, and waits until it leads.
func startCoordinator(t *testing.T, cli *clientv3.Client, mnistDir string, tune ...func(*coordinator.ServerConfig)) string {
	t.Helper()
	cfg := coordinator.ServerConfig{
		ID: "e2e-coordinator", Etcd: cli, DataDir: t.TempDir(), MNISTDir: mnistDir,
		Logger: testLogger(t), Backend: kernels.NewCPU(1), Version: "e2e",
	}
	for _, f := range tune {
		f(&cfg)
	}
	srv, err := coordinator.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("coordinator: %v", err)
		}
	})
	addr := lis.Addr().String()
	waitLeader(t, cli, addr)
	return addr
}

// waitLeader waits until etcd names the coordinator at addr the leader.
func waitLeader(t *testing.T, cli *clientv3.Client, addr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		l, err := cluster.LeaderAddress(ctx, cli, cluster.DefaultPrefix)
		cancel()
		if err == nil && (addr == "" || l.Address == addr) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no coordinator at %q leads after 20 s: %+v, %v", addr, l, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startWorkers runs n workers as goroutines until the test ends: each
// finds the leader in etcd, as the daemon does, and computes with one
// thread on the data set in memory.
func startWorkers(t *testing.T, cli *clientv3.Client, n int, mnistDir string, train, test *dataset.Set, tune ...func(*worker.DaemonConfig)) {
	t.Helper()
	files, err := dataset.MNISTFiles(mnistDir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, n)
	for i := range n {
		b := kernels.NewCPU(1)
		cfg := worker.DaemonConfig{
			ID: fmt.Sprintf("e2e-w%d", i+1), Address: "127.0.0.1", Version: "e2e",
			Etcd: cli, Backend: b, Train: train, Test: test, DatasetFiles: files,
			ImagesPerSec: -1, Logger: testLogger(t),
		}
		for _, f := range tune {
			f(&cfg)
		}
		go func() {
			err := worker.Run(ctx, cfg)
			if c, ok := any(b).(interface{ Close() }); ok {
				c.Close()
			}
			done <- err
		}()
	}
	t.Cleanup(func() {
		cancel()
		for range n {
			if err := <-done; err != nil {
				t.Errorf("worker: %v", err)
			}
		}
	})
}

// dial connects to a coordinator.
func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(dpcnnv1.MaxMessageSize)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// jobRun is what watching a job saw.
type jobRun struct {
	ID          string
	State       dpcnnv1.JobState
	Reason      string
	Losses      []float64 // of each step, in order
	Evaluations []*dpcnnv1.Evaluation
	Workers     int32 // most live workers seen
	Logs        []string
}

// submitAndWatch submits spec and follows the job until it ends.
func submitAndWatch(ctx context.Context, t *testing.T, jobs dpcnnv1.JobServiceClient, spec job.Spec) jobRun {
	t.Helper()
	j, err := jobs.SubmitJob(ctx, &dpcnnv1.SubmitJobRequest{Spec: spec.JSON()})
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return watch(ctx, t, jobs, j.Id)
}

// watch follows a job until it ends.
func watch(ctx context.Context, t *testing.T, jobs dpcnnv1.JobServiceClient, id string) jobRun {
	t.Helper()
	run := jobRun{ID: id}
	stream, err := jobs.WatchJob(ctx, &dpcnnv1.WatchJobRequest{JobId: id})
	if err != nil {
		t.Fatalf("watch %s: %v", id, err)
	}
	var lastStep int64
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return run
		}
		if err != nil {
			t.Fatalf("watch %s: %v (saw %+v)", id, err, run)
		}
		switch k := ev.Kind.(type) {
		case *dpcnnv1.JobEvent_Progress:
			p := k.Progress
			if p.GlobalStep > lastStep {
				run.Losses = append(run.Losses, p.Loss)
				lastStep = p.GlobalStep
			}
			run.Workers = max(run.Workers, p.LiveWorkers)
			if p.Evaluation != nil {
				run.Evaluations = append(run.Evaluations, p.Evaluation)
			}
		case *dpcnnv1.JobEvent_StateChange:
			run.State, run.Reason = k.StateChange.NewState, k.StateChange.Reason
		case *dpcnnv1.JobEvent_Log:
			run.Logs = append(run.Logs, k.Log.GetMessage())
		}
	}
}

// receive reads the one file a download streams, checking its size and
// SHA-256 against what the coordinator announced.
func receive(t *testing.T, stream grpc.ServerStreamingClient[dpcnnv1.FileChunk], err error) []byte {
	t.Helper()
	if err != nil {
		t.Fatalf("download: %v", err)
	}
	var info *dpcnnv1.FileInfo
	var data []byte
	for {
		c, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("download: %v", err)
		}
		if c.Info != nil {
			info = c.Info
		}
		if info == nil || c.Offset != int64(len(data)) {
			t.Fatalf("download: chunk at offset %d after %d bytes (info %v)", c.Offset, len(data), info)
		}
		data = append(data, c.Data...)
	}
	sum := sha256.Sum256(data)
	if info == nil || int64(len(data)) != info.Size || hex.EncodeToString(sum[:]) != info.Sha256 {
		t.Fatalf("download: %d bytes with sha256 %x, announced %v", len(data), sum, info)
	}
	return data
}

// paramsSum is the SHA-256 of a checkpoint's parameters: names, shapes and
// the bits of every value.
func paramsSum(c *model.Checkpoint) string { return c.ParamsSHA256() }

// evaluate counts the first n test samples that the checkpoint's model
// classifies correctly, as `cnnctl eval` does.
func evaluate(t *testing.T, c *model.Checkpoint, test *dataset.Set, n int) int {
	t.Helper()
	const batch = 100
	net, err := model.New[float32](c.Spec, kernels.NewCPU(1), batch)
	if err != nil {
		t.Fatal(err)
	}
	if err := net.ImportParams(c.Params); err != nil {
		t.Fatal(err)
	}
	in := c.Spec.Input
	correct, err := worker.Evaluate(worker.NetworkPredictor{Net: net}, test, 0, n,
		make([]float32, batch*in.Height*in.Width*in.Channels), make([]int32, batch), make([]int64, batch), make([]int32, batch))
	if err != nil {
		t.Fatal(err)
	}
	return correct
}

// trainInProcess runs spec with one in-process worker (train.Trainer)
// and returns its final checkpoint: the reference every cluster run must
// match bit for bit.
func trainInProcess(t *testing.T, spec job.Spec, trainSet, test *dataset.Set) *model.Checkpoint {
	t.Helper()
	b := kernels.NewCPU(1)
	trainer, err := train.NewTrainer(spec, b, trainSet.Len(), test.Len(), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	comp, err := worker.NewComputer(trainer.Spec(), b, trainSet, 100)
	if err != nil {
		t.Fatal(err)
	}
	var last *model.Checkpoint
	_, err = trainer.Run(context.Background(), &train.LocalWorkers{Computer: comp, Test: test}, nil,
		func(c *model.Checkpoint) error { last = c; return nil })
	if err != nil {
		t.Fatal(err)
	}
	return last
}

// readCheckpoint decodes checkpoint bytes.
func readCheckpoint(t *testing.T, data []byte) *model.Checkpoint {
	t.Helper()
	c, err := model.ReadCheckpoint(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// writeFile writes data to a file in dir and returns its path.
func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// clusterTLS is what `cnnctl certs` made for a test cluster of processes:
// the flags that give each process its credentials, and the files the
// test's own clients use.
type clusterTLS struct {
	dir                                     string
	etcdServer, coordinator, worker, cnnctl []string
}

// makeClusterTLS runs the built `cnnctl certs` (in bin) to write a CA, the
// certificates and a token into dir/certs. Everything runs on 127.0.0.1,
// which every certificate covers.
func makeClusterTLS(t *testing.T, bin, dir string) clusterTLS {
	t.Helper()
	return makeClusterTLSFor(t, bin, dir)
}

// makeClusterTLSFor is makeClusterTLS for coordinators and etcd reached at
// hosts as well.
func makeClusterTLSFor(t *testing.T, bin, dir string, hosts ...string) clusterTLS {
	t.Helper()
	c := clusterTLS{dir: filepath.Join(dir, "certs")}
	args := []string{"certs", "--out", c.dir, "--valid-for", "24h"}
	if len(hosts) > 0 {
		args = append(args, "--hosts", strings.Join(hosts, ","))
	}
	out, err := exec.Command(filepath.Join(bin, "cnnctl"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("cnnctl certs: %v\n%s", err, out)
	}
	ca := c.file(secure.FileCA)
	c.etcdServer = []string{"--tls-ca", ca, "--tls-cert", c.file(secure.FileEtcdCert), "--tls-key", c.file(secure.FileEtcdKey)}
	c.coordinator = []string{"--tls-ca", ca, "--tls-cert", c.file(secure.FileCoordinatorCert), "--tls-key", c.file(secure.FileCoordinatorKey),
		"--token-file", c.file(secure.FileToken)}
	c.worker = []string{"--tls-ca", ca, "--tls-cert", c.file(secure.FileWorkerCert), "--tls-key", c.file(secure.FileWorkerKey)}
	c.cnnctl = []string{"--tls-ca", ca, "--token-file", c.file(secure.FileToken)}
	return c
}

func (c clusterTLS) file(name string) string { return filepath.Join(c.dir, name) }

// dialEtcd makes an etcd client with the worker's certificate, closed when
// the test ends.
func (c clusterTLS) dialEtcd(t *testing.T, endpoints string, extra ...grpc.DialOption) *clientv3.Client {
	t.Helper()
	cfg, err := secure.ClientTLS(secure.Files{CA: c.file(secure.FileCA), Cert: c.file(secure.FileWorkerCert), Key: c.file(secure.FileWorkerKey)}, "")
	if err != nil {
		t.Fatal(err)
	}
	withExtra := func(cc *clientv3.Config) { cc.DialOptions = append(cc.DialOptions, extra...) }
	cli, err := cluster.Dial(cluster.SplitEndpoints(endpoints), cluster.WithTLS(cfg), withExtra)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// dial connects to a coordinator as cnnctl does: TLS verified against the
// CA, and the token with every call.
func (c clusterTLS) dial(t *testing.T, addr string, extra ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	token, err := secure.ReadToken(c.file(secure.FileToken))
	if err != nil {
		t.Fatal(err)
	}
	opts, err := secure.Client{Files: secure.Files{CA: c.file(secure.FileCA)}, Token: token}.DialOptions(addr)
	if err != nil {
		t.Fatal(err)
	}
	opts = append(opts, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(dpcnnv1.MaxMessageSize)))
	conn, err := grpc.NewClient(addr, append(opts, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// starter starts a command for the test: startProcess, or netLab.start on
// one of the lab's hosts.
type starter func(name, path string, args ...string) *process

// runEtcdCommand starts `cnnctl etcd` (from bin) with the cluster's
// certificates, keeping its data under dir, and returns its client
// endpoints once it serves.
func runEtcdCommand(t *testing.T, start starter, bin, dir string, tls clusterTLS, args ...string) string {
	t.Helper()
	epFile := filepath.Join(dir, "etcd-endpoints")
	args = append([]string{"etcd", "--data-dir", filepath.Join(dir, "etcd"), "--endpoints-file", epFile}, args...)
	start("etcd", filepath.Join(bin, "cnnctl"), append(args, tls.etcdServer...)...)
	return strings.TrimSpace(string(waitFile(t, epFile, 20*time.Second)))
}
