package simulate

import (
	"container/heap"
	"time"
)

// event is something that happens at a moment of simulated time.
type event struct {
	at  time.Duration
	seq uint64 // ties are taken in the order they were scheduled
	fn  func()
}

// queue is the simulation's future: a min-heap of events by time, then by
// the order they were scheduled, so that a run is a pure function of its
// configuration.
type queue struct {
	events []event
	seq    uint64
}

func (q *queue) Len() int { return len(q.events) }
func (q *queue) Less(i, j int) bool {
	a, b := q.events[i], q.events[j]
	return a.at < b.at || a.at == b.at && a.seq < b.seq
}
func (q *queue) Swap(i, j int) { q.events[i], q.events[j] = q.events[j], q.events[i] }
func (q *queue) Push(x any)    { q.events = append(q.events, x.(event)) }
func (q *queue) Pop() any {
	e := q.events[len(q.events)-1]
	q.events = q.events[:len(q.events)-1]
	return e
}

func (q *queue) schedule(at time.Duration, fn func()) {
	q.seq++
	heap.Push(q, event{at: at, seq: q.seq, fn: fn})
}

func (q *queue) next() event { return heap.Pop(q).(event) }
