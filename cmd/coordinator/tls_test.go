package main

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/dpcnn/dpcnn/cluster"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
	"github.com/dpcnn/dpcnn/secure"
)

// The coordinator with the files `cnnctl certs` makes: etcd over mutual
// TLS, workers' calls need their certificate, cnnctl's the token, health
// checks nothing (and has a plaintext listener of its own); refusals are
// logged.
func TestRunWithTLSAndToken(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second) // a hang guard
	defer cancel()
	set, err := secure.NewDevelopmentSet(nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := set.Write(dir, false); err != nil {
		t.Fatal(err)
	}
	f := func(name string) string { return filepath.Join(dir, name) }
	endpoints, stop, err := cluster.StartEmbeddedEtcd(ctx, t.TempDir(), cluster.WithServerTLS(cluster.TLSFiles{CA: f(secure.FileCA), Cert: f(secure.FileEtcdCert), Key: f(secure.FileEtcdKey)}))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if !strings.HasPrefix(endpoints[0], "https://") {
		t.Fatalf("etcd with TLS serves %s", endpoints[0])
	}
	t.Setenv("DPCNN_ETCD_ENDPOINTS", endpoints[0])
	t.Setenv("DPCNN_TLS_CA", f(secure.FileCA))
	t.Setenv("DPCNN_TLS_CERT", f(secure.FileCoordinatorCert))
	t.Setenv("DPCNN_TLS_KEY", f(secure.FileCoordinatorKey))
	t.Setenv("DPCNN_TOKEN_FILE", f(secure.FileToken))

	// A free port for the health listener: take one and close it.
	healthAddr := freePort(t)
	runCtx, stopRun := context.WithCancel(ctx)
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(runCtx, []string{"--listen", "127.0.0.1:0", "--health-listen", healthAddr, "--data-dir", t.TempDir(), "--id", "c-tls", "--log-level", "warn"}, &stdout, &stderr)
	}()
	addr := listenAddress(t, &stdout, &stderr, done)

	dial := func(c secure.Client) *grpc.ClientConn {
		t.Helper()
		opts, err := c.DialOptions(addr)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient(addr, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	token := strings.TrimSpace(string(set.Files[secure.FileToken]))
	anonymous := dial(secure.Client{Files: secure.Files{CA: f(secure.FileCA)}})
	operator := dial(secure.Client{Files: secure.Files{CA: f(secure.FileCA)}, Token: token})
	wrongToken, _ := secure.NewToken()
	impostor := dial(secure.Client{Files: secure.Files{CA: f(secure.FileCA)}, Token: wrongToken})
	worker := dial(secure.Client{Files: secure.Files{CA: f(secure.FileCA), Cert: f(secure.FileWorkerCert), Key: f(secure.FileWorkerKey)}})

	if h, err := healthpb.NewHealthClient(anonymous).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health over TLS without credentials: %v, %v", h, err)
	}
	for {
		l, err := dpcnnv1.NewClusterServiceClient(operator).Leader(ctx, &dpcnnv1.LeaderRequest{})
		if err != nil && (status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "no coordinator leads")) {
			t.Fatalf("Leader with the token: %v", err)
		}
		if l.GetAnsweredByLeader() {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := dpcnnv1.NewClusterServiceClient(operator).ListWorkers(ctx, &dpcnnv1.ListWorkersRequest{}); err != nil {
		t.Errorf("ListWorkers with the token: %v", err)
	}
	if _, err := dpcnnv1.NewClusterServiceClient(worker).Leader(ctx, &dpcnnv1.LeaderRequest{}); err != nil {
		t.Errorf("Leader with a worker's certificate: %v", err)
	}
	// A worker's certificate passes the WorkerService check: an empty Join
	// is then refused for what it is, not for who sent it.
	if _, err := dpcnnv1.NewWorkerServiceClient(worker).Join(ctx, &dpcnnv1.JoinRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("empty Join with a worker certificate: %v, want InvalidArgument", err)
	}
	for _, c := range []struct {
		name string
		call func() error
	}{
		{"ListWorkers without a token", func() error {
			_, err := dpcnnv1.NewClusterServiceClient(anonymous).ListWorkers(ctx, &dpcnnv1.ListWorkersRequest{})
			return err
		}},
		{"ListJobs with a wrong token", func() error {
			_, err := dpcnnv1.NewJobServiceClient(impostor).ListJobs(ctx, &dpcnnv1.ListJobsRequest{})
			return err
		}},
		{"ListJobs with a worker's certificate", func() error {
			_, err := dpcnnv1.NewJobServiceClient(worker).ListJobs(ctx, &dpcnnv1.ListJobsRequest{})
			return err
		}},
		{"Join with the token but no certificate", func() error {
			_, err := dpcnnv1.NewWorkerServiceClient(operator).Join(ctx, &dpcnnv1.JoinRequest{})
			return err
		}},
		{"WatchJob without a token", func() error {
			s, err := dpcnnv1.NewJobServiceClient(anonymous).WatchJob(ctx, &dpcnnv1.WatchJobRequest{JobId: "x"})
			if err == nil {
				_, err = s.Recv()
			}
			return err
		}},
	} {
		if err := c.call(); status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s: %v, want Unauthenticated", c.name, err)
		}
	}

	// Plaintext to the TLS port fails; the health listener answers it.
	plain, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := healthpb.NewHealthClient(plain).Check(ctx, &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("plaintext health check on the TLS port: %v", err)
	}
	probe, err := grpc.NewClient(healthAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	if h, err := healthpb.NewHealthClient(probe).Check(ctx, &healthpb.HealthCheckRequest{Service: dpcnnv1.JobService_ServiceDesc.ServiceName}); err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health listener: %v, %v", h, err)
	}
	if _, err := dpcnnv1.NewClusterServiceClient(probe).Leader(ctx, &dpcnnv1.LeaderRequest{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("the health listener serves more than health: Leader = %v", err)
	}

	stopRun()
	if err := <-done; err != nil {
		t.Fatalf("run after the drain: %v", err)
	}
	logs := stderr.String()
	for _, want := range []string{
		"refused unauthenticated call", "method=/dpcnn.v1.ClusterService/ListWorkers", "reason=\"no bearer token",
		"method=/dpcnn.v1.JobService/ListJobs", "reason=\"invalid bearer token\"", "method=/dpcnn.v1.WorkerService/Join",
		"reason=\"no verified client certificate\"", "peer=127.0.0.1:", "refused TLS handshake",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, token) || strings.Contains(logs, wrongToken) {
		t.Errorf("a token was logged:\n%s", logs)
	}
}

// listenAddress waits for run to print the address it listens on.
func listenAddress(t *testing.T, stdout, stderr *syncBuffer, done <-chan error) string {
	t.Helper()
	for {
		if _, after, ok := strings.Cut(stdout.String(), "listening on "); ok {
			return strings.TrimSpace(after)
		}
		select {
		case err := <-done:
			t.Fatalf("run returned early: %v; stderr: %s", err, stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}
