package coordinator

import (
	"context"
	"errors"
	"time"

	keyspace "github.com/dpcnn/dpcnn/cluster"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// setState moves the job to st: it writes the new status to etcd first,
// then shows it (GetJob) and publishes the change (WatchJob), so a client
// that saw the change finds it in etcd too. Staying in a state does
// nothing.
func (d *driver) setState(st dpcnnv1.JobState, reason string) {
	d.s.mu.Lock()
	next := d.entry.status // the driver is the only writer of a running job's status
	d.s.mu.Unlock()
	old := next.State
	waiting := ""
	if st == dpcnnv1.JobState_JOB_STATE_WAITING_FOR_WORKERS {
		waiting = reason
	}
	if old == st && next.Waiting == waiting {
		return
	}
	now := d.now().UTC()
	next.State, next.Updated, next.Waiting = st, now, waiting
	if st == dpcnnv1.JobState_JOB_STATE_RUNNING && next.Started.IsZero() {
		next.Started = now
	}
	if st == dpcnnv1.JobState_JOB_STATE_FAILED || st == dpcnnv1.JobState_JOB_STATE_CANCELLED {
		next.Error = reason
	}
	if next.Ended() {
		next.Finished, next.LiveWorkers = now, 0
	}
	d.dirty = true
	d.putStatus(next)
	d.s.mu.Lock()
	d.entry.status = next
	d.entry.publish(stateEvent(old, st, reason), true)
	d.s.mu.Unlock()
	d.log.Info("job state", "from", old, "to", st, "reason", reason)
}

// finish ends the job in state st.
func (d *driver) finish(st dpcnnv1.JobState, reason string) {
	d.setState(st, reason)
	d.ended = true
	d.s.mu.Lock()
	select {
	case d.l.wake <- struct{}{}:
	default:
	}
	d.s.mu.Unlock()
}

// writeStatus writes the job's status to etcd when it changed: at once
// when forced, else at most every StatusInterval.
func (d *driver) writeStatus(force bool) {
	if !d.dirty || (!force && d.now().Sub(d.lastWrite) < d.s.cfg.StatusInterval) {
		return
	}
	d.s.mu.Lock()
	st := d.entry.status
	d.s.mu.Unlock()
	d.putStatus(st)
}

// putStatus writes st as the job's status in etcd. A write refused because
// this coordinator no longer leads ends the term; other failures are
// retried by the next write.
func (d *driver) putStatus(st keyspace.JobStatus) {
	ctx, cancel := context.WithTimeout(d.l.ctx, 5*time.Second)
	defer cancel()
	err := keyspace.PutJobStatus(ctx, d.s.cfg.Etcd, d.s.cfg.Prefix, d.id, st, d.l.guard())
	switch {
	case errors.Is(err, keyspace.ErrNotLeader):
		d.log.Warn("no longer the leader: status write refused")
		d.l.cancel()
	case err != nil:
		if d.l.ctx.Err() == nil {
			d.log.Warn("write job status", "err", err)
		}
	default:
		d.dirty, d.lastWrite = false, d.now()
	}
}

func (d *driver) publish(ev *dpcnnv1.JobEvent, retain bool) {
	d.s.mu.Lock()
	d.entry.publish(ev, retain)
	d.s.mu.Unlock()
}

func (d *driver) logLine(level dpcnnv1.LogLevel, msg string) {
	d.publish(logEvent(level, "coordinator", msg), true)
}
