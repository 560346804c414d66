package kernels

import (
	"fmt"
	"sync/atomic"
	"testing"
)

// panicky panics in one item; the others count themselves.
type panicky struct {
	bad  int
	done atomic.Int64
}

func (t *panicky) run(_, item int) {
	if item == t.bad {
		panic(fmt.Sprintf("item %d is bad", item))
	}
	t.done.Add(1)
}

// A panic on any thread of the pool reaches the caller, where it can be
// recovered, and the pool computes the next task in full: a kernel's
// assertion fails an assignment instead of ending the worker process.
func TestCPUWorkersRaisePanicsOnTheCaller(t *testing.T) {
	p := newCPUWorkers(4)
	defer p.close()
	for bad := range 64 {
		got := func() (r any) {
			defer func() { r = recover() }()
			p.run(&panicky{bad: bad}, 64)
			return nil
		}()
		if got != fmt.Sprintf("item %d is bad", bad) {
			t.Fatalf("bad item %d: recovered %v", bad, got)
		}
		ok := &panicky{bad: -1}
		p.run(ok, 64)
		if ok.done.Load() != 64 {
			t.Fatalf("after a panic in item %d the next task did %d of 64 items", bad, ok.done.Load())
		}
	}
}
