package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"

	"github.com/dpcnn/dpcnn/cmd/internal/envflag"
	"github.com/dpcnn/dpcnn/deploy/k8s"
	"github.com/dpcnn/dpcnn/secure"
)

// kubernetesSets renders every overlay of deploy/k8s, each with every Job
// folder on top (the Jobs run against an overlay's Services and Secrets).
func kubernetesSets(t *testing.T) []*k8s.Set {
	t.Helper()
	sets, err := k8s.RenderOverlays(k8s.Jobs()...)
	if err != nil {
		t.Fatal(err)
	}
	return sets
}

// TestKubernetesJobsCommandLinesParse runs every cnnctl command line of the
// deploy/k8s Jobs through cnnctl's own commands, with the environment the
// kubelet would give it, up to the point where it would dial: flags,
// environment variables and, for submit job, the job spec it builds and
// validates. Every DPCNN_* variable set must be one the command reads (a
// misspelt one would be ignored without a word).
func TestKubernetesJobsCommandLinesParse(t *testing.T) {
	seen := 0
	for _, s := range kubernetesSets(t) {
		invs, err := s.Invocations("cnnctl")
		if err != nil {
			t.Fatal(err)
		}
		for _, inv := range invs {
			seen++
			pc, env, argv := inv.PodContainer, inv.Env, inv.Argv
			for k, v := range env {
				t.Setenv(k, v)
			}
			var out bytes.Buffer
			root, _ := newRootCmd(&out, &out)
			sub, _, err := root.Find(argv)
			if err != nil || sub == root {
				t.Fatalf("%s: %s: %q is no cnnctl command: %v", s.Dir, pc, argv, err)
			}
			sub.RunE = func(*cobra.Command, []string) error { return nil }
			root.SetArgs(argv)
			if err := root.ExecuteContext(context.Background()); err != nil {
				t.Errorf("%s: %s: cnnctl %q: %v", s.Dir, pc, argv, err)
			}
			known := map[string]bool{}
			sub.Flags().VisitAll(func(f *pflag.Flag) {
				if v := envflag.Env(sub.Flags(), f.Name); v != "" {
					known[v] = true
				}
			})
			for _, k := range inv.Unread("DPCNN_", known) {
				t.Errorf("%s: %s: %s is set but %s reads no such variable", s.Dir, pc, k, sub.CommandPath())
			}
			// The coordinator it dials is a Service of the overlay, on the
			// Service's gRPC port.
			host, port, err := net.SplitHostPort(sub.Flags().Lookup("coordinator").Value.String())
			if err != nil {
				t.Fatalf("%s: %s: --coordinator: %v", s.Dir, pc, err)
			}
			svc, _ := s.Get("Service", host).(*corev1.Service)
			if svc == nil || !servesPort(svc, port) {
				t.Errorf("%s: %s: --coordinator %s:%s is no Service port of the overlay", s.Dir, pc, host, port)
			}
		}
	}
	if seen == 0 {
		t.Fatal("no Job runs cnnctl")
	}
}

func servesPort(svc *corev1.Service, port string) bool {
	for _, p := range svc.Spec.Ports {
		if p.Name == "grpc" && port == strconv.Itoa(int(p.Port)) {
			return true
		}
	}
	return false
}

// TestKubernetesSecretsFitTheManifests makes the Secrets with `cnnctl certs
// --kubernetes dpcnn` and checks them against every overlay: each file a
// container is told to read (its DPCNN_TLS_*, DPCNN_TOKEN_FILE, etcd's
// --*-file flags) is mounted from a Secret the manifest holds, under that
// key; ca.key is in none; and the certificates name what the pods dial
// (the coordinators' DPCNN_TLS_SERVER_NAME, every etcd endpoint).
func TestKubernetesSecretsFitTheManifests(t *testing.T) {
	dir := t.TempDir()
	if out, err := runCLI(t, "certs", "--out", dir, "--kubernetes", "dpcnn"); err != nil {
		t.Fatalf("certs: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, FileSecrets))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := k8s.DecodeAll(b)
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]*corev1.Secret{}
	for _, o := range objs {
		sec, ok := o.Value.(*corev1.Secret)
		if !ok || o.Namespace != "dpcnn" {
			t.Fatalf("%s: %s %s in namespace %q, want Secrets in dpcnn", FileSecrets, o.Kind, o.Name, o.Namespace)
		}
		if _, ok := sec.Data[secure.FileCAKey]; ok {
			t.Errorf("secret %s holds the CA's key", o.Name)
		}
		secrets[o.Name] = sec
	}
	if fi, err := os.Stat(filepath.Join(dir, FileSecrets)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %v, want 0600 (it holds keys)", FileSecrets, fi.Mode())
	}

	fileArgs := []string{"--cert-file", "--key-file", "--trusted-ca-file", "--peer-cert-file", "--peer-key-file", "--peer-trusted-ca-file"}
	for _, s := range kubernetesSets(t) {
		for _, p := range s.Pods() {
			for i := range p.Spec.Containers {
				inv, err := s.Invocation(k8s.PodContainer{Pod: p, Container: &p.Spec.Containers[i]})
				if err != nil {
					t.Fatal(err)
				}
				pc, env, argv := inv.PodContainer, inv.Env, inv.Argv
				var files []string
				for _, k := range []string{"DPCNN_TLS_CA", "DPCNN_TLS_CERT", "DPCNN_TLS_KEY", "DPCNN_TOKEN_FILE"} {
					if v := env[k]; v != "" {
						files = append(files, v)
					}
				}
				for _, a := range argv {
					for _, f := range fileArgs {
						if v, ok := strings.CutPrefix(a, f+"="); ok {
							files = append(files, v)
						}
					}
				}
				if len(files) == 0 {
					t.Errorf("%s: %s reads no certificate: every connection is TLS", s.Dir, pc)
				}
				for _, f := range files {
					name, key, err := pc.SecretFile(f)
					if err != nil {
						t.Error(err)
						continue
					}
					if sec := secrets[name]; sec == nil {
						t.Errorf("%s: %s mounts Secret %s, which cnnctl certs --kubernetes does not make", s.Dir, pc, name)
					} else if _, ok := sec.Data[key]; !ok {
						t.Errorf("%s: %s reads %s from Secret %s, which has no key %s", s.Dir, pc, f, name, key)
					}
				}
				// The names the pods check in the certificates.
				if n := env["DPCNN_TLS_SERVER_NAME"]; n != "" {
					verifyName(t, secrets["dpcnn-coordinator-tls"].Data[secure.FileCoordinatorCert], n)
				}
				for _, e := range strings.Split(env["DPCNN_ETCD_ENDPOINTS"], ",") {
					if e == "" {
						continue
					}
					u, err := url.Parse(e)
					if err != nil || u.Scheme != "https" {
						t.Errorf("%s: %s: etcd endpoint %q: want https://host:port", s.Dir, pc, e)
						continue
					}
					verifyName(t, secrets["dpcnn-etcd-tls"].Data[secure.FileEtcdCert], u.Hostname())
				}
			}
		}
	}
}

func verifyName(t *testing.T, certPEM []byte, name string) {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("no certificate")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.VerifyHostname(name); err != nil {
		t.Errorf("certificate %q: %v", c.Subject.CommonName, err)
	}
}

func TestCertsKubernetesRefusesBadInputAndKeepsASet(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--kubernetes", "Bad_NS"}, `--kubernetes "Bad_NS": not a namespace name`},
		{[]string{"--kubernetes", "dpcnn", "--etcd-members", "0"}, "--etcd-members 0"},
	} {
		_, err := runCLI(t, append([]string{"certs", "--out", filepath.Join(dir, "refused")}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("certs %v: err %v, want %q", c.args, err, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "refused")); !os.IsNotExist(err) {
		t.Errorf("a refused certs command wrote files: %v", err)
	}
	// --if-absent keeps the set there, and the Secrets carry it.
	out := filepath.Join(dir, "certs")
	mustRun(t, "certs", "--out", out, "--kubernetes", "dpcnn")
	ca, _ := os.ReadFile(filepath.Join(out, secure.FileCA))
	if got := mustRun(t, "certs", "--out", out, "--kubernetes", "dpcnn", "--if-absent"); !strings.Contains(got, "nothing written") {
		t.Fatalf("certs --if-absent over a set:\n%s", got)
	}
	b, _ := os.ReadFile(filepath.Join(out, FileSecrets))
	objs, err := k8s.DecodeAll(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if got := o.Value.(*corev1.Secret).Data[secure.FileCA]; string(got) != string(ca) {
			t.Errorf("secret %s carries another CA than the set's", o.Name)
		}
	}
}
