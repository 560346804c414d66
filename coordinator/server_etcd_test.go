package coordinator

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// tcpProxy forwards connections on 127.0.0.1 to a target; cut closes every
// connection and refuses new ones until heal, as a network outage would.
type tcpProxy struct {
	lis    net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]bool
}

func startTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{lis: lis, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() {
		lis.Close()
		p.cut()
	})
	go p.serve()
	return p
}

func (p *tcpProxy) addr() string { return p.lis.Addr().String() }

func (p *tcpProxy) serve() {
	for {
		in, err := p.lis.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			in.Close()
			continue
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			in.Close()
			continue
		}
		p.conns[in], p.conns[out] = true, true
		p.mu.Unlock()
		go func() { io.Copy(out, in); out.Close() }()
		go func() { io.Copy(in, out); in.Close() }()
	}
}

func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *tcpProxy) heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// While etcd is out of the leader's reach the coordinator stops leading
// (it cannot know that no other does), says so to every caller and in its
// health, keeps serving, and retries with backoff; when etcd is back it
// leads again and finishes the job with the parameters of an undisturbed
// run.
func TestServerSurvivesEtcdOutage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	endpoints := startTestEtcd(t)
	direct := dialTestEtcd(t, endpoints)
	proxy := startTCPProxy(t, strings.TrimPrefix(endpoints[0], "http://"))
	proxied := dialTestEtcd(t, []string{"http://" + proxy.addr()})

	c := startCoordinator(t, proxied, "c1", t.TempDir())
	waitLeading(t, c)
	startDaemons(t, direct, 2)
	spec := submitCheckpointingJob(ctx, t, c, 1)
	jobs := dpcnnv1.NewJobServiceClient(c.conn)

	proxy.cut()
	health := healthpb.NewHealthClient(c.conn)
	deadline := time.Now().Add(hangGuard)
	for {
		_, err := jobs.GetJob(ctx, &dpcnnv1.GetJobRequest{JobId: "tiny"})
		if status.Code(err) == codes.Unavailable && strings.Contains(err.Error(), "etcd unreachable since") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GetJob with etcd out of reach: %v; want UNAVAILABLE saying etcd is unreachable", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	r, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: dpcnnv1.JobService_ServiceDesc.ServiceName})
	if err != nil || r.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("JobService health with etcd out of reach: %v, %v; want NOT_SERVING", r, err)
	}
	if r, err := health.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("the server's health with etcd out of reach: %v, %v; want SERVING (it is alive)", r, err)
	}
	time.Sleep(time.Second) // a few retries

	proxy.heal()
	healed := time.Now()
	waitLeading(t, c)
	t.Logf("leading again %s after etcd came back", time.Since(healed).Round(time.Millisecond))
	watchToEnd(t, jobs, "tiny")
	checkTinyJob(t, direct, c, spec, 2)
}

// A message over the contract's size limit is refused with
// RESOURCE_EXHAUSTED, and the coordinator goes on serving and leading.
//
// Building and sending 256 MiB stalls a busy two-core machine for
// seconds (15 s in one CI run), longer than the tests' usual one-second
// leadership lease: the coordinator then rightly stepped down, and the
// test, which asked at once who leads, failed on "an election is under
// way". Leases are not what this test is about, so its coordinator holds
// a longer one, and it waits for the coordinator to lead before asking.
func TestServerRefusesOversizeMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("sends a 256 MiB message: skipped with -short")
	}
	cli := testEtcd(t)
	c := startCoordinatorWith(t, cli, "c1", t.TempDir(), func(cfg *ServerConfig) { cfg.SessionTTL = 30 * time.Second },
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	waitLeading(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	big, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(2*dpcnnv1.MaxMessageSize)))
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	spec := make([]byte, dpcnnv1.MaxMessageSize+1)
	_, err = dpcnnv1.NewJobServiceClient(big).SubmitJob(ctx, &dpcnnv1.SubmitJobRequest{Spec: spec})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a %d-byte SubmitJob: %v, want RESOURCE_EXHAUSTED", len(spec), err)
	}
	waitLeading(t, c)
	r, err := dpcnnv1.NewClusterServiceClient(c.conn).Leader(ctx, &dpcnnv1.LeaderRequest{})
	if err != nil || !r.AnsweredByLeader {
		t.Fatalf("after an oversize message: %v, %v; want an answer from the leader", r, err)
	}
}
