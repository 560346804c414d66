package main

import (
	"bytes"
	"context"
	"maps"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dpcnn/dpcnn/secure"
)

func env(vars map[string]string) func(string) string {
	return func(name string) string { return vars[name] }
}

// certs writes a development set for the test and returns its folder.
func certs(t *testing.T) string {
	t.Helper()
	set, err := secure.NewDevelopmentSet([]string{"coord"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := set.Write(dir, false); err != nil {
		t.Fatal(err)
	}
	return dir
}

// tlsEnv is the environment of a worker with the certificates in dir.
func tlsEnv(dir string, vars map[string]string) map[string]string {
	out := map[string]string{
		envTLSCA: filepath.Join(dir, secure.FileCA), envTLSCert: filepath.Join(dir, secure.FileWorkerCert), envTLSKey: filepath.Join(dir, secure.FileWorkerKey),
	}
	maps.Copy(out, vars)
	return out
}

func TestParseConfigFlagsOverEnvironment(t *testing.T) {
	getenv := env(tlsEnv(certs(t), map[string]string{
		envCoordinator: "coord:1", envEtcd: " https://a:2379, https://b:2379 ,", envEtcdPrefix: "/x/",
		envID: "w-env", envBackend: "reference", envThreads: "3", "DPCNN_MNIST_DIR": "/mnist", envCacheDir: "/cache",
	}))
	cfg, _, _, err := parseConfig(nil, getenv, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Credentials == nil || cfg.EtcdTLS == nil || len(cfg.EtcdTLS.Certificates) != 1 {
		t.Errorf("TLS files in the environment: credentials %v, etcd TLS %v", cfg.Credentials, cfg.EtcdTLS)
	}
	if cfg.Coordinator != "coord:1" || strings.Join(cfg.EtcdEndpoints, " ") != "https://a:2379 https://b:2379" ||
		cfg.Prefix != "/x/" || cfg.ID != "w-env" || cfg.BackendName != "reference" || cfg.Threads != 3 ||
		cfg.DataDir != "/mnist" || cfg.CacheDir != "/cache" {
		t.Errorf("from the environment: %+v", cfg)
	}
	cfg, _, _, err = parseConfig([]string{"--coordinator", "other:2", "--id", "w-flag", "--threads", "1", "--data", "", "--drain-timeout", "3s"}, getenv, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Coordinator != "other:2" || cfg.ID != "w-flag" || cfg.Threads != 1 || cfg.DataDir != "" || cfg.DrainTimeout != 3*time.Second {
		t.Errorf("flags over the environment: %+v", cfg)
	}
}

func TestParseConfigDefaults(t *testing.T) {
	cfg, _, _, err := parseConfig([]string{"--coordinator", "127.0.0.1:1", "--insecure"}, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Prefix != "/dpcnn/" || cfg.BackendName != "cpu" || cfg.ID == "" || len(cfg.ID) > 63 || cfg.Version == "" || cfg.Credentials != nil {
		t.Errorf("defaults: %+v", cfg)
	}
}

func TestParseConfigErrors(t *testing.T) {
	dir := certs(t)
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
		{[]string{"--coordinator", "c:1", "--synthetic", "-5ms"}, nil, "--synthetic"},
		// Transport security: TLS, or plaintext on loopback when asked for.
		{[]string{"--coordinator", "127.0.0.1:1"}, nil, "no transport security"},
		{[]string{"--coordinator", "c:1", "--insecure"}, nil, "plaintext is allowed only on a loopback address"},
		{[]string{"--coordinator", "127.0.0.1:1"}, map[string]string{secure.EnvInsecure: "yes please"}, "DPCNN_INSECURE"},
		{[]string{"--etcd", "http://etcd:2379", "--insecure"}, nil, "loopback"},
		{[]string{"--etcd", "http://127.0.0.1:2379"}, tlsEnv(dir, nil), "plaintext"},
		{[]string{"--coordinator", "c:1", "--tls-ca", filepath.Join(dir, secure.FileCA)}, nil, "--tls-cert and --tls-key are required"},
		{[]string{"--coordinator", "c:1"}, tlsEnv(dir, map[string]string{envTLSKey: filepath.Join(dir, "nope.key")}), "nope.key"},
	} {
		_, _, _, err := parseConfig(c.args, env(c.env), &bytes.Buffer{})
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
	err := run(t.Context(), []string{"--coordinator", "127.0.0.1:1", "--insecure", "--backend", "gpu"}, &bytes.Buffer{}, &bytes.Buffer{})
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
		done <- run(ctx, []string{"--coordinator", "127.0.0.1:1", "--insecure", "--threads", "1", "--cache-dir", t.TempDir(), "--log-level", "error"}, &bytes.Buffer{}, &stderr)
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
