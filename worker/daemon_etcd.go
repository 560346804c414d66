package worker

import (
	"context"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dpcnn/dpcnn/cluster"
)

// register keeps the worker's record in etcd, trying again in the
// background until it succeeds; stop removes it.
func (d *daemon) register(ctx context.Context) *registration {
	rec := cluster.WorkerRecord{
		ID: d.cfg.ID, Address: d.cfg.Address, Backend: d.kind,
		Cores: d.cores, Speed: d.speed, Version: d.cfg.Version,
	}
	r := &registration{done: make(chan struct{})}
	ctx, r.cancel = context.WithCancel(ctx)
	go func() {
		defer close(r.done)
		retry := cluster.Backoff(d.cfg.RetryMin, d.cfg.RetryMax)
		for {
			stop, err := cluster.RegisterWorker(ctx, d.etcd, d.prefix, rec, d.cfg.RegistrationTTL)
			if err == nil {
				r.deregister = stop
				d.log.Info("registered in etcd", "key", cluster.WorkerKey(d.prefix, rec.ID))
				return
			}
			if ctx.Err() != nil {
				return
			}
			d.log.Warn("register in etcd", "err", err)
			if !cluster.Sleep(ctx, retry.NextBackOff()) {
				return
			}
		}
	}()
	return r
}

// registration is the worker's record in etcd.
type registration struct {
	cancel     context.CancelFunc
	done       chan struct{}
	deregister func() // set by the time done closes, when registered
}

func (r *registration) stop() {
	r.cancel()
	<-r.done
	if r.deregister != nil {
		r.deregister()
	}
}

// leaderTracker follows the coordinator election in etcd.
type leaderTracker struct {
	mu      sync.Mutex
	current cluster.Leader
	changed chan struct{} // closed, and replaced, at every change
}

// watchLeaders follows the leader until ctx ends.
func watchLeaders(ctx context.Context, cli *clientv3.Client, prefix string) *leaderTracker {
	t := &leaderTracker{changed: make(chan struct{})}
	ch := cluster.WatchLeader(ctx, cli, prefix)
	go func() {
		for l := range ch {
			t.mu.Lock()
			t.current = l
			close(t.changed)
			t.changed = make(chan struct{})
			t.mu.Unlock()
		}
	}()
	return t
}

// get returns the leader as last seen (a zero Leader when none leads or
// none is known yet) and a channel that closes when that changes.
func (t *leaderTracker) get() (cluster.Leader, <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.current, t.changed
}

// wait returns the leader's address, waiting until one leads or ctx ends.
func (t *leaderTracker) wait(ctx context.Context) (string, error) {
	for {
		l, changed := t.get()
		if l.Address != "" {
			return l.Address, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}
