package simulate

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// tenGbit is a run on 10 Gbit/s, 0.2 ms links with costs of the order
// measured on this project's machines.
func tenGbit(workers int, topo Topology) Config {
	return Config{
		Workers: workers, Warmup: 1, Steps: 3, Topology: topo, Seed: 7,
		Link: Link{BitsPerSec: 10e9, Latency: 200 * time.Microsecond},
		Costs: Costs{Compute: 25 * time.Millisecond, Message: 50 * time.Microsecond, Send: 20 * time.Microsecond,
			Reduce: 100 * time.Microsecond, Optimizer: 700 * time.Microsecond},
	}
}

func run(t *testing.T, c Config) Result {
	t.Helper()
	r, err := Run(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.StepMs) != int(c.Steps) {
		t.Fatalf("%d step times for %d timed steps", len(r.StepMs), c.Steps)
	}
	return r
}

// The star's steps are the arithmetic of the README: the coordinator's
// link carries the N parameter messages one after another, the last
// worker computes, and its gradients cross back: C + (N+1)·tx, plus the
// latencies, the last worker's decoding and encoding, the coordinator's
// sending its message, its reduce and the optimizer, while the
// coordinator keeps up (S and R below tx).
func TestStarMatchesArithmetic(t *testing.T) {
	for _, n := range []int{1, 8, 32} {
		c := tenGbit(n, Star)
		r := run(t, c)
		s := sim{cfg: c.withDefaults(), msgBytes: 4 * 123552}
		tx := s.txTime(s.msgBytes)
		k := c.Costs
		want := k.Compute + time.Duration(n+1)*tx + 2*c.Link.Latency + 2*k.Message + k.Send + k.Reduce + k.Optimizer
		for i, got := range r.StepMs {
			if math.Abs(got-ms(want)) > 0.001 {
				t.Errorf("%d workers, step %d: %.4f ms, want %.4f (C + (N+1)·tx + 2·latency + 2·M + S + R + O)", n, i, got, ms(want))
			}
		}
		if sum := r.Phases.Sum(); math.Abs(sum-ms(want)) > 0.001 {
			t.Errorf("%d workers: the phases add up to %.4f ms, the step is %.4f: %+v", n, sum, ms(want), r.Phases)
		}
	}
}

// With parameters as deltas the messages down are shorter than the
// gradients up, so the coordinator's incoming link sets the pace: the
// first worker's delta arrives after one delta's time, and the N
// gradients then cross back one after another: C + tx_delta + N·tx, plus
// the delta's encoding once and its applying on the worker.
func TestStarWithDeltasMatchesArithmetic(t *testing.T) {
	for _, n := range []int{1, 8, 32} {
		c := tenGbit(n, Star)
		c.ParamsDelta = ParamsDelta{Fraction: 0.62, Encode: 100 * time.Microsecond, Apply: 40 * time.Microsecond}
		r := run(t, c)
		s := sim{cfg: c.withDefaults()}
		tx, txDelta := s.txTime(4*123552), s.txTime(int(c.ParamsDelta.Fraction*4*123552))
		k, d := c.Costs, c.ParamsDelta
		want := k.Compute + txDelta + time.Duration(n)*tx + 2*c.Link.Latency + 2*k.Message + d.Apply + d.Encode + k.Send + k.Reduce + k.Optimizer
		for i, got := range r.StepMs {
			if math.Abs(got-ms(want)) > 0.001 {
				t.Errorf("%d workers, step %d: %.4f ms, want %.4f (C + tx_delta + N·tx + 2·latency + 2·M + apply + encode + S + R + O)", n, i, got, ms(want))
			}
		}
		whole := run(t, tenGbit(n, Star))
		if n > 1 && r.StepMs[0] >= whole.StepMs[0] {
			t.Errorf("%d workers: %.3f ms a step with deltas, %.3f without", n, r.StepMs[0], whole.StepMs[0])
		}
	}
}

// The engine keeps the bits whatever carries the messages: star and tree,
// stragglers, jitter, and workers dying (an inner node of the tree, whose
// children send their sums to its parent, and a leaf) end with the same
// parameters, the deaths costing work given out again. In the tree the
// reducers really add: each sums its workers' or reducers' gradients with
// tree.ReducePieces, and the engine takes the sum whole.
func TestSameParamsEveryTopology(t *testing.T) {
	base := tenGbit(21, Star)
	star := run(t, base)
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"tree", func(c *Config) { c.Topology = Tree }},
		{"tree fan-out 2", func(c *Config) { c.Topology, c.FanOut = Tree, 2 }},
		{"tree, stragglers and jitter", func(c *Config) {
			c.Topology = Tree
			c.Stragglers = Stragglers{Fraction: 0.2, Slowdown: 3}
			c.Link.Jitter, c.Costs.ComputeJitter = 100*time.Microsecond, 0.1
		}},
		{"tree, an inner node and a leaf die", func(c *Config) {
			c.Topology = Tree
			c.Failures = []Failure{{Worker: 1, Step: 2}, {Worker: 20, Step: 3}}
		}},
		{"star, a worker dies", func(c *Config) { c.Failures = []Failure{{Worker: 5, Step: 1}} }},
	} {
		c := base
		tc.edit(&c)
		r := run(t, c)
		if r.ParamsSHA256 != star.ParamsSHA256 {
			t.Errorf("%s: parameters %s, the star's %s", tc.name, r.ParamsSHA256, star.ParamsSHA256)
		}
		if died := len(c.Failures) > 0; died != (r.ImagesReissued > 0) {
			t.Errorf("%s: %d images given out again", tc.name, r.ImagesReissued)
		}
		// The tree's reducers' sums reach the engine whole (SumReceived):
		// the bits above are theirs, not the star's results one by one.
		if c.Topology == Tree && r.Sums == 0 {
			t.Errorf("%s: no reducer's sum reached the engine", tc.name)
		}
	}
	// Two micro-batches a worker: the workers reduce them in the tree's
	// order, as real ones do.
	half := base
	half.MicroBatch = 50
	halfStar := run(t, half)
	half.Topology = Tree
	half.Failures = []Failure{{Worker: 2, Step: 2}}
	if r := run(t, half); r.ParamsSHA256 != halfStar.ParamsSHA256 {
		t.Errorf("micro-batches of 50, tree and a death: parameters %s, the star's %s", r.ParamsSHA256, halfStar.ParamsSHA256)
	}
	other := base
	other.Seed++
	if run(t, other).ParamsSHA256 == star.ParamsSHA256 {
		t.Error("another seed trained the same parameters: the hash does not show the training")
	}
}

// A run is a pure function of its configuration, jitter and stragglers
// included (they draw from counter-based streams).
func TestRunIsDeterministic(t *testing.T) {
	c := tenGbit(40, Tree)
	c.Stragglers = Stragglers{Fraction: 0.1, Slowdown: 2}
	c.Link.Jitter, c.Costs.ComputeJitter = 150*time.Microsecond, 0.2
	c.Failures = []Failure{{Worker: 3, Step: 2}}
	a, b := run(t, c), run(t, c)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("two runs of one configuration differ:\n%+v\n%+v", a, b)
	}
	c.Seed++
	if d := run(t, c); reflect.DeepEqual(a.StepMs, d.StepMs) {
		t.Error("another seed drew the same jitter")
	}
}

// Where the star's one link carries N messages each way, the tree's
// carry FanOut: at 256 workers the star's step is past C + N·tx, and the
// tree's within a few message times and latencies a level of C: FanOut
// message times and a latency a level each way, store-and-forward (each
// node sends on what it holds whole, as the real ones do), or a latency
// and a chunk a level, and FanOut message times at the top, cut-through.
func TestTreeScalesWhereStarStops(t *testing.T) {
	const n = 256
	cut := tenGbit(n, Tree)
	cut.CutThroughSums = true
	star, tree, through := run(t, tenGbit(n, Star)), run(t, tenGbit(n, Tree)), run(t, cut)
	s := sim{cfg: tenGbit(n, Star).withDefaults(), msgBytes: 4 * 123552}
	tx := ms(s.txTime(s.msgBytes))
	c := ms(25 * time.Millisecond)
	if st := star.StepMs[0]; st < c+n*tx {
		t.Errorf("star, %d workers: %.2f ms a step, under C + N·tx = %.2f", n, st, c+n*tx)
	}
	// Four levels below the coordinator.
	if tr := tree.StepMs[0]; tr > c+2*4*(0.2+4*tx)+3 {
		t.Errorf("tree, %d workers: %.2f ms a step; want about C + 2·4·(latency + 4·tx) plus the coordinator", n, tr)
	}
	if tr := through.StepMs[0]; tr > c+2*(4*0.3+4*tx)+3 {
		t.Errorf("tree, cut-through, %d workers: %.2f ms a step; want about C + 2·(4·(latency+chunk) + 4·tx) plus the coordinator", n, tr)
	}
	if through.StepMs[0] >= tree.StepMs[0] {
		t.Errorf("tree, %d workers: cut-through %.2f ms a step, store-and-forward %.2f: forwarding as chunks arrive should be faster", n, through.StepMs[0], tree.StepMs[0])
	}
	if tree.Phases.Reduce >= star.Phases.Reduce/10 {
		t.Errorf("the tree's coordinator reduces %.2f ms a step, the star's %.2f: it should add FanOut sums, not N", tree.Phases.Reduce, star.Phases.Reduce)
	}
}

// A worker that dies costs the step it died in at least the detection
// delay and its work done again by another. The global batch stays, so
// after it one of the 15 workers left computes two micro-batches: each
// step about one compute time longer (a little less: the tree holds one
// node fewer), and no more.
func TestDeathCostsOneStep(t *testing.T) {
	c := tenGbit(16, Tree)
	c.Steps = 4
	clean := run(t, c)
	c.Failures = []Failure{{Worker: 0, Step: 2}} // a top node of the tree
	hurt := run(t, c)
	compute := ms(c.Costs.Compute)
	for i := range clean.StepMs {
		step := int64(i) + c.Warmup
		d := hurt.StepMs[i] - clean.StepMs[i]
		t.Logf("step %d: %.2f ms, %.2f without the death", step, hurt.StepMs[i], clean.StepMs[i])
		switch {
		case step < 2 && d != 0:
			t.Errorf("step %d, before the death: %.2f ms longer", step, d)
		case step == 2 && d < ms(c.withDefaults().Detect):
			t.Errorf("step %d, a worker died: %.2f ms longer, want at least the detection delay", step, d)
		case step > 2 && (d < compute-3 || d > compute+1):
			t.Errorf("step %d, one worker fewer: %.2f ms longer, want about one compute time (%.0f ms)", step, d, compute)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.Workers = 0 }, "0 workers"},
		{func(c *Config) { c.Workers = MaxWorkers + 1 }, "want 1 to 4096"},
		{func(c *Config) { c.MicroBatch = 30 }, "per-worker batch of 100 in micro-batches of 30"},
		{func(c *Config) { c.Topology = "ring" }, `topology "ring"`},
		{func(c *Config) { c.FanOut = 3 }, "fan-out 3: want a power of two"},
		{func(c *Config) { c.Link.BitsPerSec = 0 }, "positive bandwidth"},
		{func(c *Config) { c.Costs.Compute = 0 }, "no compute time"},
		{func(c *Config) { c.Stragglers = Stragglers{Fraction: 0.5, Slowdown: 0.5} }, "slowdown of at least 1"},
		{func(c *Config) { c.Failures = []Failure{{Worker: 8, Step: 1}} }, "failure of worker 8"},
		{func(c *Config) { c.Steps = 0 }, "0 timed steps"},
	} {
		c := tenGbit(8, Tree)
		tc.edit(&c)
		_, err := Run(c)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v; want an error saying %q", c, err, tc.want)
		}
	}
}
