package coordinator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	keyspace "github.com/dpcnn/dpcnn/cluster"
	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/model"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
	"github.com/dpcnn/dpcnn/tree"
	"github.com/dpcnn/dpcnn/worker"
)

// hangGuard bounds every wait of these tests: a hang fails the test
// instead of stalling the run. It is not a timing.
const hangGuard = 45 * time.Second

// testEtcd starts an embedded etcd and returns a client of it.
func testEtcd(t *testing.T) *clientv3.Client {
	t.Helper()
	return dialTestEtcd(t, startTestEtcd(t))
}

// startTestEtcd starts an embedded etcd, stopped when the test ends, and
// returns its endpoints.
func startTestEtcd(tb testing.TB) []string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	endpoints, stop, err := keyspace.StartEmbeddedEtcd(ctx, tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(stop)
	return endpoints
}

// dialTestEtcd returns a client of etcd at endpoints, closed when the test
// ends.
func dialTestEtcd(tb testing.TB, endpoints []string) *clientv3.Client {
	tb.Helper()
	cli, err := keyspace.Dial(endpoints)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cli.Close() })
	return cli
}

// testCoordinator is a Server serving on a loopback port.
type testCoordinator struct {
	srv  *Server
	addr string
	conn *grpc.ClientConn
	stop func() // drains the server and waits for Serve to return
}

// startCoordinator serves a coordinator with id on 127.0.0.1, in
// plaintext; it stops when the test ends, or earlier by stop.
func startCoordinator(t *testing.T, cli *clientv3.Client, id, dataDir string) *testCoordinator {
	t.Helper()
	return startCoordinatorWith(t, cli, id, dataDir, nil, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// startCoordinatorWith is startCoordinator with the configuration changed
// by edit (when not nil) and the test's connection dialed with creds.
func startCoordinatorWith(t *testing.T, cli *clientv3.Client, id, dataDir string, edit func(*ServerConfig), creds grpc.DialOption) *testCoordinator {
	t.Helper()
	train, test := loadMNIST(t)
	cfg := ServerConfig{
		ID: id, Etcd: cli, Prefix: "/test/", DataDir: dataDir, Train: train, Test: test,
		SessionTTL: testSessionTTL(), HeartbeatInterval: 200 * time.Millisecond, HeartbeatTimeout: 2 * time.Second, TickInterval: 50 * time.Millisecond,
		StatusInterval: 100 * time.Millisecond, Backend: kernels.NewCPU(1),
	}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := NewServer(cfg)
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
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("coordinator %s: Serve: %v", id, err)
			}
		})
	}
	t.Cleanup(stop)
	conn, err := grpc.NewClient(lis.Addr().String(), creds,
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(dpcnnv1.MaxMessageSize)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &testCoordinator{srv: srv, addr: lis.Addr().String(), conn: conn, stop: stop}
}

// waitLeading waits until c leads.
func waitLeading(t *testing.T, c *testCoordinator) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for c.srv.leading() == nil {
		if time.Now().After(deadline) {
			t.Fatalf("coordinator at %s never led", c.addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testWorker speaks the Work protocol the way the worker daemon does, with
// worker.Computer and tree.ComputeSubtree, computing each assignment as it
// arrives. A rogue one answers every training assignment with a gradient of
// the wrong length; a hostile one answers with malformed results of every
// kind; a silent one stops its heartbeats once it has work and answers
// nothing, as a hung process would; a misechoing one computes right but
// names other work in its answers (the next subtree, other test samples).
type testWorker struct {
	id          string
	train, test *dataset.Set
	rogue       bool
	hostile     bool
	silent      bool
	quits       bool // ends its stream on its first assignment, with it in hand
	misecho     bool
	deltas      bool                                 // announces and applies parameter deltas, as the worker daemon does
	paramsGot   struct{ whole, deltas atomic.Int64 } // parameter vectors received, by encoding
	assignments atomic.Int64                         // how many it received
	ended       error                                // how the coordinator ended its stream

	mu  sync.Mutex
	ids map[string][]uint64 // the assignment IDs it received, by job
}

// received returns the assignment IDs the worker received for a job.
func (w *testWorker) received(jobID string) []uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.ids[jobID])
}

func (w *testWorker) run(ctx context.Context, conn *grpc.ClientConn) error {
	client := dpcnnv1.NewWorkerServiceClient(conn)
	joined, err := client.Join(ctx, &dpcnnv1.JoinRequest{WorkerId: w.id, Backend: "cpu", Cores: 1, ImagesPerSec: 1000, Version: "test", AcceptsParamsDelta: w.deltas})
	if err != nil {
		return fmt.Errorf("worker %s: join: %w", w.id, err)
	}
	stream, err := client.Work(ctx)
	if err != nil {
		return fmt.Errorf("worker %s: work: %w", w.id, err)
	}
	var sendMu sync.Mutex
	send := func(m *dpcnnv1.WorkerMessage) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(m)
	}
	if err := send(&dpcnnv1.WorkerMessage{Kind: &dpcnnv1.WorkerMessage_Hello{Hello: &dpcnnv1.Hello{WorkerId: w.id, Session: joined.Session}}}); err != nil {
		return err
	}
	go func() {
		t := time.NewTicker(time.Duration(joined.HeartbeatIntervalNanos))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if w.silent && w.assignments.Load() > 0 {
					return // hung with work in hand
				}
				if send(&dpcnnv1.WorkerMessage{Kind: &dpcnnv1.WorkerMessage_Heartbeat{Heartbeat: &dpcnnv1.Heartbeat{}}}) != nil {
					return
				}
			}
		}
	}()

	b := kernels.NewCPU(1)
	defer b.Close()
	var (
		spec   job.Spec
		comp   *worker.Computer
		params []float32
		leaves [][]float32
		losses []float64
		codec  dpcnnv1.DeltaCodec
	)
	for {
		m, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if w.silent {
				w.ended = err
				return nil
			}
			return fmt.Errorf("worker %s: receive: %w", w.id, err)
		}
		a := m.GetAssignment()
		if a == nil {
			continue // a withdrawal: this worker computes each assignment at once anyway
		}
		w.assignments.Add(1)
		w.mu.Lock()
		if w.ids == nil {
			w.ids = map[string][]uint64{}
		}
		w.ids[a.JobId] = append(w.ids[a.JobId], a.AssignmentId)
		w.mu.Unlock()
		if w.silent {
			continue
		}
		if w.quits {
			sendMu.Lock() // the heartbeats send on the stream too
			defer sendMu.Unlock()
			return stream.CloseSend()
		}
		if len(a.JobSpecJson) > 0 {
			if spec, err = job.Parse(a.JobSpecJson); err != nil {
				return err
			}
			if comp, err = worker.NewComputer(spec, b, w.train, 50); err != nil {
				return err
			}
			params = make([]float32, comp.ParamCount())
		}
		if a.Params != nil {
			w.paramsGot.whole.Add(1)
			if err := a.Params.DecodeInto(params); err != nil {
				return err
			}
			if err := comp.SetParams(params); err != nil {
				return err
			}
		} else if a.ParamsDelta != nil {
			w.paramsGot.deltas.Add(1)
			if !w.deltas {
				return fmt.Errorf("worker %s: a parameter delta, though it did not accept deltas", w.id)
			}
			if err := codec.Apply(params, a.ParamsDelta); err != nil {
				return err
			}
			if err := comp.SetParams(params); err != nil {
				return err
			}
		}
		if w.hostile {
			for _, bad := range malformedResults(a) {
				if err := send(&dpcnnv1.WorkerMessage{Kind: &dpcnnv1.WorkerMessage_Result{Result: bad}}); err != nil {
					return err
				}
			}
			continue
		}
		res := &dpcnnv1.WorkResult{AssignmentId: a.AssignmentId, JobId: a.JobId}
		start := time.Now()
		switch work := a.Work.(type) {
		case *dpcnnv1.Assignment_Train:
			if st := work.Train.Subtree; st != nil {
				var mbs []tree.MicroBatch
				for i := 0; i < len(st.Indices); i += spec.MicroBatch {
					mbs = append(mbs, tree.MicroBatch{Epoch: a.Epoch, Step: a.Step, Indices: st.Indices[i : i+spec.MicroBatch]})
				}
				for len(leaves) < len(mbs) {
					leaves = append(leaves, make([]float32, comp.ParamCount()))
					losses = append(losses, 0)
				}
				grad, leafLosses, correct, err := tree.ComputeSubtree(ctx, comp, mbs, leaves, losses)
				if err != nil {
					return err
				}
				if w.rogue {
					grad = grad[:len(grad)-1]
				}
				first := st.FirstLeaf
				if w.misecho {
					first += st.LeafCount
				}
				res.Outcome = &dpcnnv1.WorkResult_Train{Train: &dpcnnv1.SubtreeGradient{
					FirstLeaf: first, LeafCount: st.LeafCount,
					GradientSum:  dpcnnv1.NewTensor("grad", []int{len(grad)}, grad),
					LeafLossSums: leafLosses, Correct: int64(correct),
				}}
			}
		case *dpcnnv1.Assignment_Eval:
			correct, err := comp.Evaluate(w.test, int(work.Eval.Begin), int(work.Eval.End))
			if err != nil {
				return err
			}
			begin := work.Eval.Begin
			if w.misecho {
				begin++
			}
			res.Outcome = &dpcnnv1.WorkResult_Eval{Eval: &dpcnnv1.EvalCount{Begin: begin, End: work.Eval.End, Correct: int64(correct)}}
		}
		res.ComputeNanos = int64(time.Since(start))
		if err := send(&dpcnnv1.WorkerMessage{Kind: &dpcnnv1.WorkerMessage_Result{Result: res}}); err != nil {
			return err
		}
	}
}

// malformedResults answers assignment a in every wrong way that still
// parses as a WorkResult.
func malformedResults(a *dpcnnv1.Assignment) []*dpcnnv1.WorkResult {
	id, job := a.AssignmentId, a.JobId
	train := func(g *dpcnnv1.SubtreeGradient) *dpcnnv1.WorkResult {
		return &dpcnnv1.WorkResult{AssignmentId: id, JobId: job, Outcome: &dpcnnv1.WorkResult_Train{Train: g}}
	}
	return []*dpcnnv1.WorkResult{
		{AssignmentId: id, JobId: job},
		{AssignmentId: id, JobId: job, Outcome: &dpcnnv1.WorkResult_Eval{}},
		{AssignmentId: id, JobId: job, Outcome: &dpcnnv1.WorkResult_Eval{Eval: &dpcnnv1.EvalCount{Correct: -5}}},
		{AssignmentId: id + 1<<40, JobId: job, Outcome: &dpcnnv1.WorkResult_Eval{Eval: &dpcnnv1.EvalCount{}}},
		{AssignmentId: id, JobId: "some-other-job", Outcome: &dpcnnv1.WorkResult_Eval{Eval: &dpcnnv1.EvalCount{}}},
		train(nil),
		train(&dpcnnv1.SubtreeGradient{}),
		train(&dpcnnv1.SubtreeGradient{GradientSum: &dpcnnv1.Tensor{Shape: []int64{-1}, Data: []byte{1, 2, 3}}}),
		train(&dpcnnv1.SubtreeGradient{GradientSum: &dpcnnv1.Tensor{Shape: []int64{1 << 40, 1 << 40}}}),
		train(&dpcnnv1.SubtreeGradient{GradientSum: dpcnnv1.NewTensor("grad", []int{2}, []float32{1, 2}), Correct: 1 << 40}),
	}
}

// startWorkers runs workers against conn until the test ends.
func startWorkers(t *testing.T, conn *grpc.ClientConn, workers ...*testWorker) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() {
			if err := w.run(ctx, conn); err != nil {
				t.Errorf("%v", err)
			}
		})
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

// tinySpec is the job of these tests: 4 steps of the simple network.
func tinySpec() job.Spec {
	return job.Spec{Network: "simple", Epochs: 1, Batch: 50, MicroBatch: 25, TrainLimit: 200, TestLimit: 100, Seed: 7,
		Optimizer: model.OptimizerSpec{LR: 0.005}}
}

// watchToEnd follows a job until it ends and returns its events.
func watchToEnd(t *testing.T, jobs dpcnnv1.JobServiceClient, id string) []*dpcnnv1.JobEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	stream, err := jobs.WatchJob(ctx, &dpcnnv1.WatchJobRequest{JobId: id})
	if err != nil {
		t.Fatal(err)
	}
	var evs []*dpcnnv1.JobEvent
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			return evs
		}
		if err != nil {
			t.Fatalf("watch job %s: %v (after %d events)", id, err, len(evs))
		}
		evs = append(evs, ev)
	}
}

// download fetches a file stream and checks it the way a client must.
func download(t *testing.T, recv func() (*dpcnnv1.FileChunk, error)) (*dpcnnv1.FileInfo, []byte) {
	t.Helper()
	var info *dpcnnv1.FileInfo
	var data []byte
	for {
		c, err := recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if c.Info != nil {
			if info != nil {
				t.Fatalf("a second file %s in a one-file download", c.Info.Name)
			}
			info = c.Info
		}
		if c.Offset != int64(len(data)) || len(c.Data) > dpcnnv1.ChunkSize {
			t.Fatalf("chunk at offset %d of %d bytes after %d bytes", c.Offset, len(c.Data), len(data))
		}
		data = append(data, c.Data...)
	}
	sum := sha256.Sum256(data)
	if info == nil || info.Size != int64(len(data)) || info.Sha256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("download: info %v for %d bytes of sha256 %x", info, len(data), sum)
	}
	return info, data
}

func flatParams(c *model.Checkpoint) []float32 {
	var out []float32
	for _, p := range c.Params {
		out = append(out, p.Data...)
	}
	return out
}

// A job submitted to the leader runs on two workers that speak the Work
// protocol, succeeds with a falling loss, and ends with exactly the
// parameters of the local Trainer.
func TestServerRunsJob(t *testing.T) {
	train, test := loadMNIST(t)
	cli := testEtcd(t)
	c := startCoordinator(t, cli, "c1", t.TempDir())
	waitLeading(t, c)
	takesDeltas := &testWorker{id: "w-1", train: train, test: test, deltas: true}
	startWorkers(t, c.conn, takesDeltas, &testWorker{id: "w-2", train: train, test: test})
	runTinyJob(t, cli, c, tinySpec(), 2, false)
	// Two workers are fewer than the default DefaultParamsDeltaMinWorkers.
	if n := takesDeltas.paramsGot.deltas.Load(); n != 0 {
		t.Errorf("%d parameter deltas with 2 live workers, want none below %d", n, DefaultParamsDeltaMinWorkers)
	}
}

// From ParamsDeltaMinWorkers live workers (2 here), a worker that takes
// parameter deltas gets them (whole vectors only when it holds no version
// or not the one before), the other whole vectors, and the job's
// parameters are the local Trainer's bit for bit.
func TestServerSendsParamsDeltas(t *testing.T) {
	train, test := loadMNIST(t)
	cli := testEtcd(t)
	c := startCoordinatorWith(t, cli, "c1", t.TempDir(), func(cfg *ServerConfig) { cfg.ParamsDeltaMinWorkers = 2 },
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	waitLeading(t, c)
	deltas := &testWorker{id: "w-delta", train: train, test: test, deltas: true}
	whole := &testWorker{id: "w-whole", train: train, test: test}
	startWorkers(t, c.conn, deltas, whole)
	runTinyJob(t, cli, c, tinySpec(), 2, false)
	t.Logf("delta worker: %d deltas, %d whole; other: %d whole", deltas.paramsGot.deltas.Load(), deltas.paramsGot.whole.Load(), whole.paramsGot.whole.Load())
	if d, w := deltas.paramsGot.deltas.Load(), deltas.paramsGot.whole.Load(); d == 0 || w == 0 || d < w {
		t.Errorf("the delta worker received %d deltas and %d whole vectors, want more deltas than whole vectors, both some", d, w)
	}
	if d, w := whole.paramsGot.deltas.Load(), whole.paramsGot.whole.Load(); d != 0 || w == 0 {
		t.Errorf("the other worker received %d deltas and %d whole vectors, want only whole ones", d, w)
	}
}

// Workers that answer with wrong-shaped gradients or malformed results, or
// whose answers name other work than they were given, are refused and get
// no more work; the others redo their share and the parameters are the
// same.
func TestServerRefusesBadResults(t *testing.T) {
	train, test := loadMNIST(t)
	cli := testEtcd(t)
	c := startCoordinator(t, cli, "c1", t.TempDir())
	waitLeading(t, c)
	rogue := &testWorker{id: "rogue", train: train, test: test, rogue: true}
	hostile := &testWorker{id: "hostile", train: train, test: test, hostile: true}
	misecho := &testWorker{id: "misecho", train: train, test: test, misecho: true}
	startWorkers(t, c.conn, rogue, hostile, misecho, &testWorker{id: "w-1", train: train, test: test})
	spec := tinySpec()
	spec.MicroBatch = 5 // 10 leaves a step: work for all
	runTinyJob(t, cli, c, spec, 4, true)
	if rogue.assignments.Load() == 0 || hostile.assignments.Load() == 0 || misecho.assignments.Load() == 0 {
		t.Fatalf("the rogue worker got %d assignments, the hostile one %d, the misechoing one %d; want some each",
			rogue.assignments.Load(), hostile.assignments.Load(), misecho.assignments.Load())
	}
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	events, err := dpcnnv1.NewJobServiceClient(c.conn).ListJobEvents(ctx, &dpcnnv1.ListJobEventsRequest{JobId: "tiny", PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(events.Events, func(ev *dpcnnv1.JobEvent) bool {
		msg := ev.GetLog().GetMessage()
		return strings.Contains(msg, "worker misecho") && strings.Contains(msg, "result for other work than assigned")
	}) {
		t.Error("no refusal of the misechoing worker's answer in the job's log")
	}
}

// A worker that falls silent is taken for dead after its heartbeats stop:
// its stream ends and its work is redone by the others.
func TestServerDropsSilentWorker(t *testing.T) {
	train, test := loadMNIST(t)
	cli := testEtcd(t)
	c := startCoordinator(t, cli, "c1", t.TempDir())
	waitLeading(t, c)
	silent := &testWorker{id: "silent", train: train, test: test, silent: true}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- silent.run(ctx, c.conn) }()
	defer cancel()
	startWorkers(t, c.conn, &testWorker{id: "w-1", train: train, test: test})
	spec := tinySpec()
	spec.MicroBatch = 5
	runTinyJob(t, cli, c, spec, 1, false) // a lost worker is not listed once its etcd record, if any, expired
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if silent.assignments.Load() == 0 || status.Code(silent.ended) != codes.DeadlineExceeded {
		t.Fatalf("the silent worker got %d assignments and its stream ended with %v; want some, and DEADLINE_EXCEEDED", silent.assignments.Load(), silent.ended)
	}
	// The job's log tells a user what happened (cnnctl logs prints it).
	// Its deadline or its heartbeats' timeout, whichever comes first, takes
	// the silent worker's work from it.
	all := jobLog(t, c, "tiny")
	if !strings.Contains(all, "coordinator c1 leads the job (term ") ||
		!strings.Contains(all, "worker silent is slow") && !strings.Contains(all, "worker silent was lost with work in hand") {
		t.Errorf("the job's log lacks its coordinator, or the silent worker's slowness or loss:\n%s", all)
	}
}

// A worker that leaves with work in hand has its work given to the others,
// and the job's log says both.
func TestServerReassignsTheWorkOfALostWorker(t *testing.T) {
	train, test := loadMNIST(t)
	cli := testEtcd(t)
	c := startCoordinator(t, cli, "c1", t.TempDir())
	waitLeading(t, c)
	quitter := &testWorker{id: "quitter", train: train, test: test, quits: true}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- quitter.run(ctx, c.conn) }()
	// The quitter is in before the job starts, so it is given work.
	for deadline := time.Now().Add(hangGuard); ; time.Sleep(10 * time.Millisecond) {
		l, err := dpcnnv1.NewClusterServiceClient(c.conn).ListWorkers(ctx, &dpcnnv1.ListWorkersRequest{})
		if err == nil && len(l.Workers) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the quitter never joined: %v, %v", l, err)
		}
	}
	startWorkers(t, c.conn, &testWorker{id: "w-1", train: train, test: test})
	spec := tinySpec()
	spec.MicroBatch = 5
	runTinyJob(t, cli, c, spec, 1, false)
	if err := <-done; err != nil || quitter.assignments.Load() != 1 {
		t.Fatalf("the quitter got %d assignments and ended with %v; want 1 and nil", quitter.assignments.Load(), err)
	}
	all := jobLog(t, c, "tiny")
	for _, want := range []string{"worker quitter was lost with work in hand", "given out again, to worker w-1"} {
		if !strings.Contains(all, want) {
			t.Errorf("the job's log lacks %q:\n%s", want, all)
		}
	}
}

// jobLog is the messages of a job's log events, a line each.
func jobLog(t *testing.T, c *testCoordinator, jobID string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	page, err := dpcnnv1.NewJobServiceClient(c.conn).ListJobEvents(ctx, &dpcnnv1.ListJobEventsRequest{JobId: jobID, PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var log []string
	for _, ev := range page.Events {
		if l := ev.GetLog(); l != nil {
			log = append(log, l.Message)
		}
	}
	return strings.Join(log, "\n")
}

// runTinyJob submits spec as job "tiny" to c, follows it to its end and
// checks everything about it against a local Trainer run.
func runTinyJob(t *testing.T, cli *clientv3.Client, c *testCoordinator, spec job.Spec, workers int, rogue bool) {
	t.Helper()
	jobs := dpcnnv1.NewJobServiceClient(c.conn)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()

	submitted, err := jobs.SubmitJob(ctx, &dpcnnv1.SubmitJobRequest{Spec: spec.JSON(), JobId: "tiny"})
	if err != nil {
		t.Fatal(err)
	}
	if submitted.Id != "tiny" || !bytes.Equal(submitted.SpecJson, spec.WithDefaults().JSON()) {
		t.Fatalf("submitted job %s with spec %s", submitted.Id, submitted.SpecJson)
	}
	again, err := jobs.SubmitJob(ctx, &dpcnnv1.SubmitJobRequest{Spec: spec.JSON(), JobId: "tiny"})
	if err != nil || again.Id != "tiny" || again.CreatedUnixNanos != submitted.CreatedUnixNanos {
		t.Fatalf("submitting the same job again: %v, %v; want the existing job", again, err)
	}

	evs := watchToEnd(t, jobs, "tiny")
	var losses []float64
	var states []dpcnnv1.JobState
	var evaluated *dpcnnv1.Evaluation
	var refused, checkpoints int
	for _, ev := range evs {
		switch k := ev.Kind.(type) {
		case *dpcnnv1.JobEvent_Progress:
			losses = append(losses, k.Progress.Loss)
			if k.Progress.Evaluation != nil {
				evaluated = k.Progress.Evaluation
			}
		case *dpcnnv1.JobEvent_StateChange:
			states = append(states, k.StateChange.NewState)
		case *dpcnnv1.JobEvent_Log:
			if strings.Contains(k.Log.Message, "wrong gradient shape") {
				refused++
			}
		case *dpcnnv1.JobEvent_Checkpoint:
			checkpoints++
		}
	}
	last := states[len(states)-1]
	if last != dpcnnv1.JobState_JOB_STATE_SUCCEEDED {
		got, _ := jobs.GetJob(ctx, &dpcnnv1.GetJobRequest{JobId: "tiny"})
		t.Fatalf("job ended %v (%s); states %v", last, got.GetError(), states)
	}
	if len(losses) < 2 || !(losses[len(losses)-1] < losses[0]) || evaluated == nil || checkpoints != spec.Epochs {
		t.Fatalf("losses %v, evaluation %v, %d checkpoints: want a falling loss, an evaluation and %d checkpoints", losses, evaluated, checkpoints, spec.Epochs)
	}
	if rogue != (refused > 0) {
		t.Errorf("%d refusals of wrong-shaped gradients among the events, with a rogue worker: %v", refused, rogue)
	}
	if got := checkTinyJob(t, cli, c, spec, workers); !proto.Equal(got.LastEvaluation, evaluated) {
		t.Fatalf("the job's last evaluation %v, its events' %v", got.LastEvaluation, evaluated)
	}
}

// checkTinyJob checks everything about the job "tiny" after it succeeded:
// its record, its checkpoint against a local Trainer run and its accuracy,
// its model, its listing and its events, the workers that ran it, and its
// status in etcd. It returns the job.
func checkTinyJob(t *testing.T, cli *clientv3.Client, c *testCoordinator, spec job.Spec, workers int) *dpcnnv1.Job {
	t.Helper()
	train, test := loadMNIST(t)
	jobs := dpcnnv1.NewJobServiceClient(c.conn)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	steps := int64(spec.Epochs * spec.TrainLimit / spec.Batch)
	got, err := jobs.GetJob(ctx, &dpcnnv1.GetJobRequest{JobId: "tiny"})
	if err != nil {
		t.Fatal(err)
	}
	evaluated := got.LastEvaluation
	if got.State != dpcnnv1.JobState_JOB_STATE_SUCCEEDED || got.Backend != "cpu" || got.Progress.GetGlobalStep() != steps ||
		got.LatestCheckpoint.GetStep() != steps || evaluated.GetGlobalStep() != steps || got.FinishedUnixNanos == 0 {
		t.Fatalf("GetJob = %v", got)
	}

	// The checkpoint downloads intact, evaluates to the reported accuracy,
	// and holds the local Trainer's parameters bit for bit.
	stream, err := jobs.DownloadCheckpoint(ctx, &dpcnnv1.DownloadCheckpointRequest{JobId: "tiny"})
	if err != nil {
		t.Fatal(err)
	}
	info, data := download(t, stream.Recv)
	if info.Name != checkpointFileName(steps) || info.Sha256 != got.LatestCheckpoint.Sha256 {
		t.Fatalf("checkpoint download %v, job says %v", info, got.LatestCheckpoint)
	}
	ckpt, err := model.ReadCheckpoint(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	// The parameter hash is reported with every checkpoint of the history.
	if h := got.Checkpoints; len(h) == 0 || !proto.Equal(h[len(h)-1], got.LatestCheckpoint) ||
		got.LatestCheckpoint.ParamsSha256 != ckpt.ParamsSHA256() {
		t.Fatalf("checkpoint history %v, latest %v; the downloaded parameters hash to %s", h, got.LatestCheckpoint, ckpt.ParamsSHA256())
	}
	b := kernels.NewCPU(1)
	defer b.Close()
	comp, err := worker.NewComputer(spec.WithDefaults(), b, train, 50)
	if err != nil {
		t.Fatal(err)
	}
	if err := comp.SetParams(flatParams(ckpt)); err != nil {
		t.Fatal(err)
	}
	correct, err := comp.Evaluate(test, 0, spec.TestLimit)
	if err != nil {
		t.Fatal(err)
	}
	if int64(correct) != evaluated.Correct || float64(correct)/float64(spec.TestLimit) != got.LastEvaluation.TestAccuracy {
		t.Fatalf("the checkpoint classifies %d of %d right; the job reported %v", correct, spec.TestLimit, evaluated)
	}
	tr, local := newLocalRun(t, spec, 1)
	if _, err := tr.Run(ctx, local, nil, nil); err != nil {
		t.Fatal(err)
	}
	if paramHash(tr.Params()) != paramHash(flatParams(ckpt)) {
		t.Fatalf("distributed parameters differ from the local Trainer's")
	}

	modelStream, err := jobs.DownloadModel(ctx, &dpcnnv1.DownloadModelRequest{JobId: "tiny", Logits: true})
	if err != nil {
		t.Fatal(err)
	}
	if info, data := download(t, modelStream.Recv); info.Name != "model.onnx" || len(data) == 0 {
		t.Fatalf("model download %v", info)
	}

	list, err := jobs.ListJobs(ctx, &dpcnnv1.ListJobsRequest{States: []dpcnnv1.JobState{dpcnnv1.JobState_JOB_STATE_SUCCEEDED}})
	if err != nil || len(list.Jobs) != 1 || list.Jobs[0].Id != "tiny" {
		t.Fatalf("ListJobs(succeeded) = %v, %v", list, err)
	}
	page, err := jobs.ListJobEvents(ctx, &dpcnnv1.ListJobEventsRequest{JobId: "tiny", PageSize: 2})
	if err != nil || len(page.Events) != 2 || !page.More || page.Events[0].Sequence >= page.Events[1].Sequence {
		t.Fatalf("ListJobEvents(page of 2) = %v, %v", page, err)
	}
	rest, err := jobs.ListJobEvents(ctx, &dpcnnv1.ListJobEventsRequest{JobId: "tiny", AfterSequence: page.Events[1].Sequence})
	if err != nil || len(rest.Events) == 0 || rest.More || rest.Events[0].Sequence <= page.Events[1].Sequence {
		t.Fatalf("ListJobEvents(after %d) = %v, %v", page.Events[1].Sequence, rest, err)
	}

	listed, err := dpcnnv1.NewClusterServiceClient(c.conn).ListWorkers(ctx, &dpcnnv1.ListWorkersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(listed.Workers) != workers {
		t.Fatalf("ListWorkers = %v, want %d", listed, workers)
	}
	for _, w := range listed.Workers {
		if w.State != dpcnnv1.WorkerState_WORKER_STATE_IDLE || w.Backend != "cpu" || w.JoinedUnixNanos == 0 {
			t.Fatalf("ListWorkers: %v", w)
		}
	}

	// The status in etcd says the same, for the next leader.
	rec, found, err := keyspace.GetJob(ctx, cli, "/test/", "tiny")
	if err != nil || !found || rec.Status.State != dpcnnv1.JobState_JOB_STATE_SUCCEEDED || rec.Status.Step != steps || rec.Status.CheckpointSHA256 != got.LatestCheckpoint.Sha256 {
		t.Fatalf("etcd record %+v, %v, %v", rec.Status, found, err)
	}
	return got
}

// Every RPC checks its input and answers with the contract's codes.
func TestServerRefusesBadInput(t *testing.T) {
	cli := testEtcd(t)
	c := startCoordinator(t, cli, "c1", t.TempDir())
	waitLeading(t, c)
	jobs := dpcnnv1.NewJobServiceClient(c.conn)
	workers := dpcnnv1.NewWorkerServiceClient(c.conn)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()

	code := func(what string, err error, want codes.Code, text string) {
		t.Helper()
		if status.Code(err) != want || !strings.Contains(status.Convert(err).Message(), text) {
			t.Errorf("%s: %v; want %v mentioning %q", what, err, want, text)
		}
	}
	_, err := jobs.GetJob(ctx, &dpcnnv1.GetJobRequest{JobId: "nope"})
	code("GetJob(nope)", err, codes.NotFound, "nope")
	_, err = jobs.CancelJob(ctx, &dpcnnv1.CancelJobRequest{JobId: "nope"})
	code("CancelJob(nope)", err, codes.NotFound, "nope")
	_, err = jobs.GetJob(ctx, &dpcnnv1.GetJobRequest{})
	code("GetJob()", err, codes.InvalidArgument, "job id")
	watch, err := jobs.WatchJob(ctx, &dpcnnv1.WatchJobRequest{JobId: "nope"})
	if err == nil {
		_, err = watch.Recv()
	}
	code("WatchJob(nope)", err, codes.NotFound, "nope")

	bad := []byte(`{"network": "simple", "batch": 50, "microBatch": 7}`)
	_, parseErr := job.Parse(bad)
	_, err = jobs.SubmitJob(ctx, &dpcnnv1.SubmitJobRequest{Spec: bad})
	code("SubmitJob(bad spec)", err, codes.InvalidArgument, parseErr.Error())
	_, err = jobs.SubmitJob(ctx, &dpcnnv1.SubmitJobRequest{Spec: []byte(`{"network": "simple", "batch": 50, "colour": "red"}`)})
	code("SubmitJob(unknown field)", err, codes.InvalidArgument, "colour")
	_, err = jobs.SubmitJob(ctx, &dpcnnv1.SubmitJobRequest{})
	code("SubmitJob(no spec)", err, codes.InvalidArgument, "empty spec")
	_, err = jobs.SubmitJob(ctx, &dpcnnv1.SubmitJobRequest{Spec: tinySpec().JSON(), JobId: "Bad_ID"})
	code("SubmitJob(bad id)", err, codes.InvalidArgument, "Bad_ID")
	_, err = jobs.SubmitJob(ctx, &dpcnnv1.SubmitJobRequest{Spec: tinySpec().JSON(), Backend: "tpu"})
	code("SubmitJob(backend tpu)", err, codes.InvalidArgument, "tpu")
	if _, err := jobs.SubmitJob(ctx, &dpcnnv1.SubmitJobRequest{Spec: tinySpec().JSON(), JobId: "queued"}); err != nil {
		t.Fatal(err)
	}
	other := tinySpec()
	other.Seed++
	_, err = jobs.SubmitJob(ctx, &dpcnnv1.SubmitJobRequest{Spec: other.JSON(), JobId: "queued"})
	code("SubmitJob(same id, other spec)", err, codes.AlreadyExists, "queued")
	dl, err := jobs.DownloadCheckpoint(ctx, &dpcnnv1.DownloadCheckpointRequest{JobId: "queued"})
	if err == nil {
		_, err = dl.Recv()
	}
	code("DownloadCheckpoint(before any)", err, codes.FailedPrecondition, "no checkpoint")
	_, err = jobs.ListJobs(ctx, &dpcnnv1.ListJobsRequest{PageToken: "x"})
	code("ListJobs(bad token)", err, codes.InvalidArgument, "page token")

	_, err = workers.Join(ctx, &dpcnnv1.JoinRequest{WorkerId: "w-1", Backend: "tpu"})
	code("Join(backend tpu)", err, codes.InvalidArgument, "tpu")
	_, err = workers.Join(ctx, &dpcnnv1.JoinRequest{WorkerId: "w/1", Backend: "cpu"})
	code("Join(bad id)", err, codes.InvalidArgument, "w/1")
	work, err := workers.Work(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := work.Send(&dpcnnv1.WorkerMessage{Kind: &dpcnnv1.WorkerMessage_Hello{Hello: &dpcnnv1.Hello{WorkerId: "w-1", Session: "forged"}}}); err != nil {
		t.Fatal(err)
	}
	_, err = work.Recv()
	code("Work(unknown session)", err, codes.FailedPrecondition, "session")
	fetch, err := workers.FetchDataset(ctx, &dpcnnv1.FetchDatasetRequest{Names: []string{"passwd"}})
	if err == nil {
		_, err = fetch.Recv()
	}
	code("FetchDataset(passwd)", err, codes.NotFound, "passwd")

	// A data set file arrives whole, with its sum.
	fetch, err = workers.FetchDataset(ctx, &dpcnnv1.FetchDatasetRequest{Names: []string{"t10k-labels-idx1-ubyte.gz"}})
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := download(t, fetch.Recv); info.Name != "t10k-labels-idx1-ubyte.gz" {
		t.Fatalf("fetched %v", info)
	}
}

// Jobs wait for workers, queue behind each other, and stop when cancelled,
// queued or running.
func TestServerCancelsJobs(t *testing.T) {
	cli := testEtcd(t)
	c := startCoordinator(t, cli, "c1", t.TempDir())
	waitLeading(t, c)
	jobs := dpcnnv1.NewJobServiceClient(c.conn)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()

	first, err := jobs.SubmitJob(ctx, &dpcnnv1.SubmitJobRequest{Spec: tinySpec().JSON()})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(first.Id, "job-") || first.State != dpcnnv1.JobState_JOB_STATE_PENDING {
		t.Fatalf("submitted %v", first)
	}
	second, err := jobs.SubmitJob(ctx, &dpcnnv1.SubmitJobRequest{Spec: tinySpec().JSON(), Backend: "cuda"})
	if err != nil {
		t.Fatal(err)
	}
	// With no worker, the first job waits and the second stays queued.
	deadline := time.Now().Add(hangGuard)
	for {
		j, err := jobs.GetJob(ctx, &dpcnnv1.GetJobRequest{JobId: first.Id})
		if err != nil {
			t.Fatal(err)
		}
		if j.State == dpcnnv1.JobState_JOB_STATE_WAITING_FOR_WORKERS {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("first job is %v, want waiting for workers", j.State)
		}
		time.Sleep(10 * time.Millisecond)
	}
	list, err := jobs.ListJobs(ctx, &dpcnnv1.ListJobsRequest{PageSize: 1})
	if err != nil || len(list.Jobs) != 1 || list.Jobs[0].Id != second.Id || list.Jobs[0].State != dpcnnv1.JobState_JOB_STATE_PENDING || list.NextPageToken == "" {
		t.Fatalf("ListJobs(page of 1) = %v, %v; want the second job, pending, and a next page", list, err)
	}
	list, err = jobs.ListJobs(ctx, &dpcnnv1.ListJobsRequest{PageSize: 1, PageToken: list.NextPageToken})
	if err != nil || len(list.Jobs) != 1 || list.Jobs[0].Id != first.Id || list.NextPageToken != "" {
		t.Fatalf("ListJobs(second page) = %v, %v; want the first job and no more", list, err)
	}

	for _, id := range []string{second.Id, first.Id} {
		j, err := jobs.CancelJob(ctx, &dpcnnv1.CancelJobRequest{JobId: id, Reason: "changed my mind"})
		if err != nil {
			t.Fatal(err)
		}
		if j.State != dpcnnv1.JobState_JOB_STATE_CANCELLED || j.Error != "changed my mind" {
			t.Fatalf("cancelled job %s is %v (%q)", id, j.State, j.Error)
		}
		evs := watchToEnd(t, jobs, id) // ends at once: the job is over
		sc := evs[len(evs)-1].GetStateChange()
		if sc.GetNewState() != dpcnnv1.JobState_JOB_STATE_CANCELLED || sc.Reason != "changed my mind" {
			t.Fatalf("job %s: last event %v", id, evs[len(evs)-1])
		}
		again, err := jobs.CancelJob(ctx, &dpcnnv1.CancelJobRequest{JobId: id, Reason: "again"})
		if err != nil || again.Error != "changed my mind" {
			t.Fatalf("cancelling an ended job: %v, %v; want it unchanged", again, err)
		}
	}
	rec, _, err := keyspace.GetJob(ctx, cli, "/test/", first.Id)
	if err != nil || rec.Status.State != dpcnnv1.JobState_JOB_STATE_CANCELLED {
		t.Fatalf("etcd status of the first job: %+v, %v", rec.Status, err)
	}
}

// A follower answers UNAVAILABLE naming the leader, and takes over when
// the leader stops.
func TestServerFollower(t *testing.T) {
	cli := testEtcd(t)
	dataDir := t.TempDir()
	leader := startCoordinator(t, cli, "c1", dataDir)
	waitLeading(t, leader)
	follower := startCoordinator(t, cli, "c2", dataDir)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()

	for _, c := range []*testCoordinator{leader, follower} {
		h, err := healthpb.NewHealthClient(c.conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health of %s: %v, %v", c.addr, h, err)
		}
	}
	h, err := healthpb.NewHealthClient(follower.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "dpcnn.v1.JobService"})
	if err != nil || h.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("follower's JobService health: %v, %v; want NOT_SERVING", h, err)
	}
	_, err = dpcnnv1.NewJobServiceClient(follower.conn).SubmitJob(ctx, &dpcnnv1.SubmitJobRequest{Spec: tinySpec().JSON()})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), leader.addr) || !strings.Contains(err.Error(), "c1") {
		t.Fatalf("SubmitJob on the follower: %v; want UNAVAILABLE naming c1 at %s", err, leader.addr)
	}
	// The leader also travels as a structured detail, for clients to follow.
	var redirect *dpcnnv1.LeaderResponse
	for _, d := range status.Convert(err).Details() {
		if l, ok := d.(*dpcnnv1.LeaderResponse); ok {
			redirect = l
		}
	}
	if redirect == nil || redirect.Address != leader.addr || redirect.CoordinatorId != "c1" || redirect.Term == 0 || redirect.AnsweredByLeader {
		t.Fatalf("SubmitJob on the follower: detail %v; want the leader c1 at %s", redirect, leader.addr)
	}
	_, err = dpcnnv1.NewWorkerServiceClient(follower.conn).Join(ctx, &dpcnnv1.JoinRequest{WorkerId: "w", Backend: "cpu"})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("Join on the follower: %v; want UNAVAILABLE", err)
	}
	l, err := dpcnnv1.NewClusterServiceClient(follower.conn).Leader(ctx, &dpcnnv1.LeaderRequest{})
	if err != nil || l.Address != leader.addr || l.CoordinatorId != "c1" || l.AnsweredByLeader {
		t.Fatalf("Leader on the follower = %v, %v", l, err)
	}
	first, err := dpcnnv1.NewClusterServiceClient(leader.conn).Leader(ctx, &dpcnnv1.LeaderRequest{})
	if err != nil || !first.AnsweredByLeader || first.Term != l.Term {
		t.Fatalf("Leader on the leader = %v, %v", first, err)
	}
	queued, err := dpcnnv1.NewJobServiceClient(leader.conn).SubmitJob(ctx, &dpcnnv1.SubmitJobRequest{Spec: tinySpec().JSON(), JobId: "kept"})
	if err != nil {
		t.Fatal(err)
	}

	// The leader drains and resigns: the follower leads at once, with the
	// job the old leader queued.
	leader.stop()
	waitLeading(t, follower)
	now, err := dpcnnv1.NewClusterServiceClient(follower.conn).Leader(ctx, &dpcnnv1.LeaderRequest{})
	if err != nil || !now.AnsweredByLeader || now.CoordinatorId != "c2" || now.Term <= first.Term {
		t.Fatalf("Leader after the takeover = %v, %v", now, err)
	}
	got, err := dpcnnv1.NewJobServiceClient(follower.conn).GetJob(ctx, &dpcnnv1.GetJobRequest{JobId: queued.Id})
	if err != nil || got.CreatedUnixNanos != queued.CreatedUnixNanos {
		t.Fatalf("the new leader's view of the queued job: %v, %v", got, err)
	}
	// The old leader's session was revoked, not left to expire.
	if resp, err := cli.Get(ctx, keyspace.CoordinatorKey("/test/", "c1")); err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("the stopped coordinator is still announced: %v, %v", resp, err)
	}
}

// testSessionTTL is the coordinators' leadership lease in tests: short,
// so failovers are quick, but long enough under -race that an embedded
// etcd slowed by the detector still answers a refresh within TTL/2 and the
// leader does not step down (the lease fence) in the middle of a test.
func testSessionTTL() time.Duration {
	if raceDetector {
		return 5 * time.Second
	}
	return time.Second
}
