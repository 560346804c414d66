package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// stream is an open Work stream.
type stream struct {
	d      *daemon
	s      grpc.BidiStreamingClient[dpcnnv1.WorkerMessage, dpcnnv1.CoordinatorMessage]
	queue  *workQueue
	sendMu sync.Mutex
	closed bool // CloseSend was called
}

// send sends m; gRPC forbids concurrent Sends on one stream.
func (s *stream) send(m *dpcnnv1.WorkerMessage) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if s.closed {
		return errors.New("stream closed")
	}
	return s.s.Send(m)
}

func (s *stream) closeSend() {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if !s.closed {
		s.closed = true
		s.s.CloseSend()
	}
}

// work opens the Work stream and serves it.
func (d *daemon) work(ctx context.Context, client dpcnnv1.WorkerServiceClient, resp *dpcnnv1.JoinResponse, addr string, followLeader bool) sessionEnd {
	opened := time.Now()
	sctx, endStream := context.WithCancel(context.WithoutCancel(ctx))
	defer endStream()
	// compute stops the computation: the stream broke, or the drain took
	// too long.
	compute, stopCompute := context.WithCancel(sctx)
	defer stopCompute()

	ws, err := client.Work(sctx)
	if err != nil {
		return sessionEnd{err: fmt.Errorf("worker %s: open work stream at %s: %w", d.cfg.ID, addr, err)}
	}
	s := &stream{d: d, s: ws, queue: newWorkQueue()}
	d.reduce.bind(s)
	defer d.reduce.unbind(s)
	d.relay.bind()
	defer d.relay.unbind()
	hello := &dpcnnv1.WorkerMessage{Kind: &dpcnnv1.WorkerMessage_Hello{Hello: &dpcnnv1.Hello{WorkerId: d.cfg.ID, Session: resp.GetSession()}}}
	if err := s.send(hello); err != nil {
		return sessionEnd{err: fmt.Errorf("worker %s: hello to %s: %w", d.cfg.ID, addr, err)}
	}

	var wg sync.WaitGroup
	defer wg.Wait() // after endStream, which the deferred calls run first
	defer endStream()

	var received atomic.Bool
	recvDone := make(chan struct{})
	var recvErr error // set before recvDone closes
	wg.Go(func() {
		defer close(recvDone)
		defer stopCompute()
		for {
			m, err := ws.Recv()
			if err != nil {
				recvErr = err
				return
			}
			received.Store(true)
			switch k := m.GetKind().(type) {
			case *dpcnnv1.CoordinatorMessage_Assignment:
				d.relay.received(k.Assignment)
				s.queue.push(&queuedWork{a: k.Assignment, arrived: time.Now()})
			case *dpcnnv1.CoordinatorMessage_Cancel:
				s.queue.cancel(k.Cancel)
			case *dpcnnv1.CoordinatorMessage_Reduce:
				d.reduce.assign(k.Reduce)
			case *dpcnnv1.CoordinatorMessage_Flush:
				d.reduce.flush(k.Flush)
			}
		}
	})
	interval := time.Duration(resp.GetHeartbeatIntervalNanos())
	if interval <= 0 {
		interval = d.cfg.HeartbeatInterval
	}
	interval = max(interval, minHeartbeatInterval)
	wg.Go(func() { s.heartbeat(sctx, interval) })

	// When ctx ends, the drain begins; it may take DrainTimeout at most.
	stopDrainTimer := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(d.cfg.DrainTimeout, stopCompute)
		context.AfterFunc(sctx, func() { t.Stop() })
	})
	defer stopDrainTimer()

	var moved <-chan struct{}
	if followLeader {
		_, moved = d.leaders.get()
	}
	end := func(err error) sessionEnd {
		productive := received.Load() || time.Since(opened) > d.cfg.RetryMax
		if productive {
			d.quickRejoins = 0
		} else if status.Code(err) == codes.FailedPrecondition && d.quickRejoins < maxQuickRejoins {
			// The coordinator does not know the session: it is a new
			// leader, or it restarted. Join again at once (but not
			// forever, should it keep refusing).
			d.quickRejoins++
			productive = true
		}
		return sessionEnd{err: err, productive: productive}
	}
	for {
		select {
		case <-ctx.Done():
			return s.drain(recvDone)
		case <-recvDone:
			return end(fmt.Errorf("worker %s: work stream at %s: %w", d.cfg.ID, addr, streamErr(recvErr)))
		case <-moved:
			l, changed := d.leaders.get()
			if l.Address != "" && l.Address != addr {
				return end(fmt.Errorf("worker %s: the leader moved from %s to %s", d.cfg.ID, addr, l.Address))
			}
			moved = changed
		case <-s.queue.ready:
			if err := s.computeQueued(ctx, compute); err != nil {
				if ctx.Err() != nil {
					return s.drain(recvDone) // drained, or the drain timed out
				}
				// The stream broke: the receiver says why.
				t := time.NewTimer(closeWait)
				select {
				case <-recvDone:
					if recvErr != nil {
						err = streamErr(recvErr)
					}
				case <-t.C:
				}
				t.Stop()
				return end(fmt.Errorf("worker %s: work stream at %s: %w", d.cfg.ID, addr, err))
			}
		}
	}
}

// streamErr turns the end of a stream into an error.
func streamErr(err error) error {
	if errors.Is(err, io.EOF) {
		return errors.New("closed by the coordinator")
	}
	return err
}

// drain closes the worker's side of the stream and waits, a little, for
// the coordinator to close its side, so that the last result sent is
// delivered.
func (s *stream) drain(recvDone <-chan struct{}) sessionEnd {
	s.closeSend()
	t := time.NewTimer(closeWait)
	defer t.Stop()
	select {
	case <-recvDone:
	case <-t.C:
	}
	return sessionEnd{err: errDrained, drained: true}
}

// heartbeat tells the coordinator every interval that the worker lives and
// what it works on.
func (s *stream) heartbeat(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	hb := &dpcnnv1.Heartbeat{}
	msg := &dpcnnv1.WorkerMessage{Kind: &dpcnnv1.WorkerMessage_Heartbeat{Heartbeat: hb}}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		hb.BusyAssignmentIds = s.queue.busy(hb.BusyAssignmentIds[:0])
		if s.send(msg) != nil {
			return // the receiver learns why
		}
	}
}

// computeQueued computes the queued assignments in order until the queue
// is empty. It returns errDrained when ctx ended (after finishing the
// subtree under way), and the error that ended the stream when sending
// failed or compute was stopped.
func (s *stream) computeQueued(ctx, compute context.Context) error {
	for {
		if ctx.Err() != nil {
			return errDrained
		}
		item, stop := context.WithCancel(compute)
		w := s.queue.pop(stop)
		if w == nil {
			stop()
			return nil
		}
		err := s.execute(ctx, item, w)
		stop()
		s.queue.finish()
		if err != nil {
			return err
		}
	}
}

// execute carries out one queued item. A failure of the assignment itself
// is reported to the coordinator as a WorkFailure; the error returned is
// one that ends the stream (or errDrained).
func (s *stream) execute(ctx, item context.Context, w *queuedWork) error {
	d := s.d
	if w.a == nil {
		d.jobs.release(w.release)
		d.relay.forget(w.release)
		d.log.Info("released job", "job", w.release)
		return nil
	}
	a := w.a
	params, err := s.params(item, a)
	j, perr := d.jobs.prepare(a, params, d.train) // even without its parameters: it may carry the spec
	if err != nil && j != nil {
		j.unreached = a.GetParamsVersion() + 1 // later work of that version fails alike
	}
	if err == nil {
		err = perr
	}
	if err == nil && !s.queue.isCancelled(w) {
		err = s.compute(ctx, item, w, j)
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errDrained), errors.Is(err, errSend):
		return err
	case s.queue.isCancelled(w):
		return nil // cancelled: nobody waits for it
	case item.Err() != nil:
		return item.Err() // stopped with the stream
	}
	if fault := (*ComputeFault)(nil); errors.As(err, &fault) {
		// A panic recovered: a bug or an input no check caught. The
		// worker lives on; the stack says where it happened.
		d.log.Error("assignment failed with a fault", "job", a.GetJobId(), "assignment", a.GetAssignmentId(), "step", a.GetStep(), "err", err, "stack", string(fault.Stack))
	} else {
		d.log.Warn("assignment failed", "job", a.GetJobId(), "assignment", a.GetAssignmentId(), "err", err)
	}
	failure := &dpcnnv1.WorkerMessage{Kind: &dpcnnv1.WorkerMessage_Failure{Failure: &dpcnnv1.WorkFailure{
		AssignmentId:    a.GetAssignmentId(),
		JobId:           a.GetJobId(),
		Message:         fmt.Sprintf("worker %s: job %s: assignment %d: step %d: %v", d.cfg.ID, a.GetJobId(), a.GetAssignmentId(), a.GetStep()+1, err),
		ParamsUnreached: errors.Is(err, errParamsUnreached),
		ParamsRelayDown: errors.Is(err, errRelayDown),
	}}}
	if err := s.send(failure); err != nil {
		return fmt.Errorf("%w: %w", errSend, err)
	}
	return nil
}

// params returns the whole parameters a carries, or those its relay
// answered; nil when it carries none or a delta.
func (s *stream) params(ctx context.Context, a *dpcnnv1.Assignment) (*dpcnnv1.Tensor, error) {
	if a.GetParams() != nil || a.GetParamsDelta() != nil || a.GetParamsFrom() == nil {
		return a.GetParams(), nil
	}
	return s.d.relay.wait(ctx, a.GetJobId(), a.GetParamsVersion())
}

// compute computes a prepared assignment and sends its results.
func (s *stream) compute(ctx, item context.Context, w *queuedWork, j *jobRun) error {
	a := w.a
	if err := j.checkVersion(a); err != nil {
		return err
	}
	switch work := a.GetWork().(type) {
	case *dpcnnv1.Assignment_Train:
		sub := work.Train.GetSubtree()
		if sub == nil {
			return errors.New("training work with no subtree")
		}
		msg, err := j.subtree(item, a, sub)
		if err != nil {
			return err
		}
		msg.GetResult().HeldNanos = time.Since(w.arrived).Nanoseconds()
		if route := a.GetRoute(); route.GetReducerId() != "" && s.pushUp(ctx, route, msg.GetResult()) {
			return nil
		}
		if err := s.send(msg); err != nil {
			return fmt.Errorf("%w: step %d: gradients of leaves [%d, %d): %w", errSend, a.GetStep()+1,
				sub.GetFirstLeaf(), sub.GetFirstLeaf()+sub.GetLeafCount(), err)
		}
		return nil
	case *dpcnnv1.Assignment_Eval:
		msg, err := j.evaluate(item, a, s.d.test)
		if err != nil {
			return err
		}
		msg.GetResult().HeldNanos = time.Since(w.arrived).Nanoseconds()
		if err := s.send(msg); err != nil {
			return fmt.Errorf("%w: evaluation: %w", errSend, err)
		}
		return nil
	default:
		return errors.New("assignment carries no work")
	}
}

// pushUp hands a result to the reducer its route names (itself, or
// another worker's ReduceService) and reports whether it took it; when it
// did not, the caller sends the result to the coordinator.
func (s *stream) pushUp(ctx context.Context, route *dpcnnv1.ReduceRoute, r *dpcnnv1.WorkResult) bool {
	d := s.d
	p := resultPiece(d.cfg.ID, r, route.GetGroup())
	var err error
	if route.GetReducerId() == d.cfg.ID {
		err = d.reduce.take(p)
	} else {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pushTimeout)
		err = d.pushPiece(pctx, route.GetAddress(), p)
		cancel()
	}
	if err != nil {
		d.log.Warn("reducer unreachable: the result goes to the coordinator", "reducer", route.GetReducerId(), "address", route.GetAddress(), "err", err)
		return false
	}
	return true
}
