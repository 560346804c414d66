package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dpcnn/dpcnn/benchmark"
	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/model"
	"github.com/dpcnn/dpcnn/simulate"
)

// benchSimulateOptions are the flags of cnnctl bench simulate.
type benchSimulateOptions struct {
	net                   string
	workers               []int
	perWorkerBatch, micro int
	steps, warmup         int64
	seed                  uint64
	topology              string
	fanOut, chunkKiB      int
	cutThroughSums        bool
	bandwidth             string
	latency, jitter       time.Duration
	detect                time.Duration
	computeMs, jitterFrac float64
	messageMs, sendMs     float64
	reduceMs, optimizerMs float64
	stragglers, slowdown  float64
	delta                 float64
	deltaEnc, deltaApply  float64
	failures              []string
	calibrate             string
	out                   scalingOutput
	quiet                 bool
}

func newBenchSimulateCmd(e *env) *cobra.Command {
	var o benchSimulateOptions
	cmd := &cobra.Command{
		Use:   "simulate",
		Short: "Simulate the protocol at worker counts no machine here holds: star against tree",
		Long: `Run the real training engine against a discrete-event model of the cluster (see the
README and the simulate package): links of --bandwidth, --latency and --jitter, each
worker's compute from a measured figure (--compute-ms a micro-batch), the coordinator's
measured costs, stragglers (--stragglers, --slowdown) and deaths (--fail WORKER@STEP),
for 1 to 4,096 workers. --topology star sends every message over the coordinator's
link; --topology tree relays the parameters down a fixed tree of the workers
(--fan-out children each), in --chunk-kib pieces as they arrive, and adds the
gradients up it, each reducer sending its sum once every sum it adds is in, as
the real ones do (--cut-through-sums: chunk by chunk, which streaming the sums
would give). The engine decides every assignment and applies real optimizer steps, so the
parameters end bit-identical whatever the topology.

The result is the same points as cnnctl bench scaling (weak scaling: --per-worker-batch
images per worker a step). --calibrate FILE fits the costs to a measured result
(cnnctl bench scaling --per-worker-batch N --json, with its one-worker point) and
compares the two at the counts both have; its emulated links are taken too unless
--bandwidth or --latency is given.`,
		Example: `  cnnctl bench simulate --net deep --workers 1,64,1024 --bandwidth 10Gbit --latency 0.2ms --topology tree --compute-ms 25 --json
  cnnctl bench simulate --workers 1,2,4,8,64 --topology star --calibrate measured.json --plot plots/`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBenchSimulate(cmd, e, &o)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.net, "net", "deep", "built-in network: "+fmt.Sprint(model.BuiltinNames()))
	fs.IntSliceVar(&o.workers, "workers", []int{1, 64, 1024}, "worker counts to simulate, in order (1 to 4096)")
	fs.IntVar(&o.perWorkerBatch, "per-worker-batch", 100, "images per worker per step (weak scaling)")
	fs.IntVar(&o.micro, "micro-batch", 0, "images per micro-batch (default: the per-worker batch)")
	fs.Int64Var(&o.steps, "steps", 5, "timed steps")
	fs.Int64Var(&o.warmup, "warmup", 2, "steps before the timed ones")
	fs.Uint64Var(&o.seed, "seed", 1, "the job's seed, and the jitter's and stragglers' streams")
	fs.StringVar(&o.topology, "topology", "tree", "star or tree")
	fs.IntVar(&o.fanOut, "fan-out", 4, "tree: sums each reducer adds (a power of two)")
	fs.IntVar(&o.chunkKiB, "chunk-kib", 16, "the unit messages are relayed in, KiB (16: an HTTP/2 frame, gRPC's default)")
	fs.BoolVar(&o.cutThroughSums, "cut-through-sums", false, "tree: reducers add and forward the sums chunk by chunk as they arrive (not built: the real ones send a sum once every sum it adds is in)")
	fs.StringVar(&o.bandwidth, "bandwidth", "10Gbit", "each link's rate, each direction, e.g. 1Gbit, 10Gbit, 500Mbit")
	fs.DurationVar(&o.latency, "latency", 200*time.Microsecond, "one-way latency between any two nodes")
	fs.DurationVar(&o.jitter, "jitter", 0, "each message's latency grows by up to this")
	fs.DurationVar(&o.detect, "detect", time.Millisecond, "how long the coordinator takes to learn that a worker died")
	fs.Float64Var(&o.computeMs, "compute-ms", 0, "measured compute time of one micro-batch on one worker (or --calibrate)")
	fs.Float64Var(&o.jitterFrac, "compute-jitter", 0, "each compute lasts up to this fraction longer")
	fs.Float64Var(&o.messageMs, "message-ms", 0.11, "a worker's CPU time to decode or encode one message")
	fs.Float64Var(&o.sendMs, "send-ms", 0.016, "the coordinator's CPU time to send one message")
	fs.Float64Var(&o.reduceMs, "reduce-ms", 0.068, "CPU time to add one gradient vector")
	fs.Float64Var(&o.optimizerMs, "optimizer-ms", 0.45, "the coordinator's optimizer step")
	fs.Float64Var(&o.stragglers, "stragglers", 0, "probability that a worker straggles at a step")
	fs.Float64Var(&o.slowdown, "slowdown", 2, "a straggler's compute, times its usual")
	fs.Float64Var(&o.delta, "params-delta", 0, "send the parameters as deltas of this fraction of the whole vector (0.62 for the deep net, measured); 0: whole vectors")
	fs.Float64Var(&o.deltaEnc, "delta-encode-ms", 0.1, "with --params-delta: the coordinator's encoding of a step's delta")
	fs.Float64Var(&o.deltaApply, "delta-apply-ms", 0.04, "with --params-delta: a worker's applying of it")
	fs.StringSliceVar(&o.failures, "fail", nil, "kill worker W (0-based) as it starts computing step S: W@S, repeatable")
	fs.StringVar(&o.calibrate, "calibrate", "", "fit the costs to this measured cnnctl bench scaling --json result and compare")
	o.out.register(fs, "print the result as JSON (cnnctl bench scaling's schema, with a simulated block)")
	fs.BoolVarP(&o.quiet, "quiet", "q", false, "no progress lines")
	return cmd
}

func (o *benchSimulateOptions) config(cmd *cobra.Command) (simulate.Config, *benchmark.Scaling, error) {
	fs := cmd.Flags()
	if err := o.out.check(); err != nil {
		return simulate.Config{}, nil, err
	}
	if len(o.workers) == 0 {
		return simulate.Config{}, nil, errors.New("--workers: give at least one worker count")
	}
	if dup := duplicateCount(o.workers); dup > 0 {
		return simulate.Config{}, nil, fmt.Errorf("--workers: %d is given twice", dup)
	}
	topo, err := simulate.ParseTopology(o.topology)
	if err != nil {
		return simulate.Config{}, nil, fmt.Errorf("--topology: %w", err)
	}
	bps, err := parseBitRate(o.bandwidth)
	if err != nil {
		return simulate.Config{}, nil, fmt.Errorf("--bandwidth %q: %w", o.bandwidth, err)
	}
	if o.chunkKiB < 1 {
		return simulate.Config{}, nil, fmt.Errorf("--chunk-kib %d: want at least 1", o.chunkKiB)
	}
	if _, err := paramCount(o.net); err != nil {
		return simulate.Config{}, nil, fmt.Errorf("--net %q: %w", o.net, err)
	}
	// Flags of a feature not asked for would be ignored: refuse them.
	for flag, needs := range map[string]string{
		"delta-encode-ms": "params-delta", "delta-apply-ms": "params-delta", "slowdown": "stragglers",
	} {
		if fs.Changed(flag) && !fs.Changed(needs) {
			return simulate.Config{}, nil, fmt.Errorf("--%s goes with --%s: give it too", flag, needs)
		}
	}
	for _, flag := range []string{"fan-out", "cut-through-sums"} {
		if fs.Changed(flag) && topo != simulate.Tree {
			return simulate.Config{}, nil, fmt.Errorf("--%s shapes the tree: it does not apply to --topology star", flag)
		}
	}
	c := simulate.Config{
		Network: o.net, PerWorkerBatch: o.perWorkerBatch, MicroBatch: o.micro, Seed: o.seed,
		Warmup: o.warmup, Steps: o.steps, Topology: topo, FanOut: o.fanOut, ChunkBytes: o.chunkKiB << 10, CutThroughSums: o.cutThroughSums,
		Link:   simulate.Link{BitsPerSec: bps, Latency: o.latency, Jitter: o.jitter},
		Detect: o.detect,
		Costs: simulate.Costs{
			Compute: msDur(o.computeMs), ComputeJitter: o.jitterFrac, Message: msDur(o.messageMs),
			Send: msDur(o.sendMs), Reduce: msDur(o.reduceMs), Optimizer: msDur(o.optimizerMs),
		},
	}
	if o.delta > 0 {
		c.ParamsDelta = simulate.ParamsDelta{Fraction: o.delta, Encode: msDur(o.deltaEnc), Apply: msDur(o.deltaApply)}
	}
	if o.stragglers > 0 {
		c.Stragglers = simulate.Stragglers{Fraction: o.stragglers, Slowdown: o.slowdown}
	}
	for _, f := range o.failures {
		w, s, ok := strings.Cut(f, "@")
		wi, werr := strconv.Atoi(w)
		si, serr := strconv.ParseInt(s, 10, 64)
		if !ok || werr != nil || serr != nil {
			return simulate.Config{}, nil, fmt.Errorf("--fail %q: want WORKER@STEP, e.g. 3@2", f)
		}
		c.Failures = append(c.Failures, simulate.Failure{Worker: wi, Step: si})
	}
	var measured *benchmark.Scaling
	if o.calibrate != "" {
		for _, name := range []string{"compute-ms", "message-ms", "send-ms", "reduce-ms", "optimizer-ms", "per-worker-batch", "micro-batch", "net"} {
			if fs.Changed(name) {
				return simulate.Config{}, nil, fmt.Errorf("--%s and --calibrate: the calibration sets it from the measured result", name)
			}
		}
		f, err := os.Open(o.calibrate)
		if err != nil {
			return simulate.Config{}, nil, fmt.Errorf("--calibrate: %w", err)
		}
		m, err := benchmark.ReadScalingJSON(f)
		f.Close()
		if err != nil {
			return simulate.Config{}, nil, fmt.Errorf("--calibrate %s: %w", o.calibrate, err)
		}
		if l := m.Emulated; l != nil && !fs.Changed("bandwidth") && !fs.Changed("latency") {
			c.Link.BitsPerSec, c.Link.Latency = l.BitsPerSec, msDur(l.LatencyMs)
		}
		c.Network, c.PerWorkerBatch, c.MicroBatch = m.Net, m.PerWorkerBatch, m.MicroBatch
		n, err := paramCount(m.Net)
		if err != nil {
			return simulate.Config{}, nil, fmt.Errorf("--calibrate %s: %w", o.calibrate, err)
		}
		if c.Costs, err = simulate.Calibrate(m, c.Link, n); err != nil {
			return simulate.Config{}, nil, fmt.Errorf("--calibrate %s: %w", o.calibrate, err)
		}
		c.Costs.ComputeJitter = o.jitterFrac
		measured = &m
	} else if o.computeMs <= 0 {
		return simulate.Config{}, nil, errors.New("--compute-ms: give the measured compute time of one micro-batch (cnnctl bench scaling --workers 1 shows it), or --calibrate a measured result")
	}
	return c, measured, nil
}

func paramCount(net string) (int, error) {
	spec, err := job.Spec{Network: net}.WithDefaults().Model()
	if err != nil {
		return 0, err
	}
	return spec.ParamCount()
}

func msDur(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }

func runBenchSimulate(cmd *cobra.Command, e *env, o *benchSimulateOptions) error {
	c, measured, err := o.config(cmd)
	if err != nil {
		return err
	}
	var progress io.Writer = e.stderr
	if o.quiet {
		progress = io.Discard
	}
	prog := newBenchProgress(progress, len(o.workers))
	res, err := simulate.Series(c, o.workers, func(r simulate.Result) {
		prog.done(fmt.Sprintf("%s, %s: %.2f ms a step (simulated; %d events)", plural(r.Workers, "worker"), r.Topology,
			benchmark.Median(r.StepMs), r.Events))
	})
	prog.finish()
	if err != nil {
		return err
	}
	res.Machine = benchmark.Machine()
	if measured != nil {
		res.Simulated.CalibratedFrom = o.calibrate
		simulate.Compare(&res, *measured)
	}
	if err := o.out.write(e, res); err != nil || o.out.json || o.out.csv {
		return err
	}
	if m := res.Simulated; len(m.Agreement) > 0 {
		fmt.Fprintf(e.stdout, "\nagainst the measured result (%s):\n", m.CalibratedFrom)
		for _, a := range m.Agreement {
			fmt.Fprintf(e.stdout, "  %s: measured %.0f images/s, simulated %.0f (%+.1f%%)\n",
				plural(a.Workers, "worker"), a.MeasuredImagesPerSec, a.SimulatedImagesPerSec, 100*a.Error)
		}
	}
	return nil
}
