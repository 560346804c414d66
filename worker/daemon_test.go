package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/model"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
	"github.com/dpcnn/dpcnn/tree"
)

// hangGuard bounds every wait of these tests: a broken worker fails the
// test instead of hanging it. It is not a timing: a healthy run takes a
// fraction of it.
const hangGuard = 20 * time.Second

// stubCoordinator is the coordinator's end of WorkerService, written by
// hand for the tests: it admits every worker, hands each Work stream that
// says a valid Hello to the test, and serves files with its fileServer.
type stubCoordinator struct {
	dpcnnv1.UnimplementedWorkerServiceServer
	name    string
	files   *fileServer         // nil: no data set to serve
	dataset []*dpcnnv1.FileInfo // the JoinResponse's data set

	mu        sync.Mutex
	joins     []*dpcnnv1.JoinRequest
	refuseOne bool // end the next stream at its Hello with FAILED_PRECONDITION

	streams chan *stubStream
}

func newStub(name string) *stubCoordinator {
	return &stubCoordinator{name: name, streams: make(chan *stubStream, 16)}
}

func (c *stubCoordinator) Join(_ context.Context, req *dpcnnv1.JoinRequest) (*dpcnnv1.JoinResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.joins = append(c.joins, req)
	return &dpcnnv1.JoinResponse{
		WorkerId:               req.GetWorkerId(),
		Session:                fmt.Sprintf("%s-s%d", c.name, len(c.joins)),
		CoordinatorId:          c.name,
		HeartbeatIntervalNanos: int64(20 * time.Millisecond),
		Dataset:                c.dataset,
	}, nil
}

func (c *stubCoordinator) joined() []*dpcnnv1.JoinRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*dpcnnv1.JoinRequest(nil), c.joins...)
}

func (c *stubCoordinator) FetchDataset(req *dpcnnv1.FetchDatasetRequest, s grpc.ServerStreamingServer[dpcnnv1.FileChunk]) error {
	if c.files == nil {
		return status.Error(codes.NotFound, "no data set")
	}
	return c.files.FetchDataset(req, s)
}

// beat is a heartbeat with the number of results and failures the stream
// had carried before it: the stream keeps the worker's order, so a beat
// after n answers was sent after them.
type beat struct {
	*dpcnnv1.Heartbeat
	after int
}

// stubStream is one Work stream as the coordinator sees it.
type stubStream struct {
	hello *dpcnnv1.Hello
	s     grpc.BidiStreamingServer[dpcnnv1.WorkerMessage, dpcnnv1.CoordinatorMessage]
	in    chan *dpcnnv1.WorkerMessage // results and failures
	beats chan beat
	done  chan struct{} // the worker's side ended
	err   error         // how, once done is closed (nil: the worker closed it)
}

func (c *stubCoordinator) Work(s grpc.BidiStreamingServer[dpcnnv1.WorkerMessage, dpcnnv1.CoordinatorMessage]) error {
	first, err := s.Recv()
	if err != nil {
		return err
	}
	hello := first.GetHello()
	c.mu.Lock()
	known := false
	for i := range c.joins {
		known = known || hello.GetSession() == fmt.Sprintf("%s-s%d", c.name, i+1)
	}
	refuse := c.refuseOne
	c.refuseOne = false
	c.mu.Unlock()
	if !known || refuse {
		return status.Errorf(codes.FailedPrecondition, "unknown session %q", hello.GetSession())
	}
	ss := &stubStream{hello: hello, s: s, in: make(chan *dpcnnv1.WorkerMessage, 64),
		beats: make(chan beat, 1024), done: make(chan struct{})}
	c.streams <- ss
	defer close(ss.done)
	answers := 0
	for {
		m, err := s.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				ss.err = err
			}
			return nil
		}
		if hb := m.GetHeartbeat(); hb != nil {
			select {
			case ss.beats <- beat{hb, answers}:
			default:
			}
			continue
		}
		answers++
		ss.in <- m
	}
}

func (ss *stubStream) send(t *testing.T, m *dpcnnv1.CoordinatorMessage) {
	t.Helper()
	if err := ss.s.Send(m); err != nil {
		t.Fatalf("send to the worker: %v", err)
	}
}

func (ss *stubStream) assign(t *testing.T, a *dpcnnv1.Assignment) {
	t.Helper()
	ss.send(t, &dpcnnv1.CoordinatorMessage{Kind: &dpcnnv1.CoordinatorMessage_Assignment{Assignment: a}})
}

// next returns the worker's next result or failure.
func (ss *stubStream) next(t *testing.T) *dpcnnv1.WorkerMessage {
	t.Helper()
	select {
	case m := <-ss.in:
		return m
	case <-ss.done:
		select {
		case m := <-ss.in: // sent before the stream ended
			return m
		default:
		}
		t.Fatalf("the worker's stream ended (%v) before its answer", ss.err)
	case <-time.After(hangGuard):
		t.Fatal("no answer from the worker")
	}
	return nil
}

// failure returns the worker's next message, which must be a failure of
// assignment id that contains want.
func (ss *stubStream) failure(t *testing.T, id uint64, want string) {
	t.Helper()
	m := ss.next(t)
	f := m.GetFailure()
	if f == nil || f.GetAssignmentId() != id || !strings.Contains(f.GetMessage(), want) {
		t.Fatalf("answer %v, want a failure of assignment %d containing %q", m, id, want)
	}
}

// serveStub serves c at addr ("127.0.0.1:0" for a free port) and returns
// the address and a stop function (also run at the end of the test).
func serveStub(t *testing.T, c *stubCoordinator, addr string) (string, func()) {
	t.Helper()
	var lis net.Listener
	var err error
	for range 50 { // a port just freed may take a moment to bind again
		if lis, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(dpcnnv1.MaxMessageSize))
	dpcnnv1.RegisterWorkerServiceServer(gs, c)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	return lis.Addr().String(), gs.Stop
}

func waitStream(t *testing.T, c *stubCoordinator) *stubStream {
	t.Helper()
	select {
	case ss := <-c.streams:
		return ss
	case <-time.After(hangGuard):
		t.Fatalf("the worker opened no Work stream at %s", c.name)
	}
	return nil
}

// startWorker runs a worker daemon until the test ends; stop ends it and
// returns Run's result.
func startWorker(t *testing.T, cfg DaemonConfig) (stop func() error) {
	t.Helper()
	cancel, wait := runWorker(t, cfg)
	return func() error {
		cancel()
		return wait()
	}
}

// runWorker runs a worker daemon until the test ends; cancel ends its
// context, and wait waits for Run's result.
func runWorker(t *testing.T, cfg DaemonConfig) (cancel func(), wait func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	wait = sync.OnceValue(func() error {
		select {
		case err := <-done:
			return err
		case <-time.After(hangGuard):
			return fmt.Errorf("the worker did not stop")
		}
	})
	t.Cleanup(func() {
		cancel()
		wait()
	})
	return cancel, wait
}

// tinySets are a training set of 32 and a test set of 20 MNIST-shaped
// images.
func tinySets(t *testing.T) (train, test *dataset.Set) {
	t.Helper()
	mk := func(name string, n, salt int) *dataset.Set {
		im := &dataset.Images{N: n, Rows: 28, Cols: 28, Pixels: make([]uint8, n*28*28)}
		labels := make([]uint8, n)
		for i := range n {
			labels[i] = uint8((i * 7) % 10)
			for p := range 28 * 28 {
				if (p/28+p%28+i+salt)%(3+int(labels[i])) == 0 {
					im.Pixels[i*784+p] = uint8(40 + 20*int(labels[i]))
				}
			}
		}
		s, err := dataset.NewSet(name, im, labels, dataset.MNISTClasses)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	return mk("train", 32, 0), mk("test", 20, 5)
}

// testSpec is a small job: LeNet, steps of 8 images in 4 micro-batches.
func testSpec() job.Spec {
	return job.Spec{Network: "lenet", Batch: 8, MicroBatch: 2, Steps: 3, Seed: 11}.WithDefaults()
}

// initialParams returns the job's initial parameters as a flat vector.
func initialParams(t *testing.T, spec job.Spec) []float32 {
	t.Helper()
	ns, err := spec.Model()
	if err != nil {
		t.Fatal(err)
	}
	net, err := model.New[float32](ns, kernels.NewReference[float32](), 1)
	if err != nil {
		t.Fatal(err)
	}
	net.InitParams(spec.Seed)
	return slices.Clone(net.FlatValues())
}

// direct computes what a worker must return for a subtree, in this process.
func direct(t *testing.T, spec job.Spec, train *dataset.Set, params []float32, epoch, step int64, indices []int32) (grad []float32, losses []float64, correct int) {
	t.Helper()
	b := kernels.NewCPU(1)
	defer b.Close()
	c, err := NewComputer(spec, b, train, 8)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetParams(params); err != nil {
		t.Fatal(err)
	}
	m := spec.MicroBatch
	var mbs []MicroBatch
	var leaves [][]float32
	for i := 0; i < len(indices); i += m {
		mbs = append(mbs, MicroBatch{Epoch: epoch, Step: step, Indices: indices[i : i+m]})
		leaves = append(leaves, make([]float32, c.ParamCount()))
	}
	grad, losses, correct, err = tree.ComputeSubtree(context.Background(), c, mbs, leaves, make([]float64, len(mbs)))
	if err != nil {
		t.Fatal(err)
	}
	return grad, losses, correct
}

// checkGradient checks a worker's answer against the direct computation,
// bit for bit.
func checkGradient(t *testing.T, m *dpcnnv1.WorkerMessage, id uint64, first, count uint32, grad []float32, losses []float64, correct int) {
	t.Helper()
	r := m.GetResult()
	g := r.GetTrain()
	if r.GetAssignmentId() != id || g == nil || g.GetFirstLeaf() != first || g.GetLeafCount() != count {
		t.Fatalf("answer %v, want the gradient of leaves [%d, %d) of assignment %d", m, first, first+count, id)
	}
	got := make([]float32, len(grad))
	if err := g.GetGradientSum().DecodeInto(got); err != nil {
		t.Fatal(err)
	}
	for i := range grad {
		if math.Float32bits(got[i]) != math.Float32bits(grad[i]) {
			t.Fatalf("gradient[%d] = %v, want %v (bit for bit)", i, got[i], grad[i])
		}
	}
	if len(g.GetLeafLossSums()) != len(losses) {
		t.Fatalf("%d leaf losses, want %d", len(g.GetLeafLossSums()), len(losses))
	}
	for i, l := range losses {
		if g.GetLeafLossSums()[i] != l {
			t.Errorf("leaf loss %d = %v, want %v", i, g.GetLeafLossSums()[i], l)
		}
	}
	if g.GetCorrect() != int64(correct) || r.GetComputeNanos() <= 0 {
		t.Errorf("correct %d, compute time %d ns; want %d and a positive time", g.GetCorrect(), r.GetComputeNanos(), correct)
	}
}

func trainAssignment(id uint64, jobID string, spec []byte, version uint64, params []float32, epoch, step int64, sub *dpcnnv1.Subtree) *dpcnnv1.Assignment {
	a := &dpcnnv1.Assignment{
		AssignmentId: id, JobId: jobID, JobSpecJson: spec, Epoch: epoch, Step: step, ParamsVersion: version,
		Work: &dpcnnv1.Assignment_Train{Train: &dpcnnv1.TrainWork{Subtree: sub}},
	}
	if params != nil {
		a.Params = dpcnnv1.NewTensor("params", []int{len(params)}, params)
	}
	return a
}

func subtree(first, count uint32, indices ...int32) *dpcnnv1.Subtree {
	return &dpcnnv1.Subtree{FirstLeaf: first, LeafCount: count, Indices: indices}
}

// testWorkerConfig is a worker on one CPU thread with the tiny sets.
func testWorkerConfig(t *testing.T, id, coordinator string, train, test *dataset.Set) DaemonConfig {
	b := kernels.NewCPU(1)
	t.Cleanup(b.Close)
	return DaemonConfig{
		ID: id, Coordinator: coordinator, Backend: b, Version: "test",
		Train: train, Test: test, DatasetFiles: []dataset.File{datasetFile("in-memory", []byte("sets"))},
		ImagesPerSec: 123, EvalBatch: 8,
		RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond,
	}
}

// TestDaemonComputesAssignments drives a worker from the coordinator's end
// of a real gRPC connection: the gradients it returns are bit for bit
// those of ComputeSubtree in this process, evaluations count what
// Computer.Evaluate counts, parameters are kept between versions,
// heartbeats come, and a cancelled context drains the worker cleanly.
func TestDaemonComputesAssignments(t *testing.T) {
	train, test := tinySets(t)
	stub := newStub("c1")
	addr, _ := serveStub(t, stub, "127.0.0.1:0")
	stop := startWorker(t, testWorkerConfig(t, "w-1", addr, train, test))

	ss := waitStream(t, stub)
	joins := stub.joined()
	if len(joins) != 1 {
		t.Fatalf("%d joins, want 1", len(joins))
	}
	j := joins[0]
	if j.GetWorkerId() != "w-1" || j.GetBackend() != "cpu" || j.GetCores() != 1 || j.GetImagesPerSec() != 123 ||
		j.GetVersion() != "test" || len(j.GetDataset()) != 1 || j.GetDataset()[0].GetName() != "in-memory" {
		t.Errorf("join request %v", j)
	}
	if ss.hello.GetWorkerId() != "w-1" || ss.hello.GetSession() != "c1-s1" {
		t.Errorf("hello %v, want w-1 with session c1-s1", ss.hello)
	}

	spec := testSpec()
	p0 := initialParams(t, spec)
	idx := []int32{3, 17, 0, 31, 8, 8, 25, 12}
	// Two subtrees of a step, one assignment each, the second with the
	// spec and parameters held.
	ss.assign(t, trainAssignment(1, "job-a", spec.JSON(), 0, p0, 0, 0, subtree(0, 2, idx[:4]...)))
	ss.assign(t, trainAssignment(2, "job-a", nil, 0, nil, 0, 0, subtree(2, 2, idx[4:]...)))
	for k, id := range []uint64{1, 2} {
		grad, losses, correct := direct(t, spec, train, p0, 0, 0, idx[4*k:4*k+4])
		checkGradient(t, ss.next(t), id, uint32(2*k), 2, grad, losses, correct)
	}

	// An evaluation with the parameters held.
	ss.assign(t, &dpcnnv1.Assignment{AssignmentId: 3, JobId: "job-a", ParamsVersion: 0,
		Work: &dpcnnv1.Assignment_Eval{Eval: &dpcnnv1.EvalWork{Begin: 3, End: 20}}})
	m := ss.next(t)
	b := kernels.NewCPU(1)
	defer b.Close()
	c, _ := NewComputer(spec, b, train, 8)
	c.SetParams(p0)
	want, _ := c.Evaluate(test, 3, 20)
	if e := m.GetResult().GetEval(); m.GetResult().GetAssignmentId() != 3 || e.GetBegin() != 3 || e.GetEnd() != 20 || e.GetCorrect() != int64(want) {
		t.Errorf("answer %v, want %d correct of [3, 20)", m, want)
	}

	// New parameters, a later step and epoch, the whole tree at once.
	p1 := append([]float32(nil), p0...)
	for i := range p1 {
		p1[i] *= 0.5
	}
	ss.assign(t, trainAssignment(4, "job-a", nil, 1, p1, 1, 1, subtree(0, 4, idx...)))
	grad, losses, correct := direct(t, spec, train, p1, 1, 1, idx)
	checkGradient(t, ss.next(t), 4, 0, 4, grad, losses, correct)

	// Heartbeats sent before the last answer may list anything; one sent
	// after it lists no assignment but the last, which ends just after its
	// answer is sent.
	for idle := false; !idle; {
		select {
		case hb := <-ss.beats:
			if hb.after < 4 {
				continue
			}
			if busy := hb.GetBusyAssignmentIds(); len(busy) > 1 || len(busy) == 1 && busy[0] != 4 {
				t.Errorf("heartbeat %v after the last answer, want at most assignment 4", hb.Heartbeat)
			}
			idle = true
		case <-time.After(hangGuard):
			t.Fatal("no heartbeat after the last answer")
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("Run = %v after its context ended, want nil", err)
	}
	select {
	case <-ss.done:
		if ss.err != nil {
			t.Errorf("the worker ended its stream with %v, want a clean close", ss.err)
		}
	case <-time.After(hangGuard):
		t.Fatal("the worker's stream did not end")
	}
}

// TestDaemonAnswersBadAssignments sends assignments that cannot be done:
// each is answered with a WorkFailure naming the problem, and the worker
// goes on working.
func TestDaemonAnswersBadAssignments(t *testing.T) {
	train, test := tinySets(t)
	stub := newStub("c1")
	addr, _ := serveStub(t, stub, "127.0.0.1:0")
	startWorker(t, testWorkerConfig(t, "w-bad", addr, train, test))
	ss := waitStream(t, stub)

	spec := testSpec()
	p0 := initialParams(t, spec)
	idx := []int32{1, 2, 3, 4}
	ss.assign(t, trainAssignment(1, "nope", nil, 0, nil, 0, 0, subtree(0, 2, idx...)))
	ss.failure(t, 1, `unknown job "nope"`)

	ss.assign(t, trainAssignment(2, "job-b", []byte(`{"network": "nosuch"`), 0, p0, 0, 0, subtree(0, 2, idx...)))
	ss.failure(t, 2, `job "job-b"`)

	ss.assign(t, trainAssignment(3, "job-b", spec.JSON(), 0, p0[:len(p0)-1], 0, 0, subtree(0, 2, idx...)))
	ss.failure(t, 3, "parameters of version 0")

	ss.assign(t, trainAssignment(4, "job-b", nil, 0, nil, 0, 0, subtree(0, 2, idx...)))
	ss.failure(t, 4, "no parameters received")

	ss.assign(t, trainAssignment(5, "job-b", nil, 0, p0, 0, 0, subtree(1, 2, idx...)))
	ss.failure(t, 5, "not a node")

	ss.assign(t, trainAssignment(6, "job-b", nil, 0, nil, 0, 0, subtree(0, 2, 1, 2, 3)))
	ss.failure(t, 6, "3 sample indices, want 2 leaves × 2")

	ss.assign(t, trainAssignment(7, "job-b", nil, 0, nil, 0, 0, subtree(0, 2, 1, 2, 32, 4)))
	ss.failure(t, 7, "index 32")

	ss.assign(t, trainAssignment(8, "job-b", nil, 1, nil, 0, 1, subtree(0, 2, idx...)))
	ss.failure(t, 8, "version 1 wanted, version 0 held")

	ss.assign(t, &dpcnnv1.Assignment{AssignmentId: 9, JobId: "job-b", Work: &dpcnnv1.Assignment_Eval{Eval: &dpcnnv1.EvalWork{Begin: 5, End: 21}}})
	ss.failure(t, 9, "evaluate test samples [5, 21) of 20")

	ss.assign(t, &dpcnnv1.Assignment{AssignmentId: 10, JobId: "job-b"})
	ss.failure(t, 10, "no work")

	ss.assign(t, trainAssignment(11, "job-b", nil, 0, nil, 0, 0, nil))
	ss.failure(t, 11, "no subtree")

	// The parameters of assignment 5 were taken although its work failed:
	// this one needs none.
	ss.assign(t, trainAssignment(12, "job-b", nil, 0, nil, 0, 0, subtree(2, 2, idx...)))
	grad, losses, correct := direct(t, spec, train, p0, 0, 0, idx)
	checkGradient(t, ss.next(t), 12, 2, 2, grad, losses, correct)

	// Work withdrawn with the job released: the next assignment of the
	// job must bring its spec again.
	ss.send(t, &dpcnnv1.CoordinatorMessage{Kind: &dpcnnv1.CoordinatorMessage_Cancel{Cancel: &dpcnnv1.CancelWork{JobId: "job-b", ReleaseJob: true}}})
	ss.assign(t, trainAssignment(13, "job-b", nil, 0, nil, 0, 0, subtree(0, 2, idx...)))
	ss.failure(t, 13, `unknown job "job-b"`)
}

// TestDaemonReconnects stops the coordinator under a working worker and
// starts another on the same port: the worker joins it and works again.
func TestDaemonReconnects(t *testing.T) {
	train, test := tinySets(t)
	first := newStub("c1")
	addr, stopFirst := serveStub(t, first, "127.0.0.1:0")
	stop := startWorker(t, testWorkerConfig(t, "w-re", addr, train, test))
	waitStream(t, first)
	stopFirst()

	second := newStub("c2")
	time.Sleep(50 * time.Millisecond) // let the worker find nobody there, at least once
	serveStub(t, second, addr)
	ss := waitStream(t, second)
	if ss.hello.GetSession() != "c2-s1" {
		t.Errorf("hello %v, want session c2-s1", ss.hello)
	}
	spec := testSpec()
	p0 := initialParams(t, spec)
	idx := []int32{5, 6, 7, 8}
	ss.assign(t, trainAssignment(1, "job-c", spec.JSON(), 0, p0, 0, 0, subtree(0, 2, idx...)))
	grad, losses, correct := direct(t, spec, train, p0, 0, 0, idx)
	checkGradient(t, ss.next(t), 1, 0, 2, grad, losses, correct)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestDaemonRejoinsRefusedSession has the coordinator refuse the worker's
// first session, as a new leader does: the worker joins again.
func TestDaemonRejoinsRefusedSession(t *testing.T) {
	train, test := tinySets(t)
	stub := newStub("c1")
	stub.refuseOne = true
	addr, _ := serveStub(t, stub, "127.0.0.1:0")
	startWorker(t, testWorkerConfig(t, "w-ref", addr, train, test))
	ss := waitStream(t, stub)
	if n := len(stub.joined()); n != 2 || ss.hello.GetSession() != "c1-s2" {
		t.Errorf("%d joins and session %q, want 2 and c1-s2", n, ss.hello.GetSession())
	}
}

// TestDaemonFetchesDataset runs a worker with no data set of its own: it
// fetches the coordinator's files into its cache, joins again with them,
// and computes on them.
func TestDaemonFetchesDataset(t *testing.T) {
	files := tinyMNIST()
	stub := newStub("c1")
	stub.files = &fileServer{files: files, chunk: 300}
	stub.dataset = infos(files)
	addr, _ := serveStub(t, stub, "127.0.0.1:0")
	cfg := testWorkerConfig(t, "w-fetch", addr, nil, nil)
	cfg.DatasetFiles = nil
	cfg.CacheDir = t.TempDir()
	startWorker(t, cfg)
	ss := waitStream(t, stub)

	joins := stub.joined()
	if len(joins) != 2 || len(joins[0].GetDataset()) != 0 || !sameFiles(joins[1].GetDataset(), stub.dataset) {
		t.Fatalf("joins %v, want one without files, then one with the coordinator's", joins)
	}
	spec := testSpec()
	p0 := initialParams(t, spec)
	idx := []int32{0, 11, 5, 5}
	ss.assign(t, trainAssignment(1, "job-f", spec.JSON(), 0, p0, 0, 0, subtree(2, 2, idx...)))
	paths, err := DatasetCache{Dir: cfg.CacheDir}.Ensure(t.Context(), nil, stub.dataset)
	if err != nil {
		t.Fatal(err)
	}
	train, _, err := LoadDatasetFiles(paths)
	if err != nil {
		t.Fatal(err)
	}
	grad, losses, correct := direct(t, spec, train, p0, 0, 0, idx)
	checkGradient(t, ss.next(t), 1, 2, 2, grad, losses, correct)
}

func TestDaemonConfigErrors(t *testing.T) {
	train, test := tinySets(t)
	cases := []struct {
		cfg  DaemonConfig
		want string
	}{
		{DaemonConfig{ID: "", Coordinator: "x:1"}, "1 to 63 characters"},
		{DaemonConfig{ID: "a/b", Coordinator: "x:1"}, "[a-zA-Z0-9._-]"},
		{DaemonConfig{ID: "w"}, "no coordinator address and no etcd"},
		{DaemonConfig{ID: "w", Coordinator: "x:1", Train: train}, "both a training and a test set"},
		{DaemonConfig{ID: "w", Coordinator: "x:1", BackendName: "gpu", Train: train, Test: test}, `unknown backend "gpu"`},
		{DaemonConfig{ID: "w", Coordinator: "x:1", DataDir: "/nonexistent", ImagesPerSec: 1}, "/nonexistent"},
	}
	for _, c := range cases {
		err := Run(t.Context(), c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Run(%+v) = %v, want an error containing %q", c.cfg, err, c.want)
		}
	}
}

func TestMeasureSpeed(t *testing.T) {
	b := kernels.NewCPU(1)
	defer b.Close()
	speed, err := MeasureSpeed(b)
	if err != nil {
		t.Fatal(err)
	}
	if !(speed > 0) || math.IsInf(speed, 0) {
		t.Errorf("MeasureSpeed = %v images/s", speed)
	}
}

// gatedBackend holds every softmax cross-entropy (one per training
// micro-batch) until the test releases it, so a test knows what the worker
// is doing when it acts.
type gatedBackend struct {
	kernels.Backend[float32]
	started chan struct{}
	release chan struct{}
}

func newGatedBackend(t *testing.T) *gatedBackend {
	b := kernels.NewCPU(1)
	t.Cleanup(b.Close)
	return &gatedBackend{Backend: b, started: make(chan struct{}), release: make(chan struct{})}
}

func (g *gatedBackend) SoftmaxCrossEntropy(n, classes int, logits []float32, labels []int32, scale float32, probs, dlogits []float32) (float64, int) {
	g.started <- struct{}{}
	<-g.release
	return g.Backend.SoftmaxCrossEntropy(n, classes, logits, labels, scale, probs, dlogits)
}

// await waits for the worker to reach the gate.
func (g *gatedBackend) await(t *testing.T) {
	t.Helper()
	select {
	case <-g.started:
	case <-time.After(hangGuard):
		t.Fatal("the worker never started computing")
	}
}

// TestDaemonDrains stops a worker in the middle of the first of two
// assignments: it finishes and sends the subtree under way, leaves the
// other, closes its stream cleanly and returns nil.
func TestDaemonDrains(t *testing.T) {
	train, test := tinySets(t)
	stub := newStub("c1")
	addr, _ := serveStub(t, stub, "127.0.0.1:0")
	cfg := testWorkerConfig(t, "w-drain", addr, train, test)
	gate := newGatedBackend(t)
	cfg.Backend = gate
	cancel, wait := runWorker(t, cfg)
	ss := waitStream(t, stub)

	spec := testSpec()
	p0 := initialParams(t, spec)
	ss.assign(t, trainAssignment(1, "job-d", spec.JSON(), 0, p0, 0, 0, subtree(0, 1, 4, 5)))
	ss.assign(t, trainAssignment(2, "job-d", nil, 0, nil, 0, 0, subtree(1, 1, 6, 7)))
	gate.await(t)
	cancel()
	gate.release <- struct{}{}
	grad, losses, correct := direct(t, spec, train, p0, 0, 0, []int32{4, 5})
	checkGradient(t, ss.next(t), 1, 0, 1, grad, losses, correct)
	if err := wait(); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	<-ss.done
	if ss.err != nil || len(ss.in) != 0 {
		t.Errorf("stream ended with %v and %d more answers; want a clean close after one", ss.err, len(ss.in))
	}
}

// TestDaemonCancelsWork withdraws the assignment the worker computes: it
// stops between micro-batches, answers nothing for it, and goes on with
// the next one.
func TestDaemonCancelsWork(t *testing.T) {
	train, test := tinySets(t)
	stub := newStub("c1")
	addr, _ := serveStub(t, stub, "127.0.0.1:0")
	cfg := testWorkerConfig(t, "w-cancel", addr, train, test)
	gate := newGatedBackend(t)
	cfg.Backend = gate
	startWorker(t, cfg)
	ss := waitStream(t, stub)

	spec := testSpec()
	p0 := initialParams(t, spec)
	ss.assign(t, trainAssignment(1, "job-x", spec.JSON(), 0, p0, 0, 0, subtree(0, 2, 1, 2, 3, 4)))
	gate.await(t) // in the first of its two micro-batches
	ss.send(t, &dpcnnv1.CoordinatorMessage{Kind: &dpcnnv1.CoordinatorMessage_Cancel{Cancel: &dpcnnv1.CancelWork{JobId: "job-x", AssignmentIds: []uint64{1}}}})
	ss.assign(t, trainAssignment(2, "job-x", nil, 0, nil, 0, 0, subtree(2, 1, 9, 10)))
	// A heartbeat that knows assignment 2 was made after the cancel was
	// taken in: it must not list assignment 1.
	for {
		select {
		case hb := <-ss.beats:
			busy := hb.GetBusyAssignmentIds()
			if !slices.Contains(busy, 2) {
				continue
			}
			if slices.Contains(busy, 1) {
				t.Fatalf("heartbeat lists %v after assignment 1 was cancelled", busy)
			}
		case <-time.After(hangGuard):
			t.Fatal("no heartbeat listing assignment 2")
		}
		break
	}
	gate.release <- struct{}{} // assignment 1 stops after this micro-batch
	gate.await(t)              // assignment 2
	gate.release <- struct{}{}
	grad, losses, correct := direct(t, spec, train, p0, 0, 0, []int32{9, 10})
	checkGradient(t, ss.next(t), 2, 2, 1, grad, losses, correct)
}
