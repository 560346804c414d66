package train

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/dpcnn/dpcnn/tree"
)

// answerGrouped answers the harness's oldest outstanding work as a tree of
// reducers would: the training assignments of one step in groups of fan
// consecutive subtrees, each group that makes a node of the tree sent as
// one SumReceived (its sum added by tree.ReducePieces), the others one by
// one; evaluations one by one.
func (h *fuzzHarness) answerGrouped(t *testing.T, fan int) {
	p := h.out[0]
	if p.eval {
		h.out = h.out[1:]
		h.step(h.answer(p))
		return
	}
	var group []pending
	h.out = slices.DeleteFunc(h.out, func(q pending) bool {
		if !q.eval && q.step == p.step {
			group = append(group, q)
			return true
		}
		return false
	})
	slices.SortFunc(group, func(a, b pending) int { return a.leaves.Lo - b.leaves.Lo })
	for len(group) > 0 {
		n := min(fan, len(group))
		parts, rest := group[:n], group[n:]
		group = rest
		node := tree.Subtree{Lo: parts[0].leaves.Lo, Hi: parts[n-1].leaves.Hi}
		contiguous := true
		for i := 1; i < n; i++ {
			contiguous = contiguous && parts[i].leaves.Lo == parts[i-1].leaves.Hi
		}
		if n == 1 || !contiguous || !node.IsNode(h.leaves) {
			for _, q := range parts {
				h.step(h.answer(q))
			}
			continue
		}
		var sum SumReceived
		var pieces []tree.Piece
		for _, q := range parts {
			g := h.answer(q).(GradientsReceived)
			pieces = append(pieces, tree.Piece{Leaves: q.leaves, Sum: g.Grad})
			g.Grad = nil
			sum.Parts = append(sum.Parts, g)
		}
		grad, err := tree.ReducePieces(node, pieces, h.leaves, func() []float32 { return make([]float32, h.params) })
		if err != nil {
			t.Fatal(err)
		}
		sum.Grad = grad
		h.step(sum)
	}
}

// A reducer's sum of consecutive subtrees that make a node of the tree
// trains the same bits as their results one by one: eight workers, fan-outs
// 2, 4 and 8, against the one-worker reference run.
func TestEngineTakesReducerSums(t *testing.T) {
	ref := fuzzReference(t)
	for _, fan := range []int{2, 4, 8} {
		h := newFuzzHarness(t, EngineConfig{})
		for i := range h.leaves {
			h.join(fmt.Sprintf("w%d", i), 100)
		}
		h.start()
		for range 1000 {
			if h.finished != nil || h.failed != nil || len(h.out) == 0 {
				break
			}
			h.answerGrouped(t, fan)
		}
		if h.finished == nil {
			t.Fatalf("fan-out %d: the job did not finish (%v)", fan, h.failed)
		}
		if !slices.Equal(h.hashes, ref.hashes) {
			t.Fatalf("fan-out %d: the parameters differ from the one-worker run's", fan)
		}
	}
}

// A sum that cannot be taken whole is refused, and its parts stay
// outstanding: sent one by one afterwards, the step ends as the reference
// run's did.
func TestEngineRefusesBadSums(t *testing.T) {
	ref := fuzzReference(t)
	h := newFuzzHarness(t, EngineConfig{})
	for i := range h.leaves {
		h.join(fmt.Sprintf("w%d", i), 100)
	}
	h.start()
	var step0 []pending
	for _, p := range h.out {
		if !p.eval && p.step == 0 {
			step0 = append(step0, p)
		}
	}
	slices.SortFunc(step0, func(a, b pending) int { return a.leaves.Lo - b.leaves.Lo })
	if len(step0) != h.leaves {
		t.Fatalf("%d assignments of one leaf each, want %d", len(step0), h.leaves)
	}
	part := func(p pending) GradientsReceived {
		g := h.answer(p).(GradientsReceived)
		g.Grad = nil
		return g
	}
	full := make([]float32, h.params)
	for _, tc := range []struct {
		name string
		sum  SumReceived
		want error
	}{
		{"no parts", SumReceived{Grad: full}, nil},
		{"gaps between its parts", SumReceived{Parts: []GradientsReceived{part(step0[0]), part(step0[2])}, Grad: full}, ErrOtherWork},
		{"not a node", SumReceived{Parts: []GradientsReceived{part(step0[1]), part(step0[2])}, Grad: full}, ErrOtherWork},
		{"a short sum", SumReceived{Parts: []GradientsReceived{part(step0[0]), part(step0[1])}, Grad: full[:7]}, ErrWrongShape},
		{"an unknown assignment", SumReceived{Parts: []GradientsReceived{part(step0[0]), {Worker: step0[1].worker, Assignment: 9999}}, Grad: full}, ErrUnknownAssignment},
	} {
		effects := h.eng.Step(tc.sum, nil)
		refused := false
		for _, ef := range effects {
			switch ef := ef.(type) {
			case Refused:
				refused = tc.want == nil || errors.Is(ef.Err, tc.want)
			case StepApplied:
				t.Fatalf("%s: a step applied", tc.name)
			}
		}
		if !refused {
			t.Errorf("%s: effects %v; want it refused (%v)", tc.name, effects, tc.want)
		}
	}
	h.drain(t, nil)
	if h.finished == nil || !slices.Equal(h.hashes, ref.hashes) {
		t.Fatalf("after the refused sums: finished %v, parameters as the reference run's: %v", h.finished != nil, slices.Equal(h.hashes, ref.hashes))
	}
}

// A result lost on its way up (ResultLost) is given out again and the
// worker is not flagged; a repeat of the loss, or a late copy of the
// result, changes nothing; the job ends with the reference run's bits.
func TestEngineGivesLostResultsOutAgain(t *testing.T) {
	ref := fuzzReference(t)
	h := newFuzzHarness(t, EngineConfig{})
	for i := range 4 {
		h.join(fmt.Sprintf("w%d", i), 100)
	}
	h.start()
	p := h.out[0]
	late := h.answer(p)
	h.out = h.out[1:]
	if !h.eng.Outstanding(p.id) {
		t.Fatalf("assignment %d is not outstanding before its result", p.id)
	}
	h.step(ResultLost{Worker: p.worker, Assignment: p.id})
	if h.eng.Outstanding(p.id) {
		t.Fatalf("assignment %d still outstanding after its result was lost", p.id)
	}
	covered := 0
	for _, q := range h.out {
		if !q.eval && q.step == p.step && q.leaves.Lo >= p.leaves.Lo && q.leaves.Hi <= p.leaves.Hi {
			covered += q.leaves.Len()
		}
	}
	if covered != p.leaves.Len() {
		t.Fatalf("the lost result's leaves %v were not given out again: %v", p.leaves, h.out)
	}
	effects := h.eng.Step(ResultLost{Worker: p.worker, Assignment: p.id}, nil)
	effects = append(effects, h.eng.Step(late, nil)...)
	for _, ef := range effects {
		switch ef.(type) {
		case Dropped:
		default:
			t.Fatalf("a repeated loss and a late result: %T %v, want Dropped only", ef, ef)
		}
	}
	h.drain(t, nil)
	if len(h.flagged) != 0 {
		t.Fatalf("workers flagged: %v", h.flagged)
	}
	if h.finished == nil || !slices.Equal(h.hashes, ref.hashes) {
		t.Fatalf("finished %v, parameters as the reference run's: %v", h.finished != nil, slices.Equal(h.hashes, ref.hashes))
	}
}
