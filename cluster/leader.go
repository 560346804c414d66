package cluster

import (
	"context"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrNoLeader is returned by LeaderAddress while no coordinator leads.
var ErrNoLeader = errors.New("cluster: no coordinator leads")

// LeaderKey is the election prefix the coordinators campaign on with
// concurrency.NewElection(session, LeaderKey(prefix)).
func LeaderKey(prefix string) string { return prefix + "leader" }

// CoordinatorKey is where coordinator id keeps its gRPC address while its
// session lives, so anyone can put a name to the leader's address.
func CoordinatorKey(prefix, id string) string { return prefix + "coordinators/" + id }

// Leader is the coordinator that leads, as the election keys show it.
type Leader struct {
	// Address is the leader's gRPC address (host:port).
	Address string
	// Key is the leader's election key.
	Key string
	// Term is the etcd revision at which the leader's campaign began; it
	// grows with every new leader.
	Term int64
}

// LeaderAddress returns the current leader, or ErrNoLeader.
func LeaderAddress(ctx context.Context, cli *clientv3.Client, prefix string) (Leader, error) {
	l, _, err := leader(ctx, cli, prefix)
	return l, err
}

// leader reads the oldest election key, as concurrency.Election.Leader
// does, without needing a session of its own. It also returns the revision
// of the read, for a watch to continue from.
func leader(ctx context.Context, cli *clientv3.Client, prefix string) (Leader, int64, error) {
	resp, err := cli.Get(ctx, LeaderKey(prefix)+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return Leader{}, 0, fmt.Errorf("cluster: read leader: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return Leader{}, resp.Header.Revision, ErrNoLeader
	}
	kv := resp.Kvs[0]
	return Leader{Address: string(kv.Value), Key: string(kv.Key), Term: kv.CreateRevision}, resp.Header.Revision, nil
}

// WatchLeader sends the current leader, then every change of leader (or of
// its address), on the returned channel until ctx ends; then it closes the
// channel. A zero Leader means that no coordinator leads. Errors reading
// etcd are retried; the channel only closes with ctx.
func WatchLeader(ctx context.Context, cli *clientv3.Client, prefix string) <-chan Leader {
	out := make(chan Leader, 1)
	go func() {
		defer close(out)
		var last Leader
		sent := false
		for ctx.Err() == nil {
			l, rev, err := leader(ctx, cli, prefix)
			if err != nil && !errors.Is(err, ErrNoLeader) {
				Sleep(ctx, retryDelay)
				continue
			}
			if !sent || l != last {
				select {
				case out <- l:
				case <-ctx.Done():
					return
				}
				last, sent = l, true
			}
			// Wait for any change to the election keys after the read, then
			// read again: a change may or may not move the leadership.
			wctx, cancel := context.WithCancel(ctx)
			wch := cli.Watch(clientv3.WithRequireLeader(wctx), LeaderKey(prefix)+"/", clientv3.WithPrefix(), clientv3.WithRev(rev+1))
			changed := false
			for resp := range wch {
				if resp.Err() != nil {
					break
				}
				if len(resp.Events) > 0 {
					changed = true
					break
				}
			}
			cancel()
			if !changed {
				Sleep(ctx, retryDelay) // the watch broke: do not spin
			}
		}
	}()
	return out
}
