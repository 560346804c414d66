package coordinator

import "sync"

// mailbox is an unbounded queue with a ready signal, so a producer never
// blocks on a slow consumer: the server forwards worker messages to a job's
// driver, and the driver queues messages for worker streams, through
// mailboxes. A consumer waits on Ready and then takes everything queued.
type mailbox[T any] struct {
	mu     sync.Mutex
	items  []T
	ready  chan struct{} // holds a token while items is not empty
	closed bool
}

func newMailbox[T any]() *mailbox[T] {
	return &mailbox[T]{ready: make(chan struct{}, 1)}
}

// Put queues v; it reports false, dropping v, once the mailbox is closed.
func (m *mailbox[T]) Put(v T) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.items = append(m.items, v)
	select {
	case m.ready <- struct{}{}:
	default:
	}
	return true
}

// Ready yields a value when items may be waiting.
func (m *mailbox[T]) Ready() <-chan struct{} { return m.ready }

// Take returns everything queued, appended to dst, and empties the queue.
func (m *mailbox[T]) Take(dst []T) []T {
	m.mu.Lock()
	defer m.mu.Unlock()
	dst = append(dst, m.items...)
	clear(m.items)
	m.items = m.items[:0]
	return dst
}

// Close drops what is queued and refuses what comes later.
func (m *mailbox[T]) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	clear(m.items)
	m.items = nil
}
