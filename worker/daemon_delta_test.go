package worker

import (
	"slices"
	"testing"

	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// A worker says it applies parameter deltas, and does: a delta from the
// version it holds gives gradients bit for bit those of the whole vector.
// A delta against a version it does not hold fails and leaves it without
// parameters (later work fails too) until whole parameters come.
func TestDaemonAppliesParamsDeltas(t *testing.T) {
	train, test := tinySets(t)
	stub := newStub("c1")
	addr, _ := serveStub(t, stub, "127.0.0.1:0")
	startWorker(t, testWorkerConfig(t, "w-delta", addr, train, test))
	ss := waitStream(t, stub)
	if joins := stub.joined(); len(joins) != 1 || !joins[0].GetAcceptsParamsDelta() {
		t.Fatalf("join requests %v, want one that accepts parameter deltas", joins)
	}
	spec := testSpec()
	p0 := initialParams(t, spec)
	p1 := slices.Clone(p0)
	for i := range p1 {
		if i%3 != 0 {
			p1[i] -= 0.001 * float32(i%7-3)
		}
	}
	var codec dpcnnv1.DeltaCodec
	delta, err := codec.Encode(0, p0, p1)
	if err != nil {
		t.Fatal(err)
	}
	withDelta := func(id, version uint64, d *dpcnnv1.ParamsDelta, step int64) *dpcnnv1.Assignment {
		a := trainAssignment(id, "job-d", nil, version, nil, 0, step, subtree(0, 2, 1, 2, 3, 4))
		a.ParamsDelta = d
		return a
	}
	idx := []int32{1, 2, 3, 4}

	ss.assign(t, trainAssignment(1, "job-d", spec.JSON(), 0, p0, 0, 0, subtree(0, 2, idx...)))
	grad, losses, correct := direct(t, spec, train, p0, 0, 0, idx)
	checkGradient(t, ss.next(t), 1, 0, 2, grad, losses, correct)

	ss.assign(t, withDelta(2, 1, delta, 1))
	grad, losses, correct = direct(t, spec, train, p1, 0, 1, idx)
	checkGradient(t, ss.next(t), 2, 0, 2, grad, losses, correct)

	wrongBase := &dpcnnv1.ParamsDelta{BaseVersion: 5, Count: delta.Count, Planes: delta.Planes}
	ss.assign(t, withDelta(3, 6, wrongBase, 6))
	ss.failure(t, 3, "parameters of version 6 as a delta against version 5: version 1 held")
	ss.assign(t, trainAssignment(4, "job-d", nil, 1, nil, 0, 1, subtree(0, 2, idx...)))
	ss.failure(t, 4, "no parameters received for version 1")

	ss.assign(t, trainAssignment(5, "job-d", nil, 1, p1, 0, 1, subtree(0, 2, idx...)))
	checkGradient(t, ss.next(t), 5, 0, 2, grad, losses, correct)
	broken := &dpcnnv1.ParamsDelta{BaseVersion: 1, Count: delta.Count, Planes: delta.Planes[:len(delta.Planes)/2]}
	ss.assign(t, withDelta(6, 2, broken, 2))
	ss.failure(t, 6, "parameters of version 2: params delta: plane")
}
