// Command coordinator runs a dpcnn coordinator: it campaigns for
// leadership in etcd and, while it leads, queues and runs training jobs on
// the workers that join it. Standbys answer clients with the leader's
// address and take over when it dies.
//
// Every flag has an environment variable, for containers:
//
//	coordinator --etcd http://etcd:2379 --data-dir /var/lib/dpcnn --advertise coordinator-0.coordinator:7070
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/dpcnn/dpcnn/cluster"
	"github.com/dpcnn/dpcnn/coordinator"
	"github.com/dpcnn/dpcnn/kernels"
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
	logLevel          string
}

// run parses args, serves until ctx ends, then drains: the running job
// stops at its latest checkpoint and the leadership passes to a standby.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
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
	cli, err := cluster.Dial(endpoints)
	if err != nil {
		return err
	}
	defer cli.Close()

	backend := kernels.NewCPU(cfg.threads)
	defer backend.Close()
	srv, err := coordinator.NewServer(coordinator.ServerConfig{
		ID: cfg.id, Advertise: cfg.advertise, Etcd: cli, Prefix: cfg.prefix,
		DataDir: cfg.dataDir, MNISTDir: cfg.mnistDir, Logger: logger, Backend: backend, Version: version,
	})
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.listen, err)
	}
	fmt.Fprintf(stdout, "coordinator %s listening on %s\n", cfg.id, lis.Addr())
	return srv.Serve(ctx, lis)
}

// parseFlags reads the flags over defaults from the environment.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	host, _ := os.Hostname()
	defaultID := fmt.Sprintf("%s-%d", host, os.Getpid())
	if host == "" {
		defaultID = fmt.Sprintf("coordinator-%d", os.Getpid())
	}
	var cfg config
	fs := flag.NewFlagSet("coordinator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.listen, "listen", env("DPCNN_LISTEN", "127.0.0.1:7070"), "gRPC listen address (DPCNN_LISTEN)")
	fs.StringVar(&cfg.advertise, "advertise", env("DPCNN_ADVERTISE", ""), "address clients and workers dial, when not the listen address (DPCNN_ADVERTISE)")
	fs.StringVar(&cfg.etcd, "etcd", env("DPCNN_ETCD_ENDPOINTS", ""), "etcd endpoints, comma-separated (DPCNN_ETCD_ENDPOINTS)")
	fs.StringVar(&cfg.prefix, "etcd-prefix", env("DPCNN_ETCD_PREFIX", cluster.DefaultPrefix), "etcd key prefix (DPCNN_ETCD_PREFIX)")
	fs.StringVar(&cfg.dataDir, "data-dir", env("DPCNN_DATA_DIR", "dpcnn-data"), "folder for checkpoints and models; share it between coordinators so a standby resumes jobs (DPCNN_DATA_DIR)")
	fs.StringVar(&cfg.mnistDir, "mnist", env("DPCNN_MNIST_DIR", ""), "folder of the MNIST files served to workers; empty fetches them through the Go module proxy (DPCNN_MNIST_DIR)")
	fs.StringVar(&cfg.id, "id", env("DPCNN_ID", defaultID), "this coordinator's id (DPCNN_ID)")
	fs.IntVar(&cfg.threads, "threads", 0, "threads applying optimizer updates; 0 uses every core")
	fs.StringVar(&cfg.logLevel, "log-level", env("DPCNN_LOG_LEVEL", "info"), "debug, info, warn or error (DPCNN_LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
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

func env(name, fallback string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return fallback
}
