package main

import (
	"io"
	"net"
	"strconv"
	"testing"

	"github.com/spf13/pflag"

	"github.com/dpcnn/dpcnn/cmd/internal/envflag"
	"github.com/dpcnn/dpcnn/deploy/k8s"
)

// TestKubernetesCoordinatorsParse parses every coordinator container of
// every deploy/k8s overlay with the coordinator's own flags, in the
// environment the kubelet would give it, and checks that what it says
// lines up with its pod: every DPCNN_* variable is one the coordinator
// reads, it listens on its container's gRPC, health and metrics ports,
// advertises its pod IP on the gRPC port, writes its data where it can, and
// names the certificate of the coordinators it dials by IP.
func TestKubernetesCoordinatorsParse(t *testing.T) {
	known := map[string]bool{}
	fs := newCommand(&config{}, nil).Flags()
	fs.VisitAll(func(f *pflag.Flag) { known[envflag.Env(fs, f.Name)] = true })
	invs, err := k8s.OverlayInvocations("coordinator")
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, inv := range invs {
		s, dir := inv.Set, inv.Set.Dir
		seen++
		pc, env := inv.PodContainer, inv.Env
		for _, k := range inv.Unread("DPCNN_", known) {
			t.Errorf("%s: %s: %s is set but the coordinator reads no such variable", dir, pc, k)
		}
		cfg, err := parseFlags(inv.Argv, func(k string) string { return env[k] }, io.Discard)
		if err != nil {
			t.Fatalf("%s: %s: coordinator %q: %v", dir, pc, inv.Argv, err)
		}
		port := func(what, addr, name string) {
			t.Helper()
			_, p, err := net.SplitHostPort(addr)
			if err != nil {
				t.Errorf("%s: %s: %s %q: %v", dir, pc, what, addr, err)
				return
			}
			if want := pc.ContainerPort(name); want == 0 || p != strconv.Itoa(int(want)) {
				t.Errorf("%s: %s: %s %q, but the container's %s port is %d", dir, pc, what, addr, name, want)
			}
		}
		port("--listen", cfg.listen, "grpc")
		port("--advertise", cfg.advertise, "grpc")
		port("--health-listen", cfg.healthListen, "health")
		port("--metrics-listen", cfg.metricsListen, "metrics")
		if host, _, _ := net.SplitHostPort(cfg.advertise); host != k8s.ExamplePodIP {
			t.Errorf("%s: %s: advertises %q, want the pod IP", dir, pc, cfg.advertise)
		}
		if err := s.Writable(pc, cfg.dataDir); err != nil {
			t.Error(err)
		}
		if cfg.serverName == "" || cfg.tls.Cert == "" || cfg.token == "" || cfg.etcd == "" {
			t.Errorf("%s: %s: want TLS with a server name, a token file and etcd endpoints, got %+v", dir, pc, cfg)
		}
		if !cfg.replicate {
			t.Errorf("%s: %s: replication off with an emptyDir per coordinator would lose checkpoints on failover", dir, pc)
		}
	}
	if seen == 0 {
		t.Fatal("no coordinator in any overlay")
	}
}
