package worker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
	"github.com/dpcnn/dpcnn/secure"
)

// reduceService is the worker's ReduceService: the other workers push the
// pieces of the groups it reduces.
type reduceService struct {
	dpcnnv1.UnimplementedReduceServiceServer
	r     *reducers
	relay *paramsRelay
}

func (s *reduceService) Push(ctx context.Context, p *dpcnnv1.Piece) (*dpcnnv1.PushReply, error) {
	if p.GetJobId() == "" || p.GetGroup() == 0 {
		return nil, status.Errorf(codes.InvalidArgument, "push: a piece needs a job and a group (got job %q, group %d)", p.GetJobId(), p.GetGroup())
	}
	if err := s.r.take(p); err != nil {
		if errors.Is(err, errNoStream) {
			return nil, status.Error(codes.Unavailable, err.Error())
		}
		return nil, status.Error(codes.ResourceExhausted, err.Error())
	}
	return &dpcnnv1.PushReply{}, nil
}

// Params streams a job's parameters to a child in the tree, chunk by chunk
// as the worker has them.
func (s *reduceService) Params(req *dpcnnv1.ParamsRequest, stream grpc.ServerStreamingServer[dpcnnv1.ParamsChunk]) error {
	if req.GetJobId() == "" {
		return status.Error(codes.InvalidArgument, "params: a request needs a job")
	}
	ctx := stream.Context()
	err := s.relay.serve(ctx, req.GetJobId(), req.GetVersion(), stream.Send)
	switch {
	case err == nil:
		s.relay.log.Debug("served parameters", "job", req.GetJobId(), "version", req.GetVersion(), "to", req.GetWorkerId())
		return nil
	case errors.Is(err, errNoStream):
		return status.Error(codes.Unavailable, err.Error())
	case ctx.Err() != nil:
		return status.FromContextError(ctx.Err()).Err()
	case errors.Is(err, errParamsUnreached):
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	return err // sending failed: the stream is gone
}

// startReduce serves ReduceService on cfg.ReduceListen, when set, and
// returns the address the worker announces for it.
func (d *daemon) startReduce() (string, error) {
	d.reduce = newReducers(d.cfg.ID, d.log, d.pushPiece)
	d.relay = newParamsRelay(d.cfg.ID, d.log, d.fetchParams)
	d.relay.peerDown = d.markPeerDown
	ln := d.cfg.ReduceListener
	if d.cfg.ReduceListen == "" && ln == nil {
		return "", nil
	}
	listen := d.cfg.ReduceListen
	if ln != nil {
		listen = ln.Addr().String()
	}
	creds := d.cfg.ReduceServerCredentials
	if creds == nil {
		if err := secure.CheckPlaintext("worker "+d.cfg.ID+": reduce service", listen); err != nil {
			if ln != nil {
				ln.Close()
			}
			return "", err
		}
		creds = insecure.NewCredentials()
	}
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", listen); err != nil {
			return "", fmt.Errorf("worker %s: reduce service: %w", d.cfg.ID, err)
		}
	}
	addr := d.cfg.ReduceAdvertise
	if addr == "" {
		addr = ln.Addr().String()
		if host, port, err := net.SplitHostPort(addr); err == nil && net.ParseIP(host).IsUnspecified() {
			h, _, _ := net.SplitHostPort(d.cfg.Address)
			if h == "" {
				h = d.cfg.Address
			}
			addr = net.JoinHostPort(h, port)
		}
	}
	if host, port, err := net.SplitHostPort(addr); err != nil || host == "" || port == "" || port == "0" {
		ln.Close()
		return "", fmt.Errorf("worker %s: reduce service: advertised address %q: want host:port, reachable by the other workers", d.cfg.ID, addr)
	}
	srv := grpc.NewServer(grpc.Creds(creds),
		grpc.MaxRecvMsgSize(dpcnnv1.MaxMessageSize),
		grpc.InitialWindowSize(dpcnnv1.WindowSize),
		grpc.InitialConnWindowSize(dpcnnv1.WindowSize))
	dpcnnv1.RegisterReduceServiceServer(srv, &reduceService{r: d.reduce, relay: d.relay})
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(ln) })
	d.closers = append(d.closers, func() { srv.Stop(); wg.Wait() }, d.closeReduceConns)
	d.log.Info("serving the reduce service", "listen", ln.Addr().String(), "advertise", addr)
	return addr, nil
}

// pushPiece pushes p to the reducer at address, over a connection kept
// for the next push.
func (d *daemon) pushPiece(ctx context.Context, address string, p *dpcnnv1.Piece) error {
	if err := d.checkPeer(address); err != nil {
		return err
	}
	conn, err := d.reduceConn(address)
	if err != nil {
		return err
	}
	_, err = dpcnnv1.NewReduceServiceClient(conn).Push(ctx, p)
	if c := status.Code(err); c == codes.Unavailable || c == codes.DeadlineExceeded {
		d.markPeerDown(address)
	}
	return err
}

// peerDownFor is how long a worker goes around another's reduce service
// that did not answer (a push or a fetch timed out or found nobody):
// pushes to it go to the coordinator and fetches from it fail at once, so
// a frozen or unreachable worker costs each of the others one timeout,
// not one per assignment. The coordinator, which finds a frozen worker by
// its heartbeats, routes around it by then.
const peerDownFor = 10 * time.Second

func (d *daemon) markPeerDown(address string) {
	d.connMu.Lock()
	defer d.connMu.Unlock()
	if d.peerDown == nil {
		d.peerDown = map[string]time.Time{}
	}
	d.peerDown[address] = time.Now().Add(peerDownFor)
}

// checkPeer fails when the reduce service at address did not answer
// lately.
func (d *daemon) checkPeer(address string) error {
	d.connMu.Lock()
	defer d.connMu.Unlock()
	if until, ok := d.peerDown[address]; ok {
		if time.Now().Before(until) {
			return status.Errorf(codes.Unavailable, "the reduce service at %s did not answer lately: not asked again before %s", address, until.Format(time.TimeOnly))
		}
		delete(d.peerDown, address)
	}
	return nil
}

// fetchParams asks the relay at address for parameters, over the
// connection pushes use.
func (d *daemon) fetchParams(ctx context.Context, address string, r *dpcnnv1.ParamsRequest) (paramsStream, error) {
	if err := d.checkPeer(address); err != nil {
		return nil, err
	}
	conn, err := d.reduceConn(address)
	if err != nil {
		return nil, err
	}
	return dpcnnv1.NewReduceServiceClient(conn).Params(ctx, r)
}

func (d *daemon) reduceConn(address string) (*grpc.ClientConn, error) {
	d.connMu.Lock()
	defer d.connMu.Unlock()
	if c := d.conns[address]; c != nil {
		return c, nil
	}
	creds := d.cfg.ReduceCredentials
	if creds == nil {
		if err := secure.CheckPlaintext("worker "+d.cfg.ID+": reducer", address); err != nil {
			return nil, err
		}
		creds = insecure.NewCredentials()
	}
	c, err := grpc.NewClient(address, append([]grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDisableServiceConfig(),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(dpcnnv1.MaxMessageSize)),
		grpc.WithInitialWindowSize(dpcnnv1.WindowSize),
		grpc.WithInitialConnWindowSize(dpcnnv1.WindowSize),
	}, d.cfg.DialOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("worker %s: dial reducer %s: %w", d.cfg.ID, address, err)
	}
	if d.conns == nil {
		d.conns = map[string]*grpc.ClientConn{}
	}
	d.conns[address] = c
	return c, nil
}

func (d *daemon) closeReduceConns() {
	d.connMu.Lock()
	defer d.connMu.Unlock()
	for _, c := range d.conns {
		c.Close()
	}
	clear(d.conns)
}

// ReduceCredentialsFor are the credentials that reach other workers'
// reduce services: the worker's client certificate, and their certificate
// checked for secure.WorkerServerName whatever address is dialed.
func ReduceCredentialsFor(f secure.Files) (credentials.TransportCredentials, error) {
	cfg, err := secure.ClientTLS(f, secure.WorkerServerName)
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(cfg), nil
}
