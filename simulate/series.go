package simulate

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dpcnn/dpcnn/benchmark"
)

// Series simulates cfg at each worker count and returns the points as
// `cnnctl bench scaling` reports them (weak scaling: speedup and
// efficiency against the first count's throughput per worker). progress,
// when set, is told of each count's run.
func Series(cfg Config, counts []int, progress func(Result)) (benchmark.Scaling, error) {
	cfg = cfg.withDefaults()
	if len(counts) == 0 {
		return benchmark.Scaling{}, errors.New("simulate: no worker counts")
	}
	out := benchmark.Scaling{
		Net: cfg.Network, Mode: "weak", PerWorkerBatch: cfg.PerWorkerBatch, MicroBatch: cfg.MicroBatch,
		Steps: cfg.Steps, Warmup: cfg.Warmup, Repeat: 1, Cluster: "simulated",
		Simulated: describe(cfg),
	}
	// The configuration's own mistakes are said once, not as one count's.
	for _, n := range []int{slices.Min(counts), slices.Max(counts)} {
		c := cfg
		c.Workers, c.Failures = n, nil
		if err := c.validate(); err != nil {
			return benchmark.Scaling{}, err
		}
	}
	// A failure applies to the counts that have its worker; one that no
	// count has is a mistake.
	for _, f := range cfg.Failures {
		if f.Worker >= slices.Max(counts) {
			return benchmark.Scaling{}, fmt.Errorf("simulate: failure of worker %d: the largest count, %d, has no such worker", f.Worker, slices.Max(counts))
		}
	}
	var ws, coord []float64
	for _, n := range counts {
		c := cfg
		c.Workers = n
		c.Failures = nil
		for _, f := range cfg.Failures {
			if f.Worker < n {
				c.Failures = append(c.Failures, f)
			}
		}
		r, err := Run(c)
		if err != nil {
			return benchmark.Scaling{}, fmt.Errorf("%d workers: %w", n, err)
		}
		if progress != nil {
			progress(r)
		}
		step := benchmark.Median(r.StepMs)
		out.Points = append(out.Points, benchmark.Point{
			Workers: n, Batch: r.Batch, ImagesPerSec: float64(r.Batch) / step * 1000, StepMs: step,
			StepMsSpread: benchmark.SpreadOf(r.StepMs), PhasesMs: r.Phases,
			CoordinatorMsPerWorker: r.Phases.Coordinator() / float64(n),
		})
		ws = append(ws, float64(n))
		coord = append(coord, r.Phases.Coordinator())
	}
	perWorker := out.Points[0].ImagesPerSec / float64(out.Points[0].Workers)
	for i := range out.Points {
		p := &out.Points[i]
		p.Speedup = p.ImagesPerSec / perWorker
		p.Efficiency = p.Speedup / float64(p.Workers)
	}
	out.CoordinatorMsPerAddedWorker = benchmark.Slope(ws, coord)
	return out, nil
}

func describe(c Config) *benchmark.Simulation {
	m := &benchmark.Simulation{
		Topology: string(c.Topology), ChunkBytes: c.ChunkBytes, CutThroughSums: c.CutThroughSums,
		Link:     benchmark.Link{BitsPerSec: c.Link.BitsPerSec, LatencyMs: ms(c.Link.Latency), How: "simulated"},
		JitterMs: ms(c.Link.Jitter), ComputeMs: ms(c.Costs.Compute), ComputeJitter: c.Costs.ComputeJitter,
		MessageMs: ms(c.Costs.Message), SendMs: ms(c.Costs.Send), ReduceMs: ms(c.Costs.Reduce), OptimizerMs: ms(c.Costs.Optimizer),
		StragglerFraction: c.Stragglers.Fraction, StragglerSlowdown: c.Stragglers.Slowdown,
	}
	if d := c.ParamsDelta; d.Fraction > 0 {
		m.DeltaFraction, m.DeltaEncodeMs, m.DeltaApplyMs = d.Fraction, ms(d.Encode), ms(d.Apply)
	}
	if c.Topology == Tree {
		m.FanOut = c.FanOut
	}
	for _, f := range c.Failures {
		m.Failures = append(m.Failures, fmt.Sprintf("%d@%d", f.Worker, f.Step))
	}
	return m
}

// Calibrate fits the costs of the model to a measured weak-scaling result
// (`cnnctl bench scaling --per-worker-batch N --json`) on links of link,
// for a network of paramCount parameters:
//
//   - a micro-batch's compute is the one-worker point's compute, over the
//     micro-batches a worker computes;
//   - a worker's encoding (or decoding) is half of what the one-worker
//     point's transfer leaves over the two messages' wire time;
//   - the coordinator's sending and adding of one message are the
//     largest point's broadcast and reduce, per message;
//   - the optimizer is the one-worker point's, less its one reduce.
//
// The points between are left for the simulation to predict.
func Calibrate(m benchmark.Scaling, link Link, paramCount int) (Costs, error) {
	if m.Mode != "weak" || m.PerWorkerBatch < 1 || m.MicroBatch < 1 {
		return Costs{}, fmt.Errorf("simulate: calibrate: a %q scaling result: want weak scaling (--per-worker-batch)", m.Mode)
	}
	var one, most *benchmark.Point
	for i := range m.Points {
		p := &m.Points[i]
		if p.Workers == 1 {
			one = p
		}
		if p.Workers > 1 && (most == nil || p.Workers > most.Workers) {
			most = p
		}
	}
	if one == nil {
		return Costs{}, errors.New("simulate: calibrate: the measured result has no one-worker point")
	}
	if !(link.BitsPerSec > 0) {
		return Costs{}, errors.New("simulate: calibrate: no link bandwidth")
	}
	leaves := float64(m.PerWorkerBatch / m.MicroBatch)
	wire := 2 * (float64(4*paramCount)*8/link.BitsPerSec*1000 + ms(link.Latency))
	c := Costs{
		Compute: msDuration(one.PhasesMs.Compute / leaves),
		Message: msDuration(max(0, one.PhasesMs.Transfer-wire) / 2),
	}
	if most != nil {
		c.Send = msDuration(most.PhasesMs.Broadcast / float64(most.Workers))
		c.Reduce = msDuration(most.PhasesMs.Reduce / float64(most.Workers-1))
	}
	c.Optimizer = msDuration(max(0, one.PhasesMs.Optimizer-ms(c.Reduce)))
	if c.Compute <= 0 {
		return Costs{}, errors.New("simulate: calibrate: the one-worker point has no compute time")
	}
	return c, nil
}

func msDuration(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }

// Compare sets sim's agreement with the measured points at the worker
// counts both have.
func Compare(sim *benchmark.Scaling, measured benchmark.Scaling) {
	if sim.Simulated == nil {
		return
	}
	byCount := map[int]benchmark.Point{}
	for _, p := range measured.Points {
		byCount[p.Workers] = p
	}
	sim.Simulated.Agreement = nil
	for _, p := range sim.Points {
		if q, ok := byCount[p.Workers]; ok && q.ImagesPerSec > 0 {
			sim.Simulated.Agreement = append(sim.Simulated.Agreement, benchmark.Agreement{
				Workers: p.Workers, MeasuredImagesPerSec: q.ImagesPerSec, SimulatedImagesPerSec: p.ImagesPerSec,
				Error: p.ImagesPerSec/q.ImagesPerSec - 1,
			})
		}
	}
}
