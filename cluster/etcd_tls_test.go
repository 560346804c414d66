package cluster

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dpcnn/dpcnn/secure"
)

// An embedded etcd with TLS serves https:// and answers only clients with a
// certificate from its CA.
func TestEmbeddedEtcdTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // a hang guard
	defer cancel()
	dir := t.TempDir()
	set, err := secure.NewDevelopmentSet(nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := set.Write(dir, false); err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	otherSet, err := secure.NewDevelopmentSet(nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := otherSet.Write(other, false); err != nil {
		t.Fatal(err)
	}
	f := func(name string) string { return filepath.Join(dir, name) }
	endpoints, stop, err := StartEmbeddedEtcd(ctx, t.TempDir(), WithServerTLS(TLSFiles{CA: f(secure.FileCA), Cert: f(secure.FileEtcdCert), Key: f(secure.FileEtcdKey)}))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if !strings.HasPrefix(endpoints[0], "https://127.0.0.1:") {
		t.Fatalf("endpoint %s", endpoints[0])
	}

	// A refused client retries until its context ends: refusals get a
	// short one (not a timing assertion: success would come at once).
	put := func(files secure.Files, wait time.Duration) error {
		cfg, err := secure.ClientTLS(files, "")
		if err != nil {
			t.Fatal(err)
		}
		cli, err := Dial(endpoints, WithTLS(cfg))
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		ctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		_, err = cli.Put(ctx, "/k", "v")
		return err
	}
	if err := put(secure.Files{CA: f(secure.FileCA), Cert: f(secure.FileWorkerCert), Key: f(secure.FileWorkerKey)}, 10*time.Second); err != nil {
		t.Errorf("put with a client certificate: %v", err)
	}
	if err := put(secure.Files{CA: f(secure.FileCA)}, 500*time.Millisecond); err == nil {
		t.Errorf("put without a client certificate succeeded")
	}
	if err := put(secure.Files{CA: f(secure.FileCA), Cert: filepath.Join(other, secure.FileWorkerCert), Key: filepath.Join(other, secure.FileWorkerKey)}, 500*time.Millisecond); err == nil {
		t.Errorf("put with a certificate of another CA succeeded")
	}
}

// Dial refuses plaintext to anything but loopback, and mismatched schemes,
// before it connects.
func TestDialRefusesPlaintext(t *testing.T) {
	cfg, err := secure.ClientTLS(secure.Files{CA: writeCA(t)}, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		endpoints []string
		opts      []DialOption
		want      string
	}{
		{[]string{"http://etcd:2379"}, nil, "loopback"},
		{[]string{"10.0.0.1:2379"}, nil, "loopback"},
		{[]string{"http://127.0.0.1:2379", "http://10.0.0.1:2379"}, nil, "loopback"},
		{[]string{"https://127.0.0.1:2379"}, nil, "needs TLS"},
		{[]string{"http://etcd:2379"}, []DialOption{WithTLS(cfg)}, "https://"},
	} {
		if cli, err := Dial(c.endpoints, c.opts...); err == nil || !strings.Contains(err.Error(), c.want) {
			if cli != nil {
				cli.Close()
			}
			t.Errorf("Dial(%v): %v, want an error with %q", c.endpoints, err, c.want)
		}
	}
}

func writeCA(t *testing.T) string {
	t.Helper()
	ca, err := secure.NewCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	set := &secure.DevelopmentSet{Files: map[string][]byte{secure.FileCA: ca.CertPEM()}}
	dir := t.TempDir()
	if err := set.Write(dir, false); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, secure.FileCA)
}
