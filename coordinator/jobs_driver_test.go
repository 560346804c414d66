package coordinator

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	keyspace "github.com/dpcnn/dpcnn/cluster"
)

// A job's driver reads the time from ServerConfig.Clock, not the wall
// clock: a coordinator whose clock runs 1000 hours ahead records its
// checkpoints that far ahead, and the job still trains to the same end.
func TestDriverKeepsItsClock(t *testing.T) {
	train, test := loadMNIST(t)
	cli := testEtcd(t)
	const ahead = 1000 * time.Hour
	var reads atomic.Int64
	c := startCoordinatorWith(t, cli, "c1", t.TempDir(), func(cfg *ServerConfig) {
		cfg.Clock = func() time.Time { reads.Add(1); return time.Now().Add(ahead) }
	}, grpc.WithTransportCredentials(insecure.NewCredentials()))
	waitLeading(t, c)
	startWorkers(t, c.conn, &testWorker{id: "w-1", train: train, test: test})
	before := time.Now()
	runTinyJob(t, cli, c, tinySpec(), 1, false)

	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	rec, found, err := keyspace.GetJob(ctx, cli, "/test/", "tiny")
	if err != nil || !found {
		t.Fatalf("etcd record: %v, %v", found, err)
	}
	written := rec.Status.CheckpointWritten
	if written.Before(before.Add(ahead)) || written.After(time.Now().Add(ahead)) {
		t.Fatalf("checkpoint written at %v: want the driver's clock, %v ahead of %v", written, ahead, before)
	}
	if reads.Load() == 0 {
		t.Fatal("the driver never read its clock")
	}
}
