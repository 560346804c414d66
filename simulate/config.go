package simulate

import (
	"errors"
	"fmt"
	"time"
)

// Topology is how parameters and gradients travel between the
// coordinator and the workers.
type Topology string

// The topologies.
const (
	// Star: every message crosses the coordinator's link.
	Star Topology = "star"
	// Tree: a fixed k-ary tree of workers relays the parameters down and
	// adds the gradients up (see the package comment).
	Tree Topology = "tree"
)

// ParseTopology reads "star" or "tree".
func ParseTopology(s string) (Topology, error) {
	switch t := Topology(s); t {
	case Star, Tree:
		return t, nil
	}
	return "", fmt.Errorf("topology %q: want star or tree", s)
}

// Link is the link of every worker and of the coordinator to the switch.
type Link struct {
	BitsPerSec float64       // each direction
	Latency    time.Duration // one way, between any two nodes
	Jitter     time.Duration // each message's latency grows by up to this
}

// Costs are the measured times the model is built from.
type Costs struct {
	// Compute is one worker's compute of one micro-batch; each compute
	// lasts up to ComputeJitter (a fraction) longer.
	Compute       time.Duration
	ComputeJitter float64
	// Message is a worker's CPU time of decoding the parameters, or of
	// encoding its gradients (gRPC's marshalling and copies).
	Message time.Duration
	// Send is the coordinator's CPU time of sending one message (its
	// broadcast); its decoding of results runs beside its engine, as
	// gRPC's does, and is left out.
	Send time.Duration
	// Reduce is adding one gradient vector into a sum: the coordinator's
	// handling of each result, or a tree node's of each child's sum.
	Reduce time.Duration
	// Optimizer is the coordinator's update after a step's last result.
	Optimizer time.Duration
}

// Stragglers makes each worker, at each step, a straggler with
// probability Fraction: its compute lasts Slowdown times as long.
type Stragglers struct {
	Fraction float64
	Slowdown float64
}

// ParamsDelta sends the parameters as the step's delta from the version
// before (dpcnnv1.DeltaCodec): Fraction of the whole vector's bytes, for
// Encode of the coordinator's time once a step and Apply of each
// worker's. A zero Fraction sends whole vectors.
type ParamsDelta struct {
	Fraction      float64
	Encode, Apply time.Duration
}

// Failure kills worker Worker (0-based, in the order the workers joined)
// as it starts computing step Step (0-based).
type Failure struct {
	Worker int
	Step   int64
}

// Config is one simulated run: a weak-scaling job of the deep net (or
// another built-in network) on Workers workers.
type Config struct {
	Network        string // a built-in network name (default "deep")
	PerWorkerBatch int    // images per worker per step (default 100)
	MicroBatch     int    // images per micro-batch (default PerWorkerBatch)
	Seed           uint64
	Workers        int
	// Warmup steps run before the Steps timed ones (and one more after,
	// whose end the final evaluation follows, untimed).
	Warmup, Steps int64

	Topology Topology // default Star
	// FanOut is a reducer's number of sums (default 4): a power of two,
	// for them to make a subtree of the engine's pairwise tree.
	FanOut int
	// ChunkBytes is the unit in which messages are relayed (default 16
	// KiB: an HTTP/2 frame at gRPC's default size, the unit a relay could
	// forward as it reads).
	ChunkBytes int
	// The tree's relays pass the parameters on chunk by chunk as they
	// arrive (cut-through), as the real ones do (ReduceService.Params
	// streams them), but for the first hop: a top relay gets them whole
	// in its assignment, so it starts passing them on once all of it is
	// in. Its reducers send a sum up once every sum they add is in
	// (store-and-forward), as the real ones do; CutThroughSums makes them
	// add and forward chunk by chunk instead (not built: what streaming
	// the sums up would gain).
	CutThroughSums bool

	Link        Link
	Costs       Costs
	Stragglers  Stragglers
	ParamsDelta ParamsDelta
	Failures    []Failure
	// Detect is how long the coordinator takes to learn that a worker
	// died (its connection breaking; default 1 ms).
	Detect time.Duration
}

func (c Config) withDefaults() Config {
	if c.Network == "" {
		c.Network = "deep"
	}
	if c.PerWorkerBatch == 0 {
		c.PerWorkerBatch = 100
	}
	if c.MicroBatch == 0 {
		c.MicroBatch = c.PerWorkerBatch
	}
	if c.Topology == "" {
		c.Topology = Star
	}
	if c.FanOut == 0 {
		c.FanOut = 4
	}
	if c.ChunkBytes == 0 {
		c.ChunkBytes = 16 << 10
	}
	if c.Detect == 0 {
		c.Detect = time.Millisecond
	}
	return c
}

// MaxWorkers is the largest worker count a run may simulate.
const MaxWorkers = 4096

func (c Config) validate() error {
	switch {
	case c.Workers < 1 || c.Workers > MaxWorkers:
		return fmt.Errorf("simulate: %d workers: want 1 to %d", c.Workers, MaxWorkers)
	case c.PerWorkerBatch < 1 || c.MicroBatch < 1 || c.PerWorkerBatch%c.MicroBatch != 0:
		return fmt.Errorf("simulate: a per-worker batch of %d in micro-batches of %d: want a positive multiple", c.PerWorkerBatch, c.MicroBatch)
	case c.Steps < 1 || c.Warmup < 0:
		return fmt.Errorf("simulate: %d timed steps after %d warm-up ones: want at least 1 timed, none negative", c.Steps, c.Warmup)
	case c.Topology != Star && c.Topology != Tree:
		return fmt.Errorf("simulate: topology %q: want star or tree", c.Topology)
	case c.FanOut < 2 || c.FanOut&(c.FanOut-1) != 0:
		// A reducer adds a subtree of the engine's pairwise tree.
		return fmt.Errorf("simulate: fan-out %d: want a power of two from 2 (a reducer's sums must make a subtree of the pairwise reduction tree)", c.FanOut)
	case c.ChunkBytes < 1:
		return fmt.Errorf("simulate: chunks of %d bytes: want at least 1", c.ChunkBytes)
	case !(c.Link.BitsPerSec > 0):
		return fmt.Errorf("simulate: link of %g bit/s: want a positive bandwidth", c.Link.BitsPerSec)
	case c.Link.Latency < 0 || c.Link.Jitter < 0:
		return errors.New("simulate: link latency and jitter must not be negative")
	case c.Costs.Compute <= 0:
		return errors.New("simulate: no compute time: give the measured time of one micro-batch")
	case c.Costs.Message < 0 || c.Costs.Send < 0 || c.Costs.Reduce < 0 || c.Costs.Optimizer < 0 || c.Costs.ComputeJitter < 0:
		return errors.New("simulate: costs must not be negative")
	case c.Stragglers.Fraction < 0 || c.Stragglers.Fraction > 1 || c.Stragglers.Fraction > 0 && c.Stragglers.Slowdown < 1:
		return fmt.Errorf("simulate: stragglers %+v: want a fraction in [0, 1] and a slowdown of at least 1", c.Stragglers)
	case c.ParamsDelta.Fraction < 0 || c.ParamsDelta.Fraction > 1 || c.ParamsDelta.Encode < 0 || c.ParamsDelta.Apply < 0:
		return fmt.Errorf("simulate: parameter deltas %+v: want a fraction in [0, 1] and costs not negative", c.ParamsDelta)
	case c.Detect < 0:
		return errors.New("simulate: the detection delay must not be negative")
	}
	for _, f := range c.Failures {
		if f.Worker < 0 || f.Worker >= c.Workers || f.Step < 0 {
			return fmt.Errorf("simulate: failure of worker %d at step %d: no such worker or step (%d workers)", f.Worker, f.Step, c.Workers)
		}
	}
	return nil
}
