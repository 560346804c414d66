package secure

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// devSet writes a development set into a temporary folder once per test.
func devSet(t *testing.T) (string, *DevelopmentSet) {
	t.Helper()
	set, err := NewDevelopmentSet([]string{"coordinator-1", "10.1.2.3"}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "certs")
	if err := set.Write(dir, false); err != nil {
		t.Fatal(err)
	}
	return dir, set
}

// logBuffer collects a logger's output for the test to read.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// serveHealth serves gRPC health on 127.0.0.1 with TLS from dir (nil creds:
// plaintext), guarded by an Authenticator that asks req of every call.
func serveHealth(t *testing.T, creds credentials.TransportCredentials, tokens *Tokens, req Requirement) (addr string, logs *logBuffer) {
	t.Helper()
	logs = &logBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	auth := &Authenticator{Tokens: tokens, ClientCerts: creds != nil, Require: func(string) Requirement { return req }, Logger: logger}
	opts := []grpc.ServerOption{grpc.ChainUnaryInterceptor(auth.UnaryInterceptor()), grpc.ChainStreamInterceptor(auth.StreamInterceptor())}
	if creds != nil {
		opts = append(opts, grpc.Creds(LogRefusedHandshakes(creds, logger)))
	}
	s := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(s, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().String(), logs
}

func serverCreds(t *testing.T, dir string) credentials.TransportCredentials {
	t.Helper()
	creds, _, err := Server{Files: Files{CA: filepath.Join(dir, FileCA), Cert: filepath.Join(dir, FileCoordinatorCert), Key: filepath.Join(dir, FileCoordinatorKey)}}.Load("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return creds
}

// check makes one unary and one streaming health call with c's
// credentials and returns their codes.
func check(t *testing.T, addr string, c Client) (unary, stream codes.Code) {
	t.Helper()
	opts, err := c.DialOptions(addr)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h := healthpb.NewHealthClient(conn)
	_, err = h.Check(ctx, &healthpb.HealthCheckRequest{})
	unary = status.Code(err)
	w, err := h.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = w.Recv()
	}
	return unary, status.Code(err)
}

func TestMutualTLSAndTokens(t *testing.T) {
	dir, set := devSet(t)
	f := func(name string) string { return filepath.Join(dir, name) }
	token := strings.TrimSpace(string(set.Files[FileToken]))
	tokens, err := LoadTokens(f(FileToken))
	if err != nil {
		t.Fatal(err)
	}
	otherDir, _ := devSet(t) // another CA, with certificates of its own

	caOnly := Files{CA: f(FileCA)}
	worker := Files{CA: f(FileCA), Cert: f(FileWorkerCert), Key: f(FileWorkerKey)}
	foreign := Files{CA: f(FileCA), Cert: filepath.Join(otherDir, FileWorkerCert), Key: filepath.Join(otherDir, FileWorkerKey)}
	wrongToken, _ := NewToken()

	for _, tc := range []struct {
		name   string
		req    Requirement
		tokens *Tokens
		client Client
		want   codes.Code
		logged string // in the server's log when refused
	}{
		{"open without credentials", Open, tokens, Client{Files: caOnly}, codes.OK, ""},
		{"certificate", ClientCert, tokens, Client{Files: worker}, codes.OK, ""},
		{"no certificate", ClientCert, tokens, Client{Files: caOnly, Token: token}, codes.Unauthenticated, "no verified client certificate"},
		{"certificate of another CA", ClientCert, tokens, Client{Files: foreign}, codes.Unavailable, "refused TLS handshake"},
		{"token", BearerToken, tokens, Client{Files: caOnly, Token: token}, codes.OK, ""},
		{"no token", BearerToken, tokens, Client{Files: caOnly}, codes.Unauthenticated, "no bearer token"},
		{"certificate but no token", BearerToken, tokens, Client{Files: worker}, codes.Unauthenticated, "no bearer token"},
		{"wrong token", BearerToken, tokens, Client{Files: caOnly, Token: wrongToken}, codes.Unauthenticated, "invalid bearer token"},
		{"no tokens configured: certificate", BearerToken, nil, Client{Files: worker}, codes.OK, ""},
		{"no tokens configured: no certificate", BearerToken, nil, Client{Files: caOnly, Token: token}, codes.Unauthenticated, "takes no tokens"},
		{"either: certificate", AnyCredential, tokens, Client{Files: worker}, codes.OK, ""},
		{"either: token", AnyCredential, tokens, Client{Files: caOnly, Token: token}, codes.OK, ""},
		{"either: neither", AnyCredential, tokens, Client{Files: caOnly, Token: wrongToken}, codes.Unauthenticated, "invalid bearer token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, logs := serveHealth(t, serverCreds(t, dir), tc.tokens, tc.req)
			unary, stream := check(t, addr, tc.client)
			if unary != tc.want || stream != tc.want {
				t.Errorf("unary call: %v, stream: %v; want %v", unary, stream, tc.want)
			}
			// A refused handshake is logged after the server sent the alert
			// that failed the client's call, so the line may come later.
			got := logs.String()
			for deadline := time.Now().Add(5 * time.Second); tc.logged != "" && !strings.Contains(got, tc.logged) && time.Now().Before(deadline); got = logs.String() {
				time.Sleep(5 * time.Millisecond)
			}
			if tc.logged == "" {
				if got != "" {
					t.Errorf("served calls logged %s", got)
				}
				return
			}
			for _, want := range []string{"level=WARN", tc.logged, "peer=127.0.0.1:"} {
				if !strings.Contains(got, want) {
					t.Errorf("log lacks %q:\n%s", want, got)
				}
			}
			if tc.want == codes.Unauthenticated && !strings.Contains(got, "method=/grpc.health.v1.Health/Check") {
				t.Errorf("log does not name the method:\n%s", got)
			}
			if strings.Contains(got, token) || strings.Contains(got, wrongToken) {
				t.Errorf("a token was logged:\n%s", got)
			}
		})
	}
}

// Over plaintext (allowed on loopback), a token goes only when the client
// said plaintext was meant; the server checks it as over TLS.
func TestPlaintextOnLoopback(t *testing.T) {
	_, set := devSet(t)
	token := strings.TrimSpace(string(set.Files[FileToken]))
	tokens, err := ParseTokens(set.Files[FileToken])
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := serveHealth(t, nil, tokens, BearerToken)
	if u, s := check(t, addr, Client{Insecure: true, Token: token}); u != codes.OK || s != codes.OK {
		t.Errorf("plaintext with the token: %v, %v", u, s)
	}
	if u, _ := check(t, addr, Client{Insecure: true}); u != codes.Unauthenticated {
		t.Errorf("plaintext without the token: %v", u)
	}
	// A token credential that demands TLS is not sent over plaintext:
	// gRPC refuses to make such a client.
	_, err = grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(NewTokenCredentials(token, false)))
	if err == nil || !strings.Contains(err.Error(), "transport") {
		t.Errorf("token over plaintext without leave: %v", err)
	}
}

// Plaintext is refused before any connection is made: without --insecure
// anywhere, and with it on anything but loopback.
func TestPlaintextRefused(t *testing.T) {
	for _, addr := range []string{"10.0.0.7:7070", "coordinator-1:7070", ":7070", "0.0.0.0:7070", "[::]:7070", "192.168.1.2"} {
		if _, err := (Client{Insecure: true}).DialOptions(addr); err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("client, insecure, %s: %v", addr, err)
		}
		if _, _, err := (Server{Insecure: true}).Load(addr); err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("server, insecure, %s: %v", addr, err)
		}
		if err := CheckPlaintext("x", addr); err == nil {
			t.Errorf("CheckPlaintext(%s) = nil", addr)
		}
	}
	for _, addr := range []string{"127.0.0.1:7070", "[::1]:7070", "localhost:7070", "127.0.0.2:1"} {
		if _, err := (Client{Insecure: true}).DialOptions(addr); err != nil {
			t.Errorf("client, insecure, %s: %v", addr, err)
		}
		if _, _, err := (Server{Insecure: true}).Load(addr); err != nil {
			t.Errorf("server, insecure, %s: %v", addr, err)
		}
		if _, err := (Client{}).DialOptions(addr); !errors.Is(err, ErrNoTransportSecurity) {
			t.Errorf("client without TLS or --insecure, %s: %v", addr, err)
		}
		if _, _, err := (Server{}).Load(addr); !errors.Is(err, ErrNoTransportSecurity) {
			t.Errorf("server without TLS or --insecure, %s: %v", addr, err)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:7070": true, "127.9.9.9": true, "[::1]:2379": true, "::1": true, "localhost:1": true, "LOCALHOST": true,
		"http://127.0.0.1:2379": true, "https://localhost:2379": true, "http://[::1]:2379/x": true,
		"10.0.0.1:7070": false, ":7070": false, "": false, "etcd:2379": false, "http://etcd:2379": false,
		"localhost.example.com:1": false, "0.0.0.0:7070": false, "[::]:1": false, "127.0.0.1.nip.io:1": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestEtcdTLS(t *testing.T) {
	dir, _ := devSet(t)
	files := Files{CA: filepath.Join(dir, FileCA), Cert: filepath.Join(dir, FileWorkerCert), Key: filepath.Join(dir, FileWorkerKey)}
	for _, tc := range []struct {
		files     Files
		insecure  bool
		endpoints []string
		tls       bool
		err       string
	}{
		{files, false, []string{"https://etcd:2379", "https://etcd-1:2379"}, true, ""},
		{files, false, []string{"etcd:2379"}, true, ""},
		{Files{}, true, []string{"http://127.0.0.1:2379"}, false, ""},
		{Files{}, true, []string{"127.0.0.1:2379"}, false, ""},
		{files, true, []string{"http://127.0.0.1:2379"}, false, ""},
		{Files{}, false, []string{"http://127.0.0.1:2379"}, false, "--insecure"},
		{Files{}, true, []string{"http://etcd:2379"}, false, "loopback"},
		{Files{}, false, []string{"https://etcd:2379"}, false, "--etcd-ca"},
		{files, false, []string{"https://a:2379", "http://b:2379"}, false, "one scheme"},
		{files, false, []string{"unix://x"}, false, "scheme"},
		{Files{CA: filepath.Join(dir, "missing")}, false, []string{"https://etcd:2379"}, false, "no such file"},
	} {
		cfg, err := EtcdTLS(tc.files, tc.insecure, tc.endpoints)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("EtcdTLS(%v, %v): %v; want an error with %q", tc.insecure, tc.endpoints, err, tc.err)
		case tc.err == "" && (err != nil || (cfg != nil) != tc.tls):
			t.Errorf("EtcdTLS(%v, %v) = %v, %v; want TLS %v", tc.insecure, tc.endpoints, cfg, err, tc.tls)
		}
	}
}

func TestTokenFiles(t *testing.T) {
	good := "abcdefghijklmnopqrstuvwxyz012345"
	digest := "sha256:" + strings.Repeat("ab", 32)
	toks, err := ParseTokens([]byte("# operators\n\n  " + good + "  \n" + digest + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !toks.Valid(good) || toks.Valid(good[1:]) || toks.Valid("") || toks.Valid(good+"x") {
		t.Errorf("Valid gives wrong answers")
	}
	for data, want := range map[string]string{
		"":                              "no token",
		"# only a comment\n":            "no token",
		"short\n":                       "at least 16",
		"with space in the middle ok\n": "printable ASCII",
		"sha256:xyz\n":                  "64 hex digits",
	} {
		if _, err := ParseTokens([]byte(data)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseTokens(%q): %v; want %q", data, err, want)
		}
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "token")
	os.WriteFile(p, []byte("# comment\n"+good+"\nsecond-token-0123456789\n"), 0o600)
	if tok, err := ReadToken(p); err != nil || tok != good {
		t.Errorf("ReadToken = %q, %v", tok, err)
	}
	os.WriteFile(p, []byte(digest+"\n"), 0o600)
	if _, err := ReadToken(p); err == nil || !strings.Contains(err.Error(), "only a server") {
		t.Errorf("ReadToken of a digest: %v", err)
	}
	if _, err := ReadToken(filepath.Join(dir, "missing")); err == nil {
		t.Errorf("ReadToken of a missing file: nil error")
	}
	a, _ := NewToken()
	b, _ := NewToken()
	if a == b || len(a) != 43 || CheckToken(a) != nil {
		t.Errorf("NewToken: %q, %q", a, b)
	}
}

func TestDevelopmentSet(t *testing.T) {
	dir, set := devSet(t)
	want := []string{FileCA, FileCAKey, FileCnnctlCert, FileCnnctlKey, FileCoordinatorCert, FileCoordinatorKey,
		FileEtcdCert, FileEtcdKey, FileToken, FileWorkerCert, FileWorkerKey}
	slices.Sort(want)
	if got := set.Names(); !slices.Equal(got, want) {
		t.Fatalf("files %v, want %v", got, want)
	}
	for _, name := range want {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".key") || name == FileToken {
			mode = 0o600
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", name, st.Mode().Perm(), mode)
		}
	}
	// Nothing is overwritten without leave, and nothing is half-written.
	again, err := NewDevelopmentSet(nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Write(dir, false); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("Write over an existing set: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, FileCA)); !bytes.Equal(b, set.Files[FileCA]) {
		t.Errorf("a refused Write changed ca.crt")
	}
	if err := again.Write(dir, true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, FileCA)); !bytes.Equal(b, again.Files[FileCA]) {
		t.Errorf("Write with overwrite left the old ca.crt")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != len(want) {
		t.Errorf("%d files in the folder, want %d (temporary files left?)", len(ents), len(want))
	}

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(set.Files[FileCA])
	for _, c := range []struct {
		file           string
		server, client bool
	}{
		{FileCoordinatorCert, true, true}, {FileEtcdCert, true, true}, {FileWorkerCert, true, true}, {FileCnnctlCert, false, true},
	} {
		block, _ := pem.Decode(set.Files[c.file])
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		for usage, want := range map[x509.ExtKeyUsage]bool{x509.ExtKeyUsageServerAuth: c.server, x509.ExtKeyUsageClientAuth: c.client} {
			_, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}})
			if (err == nil) != want {
				t.Errorf("%s for usage %v: %v", c.file, usage, err)
			}
		}
		if c.file == FileWorkerCert {
			// A worker serves its reduce service under one name only,
			// whatever address it is dialed at; it names no host.
			if err := cert.VerifyHostname(WorkerServerName); err != nil {
				t.Errorf("%s: %v", c.file, err)
			}
			for _, host := range []string{"localhost", "127.0.0.1", "coordinator-1"} {
				if err := cert.VerifyHostname(host); err == nil {
					t.Errorf("%s is valid for %s: a worker could pass for a coordinator", c.file, host)
				}
			}
		} else if c.server {
			for _, host := range []string{"localhost", "127.0.0.1", "::1", "coordinator-1", "10.1.2.3"} {
				if err := cert.VerifyHostname(host); err != nil {
					t.Errorf("%s: %v", c.file, err)
				}
			}
			if err := cert.VerifyHostname("elsewhere"); err == nil {
				t.Errorf("%s is valid for a host not asked for", c.file)
			}
		}
	}
	if _, err := tls.X509KeyPair(set.Files[FileCoordinatorCert], set.Files[FileCoordinatorKey]); err != nil {
		t.Errorf("coordinator key pair: %v", err)
	}
	for _, hosts := range [][]string{{""}, {"etcd:2379"}, {"https://etcd"}, {"a*.b"}} {
		if _, err := NewDevelopmentSet(hosts, time.Hour); err == nil {
			t.Errorf("hosts %q accepted", hosts)
		}
	}
}

func TestTLSFileErrors(t *testing.T) {
	dir, _ := devSet(t)
	f := func(name string) string { return filepath.Join(dir, name) }
	for _, tc := range []struct {
		files  Files
		server bool
		want   string
	}{
		{Files{CA: f(FileCA), Cert: f(FileCoordinatorCert)}, true, "needs a CA, a certificate and a key"},
		{Files{CA: f("missing.crt"), Cert: f(FileCoordinatorCert), Key: f(FileCoordinatorKey)}, true, "missing.crt"},
		{Files{CA: f(FileCoordinatorKey), Cert: f(FileCoordinatorCert), Key: f(FileCoordinatorKey)}, true, "no PEM certificate"},
		{Files{CA: f(FileCA), Cert: f(FileCoordinatorCert), Key: f(FileWorkerKey)}, true, "does not match"},
		{Files{Cert: f(FileWorkerCert), Key: f(FileWorkerKey)}, false, "needs the CA"},
		{Files{CA: f(FileCA), Cert: f(FileWorkerCert)}, false, "both"},
	} {
		var err error
		if tc.server {
			_, err = ServerTLS(tc.files, false)
		} else {
			_, err = ClientTLS(tc.files, "")
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v; want %q", tc.files, err, tc.want)
		}
	}
}

func TestInsecureFromEnv(t *testing.T) {
	for v, want := range map[string]bool{"": false, "1": true, "true": true, "0": false, "false": false} {
		got, err := InsecureFromEnv(func(string) string { return v })
		if err != nil || got != want {
			t.Errorf("%s=%q: %v, %v; want %v", EnvInsecure, v, got, err, want)
		}
	}
	if _, err := InsecureFromEnv(func(string) string { return "yes please" }); err == nil || !strings.Contains(err.Error(), `DPCNN_INSECURE="yes please"`) {
		t.Errorf("a malformed value: %v", err)
	}
}

// The reduce service's TLS takes a worker's certificate and refuses the
// other certificates of the same CA (cnnctl's, a coordinator's), in a real
// handshake over loopback.
func TestWorkerPeerTLSTakesWorkersOnly(t *testing.T) {
	dir, _ := devSet(t)
	files := func(cert, key string) Files {
		return Files{CA: filepath.Join(dir, FileCA), Cert: filepath.Join(dir, cert), Key: filepath.Join(dir, key)}
	}
	srv, err := WorkerPeerTLS(files(FileWorkerCert, FileWorkerKey))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := tls.Listen("tcp", "127.0.0.1:0", srv)
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if c.(*tls.Conn).Handshake() == nil {
					c.Write([]byte{1})
				}
			}()
		}
	}()
	for _, tc := range []struct {
		cert, key string
		ok        bool
	}{
		{FileWorkerCert, FileWorkerKey, true},
		{FileCnnctlCert, FileCnnctlKey, false},
		{FileCoordinatorCert, FileCoordinatorKey, false},
		{"", "", false},
	} {
		f := files(tc.cert, tc.key)
		if tc.cert == "" {
			f.Cert, f.Key = "", ""
		}
		cli, err := ClientTLS(f, WorkerServerName)
		if err != nil {
			t.Fatal(err)
		}
		c, err := tls.Dial("tcp", lis.Addr().String(), cli)
		if err == nil {
			// TLS 1.3: the server's verdict on the client comes after the
			// client's side of the handshake, with the first read.
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = c.Read(make([]byte, 1))
			c.Close()
		}
		if (err == nil) != tc.ok {
			t.Errorf("client certificate %q: %v; want accepted %v", tc.cert, err, tc.ok)
		}
	}
}
