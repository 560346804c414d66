package netlab

import (
	"net"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// delayConn delays everything written to a connection by a fixed time
// before it reaches the network: a delay line, since tc's netem (the
// kernel's way) is not on every machine. Write returns at once, as a
// kernel's socket buffer would, so the delay is latency, not a slower
// writer: a stream of writes arrives as fast as it was written, each one
// delay late. Reads are untouched; the far end's own delayConn delays the
// other direction.
type delayConn struct {
	net.Conn
	delay time.Duration

	mu      sync.Mutex
	cond    sync.Cond // signals the sender (data queued, closed) and blocked writers (room)
	queue   []delayed
	queued  int
	err     error // the first write error, returned by every later Write
	closed  bool
	flushed chan struct{} // closed when the sender ends
}

type delayed struct {
	due  time.Time
	data []byte
}

// maxQueued bounds what a delayConn holds, as a socket's send buffer does:
// a writer faster than its link blocks instead of queueing without end.
const maxQueued = 8 << 20

func newDelayConn(c net.Conn, delay time.Duration) net.Conn {
	if delay <= 0 {
		return c
	}
	d := &delayConn{Conn: c, delay: delay, flushed: make(chan struct{})}
	d.cond.L = &d.mu
	go d.send()
	return d
}

func (d *delayConn) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for d.queued >= maxQueued && d.err == nil && !d.closed {
		d.cond.Wait()
	}
	if d.closed {
		return 0, net.ErrClosed
	}
	if d.err != nil {
		return 0, d.err
	}
	d.queue = append(d.queue, delayed{due: time.Now().Add(d.delay), data: append([]byte(nil), p...)})
	d.queued += len(p)
	d.cond.Broadcast()
	return len(p), nil
}

// Close sends what is queued (each piece when it is due), then closes the
// connection; after a second it closes it anyway, so a peer that stopped
// reading cannot hold the close up.
func (d *delayConn) Close() error {
	d.mu.Lock()
	d.closed = true
	d.cond.Broadcast()
	d.mu.Unlock()
	select {
	case <-d.flushed:
	case <-time.After(d.delay + time.Second):
	}
	return d.Conn.Close()
}

// send writes each queued piece when it falls due, those due together in
// one write. It runs on a thread of its own with the kernel's timer slack
// at its least and sleeps to the due time: Go's timers overshoot by up to a
// millisecond on a loaded machine, more than the latencies it emulates,
// while a nanosleep with 1 ns of slack wakes within tens of microseconds
// (0.2 ms each way: a round trip of 0.47 ms, median, instead of 0.40).
// Spinning for the last 150 µs (an earlier version, yielding on the locked
// thread) made that 0.46 ms but cost a futex round per yield: with eight
// emulated workers it slowed every step by 2.4 ms on two cores, more than
// it corrected.
func (d *delayConn) send() {
	defer close(d.flushed)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
	var batch []byte
	for {
		d.mu.Lock()
		for len(d.queue) == 0 && !d.closed {
			d.cond.Wait()
		}
		if len(d.queue) == 0 || d.err != nil {
			d.mu.Unlock()
			return
		}
		due := d.queue[0].due
		d.mu.Unlock()
		waitUntil(due)

		d.mu.Lock()
		now, n := time.Now(), 0
		batch = batch[:0]
		for n < len(d.queue) && !d.queue[n].due.After(now) {
			batch = append(batch, d.queue[n].data...)
			n++
		}
		d.queue = d.queue[n:]
		d.mu.Unlock()

		_, err := d.Conn.Write(batch)

		d.mu.Lock()
		d.queued -= len(batch)
		if err != nil && d.err == nil {
			d.err = err
		}
		d.cond.Broadcast()
		failed := d.err != nil
		d.mu.Unlock()
		if failed {
			return
		}
	}
}

func waitUntil(due time.Time) {
	if left := time.Until(due); left > 0 {
		ts := unix.NsecToTimespec(int64(left))
		for unix.Nanosleep(&ts, &ts) == unix.EINTR {
		}
	}
}
