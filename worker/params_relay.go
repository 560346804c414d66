package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// Parameters down the tree. With the tree of reducers the coordinator may
// send a step's parameters to a few workers only, and name, in the others'
// assignments, the worker to fetch them from (Assignment.params_from): a
// tree as wide as the reducers', so its one link carries a fan-out of
// vectors a step instead of one per worker. A worker keeps the parameters
// its stream last received, whole, inline or fetched, for its own children
// (ReduceService.Params); a fetch starts as soon as the assignment arrives,
// so a worker's children can fetch from it while it still computes
// earlier work. A fetch that fails is said to the coordinator
// (WorkFailure.params_unreached), which gives the work out again with the
// parameters inline; the failure is passed on to the worker's own
// children at once, so a hole in the tree costs one round trip, not a
// timeout per level.

// paramsFetchTimeout bounds a fetch from a relay: the relay has the
// version once its own assignment (or fetch) arrived, which takes a
// round trip; a relay that stopped answering is found by the coordinator
// through its heartbeats well before this, and the work given out again.
const paramsFetchTimeout = 10 * time.Second

// errParamsUnreached marks a failure to get an assignment's parameters
// from its relay; errRelayDown, besides, one where the relay did not
// answer (rather than answering that it lacks the version).
var (
	errParamsUnreached = errors.New("parameters not reached")
	errRelayDown       = errors.New("the relay did not answer")
)

// relayedParams is the version of a job's parameters a worker holds for
// the tree: ready (params set), being fetched, or failed.
type relayedParams struct {
	version uint64
	params  *dpcnnv1.Tensor // nil while being fetched or after a failure
	err     error           // the fetch failed
}

// paramsRelay holds, per job, the latest parameters of the worker's
// current Work stream for its children in the tree, and runs its fetches.
type paramsRelay struct {
	self string
	log  *slog.Logger
	// fetch asks the relay at address for a job's parameters.
	fetch func(ctx context.Context, address string, r *dpcnnv1.ParamsRequest) (*dpcnnv1.ParamsReply, error)

	mu      sync.Mutex
	bound   bool
	ctx     context.Context
	cancel  context.CancelFunc // ends the binding's fetches
	jobs    map[string]*relayedParams
	changed chan struct{} // closed, and replaced, at every change
	fetches sync.WaitGroup
}

func newParamsRelay(self string, log *slog.Logger, fetch func(context.Context, string, *dpcnnv1.ParamsRequest) (*dpcnnv1.ParamsReply, error)) *paramsRelay {
	return &paramsRelay{self: self, log: log, fetch: fetch, jobs: map[string]*relayedParams{}, changed: make(chan struct{})}
}

// signal wakes every waiter; the caller holds r.mu.
func (r *paramsRelay) signal() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// bind starts a Work stream's binding; unbind ends it, forgetting every
// job's parameters and stopping the fetches under way.
func (r *paramsRelay) bind() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bound = true
	r.ctx, r.cancel = context.WithCancel(context.Background())
	clear(r.jobs)
	r.signal()
}

func (r *paramsRelay) unbind() {
	r.mu.Lock()
	if r.bound {
		r.bound = false
		r.cancel()
		clear(r.jobs)
		r.signal()
	}
	r.mu.Unlock()
	r.fetches.Wait()
}

// received notes an assignment as its stream delivers it, in order: whole
// parameters are kept for the tree, and parameters to fetch start being
// fetched.
func (r *paramsRelay) received(a *dpcnnv1.Assignment) {
	job, version := a.GetJobId(), a.GetParamsVersion()
	switch src := a.GetParamsFrom(); {
	case a.GetParams() != nil:
		r.set(job, &relayedParams{version: version, params: a.GetParams()})
	case a.GetParamsDelta() != nil:
		r.set(job, nil) // not kept whole: nobody fetches from a worker sent a delta
	case src != nil:
		r.mu.Lock()
		if !r.bound {
			r.mu.Unlock()
			return
		}
		ctx := r.ctx
		r.jobs[job] = &relayedParams{version: version}
		r.signal()
		r.fetches.Add(1)
		r.mu.Unlock()
		go func() {
			defer r.fetches.Done()
			fctx, cancel := context.WithTimeout(ctx, paramsFetchTimeout)
			defer cancel()
			reply, err := r.fetch(fctx, src.GetAddress(), &dpcnnv1.ParamsRequest{JobId: job, Version: version, WorkerId: r.self})
			got := &relayedParams{version: version}
			switch {
			case status.Code(err) == codes.FailedPrecondition:
				got.err = fmt.Errorf("%w from worker %s (%s): %w", errParamsUnreached, src.GetWorkerId(), src.GetAddress(), err)
			case err != nil:
				got.err = fmt.Errorf("%w from worker %s (%s): %w: %w", errParamsUnreached, src.GetWorkerId(), src.GetAddress(), errRelayDown, err)
			case reply.GetParams() == nil:
				got.err = fmt.Errorf("%w from worker %s (%s): an answer without parameters", errParamsUnreached, src.GetWorkerId(), src.GetAddress())
			default:
				got.params = reply.GetParams()
			}
			if got.err != nil {
				r.log.Warn("parameters not fetched from the relay: the coordinator is told", "job", job, "version", version, "relay", src.GetWorkerId(), "err", got.err)
			}
			r.mu.Lock()
			if cur := r.jobs[job]; r.bound && cur != nil && cur.version == version && cur.params == nil && cur.err == nil {
				r.jobs[job] = got
				r.signal()
			}
			r.mu.Unlock()
		}()
	}
}

// set makes p the job's parameters (nil: none kept).
func (r *paramsRelay) set(job string, p *relayedParams) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.bound {
		return
	}
	if p == nil {
		delete(r.jobs, job)
	} else {
		r.jobs[job] = p
	}
	r.signal()
}

// forget drops a job's parameters (the job was released).
func (r *paramsRelay) forget(job string) { r.set(job, nil) }

// wait returns the job's parameters of version once they are held. It
// fails when the fetch of that version failed, a later version came
// instead, the stream ended, or ctx ended first.
func (r *paramsRelay) wait(ctx context.Context, job string, version uint64) (*dpcnnv1.Tensor, error) {
	for {
		r.mu.Lock()
		if !r.bound {
			r.mu.Unlock()
			return nil, errNoStream
		}
		p, changed := r.jobs[job], r.changed
		r.mu.Unlock()
		if p != nil && p.version == version {
			if p.err != nil {
				return nil, p.err
			}
			if p.params != nil {
				return p.params, nil
			}
		}
		if p != nil && p.version > version {
			return nil, fmt.Errorf("%w: version %d of job %s wanted, version %d held", errParamsUnreached, version, job, p.version)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: version %d of job %s: %w", errParamsUnreached, version, job, context.Cause(ctx))
		case <-changed:
		}
	}
}
