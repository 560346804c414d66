package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func env(vars map[string]string) func(string) string {
	return func(name string) string { return vars[name] }
}

func TestParseConfigFlagsOverEnvironment(t *testing.T) {
	getenv := env(map[string]string{
		envCoordinator: "coord:1", envEtcd: " http://a:2379, http://b:2379 ,", envEtcdPrefix: "/x/",
		envID: "w-env", envBackend: "reference", envThreads: "3", "DPCNN_MNIST_DIR": "/mnist", envCacheDir: "/cache",
	})
	cfg, _, err := parseConfig(nil, getenv, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Coordinator != "coord:1" || strings.Join(cfg.EtcdEndpoints, " ") != "http://a:2379 http://b:2379" ||
		cfg.Prefix != "/x/" || cfg.ID != "w-env" || cfg.BackendName != "reference" || cfg.Threads != 3 ||
		cfg.DataDir != "/mnist" || cfg.CacheDir != "/cache" {
		t.Errorf("from the environment: %+v", cfg)
	}
	cfg, _, err = parseConfig([]string{"--coordinator", "other:2", "--id", "w-flag", "--threads", "1", "--data", "", "--drain-timeout", "3s"}, getenv, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Coordinator != "other:2" || cfg.ID != "w-flag" || cfg.Threads != 1 || cfg.DataDir != "" || cfg.DrainTimeout != 3*time.Second {
		t.Errorf("flags over the environment: %+v", cfg)
	}
}

func TestParseConfigDefaults(t *testing.T) {
	cfg, _, err := parseConfig([]string{"--coordinator", "c:1"}, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Prefix != "/dpcnn/" || cfg.BackendName != "cpu" || cfg.ID == "" || len(cfg.ID) > 63 || cfg.Version == "" {
		t.Errorf("defaults: %+v", cfg)
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, nil, "no coordinator"},
		{[]string{"--coordinator", "c:1", "--bogus"}, nil, "bogus"},
		{[]string{"--coordinator", "c:1", "extra"}, nil, "unexpected arguments"},
		{[]string{"--coordinator", "c:1"}, map[string]string{envThreads: "many"}, "DPCNN_THREADS"},
		{[]string{"--coordinator", "c:1", "--log-level", "loud"}, nil, "--log-level"},
		{[]string{"--coordinator", "c:1", "--drain-timeout", "0s"}, nil, "--drain-timeout"},
	} {
		_, _, err := parseConfig(c.args, env(c.env), &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parseConfig(%q, %v) = %v, want an error containing %q", c.args, c.env, err, c.want)
		}
	}
}

func TestRunHelpAndBadBackend(t *testing.T) {
	var stderr bytes.Buffer
	if err := run(t.Context(), []string{"-h"}, &bytes.Buffer{}, &stderr); err != nil || !strings.Contains(stderr.String(), "--coordinator") && !strings.Contains(stderr.String(), "-coordinator") {
		t.Errorf("help: err %v, output %q", err, stderr.String())
	}
	err := run(t.Context(), []string{"--coordinator", "127.0.0.1:1", "--backend", "gpu"}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), `unknown backend "gpu"`) {
		t.Errorf("bad backend: %v", err)
	}
}

// TestRunStopsWhenCancelled starts a worker whose coordinator is not there
// and stops it: it returns nil, as after a signal.
func TestRunStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	var stderr bytes.Buffer
	go func() {
		done <- run(ctx, []string{"--coordinator", "127.0.0.1:1", "--threads", "1", "--cache-dir", t.TempDir(), "--log-level", "error"}, &bytes.Buffer{}, &stderr)
	}()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run = %v, want nil", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not stop")
	}
}
