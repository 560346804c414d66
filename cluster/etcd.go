package cluster

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/dpcnn/dpcnn/secure"
)

// DefaultPrefix is the key prefix every dpcnn key lives under unless a
// deployment picks another (flag --etcd-prefix).
const DefaultPrefix = "/dpcnn/"

// startAttempts bounds the retries of StartEmbeddedEtcd when a port it
// picked was taken by someone else before etcd could bind it.
const startAttempts = 5

// TLSFiles names the PEM files of an etcd server: its certificate and key
// (used for clients and peers alike, so the certificate needs both the
// serverAuth and clientAuth key usages) and the CA that client and peer
// certificates must chain to.
type TLSFiles struct {
	CA, Cert, Key string
}

// EmbeddedOption configures StartEmbeddedEtcd.
type EmbeddedOption func(*embeddedOptions)

type embeddedOptions struct {
	tls        *TLSFiles
	clientHost string
}

// WithClientHost makes the embedded etcd serve clients on host (an IP
// address of this machine) instead of 127.0.0.1, for clusters whose members
// run on other hosts. Only with WithServerTLS: plaintext stays on loopback.
func WithClientHost(host string) EmbeddedOption {
	return func(o *embeddedOptions) { o.clientHost = host }
}

// WithServerTLS makes the embedded etcd speak TLS to clients and peers and
// require a client certificate signed by files.CA from both.
func WithServerTLS(files TLSFiles) EmbeddedOption {
	return func(o *embeddedOptions) { o.tls = &files }
}

// StartEmbeddedEtcd starts a single-member etcd server that keeps its data
// in dir and listens on 127.0.0.1 at free ports, and waits until it serves.
// It returns the client endpoints ("http://127.0.0.1:port", or https://
// with WithServerTLS) and a stop function that shuts the server down and
// may be called more than once. The server logs errors only.
func StartEmbeddedEtcd(ctx context.Context, dir string, opts ...EmbeddedOption) (endpoints []string, stop func(), err error) {
	var o embeddedOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.tls != nil && (o.tls.CA == "" || o.tls.Cert == "" || o.tls.Key == "") {
		return nil, nil, fmt.Errorf("cluster: embedded etcd: TLS needs a CA, a certificate and a key (got %+v)", *o.tls)
	}
	if o.clientHost != "" {
		if net.ParseIP(o.clientHost) == nil {
			return nil, nil, fmt.Errorf("cluster: embedded etcd: client host %q is not an IP address", o.clientHost)
		}
		if o.tls == nil && !net.ParseIP(o.clientHost).IsLoopback() {
			return nil, nil, fmt.Errorf("cluster: embedded etcd: serving clients on %s needs TLS: plaintext is for loopback only", o.clientHost)
		}
	}
	for attempt := 1; ; attempt++ {
		endpoints, stop, err = startEtcdOnce(ctx, dir, o)
		if err == nil || attempt == startAttempts || ctx.Err() != nil || !isAddrInUse(err) {
			return endpoints, stop, err
		}
	}
}

func startEtcdOnce(ctx context.Context, dir string, o embeddedOptions) ([]string, func(), error) {
	scheme := "http"
	if o.tls != nil {
		scheme = "https"
	}
	clientURL, err := freeURL(scheme, cmp.Or(o.clientHost, "127.0.0.1"))
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: embedded etcd: %w", err)
	}
	peerURL, err := freeURL(scheme, "127.0.0.1")
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
	if o.tls != nil {
		info := transport.TLSInfo{
			CertFile: o.tls.Cert, KeyFile: o.tls.Key, TrustedCAFile: o.tls.CA,
			ClientCertAuth: true, MinVersion: tls.VersionTLS12,
		}
		cfg.ClientTLSInfo, cfg.PeerTLSInfo = info, info
	}
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

// freeURL finds a port on host that is free now. Someone may
// take it before etcd binds it; StartEmbeddedEtcd retries then.
func freeURL(scheme, host string) (*url.URL, error) {
	lis, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, fmt.Errorf("find a free port: %w", err)
	}
	addr := lis.Addr().String()
	if err := lis.Close(); err != nil {
		return nil, fmt.Errorf("find a free port: %w", err)
	}
	return &url.URL{Scheme: scheme, Host: addr}, nil
}

func isAddrInUse(err error) bool {
	return err != nil && strings.Contains(err.Error(), "address already in use")
}

// DialOption configures Dial.
type DialOption func(*clientv3.Config)

// WithTLS makes Dial speak TLS with cfg: cfg.RootCAs verifies etcd, and
// cfg.Certificates are presented when etcd asks for a client certificate.
// The endpoints must then be https:// (or have no scheme): etcd's client
// drops TLS for http:// ones.
func WithTLS(cfg *tls.Config) DialOption {
	return func(c *clientv3.Config) { c.TLS = cfg }
}

// Dial makes a client of etcd at endpoints with a quiet logger (errors
// only). It does not wait for a connection: requests wait for one, bounded
// by their contexts. The caller closes the client.
//
// Without WithTLS it speaks plaintext, which it allows only to loopback
// endpoints (127.0.0.1, ::1, localhost): anything else must use TLS.
func Dial(endpoints []string, opts ...DialOption) (*clientv3.Client, error) {
	if len(endpoints) == 0 {
		return nil, errors.New("cluster: dial etcd: no endpoints")
	}
	var cfg clientv3.Config
	for _, opt := range opts {
		opt(&cfg)
	}
	for _, ep := range endpoints {
		scheme, _, hasScheme := strings.Cut(ep, "://")
		switch {
		case cfg.TLS != nil && hasScheme && !strings.EqualFold(scheme, "https"):
			return nil, fmt.Errorf("cluster: dial etcd %s: TLS needs an https:// endpoint", ep)
		case cfg.TLS == nil && hasScheme && strings.EqualFold(scheme, "https"):
			return nil, fmt.Errorf("cluster: dial etcd %s: an https:// endpoint needs TLS (a CA at least)", ep)
		case cfg.TLS == nil && !secure.IsLoopback(ep):
			return nil, fmt.Errorf("cluster: dial etcd %s: plaintext is allowed only to a loopback address; use TLS", ep)
		}
	}
	logger, err := zap.NewProductionConfig().Build(zap.IncreaseLevel(zap.ErrorLevel))
	if err != nil {
		return nil, fmt.Errorf("cluster: dial etcd: logger: %w", err)
	}
	cfg.Endpoints, cfg.DialTimeout, cfg.Logger = endpoints, 5*time.Second, logger
	cli, err := clientv3.New(cfg)
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
