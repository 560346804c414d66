package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/dpcnn/dpcnn/benchmark"
	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// benchAccuracyOptions are the flags of cnnctl bench accuracy.
type benchAccuracyOptions struct {
	cluster    benchScalingOptions // the target: --coordinator, or the embedded cluster's data, backend, threads
	workers    int
	remote     bool // --coordinator (or $DPCNN_COORDINATOR): a real cluster
	target     float64
	seeds      int
	json, csv  bool
	quiet      bool
	plotDir    string
	plotWidth  int
	plotHeight int
}

func newBenchAccuracyCmd(e *env) *cobra.Command {
	var o benchAccuracyOptions
	var base job.Spec
	cmd := &cobra.Command{
		Use:   "accuracy",
		Short: "Measure the wall time to a test accuracy over seeded runs (MLPerf-style)",
		Long: `Train the job once for each of --seeds seeds (--seed, --seed+1, …) and time each
run from before the data is touched (on the embedded cluster: before the cluster is
started and its workers load MNIST) until its test accuracy first reaches --target,
evaluation included; the run then stops. Reported: each run's time, step, best
accuracy and the SHA-256 of its parameters at the end (runs of one seed agree bit for
bit), the runs that never reached the target within --epochs, and the olympic mean of
the reached runs' times (the fastest and slowest dropped) with the spread.`,
		Example: `  cnnctl bench accuracy --net deep --epochs 20 --target 0.99 --seeds 5 --workers 2 --micro-batch 50
  cnnctl bench accuracy --net simple --epochs 3 --target 0.98 --seeds 3 --json --plot runs/accuracy`,
		Args: cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) (err error) {
			base, err = o.plan(cmd)
			return err
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBenchAccuracy(cmd.Context(), e, &o, base)
		},
	}
	fs := cmd.Flags()
	o.cluster.jobs.register(fs)
	o.cluster.cf.register(fs)
	fs.IntVar(&o.workers, "workers", 2, "embedded cluster: workers (threads are shared among them)")
	fs.Float64Var(&o.target, "target", 0.99, "test accuracy to reach, as a fraction")
	fs.IntVar(&o.seeds, "seeds", 5, "seeded runs: --seed, --seed+1, …")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
	fs.BoolVar(&o.csv, "csv", false, "print the result as CSV, one row per run")
	fs.BoolVarP(&o.quiet, "quiet", "q", false, "no progress lines")
	fs.StringVar(&o.plotDir, "plot", "", "write a PNG of accuracy against wall time (accuracy-time.png) into this folder")
	fs.IntVar(&o.plotWidth, "plot-width", 1000, "width of the plot in pixels")
	fs.IntVar(&o.plotHeight, "plot-height", 600, "height of the plot in pixels")
	o.cluster.train.registerEmbedded(fs)
	return cmd
}

func (o *benchAccuracyOptions) plan(cmd *cobra.Command) (job.Spec, error) {
	switch {
	case !(o.target > 0 && o.target <= 1):
		return job.Spec{}, fmt.Errorf("--target %g: want a test accuracy in (0, 1]", o.target)
	case o.seeds < 1:
		return job.Spec{}, fmt.Errorf("--seeds %d: want at least 1 run", o.seeds)
	case o.workers < 1:
		return job.Spec{}, fmt.Errorf("--workers %d: want at least 1", o.workers)
	case o.json && o.csv:
		return job.Spec{}, errors.New("--json and --csv: choose one")
	}
	o.remote = cmd.Flags().Changed("coordinator") || os.Getenv("DPCNN_COORDINATOR") != ""
	s, err := o.cluster.jobs.build(cmd.Flags())
	if err != nil {
		return job.Spec{}, err
	}
	if s.EvalEvery != 1 {
		return job.Spec{}, fmt.Errorf("--eval-every %d: time to accuracy evaluates after every epoch", s.EvalEvery)
	}
	return s, nil
}

func runBenchAccuracy(ctx context.Context, e *env, o *benchAccuracyOptions, base job.Spec) error {
	remote := o.remote
	res := benchmark.Accuracy{Net: netName(base), Target: o.target, Machine: benchmark.Machine()}
	if !remote {
		res.Workers = o.workers
	}
	var progress io.Writer = e.stderr
	if o.quiet {
		progress = io.Discard
	}
	if note := idleWorkersNote(base, o.workers); note != "" && !remote {
		fmt.Fprintln(e.stderr, note)
	}
	prog := newBenchProgress(progress, o.seeds)
	for i := range o.seeds {
		spec := base
		spec.Seed = base.Seed + uint64(i)
		spec.Name = fmt.Sprintf("bench-accuracy-seed-%d", spec.Seed)
		run, where, err := o.timeToAccuracy(ctx, e, spec, remote)
		if err != nil {
			prog.finish()
			return fmt.Errorf("seed %d: %w", spec.Seed, err)
		}
		res.Cluster = where
		res.Runs = append(res.Runs, run)
		verdict := fmt.Sprintf("reached %.4f in %.1f s at step %d", o.target, run.Seconds, run.Step)
		if !run.Reached {
			verdict = fmt.Sprintf("did not reach %.4f (best %.4f) in %.1f s", o.target, run.BestAccuracy, run.Seconds)
		}
		prog.done(fmt.Sprintf("seed %d: %s, params %s", spec.Seed, verdict, run.ParamsSHA256))
		e.log.Info("time to accuracy run", "seed", spec.Seed, "reached", run.Reached, "seconds", run.Seconds, "params_sha256", run.ParamsSHA256)
	}
	prog.finish()
	res.Summarize()
	if o.plotDir != "" {
		if err := os.MkdirAll(o.plotDir, 0o755); err != nil {
			return err
		}
		path, err := benchmark.PlotAccuracy(res, o.plotDir, o.plotWidth, o.plotHeight)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "plot: %s\n", path)
	}
	switch {
	case o.json:
		return benchmark.WriteAccuracyJSON(e.stdout, res)
	case o.csv:
		return benchmark.WriteAccuracyCSV(e.stdout, res)
	default:
		return benchmark.WriteAccuracyTable(e.stdout, res)
	}
}

// timeToAccuracy runs one seeded job. The clock starts before the
// embedded cluster (and so the data) exists; a real cluster's workers hold
// their data already, and the clock starts at the submission.
func (o *benchAccuracyOptions) timeToAccuracy(ctx context.Context, e *env, spec job.Spec, remote bool) (benchmark.AccuracyRun, string, error) {
	start := time.Now()
	run := benchmark.AccuracyRun{Seed: spec.Seed}
	plan := &scalingPlan{counts: []int{o.workers}, onLocal: !remote}
	target, err := o.cluster.openTarget(ctx, e, plan)
	if err != nil {
		return run, "", err
	}
	defer target.close()
	c := target.client
	// A checkpoint and the evaluation of its step may come in either
	// order; once both are in, the run's figures and the parameters that
	// reached the target are pinned, and the rest of the job would only
	// spend time.
	ckStep := int64(-1)
	_, err = runBenchJob(ctx, c, spec, func(event *dpcnnv1.JobEvent) (bool, error) {
		reachedNow := false
		if ev := event.GetProgress().GetEvaluation(); ev != nil && !run.Reached {
			now := time.Since(start).Seconds()
			run.Curve = append(run.Curve, benchmark.AccuracyPoint{Seconds: now, Step: ev.GlobalStep, Accuracy: ev.TestAccuracy})
			run.BestAccuracy = max(run.BestAccuracy, ev.TestAccuracy)
			run.Seconds, run.Step, run.Epoch = now, ev.GlobalStep, ev.Epoch
			run.Reached = ev.TestAccuracy >= o.target
			reachedNow = run.Reached && ckStep == run.Step
		}
		if ck := event.GetCheckpoint(); ck != nil && (!run.Reached || ck.Step == run.Step) {
			run.ParamsSHA256, ckStep = ck.ParamsSha256, ck.Step
			reachedNow = run.Reached
		}
		if !reachedNow {
			return false, nil
		}
		_, err := c.jobs().CancelJob(ctx, &dpcnnv1.CancelJobRequest{JobId: event.JobId, Reason: "bench accuracy: target reached"})
		return true, err
	})
	if !run.Reached {
		run.Seconds = time.Since(start).Seconds()
	}
	return run, target.name, err
}
