package dataset

import (
	"math"
	"slices"
	"strings"
	"testing"
)

func checkPermutation(t *testing.T, perm []int32) {
	t.Helper()
	seen := make([]bool, len(perm))
	for i, v := range perm {
		if v < 0 || int(v) >= len(perm) || seen[v] {
			t.Fatalf("element %d = %d: not a permutation of %d", i, v, len(perm))
		}
		seen[v] = true
	}
}

func TestPermutation(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 17, 1000, 60000} {
		p := Permutation(42, 0, n)
		checkPermutation(t, p)
		if n < 17 {
			continue
		}
		if !slices.Equal(p, Permutation(42, 0, n)) {
			t.Errorf("n=%d: same seed and epoch, different order", n)
		}
		if slices.Equal(p, Permutation(42, 1, n)) {
			t.Errorf("n=%d: epochs 0 and 1 share an order", n)
		}
		if slices.Equal(p, Permutation(43, 0, n)) {
			t.Errorf("n=%d: seeds 42 and 43 share an order", n)
		}
		if slices.IsSorted(p) {
			t.Errorf("n=%d: identity", n)
		}
	}
}

// The order is part of a job's reproducibility; a change here changes every
// trained model. Update the golden values only on purpose.
func TestPermutationGolden(t *testing.T) {
	got := Permutation(1, 0, 10)
	want := []int32{5, 1, 7, 6, 9, 8, 2, 4, 0, 3}
	if !slices.Equal(got, want) {
		t.Errorf("Permutation(1, 0, 10) = %v, want %v", got, want)
	}
}

// Every permutation of 3 elements is about equally likely across epochs
// (a biased bounded draw would show at this size only with a huge n, but a
// wrong shuffle shows here).
func TestPermutationUniform(t *testing.T) {
	counts := map[[3]int32]int{}
	const epochs = 6000
	for e := int64(0); e < epochs; e++ {
		p := Permutation(7, e, 3)
		counts[[3]int32(p)]++
	}
	if len(counts) != 6 {
		t.Fatalf("%d distinct permutations of 3, want 6", len(counts))
	}
	chi2 := 0.0
	for _, c := range counts {
		d := float64(c) - epochs/6
		chi2 += d * d / (epochs / 6)
	}
	if chi2 > 20.5 { // p ≈ 0.001 with 5 degrees of freedom
		t.Errorf("chi² %v over %v", chi2, counts)
	}
	// The position of element 0 among 10 is uniform too.
	var pos [10]int
	for e := int64(0); e < 5000; e++ {
		pos[slices.Index(Permutation(8, e, 10), 0)]++
	}
	for i, c := range pos {
		if c < 400 || c > 600 {
			t.Errorf("element 0 at position %d in %d of 5000 epochs", i, c)
		}
	}
}

// Lemire's bounded draw is exact: for n that does not divide 2^32 the
// rejected words are the ones that would bias it.
func TestBelow(t *testing.T) {
	c := newCursor(PermutationStream(5, 0), 0)
	for _, n := range []uint32{1, 2, 3, 7, 1 << 31, 3<<30 + 1, math.MaxUint32} {
		for i := 0; i < 1000; i++ {
			if v := c.below(n); v >= n {
				t.Fatalf("below(%d) = %d", n, v)
			}
		}
	}
	// With n = 3·2^30 + 1 a quarter of the words are rejected: 1/3 of a
	// rejection per draw.
	const n = 3<<30 + 1
	c = newCursor(PermutationStream(5, 1), 0)
	draws := 10000
	for i := 0; i < draws; i++ {
		c.below(n)
	}
	if used := int(c.next) - draws; used < draws*3/10 || used > draws*4/10 {
		t.Errorf("%d rejections in %d draws, want about %d", used, draws, draws/3)
	}
	// Starting at an element not on a block boundary reads the right one.
	s := AugmentStream(1, 2, 3)
	c = newCursor(s, 6)
	if c.uint32() != s.Uint32(6) || c.uint32() != s.Uint32(7) || c.uint32() != s.Uint32(8) {
		t.Error("cursor does not follow the stream")
	}
}

func TestNewPlanErrors(t *testing.T) {
	for _, tc := range []struct {
		n, batch, micro int
		want            []string
	}{
		{0, 1, 1, []string{"dataset: plan: 0 samples, want 1 to 2147483647"}},
		{100, 0, 1, []string{"dataset: plan: batch 0, want at least 1"}},
		{100, 200, 8, []string{"batch 200 larger than the 100 samples"}},
		{100, 10, 0, []string{"micro-batch 0, want at least 1"}},
		{100, 10, 4, []string{"micro-batch 4 does not divide batch 10"}},
		{100, 10, 20, []string{"micro-batch 20 does not divide batch 10"}},
		{-1, -1, -1, []string{"-1 samples", "batch -1", "micro-batch -1"}},
		{math.MaxInt32 + 1, 8, 4, []string{"2147483648 samples"}},
	} {
		_, err := NewPlan(tc.n, tc.batch, tc.micro, 1)
		if err == nil {
			t.Errorf("NewPlan(%d, %d, %d): no error", tc.n, tc.batch, tc.micro)
			continue
		}
		lines := strings.Split(err.Error(), "\n")
		if len(lines) != len(tc.want) {
			t.Errorf("NewPlan(%d, %d, %d): %q, want %d errors", tc.n, tc.batch, tc.micro, err, len(tc.want))
			continue
		}
		for i, want := range tc.want {
			if !strings.Contains(lines[i], want) {
				t.Errorf("NewPlan(%d, %d, %d): %q, want %q", tc.n, tc.batch, tc.micro, lines[i], want)
			}
		}
	}
}

func TestPlanSteps(t *testing.T) {
	p, err := NewPlan(1000, 96, 8, 11)
	if err != nil {
		t.Fatal(err)
	}
	if p.StepsPerEpoch() != 10 || p.MicrosPerStep() != 12 {
		t.Fatalf("%d steps of %d micro-batches, want 10 of 12", p.StepsPerEpoch(), p.MicrosPerStep())
	}
	o := NewOrder(p)
	step, micro, pure := make([]int32, 96), make([]int32, 8), make([]int32, 96)
	for _, epoch := range []int64{0, 1, 0, 5} {
		seen := make([]bool, p.N)
		var visited []int32
		for s := 0; s < p.StepsPerEpoch(); s++ {
			o.Step(epoch, s, step)
			p.Step(epoch, s, pure)
			if !slices.Equal(step, pure) {
				t.Fatalf("epoch %d step %d: Order and Plan disagree", epoch, s)
			}
			for k := 0; k < p.MicrosPerStep(); k++ {
				o.MicroBatch(epoch, s, k, micro)
				if !slices.Equal(micro, step[k*8:(k+1)*8]) {
					t.Fatalf("epoch %d step %d micro %d is not its slice of the step", epoch, s, k)
				}
			}
			for _, idx := range step {
				if seen[idx] {
					t.Fatalf("epoch %d: sample %d twice", epoch, idx)
				}
				seen[idx] = true
			}
			visited = append(visited, step...)
		}
		if want := Permutation(11, epoch, 1000)[:960]; !slices.Equal(visited, want) {
			t.Errorf("epoch %d: steps are not the permutation's first 960", epoch)
		}
	}
	p.MicroBatch(5, 3, 2, micro)
	o.Step(5, 3, step)
	if !slices.Equal(micro, step[16:24]) {
		t.Error("Plan.MicroBatch disagrees with Order.Step")
	}
	if e := o.Epoch(2); !slices.Equal(e, Permutation(11, 2, 1000)) {
		t.Error("Order.Epoch is not the permutation")
	}
}

// Every sample is visited in some step over a few epochs, as the dropped
// tail differs between epochs.
func TestPlanCoversEverySample(t *testing.T) {
	p, _ := NewPlan(100, 32, 32, 3)
	o := NewOrder(p)
	seen := make([]bool, 100)
	step := make([]int32, 32)
	for e := int64(0); e < 20; e++ {
		for s := 0; s < p.StepsPerEpoch(); s++ {
			o.Step(e, s, step)
			for _, i := range step {
				seen[i] = true
			}
		}
	}
	if i := slices.Index(seen, false); i >= 0 {
		t.Errorf("sample %d never visited in 20 epochs", i)
	}
}

func TestEpochStep(t *testing.T) {
	p, _ := NewPlan(1000, 96, 8, 1)
	for _, tc := range []struct {
		global int64
		epoch  int64
		step   int
	}{{0, 0, 0}, {9, 0, 9}, {10, 1, 0}, {25, 2, 5}, {1e12, 1e11, 0}} {
		if e, s := p.EpochStep(tc.global); e != tc.epoch || s != tc.step {
			t.Errorf("EpochStep(%d) = %d, %d, want %d, %d", tc.global, e, s, tc.epoch, tc.step)
		}
	}
}

func TestPlanPanics(t *testing.T) {
	p, _ := NewPlan(100, 10, 5, 1)
	o := NewOrder(p)
	for name, f := range map[string]func(){
		"step too large":  func() { o.Step(0, 10, make([]int32, 10)) },
		"negative step":   func() { o.Step(0, -1, make([]int32, 10)) },
		"short buffer":    func() { o.Step(0, 0, make([]int32, 9)) },
		"micro too large": func() { o.MicroBatch(0, 0, 2, make([]int32, 5)) },
		"micro buffer":    func() { o.MicroBatch(0, 0, 0, make([]int32, 10)) },
		"negative epoch":  func() { o.Step(-1, 0, make([]int32, 10)) },
		"invalid plan":    func() { NewOrder(Plan{N: 10, Batch: 20, Micro: 1}) },
		"negative global": func() { p.EpochStep(-1) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

func BenchmarkPermutation60000(b *testing.B) {
	perm := make([]int32, 60000)
	for i := 0; b.Loop(); i++ {
		FillPermutation(perm, 1, int64(i))
	}
}

func BenchmarkOrderStep(b *testing.B) {
	p, _ := NewPlan(60000, 256, 16, 1)
	o := NewOrder(p)
	step := make([]int32, 256)
	for i := 0; b.Loop(); i++ {
		o.Step(int64(i/p.StepsPerEpoch()), i%p.StepsPerEpoch(), step)
	}
}
