package worker

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// relayNode is a paramsRelay served over real gRPC on loopback, fetching
// from the others over real gRPC too.
type relayNode struct {
	r    *paramsRelay
	addr string
}

func startRelayNode(t *testing.T, id string) *relayNode {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []*grpc.ClientConn
	fetch := func(ctx context.Context, address string, req *dpcnnv1.ParamsRequest) (*dpcnnv1.ParamsReply, error) {
		c, err := grpc.NewClient(address, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, err
		}
		conns = append(conns, c)
		return dpcnnv1.NewReduceServiceClient(c).Params(ctx, req)
	}
	n := &relayNode{r: newParamsRelay(id, slog.New(slog.DiscardHandler), fetch), addr: lis.Addr().String()}
	srv := grpc.NewServer()
	dpcnnv1.RegisterReduceServiceServer(srv, &reduceService{r: newReducers(id, slog.New(slog.DiscardHandler), nil), relay: n.r})
	go srv.Serve(lis)
	t.Cleanup(func() {
		n.r.unbind()
		srv.Stop()
		for _, c := range conns {
			c.Close()
		}
	})
	n.r.bind()
	return n
}

func relayedAssignment(job string, version uint64, from *relayNode, id string) *dpcnnv1.Assignment {
	return &dpcnnv1.Assignment{JobId: job, ParamsVersion: version, ParamsFrom: &dpcnnv1.ParamsSource{WorkerId: id, Address: from.addr}}
}

func wholeAssignment(job string, version uint64, values []float32) *dpcnnv1.Assignment {
	return &dpcnnv1.Assignment{JobId: job, ParamsVersion: version, Params: dpcnnv1.NewTensor("params", []int{len(values)}, values)}
}

func relayed(t *testing.T, n *relayNode, job string, version uint64) ([]float32, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, err := n.r.wait(ctx, job, version)
	if err != nil {
		return nil, err
	}
	n2, err := p.Elements()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, n2)
	if err := p.DecodeInto(out); err != nil {
		t.Fatal(err)
	}
	return out, nil
}

// Parameters go down a tree of three workers, each fetching from the one
// above over gRPC, to the same bits (NaN payloads, −0 and infinities
// included); the fetches start before the top holds the version and wait
// for it.
func TestParamsGoDownARelayChain(t *testing.T) {
	top, mid, leaf := startRelayNode(t, "w0"), startRelayNode(t, "w1"), startRelayNode(t, "w2")
	leaf.r.received(relayedAssignment("j", 3, mid, "w1"))
	mid.r.received(relayedAssignment("j", 3, top, "w0"))
	time.Sleep(20 * time.Millisecond) // both fetches wait at their relays
	want := []float32{1.5, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)), math.Float32frombits(0x7fc00123), 3e-39}
	top.r.received(wholeAssignment("j", 3, want))
	for _, n := range []*relayNode{mid, leaf} {
		got, err := relayed(t, n, "j", 3)
		if err != nil {
			t.Fatal(err)
		}
		if !bitsEqual(got, want) {
			t.Errorf("relayed parameters %v, want the bits of %v", got, want)
		}
	}
}

// A fetch fails, and says whether the relay answered: a relay nobody
// listens at is down; one that holds a later version answered; and a relay
// whose own fetch failed answers at once (the failure goes down the tree
// in a round trip, not a timeout a level), not down itself.
func TestParamsRelayFailures(t *testing.T) {
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	goneAddr := gone.Addr().String()
	gone.Close()

	ahead, mid, leaf := startRelayNode(t, "w0"), startRelayNode(t, "w1"), startRelayNode(t, "w2")
	mid.r.received(&dpcnnv1.Assignment{JobId: "j", ParamsVersion: 5, ParamsFrom: &dpcnnv1.ParamsSource{WorkerId: "gone", Address: goneAddr}})
	leaf.r.received(relayedAssignment("j", 5, mid, "w1"))
	began := time.Now()
	for _, tc := range []struct {
		n    *relayNode
		down bool
	}{{mid, true}, {leaf, false}} {
		_, err := relayed(t, tc.n, "j", 5)
		if !errors.Is(err, errParamsUnreached) || errors.Is(err, errRelayDown) != tc.down {
			t.Errorf("%s: %v; want parameters unreached, relay down %v", tc.n.r.self, err, tc.down)
		}
	}
	if took := time.Since(began); took > paramsFetchTimeout/2 {
		t.Errorf("the failure took %v to come down two levels", took)
	}

	ahead.r.received(wholeAssignment("k", 9, []float32{1}))
	n := startRelayNode(t, "w3")
	n.r.received(relayedAssignment("k", 8, ahead, "w0"))
	if _, err := relayed(t, n, "k", 8); !errors.Is(err, errParamsUnreached) || errors.Is(err, errRelayDown) {
		t.Errorf("version 8 from a relay holding 9: %v; want unreached, the relay not down", err)
	}
}

// ReduceService.Params refuses a request without a job, and answers
// UNAVAILABLE while the worker has no Work stream.
func TestParamsServiceRefuses(t *testing.T) {
	n := startRelayNode(t, "w0")
	conn, err := grpc.NewClient(n.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := dpcnnv1.NewReduceServiceClient(conn)
	if _, err := client.Params(context.Background(), &dpcnnv1.ParamsRequest{Version: 1}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("no job: %v", err)
	}
	n.r.unbind()
	if _, err := client.Params(context.Background(), &dpcnnv1.ParamsRequest{JobId: "j", Version: 1}); status.Code(err) != codes.Unavailable {
		t.Errorf("no stream: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	n.r.bind()
	if _, err := client.Params(ctx, &dpcnnv1.ParamsRequest{JobId: "j", Version: 1}); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("a version never held: %v", err)
	}
}

func bitsEqual(a, b []float32) bool {
	return slices.EqualFunc(a, b, func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) })
}
