package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	keyspace "github.com/dpcnn/dpcnn/cluster"
	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
	"github.com/dpcnn/dpcnn/secure"
	"github.com/dpcnn/dpcnn/worker"
)

// ServerConfig configures a coordinator Server. ID, Etcd and DataDir are
// required; zero durations take their defaults.
type ServerConfig struct {
	// ID names the coordinator in the cluster (a pod name, or host and
	// process id).
	ID string
	// Advertise is the gRPC address (host:port) that clients and workers
	// dial to reach this coordinator; empty means the listener's address.
	Advertise string
	// Etcd is the cluster's etcd; the caller closes it after Serve returns.
	Etcd *clientv3.Client
	// Prefix is the etcd key prefix (default cluster.DefaultPrefix).
	Prefix string
	// DataDir holds the jobs' checkpoints and models, in jobs/<id>/. A
	// standby coordinator resumes a job from its checkpoint when it shares
	// this folder.
	DataDir string
	// MNISTDir is the folder of the MNIST files the coordinator serves to
	// workers and sizes jobs by (see dataset.Locate; empty searches).
	MNISTDir string
	// Logger receives the coordinator's logs (default: none).
	Logger *slog.Logger
	// Backend applies the optimizer updates; nil makes a CPU backend with
	// every core, which the server closes when Serve returns.
	Backend kernels.Backend[float32]
	// Version is the coordinator's build version, for logs.
	Version string

	// SessionTTL is the lease of the coordinator's leadership: when the
	// leader dies, a standby takes over this long after (default 5 s).
	SessionTTL time.Duration
	// HeartbeatInterval is how often workers send heartbeats (default
	// 1 s); a worker silent for HeartbeatTimeout (default 5 intervals) is
	// taken for dead.
	HeartbeatInterval time.Duration
	HeartbeatTimeout  time.Duration
	// TickInterval is how often a running job's engine checks deadlines
	// and measures speeds (default 200 ms).
	TickInterval time.Duration
	// StatusInterval is the least time between two writes of a running
	// job's progress to etcd (default 1 s); state changes and checkpoints
	// are written at once.
	StatusInterval time.Duration
	// Engine tunes the training engine of every job.
	Engine EngineConfig

	// Credentials secure the gRPC server (TLS from secure.Server.Load or
	// secure.ServerTLS). Nil serves plaintext, which Serve allows only on
	// a loopback listener.
	Credentials credentials.TransportCredentials
	// Tokens are the bearer tokens that JobService, ClusterService and
	// reflection calls (cnnctl's) must carry. When nil those calls need a
	// verified client certificate instead, as WorkerService calls always
	// do; over plaintext there is no certificate to ask for. gRPC health
	// checking is open to all, for probes.
	Tokens *secure.Tokens
}

func (c ServerConfig) withDefaults() ServerConfig {
	if c.Prefix == "" {
		c.Prefix = keyspace.DefaultPrefix
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.SessionTTL <= 0 {
		c.SessionTTL = 5 * time.Second
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = time.Second
	}
	if c.HeartbeatTimeout <= 0 {
		c.HeartbeatTimeout = 5 * c.HeartbeatInterval
	}
	if c.TickInterval <= 0 {
		c.TickInterval = 200 * time.Millisecond
	}
	if c.StatusInterval <= 0 {
		c.StatusInterval = time.Second
	}
	return c
}

// Server is a coordinator: it serves JobService, WorkerService and
// ClusterService, gRPC health and reflection on one listener, campaigns for
// leadership in etcd and, while it leads, runs the queued jobs one at a time
// (oldest first) with the workers that join it. A follower answers
// UNAVAILABLE naming the leader.
type Server struct {
	dpcnnv1.UnimplementedJobServiceServer
	dpcnnv1.UnimplementedWorkerServiceServer
	dpcnnv1.UnimplementedClusterServiceServer

	cfg        ServerConfig
	log        *slog.Logger
	backend    kernels.Backend[float32]
	ownBackend bool

	trainLen, testLen int
	files             []*dpcnnv1.FileInfo // the data set files workers need
	filePaths         map[string]string   // by FileInfo.Name

	grpc   *grpc.Server
	health *health.Server

	mu        sync.Mutex
	advertise string
	served    bool
	lead      *leadership // nil while not leading
	etcdDown  etcdOutage  // zero while etcd answers
	workers   map[string]*remoteWorker
	jobs      map[string]*jobEntry
	driver    *driver // of the running job; nil when none
}

// leadership is one term of this coordinator as the leader.
type leadership struct {
	ctx      context.Context
	cancel   context.CancelFunc
	election *concurrency.Election
	term     int64
	since    time.Time
	wake     chan struct{} // nudges the scheduler: a job was queued or ended
}

// guard is the etcd comparison that holds while this term lasts: every
// write of a leader is conditional on it.
func (l *leadership) guard() clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(l.election.Key()), "=", l.election.Rev())
}

// Services whose methods only the leader serves.
var leaderOnly = []string{
	"/" + dpcnnv1.JobService_ServiceDesc.ServiceName + "/",
	"/" + dpcnnv1.WorkerService_ServiceDesc.ServiceName + "/",
	dpcnnv1.ClusterService_ListWorkers_FullMethodName,
}

// NewServer checks cfg, reads the MNIST files (their sizes and sums) and
// builds the gRPC server. Serve runs it.
func NewServer(cfg ServerConfig) (*Server, error) {
	cfg = cfg.withDefaults()
	switch {
	case cfg.ID == "":
		return nil, errors.New("coordinator: server: no coordinator id")
	case cfg.Etcd == nil:
		return nil, errors.New("coordinator: server: no etcd client")
	case cfg.DataDir == "":
		return nil, errors.New("coordinator: server: no data folder")
	}
	dir, err := dataset.Locate(cfg.MNISTDir)
	if err != nil {
		return nil, fmt.Errorf("coordinator: server: %w", err)
	}
	train, test, err := dataset.LoadMNIST(dir)
	if err != nil {
		return nil, fmt.Errorf("coordinator: server: %w", err)
	}
	files, err := worker.LocalDatasetFiles(dir)
	if err != nil {
		return nil, fmt.Errorf("coordinator: server: %w", err)
	}
	paths := make(map[string]string, len(files))
	for _, f := range files {
		paths[f.Name] = filepath.Join(dir, f.Name)
	}
	s := &Server{
		cfg: cfg, log: cfg.Logger.With("coordinator", cfg.ID),
		backend:  cfg.Backend,
		trainLen: train.Len(), testLen: test.Len(),
		files: files, filePaths: paths,
		advertise: cfg.Advertise,
		workers:   map[string]*remoteWorker{},
		jobs:      map[string]*jobEntry{},
	}
	if s.backend == nil {
		s.backend, s.ownBackend = kernels.NewCPU(0), true
	}
	// Credentials are checked before anything else: a refused call learns
	// nothing, not even whether this coordinator leads.
	auth := &secure.Authenticator{
		Tokens: cfg.Tokens, ClientCerts: cfg.Credentials != nil,
		Require: requirement, Logger: s.log,
	}
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(dpcnnv1.MaxMessageSize),
		grpc.MaxSendMsgSize(dpcnnv1.MaxMessageSize),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.ChainUnaryInterceptor(auth.UnaryInterceptor(), s.unaryGate),
		grpc.ChainStreamInterceptor(auth.StreamInterceptor(), s.streamGate),
	}
	if cfg.Credentials != nil {
		opts = append(opts, grpc.Creds(secure.LogRefusedHandshakes(cfg.Credentials, s.log)))
	}
	s.grpc = grpc.NewServer(opts...)
	dpcnnv1.RegisterJobServiceServer(s.grpc, s)
	dpcnnv1.RegisterWorkerServiceServer(s.grpc, s)
	dpcnnv1.RegisterClusterServiceServer(s.grpc, s)
	s.health = health.NewServer()
	s.setServiceHealth(false)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	return s, nil
}

// requirement says what a call must prove: nothing for health checks
// (probes), a client certificate for the workers' service, a certificate or
// a token to ask where the leader is (workers and cnnctl both ask), and
// cnnctl's token for the rest, reflection included.
func requirement(method string) secure.Requirement {
	switch {
	case strings.HasPrefix(method, "/"+healthpb.Health_ServiceDesc.ServiceName+"/"):
		return secure.Open
	case strings.HasPrefix(method, "/"+dpcnnv1.WorkerService_ServiceDesc.ServiceName+"/"):
		return secure.ClientCert
	case method == dpcnnv1.ClusterService_Leader_FullMethodName:
		return secure.AnyCredential
	default:
		return secure.BearerToken
	}
}

// Health is the server's gRPC health service, for a second, plaintext
// listener that only probes reach (Kubernetes' gRPC probes speak no TLS).
func (s *Server) Health() healthpb.HealthServer { return s.health }

// setServiceHealth reports the job and worker services SERVING only while
// this coordinator leads; the server as a whole ("") serves while it runs.
func (s *Server) setServiceHealth(leading bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if leading {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(dpcnnv1.JobService_ServiceDesc.ServiceName, st)
	s.health.SetServingStatus(dpcnnv1.WorkerService_ServiceDesc.ServiceName, st)
	s.health.SetServingStatus(dpcnnv1.ClusterService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
}

// Serve serves on lis and takes part in the leader election until ctx
// ends, then drains: it stops the running job where it is (a checkpoint and
// its etcd record let the next leader resume it), ends the streams, resigns
// the leadership so a standby takes over at once, and stops the gRPC
// server. It returns nil after a drain, or the listener's error. A Server
// serves once.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	s.mu.Lock()
	if s.served {
		s.mu.Unlock()
		return errors.New("coordinator: server: Serve called twice")
	}
	s.served = true
	if s.advertise == "" {
		s.advertise = lis.Addr().String()
	}
	s.mu.Unlock()
	defer func() {
		if s.ownBackend {
			if c, ok := s.backend.(interface{ Close() }); ok {
				c.Close()
			}
		}
	}()
	if s.cfg.Credentials == nil {
		if err := secure.CheckPlaintext("coordinator: serve: listener", lis.Addr().String()); err != nil {
			return err
		}
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- s.grpc.Serve(lis) }()
	campaignCtx, stopCampaign := context.WithCancel(ctx)
	campaignDone := make(chan struct{})
	go func() {
		defer close(campaignDone)
		s.campaign(campaignCtx)
	}()
	s.log.Info("coordinator serving", "address", s.advertiseAddr(), "version", s.cfg.Version)

	var err error
	stoppedByCtx := false
	select {
	case <-ctx.Done():
		stoppedByCtx = true
	case err = <-serveErr:
		err = fmt.Errorf("coordinator: serve: %w", err)
	}
	stopCampaign()
	<-campaignDone // the leadership is resigned and every stream ended
	s.health.Shutdown()
	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		s.grpc.Stop()
		<-stopped
	}
	if stoppedByCtx {
		<-serveErr
	}
	s.log.Info("coordinator stopped")
	return err
}

func (s *Server) advertiseAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.advertise
}

// campaign runs for leadership again and again until ctx ends: each round
// opens an etcd session, announces the coordinator under its id, waits to
// win the election, then leads until the session is lost or ctx ends.
//
// While etcd cannot be reached the coordinator does not lead (it could not
// know that no other does): it says so to every caller (notLeader), and
// tries again with exponential backoff, logging each failure.
func (s *Server) campaign(ctx context.Context) {
	ttl := int(math.Ceil(s.cfg.SessionTTL.Seconds()))
	addr := s.advertiseAddr()
	backoff := etcdRetryMin
	for ctx.Err() == nil {
		// The session outlives ctx, so that closing it can still revoke its
		// lease; ctx (or the attempt's time limit) only aborts its creation.
		sessCtx, cancelSess := context.WithCancel(context.WithoutCancel(ctx))
		stopAbort := context.AfterFunc(ctx, cancelSess)
		attempt := time.AfterFunc(max(s.cfg.SessionTTL, etcdAttemptTimeout), cancelSess)
		sess, err := concurrency.NewSession(s.cfg.Etcd, concurrency.WithTTL(ttl), concurrency.WithContext(sessCtx))
		attempt.Stop()
		stopAbort()
		if err != nil {
			cancelSess()
			if ctx.Err() != nil {
				return
			}
			down := s.noteEtcdDown(err)
			s.log.Warn("etcd unreachable: not leading; retrying", "err", err, "since", down.since.Format(time.RFC3339),
				"attempts", down.attempts, "retryIn", backoff)
			sleepCtx(ctx, backoff)
			backoff = min(2*backoff, etcdRetryMax)
			continue
		}
		if s.noteEtcdUp() {
			s.log.Info("etcd reachable again")
		}
		backoff = etcdRetryMin
		lost := s.runSession(ctx, sess, addr)
		sess.Close() // revokes the lease: our keys vanish now, not after the TTL
		cancelSess()
		if lost && ctx.Err() == nil {
			// The lease lapsed: etcd was out of reach for a TTL.
			s.noteEtcdDown(errors.New("the etcd session's lease lapsed: etcd was out of reach"))
		}
	}
}

// Backoff of the campaign while etcd cannot be reached, and the time one
// attempt to open a session may take.
const (
	etcdRetryMin       = 250 * time.Millisecond
	etcdRetryMax       = 10 * time.Second
	etcdAttemptTimeout = 5 * time.Second
)

// etcdOutage describes etcd being out of reach.
type etcdOutage struct {
	since    time.Time // zero when etcd answers
	attempts int
	err      error
}

// noteEtcdDown records a failed attempt to reach etcd.
func (s *Server) noteEtcdDown(err error) etcdOutage {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.etcdDown.since.IsZero() {
		s.etcdDown.since = time.Now()
	}
	s.etcdDown.attempts++
	s.etcdDown.err = err
	return s.etcdDown
}

// noteEtcdUp records that etcd answered; it reports whether it had not.
func (s *Server) noteEtcdUp() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	was := !s.etcdDown.since.IsZero()
	s.etcdDown = etcdOutage{}
	return was
}

// etcdOutage returns the current outage (zero since when etcd answers).
func (s *Server) etcdOutage() etcdOutage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.etcdDown
}

// runSession campaigns and leads within one etcd session; it reports
// whether the session was lost (its lease lapsed) rather than ended.
func (s *Server) runSession(ctx context.Context, sess *concurrency.Session, addr string) (lost bool) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-sess.Done():
			cancel()
		case <-sctx.Done():
		}
	}()
	defer func() {
		select {
		case <-sess.Done():
			lost = ctx.Err() == nil
		default:
		}
	}()
	if _, err := s.cfg.Etcd.Put(sctx, keyspace.CoordinatorKey(s.cfg.Prefix, s.cfg.ID), addr, clientv3.WithLease(sess.Lease())); err != nil {
		if sctx.Err() == nil {
			s.log.Warn("announce coordinator", "err", err)
			sleepCtx(sctx, time.Second)
		}
		return
	}
	election := concurrency.NewElection(sess, keyspace.LeaderKey(s.cfg.Prefix))
	if err := election.Campaign(sctx, addr); err != nil {
		if sctx.Err() == nil {
			s.log.Warn("campaign", "err", err)
			sleepCtx(sctx, time.Second)
		}
		return
	}
	s.leadTerm(sctx, sess, election)
	resignCtx, cancelResign := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancelResign()
	if err := election.Resign(resignCtx); err != nil && sess.Ctx().Err() == nil {
		s.log.Warn("resign leadership", "err", err)
	}
	return
}

// leadTerm leads until ctx ends: it loads the jobs from etcd, then runs the
// job scheduler and the heartbeat monitor; at the end it stops them and
// forgets the workers (they join the next leader afresh).
func (s *Server) leadTerm(ctx context.Context, sess *concurrency.Session, election *concurrency.Election) {
	jobs, err := s.loadJobs(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("load jobs after winning the election", "err", err)
			sleepCtx(ctx, time.Second)
		}
		return
	}
	lctx, cancel := context.WithCancel(ctx)
	l := &leadership{ctx: lctx, cancel: cancel, election: election, term: election.Rev(), since: time.Now(), wake: make(chan struct{}, 1)}
	s.mu.Lock()
	s.lead = l
	s.jobs = jobs
	s.workers = map[string]*remoteWorker{}
	s.mu.Unlock()
	s.setServiceHealth(true)
	s.log.Info("leading", "term", l.term)

	var wg sync.WaitGroup
	wg.Go(func() { s.schedule(l) })
	wg.Go(func() { s.monitorHeartbeats(l) })
	wg.Go(func() { s.holdLease(l, sess.Lease()) })
	<-lctx.Done()
	// Callers hear at once that this coordinator no longer leads, while
	// the term's work winds down.
	s.mu.Lock()
	s.lead = nil
	s.mu.Unlock()
	s.setServiceHealth(false)
	wg.Wait()

	s.mu.Lock()
	s.workers = map[string]*remoteWorker{}
	s.mu.Unlock()
	s.log.Info("no longer leading", "term", l.term)
}

// holdLease ends the term when this coordinator cannot be sure that its
// etcd lease, and so its leadership, still holds: it refreshes the lease
// itself every SessionTTL/5, and steps down when no refresh has succeeded
// for half the TTL. A refresh sent at t keeps the lease alive on the etcd
// server until at least t+TTL, and no other coordinator can be elected
// before the lease lapses there, so stepping down at t+TTL/2 leaves half a
// TTL for the term to wind down before a successor can start: a leader cut
// off from etcd (a partition, not a crash) never overlaps the next one. The
// session's own keep-alive only notices the loss after a whole TTL, too
// late for that.
func (s *Server) holdLease(l *leadership, lease clientv3.LeaseID) {
	ttl := s.cfg.SessionTTL
	every := max(ttl/5, 10*time.Millisecond)
	lastOK := time.Now() // the election was just won: the lease is alive
	for {
		sent := time.Now()
		ctx, cancel := context.WithTimeout(l.ctx, every)
		_, err := s.cfg.Etcd.KeepAliveOnce(ctx, lease)
		cancel()
		if l.ctx.Err() != nil {
			return
		}
		switch {
		case err == nil:
			lastOK = sent
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			s.log.Warn("the leadership's etcd lease has lapsed: stepping down", "term", l.term)
			l.cancel()
			return
		}
		if quiet := time.Since(lastOK); quiet > ttl/2 {
			s.log.Warn("etcd out of reach for half the lease: stepping down before another coordinator can be elected",
				"term", l.term, "since", quiet.Round(time.Millisecond), "err", err)
			s.noteEtcdDown(fmt.Errorf("no answer from etcd for %s: %w", quiet.Round(time.Millisecond), err))
			l.cancel()
			return
		}
		select {
		case <-l.ctx.Done():
			return
		case <-time.After(time.Until(sent.Add(every))):
		}
	}
}

// leading returns the current term, or nil while this coordinator does
// not lead.
func (s *Server) leading() *leadership {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lead
}

// notLeader is the UNAVAILABLE error of a coordinator that does not lead,
// naming the leader when there is one.
func (s *Server) notLeader(ctx context.Context) error {
	if down := s.etcdOutage(); !down.since.IsZero() {
		return status.Errorf(codes.Unavailable, "coordinator %s does not lead: etcd unreachable since %s (%d attempts, retrying with backoff): %v",
			s.cfg.ID, down.since.UTC().Format(time.RFC3339), down.attempts, down.err)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	l, err := keyspace.LeaderAddress(ctx, s.cfg.Etcd, s.cfg.Prefix)
	switch {
	case errors.Is(err, keyspace.ErrNoLeader):
		return status.Errorf(codes.Unavailable, "coordinator %s does not lead: no coordinator leads (an election is under way)", s.cfg.ID)
	case err != nil:
		return status.Errorf(codes.Unavailable, "coordinator %s does not lead: %v", s.cfg.ID, err)
	}
	return status.Errorf(codes.Unavailable, "coordinator %s does not lead: the leader is %s at %s", s.cfg.ID, s.coordinatorAt(ctx, l.Address), l.Address)
}

// coordinatorAt names the coordinator announced at addr ("" when none is).
func (s *Server) coordinatorAt(ctx context.Context, addr string) string {
	resp, err := s.cfg.Etcd.Get(ctx, keyspace.CoordinatorKey(s.cfg.Prefix, ""), clientv3.WithPrefix())
	if err != nil {
		return ""
	}
	for _, kv := range resp.Kvs {
		if string(kv.Value) == addr {
			return strings.TrimPrefix(string(kv.Key), keyspace.CoordinatorKey(s.cfg.Prefix, ""))
		}
	}
	return ""
}

func isLeaderOnly(method string) bool {
	for _, p := range leaderOnly {
		if strings.HasPrefix(method, p) {
			return true
		}
	}
	return false
}

func (s *Server) unaryGate(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if isLeaderOnly(info.FullMethod) && s.leading() == nil {
		return nil, s.notLeader(ctx)
	}
	return handler(ctx, req)
}

func (s *Server) streamGate(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if isLeaderOnly(info.FullMethod) && s.leading() == nil {
		return s.notLeader(ss.Context())
	}
	return handler(srv, ss)
}

// Leader implements ClusterService.
func (s *Server) Leader(ctx context.Context, _ *dpcnnv1.LeaderRequest) (*dpcnnv1.LeaderResponse, error) {
	if l := s.leading(); l != nil {
		return &dpcnnv1.LeaderResponse{
			CoordinatorId: s.cfg.ID, Address: s.advertiseAddr(), Term: l.term,
			SinceUnixNanos: l.since.UnixNano(), AnsweredByLeader: true,
		}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	l, err := keyspace.LeaderAddress(ctx, s.cfg.Etcd, s.cfg.Prefix)
	if errors.Is(err, keyspace.ErrNoLeader) {
		return nil, status.Error(codes.Unavailable, "no coordinator leads (an election is under way)")
	}
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "coordinator %s: read the leader: %v", s.cfg.ID, err)
	}
	return &dpcnnv1.LeaderResponse{CoordinatorId: s.coordinatorAt(ctx, l.Address), Address: l.Address, Term: l.Term}, nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
