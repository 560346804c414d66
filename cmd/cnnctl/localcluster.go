package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dpcnn/dpcnn/cluster"
	"github.com/dpcnn/dpcnn/coordinator"
	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
	"github.com/dpcnn/dpcnn/worker"
)

// localClusterConfig describes a cluster run inside this process.
type localClusterConfig struct {
	Dir      string // working folder: etcd's data, the coordinator's jobs
	Workers  int
	Threads  int    // CPU threads in all, shared among the workers (0: all cores)
	Backend  string // "cpu" or "reference"
	MNISTDir string // see dataset.Locate
	Logger   *slog.Logger
}

// localCluster is a whole cluster in this process: an embedded etcd, one
// coordinator and workers, talking gRPC over 127.0.0.1 with the same code
// the daemons run. Train and Test are the data set the workers share.
type localCluster struct {
	Coordinator string // the coordinator's gRPC address
	Etcd        []string
	Train, Test *dataset.Set

	// Failed is closed when a part of the cluster stopped by itself;
	// Err says why.
	Failed chan struct{}
	failed sync.Once
	err    error

	stopWorkers, stopCoordinator context.CancelFunc
	workers, coordinator         sync.WaitGroup
	closers                      []func()
}

// startLocalCluster starts etcd, the coordinator and the workers, and waits
// until the coordinator leads. Stop stops them all.
func startLocalCluster(ctx context.Context, cfg localClusterConfig) (_ *localCluster, err error) {
	if cfg.Workers < 1 {
		return nil, fmt.Errorf("local cluster: %d workers: want at least 1", cfg.Workers)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	threads := threadsOr(cfg.Threads)
	perWorker := max(1, threads/cfg.Workers)
	mnist, err := dataset.Locate(cfg.MNISTDir)
	if err != nil {
		return nil, err
	}
	lc := &localCluster{Failed: make(chan struct{})}
	defer func() {
		if err != nil {
			lc.Stop()
		}
	}()
	// The workers share one copy of the data set, read and checked once.
	if lc.Train, lc.Test, err = dataset.LoadMNIST(mnist); err != nil {
		return nil, err
	}
	files, err := worker.LocalDatasetFiles(mnist)
	if err != nil {
		return nil, err
	}

	endpoints, stopEtcd, err := cluster.StartEmbeddedEtcd(ctx, filepath.Join(cfg.Dir, "etcd"))
	if err != nil {
		return nil, err
	}
	lc.Etcd = endpoints
	lc.closers = append(lc.closers, stopEtcd)
	cli, err := cluster.Dial(endpoints)
	if err != nil {
		return nil, err
	}
	lc.closers = append(lc.closers, func() { cli.Close() })

	optimizer, err := newBackend(cfg.Backend, threads)
	if err != nil {
		return nil, err
	}
	if c, ok := optimizer.(interface{ Close() }); ok {
		lc.closers = append(lc.closers, c.Close)
	}
	srv, err := coordinator.NewServer(coordinator.ServerConfig{
		ID: "local", Etcd: cli, DataDir: filepath.Join(cfg.Dir, "coordinator"), MNISTDir: mnist,
		Logger: cfg.Logger, Backend: optimizer, Version: version,
	})
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("local cluster: coordinator: %w", err)
	}
	lc.Coordinator = lis.Addr().String()
	cctx, stopCoordinator := context.WithCancel(context.WithoutCancel(ctx))
	lc.stopCoordinator = stopCoordinator
	lc.coordinator.Go(func() {
		if err := srv.Serve(cctx, lis); err != nil {
			lc.fail(err)
		} else if cctx.Err() == nil {
			lc.fail(errors.New("local cluster: the coordinator stopped"))
		}
	})
	if err := waitLeading(ctx, lc.Coordinator, lc.Failed); err != nil {
		if ferr := lc.Err(); ferr != nil {
			return nil, ferr
		}
		return nil, err
	}

	wctx, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	lc.stopWorkers = stopWorkers
	for i := range cfg.Workers {
		b, err := newBackend(cfg.Backend, perWorker)
		if err != nil {
			return nil, err
		}
		wcfg := worker.DaemonConfig{
			ID: fmt.Sprintf("local-%d", i+1), Address: "127.0.0.1", Version: version,
			Etcd: cli, Backend: b,
			Train: lc.Train, Test: lc.Test, DatasetFiles: files,
			// Equal workers need no speed test to share the work evenly.
			ImagesPerSec: -1,
			Logger:       cfg.Logger,
		}
		lc.workers.Go(func() {
			defer func() {
				if c, ok := b.(interface{ Close() }); ok {
					c.Close()
				}
			}()
			if err := worker.Run(wctx, wcfg); err != nil {
				lc.fail(err)
			} else if wctx.Err() == nil {
				lc.fail(fmt.Errorf("local cluster: worker %s stopped", wcfg.ID))
			}
		})
	}
	return lc, nil
}

// version is the build version the local daemons report.
const version = "cnnctl-local"

func (lc *localCluster) fail(err error) {
	lc.failed.Do(func() {
		lc.err = err
		close(lc.Failed)
	})
}

// Err says why a part of the cluster stopped by itself; nil while none has.
func (lc *localCluster) Err() error {
	select {
	case <-lc.Failed:
		return lc.err
	default:
		return nil
	}
}

// Stop drains the workers, then the coordinator, then stops etcd.
func (lc *localCluster) Stop() {
	if lc.stopWorkers != nil {
		lc.stopWorkers()
		lc.workers.Wait()
	}
	if lc.stopCoordinator != nil {
		lc.stopCoordinator()
		lc.coordinator.Wait()
	}
	for i := len(lc.closers) - 1; i >= 0; i-- {
		lc.closers[i]()
	}
	lc.closers = nil
	lc.failed.Do(func() { close(lc.Failed) })
}

// waitLeading waits until the coordinator at addr says it leads.
func waitLeading(ctx context.Context, addr string, failed <-chan struct{}) error {
	c := &client{timeout: time.Second}
	if err := c.connect(addr); err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var last error
	for {
		r, err := c.cluster().Leader(ctx, &dpcnnv1.LeaderRequest{})
		if err == nil && r.AnsweredByLeader {
			return nil
		}
		if err != nil {
			last = c.describe(err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("local cluster: coordinator %s did not lead in time: %v", addr, last)
		case <-failed:
			return errors.New("local cluster: the coordinator stopped before it led")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// tempClusterDir makes the working folder of a local cluster.
func tempClusterDir() (string, error) {
	return os.MkdirTemp("", "dpcnn-local-")
}
