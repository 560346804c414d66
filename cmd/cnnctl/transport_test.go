package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dpcnn/dpcnn/secure"
)

// TestMain allows plaintext to loopback coordinators for this package's
// tests: the fake coordinators of client_test.go serve plaintext on
// 127.0.0.1, as --insecure allows. The tests of transport security below
// clear it where they need TLS or its absence.
func TestMain(m *testing.M) {
	os.Setenv("DPCNN_INSECURE", "1")
	os.Exit(m.Run())
}

func TestCertsCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	out := mustRun(t, "certs", "--out", dir, "--hosts", "etcd, coordinator-1,10.0.0.5")
	for _, name := range []string{secure.FileCA, secure.FileCAKey, secure.FileCoordinatorCert, secure.FileCoordinatorKey, secure.FileEtcdCert,
		secure.FileEtcdKey, secure.FileWorkerCert, secure.FileWorkerKey, secure.FileCnnctlCert, secure.FileCnnctlKey, secure.FileToken} {
		p := filepath.Join(dir, name)
		if !strings.Contains(out, p+"\n") {
			t.Errorf("output does not list %s:\n%s", p, out)
		}
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if secret := strings.HasSuffix(name, ".key") || name == secure.FileToken; secret && st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", name, st.Mode().Perm())
		}
	}
	ca, _ := os.ReadFile(filepath.Join(dir, secure.FileCA))
	if _, err := runCLI(t, "certs", "--out", dir); err == nil || !strings.Contains(err.Error(), "exists") || !strings.Contains(err.Error(), "--force") {
		t.Errorf("certs over existing files: %v", err)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, secure.FileCA)); string(again) != string(ca) {
		t.Errorf("a refused certs command changed ca.crt")
	}
	mustRun(t, "certs", "--out", dir, "--force")
	if again, _ := os.ReadFile(filepath.Join(dir, secure.FileCA)); string(again) == string(ca) {
		t.Errorf("certs --force left the old ca.crt")
	}
	// --if-absent leaves a whole set alone, and writes one where none is.
	ca, _ = os.ReadFile(filepath.Join(dir, secure.FileCA))
	mustRun(t, "certs", "--out", dir, "--if-absent")
	if again, _ := os.ReadFile(filepath.Join(dir, secure.FileCA)); string(again) != string(ca) {
		t.Errorf("certs --if-absent rewrote a whole set")
	}
	fresh := filepath.Join(t.TempDir(), "fresh")
	mustRun(t, "certs", "--out", fresh, "--if-absent", "--no-ca-key")
	if _, err := os.Stat(filepath.Join(fresh, secure.FileCAKey)); !os.IsNotExist(err) {
		t.Errorf("--no-ca-key wrote ca.key: %v", err)
	}
	if out := mustRun(t, "certs", "--out", fresh, "--if-absent", "--no-ca-key"); !strings.Contains(out, "nothing written") {
		t.Errorf("a second certs --if-absent: %s", out)
	}
	os.Remove(filepath.Join(fresh, secure.FileToken))
	if _, err := runCLI(t, "certs", "--out", fresh, "--if-absent", "--no-ca-key"); err == nil || !strings.Contains(err.Error(), "9 of the 10") {
		t.Errorf("certs --if-absent over half a set: %v", err)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"certs"}, "--out is required"},
		{[]string{"certs", "--out", t.TempDir(), "--force", "--if-absent"}, "choose one"},
		{[]string{"certs", "--out", t.TempDir(), "--hosts", "etcd:2379"}, "--hosts"},
		{[]string{"certs", "--out", t.TempDir(), "--valid-for", "1m"}, "--valid-for"},
	} {
		if _, err := runCLI(t, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("cnnctl %s: %v, want an error with %q", strings.Join(c.args, " "), err, c.want)
		}
	}
}

// Without TLS files and without --insecure the client refuses to dial;
// with --insecure it refuses anything but loopback. Nothing is sent.
func TestClientRefusesPlaintext(t *testing.T) {
	t.Setenv("DPCNN_INSECURE", "")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"list", "--coordinator", "127.0.0.1:7070"}, "no transport security"},
		{[]string{"list", "--coordinator", "10.0.0.7:7070", "--insecure"}, "plaintext is allowed only on a loopback address"},
		{[]string{"workers", "--coordinator", "coordinator-1:7070", "--insecure"}, "plaintext is allowed only on a loopback address"},
		{[]string{"list", "--coordinator", "127.0.0.1:7070", "--tls-ca", "/no/such/ca.crt"}, "/no/such/ca.crt"},
		{[]string{"list", "--coordinator", "127.0.0.1:7070", "--insecure", "--token-file", "/no/such/token"}, "--token-file"},
	} {
		if _, err := runCLI(t, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("cnnctl %s: %v, want an error with %q", strings.Join(c.args, " "), err, c.want)
		}
	}
	t.Setenv("DPCNN_TOKEN", "short")
	if _, err := runCLI(t, "list", "--coordinator", "127.0.0.1:7070", "--insecure"); err == nil || !strings.Contains(err.Error(), "DPCNN_TOKEN") {
		t.Errorf("a short DPCNN_TOKEN: %v", err)
	}
	t.Setenv("DPCNN_TOKEN", "")
	if _, err := runCLI(t, "etcd", "--data-dir", t.TempDir()); err == nil || !strings.Contains(err.Error(), "no transport security") {
		t.Errorf("cnnctl etcd without TLS or --insecure: %v", err)
	}
}
