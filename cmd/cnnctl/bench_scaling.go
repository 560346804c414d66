package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dpcnn/dpcnn/benchmark"
	"github.com/dpcnn/dpcnn/coordinator"
	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// benchScalingOptions are the flags of cnnctl bench scaling.
type benchScalingOptions struct {
	jobs           jobFlags
	cf             clientFlags
	train          trainOptions // data, backend, threads of the embedded cluster
	workers        []int
	perWorkerBatch int
	warmup         int64
	repeat         int
	synthetic      bool
	computeMs      float64
	netem          bool
	deltaMin       int
	topology       string
	fanOut         int
	bandwidth      string
	latency        time.Duration
	out            scalingOutput
	quiet          bool
}

// scalingOutput are the output flags of bench scaling and bench simulate:
// a table, JSON or CSV, and the plots.
type scalingOutput struct {
	json, csv             bool
	plotDir               string
	plotWidth, plotHeight int
}

func (o *scalingOutput) register(fs *pflag.FlagSet, jsonHelp string) {
	fs.BoolVar(&o.json, "json", false, jsonHelp)
	fs.BoolVar(&o.csv, "csv", false, "print the result as CSV, one row per worker count")
	fs.StringVar(&o.plotDir, "plot", "", "write PNG plots (throughput and efficiency, phases) into this folder")
	fs.IntVar(&o.plotWidth, "plot-width", 1000, "width of the plots in pixels")
	fs.IntVar(&o.plotHeight, "plot-height", 600, "height of the plots in pixels")
}

func (o *scalingOutput) check() error {
	if o.json && o.csv {
		return errors.New("--json and --csv: choose one")
	}
	return nil
}

func newBenchScalingCmd(e *env) *cobra.Command {
	var o benchScalingOptions
	var plan *scalingPlan
	cmd := &cobra.Command{
		Use:   "scaling",
		Short: "Measure throughput, step phases and scaling efficiency over a series of worker counts",
		Long: `Train the same job on each of --workers worker counts, --repeat rounds of the
whole series (alternating, so that noise falls on every count alike), and report for
each count the median images/s, step time and its split into phases (compute, wait,
transfer, reduce, optimizer, broadcast: each measured where it happens, see the
README), the coordinator's own time per worker, the speedup and the scaling
efficiency.

Strong scaling (the default) keeps the global batch (--batch) fixed; weak scaling
(--per-worker-batch N) gives each worker N images a step, so the global batch grows
with the workers. Each job is limited to its worker count with the spec's maxWorkers.

By default it runs on an embedded cluster (etcd, coordinator and the largest count of
workers in this process, over gRPC). --synthetic makes the workers skip the math and
answer after --compute-ms per micro-batch with gradients of the job's true size, to
measure the coordinator at 64 workers and more on one machine. --netem puts every
worker and the coordinator in a network namespace of its own, with links of
--bandwidth and --latency (needs root and iproute2). --coordinator ADDR runs it on a
real cluster instead, which must have the largest count of workers live.`,
		Example: `  cnnctl bench scaling --net deep --workers 1,2,4,8 --per-worker-batch 100 --micro-batch 100
  cnnctl bench scaling --synthetic --compute-ms 20 --workers 1,8,32,64 --per-worker-batch 100 --micro-batch 100 --json
  cnnctl bench scaling --netem --bandwidth 10Gbit --latency 0.2ms --synthetic --compute-ms 60 --workers 1,2,4,8 --per-worker-batch 100 --micro-batch 100`,
		Args: cobra.NoArgs,
		// The jobs are planned and checked before anything is dialled or
		// started (and the manifests' tests check the Kubernetes Job's
		// command line so).
		PreRunE: func(cmd *cobra.Command, _ []string) (err error) {
			plan, err = o.plan(cmd)
			return err
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBenchScaling(cmd.Context(), e, &o, plan)
		},
	}
	fs := cmd.Flags()
	o.jobs.register(fs)
	// Defaults that time steps, not evaluations: a short test set, the
	// deep net at the book's batch, in micro-batches eight workers share.
	for name, v := range map[string]string{"steps": "10", "micro-batch": "25", "batch": "200", "test-limit": "100"} {
		f := fs.Lookup(name)
		f.Value.Set(v)
		f.DefValue = v
	}
	o.cf.register(fs)
	fs.IntSliceVar(&o.workers, "workers", []int{1, 2, 4, 8}, "worker counts to measure, in order")
	fs.IntVar(&o.perWorkerBatch, "per-worker-batch", 0, "weak scaling: images per worker per step (the global batch is this times the workers); 0: strong scaling at --batch")
	fs.Int64Var(&o.warmup, "warmup", 3, "steps of each job run before the timing starts")
	fs.IntVar(&o.repeat, "repeat", 3, "rounds of the whole series; figures are medians over them")
	fs.BoolVar(&o.synthetic, "synthetic", false, "synthetic workers: skip the math, answer after --compute-ms per micro-batch (embedded cluster only)")
	fs.Float64Var(&o.computeMs, "compute-ms", 0, "with --synthetic: compute time of one micro-batch in milliseconds")
	fs.BoolVar(&o.netem, "netem", false, "run each worker and the coordinator in a network namespace of its own, links shaped by --bandwidth and --latency (root, iproute2)")
	fs.IntVar(&o.deltaMin, "params-delta-min-workers", 0, "the embedded coordinator sends parameters as deltas once a job has this many live workers (1: always; 0: its default)")
	fs.StringVar(&o.topology, "topology", "", "the embedded coordinator's topology: star, tree (the gradient sums up a tree of reducers on the workers) or auto; empty: its default (auto)")
	fs.IntVar(&o.fanOut, "tree-fan-out", 0, "the embedded coordinator's tree fan-out (2 or more; 0: its default)")
	fs.StringVar(&o.bandwidth, "bandwidth", "10Gbit", "with --netem: each link's rate, e.g. 1Gbit, 10Gbit, 500Mbit")
	fs.DurationVar(&o.latency, "latency", 200*time.Microsecond, "with --netem: one-way latency between a worker and the coordinator")
	o.out.register(fs, "print the result as JSON (the schema the README gives)")
	fs.BoolVarP(&o.quiet, "quiet", "q", false, "no progress lines (for a log that should hold the result alone)")
	o.train.registerEmbedded(fs)
	return cmd
}

// scalingPlan is a validated bench scaling run: the job of each worker
// count, and where it runs.
type scalingPlan struct {
	base    job.Spec
	counts  []int
	specs   map[int]job.Spec
	result  benchmark.Scaling
	onLocal bool
}

func (o *benchScalingOptions) plan(cmd *cobra.Command) (*scalingPlan, error) {
	fs := cmd.Flags()
	switch {
	case len(o.workers) == 0:
		return nil, errors.New("--workers: give at least one worker count")
	case o.repeat < 1:
		return nil, fmt.Errorf("--repeat %d: want at least 1", o.repeat)
	case o.warmup < 0:
		return nil, fmt.Errorf("--warmup %d: must not be negative", o.warmup)
	case o.jobs.spec.Steps < 1:
		return nil, fmt.Errorf("--steps %d: want at least 1 timed step", o.jobs.spec.Steps)
	case o.perWorkerBatch < 0:
		return nil, fmt.Errorf("--per-worker-batch %d: must not be negative", o.perWorkerBatch)
	case o.out.check() != nil:
		return nil, o.out.check()
	}
	for _, w := range o.workers {
		if w < 1 {
			return nil, fmt.Errorf("--workers: %d: every count must be at least 1", w)
		}
	}
	if dup := duplicateCount(o.workers); dup > 0 {
		return nil, fmt.Errorf("--workers: %d is given twice", dup)
	}
	if o.synthetic != (o.computeMs > 0) {
		if o.synthetic {
			return nil, errors.New("--synthetic needs --compute-ms, the compute time of one micro-batch (a positive number of milliseconds)")
		}
		if fs.Changed("compute-ms") {
			return nil, errors.New("--compute-ms is the synthetic workers' compute time: give --synthetic too")
		}
	}
	if o.computeMs < 0 {
		return nil, fmt.Errorf("--compute-ms %g: must be positive", o.computeMs)
	}
	remote := fs.Changed("coordinator") || os.Getenv("DPCNN_COORDINATOR") != ""
	if o.deltaMin < 0 {
		return nil, fmt.Errorf("--params-delta-min-workers %d: must not be negative", o.deltaMin)
	}
	if remote && fs.Changed("params-delta-min-workers") {
		return nil, errors.New("--params-delta-min-workers sets the embedded cluster's coordinator: a real cluster's is the coordinator's own flag")
	}
	if err := coordinator.CheckTopology(o.topology); err != nil {
		return nil, fmt.Errorf("--topology: %w", err)
	}
	if o.fanOut != 0 && o.fanOut < 2 {
		return nil, fmt.Errorf("--tree-fan-out %d: want 2 or more: a reducer adds at least two sums", o.fanOut)
	}
	if remote && (fs.Changed("topology") || fs.Changed("tree-fan-out")) {
		return nil, errors.New("--topology and --tree-fan-out set the embedded cluster's coordinator: a real cluster's are the coordinator's own flags")
	}
	if remote && (o.synthetic || o.netem) {
		return nil, errors.New("--synthetic and --netem make the embedded cluster's workers: they do not apply to a real cluster (--coordinator); start synthetic workers there with `worker --synthetic`")
	}
	if !o.netem && (fs.Changed("bandwidth") || fs.Changed("latency")) {
		return nil, errors.New("--bandwidth and --latency shape the emulated links: give --netem too")
	}
	if o.netem {
		if _, err := parseBitRate(o.bandwidth); err != nil {
			return nil, fmt.Errorf("--bandwidth %q: %w", o.bandwidth, err)
		}
		if o.latency < 0 {
			return nil, fmt.Errorf("--latency %s: must not be negative", o.latency)
		}
	}

	o.jobs.spec.Steps += o.warmup + 1 // the last step is followed by the final evaluation, not timed
	base, err := o.jobs.build(fs)
	o.jobs.spec.Steps -= o.warmup + 1
	if err != nil {
		return nil, err
	}
	p := &scalingPlan{base: base, counts: slices.Clone(o.workers), specs: map[int]job.Spec{}, onLocal: !remote}
	mb := base.MicroBatch
	res := &p.result
	res.Net, res.MicroBatch, res.Steps, res.Warmup, res.Repeat = netName(base), mb, o.jobs.spec.Steps, o.warmup, o.repeat
	res.Synthetic, res.ComputeMs = o.synthetic, o.computeMs
	res.Mode, res.Batch = "strong", base.Batch
	if o.perWorkerBatch > 0 {
		res.Mode, res.Batch, res.PerWorkerBatch = "weak", 0, o.perWorkerBatch
		if !fs.Changed("micro-batch") {
			mb = o.perWorkerBatch
		}
		if o.perWorkerBatch%mb != 0 {
			return nil, fmt.Errorf("--per-worker-batch %d is not a multiple of --micro-batch %d", o.perWorkerBatch, mb)
		}
		res.MicroBatch = mb
	}
	trainLen := 60000
	if base.TrainLimit > 0 {
		trainLen = min(trainLen, base.TrainLimit)
	}
	for _, w := range p.counts {
		s := base
		s.MicroBatch = mb
		if o.perWorkerBatch > 0 {
			s.Batch = o.perWorkerBatch * w
		}
		if leaves := s.Batch / s.MicroBatch; leaves < w {
			return nil, fmt.Errorf("%d workers: a batch of %d in micro-batches of %d is %d pieces of work, too few to give each worker one: raise --batch or lower --micro-batch (or use --per-worker-batch)",
				w, s.Batch, s.MicroBatch, leaves)
		}
		if s.Batch > trainLen {
			return nil, fmt.Errorf("%d workers: a global batch of %d is more than the %d training images", w, s.Batch, trainLen)
		}
		s.MinWorkers, s.MaxWorkers = w, w
		// Enough epochs for the steps, evaluated and checkpointed only at
		// the end, so that no timed step waits for either.
		perEpoch := int64(trainLen / s.Batch)
		s.Epochs = int((s.Steps + perEpoch - 1) / perEpoch)
		s.EvalEvery, s.CheckpointEvery = s.Epochs, s.Epochs
		s.Name = fmt.Sprintf("bench-scaling-%dw", w)
		s = s.WithDefaults()
		if err := s.Validate(); err != nil {
			return nil, fmt.Errorf("%d workers: %w", w, err)
		}
		p.specs[w] = s
	}
	res.Machine = benchmark.Machine()
	return p, nil
}

func duplicateCount(xs []int) int {
	seen := map[int]bool{}
	for _, x := range xs {
		if seen[x] {
			return x
		}
		seen[x] = true
	}
	return 0
}

func runBenchScaling(ctx context.Context, e *env, o *benchScalingOptions, p *scalingPlan) error {
	target, err := o.openTarget(ctx, e, p)
	if err != nil {
		return err
	}
	defer target.close()
	p.result.Cluster, p.result.Emulated = target.name, target.link

	var progress io.Writer = e.stderr
	if o.quiet {
		progress = io.Discard
	}
	prog := newBenchProgress(progress, 1+o.repeat*len(p.counts))
	// The first job a cluster runs pays for what happens once (connections
	// opening up, the first collections after the workers loaded MNIST):
	// measured 20% slower steps than the same count later in the same run.
	// One untimed job on the largest count takes that on every worker, so
	// it does not fall on whichever count comes first.
	largest := slices.Max(p.counts)
	if _, err := runTimedJob(ctx, target.client, p.specs[largest], o.warmup, o.jobs.spec.Steps); err != nil {
		prog.finish()
		return fmt.Errorf("warm-up job, %d workers: %w", largest, err)
	}
	prog.done(fmt.Sprintf("warm-up job on %s (not counted)", plural(largest, "worker")))
	rounds := map[int][]stepFigures{}
	for r := range o.repeat {
		for _, w := range p.counts {
			fig, err := runTimedJob(ctx, target.client, p.specs[w], o.warmup, o.jobs.spec.Steps)
			if err != nil {
				prog.finish()
				return fmt.Errorf("round %d, %d workers: %w", r+1, w, err)
			}
			rounds[w] = append(rounds[w], fig)
			prog.done(fmt.Sprintf("round %d/%d, %s: %.2f ms/step, %.0f images/s", r+1, o.repeat, plural(w, "worker"),
				fig.stepMs, float64(p.specs[w].Batch)/fig.stepMs*1000))
		}
	}
	prog.finish()
	p.result.Points = scalingPoints(p, rounds)
	return o.out.write(e, p.result)
}

// stepFigures are one job's timed steps: the mean step time (from one
// applied step to the next) and the mean of each phase, in milliseconds.
type stepFigures struct {
	stepMs float64
	phases benchmark.Phases
}

// runTimedJob submits spec, watches it to its end, and returns the
// figures of steps warmup+1 … warmup+steps.
func runTimedJob(ctx context.Context, c *client, spec job.Spec, warmup, steps int64) (stepFigures, error) {
	var at stepClock
	var sum benchmark.Phases
	timed := 0
	id, err := runBenchJob(ctx, c, spec, func(ev *dpcnnv1.JobEvent) (bool, error) {
		if pr := ev.GetProgress(); pr != nil && pr.GlobalStep > 0 {
			if _, seen := at[pr.GlobalStep]; !seen {
				at.record(pr.GlobalStep, time.Duration(pr.ElapsedNanos))
				if pr.GlobalStep > warmup && pr.GlobalStep <= warmup+steps && pr.Phases != nil {
					sum = sum.Add(phasesMs(pr.Phases))
					timed++
				}
			}
		}
		return false, nil
	})
	if err != nil {
		return stepFigures{}, err
	}
	per, err := at.perStep(warmup, warmup+steps)
	if err != nil {
		return stepFigures{}, err
	}
	if timed == 0 {
		return stepFigures{}, fmt.Errorf("job %s: the coordinator reported no step phases (a coordinator older than revision 3 of the protocol?)", id)
	}
	return stepFigures{stepMs: ms(per), phases: sum.Scale(1 / float64(timed))}, nil
}

func phasesMs(p *dpcnnv1.StepPhases) benchmark.Phases {
	f := func(n int64) float64 { return ms(time.Duration(n)) }
	return benchmark.Phases{
		Compute: f(p.ComputeNanos), Wait: f(p.WaitNanos), Transfer: f(p.TransferNanos),
		Reduce: f(p.ReduceNanos), Optimizer: f(p.OptimizerNanos), Broadcast: f(p.BroadcastNanos),
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// scalingPoints makes each worker count's point: medians over the rounds,
// and speedup and efficiency against the first count's throughput per
// worker.
func scalingPoints(p *scalingPlan, rounds map[int][]stepFigures) []benchmark.Point {
	var points []benchmark.Point
	for _, w := range p.counts {
		figs := rounds[w]
		var steps []float64
		perPhase := make([][]float64, 6)
		for _, f := range figs {
			steps = append(steps, f.stepMs)
			for i, v := range f.phases.Values() {
				perPhase[i] = append(perPhase[i], v)
			}
		}
		var medians [6]float64
		for i := range perPhase {
			medians[i] = benchmark.Median(perPhase[i])
		}
		phases := benchmark.PhasesOf(medians)
		step := benchmark.Median(steps)
		batch := p.specs[w].Batch
		points = append(points, benchmark.Point{
			Workers: w, Batch: batch, ImagesPerSec: float64(batch) / step * 1000, StepMs: step,
			StepMsSpread: benchmark.SpreadOf(steps), PhasesMs: phases,
			CoordinatorMsPerWorker: phases.Coordinator() / float64(w),
		})
	}
	if len(points) > 0 {
		perWorker := points[0].ImagesPerSec / float64(points[0].Workers)
		var ws, coord []float64
		for i := range points {
			pt := &points[i]
			pt.Speedup = pt.ImagesPerSec / perWorker
			pt.Efficiency = pt.Speedup / float64(pt.Workers)
			ws = append(ws, float64(pt.Workers))
			coord = append(coord, pt.PhasesMs.Coordinator())
		}
		p.result.CoordinatorMsPerAddedWorker = benchmark.Slope(ws, coord)
	}
	return points
}

// write prints s as asked and draws its plots.
func (o *scalingOutput) write(e *env, s benchmark.Scaling) error {
	w := e.stdout
	if o.plotDir != "" {
		if err := os.MkdirAll(o.plotDir, 0o755); err != nil {
			return err
		}
		paths, err := benchmark.PlotScaling(s, o.plotDir, o.plotWidth, o.plotHeight)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "plots: %s\n", strings.Join(paths, ", "))
	}
	switch {
	case o.json:
		return benchmark.WriteScalingJSON(w, s)
	case o.csv:
		return benchmark.WriteScalingCSV(w, s)
	default:
		return benchmark.WriteScalingTable(w, s)
	}
}
