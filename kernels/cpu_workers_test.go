package kernels

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
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

// countingTask counts how often each item is computed, and sleeps in some
// so that helpers finish at different times.
type countingTask struct {
	counts []atomic.Int32
	slow   int
}

func (c *countingTask) run(_, item int) {
	c.counts[item].Add(1)
	if c.slow > 0 && item%c.slow == 0 {
		time.Sleep(time.Duration(item%3) * 20 * time.Microsecond)
	}
}

// TestCPUWorkersHandOffEveryTask runs 60,000 tasks, most back to back, with
// gaps shorter and longer than cpuSpinWait between them and item counts
// that leave helpers idle, on pools of 2 to 7 threads (more than the Ps a
// test has), and checks that each item of each task is computed exactly
// once and that no task waits for a helper that never got it: the
// handshake between run and a helper that spins, parks or was handed the
// next task before it came back to look.
func TestCPUWorkersHandOffEveryTask(t *testing.T) {
	for _, threads := range []int{2, 3, 7} {
		p := newCPUWorkers(threads)
		finished := make(chan struct{})
		go func() {
			defer close(finished)
			for round := range 60000 {
				items := 1 + round%(2*threads)
				slow := 0 // most tasks are back to back: run races the helpers' return
				if round%16 == 0 {
					slow = 1 + round%5
				}
				task := &countingTask{counts: make([]atomic.Int32, items), slow: slow}
				p.run(task, items)
				for i := range task.counts {
					if n := task.counts[i].Load(); n != 1 {
						t.Errorf("%d threads, round %d: item %d of %d computed %d times", threads, round, i, items, n)
						return
					}
				}
				switch round % 97 {
				case 0:
					time.Sleep(2 * cpuSpinWait) // the helpers park
				case 1:
					time.Sleep(cpuSpinWait / 2) // they are still spinning
				}
			}
		}()
		select {
		case <-finished:
		case <-time.After(30 * time.Second):
			t.Fatalf("%d threads: a task never finished: a helper missed its start", threads)
		}
		p.close()
	}
}
