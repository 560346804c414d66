package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/dpcnn/dpcnn/cluster"
	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/worker"
)

// Environment variables that set flags left unset.
const (
	envCoordinator = "DPCNN_COORDINATOR"
	envEtcd        = "DPCNN_ETCD_ENDPOINTS"
	envEtcdPrefix  = "DPCNN_ETCD_PREFIX"
	envID          = "DPCNN_WORKER_ID"
	envAddress     = "DPCNN_WORKER_ADDRESS"
	envBackend     = "DPCNN_BACKEND"
	envThreads     = "DPCNN_THREADS"
	envCacheDir    = "DPCNN_CACHE_DIR"
	envLogLevel    = "DPCNN_LOG_LEVEL"
)

// run is the worker command: it parses args (flags, then the environment
// for those not given) and runs the worker until ctx ends. The worker logs
// to stderr and prints nothing to stdout.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, level, err := parseConfig(args, os.Getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg.Logger.Info("starting worker", "id", cfg.ID, "version", cfg.Version, "coordinator", cfg.Coordinator,
		"etcd", strings.Join(cfg.EtcdEndpoints, ","), "backend", cfg.BackendName)
	return worker.Run(ctx, cfg)
}

// parseConfig turns the command line and the environment into the
// daemon's configuration and the log level.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (worker.DaemonConfig, slog.Level, error) {
	var cfg worker.DaemonConfig
	var etcd, level string
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: worker [flags]

Runs a dpcnn worker: it joins the leading coordinator, fetches the data set
from it unless --data is given, and computes gradients until SIGINT or
SIGTERM, which drain it. Every flag may be set by the environment variable
named in its description instead.

Flags:
`)
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.Coordinator, "coordinator", getenv(envCoordinator),
		"coordinator gRPC address host:port; empty: the leader found in etcd ("+envCoordinator+")")
	fs.StringVar(&etcd, "etcd", getenv(envEtcd), "etcd endpoints, comma separated ("+envEtcd+")")
	fs.StringVar(&cfg.Prefix, "etcd-prefix", envOr(getenv, envEtcdPrefix, cluster.DefaultPrefix), "etcd key prefix ("+envEtcdPrefix+")")
	fs.StringVar(&cfg.ID, "id", envOr(getenv, envID, defaultID()), "worker id, stable across restarts ("+envID+"; default host-pid)")
	fs.StringVar(&cfg.Address, "address", getenv(envAddress), "where this worker runs, for people ("+envAddress+"; default the host name)")
	fs.StringVar(&cfg.BackendName, "backend", envOr(getenv, envBackend, "cpu"), "compute backend: cpu or reference ("+envBackend+")")
	threads, err := envInt(getenv, envThreads)
	if err != nil {
		return cfg, 0, err
	}
	fs.IntVar(&cfg.Threads, "threads", threads, "CPU threads; 0: all cores ("+envThreads+")")
	fs.StringVar(&cfg.DataDir, "data", getenv(dataset.EnvMNISTDir),
		"folder with the MNIST files; empty: fetch them from the coordinator ("+dataset.EnvMNISTDir+")")
	fs.StringVar(&cfg.CacheDir, "cache-dir", getenv(envCacheDir),
		"where fetched data set files are kept ("+envCacheDir+"; default the user cache folder)")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", worker.DefaultDrainTimeout, "longest wait for the work under way when stopping")
	fs.StringVar(&level, "log-level", envOr(getenv, envLogLevel, "info"), "log level: debug, info, warn or error ("+envLogLevel+")")
	if err := fs.Parse(args); err != nil {
		return cfg, 0, err
	}
	if fs.NArg() > 0 {
		return cfg, 0, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return cfg, 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	cfg.EtcdEndpoints = cluster.SplitEndpoints(etcd)
	if cfg.Coordinator == "" && len(cfg.EtcdEndpoints) == 0 {
		return cfg, 0, fmt.Errorf("no coordinator: give --coordinator (%s) or --etcd (%s)", envCoordinator, envEtcd)
	}
	if cfg.DrainTimeout <= 0 {
		return cfg, 0, fmt.Errorf("--drain-timeout %v: must be positive", cfg.DrainTimeout)
	}
	cfg.Version = version()
	return cfg, lvl, nil
}

func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}

func envInt(getenv func(string) string, name string) (int, error) {
	v := getenv(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%q: not a whole number", name, v)
	}
	return n, nil
}

// defaultID is host-pid, cut to the characters and length a worker id
// allows.
func defaultID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "worker"
	}
	host = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' {
			return r
		}
		return '-'
	}, host)
	suffix := "-" + strconv.Itoa(os.Getpid())
	return host[:min(len(host), 63-len(suffix))] + suffix
}

// version is the module version the binary was built from.
func version() string {
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" {
		return info.Main.Version
	}
	return "devel"
}
