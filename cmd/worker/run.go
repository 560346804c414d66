package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc/credentials"

	"github.com/dpcnn/dpcnn/cluster"
	"github.com/dpcnn/dpcnn/cmd/internal/envflag"
	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/metrics"
	"github.com/dpcnn/dpcnn/secure"
	"github.com/dpcnn/dpcnn/worker"
)

// Environment variables that set flags left unset.
const (
	envCoordinator  = "DPCNN_COORDINATOR"
	envEtcd         = "DPCNN_ETCD_ENDPOINTS"
	envEtcdPrefix   = "DPCNN_ETCD_PREFIX"
	envID           = "DPCNN_WORKER_ID"
	envAddress      = "DPCNN_WORKER_ADDRESS"
	envBackend      = "DPCNN_BACKEND"
	envThreads      = "DPCNN_THREADS"
	envCacheDir     = "DPCNN_CACHE_DIR"
	envLogLevel     = "DPCNN_LOG_LEVEL"
	envTLSCA        = "DPCNN_TLS_CA"
	envTLSCert      = "DPCNN_TLS_CERT"
	envTLSKey       = "DPCNN_TLS_KEY"
	envServerName   = "DPCNN_TLS_SERVER_NAME"
	envEtcdCA       = "DPCNN_ETCD_CA"
	envEtcdCert     = "DPCNN_ETCD_CERT"
	envEtcdKey      = "DPCNN_ETCD_KEY"
	envDrainTimeout = "DPCNN_DRAIN_TIMEOUT"
)

// run is the worker command: it parses args (flags, then the environment
// for those not given) and runs the worker until ctx ends. The worker logs
// to stderr and prints nothing to stdout.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, level, metricsListen, err := parseConfig(args, os.Getenv, stderr)
	if errors.Is(err, pflag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg.Logger.Info("starting worker", "id", cfg.ID, "version", cfg.Version, "coordinator", cfg.Coordinator,
		"etcd", strings.Join(cfg.EtcdEndpoints, ","), "backend", cfg.BackendName, "tls", cfg.Credentials != nil)
	if cfg.Credentials == nil {
		cfg.Logger.Warn("dialing coordinators in plaintext, to loopback addresses only (--insecure)")
	}
	if metricsListen != "" {
		cfg.Metrics = metrics.New()
		addr, err := metrics.Serve(ctx, metricsListen, cfg.Metrics)
		if err != nil {
			return fmt.Errorf("--metrics-listen %s: %w", metricsListen, err)
		}
		cfg.Logger.Info("serving metrics", "address", "http://"+addr.String()+"/metrics")
	}
	return worker.Run(ctx, cfg)
}

// parseConfig turns the command line and the environment into the
// daemon's configuration, the log level and the metrics address; -h prints the help and returns
// pflag.ErrHelp.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (_ worker.DaemonConfig, _ slog.Level, metricsListen string, _ error) {
	var cfg worker.DaemonConfig
	var etcd, level, serverName string
	var tlsFiles, etcdFiles secure.Files
	var insecure, parsed bool
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run a dpcnn worker",
		Long: `Runs a dpcnn worker: it joins the leading coordinator, fetches the data set
from it unless --data is given, and computes gradients until SIGINT or
SIGTERM, which drain it. Every flag may be set by the environment variable
named in its description instead.`,
		Args:          envflag.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		PreRunE:       func(cmd *cobra.Command, _ []string) error { return envflag.Apply(cmd.Flags(), getenv) },
		RunE:          func(*cobra.Command, []string) error { parsed = true; return nil },
	}
	cmd.SetArgs(args)
	cmd.SetOut(stderr)
	cmd.SetErr(stderr)
	fs := cmd.Flags()
	fs.StringVar(&cfg.Coordinator, "coordinator", "", "coordinator gRPC address host:port; empty: the leader found in etcd")
	fs.StringVar(&etcd, "etcd", "", "etcd endpoints, comma separated")
	fs.StringVar(&cfg.Prefix, "etcd-prefix", cluster.DefaultPrefix, "etcd key prefix")
	fs.StringVar(&cfg.ID, "id", defaultID(), "worker id, stable across restarts (default host-pid)")
	fs.StringVar(&cfg.Address, "address", "", "where this worker runs, for people (default the host name)")
	fs.StringVar(&cfg.BackendName, "backend", "cpu", "compute backend: cpu, cuda, auto (CUDA where a device works, else the CPU) or reference")
	fs.IntVar(&cfg.Threads, "threads", 0, "CPU threads; 0: all cores")
	fs.StringVar(&cfg.DataDir, "data", "", "folder with the MNIST files; empty: fetch them from the coordinator")
	fs.StringVar(&cfg.CacheDir, "cache-dir", "", "where fetched data set files are kept (default the user cache folder)")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", worker.DefaultDrainTimeout, "longest wait for the work under way when stopping")
	fs.StringVar(&level, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&tlsFiles.CA, "tls-ca", "", "CA certificate the coordinator's certificate must chain to")
	fs.StringVar(&tlsFiles.Cert, "tls-cert", "", "this worker's client certificate, presented to coordinators and etcd")
	fs.StringVar(&tlsFiles.Key, "tls-key", "", "the key of --tls-cert")
	fs.StringVar(&serverName, "tls-server-name", "", "name the coordinators' certificates carry, when not the host dialed (coordinators that advertise an IP)")
	fs.StringVar(&etcdFiles.CA, "etcd-ca", "", "CA that etcd's certificate chains to; with --etcd-ca, --etcd-cert and --etcd-key all unset, the --tls-* files serve for etcd too")
	fs.StringVar(&etcdFiles.Cert, "etcd-cert", "", "client certificate presented to etcd")
	fs.StringVar(&etcdFiles.Key, "etcd-key", "", "the key of --etcd-cert")
	fs.BoolVar(&insecure, "insecure", false, "allow plaintext to coordinators and etcd where no TLS files are given, on loopback addresses only (1 or true)")
	fs.StringVar(&metricsListen, "metrics-listen", "", "serve Prometheus metrics on /metrics, in plaintext, on this address (host:port); empty: none")
	fs.StringVar(&cfg.ReduceListen, "reduce-listen", "", "serve the reduce service on this address (host:port, e.g. :7071), so the coordinator may appoint this worker a reducer in a tree of reducers; mutual TLS with the --tls-* files (their certificate must name "+secure.WorkerServerName+"); empty: none")
	fs.StringVar(&cfg.ReduceAdvertise, "reduce-advertise", "", "the host:port other workers reach --reduce-listen at (default the listener's address, with --address for an unspecified host: set it to the pod IP in Kubernetes)")
	fs.DurationVar(&cfg.Synthetic, "synthetic", 0, "benchmarks only: skip the math and answer each micro-batch after this long (e.g. 20ms) with a gradient of the job's true size; 0: compute for real")
	envflag.Vars(fs,
		"coordinator", envCoordinator, "etcd", envEtcd, "etcd-prefix", envEtcdPrefix, "id", envID,
		"address", envAddress, "backend", envBackend, "threads", envThreads, "data", dataset.EnvMNISTDir,
		"cache-dir", envCacheDir, "drain-timeout", envDrainTimeout, "log-level", envLogLevel,
		"tls-ca", envTLSCA, "tls-cert", envTLSCert, "tls-key", envTLSKey, "tls-server-name", envServerName,
		"etcd-ca", envEtcdCA, "etcd-cert", envEtcdCert, "etcd-key", envEtcdKey, "insecure", secure.EnvInsecure,
		"metrics-listen", "DPCNN_METRICS_LISTEN", "synthetic", "DPCNN_SYNTHETIC",
		"reduce-listen", "DPCNN_REDUCE_LISTEN", "reduce-advertise", "DPCNN_REDUCE_ADVERTISE")
	if err := cmd.Execute(); err != nil {
		return cfg, 0, "", err
	}
	if !parsed {
		return cfg, 0, "", pflag.ErrHelp // the help was printed
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return cfg, 0, "", fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	cfg.EtcdEndpoints = cluster.SplitEndpoints(etcd)
	if cfg.Coordinator == "" && len(cfg.EtcdEndpoints) == 0 {
		return cfg, 0, "", fmt.Errorf("no coordinator: give --coordinator (%s) or --etcd (%s)", envCoordinator, envEtcd)
	}
	if cfg.Synthetic < 0 {
		return cfg, 0, "", fmt.Errorf("--synthetic %s: must not be negative", cfg.Synthetic)
	}
	if cfg.DrainTimeout <= 0 {
		return cfg, 0, "", fmt.Errorf("--drain-timeout %v: must be positive", cfg.DrainTimeout)
	}
	if err := secureConfig(&cfg, tlsFiles, etcdFiles, serverName, insecure); err != nil {
		return cfg, 0, "", err
	}
	cfg.Version = workerVersion()
	return cfg, lvl, metricsListen, nil
}

// secureConfig loads the worker's TLS files into cfg, or checks that
// plaintext was asked for and stays on loopback. A worker proves itself to
// coordinators with its client certificate.
func secureConfig(cfg *worker.DaemonConfig, tlsFiles, etcdFiles secure.Files, serverName string, insecure bool) error {
	if tlsFiles.IsZero() {
		if !insecure {
			return secure.ErrNoTransportSecurity
		}
		if cfg.Coordinator != "" {
			if err := secure.CheckPlaintext("--insecure: --coordinator", cfg.Coordinator); err != nil {
				return err
			}
		}
	} else {
		if tlsFiles.Cert == "" || tlsFiles.Key == "" {
			return errors.New("--tls-cert and --tls-key are required with --tls-ca: a worker proves itself to coordinators with a client certificate")
		}
		tlsCfg, err := secure.ClientTLS(tlsFiles, serverName)
		if err != nil {
			return err
		}
		cfg.Credentials = credentials.NewTLS(tlsCfg)
		if cfg.ReduceListen != "" {
			// Workers reach each other's reduce service by address; the
			// name they check is the one only the cluster's CA gives out.
			srvCfg, err := secure.WorkerPeerTLS(tlsFiles)
			if err != nil {
				return err
			}
			cfg.ReduceServerCredentials = credentials.NewTLS(srvCfg)
			if cfg.ReduceCredentials, err = worker.ReduceCredentialsFor(tlsFiles); err != nil {
				return err
			}
		}
	}
	if len(cfg.EtcdEndpoints) > 0 {
		etcdTLS, err := secure.EtcdTLS(etcdFiles.Or(tlsFiles), insecure, cfg.EtcdEndpoints)
		if err != nil {
			return err
		}
		cfg.EtcdTLS = etcdTLS
	}
	return nil
}

// defaultID is host-pid, as a valid worker id.
func defaultID() string {
	host, _ := os.Hostname()
	return cluster.DefaultWorkerID(host, os.Getpid())
}

// version is set at build time with -ldflags "-X main.version=..."
// (deploy/docker/build.sh stamps the git description), as in the
// coordinator.
var version string

// workerVersion is the stamped version, else the module version the binary
// was built from.
func workerVersion() string {
	if version != "" {
		return version
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" {
		return info.Main.Version
	}
	return "devel"
}
