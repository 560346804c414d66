package coordinator

import (
	"context"
	"net"
	"strings"
	"testing"

	keyspace "github.com/dpcnn/dpcnn/cluster"
	"github.com/dpcnn/dpcnn/kernels"
)

// A server without transport credentials serves only on loopback: a
// listener on every interface is refused before anything is served.
func TestServeRefusesPlaintextElsewhere(t *testing.T) {
	cli, err := keyspace.Dial([]string{"127.0.0.1:1"}) // never used: Serve refuses first
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	srv, err := NewServer(ServerConfig{ID: "c-plain", Etcd: cli, DataDir: t.TempDir(), Backend: kernels.NewReference[float32]()})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	if err := srv.Serve(context.Background(), lis); err == nil || !strings.Contains(err.Error(), "plaintext is allowed only on a loopback address") {
		t.Fatalf("Serve on %s without credentials: %v", lis.Addr(), err)
	}
}
