package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// DefaultWorkerTTL is how long a worker's registration outlives its last
// lease renewal: a worker that dies disappears from the keyspace this long
// after.
const DefaultWorkerTTL = 5 * time.Second

// retryDelay spaces retries of etcd requests that failed.
const retryDelay = 500 * time.Millisecond

// WorkerRecord is what a worker registers about itself under
// <prefix>workers/<id>.
type WorkerRecord struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	// Backend is the kind of backend the worker computes with: "cpu" or "cuda".
	Backend string `json:"backend"`
	Cores   int    `json:"cores"`
	// Speed is the training throughput the worker measured, images per second.
	Speed   float64 `json:"speed"`
	Version string  `json:"version"`
}

// WorkersPrefix is the key prefix of every worker record.
func WorkersPrefix(prefix string) string { return prefix + "workers/" }

// WorkerKey is the key of worker id's record.
func WorkerKey(prefix, id string) string { return WorkersPrefix(prefix) + id }

// RegisterWorker writes rec under a lease of ttl (rounded up to whole
// seconds) and keeps the lease alive in the background; when the lease is
// lost (etcd was unreachable for longer than ttl) it registers again,
// retrying until ctx ends. stop revokes the lease, so the record vanishes at
// once, and waits for the background work to end; it may be called more than
// once. When ctx ends without stop, renewals stop and the record expires
// after ttl, as if the worker had died.
func RegisterWorker(ctx context.Context, cli *clientv3.Client, prefix string, rec WorkerRecord, ttl time.Duration) (stop func(), err error) {
	if rec.ID == "" || strings.Contains(rec.ID, "/") {
		return nil, fmt.Errorf("cluster: register worker %q: bad id", rec.ID)
	}
	if ttl <= 0 {
		ttl = DefaultWorkerTTL
	}
	value, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("cluster: register worker %s: %w", rec.ID, err)
	}
	key := WorkerKey(prefix, rec.ID)
	ttlSeconds := int64(math.Ceil(ttl.Seconds()))
	lease, err := putUnderLease(ctx, cli, key, string(value), ttlSeconds)
	if err != nil {
		return nil, fmt.Errorf("cluster: register worker %s: %w", rec.ID, err)
	}

	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	var mu sync.Mutex // guards current against stop reading it mid-renewal
	current := lease
	go func() {
		defer close(done)
		for {
			mu.Lock()
			id := current
			mu.Unlock()
			keepAlive(runCtx, cli, id)
			// The lease is gone, or we are stopping.
			for runCtx.Err() == nil {
				id, err := putUnderLease(runCtx, cli, key, string(value), ttlSeconds)
				if err == nil {
					mu.Lock()
					current = id
					mu.Unlock()
					break
				}
				Sleep(runCtx, retryDelay)
			}
			if runCtx.Err() != nil {
				return
			}
		}
	}()

	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
			mu.Lock()
			id := current
			mu.Unlock()
			revokeCtx, cancelRevoke := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancelRevoke()
			_, _ = cli.Revoke(revokeCtx, id) // best effort: the lease expires anyway
		})
	}
	return stop, nil
}

// putUnderLease grants a lease and puts key=value under it.
func putUnderLease(ctx context.Context, cli *clientv3.Client, key, value string, ttlSeconds int64) (clientv3.LeaseID, error) {
	grant, err := cli.Grant(ctx, ttlSeconds)
	if err != nil {
		return 0, fmt.Errorf("grant lease: %w", err)
	}
	if _, err := cli.Put(ctx, key, value, clientv3.WithLease(grant.ID)); err != nil {
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	return grant.ID, nil
}

// keepAlive renews lease until ctx ends or the lease is lost.
func keepAlive(ctx context.Context, cli *clientv3.Client, lease clientv3.LeaseID) {
	ch, err := cli.KeepAlive(ctx, lease)
	if err != nil {
		return
	}
	for range ch {
	}
}

// ListWorkers returns the registered workers, by id. A record that does not
// decode is skipped: one bad writer must not hide the others.
func ListWorkers(ctx context.Context, cli *clientv3.Client, prefix string) ([]WorkerRecord, error) {
	resp, err := cli.Get(ctx, WorkersPrefix(prefix), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("cluster: list workers: %w", err)
	}
	out := make([]WorkerRecord, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var rec WorkerRecord
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			continue
		}
		if rec.ID == "" {
			rec.ID = strings.TrimPrefix(string(kv.Key), WorkersPrefix(prefix))
		}
		out = append(out, rec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}
