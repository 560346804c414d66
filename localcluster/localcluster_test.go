package localcluster

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
	"github.com/dpcnn/dpcnn/secure"
)

// A local cluster leads once Start returns, serves only callers with its
// CA and token, lists its workers, and stops whole.
func TestStartServesAndStops(t *testing.T) {
	lc, err := Start(context.Background(), Config{Dir: t.TempDir(), Workers: 2, Threads: 2, Backend: "cpu"})
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Stop()
	if lc.Train == nil || lc.Test == nil || len(lc.Etcd) == 0 || lc.Transport.Token == "" {
		t.Fatalf("cluster %+v", lc)
	}
	for _, name := range []string{secure.FileCA, secure.FileToken} {
		if _, err := os.Stat(filepath.Join(lc.TLSDir, name)); err != nil {
			t.Error(err)
		}
	}
	opts, err := lc.Transport.DialOptions(lc.Coordinator)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(lc.Coordinator, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cluster := dpcnnv1.NewClusterServiceClient(conn)
	r, err := cluster.Leader(context.Background(), &dpcnnv1.LeaderRequest{})
	if err != nil || !r.AnsweredByLeader {
		t.Fatalf("Leader = %v, %v: the coordinator should lead once Start returns", r, err)
	}
	// The workers join by themselves, soon after.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ws, err := cluster.ListWorkers(context.Background(), &dpcnnv1.ListWorkersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(ws.Workers) == 2 {
			break
		}
		select {
		case <-lc.Failed:
			t.Fatalf("the cluster failed: %v", lc.Err())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("workers %v: want 2", ws.Workers)
		}
	}
	if err := lc.Err(); err != nil {
		t.Fatal(err)
	}
	lc.Stop()
	select {
	case <-lc.Failed:
	default:
		t.Fatal("Failed is still open after Stop")
	}
}

func TestStartRefusesNoWorkers(t *testing.T) {
	if _, err := Start(context.Background(), Config{Dir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "0 workers") {
		t.Fatalf("Start with no workers: %v", err)
	}
}
