package simulate

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/dpcnn/dpcnn/benchmark"
	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/philox"
	"github.com/dpcnn/dpcnn/train"
	"github.com/dpcnn/dpcnn/tree"
)

// Result is one simulated run's figures.
type Result struct {
	Workers  int
	Batch    int // global batch of each step
	Topology Topology
	// StepMs is each timed step's simulated time, in milliseconds; Phases
	// their split, averaged over the timed steps (benchmark.Phases'
	// meanings: compute and transfer are means over the step's first
	// assignments, wait the rest of the step outside the coordinator).
	StepMs []float64
	Phases benchmark.Phases
	// ParamsSHA256 is the hash of the trained parameters: the same for
	// every topology, worker count, straggler and failure (the engine
	// keeps the bits).
	ParamsSHA256 string
	// ImagesReissued counts the training images the engine gave out again.
	ImagesReissued int64
	// Sums counts the reducers' sums the engine took whole (SumReceived),
	// each standing for several workers' results.
	Sums int
	// Events is the number of model events the run took.
	Events int
}

// port is a node's link to the switch and its CPU: the times each is free
// from.
type port struct {
	in, out, cpu time.Duration
}

type simWorker struct {
	id   string
	idx  int
	port port
	dead bool
}

// stepStats gathers one step's phases as it runs.
type stepStats struct {
	start                time.Duration // the coordinator began sending its first assignments
	broadcast, reduce    time.Duration // coordinator time
	lastRecv             time.Duration // the cost of the last message received, moved to the optimizer
	optimizer            time.Duration
	primaries            int
	compute, roundTrip   time.Duration // sums over the primaries
	hold                 time.Duration // the primaries' compute (a worker's decoding and encoding count as transfer, as a real worker's do)
	applied              time.Duration
	primaryAssignmentIDs map[uint64]bool
}

// sim is one run.
type sim struct {
	cfg       Config
	spec      job.Spec
	eng       *train.Engine
	q         queue
	now       time.Duration
	events    int
	coord     port
	workers   []*simWorker
	byID      map[string]*simWorker
	leafGrads [][]float32 // the gradients of the micro-batches, by leaf index modulo their number
	msgBytes  int         // a gradient message, or whole parameters
	downBytes int         // a parameter message: whole, or the delta
	nmsg      uint32      // messages sent, each one's jitter keyed by its number
	kills     map[int64]map[int]bool
	steps     map[int64]*stepStats
	assigned  map[uint64]int64 // every assignment's step
	tree      *treeStep        // the latest step's, in the tree
	leaves    int              // micro-batches a step
	pool      [][]float32      // gradient buffers for the reducers' sums
	sums      int
	effects   []train.Effect
	finished  bool
	err       error
	reissued  int64
}

// leafGradKinds is the number of different micro-batch gradients.
const leafGradKinds = 7

// epoch is the engine's clock at simulated time 0.
var epoch = time.Unix(1<<30, 0)

// Run simulates cfg and returns its figures.
func Run(cfg Config) (Result, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return Result{}, err
	}
	batch := cfg.PerWorkerBatch * cfg.Workers
	total := cfg.Warmup + cfg.Steps + 1
	spec := job.Spec{
		Name: fmt.Sprintf("simulate-%dw", cfg.Workers), Network: cfg.Network,
		Batch: batch, MicroBatch: cfg.MicroBatch, Steps: total, Epochs: 1,
		TestLimit: 100, Seed: cfg.Seed, EvalEvery: 1, CheckpointEvery: 1, MaxWorkers: cfg.Workers,
	}.WithDefaults()
	if err := spec.Validate(); err != nil {
		return Result{}, fmt.Errorf("simulate: %w", err)
	}
	netSpec, err := spec.Model()
	if err != nil {
		return Result{}, err
	}
	n, err := netSpec.ParamCount()
	if err != nil {
		return Result{}, err
	}
	s := &sim{
		cfg: cfg, spec: spec, byID: map[string]*simWorker{}, msgBytes: 4 * n, downBytes: 4 * n,
		kills: map[int64]map[int]bool{}, steps: map[int64]*stepStats{}, assigned: map[uint64]int64{},
	}
	// As a synthetic worker's, every magnitude a real gradient has; and a
	// few different ones, so that the parameters show it if a
	// micro-batch were counted twice or left out.
	for k := range leafGradKinds {
		g := make([]float32, n)
		for i := range g {
			g[i] = float32(math.Sin(float64(i)*0.7+float64(k))) * 1e-3
		}
		s.leafGrads = append(s.leafGrads, g)
	}
	if d := cfg.ParamsDelta; d.Fraction > 0 {
		s.downBytes = max(1, int(float64(s.msgBytes)*d.Fraction))
	}
	for _, f := range cfg.Failures {
		if s.kills[f.Step] == nil {
			s.kills[f.Step] = map[int]bool{}
		}
		s.kills[f.Step][f.Worker] = true
	}
	backend := kernels.NewCPU(1)
	defer func() {
		if c, ok := any(backend).(interface{ Close() }); ok {
			c.Close()
		}
	}()
	s.eng = train.NewEngine(backend, train.EngineConfig{})
	s.leaves = batch / cfg.MicroBatch
	speed := float64(cfg.MicroBatch) / cfg.Costs.Compute.Seconds()
	for i := range cfg.Workers {
		w := &simWorker{id: fmt.Sprintf("w%04d", i), idx: i}
		s.workers = append(s.workers, w)
		s.byID[w.id] = w
		s.deliver(train.WorkerJoined{ID: w.id, Speed: speed})
	}
	s.deliver(train.JobStarted{Spec: spec, TrainLen: batch * int(total), TestLen: 100})
	s.tick()
	for !s.finished && s.err == nil {
		if s.q.Len() == 0 || s.now > timeLimit {
			return Result{}, fmt.Errorf("simulate: stalled after %d steps at %s of simulated time", s.eng.StepsApplied(), s.now)
		}
		ev := s.q.next()
		s.now = ev.at
		s.events++
		ev.fn()
	}
	if s.err != nil {
		return Result{}, s.err
	}
	return s.figures(batch), nil
}

// tickEvery is how often the engine's clock moves while nothing else
// happens, for its deadlines to fire (work lost inside a dead tree node
// is given out again so, as a real coordinator's is).
const tickEvery = 50 * time.Millisecond

// timeLimit ends a run that goes nowhere.
const timeLimit = time.Hour

func (s *sim) tick() {
	s.q.schedule(s.now+tickEvery, func() {
		s.deliver(train.Tick{Now: epoch.Add(s.now)})
		s.tick()
	})
}

// figures turns the steps' records into the run's figures.
func (s *sim) figures(batch int) Result {
	r := Result{Workers: s.cfg.Workers, Batch: batch, Topology: s.cfg.Topology, ImagesReissued: s.reissued, Sums: s.sums, Events: s.events}
	if c := s.eng.Checkpoint(); c != nil {
		r.ParamsSHA256 = c.ParamsSHA256()
	}
	var sum benchmark.Phases
	prev := time.Duration(0)
	if st := s.steps[s.cfg.Warmup-1]; s.cfg.Warmup > 0 && st != nil {
		prev = st.applied
	}
	for k := s.cfg.Warmup; k < s.cfg.Warmup+s.cfg.Steps; k++ {
		st := s.steps[k]
		step := st.applied - prev
		prev = st.applied
		r.StepMs = append(r.StepMs, ms(step))
		// The coordinator's own time, then the rest of the step (it waits
		// for results) split as a real coordinator splits it: the mean
		// compute, the mean transfer, and the wait for the slowest. Where
		// the coordinator adds results while others are still on the
		// wire, the means overlap its time: the transfer is cut to what
		// the step leaves, so that the phases add up to the step.
		p := benchmark.Phases{Reduce: ms(st.reduce), Optimizer: ms(st.optimizer), Broadcast: ms(st.broadcast)}
		idle := max(0, ms(step)-p.Coordinator())
		if st.primaries > 0 {
			n := time.Duration(st.primaries)
			p.Compute = min(ms(st.compute/n), idle)
			p.Transfer = max(0, min(ms((st.roundTrip-st.hold)/n), idle-p.Compute))
		}
		p.Wait = idle - p.Compute - p.Transfer
		sum = sum.Add(p)
	}
	r.Phases = sum.Scale(1 / float64(s.cfg.Steps))
	return r
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// deliver hands the engine an event at the present moment and carries out
// its effects.
func (s *sim) deliver(ev train.Event) {
	s.effects = s.eng.Step(train.Tick{Now: epoch.Add(s.now)}, s.effects[:0])
	s.handle(s.effects)
	s.effects = s.eng.Step(ev, s.effects[:0])
	s.handle(s.effects)
}

func (s *sim) stats(step int64) *stepStats {
	st := s.steps[step]
	if st == nil {
		st = &stepStats{primaryAssignmentIDs: map[uint64]bool{}}
		s.steps[step] = st
	}
	return st
}

// handle carries out effects, in order, on the coordinator's CPU.
func (s *sim) handle(effects []train.Effect) {
	var first []train.Assign // a step's first assignments, sent together
	flush := func() {
		if len(first) > 0 {
			s.sendStep(first)
			first = nil
		}
	}
	for _, ef := range effects {
		switch ef := ef.(type) {
		case train.Assign:
			s.assigned[ef.ID] = ef.Step
			if len(first) > 0 && first[0].Step != ef.Step {
				flush()
			}
			if len(first) > 0 || !s.sentPrimary(ef.Step) {
				first = append(first, ef)
				continue
			}
			s.sendDirect(ef) // work given out again
		case train.StepApplied:
			flush()
			st := s.stats(ef.Step - 1)
			st.reduce -= st.lastRecv
			st.optimizer = st.lastRecv + s.cfg.Costs.Optimizer
			s.coord.cpu = max(s.coord.cpu, s.now) + s.cfg.Costs.Optimizer
			st.applied = s.coord.cpu
			s.reissued = ef.ImagesReissued
		case train.Evaluate:
			flush()
			// The final evaluation, untimed: answered at once.
			ev := train.EvalReceived{Worker: ef.Worker, Assignment: ef.ID, From: ef.From, To: ef.To}
			s.q.schedule(s.now, func() { s.deliver(ev) })
		case train.JobFinished:
			s.finished = true
		case train.JobFailed:
			s.err = fmt.Errorf("simulate: the job failed: %w", ef.Err)
		case train.Refused:
			s.err = fmt.Errorf("simulate: the engine refused a result: %w", ef.Err)
		}
	}
	flush()
}

// sentPrimary reports whether step's first assignments have gone out.
func (s *sim) sentPrimary(step int64) bool { return len(s.stats(step).primaryAssignmentIDs) > 0 }

// encode takes the coordinator's CPU to encode one message for step and
// returns when it is ready to leave.
func (s *sim) encode(st *stepStats) time.Duration {
	s.coord.cpu = max(s.coord.cpu, s.now) + s.cfg.Costs.Send
	st.broadcast += s.cfg.Costs.Send
	return s.coord.cpu
}

// sendStep sends a step's first assignments: each straight to its worker
// in the star, down the step's tree in the tree.
func (s *sim) sendStep(as []train.Assign) {
	st := s.stats(as[0].Step)
	st.start = max(s.coord.cpu, s.now)
	for _, a := range as {
		st.primaryAssignmentIDs[a.ID] = true
	}
	st.primaries = len(as)
	if e := s.cfg.ParamsDelta; e.Fraction > 0 {
		// One delta a step, whoever it goes to.
		s.coord.cpu = max(s.coord.cpu, s.now) + e.Encode
		st.broadcast += e.Encode
	}
	if s.cfg.Topology == Star {
		for _, a := range as {
			s.sendDirect(a)
		}
		return
	}
	s.sendTree(as, st)
}

// sendDirect sends one assignment from the coordinator to its worker, and
// its result straight back.
func (s *sim) sendDirect(a train.Assign) {
	w := s.byID[a.Worker]
	st := s.stats(a.Step)
	ready := s.encode(st)
	s.q.schedule(ready, func() {
		if w.dead {
			return // lost with it; the engine gives the work to another
		}
		_, last := s.transfer(&s.coord, &w.port, ready, ready, s.downBytes)
		s.q.schedule(last, func() {
			done, ok := s.compute(w, a)
			if !ok {
				return
			}
			s.q.schedule(done, func() {
				if w.dead {
					return
				}
				_, arrived := s.transfer(&w.port, &s.coord, done, done, s.msgBytes)
				s.q.schedule(arrived, func() { s.receive(arrived, resultPiece(s.result(a))) })
			})
		})
	})
}

// compute runs an assignment on w's CPU from now and returns when its
// result is encoded; false when w dies as it starts (a Failure).
func (s *sim) compute(w *simWorker, a train.Assign) (time.Duration, bool) {
	if w.dead {
		return 0, false
	}
	if s.kills[a.Step][w.idx] {
		s.kill(w)
		return 0, false
	}
	c := s.cfg.Costs
	d := time.Duration(0)
	for i := range a.Leaves.Len() {
		leaf := c.Compute
		if c.ComputeJitter > 0 {
			u := philox.NewStream(s.cfg.Seed, 2, uint32(a.Step), uint32(w.idx)).Uniform(uint32(i))
			leaf += time.Duration(float64(leaf) * c.ComputeJitter * u)
		}
		d += leaf
	}
	if f := s.cfg.Stragglers; f.Fraction > 0 && philox.NewStream(s.cfg.Seed, 3, uint32(a.Step), uint32(w.idx)).Uniform(0) < f.Fraction {
		d = time.Duration(float64(d) * f.Slowdown)
	}
	start := max(w.port.cpu, s.now)
	w.port.cpu = start + c.Message + s.cfg.ParamsDelta.Apply + d + c.Message
	st := s.stats(a.Step)
	if st.primaryAssignmentIDs[a.ID] {
		st.compute += d
		st.hold += d
	}
	return w.port.cpu, true
}

// kill makes w die now; the coordinator learns of it after the
// detection delay.
func (s *sim) kill(w *simWorker) {
	w.dead = true
	s.q.schedule(s.now+s.cfg.Detect, func() { s.deliver(train.WorkerLost{ID: w.id}) })
	if s.cfg.Topology == Tree {
		s.treeDeath(w)
	}
}

// result is a's answer.
func (s *sim) result(a train.Assign) train.GradientsReceived {
	losses := make([]float64, len(a.Micro))
	for i, mb := range a.Micro {
		losses[i] = float64(len(mb.Indices)) * math.Log(10)
	}
	var grad []float32
	if a.Leaves.Len() == 1 {
		grad = s.leafGrads[a.Leaves.Lo%leafGradKinds] // read only: the engine copies it
	} else {
		// As a worker reduces its subtree: in the tree's order.
		leaves := make([][]float32, a.Leaves.Len())
		for i := range leaves {
			leaves[i] = slices.Clone(s.leafGrads[(a.Leaves.Lo+i)%leafGradKinds])
		}
		grad = tree.ReduceSubtree(leaves)
	}
	return train.GradientsReceived{
		Worker: a.Worker, Assignment: a.ID, Leaves: a.Leaves, Grad: grad, LeafLosses: losses,
		Compute: time.Duration(a.Leaves.Len()) * s.cfg.Costs.Compute,
	}
}

// receive takes a message arriving at the coordinator at arrived: the CPU
// adds it, then the engine has it, as one worker's result or a reducer's
// sum of several.
func (s *sim) receive(arrived time.Duration, p piece) {
	c := s.cfg.Costs
	cost := c.Reduce
	s.coord.cpu = max(s.coord.cpu, arrived) + cost
	at := s.coord.cpu
	for i, r := range p.parts {
		st := s.stats(s.assigned[r.Assignment])
		if i == 0 {
			st.reduce += cost
			st.lastRecv = cost
		}
		if st.primaryAssignmentIDs[r.Assignment] {
			st.roundTrip += arrived - st.start
		}
	}
	s.q.schedule(at, func() {
		if len(p.parts) == 1 {
			r := p.parts[0]
			r.Grad = p.grad
			s.deliver(r)
		} else {
			s.sums++
			s.deliver(train.SumReceived{Parts: p.parts, Grad: p.grad})
		}
		if p.owned {
			s.release(p.grad) // the engine has copied it
		}
	})
}

// buffer gives a gradient buffer from the pool; release gives one back.
func (s *sim) buffer() []float32 {
	if n := len(s.pool); n > 0 {
		b := s.pool[n-1]
		s.pool = s.pool[:n-1]
		return b
	}
	return make([]float32, s.msgBytes/4)
}

func (s *sim) release(b []float32) { s.pool = append(s.pool, b) }

// transfer sends one message of bytes from src to dst, its first chunk ready to
// leave at first and its last byte at last (later for a relayed message,
// which leaves as it arrives), and returns when its first chunk and its
// last byte arrive.
//
// A link carries the bytes of the messages that share it in the order
// they were asked for, so each message's last byte leaves when the link
// has carried its own and every earlier one's; but the messages' first
// chunks go out interleaved, so a message queued behind others still
// starts to arrive (and a relay starts forwarding it) at once. This is
// the critical path of a round-robin sender: a node that relays to k
// children delivers the last byte to the last child k message times
// after its first chunk came in, and the first chunks run ahead down the
// tree, one chunk time and one latency a level.
func (s *sim) transfer(src, dst *port, first, last time.Duration, bytes int) (time.Duration, time.Duration) {
	tx := s.txTime(bytes)
	chunk := s.txTime(min(s.cfg.ChunkBytes, bytes))
	start := max(s.now, first)
	src.out = max(src.out, start) + tx
	dst.in = max(dst.in, start) + tx
	end := max(src.out, dst.in, last+chunk)
	lat := s.cfg.Link.Latency
	if s.cfg.Link.Jitter > 0 {
		lat += time.Duration(float64(s.cfg.Link.Jitter) * philox.NewStream(s.cfg.Seed, 1, 0, 0).Uniform(s.nmsg))
	}
	s.nmsg++
	return start + chunk + lat, end + lat
}

func (s *sim) txTime(bytes int) time.Duration {
	return time.Duration(float64(bytes) * 8 / s.cfg.Link.BitsPerSec * float64(time.Second))
}
