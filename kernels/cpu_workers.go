package kernels

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// cpuTask is a unit of parallel work: items numbered from 0, each computed by
// run on some thread. worker (0 for the calling goroutine) names the thread,
// so run can use that thread's scratch space; what an item computes must not
// depend on it.
type cpuTask interface {
	run(worker, item int)
}

// cpuWorkers is a fork-join pool of long-lived helper goroutines. The caller
// of run works too, as worker 0. Items are handed out first come first served
// from a shared counter, which balances the load without any item's result
// depending on who computed it. Starting a task allocates nothing.
//
// A training step is dozens of parallel calls with short serial stretches
// between them, and waking a parked goroutine (a futex, and on a shared
// virtual machine often a descheduled thread) took about 80 µs a call here:
// the scheduler's delay profile put 4.7 ms of a 36 ms step on the helpers'
// wake-ups. So a helper that finishes a task spins for cpuSpinWait watching
// its state for the next one before it parks on its channel, and the caller
// spins as long for the helpers to finish before it waits on done.
type cpuWorkers struct {
	start []chan struct{} // one per helper; a value starts a parked helper
	state []cpuHelperState
	done  sync.WaitGroup
	busy  atomic.Int32 // helpers still working on the current task
	once  sync.Once

	// The current task, written by run before it signals the helpers and
	// read by them after they receive the signal.
	task  cpuTask
	items int
	next  atomic.Int64
	fault atomic.Pointer[cpuFault]
}

// cpuSpinWait is how long a helper spins for the next task, and the caller
// for the helpers, before parking: longer than the serial stretches between
// a step's parallel calls, short enough that an idle pool costs nothing.
const cpuSpinWait = 50 * time.Microsecond

// cpuHelperState is one helper's handshake with run, padded to its own
// cache line: parked (waiting on its channel), spinning (watching the
// state), or started (run handed it a task while it spun).
type cpuHelperState struct {
	v atomic.Int32
	_ [60]byte
}

const (
	cpuHelperParked int32 = iota
	cpuHelperSpinning
	cpuHelperStarted
)

// newCPUWorkers starts threads−1 helper goroutines.
func newCPUWorkers(threads int) *cpuWorkers {
	p := &cpuWorkers{start: make([]chan struct{}, max(threads-1, 0))}
	p.state = make([]cpuHelperState, len(p.start))
	for i := range p.start {
		p.start[i] = make(chan struct{}, 1)
		go p.help(i+1, p.start[i])
	}
	return p
}

// run computes every item of t and returns when all are done. A panic in
// any item, on any thread, is raised again on the caller's goroutine once
// every thread has stopped, so the caller can recover it (a worker turns it
// into a failed assignment) and the pool stays usable; a panic on a helper
// goroutine would otherwise end the process.
func (p *cpuWorkers) run(t cpuTask, items int) {
	helpers := min(len(p.start), items-1)
	p.task, p.items = t, items
	p.next.Store(0)
	p.fault.Store(nil)
	p.done.Add(helpers)
	p.busy.Store(int32(helpers))
	for i, s := range p.start[:helpers] {
		// A spinning helper takes the task from its state (the swap
		// publishes the fields above to it); a parked one needs the send.
		if !p.state[i].v.CompareAndSwap(cpuHelperSpinning, cpuHelperStarted) {
			s <- struct{}{}
		}
	}
	p.workGuarded(0)
	for spin := time.Now(); p.busy.Load() > 0 && time.Since(spin) < cpuSpinWait; {
		runtime.Gosched() // a helper may need this thread's P
	}
	p.done.Wait()
	p.task = nil // do not keep the caller's slices alive
	if f := p.fault.Load(); f != nil {
		panic(f.value)
	}
}

// cpuFault is the first panic of a task.
type cpuFault struct{ value any }

// workGuarded is work, recording a panic instead of letting it unwind the
// thread; the other threads stop claiming items.
func (p *cpuWorkers) workGuarded(worker int) {
	defer func() {
		if r := recover(); r != nil {
			p.fault.CompareAndSwap(nil, &cpuFault{r})
			p.next.Store(int64(p.items)) // nothing more is handed out
		}
	}()
	p.work(worker)
}

// work claims and computes items until none is left.
func (p *cpuWorkers) work(worker int) {
	for {
		i := int(p.next.Add(1) - 1)
		if i >= p.items {
			return
		}
		p.task.run(worker, i)
	}
}

// help is the loop of one helper goroutine: it computes a task, then waits
// for the next one, spinning first (see cpuWorkers).
func (p *cpuWorkers) help(worker int, start <-chan struct{}) {
	state := &p.state[worker-1].v
	for {
		if !p.spinFor(state) {
			if _, open := <-start; !open {
				return
			}
		}
		p.workGuarded(worker)
		// Spinning before Done: once run returns, every helper it used
		// can take the next task from its state.
		state.Store(cpuHelperSpinning)
		p.busy.Add(-1)
		p.done.Done()
	}
}

// spinFor watches a helper's state for cpuSpinWait and reports whether run
// handed it a task meanwhile; otherwise the helper is parked and must wait
// on its channel.
func (p *cpuWorkers) spinFor(state *atomic.Int32) bool {
	switch state.Load() {
	case cpuHelperParked:
		return false // since it started
	case cpuHelperStarted:
		// run handed it the next task before it got here.
		state.Store(cpuHelperParked)
		return true
	}
	for spin := time.Now(); time.Since(spin) < cpuSpinWait; {
		if state.Load() == cpuHelperStarted {
			state.Store(cpuHelperParked)
			return true
		}
		// Yield to any goroutine waiting for this P: with more helpers than
		// Ps, or other work in the process, spinning must not hold it.
		runtime.Gosched()
	}
	// Parking races with run's swap: whoever changes the state first wins,
	// and a helper that lost has its task in hand.
	if state.CompareAndSwap(cpuHelperSpinning, cpuHelperParked) {
		return false
	}
	state.Store(cpuHelperParked)
	return true
}

// close stops the helpers; it is safe to call more than once.
func (p *cpuWorkers) close() {
	p.once.Do(func() {
		for _, s := range p.start {
			close(s)
		}
	})
}
