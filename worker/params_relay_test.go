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
	fetch := func(ctx context.Context, address string, req *dpcnnv1.ParamsRequest) (paramsStream, error) {
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
// above over gRPC, in several chunks, to the same bits (NaN payloads, −0
// and infinities included); the fetches start before the top holds the
// version and wait for it.
func TestParamsGoDownARelayChain(t *testing.T) {
	top, mid, leaf := startRelayNode(t, "w0"), startRelayNode(t, "w1"), startRelayNode(t, "w2")
	leaf.r.received(relayedAssignment("j", 3, mid, "w1"))
	mid.r.received(relayedAssignment("j", 3, top, "w0"))
	time.Sleep(20 * time.Millisecond) // both fetches wait at their relays
	want := []float32{1.5, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)), math.Float32frombits(0x7fc00123), 3e-39}
	for i := range 3*paramsChunkBytes/4 + 7 { // several chunks, the last one short
		want = append(want, float32(i)/3)
	}
	top.r.received(wholeAssignment("j", 3, want))
	for _, n := range []*relayNode{mid, leaf} {
		got, err := relayed(t, n, "j", 3)
		if err != nil {
			t.Fatal(err)
		}
		if !bitsEqual(got, want) {
			t.Errorf("relayed parameters (%d floats) differ from the %d sent", len(got), len(want))
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

// upstream is a relay the test drives by hand: it announces count floats,
// sends the chunks it is handed, and ends when told.
type upstream struct {
	dpcnnv1.UnimplementedReduceServiceServer
	count  uint32
	chunks chan []byte // nil ends the stream
}

func (u *upstream) Params(req *dpcnnv1.ParamsRequest, s grpc.ServerStreamingServer[dpcnnv1.ParamsChunk]) error {
	first := true
	for data := range u.chunks {
		if data == nil {
			return nil
		}
		c := &dpcnnv1.ParamsChunk{Data: data}
		if first {
			c.Count, first = u.count, false
		}
		if err := s.Send(c); err != nil {
			return err
		}
	}
	return nil
}

func startUpstream(t *testing.T, count uint32) (*upstream, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{count: count, chunks: make(chan []byte, 16)}
	srv := grpc.NewServer()
	dpcnnv1.RegisterReduceServiceServer(srv, u)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return u, lis.Addr().String()
}

// A relay forwards each chunk as it arrives (cut-through): a child reads
// the first bytes of a version while the relay is still receiving the
// rest from its own relay; once it is all in, the child's copy is the
// same bits.
func TestParamsRelayForwardsAsChunksArrive(t *testing.T) {
	n := 3 * paramsChunkBytes / 4 // three chunks' worth of floats
	want := make([]float32, n)
	for i := range want {
		want[i] = float32(i) * 0.5
	}
	raw := dpcnnv1.AppendFloat32s(nil, want)
	up, addr := startUpstream(t, uint32(n))
	mid := startRelayNode(t, "w1")
	mid.r.received(&dpcnnv1.Assignment{JobId: "j", ParamsVersion: 2, ParamsFrom: &dpcnnv1.ParamsSource{WorkerId: "w0", Address: addr}})
	up.chunks <- raw[:paramsChunkBytes]

	conn, err := grpc.NewClient(mid.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := dpcnnv1.NewReduceServiceClient(conn).Params(ctx, &dpcnnv1.ParamsRequest{JobId: "j", Version: 2, WorkerId: "w2"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if c.GetCount() != uint32(n) || string(c.GetData()) != string(raw[:paramsChunkBytes]) {
		t.Fatalf("first chunk: count %d, %d bytes; want %d and the first %d bytes, before the relay has the rest", c.GetCount(), len(c.GetData()), n, paramsChunkBytes)
	}
	up.chunks <- raw[paramsChunkBytes:]
	up.chunks <- nil
	got := append([]byte(nil), c.GetData()...)
	for {
		c, err := s.Recv()
		if err != nil {
			break
		}
		got = append(got, c.GetData()...)
	}
	if string(got) != string(raw) {
		t.Errorf("the child got %d bytes, not the %d the relay was sent", len(got), len(raw))
	}
	whole, err := relayed(t, mid, "j", 2)
	if err != nil || !bitsEqual(whole, want) {
		t.Errorf("the relay's own copy: %v", err)
	}
}

// A relay whose stream is cut short, or runs past what it announced, is
// struck off like one that does not answer.
func TestParamsRelayRefusesABadStream(t *testing.T) {
	for name, send := range map[string][][]byte{
		"short": {make([]byte, 8), nil},
		"long":  {make([]byte, 8), make([]byte, 12), nil},
	} {
		up, addr := startUpstream(t, 4)
		n := startRelayNode(t, "w1")
		n.r.received(&dpcnnv1.Assignment{JobId: "j", ParamsVersion: 1, ParamsFrom: &dpcnnv1.ParamsSource{WorkerId: "w0", Address: addr}})
		for _, c := range send {
			up.chunks <- c
		}
		if _, err := relayed(t, n, "j", 1); !errors.Is(err, errParamsUnreached) || !errors.Is(err, errRelayDown) {
			t.Errorf("%s: %v; want unreached, the relay struck off", name, err)
		}
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
	call := func(ctx context.Context, req *dpcnnv1.ParamsRequest) error {
		s, err := client.Params(ctx, req)
		if err == nil {
			_, err = s.Recv()
		}
		return err
	}
	if err := call(context.Background(), &dpcnnv1.ParamsRequest{Version: 1}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("no job: %v", err)
	}
	n.r.unbind()
	if err := call(context.Background(), &dpcnnv1.ParamsRequest{JobId: "j", Version: 1}); status.Code(err) != codes.Unavailable {
		t.Errorf("no stream: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	n.r.bind()
	if err := call(ctx, &dpcnnv1.ParamsRequest{JobId: "j", Version: 1}); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("a version never held: %v", err)
	}
}

func bitsEqual(a, b []float32) bool {
	return slices.EqualFunc(a, b, func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) })
}

// A wait for a version that a later one overtook ends, however the later
// one came: whole, or as a delta (which a worker does not relay).
func TestParamsRelayWaitEndsWhenOvertaken(t *testing.T) {
	for name, later := range map[string]*dpcnnv1.Assignment{
		"whole": wholeAssignment("j", 5, []float32{1}),
		"delta": {JobId: "j", ParamsVersion: 5, ParamsDelta: &dpcnnv1.ParamsDelta{BaseVersion: 4}},
	} {
		n := startRelayNode(t, "w1")
		done := make(chan error, 1)
		go func() {
			_, err := relayed(t, n, "j", 4)
			done <- err
		}()
		time.Sleep(20 * time.Millisecond)
		n.r.received(later)
		select {
		case err := <-done:
			if !errors.Is(err, errParamsUnreached) {
				t.Errorf("%s: the wait for version 4 ended with %v", name, err)
			}
		case <-time.After(3 * time.Second):
			t.Errorf("%s: the wait for version 4 outlived version 5's arrival", name)
		}
	}
}
