package main

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/dpcnn/dpcnn/deploy/k8s"
	"github.com/dpcnn/dpcnn/secure"
)

// TestKubernetesWorkersParse parses every worker container of every
// deploy/k8s overlay with the worker's own flags, in the environment the
// kubelet would give it, with the certificates a Secret would mount loaded
// for real (from a temporary folder standing for the pod's file system),
// and checks what it says against its pod: every DPCNN_* variable is one
// the worker reads, it finds the coordinators through etcd (a pinned
// coordinator would lose the failover), fetches the data set into a folder
// it may write, runs as many threads as its CPU limit, and serves metrics
// on its metrics port.
func TestKubernetesWorkersParse(t *testing.T) {
	var help bytes.Buffer
	if _, _, _, err := parseConfig([]string{"--help"}, func(string) string { return "" }, &help); !errors.Is(err, pflag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	known := map[string]bool{}
	for _, m := range regexp.MustCompile(`\((DPCNN_[A-Z_]+)\)`).FindAllStringSubmatch(help.String(), -1) {
		known[m[1]] = true
	}
	set, err := secure.NewDevelopmentSet(nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	invs, err := k8s.OverlayInvocations("worker")
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, inv := range invs {
		s, dir := inv.Set, inv.Set.Dir
		seen++
		pc, env, argv := inv.PodContainer, inv.Env, inv.Argv
		for _, k := range inv.Unread("DPCNN_", known) {
			t.Errorf("%s: %s: %s is set but the worker reads no such variable", dir, pc, k)
		}
		// The pod's mounts, under a temporary root: Secret volumes
		// hold the development set's files, and every path in the
		// environment that lies on a mount is moved under the root.
		root := t.TempDir()
		for _, m := range pc.Container.VolumeMounts {
			d := filepath.Join(root, m.MountPath)
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			for _, v := range pc.Spec.Volumes {
				if v.Name == m.Name && v.Secret != nil {
					if err := set.Write(d, true); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		getenv := func(k string) string {
			v := env[k]
			for _, m := range pc.Container.VolumeMounts {
				if v == m.MountPath || strings.HasPrefix(v, m.MountPath+"/") {
					return filepath.Join(root, v)
				}
			}
			return v
		}
		cfg, _, metricsListen, err := parseConfig(argv, getenv, &bytes.Buffer{})
		if err != nil {
			t.Fatalf("%s: %s: worker %q: %v", dir, pc, argv, err)
		}
		if cfg.Coordinator != "" || len(cfg.EtcdEndpoints) == 0 {
			t.Errorf("%s: %s: coordinator %q, etcd %v: want the leader found in etcd", dir, pc, cfg.Coordinator, cfg.EtcdEndpoints)
		}
		if cfg.DataDir != "" {
			t.Errorf("%s: %s: reads MNIST from %s instead of fetching the coordinator's", dir, pc, cfg.DataDir)
		}
		if cfg.Credentials == nil {
			t.Errorf("%s: %s: no TLS credentials", dir, pc)
		}
		if err := s.Writable(pc, env["DPCNN_CACHE_DIR"]); err != nil || env["DPCNN_CACHE_DIR"] == "" {
			t.Errorf("%s: %s: cache folder %q: %v", dir, pc, env["DPCNN_CACHE_DIR"], err)
		}
		if lim := pc.Container.Resources.Limits.Cpu(); cfg.Threads != int(lim.Value()) {
			t.Errorf("%s: %s: %d threads for a CPU limit of %s", dir, pc, cfg.Threads, lim)
		}
		if cfg.ID != env["DPCNN_WORKER_ID"] || cfg.ID == "" {
			t.Errorf("%s: %s: worker id %q, want the pod's name", dir, pc, cfg.ID)
		}
		// The reduce service: on the container port "reduce", over mutual
		// TLS, at an address other pods reach: the pod IP.
		if _, p, err := net.SplitHostPort(cfg.ReduceListen); err != nil || p != strconv.Itoa(int(pc.ContainerPort("reduce"))) {
			t.Errorf("%s: %s: --reduce-listen %q, container port reduce %d", dir, pc, cfg.ReduceListen, pc.ContainerPort("reduce"))
		}
		if cfg.ReduceServerCredentials == nil || cfg.ReduceCredentials == nil {
			t.Errorf("%s: %s: the reduce service without TLS", dir, pc)
		}
		if host, p, err := net.SplitHostPort(cfg.ReduceAdvertise); err != nil || host == "" || host != env["POD_IP"] || p != strconv.Itoa(int(pc.ContainerPort("reduce"))) {
			t.Errorf("%s: %s: --reduce-advertise %q: want the pod IP and the reduce port", dir, pc, cfg.ReduceAdvertise)
		}
		_, p, err := net.SplitHostPort(metricsListen)
		if want := pc.ContainerPort("metrics"); err != nil || p != strconv.Itoa(int(want)) {
			t.Errorf("%s: %s: --metrics-listen %q, container port metrics %d", dir, pc, metricsListen, want)
		}
	}
	if seen == 0 {
		t.Fatal("no worker in any overlay")
	}
}
