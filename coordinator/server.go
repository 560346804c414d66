package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	keyspace "github.com/dpcnn/dpcnn/cluster"
	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/metrics"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
	"github.com/dpcnn/dpcnn/secure"
	"github.com/dpcnn/dpcnn/train"
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
	// DataDir holds the jobs' checkpoints and models, in jobs/<id>/. Each
	// coordinator may have its own: the leader pushes every checkpoint and
	// model to the standbys' folders (Replication), so that a standby that
	// takes over resumes from the latest checkpoint. Coordinators may also
	// share one folder.
	DataDir string
	// MNISTDir is the folder of the MNIST files the coordinator serves to
	// workers and sizes jobs by (see dataset.Locate; empty searches).
	MNISTDir string
	// Train and Test, when both are set, are the MNIST sets already read
	// from MNISTDir, so that a process running several coordinators (a
	// test) reads and decompresses them once; nil reads them.
	Train, Test *dataset.Set
	// Logger receives the coordinator's logs (default: none).
	Logger *slog.Logger
	// Backend applies the optimizer updates; nil makes a CPU backend with
	// every core, which the server closes when Serve returns.
	Backend kernels.Backend[float32]
	// Version is the coordinator's build version, for logs.
	Version string
	// Metrics receives the coordinator's series (the jobs', its state at
	// each scrape, its gRPC server's); nil keeps none. Each coordinator of
	// a process needs its own: the gRPC series register once per registry.
	Metrics *metrics.Metrics

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
	// ParamsDeltaMinWorkers is the number of live workers from which a job
	// sends parameters as deltas to the workers that take them (default
	// DefaultParamsDeltaMinWorkers; 1: always). See paramsOut.
	ParamsDeltaMinWorkers int
	// Topology is how a step's gradient sums reach the coordinator:
	// TopologyStar (every worker sends its own), TopologyTree (up a tree of
	// reducers, the workers that serve ReduceService, whenever two or more
	// do) or TopologyAuto, the default: the tree once TreeMinWorkers of
	// the job's live workers serve ReduceService. TreeFanOut is the most
	// sums a reducer adds, and the most that reach the coordinator a step
	// (default DefaultTreeFanOut). See jobs_driver_tree.go.
	Topology       string
	TreeMinWorkers int
	TreeFanOut     int
	// Engine tunes the training engine of every job.
	Engine train.EngineConfig
	// Clock is the time of the jobs' drivers: the engines' Ticks, the
	// times in job statuses, throughput (default time.Now). The ticker
	// that paces the Ticks and the leadership's lease keeping run on real
	// time regardless.
	Clock train.Clock
	// Replication says how the leader's checkpoints and models reach the
	// standby coordinators' own data folders (see replication.go).
	Replication ReplicationConfig

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
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.ParamsDeltaMinWorkers <= 0 {
		c.ParamsDeltaMinWorkers = DefaultParamsDeltaMinWorkers
	}
	if c.Topology == "" {
		c.Topology = TopologyAuto
	}
	if c.TreeMinWorkers <= 0 {
		c.TreeMinWorkers = DefaultTreeMinWorkers
	}
	if c.TreeFanOut <= 0 {
		c.TreeFanOut = DefaultTreeFanOut
	}
	c.Replication = c.Replication.withDefaults()
	return c
}

// Server is a coordinator: it serves JobService, WorkerService,
// ClusterService and ReplicationService, gRPC health and reflection on one
// listener, campaigns for leadership in etcd and, while it leads, runs the
// queued jobs one at a time (oldest first) with the workers that join it
// and pushes their checkpoints to the standbys. A follower answers
// UNAVAILABLE naming the leader, and stores what the leader pushes.
type Server struct {
	dpcnnv1.UnimplementedJobServiceServer
	dpcnnv1.UnimplementedWorkerServiceServer
	dpcnnv1.UnimplementedClusterServiceServer

	cfg        ServerConfig
	log        *slog.Logger
	backend    kernels.Backend[float32]
	ownBackend bool

	trainLen, testLen int
	data              job.Data            // what every job is checked against at submission
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
	case cfg.TreeFanOut < 2:
		return nil, fmt.Errorf("coordinator: server: a tree fan-out of %d: a reducer adds at least 2 sums", cfg.TreeFanOut)
	}
	if err := CheckTopology(cfg.Topology); err != nil {
		return nil, fmt.Errorf("coordinator: server: %w", err)
	}
	dir, err := dataset.Locate(cfg.MNISTDir)
	if err != nil {
		return nil, fmt.Errorf("coordinator: server: %w", err)
	}
	train, test := cfg.Train, cfg.Test
	if train == nil || test == nil {
		if train, test, err = dataset.LoadMNIST(dir); err != nil {
			return nil, fmt.Errorf("coordinator: server: %w", err)
		}
	}
	described, err := dataset.MNISTFiles(dir)
	if err != nil {
		return nil, fmt.Errorf("coordinator: server: %w", err)
	}
	files := make([]*dpcnnv1.FileInfo, len(described))
	paths := make(map[string]string, len(files))
	for i, f := range described {
		files[i] = fileInfo(f)
		paths[f.Name] = filepath.Join(dir, f.Name)
	}
	s := &Server{
		cfg: cfg, log: cfg.Logger.With("coordinator", cfg.ID),
		backend:  cfg.Backend,
		trainLen: train.Len(), testLen: test.Len(), data: job.DataOf(train, test),
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
	unary := []grpc.UnaryServerInterceptor{auth.UnaryInterceptor()}
	stream := []grpc.StreamServerInterceptor{auth.StreamInterceptor()}
	var grpcMetrics *grpcprom.ServerMetrics
	if cfg.Metrics != nil {
		// After the credentials (a refused call is not served, so not
		// counted) and before the gate, so that a follower's refusals
		// show as the UNAVAILABLE answers they are.
		grpcMetrics = grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram())
		if err := cfg.Metrics.Registry().Register(grpcMetrics); err != nil {
			return nil, fmt.Errorf("coordinator: server: gRPC metrics: %w", err)
		}
		unary = append(unary, grpcMetrics.UnaryServerInterceptor())
		stream = append(stream, grpcMetrics.StreamServerInterceptor())
	}
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(dpcnnv1.MaxMessageSize),
		grpc.MaxSendMsgSize(dpcnnv1.MaxMessageSize),
		grpc.InitialWindowSize(dpcnnv1.WindowSize),
		grpc.InitialConnWindowSize(dpcnnv1.WindowSize),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.ChainUnaryInterceptor(append(unary, s.unaryGate)...),
		grpc.ChainStreamInterceptor(append(stream, s.streamGate)...),
	}
	if cfg.Credentials != nil {
		opts = append(opts, grpc.Creds(secure.LogRefusedHandshakes(cfg.Credentials, s.log)))
	}
	s.grpc = grpc.NewServer(opts...)
	dpcnnv1.RegisterJobServiceServer(s.grpc, s)
	dpcnnv1.RegisterWorkerServiceServer(s.grpc, s)
	dpcnnv1.RegisterClusterServiceServer(s.grpc, s)
	replicas, err := newReplicaReceiver(s)
	if err != nil {
		return nil, err
	}
	dpcnnv1.RegisterReplicationServiceServer(s.grpc, replicas)
	s.health = health.NewServer()
	s.setServiceHealth(false)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	if grpcMetrics != nil {
		grpcMetrics.InitializeMetrics(s.grpc) // every method's series from zero
		cfg.Metrics.ReportState(s.metricsState)
	}
	return s, nil
}

// metricsState is what the coordinator's gauges read at each scrape.
func (s *Server) metricsState() metrics.State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := metrics.State{Leader: s.lead != nil, WorkersLive: len(s.workers), Jobs: map[string]int{}}
	for n := range dpcnnv1.JobState_name {
		// Every state from zero, so that a dashboard's series exist
		// before the first job reaches them.
		if js := dpcnnv1.JobState(n); js != dpcnnv1.JobState_JOB_STATE_UNSPECIFIED {
			st.Jobs[js.Word()] = 0
		}
	}
	for _, e := range s.jobs {
		st.Jobs[e.status.State.Word()]++
	}
	return st
}

// requirement says what a call must prove: nothing for health checks
// (probes), a client certificate for the workers' service and for the
// coordinators' replication (whose handler also checks that it is a
// coordinator's), a certificate or a token to ask where the leader is
// (workers and cnnctl both ask), and cnnctl's token for the rest,
// reflection included.
func requirement(method string) secure.Requirement {
	switch {
	case strings.HasPrefix(method, "/"+healthpb.Health_ServiceDesc.ServiceName+"/"):
		return secure.Open
	case strings.HasPrefix(method, "/"+dpcnnv1.WorkerService_ServiceDesc.ServiceName+"/"),
		strings.HasPrefix(method, "/"+dpcnnv1.ReplicationService_ServiceDesc.ServiceName+"/"):
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
	s.health.SetServingStatus(dpcnnv1.ReplicationService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
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
	// Refusals that clients may ask again, as notLeader's are.
	if errors.Is(err, keyspace.ErrNoLeader) {
		return nil, notLeading(&dpcnnv1.LeaderResponse{}, "no coordinator leads (an election is under way)")
	}
	if err != nil {
		return nil, notLeading(&dpcnnv1.LeaderResponse{}, "coordinator %s: read the leader: %v", s.cfg.ID, err)
	}
	return &dpcnnv1.LeaderResponse{CoordinatorId: s.coordinatorAt(ctx, l.Address), Address: l.Address, Term: l.Term}, nil
}
