package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
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
// its stream last received, whole or as they arrive, for its own children
// (ReduceService.Params), and streams them on chunk by chunk as it has
// them: a relay still fetching a version forwards each chunk as it comes
// (cut-through), so a level of the tree costs a chunk and a latency, not
// the whole vector's time. A fetch starts as soon as the assignment
// arrives, so a worker's children can fetch from it while it still
// computes earlier work. A fetch that fails is said to the coordinator
// (WorkFailure.params_unreached), which gives the work out again with the
// parameters inline; the failure is passed on to the worker's own
// children at once, so a hole in the tree costs one round trip, not a
// timeout per level.

// paramsFetchTimeout bounds a fetch from a relay: the relay has the
// version once its own assignment (or fetch) arrived, which takes a
// round trip. It is kept under the least deadline of a job's work for the
// reason pushTimeout is: a fetch from a frozen relay holds the worker's
// compute, and the backup copies it would run.
const paramsFetchTimeout = time.Second

// paramsChunkBytes is the size of the chunks a relay streams: an HTTP/2
// frame at gRPC's default size, the unit a relay could forward anyway.
const paramsChunkBytes = 16 << 10

// errParamsUnreached marks a failure to get an assignment's parameters
// from its relay; errRelayDown, besides, one where the relay did not
// answer, or answered wrongly (rather than answering that it lacks the
// version).
var (
	errParamsUnreached = errors.New("parameters not reached")
	errRelayDown       = errors.New("the relay did not answer")
)

// relayedParams is the version of a job's parameters a worker holds for
// the tree: whole, arriving, or failed.
type relayedParams struct {
	version uint64
	// data holds the vector's bytes received so far; once total is known
	// (≥ 0) its capacity is total, so the bytes below len(data) never
	// move or change, and readers may keep the slice.
	data  []byte
	total int             // −1 until the first chunk came
	whole *dpcnnv1.Tensor // set once all of it is in
	err   error           // the fetch failed
}

// paramsRelay holds, per job, the latest parameters of the worker's
// current Work stream for its children in the tree, and runs its fetches.
type paramsRelay struct {
	self string
	log  *slog.Logger
	// fetch opens the stream of a job's parameters from the relay at
	// address.
	fetch func(ctx context.Context, address string, r *dpcnnv1.ParamsRequest) (paramsStream, error)
	// peerDown, when set, hears of a relay that did not answer.
	peerDown func(address string)

	mu      sync.Mutex
	bound   bool
	ctx     context.Context
	cancel  context.CancelFunc // ends the binding's fetches
	jobs    map[string]*relayedParams
	changed chan struct{} // closed, and replaced, at every change
	fetches sync.WaitGroup
}

// paramsStream is the client side of ReduceService.Params.
type paramsStream interface {
	Recv() (*dpcnnv1.ParamsChunk, error)
}

func newParamsRelay(self string, log *slog.Logger, fetch func(context.Context, string, *dpcnnv1.ParamsRequest) (paramsStream, error)) *paramsRelay {
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
		t := a.GetParams()
		r.set(job, &relayedParams{version: version, data: t.GetData(), total: len(t.GetData()), whole: t})
	case a.GetParamsDelta() != nil:
		// Not kept: the coordinator never names a worker it sends a delta
		// as a relay. The version is noted, so that a wait for an older
		// one ends.
		r.set(job, &relayedParams{version: version, total: -1, err: fmt.Errorf("%w: version %d of job %s came as a delta, which is not relayed", errParamsUnreached, version, job)})
	case src != nil:
		r.mu.Lock()
		if !r.bound {
			r.mu.Unlock()
			return
		}
		ctx := r.ctx
		p := &relayedParams{version: version, total: -1}
		r.jobs[job] = p
		r.signal()
		r.fetches.Add(1)
		r.mu.Unlock()
		go func() {
			defer r.fetches.Done()
			err := r.fetchInto(ctx, job, p, src)
			if err != nil {
				r.log.Warn("parameters not fetched from the relay: the coordinator is told", "job", job, "version", version, "relay", src.GetWorkerId(), "err", err)
			}
			r.mu.Lock()
			if err != nil {
				p.err = err
			}
			r.signal()
			r.mu.Unlock()
		}()
	}
}

// fetchInto fetches version p of a job from its relay into p, chunk by
// chunk, waking the waiters at each; p.whole is set when it is all in.
func (r *paramsRelay) fetchInto(ctx context.Context, job string, p *relayedParams, src *dpcnnv1.ParamsSource) error {
	fctx, cancel := context.WithTimeout(ctx, paramsFetchTimeout)
	defer cancel()
	failed := func(err error) error {
		if status.Code(err) == codes.FailedPrecondition {
			return fmt.Errorf("%w from worker %s (%s): %w", errParamsUnreached, src.GetWorkerId(), src.GetAddress(), err)
		}
		if r.peerDown != nil {
			r.peerDown(src.GetAddress())
		}
		return fmt.Errorf("%w from worker %s (%s): %w: %w", errParamsUnreached, src.GetWorkerId(), src.GetAddress(), errRelayDown, err)
	}
	// A relay that answers wrongly is struck off like one that does not.
	refused := func(why string) error {
		return fmt.Errorf("%w from worker %s (%s): %w: %s", errParamsUnreached, src.GetWorkerId(), src.GetAddress(), errRelayDown, why)
	}
	stream, err := r.fetch(fctx, src.GetAddress(), &dpcnnv1.ParamsRequest{JobId: job, Version: p.version, WorkerId: r.self})
	if err != nil {
		return failed(err)
	}
	for {
		c, err := stream.Recv()
		if err == io.EOF {
			r.mu.Lock()
			defer r.mu.Unlock()
			if p.total < 0 || len(p.data) != p.total {
				return refused(fmt.Sprintf("the stream ended after %d bytes of %d", len(p.data), p.total))
			}
			p.whole = &dpcnnv1.Tensor{Name: "params", Shape: []int64{int64(p.total / 4)}, Data: p.data}
			return nil
		}
		if err != nil {
			return failed(err)
		}
		r.mu.Lock()
		if p.total < 0 {
			p.total = 4 * int(c.GetCount())
			p.data = make([]byte, 0, p.total)
		}
		if len(p.data)+len(c.GetData()) > p.total {
			r.mu.Unlock()
			return refused(fmt.Sprintf("more than the %d bytes its first chunk announced", p.total))
		}
		p.data = append(p.data, c.GetData()...)
		r.signal()
		r.mu.Unlock()
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

// await waits until the job's version p holds more than have bytes, or
// all of them, or failed, and returns p and the channel that will signal
// its next change. It fails when a later version came instead, the
// stream ended, or ctx ended first.
func (r *paramsRelay) await(ctx context.Context, job string, version uint64, ready func(*relayedParams) bool) (*relayedParams, error) {
	for {
		r.mu.Lock()
		if !r.bound {
			r.mu.Unlock()
			return nil, errNoStream
		}
		p, changed := r.jobs[job], r.changed
		if p != nil && p.version == version && (p.err != nil || ready(p)) {
			err := p.err
			r.mu.Unlock()
			return p, err
		}
		r.mu.Unlock()
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

// wait returns the job's parameters of version once they are all in.
func (r *paramsRelay) wait(ctx context.Context, job string, version uint64) (*dpcnnv1.Tensor, error) {
	p, err := r.await(ctx, job, version, func(p *relayedParams) bool { return p.whole != nil })
	if err != nil {
		return nil, err
	}
	return p.whole, nil
}

// serve streams the job's parameters of version to send, chunk by chunk
// as they arrive.
func (r *paramsRelay) serve(ctx context.Context, job string, version uint64, send func(*dpcnnv1.ParamsChunk) error) error {
	sent := 0
	for first := true; ; first = false {
		p, err := r.await(ctx, job, version, func(p *relayedParams) bool {
			return p.total >= 0 && (len(p.data) > sent || (p.whole != nil && first))
		})
		if err != nil {
			return err
		}
		r.mu.Lock()
		data, total := p.data, p.total
		r.mu.Unlock()
		for sent < len(data) || first {
			end := min(len(data), sent+paramsChunkBytes)
			c := &dpcnnv1.ParamsChunk{Data: data[sent:end]}
			if first {
				c.Count, first = uint32(total/4), false
			}
			if err := send(c); err != nil {
				return err
			}
			sent = end
		}
		if sent == total {
			return nil
		}
	}
}
