package worker

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
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/dpcnn/dpcnn/backends"
	"github.com/dpcnn/dpcnn/cluster"
	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/metrics"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// DaemonConfig configures a worker process (Run). Zero fields take the
// defaults their comments give.
type DaemonConfig struct {
	// ID names the worker stably across reconnections (a pod name, or host
	// and process id): 1 to 63 characters of [a-zA-Z0-9._-]. Required.
	ID string
	// Address is where the worker runs, for people (default: the host
	// name). Version is the worker's build version.
	Address string
	Version string

	// Coordinator is the gRPC address (host:port) of the coordinator to
	// dial. When empty, the worker dials the leader that etcd names, and
	// follows it when the leadership moves.
	Coordinator string
	// Etcd is the cluster's etcd, where the worker registers itself under a
	// lease and finds the leader; EtcdEndpoints makes a client when Etcd is
	// nil (closed by Run). Without either the worker does not register,
	// and Coordinator is required.
	Etcd          *clientv3.Client
	EtcdEndpoints []string
	// Prefix is the etcd key prefix (default cluster.DefaultPrefix);
	// RegistrationTTL the lease of the worker's record (default
	// cluster.DefaultWorkerTTL).
	Prefix          string
	RegistrationTTL time.Duration

	// Backend computes the gradients; the daemon uses it from one goroutine
	// and nothing else may use it meanwhile. When nil, Run makes the
	// BackendName backend ("cpu", the default, or "reference") with
	// Threads threads (0: all cores) and closes it at the end.
	Backend     kernels.Backend[float32]
	BackendName string
	Threads     int

	// Where the data set comes from, in this order: Train and Test, sets
	// already in memory that DatasetFiles describes to the coordinator
	// (for workers run in process); else the MNIST files in DataDir
	// (loaded with dataset.LoadMNIST); else the coordinator's files,
	// fetched with FetchDataset and kept in CacheDir (default: the user's
	// cache folder, dpcnn/datasets).
	Train, Test  *dataset.Set
	DatasetFiles []dataset.File
	DataDir      string
	CacheDir     string

	// ImagesPerSec is the training throughput the worker joins with: when
	// 0, Run measures it at start with a few micro-batches of the deep
	// network; when negative, the worker reports none.
	ImagesPerSec float64
	// Synthetic, when positive, makes a synthetic worker: it skips the
	// math and answers each micro-batch after this long with a gradient of
	// the job's true size (fixed values; its evaluations count nothing
	// correct). Everything else, from the stream to the coordinator's
	// reduction, is the real thing: benchmarks use it to measure the
	// coordinator with more workers than the machine could compute for.
	// It joins with no speed of its own unless ImagesPerSec gives one.
	Synthetic time.Duration
	// EvalBatch is the batch size of evaluations (default 256).
	EvalBatch int

	// RetryMin and RetryMax bound the exponential backoff, with jitter,
	// between attempts to reach the coordinator (defaults 100 ms and 5 s).
	RetryMin, RetryMax time.Duration
	// DrainTimeout bounds the graceful drain when ctx ends: the worker
	// finishes the subtree it computes, unless it takes longer than this
	// (default 30 s), and then leaves.
	DrainTimeout time.Duration
	// HeartbeatInterval is used when the coordinator names none (default
	// 1 s).
	HeartbeatInterval time.Duration

	// Logger receives the daemon's logs (default: none).
	Logger *slog.Logger
	// Metrics receives the worker's series (its micro-batches' compute
	// time); nil keeps none.
	Metrics *metrics.Metrics
	// DialOptions are added to the gRPC dial options; transport security
	// goes in Credentials, not here.
	DialOptions []grpc.DialOption
	// Credentials secure the connections to coordinators: TLS presenting
	// the worker's client certificate (credentials.NewTLS with
	// secure.ClientTLS). Nil dials plaintext, which the worker allows only
	// to loopback addresses: a coordinator elsewhere is refused.
	Credentials credentials.TransportCredentials
	// EtcdTLS secures the etcd client made from EtcdEndpoints (nil:
	// plaintext, to loopback endpoints only).
	EtcdTLS *tls.Config

	// ReduceListen, when set, is where the worker serves ReduceService
	// (host:port; port 0 picks one), so that the coordinator may appoint
	// it a reducer in a tree of reducers; ReduceAdvertise is the address
	// the other workers reach it at (default: the listener's, with Address
	// for an unspecified host). ReduceServerCredentials secure that
	// server (TLS with the worker's certificate, client certificates
	// required); ReduceCredentials the pushes to other workers' (see
	// ReduceCredentialsFor). Nil is plaintext, allowed on loopback only.
	ReduceListen            string
	ReduceAdvertise         string
	ReduceServerCredentials credentials.TransportCredentials
	ReduceCredentials       credentials.TransportCredentials
	// ReduceListener, when set, is a listener the caller made (in a
	// network namespace of an emulated network, say) that the reduce
	// service takes in place of listening on ReduceListen; Run closes it.
	ReduceListener net.Listener
}

// Defaults of DaemonConfig.
const (
	DefaultEvalBatch         = 256
	DefaultRetryMin          = 100 * time.Millisecond
	DefaultRetryMax          = 5 * time.Second
	DefaultDrainTimeout      = 30 * time.Second
	DefaultHeartbeatInterval = time.Second
)

// Run is the worker process: it finds the coordinator (Coordinator, or the
// leader in etcd), joins it, fetches the data set when it has none, and
// computes the assignments of its Work stream until ctx ends. It registers
// itself in etcd while it runs. When the stream breaks or a new leader
// takes over, it joins again, with exponential backoff. When ctx ends it
// drains: it finishes the subtree it computes, sends it, deregisters and
// returns nil. It returns an error only when it cannot run at all (bad
// configuration, the data set does not load, the coordinator refuses the
// worker's description).
func Run(ctx context.Context, cfg DaemonConfig) error {
	d, err := newDaemon(cfg)
	if err != nil {
		return err
	}
	defer d.close()
	return d.run(ctx)
}

// daemon is one worker process's state.
type daemon struct {
	cfg     DaemonConfig
	log     *slog.Logger
	backend kernels.Backend[float32]
	closers []func()

	etcd    *clientv3.Client
	prefix  string
	cores   int
	kind    string // the backend's kind on the wire: cpu or cuda
	speed   float64
	detail  string
	fetch   bool // the data set comes from the coordinator
	cache   DatasetCache
	train   *dataset.Set
	test    *dataset.Set
	files   []*dpcnnv1.FileInfo
	warned  bool // about a data set that differs from the coordinator's
	jobs    *jobs
	retry   *backoff.ExponentialBackOff
	leaders *leaderTracker // nil when Coordinator is set or there is no etcd
	// redirect is the leader a follower named, dialled once instead of
	// Coordinator.
	redirect     string
	quickRejoins int // joins in a row after a refused session

	reduce     *reducers    // the groups it reduces (see reduce.go)
	relay      *paramsRelay // the parameters it holds for the tree (see params_relay.go)
	reduceAddr string       // where its ReduceService is reached; "" when none
	connMu     sync.Mutex
	conns      map[string]*grpc.ClientConn // to other workers' ReduceService
	peerDown   map[string]time.Time        // reduce services gone around until then
}

func newDaemon(cfg DaemonConfig) (_ *daemon, err error) {
	if err := cluster.CheckWorkerID(cfg.ID); err != nil {
		return nil, err
	}
	if cfg.Coordinator == "" && cfg.Etcd == nil && len(cfg.EtcdEndpoints) == 0 {
		return nil, fmt.Errorf("worker %s: no coordinator address and no etcd to find the leader in", cfg.ID)
	}
	if (cfg.Train == nil) != (cfg.Test == nil) {
		return nil, fmt.Errorf("worker %s: give both a training and a test set, or neither", cfg.ID)
	}
	cfg = cfg.withDefaults()
	d := &daemon{cfg: cfg, log: cfg.Logger.With("worker", cfg.ID), prefix: cfg.Prefix}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	d.retry = cluster.Backoff(cfg.RetryMin, cfg.RetryMax)

	d.backend = cfg.Backend
	if d.backend == nil {
		if d.backend, err = backends.OpenWithLogger(cfg.BackendName, cfg.Threads, d.log); err != nil {
			return nil, fmt.Errorf("worker %s: %w", cfg.ID, err)
		}
		b := d.backend
		d.closers = append(d.closers, func() { backends.Close(b) })
	}
	d.cores = 1
	if t, ok := d.backend.(interface{ Threads() int }); ok {
		d.cores = t.Threads()
	}
	d.kind = backends.Kind(d.backend)
	d.detail = fmt.Sprintf("%s (%s)", backends.Detail(d.backend), runtime.GOARCH)

	d.etcd = cfg.Etcd
	if d.etcd == nil && len(cfg.EtcdEndpoints) > 0 {
		var opts []cluster.DialOption
		if cfg.EtcdTLS != nil {
			opts = append(opts, cluster.WithTLS(cfg.EtcdTLS))
		}
		if d.etcd, err = cluster.Dial(cfg.EtcdEndpoints, opts...); err != nil {
			return nil, fmt.Errorf("worker %s: %w", cfg.ID, err)
		}
		cli := d.etcd
		d.closers = append(d.closers, func() { cli.Close() })
	}

	switch {
	case cfg.Train != nil:
		d.train, d.test, d.files = cfg.Train, cfg.Test, wireFiles(cfg.DatasetFiles)
	case cfg.DataDir != "":
		dir, err := dataset.Locate(cfg.DataDir)
		if err != nil {
			return nil, fmt.Errorf("worker %s: %w", cfg.ID, err)
		}
		if d.train, d.test, err = dataset.LoadMNIST(dir); err != nil {
			return nil, fmt.Errorf("worker %s: %w", cfg.ID, err)
		}
		files, err := dataset.MNISTFiles(dir)
		if err != nil {
			return nil, fmt.Errorf("worker %s: %w", cfg.ID, err)
		}
		d.files = wireFiles(files)
	default:
		d.fetch = true
		d.cache = DatasetCache{Dir: cfg.CacheDir}
	}
	if d.reduceAddr, err = d.startReduce(); err != nil {
		return nil, err
	}
	d.jobs = newJobs(cfg.ID, d.backend, cfg.EvalBatch)
	d.jobs.metrics = cfg.Metrics
	d.jobs.synthetic = cfg.Synthetic

	d.speed = max(cfg.ImagesPerSec, 0)
	if cfg.ImagesPerSec == 0 && cfg.Synthetic <= 0 {
		if d.speed, err = MeasureSpeed(d.backend); err != nil {
			return nil, fmt.Errorf("worker %s: %w", cfg.ID, err)
		}
		d.log.Info("measured speed", "imagesPerSec", d.speed, "backend", d.detail)
	}
	return d, nil
}

func (c DaemonConfig) withDefaults() DaemonConfig {
	if c.Address == "" {
		c.Address, _ = os.Hostname()
	}
	if c.Prefix == "" {
		c.Prefix = cluster.DefaultPrefix
	}
	if c.RegistrationTTL <= 0 {
		c.RegistrationTTL = cluster.DefaultWorkerTTL
	}
	if c.BackendName == "" {
		c.BackendName = "cpu"
	}
	if c.CacheDir == "" {
		if dir, err := os.UserCacheDir(); err == nil {
			c.CacheDir = filepath.Join(dir, "dpcnn", "datasets")
		} else {
			c.CacheDir = filepath.Join(os.TempDir(), "dpcnn-datasets")
		}
	}
	if c.EvalBatch <= 0 {
		c.EvalBatch = DefaultEvalBatch
	}
	if c.RetryMin <= 0 {
		c.RetryMin = DefaultRetryMin
	}
	if c.RetryMax < c.RetryMin {
		c.RetryMax = max(DefaultRetryMax, c.RetryMin)
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (d *daemon) close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
	d.closers = nil
}

// run registers the worker and holds sessions with the coordinator, one
// after the other, until ctx ends.
func (d *daemon) run(ctx context.Context) error {
	// Registration and the leader watch outlive ctx by the drain: they end
	// when run returns.
	life, endLife := context.WithCancel(context.WithoutCancel(ctx))
	defer endLife()
	if d.etcd != nil {
		reg := d.register(life)
		defer reg.stop()
		if d.cfg.Coordinator == "" {
			d.leaders = watchLeaders(life, d.etcd, d.prefix)
		}
	}
	for {
		end := d.session(ctx)
		switch {
		case end.drained || ctx.Err() != nil:
			d.log.Info("stopped")
			return nil
		case end.fatal:
			return end.err
		}
		if end.productive {
			d.retry.Reset()
		}
		wait := d.retry.NextBackOff()
		d.log.Warn("disconnected; will reconnect", "err", end.err, "retryIn", wait.Round(time.Millisecond))
		if !cluster.Sleep(ctx, wait) {
			d.log.Info("stopped")
			return nil
		}
	}
}

// errDrained ends a session whose worker is shutting down.
var errDrained = errors.New("worker: drained")
