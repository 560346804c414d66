package benchmark

// Scaling is the result of `cnnctl bench scaling`. Its JSON names are
// fixed (scripts read them): {"net", "points": [{"workers",
// "imagesPerSec", "stepMs", "phasesMs": {...}, "coordinatorMsPerWorker",
// "efficiency"}, …]}, with the run's settings beside them.
type Scaling struct {
	Net string `json:"net"`
	// Mode is "strong" (the global batch fixed: Batch) or "weak" (the
	// batch per worker fixed: PerWorkerBatch, the global batch growing
	// with the workers).
	Mode           string `json:"mode"`
	Batch          int    `json:"batch,omitempty"`
	PerWorkerBatch int    `json:"perWorkerBatch,omitempty"`
	MicroBatch     int    `json:"microBatch"`
	// Steps is the number of steps timed in each round, after Warmup
	// steps; Repeat the rounds at each worker count.
	Steps  int64 `json:"steps"`
	Warmup int64 `json:"warmup"`
	Repeat int   `json:"repeat"`
	// Synthetic says the workers skipped the math and answered with
	// gradients of the job's true size after ComputeMs per micro-batch.
	Synthetic bool    `json:"synthetic,omitempty"`
	ComputeMs float64 `json:"computeMs,omitempty"`
	// Emulated describes the emulated links when each worker ran in a
	// network namespace of its own (--netem); nil otherwise.
	Emulated *Link `json:"emulated,omitempty"`
	// Simulated describes the model of a simulated run (`cnnctl bench
	// simulate`); nil for a measured one.
	Simulated *Simulation `json:"simulated,omitempty"`
	// Cluster says where it ran: "embedded" (a local cluster in cnnctl's
	// process), the coordinator's address, or "simulated".
	Cluster string `json:"cluster"`
	// Machine describes the machine cnnctl ran on (CPU, cores, OS).
	Machine string `json:"machine,omitempty"`
	// CoordinatorMsPerAddedWorker is the slope of the coordinator's own
	// time per step (broadcast, reduce and optimizer) against the worker
	// count, fitted by least squares over the points; 0 with one point.
	CoordinatorMsPerAddedWorker float64 `json:"coordinatorMsPerAddedWorker"`
	Points                      []Point `json:"points"`
}

// Link is an emulated network link between each worker and the
// switch, and between the switch and the coordinator.
type Link struct {
	BitsPerSec float64 `json:"bitsPerSec"`
	LatencyMs  float64 `json:"latencyMs"`
	// How says how the link was emulated, e.g. "tc netem" or "tc tbf
	// rate, delay line in the sockets' path".
	How string `json:"how"`
}

// Simulation is the model of a simulated run: how messages travel, and
// the measured costs it was given (see the simulate package).
type Simulation struct {
	Topology string `json:"topology"` // "star" or "tree"
	// FanOut is the tree's number of children a node; ChunkBytes the unit
	// messages are relayed in.
	FanOut     int `json:"fanOut,omitempty"`
	ChunkBytes int `json:"chunkBytes"`
	// CutThroughSums says the tree's reducers were modelled adding and
	// forwarding the sums chunk by chunk, not once every sum is in (as
	// the real ones do).
	CutThroughSums bool    `json:"cutThroughSums,omitempty"`
	Link           Link    `json:"link"`
	JitterMs       float64 `json:"jitterMs,omitempty"`
	// The costs: a micro-batch's compute (and its jitter, a fraction), a
	// worker's encoding or decoding of a message, the coordinator's
	// sending of one, adding one gradient vector, the optimizer.
	ComputeMs     float64 `json:"computeMs"`
	ComputeJitter float64 `json:"computeJitter,omitempty"`
	MessageMs     float64 `json:"messageMs"`
	SendMs        float64 `json:"sendMs"`
	ReduceMs      float64 `json:"reduceMs"`
	OptimizerMs   float64 `json:"optimizerMs"`
	// Stragglers: each worker each step is one with this probability, its
	// compute this many times as long.
	StragglerFraction float64 `json:"stragglerFraction,omitempty"`
	StragglerSlowdown float64 `json:"stragglerSlowdown,omitempty"`
	// DeltaFraction, when set, is the parameters' delta as a fraction of
	// the whole vector (sent instead of it), its encoding costing the
	// coordinator DeltaEncodeMs once a step and its applying each worker
	// DeltaApplyMs.
	DeltaFraction float64 `json:"deltaFraction,omitempty"`
	DeltaEncodeMs float64 `json:"deltaEncodeMs,omitempty"`
	DeltaApplyMs  float64 `json:"deltaApplyMs,omitempty"`
	// Failures are the workers killed, as "worker@step".
	Failures []string `json:"failures,omitempty"`
	// CalibratedFrom names the measured result (`cnnctl bench scaling
	// --json`) the costs were fitted to; Agreement compares the two at the
	// worker counts both have.
	CalibratedFrom string      `json:"calibratedFrom,omitempty"`
	Agreement      []Agreement `json:"agreement,omitempty"`
}

// Agreement is a simulated point beside the measured one.
type Agreement struct {
	Workers               int     `json:"workers"`
	MeasuredImagesPerSec  float64 `json:"measuredImagesPerSec"`
	SimulatedImagesPerSec float64 `json:"simulatedImagesPerSec"`
	// Error is simulated over measured, less one.
	Error float64 `json:"error"`
}

// Point is one worker count's figures: medians over the rounds.
type Point struct {
	Workers      int     `json:"workers"`
	Batch        int     `json:"batch"` // global batch of each step
	ImagesPerSec float64 `json:"imagesPerSec"`
	StepMs       float64 `json:"stepMs"`
	// StepMsSpread is the spread of the rounds' step times.
	StepMsSpread Spread `json:"stepMsSpread"`
	PhasesMs     Phases `json:"phasesMs"`
	// CoordinatorMsPerWorker is the coordinator's own time per step
	// (broadcast, reduce and optimizer) divided by the worker count.
	CoordinatorMsPerWorker float64 `json:"coordinatorMsPerWorker"`
	// Speedup is ImagesPerSec over the one-worker point's (or the
	// smallest worker count's, scaled to one worker); Efficiency is
	// Speedup over Workers (weak scaling: the per-worker throughput kept).
	Speedup    float64 `json:"speedup"`
	Efficiency float64 `json:"efficiency"`
}

// Phases is a step's time split where it is spent, in milliseconds: the
// mean of the step's workers' compute (timed on the workers), the mean
// transfer of a result (the coordinator's round trip less the worker's
// time holding the assignment), the wait for the slowest worker (the rest
// of the time the coordinator waited for results), and the coordinator's
// reduce (results but the last), optimizer (the last result and the
// update) and broadcast (sending the assignments). They add up to the
// step time.
type Phases struct {
	Compute   float64 `json:"compute"`
	Wait      float64 `json:"wait"`
	Transfer  float64 `json:"transfer"`
	Reduce    float64 `json:"reduce"`
	Optimizer float64 `json:"optimizer"`
	Broadcast float64 `json:"broadcast"`
}

// Coordinator is the coordinator's own time of the phases: broadcast,
// reduce and optimizer.
func (p Phases) Coordinator() float64 { return p.Broadcast + p.Reduce + p.Optimizer }

// Sum is the total of the phases.
func (p Phases) Sum() float64 {
	return p.Compute + p.Wait + p.Transfer + p.Reduce + p.Optimizer + p.Broadcast
}

// Values are the phases in the order of their JSON names: compute, wait,
// transfer, reduce, optimizer, broadcast.
func (p Phases) Values() [6]float64 {
	return [6]float64{p.Compute, p.Wait, p.Transfer, p.Reduce, p.Optimizer, p.Broadcast}
}

// PhasesOf is the inverse of Values.
func PhasesOf(v [6]float64) Phases {
	return Phases{Compute: v[0], Wait: v[1], Transfer: v[2], Reduce: v[3], Optimizer: v[4], Broadcast: v[5]}
}

// Add is the phases' sum, phase by phase.
func (p Phases) Add(q Phases) Phases {
	a, b := p.Values(), q.Values()
	for i := range a {
		a[i] += b[i]
	}
	return PhasesOf(a)
}

// Scale multiplies every phase by f.
func (p Phases) Scale(f float64) Phases {
	a := p.Values()
	for i := range a {
		a[i] *= f
	}
	return PhasesOf(a)
}
