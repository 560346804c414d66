package kernels

import (
	"sync"
	"sync/atomic"
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
// depending on who computed it. Starting a task sends on one channel per
// helper and allocates nothing.
type cpuWorkers struct {
	start []chan struct{} // one per helper; a value starts a task
	done  sync.WaitGroup
	once  sync.Once

	// The current task, written by run before it signals the helpers and
	// read by them after they receive the signal.
	task  cpuTask
	items int
	next  atomic.Int64
	fault atomic.Pointer[cpuFault]
}

// newCPUWorkers starts threads−1 helper goroutines.
func newCPUWorkers(threads int) *cpuWorkers {
	p := &cpuWorkers{start: make([]chan struct{}, max(threads-1, 0))}
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
	for _, s := range p.start[:helpers] {
		s <- struct{}{}
	}
	p.workGuarded(0)
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

// help is the loop of one helper goroutine.
func (p *cpuWorkers) help(worker int, start <-chan struct{}) {
	for range start {
		p.workGuarded(worker)
		p.done.Done()
	}
}

// close stops the helpers; it is safe to call more than once.
func (p *cpuWorkers) close() {
	p.once.Do(func() {
		for _, s := range p.start {
			close(s)
		}
	})
}
