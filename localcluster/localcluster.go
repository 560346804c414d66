package localcluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/dpcnn/dpcnn/backends"
	"github.com/dpcnn/dpcnn/cluster"
	"github.com/dpcnn/dpcnn/coordinator"
	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/metrics"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
	"github.com/dpcnn/dpcnn/secure"
	"github.com/dpcnn/dpcnn/worker"
)

// Config describes a cluster run inside this process.
type Config struct {
	Dir      string // working folder: etcd's data, the coordinator's jobs
	Workers  int
	Threads  int    // CPU threads in all, shared among the workers (0: all cores)
	Backend  string // a backends.Open name: "cpu", "reference", …
	MNISTDir string // see dataset.Locate
	Logger   *slog.Logger
	// Version is the build version the coordinator and the workers
	// report (default "local").
	Version string
	// Metrics receives the coordinator's series; nil keeps none. The
	// workers get none of their own: in one process their micro-batch
	// times would count twice, and the coordinator has them already
	// from their results.
	Metrics *metrics.Metrics
	// ParamsDeltaMinWorkers is the coordinator's (ServerConfig's; 0: its
	// default).
	ParamsDeltaMinWorkers int
	// Synthetic, when positive, makes the workers synthetic: they skip
	// the math and answer each micro-batch after this long with a gradient
	// of the job's true size (worker.DaemonConfig.Synthetic).
	Synthetic time.Duration
	// WorkerNetwork, when set, carries the traffic between the
	// coordinator and the workers over another network (a benchmark's
	// emulated one); nil keeps it on 127.0.0.1.
	WorkerNetwork *WorkerNetwork
	// Topology, TreeMinWorkers and TreeFanOut are the coordinator's
	// (ServerConfig's; zero: its defaults). Each worker serves
	// ReduceService over mutual TLS, so that it may be appointed a reducer
	// and a parameter relay: on 127.0.0.1, or on a WorkerNetwork's
	// ReduceListener (without one, a WorkerNetwork's workers reach only
	// the coordinator, and their sums go the star's way).
	Topology       string
	TreeMinWorkers int
	TreeFanOut     int
}

// WorkerNetwork is a network of its own between the coordinator and the
// workers: the coordinator accepts workers on Listener as well as on
// 127.0.0.1 (where cnnctl reaches it), and each worker dials Address with
// its own dialer.
type WorkerNetwork struct {
	// Listener is the coordinator's, in that network; Address the
	// host:port the workers dial (its IP goes into the certificates).
	Listener net.Listener
	Address  string
	// Dialer gives worker i (0-based) its dialer, to the coordinator and
	// to the other workers.
	Dialer func(i int) func(ctx context.Context, addr string) (net.Conn, error)
	// ReduceListener, when set, gives worker i its reduce service's
	// listener in that network, where the other workers reach it.
	ReduceListener func(i int) (net.Listener, error)
}

// Cluster is a whole cluster in this process: an embedded etcd, one
// coordinator and workers, talking gRPC over 127.0.0.1 with the same code
// the daemons run. Train and Test are the data set the workers share.
//
// Nothing goes in plaintext, even on loopback: each cluster makes its own
// CA, certificates and token (secure.NewDevelopmentSet) in Dir/tls, so
// etcd, the coordinator and the workers use mutual TLS, and cnnctl's calls
// carry the token, exactly as in a deployed cluster. Another process on
// the machine cannot call the coordinator without reading those files.
type Cluster struct {
	Coordinator string // the coordinator's gRPC address
	Etcd        []string
	Train, Test *dataset.Set
	// TLSDir holds the cluster's CA, certificates and token, with the
	// names `cnnctl certs` gives them; Transport is how cnnctl reaches
	// the coordinator (the CA and the token).
	TLSDir    string
	Transport secure.Client

	// Failed is closed when a part of the cluster stopped by itself;
	// Err says why.
	Failed chan struct{}
	failed sync.Once
	err    error

	stopWorkers, stopCoordinator context.CancelFunc
	workers, coordinator         sync.WaitGroup
	closers                      []func()
}

// Start starts etcd, the coordinator and the workers, and waits until the
// coordinator leads. Stop stops them all.
func Start(ctx context.Context, cfg Config) (_ *Cluster, err error) {
	if cfg.Workers < 1 {
		return nil, fmt.Errorf("local cluster: %d workers: want at least 1", cfg.Workers)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Version == "" {
		cfg.Version = "local"
	}
	threads := cfg.Threads
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	perWorker := max(1, threads/cfg.Workers)
	mnist, err := dataset.Locate(cfg.MNISTDir)
	if err != nil {
		return nil, err
	}
	lc := &Cluster{Failed: make(chan struct{})}
	defer func() {
		if err != nil {
			lc.Stop()
		}
	}()
	// The workers share one copy of the data set, read and checked once.
	if lc.Train, lc.Test, err = dataset.LoadMNIST(mnist); err != nil {
		return nil, err
	}
	files, err := dataset.MNISTFiles(mnist)
	if err != nil {
		return nil, err
	}

	var hosts []string
	if wn := cfg.WorkerNetwork; wn != nil {
		host, _, err := net.SplitHostPort(wn.Address)
		if err != nil || wn.Listener == nil || wn.Dialer == nil {
			return nil, fmt.Errorf("local cluster: worker network %q: want a listener, a dialer and a host:port address", wn.Address)
		}
		hosts = append(hosts, host)
	}
	pki, err := newLocalPKI(filepath.Join(cfg.Dir, "tls"), hosts)
	if err != nil {
		return nil, err
	}
	lc.TLSDir = pki.dir
	lc.Transport = secure.Client{Files: secure.Files{CA: pki.file(secure.FileCA)}, Token: pki.token}
	endpoints, stopEtcd, err := cluster.StartEmbeddedEtcd(ctx, filepath.Join(cfg.Dir, "etcd"), cluster.WithServerTLS(cluster.TLSFiles{
		CA: pki.file(secure.FileCA), Cert: pki.file(secure.FileEtcdCert), Key: pki.file(secure.FileEtcdKey),
	}))
	if err != nil {
		return nil, err
	}
	lc.Etcd = endpoints
	lc.closers = append(lc.closers, stopEtcd)
	cli, err := cluster.Dial(endpoints, cluster.WithTLS(pki.coordinatorClient))
	if err != nil {
		return nil, err
	}
	lc.closers = append(lc.closers, func() { cli.Close() })

	optimizer, err := backends.Open(cfg.Backend, threads)
	if err != nil {
		return nil, err
	}
	lc.closers = append(lc.closers, func() { backends.Close(optimizer) })
	srv, err := coordinator.NewServer(coordinator.ServerConfig{
		ID: "local", Etcd: cli, DataDir: filepath.Join(cfg.Dir, "coordinator"), MNISTDir: mnist, Train: lc.Train, Test: lc.Test,
		Logger: cfg.Logger, Backend: optimizer, Version: cfg.Version, Metrics: cfg.Metrics,
		// The only coordinator: there is no standby to push checkpoints to.
		Replication: coordinator.ReplicationConfig{Disabled: true},
		Credentials: credentials.NewTLS(pki.coordinatorServer), Tokens: pki.tokens,
		ParamsDeltaMinWorkers: cfg.ParamsDeltaMinWorkers,
		Topology:              cfg.Topology, TreeMinWorkers: cfg.TreeMinWorkers, TreeFanOut: cfg.TreeFanOut,
	})
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("local cluster: coordinator: %w", err)
	}
	lc.Coordinator = lis.Addr().String()
	var serveOn net.Listener = lis
	if wn := cfg.WorkerNetwork; wn != nil {
		serveOn = joinListeners(lis, wn.Listener)
	}
	cctx, stopCoordinator := context.WithCancel(context.WithoutCancel(ctx))
	lc.stopCoordinator = stopCoordinator
	lc.coordinator.Go(func() {
		if err := srv.Serve(cctx, serveOn); err != nil {
			lc.fail(err)
		} else if cctx.Err() == nil {
			lc.fail(errors.New("local cluster: the coordinator stopped"))
		}
	})
	if err := waitLeading(ctx, lc.Coordinator, lc.Transport, lc.Failed); err != nil {
		if ferr := lc.Err(); ferr != nil {
			return nil, ferr
		}
		return nil, err
	}

	wctx, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	lc.stopWorkers = stopWorkers
	for i := range cfg.Workers {
		b, err := backends.Open(cfg.Backend, perWorker)
		if err != nil {
			return nil, err
		}
		wcfg := worker.DaemonConfig{
			ID: fmt.Sprintf("local-%d", i+1), Address: "127.0.0.1", Version: cfg.Version,
			Etcd: cli, Backend: b,
			Train: lc.Train, Test: lc.Test, DatasetFiles: files,
			// Equal workers need no speed test to share the work evenly.
			ImagesPerSec: -1,
			Logger:       cfg.Logger,
			Credentials:  credentials.NewTLS(pki.worker),
			Synthetic:    cfg.Synthetic,
		}
		reduce := true
		if wn := cfg.WorkerNetwork; wn != nil {
			wcfg.Coordinator = wn.Address
			wcfg.DialOptions = []grpc.DialOption{grpc.WithContextDialer(wn.Dialer(i))}
			if reduce = wn.ReduceListener != nil; reduce {
				if wcfg.ReduceListener, err = wn.ReduceListener(i); err != nil {
					return nil, fmt.Errorf("local cluster: worker %s: reduce service: %w", wcfg.ID, err)
				}
			}
		} else {
			wcfg.ReduceListen = "127.0.0.1:0"
		}
		if reduce {
			wcfg.ReduceServerCredentials = credentials.NewTLS(pki.workerServer)
			wcfg.ReduceCredentials = credentials.NewTLS(pki.workerPeer)
		}
		lc.workers.Go(func() {
			defer backends.Close(b)
			if err := worker.Run(wctx, wcfg); err != nil {
				lc.fail(err)
			} else if wctx.Err() == nil {
				lc.fail(fmt.Errorf("local cluster: worker %s stopped", wcfg.ID))
			}
		})
	}
	return lc, nil
}

func (lc *Cluster) fail(err error) {
	lc.failed.Do(func() {
		lc.err = err
		close(lc.Failed)
	})
}

// Err says why a part of the cluster stopped by itself; nil while none has.
func (lc *Cluster) Err() error {
	select {
	case <-lc.Failed:
		return lc.err
	default:
		return nil
	}
}

// Stop drains the workers, then the coordinator, then stops etcd.
func (lc *Cluster) Stop() {
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
func waitLeading(ctx context.Context, addr string, transport secure.Client, failed <-chan struct{}) error {
	opts, err := transport.DialOptions(addr)
	if err != nil {
		return fmt.Errorf("local cluster: coordinator %s: %w", addr, err)
	}
	conn, err := grpc.NewClient(addr, append(opts, grpc.WithDisableServiceConfig())...)
	if err != nil {
		return fmt.Errorf("local cluster: coordinator %s: %w", addr, err)
	}
	defer conn.Close()
	cluster := dpcnnv1.NewClusterServiceClient(conn)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var last error
	for {
		r, err := cluster.Leader(ctx, &dpcnnv1.LeaderRequest{})
		if err == nil && r.AnsweredByLeader {
			return nil
		}
		if err != nil {
			last = err
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

// localPKI is a local cluster's own CA, certificates and token, written
// to dir (etcd reads its certificate from files) and loaded.
type localPKI struct {
	dir               string
	token             string
	tokens            *secure.Tokens
	coordinatorServer *tls.Config // serves gRPC
	coordinatorClient *tls.Config // dials etcd
	worker            *tls.Config // dials the coordinator
	workerServer      *tls.Config // serves ReduceService
	workerPeer        *tls.Config // pushes to another worker's
}

func newLocalPKI(dir string, hosts []string) (*localPKI, error) {
	set, err := secure.NewDevelopmentSet(hosts, 7*24*time.Hour)
	if err != nil {
		return nil, fmt.Errorf("local cluster: %w", err)
	}
	if err := set.Write(dir, false); err != nil {
		return nil, fmt.Errorf("local cluster: %w", err)
	}
	p := &localPKI{dir: dir, token: strings.TrimSpace(string(set.Files[secure.FileToken]))}
	if p.tokens, err = secure.ParseTokens(set.Files[secure.FileToken]); err != nil {
		return nil, fmt.Errorf("local cluster: %w", err)
	}
	coordinator := secure.Files{CA: p.file(secure.FileCA), Cert: p.file(secure.FileCoordinatorCert), Key: p.file(secure.FileCoordinatorKey)}
	if p.coordinatorServer, err = secure.ServerTLS(coordinator, false); err != nil {
		return nil, fmt.Errorf("local cluster: %w", err)
	}
	if p.coordinatorClient, err = secure.ClientTLS(coordinator, ""); err != nil {
		return nil, fmt.Errorf("local cluster: %w", err)
	}
	workerFiles := secure.Files{CA: p.file(secure.FileCA), Cert: p.file(secure.FileWorkerCert), Key: p.file(secure.FileWorkerKey)}
	if p.worker, err = secure.ClientTLS(workerFiles, ""); err != nil {
		return nil, fmt.Errorf("local cluster: %w", err)
	}
	// The workers' reduce services: each other's clients, by certificate.
	if p.workerServer, err = secure.WorkerPeerTLS(workerFiles); err != nil {
		return nil, fmt.Errorf("local cluster: %w", err)
	}
	if p.workerPeer, err = secure.ClientTLS(workerFiles, secure.WorkerServerName); err != nil {
		return nil, fmt.Errorf("local cluster: %w", err)
	}
	return p, nil
}

func (p *localPKI) file(name string) string { return filepath.Join(p.dir, name) }

// TempDir makes a working folder for a local cluster (the caller removes
// it).
func TempDir() (string, error) {
	return os.MkdirTemp("", "dpcnn-local-")
}
