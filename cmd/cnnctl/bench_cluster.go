package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/dpcnn/dpcnn/backends"
	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/localcluster"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
	"github.com/dpcnn/dpcnn/train"
	"github.com/dpcnn/dpcnn/worker"
)

func newBenchCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure training speed",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("say what to measure: cnnctl bench train (one worker's step), cluster (the local cluster's overhead), scaling (throughput and step phases over worker counts), simulate (the same at counts no machine here holds) or accuracy (time to a test accuracy)")
		},
	}
	cmd.AddCommand(newBenchClusterCmd(e), newBenchTrainCmd(e), newBenchScalingCmd(e), newBenchSimulateCmd(e), newBenchAccuracyCmd(e))
	return cmd
}

func newBenchClusterCmd(e *env) *cobra.Command {
	var jf jobFlags
	var o trainOptions
	var warmup, repeat int
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Compare the time per step of a local cluster with the in-process trainer",
		Long: `Train the same job (--steps after --warmup steps) in process with one worker
using every thread, then on a local cluster of --workers workers sharing the threads
(embedded etcd, coordinator, workers over gRPC on 127.0.0.1), --repeat times each,
alternating, and print the median time per step of each and the cluster's overhead.
The time of a step is measured by the trainer (from one applied step to the next), so
start-up, evaluation and shut-down are not counted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if warmup < 1 || repeat < 1 || jf.spec.Steps < 1 {
				return fmt.Errorf("--warmup %d, --repeat %d, --steps %d: want each at least 1", warmup, repeat, jf.spec.Steps)
			}
			if o.workers < 1 {
				return fmt.Errorf("--workers %d: want at least 1", o.workers)
			}
			// One more step than timed: the last is followed by an
			// evaluation, which its report may include.
			measured := jf.spec.Steps
			jf.spec.Steps += int64(warmup) + 1
			spec, err := jf.build(cmd.Flags())
			if err != nil {
				return err
			}
			if _, err := newBackend(o.backend, o.threads); err != nil {
				return err
			}
			dir, err := dataset.Locate(o.dataDir)
			if err != nil {
				return err
			}
			o.dataDir = dir
			train, test, err := dataset.LoadMNIST(dir)
			if err != nil {
				return err
			}
			sched, err := spec.Schedule(train.Len())
			if err != nil {
				return err
			}
			if sched.Total < spec.Steps {
				return fmt.Errorf("the job has %d steps in all, fewer than --warmup plus --steps (%d): raise --epochs or --train-limit", sched.Total, spec.Steps)
			}
			fmt.Fprintf(e.stdout, "%s, batch %d, micro-batch %d, %s backend: %d steps after %d warm-up steps, %d rounds\n",
				netName(spec), spec.Batch, spec.MicroBatch, o.backend, measured, warmup, repeat)
			var local, dist []time.Duration
			for r := range repeat {
				d, err := benchInProcess(cmd.Context(), spec, o, train, test, warmup, measured)
				if err != nil {
					return err
				}
				local = append(local, d)
				fmt.Fprintf(e.stdout, "round %d: in process, 1 worker:  %s/step\n", r+1, d.Round(10*time.Microsecond))
				d, err = benchLocalCluster(cmd.Context(), e, spec, o, warmup, measured)
				if err != nil {
					return err
				}
				dist = append(dist, d)
				fmt.Fprintf(e.stdout, "round %d: local cluster, %s: %s/step\n", r+1, workersText(o.workers, threadsOr(o.threads)), d.Round(10*time.Microsecond))
			}
			ml, md := median(local), median(dist)
			fmt.Fprintf(e.stdout, "median: in process %s/step, local cluster %s/step: %+.1f%%\n",
				ml.Round(10*time.Microsecond), md.Round(10*time.Microsecond), 100*(float64(md)/float64(ml)-1))
			return nil
		},
	}
	jf.register(cmd.Flags())
	fs := cmd.Flags()
	// Defaults that give every worker work (a batch of several
	// micro-batches) and keep the final evaluation, which is not timed,
	// short.
	for name, v := range map[string]string{"steps": "20", "micro-batch": "25", "epochs": "1", "test-limit": "100"} {
		f := fs.Lookup(name)
		f.Value.Set(v)
		f.DefValue = v
	}
	fs.StringVar(&o.dataDir, "data", "", "folder with the MNIST IDX files (default: $DPCNN_MNIST_DIR, else the GoMNIST Go module)")
	fs.StringVar(&o.backend, "backend", "cpu", "compute backend: cpu, cuda, auto (CUDA where a device works, else the CPU) or reference")
	fs.IntVar(&o.threads, "threads", 0, "CPU threads in all (0: all cores)")
	fs.IntVar(&o.workers, "workers", 2, "workers of the local cluster")
	fs.IntVar(&warmup, "warmup", 3, "steps run before the timing starts")
	fs.IntVar(&repeat, "repeat", 3, "rounds of both runs")
	return cmd
}

// benchInProcess trains spec with train.Trainer and returns the mean
// time of the measured steps after the first warmup.
func benchInProcess(ctx context.Context, spec job.Spec, o trainOptions, trainSet, test *dataset.Set, warmup int, measured int64) (time.Duration, error) {
	b, err := newBackend(o.backend, o.threads)
	if err != nil {
		return 0, err
	}
	defer backends.Close(b)
	trainer, err := train.NewTrainer(spec, b, trainSet.Len(), test.Len(), time.Now)
	if err != nil {
		return 0, err
	}
	comp, err := worker.NewComputer(trainer.Spec(), b, trainSet, 500)
	if err != nil {
		return 0, err
	}
	defer comp.Close()
	var at stepClock
	_, err = trainer.Run(ctx, &train.LocalWorkers{Computer: comp, Test: test},
		func(p train.Progress) { at.record(p.GlobalStep, p.Elapsed) }, nil)
	if err != nil {
		return 0, err
	}
	return at.perStep(int64(warmup), int64(warmup)+measured)
}

// benchLocalCluster trains spec on a local cluster and returns the mean
// time of the measured steps after the first warmup, as the coordinator
// timed them.
func benchLocalCluster(ctx context.Context, e *env, spec job.Spec, o trainOptions, warmup int, measured int64) (time.Duration, error) {
	dir, err := localcluster.TempDir()
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	lc, err := localcluster.Start(ctx, localcluster.Config{
		Dir: dir, Workers: o.workers, Threads: o.threads, Backend: o.backend, MNISTDir: o.dataDir, Logger: e.log, Version: localVersion,
	})
	if err != nil {
		return 0, err
	}
	defer lc.Stop()
	c, err := dialLocal(lc, 30*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	var at stepClock
	_, err = runBenchJob(ctx, c, spec, func(ev *dpcnnv1.JobEvent) (bool, error) {
		if p := ev.GetProgress(); p != nil {
			at.record(p.GlobalStep, time.Duration(p.ElapsedNanos))
		}
		return false, nil
	})
	if err != nil {
		return 0, err
	}
	return at.perStep(int64(warmup), int64(warmup)+measured)
}

// stepClock remembers when each step was applied, as time since the start.
type stepClock map[int64]time.Duration

func (s *stepClock) record(step int64, elapsed time.Duration) {
	if *s == nil {
		*s = stepClock{}
	}
	(*s)[step] = elapsed
}

// perStep is the mean time of steps from+1 … to.
func (s stepClock) perStep(from, to int64) (time.Duration, error) {
	a, okA := s[from]
	b, okB := s[to]
	if !okA || !okB || to <= from {
		return 0, fmt.Errorf("bench: no timing of steps %d and %d", from, to)
	}
	return (b - a) / time.Duration(to-from), nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func threadsOr(threads int) int {
	if threads > 0 {
		return threads
	}
	return runtime.NumCPU()
}
