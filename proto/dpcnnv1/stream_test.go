package dpcnnv1_test

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// echoCoordinator answers a Work stream's Hello with one assignment whose
// parameters are params, and hands the worker's reply to results.
type echoCoordinator struct {
	dpcnnv1.UnimplementedWorkerServiceServer
	params  []float32
	results chan *dpcnnv1.WorkResult
}

func (c *echoCoordinator) Work(stream grpc.BidiStreamingServer[dpcnnv1.WorkerMessage, dpcnnv1.CoordinatorMessage]) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	if first.GetHello().GetSession() != "s-1" {
		return errors.New("first message is not the expected hello")
	}
	a := &dpcnnv1.Assignment{
		AssignmentId: 1, JobId: "j", ParamsVersion: 0,
		Params: dpcnnv1.NewTensor("params", []int{len(c.params)}, c.params),
		Work:   &dpcnnv1.Assignment_Eval{Eval: &dpcnnv1.EvalWork{Begin: 0, End: 10000}},
	}
	if err := stream.Send(&dpcnnv1.CoordinatorMessage{Kind: &dpcnnv1.CoordinatorMessage_Assignment{Assignment: a}}); err != nil {
		return err
	}
	reply, err := stream.Recv()
	if err != nil {
		return err
	}
	c.results <- reply.GetResult()
	return nil
}

// TestWorkStreamCarriesLargeParameters drives the Work stream over an
// in-memory connection with a parameter vector larger than gRPC's default
// 4 MiB message limit, received under MaxMessageSize.
func TestWorkStreamCarriesLargeParameters(t *testing.T) {
	params := make([]float32, 1_500_000) // 6 MB on the wire
	for i := range params {
		params[i] = float32(i % 977)
	}
	coord := &echoCoordinator{params: params, results: make(chan *dpcnnv1.WorkResult, 1)}
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(dpcnnv1.MaxMessageSize))
	dpcnnv1.RegisterWorkerServiceServer(srv, coord)
	go srv.Serve(lis)
	defer srv.Stop()

	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(dpcnnv1.MaxMessageSize)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // a hang guard, not a timing
	defer cancel()
	stream, err := dpcnnv1.NewWorkerServiceClient(conn).Work(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hello := &dpcnnv1.WorkerMessage{Kind: &dpcnnv1.WorkerMessage_Hello{Hello: &dpcnnv1.Hello{WorkerId: "w-1", Session: "s-1"}}}
	if err := stream.Send(hello); err != nil {
		t.Fatal(err)
	}
	msg, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	a := msg.GetAssignment()
	got := make([]float32, len(params))
	if err := a.GetParams().DecodeInto(got); err != nil {
		t.Fatal(err)
	}
	for i := range params {
		if got[i] != params[i] {
			t.Fatalf("parameter %d arrived as %v, want %v", i, got[i], params[i])
		}
	}
	eval := a.GetEval()
	result := &dpcnnv1.WorkResult{AssignmentId: a.GetAssignmentId(), JobId: a.GetJobId(),
		Outcome: &dpcnnv1.WorkResult_Eval{Eval: &dpcnnv1.EvalCount{Begin: eval.GetBegin(), End: eval.GetEnd(), Correct: 9876}}}
	if err := stream.Send(&dpcnnv1.WorkerMessage{Kind: &dpcnnv1.WorkerMessage_Result{Result: result}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("stream ended with %v, want io.EOF", err)
	}
	if r := <-coord.results; r.GetAssignmentId() != 1 || r.GetEval().GetCorrect() != 9876 {
		t.Fatalf("coordinator received %v", r)
	}
}
