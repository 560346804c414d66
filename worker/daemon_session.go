package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
	"github.com/dpcnn/dpcnn/secure"
)

// joinTimeout bounds a Join call; closeWait bounds the wait, after the
// worker closed its side of a stream, for the coordinator to close its own.
const (
	joinTimeout = 10 * time.Second
	closeWait   = 5 * time.Second
)

// minHeartbeatInterval bounds how often the worker sends heartbeats,
// whatever the coordinator asks.
const minHeartbeatInterval = 10 * time.Millisecond

// maxQuickRejoins bounds the joins in a row, without backoff, after a
// coordinator refused a session.
const maxQuickRejoins = 3

// sessionEnd says how a session with a coordinator ended.
type sessionEnd struct {
	err        error
	fatal      bool // do not try again
	drained    bool // the worker is shutting down
	productive bool // the session worked for a while: reconnect quickly
}

// session holds one session with the coordinator: dial, Join, fetch the
// data set if needed, open Work and compute assignments until the stream
// ends, the leader moves, or ctx ends (then it drains).
func (d *daemon) session(ctx context.Context) sessionEnd {
	addr, followLeader, err := d.coordinatorAddress(ctx)
	if err != nil {
		return sessionEnd{err: err}
	}
	log := d.log.With("coordinator", addr)
	creds := d.cfg.Credentials
	if creds == nil {
		if err := secure.CheckPlaintext("worker "+d.cfg.ID+": coordinator", addr); err != nil {
			return sessionEnd{err: err, fatal: !followLeader}
		}
		creds = insecure.NewCredentials()
	}
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		// No service config from DNS: its TXT lookup stalls for seconds on
		// networks without an outside resolver (an internal Docker network)
		// and we configure the channel ourselves.
		grpc.WithDisableServiceConfig(),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(dpcnnv1.MaxMessageSize),
			grpc.MaxCallSendMsgSize(dpcnnv1.MaxMessageSize)),
		grpc.WithInitialWindowSize(dpcnnv1.WindowSize),
		grpc.WithInitialConnWindowSize(dpcnnv1.WindowSize),
		// The daemon paces reconnections itself; gRPC's own backoff (up
		// to two minutes) must not hold a restarted coordinator back.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           grpcbackoff.Config{BaseDelay: d.cfg.RetryMin, Multiplier: 1.6, Jitter: 0.2, MaxDelay: d.cfg.RetryMax},
			MinConnectTimeout: joinTimeout,
		}),
	}, d.cfg.DialOptions...)
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return sessionEnd{err: fmt.Errorf("worker %s: dial %s: %w", d.cfg.ID, addr, err), fatal: !followLeader}
	}
	defer conn.Close()
	client := dpcnnv1.NewWorkerServiceClient(conn)

	reported := d.files
	resp, err := d.join(ctx, conn, client, addr)
	if err != nil {
		return sessionEnd{err: err, fatal: status.Code(err) == codes.InvalidArgument}
	}
	if err := d.ensureData(ctx, client, resp); err != nil {
		log.Error("data set", "err", err)
		return sessionEnd{err: err}
	}
	if d.fetch && !sameFiles(reported, d.files) {
		// Tell the coordinator about the files fetched.
		if resp, err = d.join(ctx, conn, client, addr); err != nil {
			return sessionEnd{err: err, fatal: status.Code(err) == codes.InvalidArgument}
		}
		if !sameFiles(resp.GetDataset(), d.files) {
			return sessionEnd{err: fmt.Errorf("worker %s: the coordinator's data set changed while it was fetched", d.cfg.ID)}
		}
	}
	log.Info("joined", "session", resp.GetSession(), "coordinatorId", resp.GetCoordinatorId())
	return d.work(ctx, client, resp, addr, followLeader)
}

// coordinatorAddress says which coordinator to dial: the configured one
// (or the leader it redirected to last time), else the leader in etcd,
// waiting for one to lead. followLeader says that the session should end
// when the leader in etcd moves.
func (d *daemon) coordinatorAddress(ctx context.Context) (addr string, followLeader bool, err error) {
	if d.redirect != "" {
		addr, d.redirect = d.redirect, ""
		return addr, false, nil
	}
	if d.cfg.Coordinator != "" {
		return d.cfg.Coordinator, false, nil
	}
	if addr, err = d.leaders.wait(ctx); err != nil {
		return "", false, fmt.Errorf("worker %s: wait for a leader in etcd: %w", d.cfg.ID, err)
	}
	return addr, true, nil
}

// join joins the coordinator at addr. When that coordinator does not lead
// and the worker has no etcd to ask, it asks the coordinator where the
// leader is, for the next session.
func (d *daemon) join(ctx context.Context, conn *grpc.ClientConn, client dpcnnv1.WorkerServiceClient, addr string) (*dpcnnv1.JoinResponse, error) {
	jctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	resp, err := client.Join(jctx, &dpcnnv1.JoinRequest{
		WorkerId:      d.cfg.ID,
		Address:       d.cfg.Address,
		Backend:       d.kind,
		BackendDetail: d.detail,
		Cores:         int32(d.cores),
		ImagesPerSec:  d.speed,
		Dataset:       d.files,
		Version:       d.cfg.Version,
		// This worker applies parameter deltas (jobs.prepare).
		AcceptsParamsDelta: true,
		ReduceAddress:      d.reduceAddr,
		RelaysParams:       true,
	})
	if err == nil {
		return resp, nil
	}
	if status.Code(err) == codes.Unavailable && d.leaders == nil {
		lctx, cancel := context.WithTimeout(ctx, joinTimeout)
		defer cancel()
		if l, lerr := dpcnnv1.NewClusterServiceClient(conn).Leader(lctx, &dpcnnv1.LeaderRequest{}); lerr == nil && l.GetAddress() != "" && l.GetAddress() != addr {
			d.redirect = l.GetAddress()
		}
	}
	return nil, fmt.Errorf("worker %s: join %s: %w", d.cfg.ID, addr, err)
}

// ensureData loads the coordinator's data set when the worker fetches its
// data and holds other files than the coordinator lists; a worker with its
// own data set only warns, once, when its files differ.
func (d *daemon) ensureData(ctx context.Context, client dpcnnv1.WorkerServiceClient, resp *dpcnnv1.JoinResponse) error {
	want := resp.GetDataset()
	if sameFiles(want, d.files) {
		return nil
	}
	if !d.fetch {
		if !d.warned && len(want) > 0 {
			d.log.Warn("this worker's data set files differ from the coordinator's; it may get no work",
				"have", fileNames(d.files), "want", fileNames(want))
			d.warned = true
		}
		return nil
	}
	if len(want) == 0 {
		return fmt.Errorf("worker %s: the coordinator serves no data set: give the worker one (--data)", d.cfg.ID)
	}
	d.log.Info("fetching the data set", "files", fileNames(want), "cache", d.cache.Dir)
	paths, err := d.cache.Ensure(ctx, client, want)
	if err != nil {
		return fmt.Errorf("worker %s: %w", d.cfg.ID, err)
	}
	train, test, err := LoadDatasetFiles(paths)
	if err != nil {
		return fmt.Errorf("worker %s: %w", d.cfg.ID, err)
	}
	d.train, d.test, d.files = train, test, want
	d.jobs.reset()
	return nil
}

// sameFiles reports whether a and b list the same files with the same
// content, in any order.
func sameFiles(a, b []*dpcnnv1.FileInfo) bool {
	if len(a) != len(b) {
		return false
	}
	for _, f := range a {
		found := false
		for _, g := range b {
			if f.GetName() == g.GetName() && f.GetSize() == g.GetSize() && f.GetSha256() == g.GetSha256() {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func fileNames(files []*dpcnnv1.FileInfo) []string {
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f.GetName()
	}
	return names
}

// errSend marks a failure to send on the stream.
var errSend = errors.New("send")
