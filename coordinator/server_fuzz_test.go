package coordinator

import (
	"context"
	"errors"
	"io"
	"math"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
	"github.com/dpcnn/dpcnn/secure"
)

// The RPCs FuzzServerRPC calls, by the first byte of an input.
const (
	fuzzSubmitJob = iota
	fuzzGetJob
	fuzzCancelJob
	fuzzListJobs
	fuzzWatchJob
	fuzzListJobEvents
	fuzzDownloadCheckpoint
	fuzzDownloadModel
	fuzzJoin
	fuzzFetchDataset
	fuzzListWorkers
	fuzzWorkFirst     // a WorkerMessage as the first message of a Work stream
	fuzzWorkInSession // a WorkerMessage after a valid Hello
	fuzzWorkAimed     // a WorkerMessage aimed at a real assignment: its ids are set to it
	fuzzMethods
)

// FuzzServerRPC sends arbitrary requests to every RPC of a leading
// coordinator over real gRPC with mutual TLS and bearer tokens, as a
// cluster runs, with a job running and the fuzzer as its worker: each
// answer must be one of the contract's refusals (never INTERNAL or UNKNOWN,
// never a panic), and the coordinator must still answer afterwards. Inputs
// that are no valid request travel as they are, malformed wire bytes, which
// gRPC itself refuses (INTERNAL, "unmarshal"); with the high bit of the
// method byte set, the input comes from a caller with neither certificate
// nor token, who must be refused (UNAUTHENTICATED) whatever it sends. The
// seed corpus runs in the normal suite;
// `go test -fuzz FuzzServerRPC -fuzzminimizetime 10x ./coordinator` explores
// further (the stream inputs take a few hundred milliseconds each, so the
// default minimization of every new input takes minutes).
func FuzzServerRPC(f *testing.F) {
	add := func(method byte, m proto.Message) {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(method, b)
	}
	add(fuzzSubmitJob, &dpcnnv1.SubmitJobRequest{Spec: []byte(`{"network": "simple", "batch": 50, "microBatch": 7}`)})
	add(fuzzSubmitJob, &dpcnnv1.SubmitJobRequest{Spec: []byte("network: [unclosed")})
	add(fuzzSubmitJob, &dpcnnv1.SubmitJobRequest{Spec: tinySpec().JSON(), JobId: "x/../y"})
	add(fuzzGetJob, &dpcnnv1.GetJobRequest{JobId: "fuzz"})
	add(fuzzGetJob, &dpcnnv1.GetJobRequest{JobId: "\x00 no such id"})
	add(fuzzCancelJob, &dpcnnv1.CancelJobRequest{JobId: "nope"})
	add(fuzzListJobs, &dpcnnv1.ListJobsRequest{PageToken: "!!", PageSize: -5})
	add(fuzzWatchJob, &dpcnnv1.WatchJobRequest{JobId: "fuzz", AfterSequence: math.MaxInt64})
	add(fuzzListJobEvents, &dpcnnv1.ListJobEventsRequest{JobId: "fuzz", PageSize: math.MaxInt32})
	add(fuzzDownloadCheckpoint, &dpcnnv1.DownloadCheckpointRequest{JobId: "../../etc"})
	add(fuzzDownloadModel, &dpcnnv1.DownloadModelRequest{JobId: "fuzz"})
	add(fuzzJoin, &dpcnnv1.JoinRequest{WorkerId: "w 1", Backend: "cpu", ImagesPerSec: math.Inf(1)})
	add(fuzzJoin, &dpcnnv1.JoinRequest{WorkerId: "w-2", Backend: "cpu", Cores: -3, ImagesPerSec: math.NaN()})
	add(fuzzFetchDataset, &dpcnnv1.FetchDatasetRequest{Names: []string{"../../../etc/passwd", ""}})
	add(fuzzListWorkers, &dpcnnv1.ListWorkersRequest{})
	add(fuzzWorkFirst, &dpcnnv1.WorkerMessage{Kind: &dpcnnv1.WorkerMessage_Heartbeat{Heartbeat: &dpcnnv1.Heartbeat{}}})
	add(fuzzWorkInSession, &dpcnnv1.WorkerMessage{Kind: &dpcnnv1.WorkerMessage_Result{Result: &dpcnnv1.WorkResult{AssignmentId: 12345, JobId: "fuzz"}}})
	add(fuzzWorkInSession, &dpcnnv1.WorkerMessage{Kind: &dpcnnv1.WorkerMessage_Hello{Hello: &dpcnnv1.Hello{WorkerId: "other", Session: "forged"}}})
	add(fuzzWorkAimed, &dpcnnv1.WorkerMessage{Kind: &dpcnnv1.WorkerMessage_Result{Result: &dpcnnv1.WorkResult{
		Outcome: &dpcnnv1.WorkResult_Train{Train: &dpcnnv1.SubtreeGradient{
			FirstLeaf: 0, LeafCount: 2, LeafLossSums: []float64{1, math.Inf(1)},
			GradientSum: &dpcnnv1.Tensor{Shape: []int64{3}},
		}}}}})
	add(fuzzWorkAimed, &dpcnnv1.WorkerMessage{Kind: &dpcnnv1.WorkerMessage_Result{Result: &dpcnnv1.WorkResult{
		Outcome: &dpcnnv1.WorkResult_Eval{Eval: &dpcnnv1.EvalCount{Begin: -1, End: 1 << 40, Correct: 7}}}}})
	add(fuzzWorkAimed, &dpcnnv1.WorkerMessage{Kind: &dpcnnv1.WorkerMessage_Failure{Failure: &dpcnnv1.WorkFailure{Message: "out of memory"}}})
	// Malformed wire bytes: a truncated field, a wrong wire type, a length
	// past the end.
	f.Add(byte(fuzzSubmitJob), []byte{0x0a, 0x05, 'a'})
	f.Add(byte(fuzzGetJob), []byte{0x0d, 0xff})
	f.Add(byte(fuzzWorkInSession), []byte{0x12, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add(byte(fuzzFetchDataset), []byte{0xff})
	// Callers without credentials.
	f.Add(byte(fuzzAnonymous|fuzzSubmitJob), mustMarshal(f, &dpcnnv1.SubmitJobRequest{Spec: tinySpec().JSON()}))
	f.Add(byte(fuzzAnonymous|fuzzCancelJob), mustMarshal(f, &dpcnnv1.CancelJobRequest{JobId: "fuzz"}))
	f.Add(byte(fuzzAnonymous|fuzzJoin), mustMarshal(f, &dpcnnv1.JoinRequest{WorkerId: "w-3", Backend: "cpu"}))
	f.Add(byte(fuzzAnonymous|fuzzWorkFirst), []byte{0x0a, 0x00})

	h := startFuzzCoordinator(f)
	f.Fuzz(func(t *testing.T, method byte, payload []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		anonymous := method&fuzzAnonymous != 0
		m := method &^ fuzzAnonymous % fuzzMethods
		var err error
		switch {
		case anonymous:
			err = h.callRaw(ctx, h.anonymous, m, payload)
		case !h.decodes(m, payload):
			err = h.callRaw(ctx, h.conn, m, payload)
		default:
			err = h.call(ctx, t, m, payload)
		}
		code := status.Code(err)
		malformed := code == codes.Internal && strings.Contains(status.Convert(err).Message(), "unmarshal")
		switch {
		case anonymous && code != codes.Unauthenticated && !(malformed && !h.decodes(m, payload)):
			t.Fatalf("method %d without credentials: %v; want UNAUTHENTICATED", m, err)
		case malformed && h.decodes(m, payload):
			t.Fatalf("method %d: a valid request was taken for malformed: %v", m, err)
		case code == codes.Internal && !malformed, code == codes.Unknown, code == codes.Unimplemented, code == codes.DataLoss:
			t.Fatalf("method %d: %v", m, err)
		}
		if _, err := h.cluster.Leader(ctx, &dpcnnv1.LeaderRequest{}); err != nil {
			t.Fatalf("the coordinator stopped answering after method %d: %v", m, err)
		}
	})
}

// fuzzAnonymous, set in an input's method byte, sends it without
// credentials.
const fuzzAnonymous = 0x80

func mustMarshal(f *testing.F, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// rpcFuzzHarness is a leading coordinator with a job that waits for
// workers, and two connections to it: conn with a worker's certificate and
// cnnctl's token, anonymous with neither.
type rpcFuzzHarness struct {
	conn, anonymous *grpc.ClientConn
	jobs            dpcnnv1.JobServiceClient
	workers         dpcnnv1.WorkerServiceClient
	cluster         dpcnnv1.ClusterServiceClient
}

func startFuzzCoordinator(f *testing.F) *rpcFuzzHarness {
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	cli := dialTestEtcd(f, startTestEtcd(f))
	backend := kernels.NewCPU(1)
	f.Cleanup(backend.Close)
	certs := f.TempDir()
	set, err := secure.NewDevelopmentSet(nil, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	if err := set.Write(certs, false); err != nil {
		f.Fatal(err)
	}
	file := func(name string) string { return filepath.Join(certs, name) }
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	addr := lis.Addr().String()
	creds, tokens, err := secure.Server{
		Files:     secure.Files{CA: file(secure.FileCA), Cert: file(secure.FileCoordinatorCert), Key: file(secure.FileCoordinatorKey)},
		TokenFile: file(secure.FileToken),
	}.Load(addr)
	if err != nil {
		f.Fatal(err)
	}
	train, test := loadMNIST(f)
	srv, err := NewServer(ServerConfig{
		ID: "fuzz", Etcd: cli, Prefix: "/fuzz/", DataDir: f.TempDir(), Train: train, Test: test,
		SessionTTL: testSessionTTL(), HeartbeatInterval: 200 * time.Millisecond, HeartbeatTimeout: 2 * time.Second,
		TickInterval: 50 * time.Millisecond, StatusInterval: 100 * time.Millisecond, Backend: backend,
		Credentials: creds, Tokens: tokens,
	})
	if err != nil {
		f.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, lis) }()
	f.Cleanup(func() {
		stop()
		<-done
	})
	dial := func(c secure.Client) *grpc.ClientConn {
		opts, err := c.DialOptions(addr)
		if err != nil {
			f.Fatal(err)
		}
		conn, err := grpc.NewClient(addr, append(opts,
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(dpcnnv1.MaxMessageSize), grpc.MaxCallSendMsgSize(dpcnnv1.MaxMessageSize)))...)
		if err != nil {
			f.Fatal(err)
		}
		f.Cleanup(func() { conn.Close() })
		return conn
	}
	token := strings.TrimSpace(string(set.Files[secure.FileToken]))
	conn := dial(secure.Client{Files: secure.Files{CA: file(secure.FileCA), Cert: file(secure.FileWorkerCert), Key: file(secure.FileWorkerKey)}, Token: token})
	h := &rpcFuzzHarness{
		conn: conn, anonymous: dial(secure.Client{Files: secure.Files{CA: file(secure.FileCA)}}),
		jobs: dpcnnv1.NewJobServiceClient(conn), workers: dpcnnv1.NewWorkerServiceClient(conn),
		cluster: dpcnnv1.NewClusterServiceClient(conn),
	}
	for {
		_, err := h.jobs.SubmitJob(ctx, &dpcnnv1.SubmitJobRequest{Spec: tinySpec().JSON(), JobId: "fuzz"})
		if err == nil {
			return h
		}
		if status.Code(err) != codes.Unavailable || ctx.Err() != nil {
			f.Fatalf("submit the fuzz job: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // not leading yet
	}
}

// fuzzRPCs names the RPC of each method and how it streams (unary: both
// false); the Work methods share one.
var fuzzRPCs = [fuzzMethods]struct {
	name           string
	client, server bool
}{
	fuzzSubmitJob:          {"/dpcnn.v1.JobService/SubmitJob", false, false},
	fuzzGetJob:             {"/dpcnn.v1.JobService/GetJob", false, false},
	fuzzCancelJob:          {"/dpcnn.v1.JobService/CancelJob", false, false},
	fuzzListJobs:           {"/dpcnn.v1.JobService/ListJobs", false, false},
	fuzzWatchJob:           {"/dpcnn.v1.JobService/WatchJob", false, true},
	fuzzListJobEvents:      {"/dpcnn.v1.JobService/ListJobEvents", false, false},
	fuzzDownloadCheckpoint: {"/dpcnn.v1.JobService/DownloadCheckpoint", false, true},
	fuzzDownloadModel:      {"/dpcnn.v1.JobService/DownloadModel", false, true},
	fuzzJoin:               {"/dpcnn.v1.WorkerService/Join", false, false},
	fuzzFetchDataset:       {"/dpcnn.v1.WorkerService/FetchDataset", false, true},
	fuzzListWorkers:        {"/dpcnn.v1.ClusterService/ListWorkers", false, false},
	fuzzWorkFirst:          {"/dpcnn.v1.WorkerService/Work", true, true},
	fuzzWorkInSession:      {"/dpcnn.v1.WorkerService/Work", true, true},
	fuzzWorkAimed:          {"/dpcnn.v1.WorkerService/Work", true, true},
}

// decodes reports whether payload is a valid request of method.
func (h *rpcFuzzHarness) decodes(method byte, payload []byte) bool {
	var m proto.Message
	switch method {
	case fuzzSubmitJob:
		m = &dpcnnv1.SubmitJobRequest{}
	case fuzzGetJob:
		m = &dpcnnv1.GetJobRequest{}
	case fuzzCancelJob:
		m = &dpcnnv1.CancelJobRequest{}
	case fuzzListJobs:
		m = &dpcnnv1.ListJobsRequest{}
	case fuzzWatchJob:
		m = &dpcnnv1.WatchJobRequest{}
	case fuzzListJobEvents:
		m = &dpcnnv1.ListJobEventsRequest{}
	case fuzzDownloadCheckpoint:
		m = &dpcnnv1.DownloadCheckpointRequest{}
	case fuzzDownloadModel:
		m = &dpcnnv1.DownloadModelRequest{}
	case fuzzJoin:
		m = &dpcnnv1.JoinRequest{}
	case fuzzFetchDataset:
		m = &dpcnnv1.FetchDatasetRequest{}
	case fuzzListWorkers:
		m = &dpcnnv1.ListWorkersRequest{}
	default:
		m = &dpcnnv1.WorkerMessage{}
	}
	return proto.Unmarshal(payload, m) == nil
}

// callRaw sends payload to method's RPC on conn as the wire bytes of its
// request, whatever they are, and reads the answer to its end.
func (h *rpcFuzzHarness) callRaw(ctx context.Context, conn *grpc.ClientConn, method byte, payload []byte) error {
	rpc := fuzzRPCs[method]
	ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	raw := grpc.ForceCodecV2(rawCodec{})
	if !rpc.client && !rpc.server {
		var out []byte
		return quiet(conn.Invoke(ctx, rpc.name, &payload, &out, raw))
	}
	stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: rpc.client, ServerStreams: rpc.server}, rpc.name, raw)
	if err != nil {
		return quiet(err)
	}
	if err := stream.SendMsg(&payload); err != nil && !errors.Is(err, io.EOF) {
		return quiet(err)
	}
	if err := stream.CloseSend(); err != nil {
		return quiet(err)
	}
	for {
		var out []byte
		if err := stream.RecvMsg(&out); err != nil {
			return quiet(err)
		}
	}
}

// rawCodec passes wire bytes through unchanged, under the proto content
// subtype, so the server decodes them with its own codec.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

// call decodes payload as the request of method and sends it.
func (h *rpcFuzzHarness) call(ctx context.Context, t *testing.T, method byte, payload []byte) error {
	decode := func(m proto.Message) bool { return proto.Unmarshal(payload, m) == nil }
	switch method {
	case fuzzSubmitJob:
		var req dpcnnv1.SubmitJobRequest
		if !decode(&req) {
			return nil
		}
		if req.JobId == "" {
			req.JobId = "fuzzed" // do not queue a new job for every input
		}
		_, err := h.jobs.SubmitJob(ctx, &req)
		return err
	case fuzzGetJob:
		var req dpcnnv1.GetJobRequest
		if !decode(&req) {
			return nil
		}
		_, err := h.jobs.GetJob(ctx, &req)
		return err
	case fuzzCancelJob:
		var req dpcnnv1.CancelJobRequest
		if !decode(&req) || req.JobId == "fuzz" {
			return nil
		}
		_, err := h.jobs.CancelJob(ctx, &req)
		return err
	case fuzzListJobs:
		var req dpcnnv1.ListJobsRequest
		if !decode(&req) {
			return nil
		}
		_, err := h.jobs.ListJobs(ctx, &req)
		return err
	case fuzzWatchJob:
		var req dpcnnv1.WatchJobRequest
		if !decode(&req) {
			return nil
		}
		wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		stream, err := h.jobs.WatchJob(wctx, &req)
		for err == nil {
			_, err = stream.Recv()
		}
		return quiet(err)
	case fuzzListJobEvents:
		var req dpcnnv1.ListJobEventsRequest
		if !decode(&req) {
			return nil
		}
		_, err := h.jobs.ListJobEvents(ctx, &req)
		return err
	case fuzzDownloadCheckpoint:
		var req dpcnnv1.DownloadCheckpointRequest
		if !decode(&req) {
			return nil
		}
		stream, err := h.jobs.DownloadCheckpoint(ctx, &req)
		return drain(stream, err)
	case fuzzDownloadModel:
		var req dpcnnv1.DownloadModelRequest
		if !decode(&req) {
			return nil
		}
		stream, err := h.jobs.DownloadModel(ctx, &req)
		return drain(stream, err)
	case fuzzJoin:
		var req dpcnnv1.JoinRequest
		if !decode(&req) {
			return nil
		}
		_, err := h.workers.Join(ctx, &req)
		return err
	case fuzzFetchDataset:
		var req dpcnnv1.FetchDatasetRequest
		if !decode(&req) {
			return nil
		}
		stream, err := h.workers.FetchDataset(ctx, &req)
		return drain(stream, err)
	case fuzzListWorkers:
		var req dpcnnv1.ListWorkersRequest
		if !decode(&req) {
			return nil
		}
		_, err := h.cluster.ListWorkers(ctx, &req)
		return err
	default:
		var msg dpcnnv1.WorkerMessage
		if !decode(&msg) {
			return nil
		}
		return h.work(ctx, t, method, &msg)
	}
}

// work sends msg on a Work stream: first, after a Hello of a fresh session,
// or aimed at the assignment the session was given.
func (h *rpcFuzzHarness) work(ctx context.Context, t *testing.T, method byte, msg *dpcnnv1.WorkerMessage) error {
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	stream, err := h.workers.Work(wctx)
	if err != nil {
		return err
	}
	defer stream.CloseSend()
	if method != fuzzWorkFirst {
		// The second Join reports the data set the first one named, as a
		// worker that fetched it would, so that the session gets work.
		join := &dpcnnv1.JoinRequest{WorkerId: "fuzz-worker", Backend: "cpu", Cores: 1, ImagesPerSec: 100}
		joined, err := h.workers.Join(ctx, join)
		if err != nil {
			return err
		}
		join.Dataset = joined.Dataset
		if joined, err = h.workers.Join(ctx, join); err != nil {
			return err
		}
		hello := &dpcnnv1.WorkerMessage{Kind: &dpcnnv1.WorkerMessage_Hello{Hello: &dpcnnv1.Hello{WorkerId: "fuzz-worker", Session: joined.Session}}}
		if err := stream.Send(hello); err != nil {
			return quiet(err)
		}
		if method == fuzzWorkAimed {
			for {
				in, err := stream.Recv()
				if err != nil {
					return quiet(err)
				}
				if a := in.GetAssignment(); a != nil {
					switch k := msg.Kind.(type) {
					case *dpcnnv1.WorkerMessage_Result:
						k.Result.AssignmentId, k.Result.JobId = a.AssignmentId, a.JobId
					case *dpcnnv1.WorkerMessage_Failure:
						k.Failure.AssignmentId, k.Failure.JobId = a.AssignmentId, a.JobId
					}
					break
				}
			}
		}
	}
	if err := stream.Send(msg); err != nil {
		return quiet(err)
	}
	// Read what comes back until the stream ends or the time is up.
	for {
		if _, err := stream.Recv(); err != nil {
			return quiet(err)
		}
	}
}

// drain reads a download to its end.
func drain(stream grpc.ServerStreamingClient[dpcnnv1.FileChunk], err error) error {
	for err == nil {
		_, err = stream.Recv()
	}
	return quiet(err)
}

// quiet maps the ends a stream may have in the fuzzer's own hands (EOF,
// its time limit) to nil.
func quiet(err error) error {
	if errors.Is(err, io.EOF) || status.Code(err) == codes.DeadlineExceeded || status.Code(err) == codes.Canceled {
		return nil
	}
	return err
}
