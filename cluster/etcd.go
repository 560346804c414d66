package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// DefaultPrefix is the key prefix every dpcnn key lives under unless a
// deployment picks another (flag --etcd-prefix).
const DefaultPrefix = "/dpcnn/"

// startAttempts bounds the retries of StartEmbeddedEtcd when a port it
// picked was taken by someone else before etcd could bind it.
const startAttempts = 5

// StartEmbeddedEtcd starts a single-member etcd server that keeps its data
// in dir and listens on 127.0.0.1 at free ports, and waits until it serves.
// It returns the client endpoints ("http://127.0.0.1:port") and a stop
// function that shuts the server down and may be called more than once.
// The server logs errors only.
func StartEmbeddedEtcd(ctx context.Context, dir string) (endpoints []string, stop func(), err error) {
	for attempt := 1; ; attempt++ {
		endpoints, stop, err = startEtcdOnce(ctx, dir)
		if err == nil || attempt == startAttempts || ctx.Err() != nil || !isAddrInUse(err) {
			return endpoints, stop, err
		}
	}
}

func startEtcdOnce(ctx context.Context, dir string) ([]string, func(), error) {
	clientURL, err := freeLoopbackURL()
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: embedded etcd: %w", err)
	}
	peerURL, err := freeLoopbackURL()
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: embedded etcd: %w", err)
	}
	cfg := embed.NewConfig()
	cfg.Name = "dpcnn"
	cfg.Dir = dir
	// Errors only, and none once stopping: closing the listeners makes
	// etcd log every accept loop's end as an error.
	var stopping atomic.Bool
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.New(&quietCore{
		Core:     zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.Lock(os.Stderr), zap.ErrorLevel),
		stopping: &stopping,
	}))
	cfg.ListenClientUrls = []url.URL{*clientURL}
	cfg.AdvertiseClientUrls = []url.URL{*clientURL}
	cfg.ListenPeerUrls = []url.URL{*peerURL}
	cfg.AdvertisePeerUrls = []url.URL{*peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// Job statuses are rewritten during training; keeping a bounded history
	// keeps the embedded store small over long local runs.
	cfg.AutoCompactionMode = "revision"
	cfg.AutoCompactionRetention = "1000"

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: embedded etcd in %s: %w", dir, err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			stopping.Store(true)
			e.Close()
		})
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		stop()
		return nil, nil, fmt.Errorf("cluster: embedded etcd in %s: %w", dir, err)
	case <-ctx.Done():
		stop()
		return nil, nil, fmt.Errorf("cluster: embedded etcd in %s: not ready: %w", dir, ctx.Err())
	}
	return []string{clientURL.String()}, stop, nil
}

// quietCore drops every log entry once its server is stopping.
type quietCore struct {
	zapcore.Core
	stopping *atomic.Bool
}

func (c *quietCore) With(fields []zapcore.Field) zapcore.Core {
	return &quietCore{Core: c.Core.With(fields), stopping: c.stopping}
}

func (c *quietCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.stopping.Load() {
		return ce
	}
	return c.Core.Check(e, ce)
}

// freeLoopbackURL finds a port on 127.0.0.1 that is free now. Someone may
// take it before etcd binds it; StartEmbeddedEtcd retries then.
func freeLoopbackURL() (*url.URL, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("find a free port: %w", err)
	}
	addr := lis.Addr().String()
	if err := lis.Close(); err != nil {
		return nil, fmt.Errorf("find a free port: %w", err)
	}
	return &url.URL{Scheme: "http", Host: addr}, nil
}

func isAddrInUse(err error) bool {
	return err != nil && strings.Contains(err.Error(), "address already in use")
}

// Dial makes a client of etcd at endpoints with a quiet logger (errors
// only). It does not wait for a connection: requests wait for one, bounded
// by their contexts. The caller closes the client.
func Dial(endpoints []string) (*clientv3.Client, error) {
	if len(endpoints) == 0 {
		return nil, errors.New("cluster: dial etcd: no endpoints")
	}
	logger, err := zap.NewProductionConfig().Build(zap.IncreaseLevel(zap.ErrorLevel))
	if err != nil {
		return nil, fmt.Errorf("cluster: dial etcd: logger: %w", err)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      logger,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: dial etcd %s: %w", strings.Join(endpoints, ","), err)
	}
	return cli, nil
}

// SplitEndpoints splits a comma-separated endpoint list (as in
// DPCNN_ETCD_ENDPOINTS), dropping blanks.
func SplitEndpoints(s string) []string {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}
