package worker

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// workQueue holds a stream's assignments in the order they came, between
// the goroutine that receives them and the one that computes them.
// Cancelled assignments stay queued, marked, because their parameters and
// spec still matter to the assignments after them.
type workQueue struct {
	mu      sync.Mutex
	items   []*queuedWork
	current *queuedWork
	ready   chan struct{} // holds a token while items is not empty
}

// queuedWork is an assignment, or the release of a job.
type queuedWork struct {
	a       *dpcnnv1.Assignment
	release string    // when a is nil: the job to forget
	arrived time.Time // when the stream received it: results report the time held since

	cancelled bool
	stop      context.CancelFunc // stops the computation, while it runs
}

func newWorkQueue() *workQueue { return &workQueue{ready: make(chan struct{}, 1)} }

func (q *workQueue) push(w *queuedWork) {
	q.mu.Lock()
	q.items = append(q.items, w)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// pop takes the next item, which becomes the current one, or returns nil.
// stop is the item's cancellation, called when the item is cancelled while
// it is current.
func (q *workQueue) pop(stop context.CancelFunc) *queuedWork {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.current = nil
	if len(q.items) == 0 {
		return nil
	}
	w := q.items[0]
	q.items[0] = nil
	q.items = q.items[1:]
	w.stop = stop
	q.current = w
	return w
}

// finish ends the current item.
func (q *workQueue) finish() {
	q.mu.Lock()
	q.current = nil
	q.mu.Unlock()
}

// isCancelled reports whether w was cancelled.
func (q *workQueue) isCancelled(w *queuedWork) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return w.cancelled
}

// cancel marks the job's assignments among ids (all of them when ids is
// empty) cancelled, stopping the current one if it is one of them, and
// queues the job's release when release is set.
func (q *workQueue) cancel(c *dpcnnv1.CancelWork) {
	q.mu.Lock()
	match := func(w *queuedWork) bool {
		return w != nil && w.a != nil && w.a.GetJobId() == c.GetJobId() &&
			(len(c.GetAssignmentIds()) == 0 || slices.Contains(c.GetAssignmentIds(), w.a.GetAssignmentId()))
	}
	for _, w := range q.items {
		if match(w) {
			w.cancelled = true
		}
	}
	if w := q.current; match(w) && !w.cancelled {
		w.cancelled = true
		if w.stop != nil {
			w.stop()
		}
	}
	q.mu.Unlock()
	if c.GetReleaseJob() {
		q.push(&queuedWork{release: c.GetJobId()})
	}
}

// busy appends the IDs of the assignments received and not finished or
// cancelled to dst.
func (q *workQueue) busy(dst []uint64) []uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	if w := q.current; w != nil && w.a != nil && !w.cancelled {
		dst = append(dst, w.a.GetAssignmentId())
	}
	for _, w := range q.items {
		if w.a != nil && !w.cancelled {
			dst = append(dst, w.a.GetAssignmentId())
		}
	}
	return dst
}
