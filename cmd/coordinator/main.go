package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/dpcnn/dpcnn/cluster"
	"github.com/dpcnn/dpcnn/cmd/internal/envflag"
	"github.com/dpcnn/dpcnn/coordinator"
	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/metrics"
	"github.com/dpcnn/dpcnn/secure"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "coordinator:", err)
		stop()
		os.Exit(1)
	}
}

// config is what the flags and environment say.
type config struct {
	listen, advertise string
	etcd, prefix      string
	dataDir, mnistDir string
	id                string
	threads           int
	deltaMinWorkers   int
	topology          string
	treeMinWorkers    int
	treeFanOut        int
	logLevel          string
	healthListen      string
	metricsListen     string

	tls      secure.Files // the gRPC server's certificate, key and client CA
	etcdTLS  secure.Files // etcd's CA and this client's certificate; default tls
	token    string       // file of cnnctl's bearer tokens
	insecure bool         // plaintext allowed where no TLS is configured, on loopback

	// replicate pushes the leader's checkpoints and models to the standbys
	// over gRPC (tls's certificate is the client certificate; serverName
	// the name in the others' certificate, when they are dialed by IP),
	// waiting at most replicationTimeout for each.
	replicate          bool
	replicationTimeout time.Duration
	serverName         string
}

// run parses args, serves until ctx ends, then drains: the running job
// stops at its latest checkpoint and the leadership passes to a standby.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, os.Getenv, stderr)
	if errors.Is(err, pflag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", cfg.logLevel)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	endpoints := cluster.SplitEndpoints(cfg.etcd)
	if len(endpoints) == 0 {
		return errors.New("no etcd endpoints: set --etcd or DPCNN_ETCD_ENDPOINTS")
	}
	creds, tokens, err := secure.Server{Files: cfg.tls, TokenFile: cfg.token, Insecure: cfg.insecure}.Load(cfg.listen)
	if err != nil {
		return err
	}
	etcdTLS, err := secure.EtcdTLS(cfg.etcdTLS.Or(cfg.tls), cfg.insecure, endpoints)
	if err != nil {
		return err
	}
	var etcdOpts []cluster.DialOption
	if etcdTLS != nil {
		etcdOpts = append(etcdOpts, cluster.WithTLS(etcdTLS))
	}
	cli, err := cluster.Dial(endpoints, etcdOpts...)
	if err != nil {
		return err
	}
	defer cli.Close()
	switch {
	case creds == nil:
		logger.Warn("serving plaintext on a loopback address (--insecure): no credentials are checked")
	case tokens == nil:
		logger.Warn("no --token-file: job and cluster calls need a client certificate, and any certificate the CA signed (a worker's too) may make them")
	}

	// The other coordinators are dialed with this one's certificate, which
	// is also a client certificate, and recognised by it when they push.
	replication := coordinator.ReplicationConfig{Disabled: !cfg.replicate, Timeout: cfg.replicationTimeout}
	if creds != nil {
		if replication.ClientTLS, err = secure.ClientTLS(cfg.tls, cfg.serverName); err != nil {
			return fmt.Errorf("replication: %w", err)
		}
	}

	var m *metrics.Metrics
	if cfg.metricsListen != "" {
		m = metrics.New()
		addr, err := metrics.Serve(ctx, cfg.metricsListen, m)
		if err != nil {
			return fmt.Errorf("--metrics-listen %s: %w", cfg.metricsListen, err)
		}
		logger.Info("serving metrics", "address", "http://"+addr.String()+"/metrics")
	}

	backend := kernels.NewCPU(cfg.threads)
	defer backend.Close()
	srv, err := coordinator.NewServer(coordinator.ServerConfig{
		Metrics: m,
		ID:      cfg.id, Advertise: cfg.advertise, Etcd: cli, Prefix: cfg.prefix,
		DataDir: cfg.dataDir, MNISTDir: cfg.mnistDir, Logger: logger, Backend: backend, Version: version,
		Credentials: creds, Tokens: tokens, Replication: replication,
		ParamsDeltaMinWorkers: cfg.deltaMinWorkers,
		Topology:              cfg.topology, TreeMinWorkers: cfg.treeMinWorkers, TreeFanOut: cfg.treeFanOut,
	})
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.listen, err)
	}
	if cfg.healthListen != "" {
		stopHealth, err := serveHealth(cfg.healthListen, srv.Health(), logger)
		if err != nil {
			lis.Close()
			return err
		}
		defer stopHealth()
	}
	fmt.Fprintf(stdout, "coordinator %s listening on %s\n", cfg.id, lis.Addr())
	return srv.Serve(ctx, lis)
}

// serveHealth serves gRPC health checking alone, in plaintext, on addr:
// for probes that speak no TLS (Kubernetes' gRPC probes). It tells
// nothing but whether the coordinator serves and leads.
func serveHealth(addr string, h healthpb.HealthServer, logger *slog.Logger) (stop func(), err error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--health-listen %s: %w", addr, err)
	}
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, h)
	go func() {
		if err := s.Serve(lis); err != nil {
			logger.Error("health listener", "address", addr, "err", err)
		}
	}()
	logger.Info("serving plaintext gRPC health checks only", "address", lis.Addr().String())
	return s.Stop, nil
}

// newCommand is the coordinator's command, its flags bound to cfg and
// their environment variables read through getenv.
func newCommand(cfg *config, getenv func(string) string) *cobra.Command {
	host, _ := os.Hostname()
	defaultID := fmt.Sprintf("%s-%d", host, os.Getpid())
	if host == "" {
		defaultID = fmt.Sprintf("coordinator-%d", os.Getpid())
	}
	cmd := &cobra.Command{
		Use:   "coordinator",
		Short: "Run a dpcnn coordinator",
		Long: `Runs a dpcnn coordinator: it campaigns for leadership in etcd and, while it
leads, queues and runs training jobs on the workers that join it. Every flag
may be set by the environment variable named in its description instead.`,
		Args:          envflag.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		PreRunE:       func(cmd *cobra.Command, _ []string) error { return envflag.Apply(cmd.Flags(), getenv) },
	}
	fs := cmd.Flags()
	fs.StringVar(&cfg.listen, "listen", "127.0.0.1:7070", "gRPC listen address")
	fs.StringVar(&cfg.advertise, "advertise", "", "address clients and workers dial, when not the listen address")
	fs.StringVar(&cfg.etcd, "etcd", "", "etcd endpoints, comma-separated")
	fs.StringVar(&cfg.prefix, "etcd-prefix", cluster.DefaultPrefix, "etcd key prefix")
	fs.StringVar(&cfg.dataDir, "data-dir", "dpcnn-data", "folder for checkpoints and models, this coordinator's own: the leader pushes them to the standbys' (--replicate), or one shared by the coordinators")
	fs.StringVar(&cfg.mnistDir, "mnist", "", "folder of the MNIST files served to workers; empty fetches them through the Go module proxy")
	fs.StringVar(&cfg.id, "id", defaultID, "this coordinator's id")
	fs.IntVar(&cfg.threads, "threads", 0, "threads applying optimizer updates; 0 uses every core")
	fs.IntVar(&cfg.deltaMinWorkers, "params-delta-min-workers", coordinator.DefaultParamsDeltaMinWorkers, "send parameters as deltas from the version before once a job has this many live workers (1: always); they cost about 0.15 ms of a step and save 38% of the parameter bytes, which pays from about 8 workers on 10 Gbit/s links, sooner on slower ones")
	fs.StringVar(&cfg.topology, "topology", coordinator.TopologyAuto, "how gradient sums reach the coordinator: star (each worker sends its own), tree (up a tree of reducers: the workers run with --reduce-listen) or auto (the tree once --tree-min-workers such workers are in a job); the parameters are bit for bit the same either way")
	fs.IntVar(&cfg.treeMinWorkers, "tree-min-workers", coordinator.DefaultTreeMinWorkers, "with --topology auto, the live workers serving the reduce service from which a job's sums go up a tree")
	fs.IntVar(&cfg.treeFanOut, "tree-fan-out", coordinator.DefaultTreeFanOut, "the most sums a reducer adds, and the most that reach the coordinator a step (2 or more)")
	fs.StringVar(&cfg.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&cfg.tls.CA, "tls-ca", "", "CA certificate that workers' and cnnctl's client certificates must chain to")
	fs.StringVar(&cfg.tls.Cert, "tls-cert", "", "this coordinator's TLS certificate; with clientAuth usage, also presented to etcd")
	fs.StringVar(&cfg.tls.Key, "tls-key", "", "the key of --tls-cert")
	fs.StringVar(&cfg.token, "token-file", "", "file of the bearer tokens cnnctl's calls must carry, one a line (or sha256:HEX); empty: they need a client certificate")
	fs.StringVar(&cfg.etcdTLS.CA, "etcd-ca", "", "CA that etcd's certificate chains to; with --etcd-ca, --etcd-cert and --etcd-key all unset, the --tls-* files serve for etcd too")
	fs.StringVar(&cfg.etcdTLS.Cert, "etcd-cert", "", "client certificate presented to etcd")
	fs.StringVar(&cfg.etcdTLS.Key, "etcd-key", "", "the key of --etcd-cert")
	fs.StringVar(&cfg.serverName, "tls-server-name", "", "name in the other coordinators' certificate, when they are dialed by IP (Kubernetes) to push checkpoints")
	fs.BoolVar(&cfg.replicate, "replicate", true, "when leading, push every checkpoint and model to the standby coordinators' data folders and wait for them (up to --replication-timeout) before recording it; false where the coordinators share --data-dir")
	fs.DurationVar(&cfg.replicationTimeout, "replication-timeout", 10*time.Second, "how long the leader waits for each standby to store a checkpoint before it goes on without it")
	fs.BoolVar(&cfg.insecure, "insecure", false, "allow plaintext gRPC and etcd where no TLS files are given, on loopback addresses only (1 or true)")
	fs.StringVar(&cfg.metricsListen, "metrics-listen", "", "serve Prometheus metrics on /metrics, in plaintext, on this address (host:port); empty: none")
	fs.StringVar(&cfg.healthListen, "health-listen", "", "also serve gRPC health checks alone, in plaintext, on this address, for probes that speak no TLS")
	envflag.Vars(fs,
		"listen", "DPCNN_LISTEN", "advertise", "DPCNN_ADVERTISE", "etcd", "DPCNN_ETCD_ENDPOINTS",
		"etcd-prefix", "DPCNN_ETCD_PREFIX", "data-dir", "DPCNN_DATA_DIR", "mnist", "DPCNN_MNIST_DIR",
		"id", "DPCNN_ID", "threads", "DPCNN_THREADS", "log-level", "DPCNN_LOG_LEVEL",
		"params-delta-min-workers", "DPCNN_PARAMS_DELTA_MIN_WORKERS",
		"topology", "DPCNN_TOPOLOGY", "tree-min-workers", "DPCNN_TREE_MIN_WORKERS", "tree-fan-out", "DPCNN_TREE_FAN_OUT",
		"tls-ca", "DPCNN_TLS_CA", "tls-cert", "DPCNN_TLS_CERT", "tls-key", "DPCNN_TLS_KEY",
		"token-file", "DPCNN_TOKEN_FILE", "etcd-ca", "DPCNN_ETCD_CA", "etcd-cert", "DPCNN_ETCD_CERT",
		"etcd-key", "DPCNN_ETCD_KEY", "tls-server-name", "DPCNN_TLS_SERVER_NAME",
		"replicate", "DPCNN_REPLICATE", "replication-timeout", "DPCNN_REPLICATION_TIMEOUT",
		"insecure", secure.EnvInsecure, "health-listen", "DPCNN_HEALTH_LISTEN",
		"metrics-listen", "DPCNN_METRICS_LISTEN")
	return cmd
}

// parseFlags reads the command line and, for the flags it leaves unset,
// the environment (getenv: os.Getenv, or a test's); -h prints the help and
// returns pflag.ErrHelp.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var cfg config
	parsed := false
	cmd := newCommand(&cfg, getenv)
	cmd.RunE = func(*cobra.Command, []string) error { parsed = true; return nil }
	cmd.SetArgs(args)
	cmd.SetOut(stderr)
	cmd.SetErr(stderr)
	if err := cmd.Execute(); err != nil {
		return config{}, err
	}
	if !parsed {
		return config{}, pflag.ErrHelp // the help was printed
	}
	if cfg.replicationTimeout <= 0 {
		return config{}, fmt.Errorf("--replication-timeout %s: want a positive duration", cfg.replicationTimeout)
	}
	if cfg.deltaMinWorkers < 1 {
		return config{}, fmt.Errorf("--params-delta-min-workers %d: want 1 or more", cfg.deltaMinWorkers)
	}
	if err := coordinator.CheckTopology(cfg.topology); err != nil {
		return config{}, fmt.Errorf("--topology: %w", err)
	}
	if cfg.treeMinWorkers < 1 {
		return config{}, fmt.Errorf("--tree-min-workers %d: want 1 or more", cfg.treeMinWorkers)
	}
	if cfg.treeFanOut < 2 {
		return config{}, fmt.Errorf("--tree-fan-out %d: want 2 or more: a reducer adds at least two sums", cfg.treeFanOut)
	}
	if cfg.dataDir != "" {
		abs, err := filepath.Abs(cfg.dataDir)
		if err != nil {
			return config{}, fmt.Errorf("--data-dir %s: %w", cfg.dataDir, err)
		}
		cfg.dataDir = abs
	}
	return cfg, nil
}
