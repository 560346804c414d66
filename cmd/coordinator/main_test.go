package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/dpcnn/dpcnn/cluster"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// syncBuffer is a bytes.Buffer that run may write while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// The coordinator serves, leads alone, answers health checks, and drains
// cleanly when its context ends.
func TestRunServesAndDrains(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second) // a hang guard
	defer cancel()
	endpoints, stop, err := cluster.StartEmbeddedEtcd(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	t.Setenv("DPCNN_ETCD_ENDPOINTS", endpoints[0])

	runCtx, stopRun := context.WithCancel(ctx)
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(runCtx, []string{"--listen", "127.0.0.1:0", "--insecure", "--data-dir", t.TempDir(), "--id", "c-test", "--log-level", "warn"}, &stdout, &stderr)
	}()
	var addr string
	for addr == "" {
		if _, after, ok := strings.Cut(stdout.String(), "listening on "); ok {
			addr = strings.TrimSpace(after)
			break
		}
		select {
		case err := <-done:
			t.Fatalf("run returned early: %v; stderr: %s", err, stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v, %v", h, err)
	}
	for {
		l, err := dpcnnv1.NewClusterServiceClient(conn).Leader(ctx, &dpcnnv1.LeaderRequest{})
		if err == nil && l.AnsweredByLeader {
			if l.CoordinatorId != "c-test" || l.Address != addr {
				t.Fatalf("Leader = %v", l)
			}
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopRun()
	if err := <-done; err != nil {
		t.Fatalf("run after the drain: %v", err)
	}
	// The one warning expected: that --insecure serves plaintext.
	if s := stderr.String(); strings.Count(s, "\n") != 1 || !strings.Contains(s, "serving plaintext on a loopback address") {
		t.Errorf("warnings or errors logged: %s", s)
	}
}

func TestRunRefusesBadFlags(t *testing.T) {
	t.Setenv("DPCNN_ETCD_ENDPOINTS", "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{}, "no etcd endpoints"},
		{[]string{"--etcd", "http://127.0.0.1:1", "--log-level", "loud"}, "--log-level"},
		{[]string{"--etcd", "http://127.0.0.1:1", "extra"}, `unexpected arguments ["extra"]`},
		{[]string{"--no-such-flag"}, "no-such-flag"},
		{[]string{"--etcd", "http://127.0.0.1:1"}, "no transport security"},
		{[]string{"--etcd", "http://127.0.0.1:1", "--insecure", "--listen", ":7070"}, "plaintext is allowed only on a loopback address"},
		{[]string{"--etcd", "http://etcd:2379", "--insecure"}, "etcd endpoint http://etcd:2379: plaintext is allowed only on a loopback address"},
		{[]string{"--etcd", "http://127.0.0.1:1", "--tls-ca", "ca.crt", "--tls-cert", "c.crt"}, "needs a CA, a certificate and a key"},
		{[]string{"--etcd", "http://127.0.0.1:1", "--insecure", "--token-file", "/no/such/token"}, "/no/such/token"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), tc.args, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run %q: %v; want an error mentioning %q", tc.args, err, tc.want)
		}
	}
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, &stdout, &stderr); err != nil || !strings.Contains(stderr.String(), "-etcd-prefix") {
		t.Errorf("run --help: %v, usage %q", err, stderr.String())
	}
}

// Every flag takes its environment variable when the command line leaves
// it unset; a malformed value is refused naming the variable.
func TestParseFlagsFromTheEnvironment(t *testing.T) {
	t.Setenv("DPCNN_LISTEN", "127.0.0.1:7171")
	t.Setenv("DPCNN_REPLICATE", "false")
	t.Setenv("DPCNN_REPLICATION_TIMEOUT", "3s")
	t.Setenv("DPCNN_THREADS", "2")
	t.Setenv("DPCNN_PARAMS_DELTA_MIN_WORKERS", "3")
	cfg, err := parseFlags([]string{"--threads", "1"}, os.Getenv, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.listen != "127.0.0.1:7171" || cfg.replicate || cfg.replicationTimeout != 3*time.Second || cfg.threads != 1 || cfg.deltaMinWorkers != 3 {
		t.Errorf("listen %q, replicate %v, timeout %v, threads %d, delta from %d workers", cfg.listen, cfg.replicate, cfg.replicationTimeout, cfg.threads, cfg.deltaMinWorkers)
	}
	if _, err := parseFlags([]string{"--params-delta-min-workers", "0"}, os.Getenv, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "--params-delta-min-workers 0") {
		t.Errorf("--params-delta-min-workers 0: %v", err)
	}
	for name, value := range map[string]string{"DPCNN_REPLICATION_TIMEOUT": "soon", "DPCNN_REPLICATE": "perhaps", "DPCNN_THREADS": "many", "DPCNN_INSECURE": "yes please"} {
		t.Run(name, func(t *testing.T) {
			t.Setenv(name, value)
			if _, err := parseFlags(nil, os.Getenv, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), name+"=") {
				t.Errorf("%s=%q: %v", name, value, err)
			}
		})
	}
}
