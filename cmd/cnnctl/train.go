package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/dpcnn/dpcnn/backends"
	"github.com/dpcnn/dpcnn/coordinator"
	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/model"
	"github.com/dpcnn/dpcnn/train"
	"github.com/dpcnn/dpcnn/worker"
)

// trainOptions are the flags of `cnnctl train` other than the job's.
type trainOptions struct {
	dataDir, backend, out string
	metricsListen         string // of the local cluster's coordinator; "" for none
	threads, workers      int
	inProcess             bool
}

func newTrainCmd(e *env) *cobra.Command {
	var jf jobFlags
	var o trainOptions
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Train a network on MNIST on this machine",
		Long: `Train a network on MNIST on this machine and report test accuracy per epoch.

By default the run is a whole cluster in this process: an embedded etcd, a
coordinator and --workers workers talking gRPC over 127.0.0.1, the same code as
the daemons. The job is submitted and watched like 'cnnctl submit job --wait'.
With --in-process one worker computes in a plain loop with no network.

The run writes checkpoint.ckpt (parameters, optimizer state, step, seed, network)
to --out at the end (--in-process: after every epoch too); evaluate it with
'cnnctl eval' and export it with 'cnnctl export onnx'. Beside it, history.jsonl
gets a line a step as it goes (loss, training accuracy, test accuracy where
evaluated): draw it with 'cnnctl viz curves --history'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			spec, err := jf.build(cmd.Flags())
			if err != nil {
				return err
			}
			if _, err := newBackend(o.backend, o.threads); err != nil {
				return err
			}
			if o.workers < 1 {
				return fmt.Errorf("--workers %d: want at least 1", o.workers)
			}
			if o.threads < 0 {
				return fmt.Errorf("--threads %d: must not be negative", o.threads)
			}
			if o.out == "" {
				o.out = filepath.Join("runs", fmt.Sprintf("%s-seed%d", netName(spec), spec.Seed))
			}
			if o.inProcess {
				if o.workers != 1 {
					return fmt.Errorf("--in-process runs one worker; drop --workers %d", o.workers)
				}
				return trainInProcess(cmd.Context(), e, spec, o)
			}
			return trainLocalCluster(cmd.Context(), e, spec, o)
		},
	}
	jf.register(cmd.Flags())
	cmd.Flags().StringVar(&o.dataDir, "data", "", "folder with the MNIST IDX files (default: $DPCNN_MNIST_DIR, else the GoMNIST Go module)")
	cmd.Flags().StringVar(&o.backend, "backend", "cpu", "compute backend: cpu, cuda, auto (CUDA where a device works, else the CPU) or reference")
	cmd.Flags().IntVar(&o.threads, "threads", 0, "CPU threads in all, shared among the workers (0: all cores)")
	cmd.Flags().IntVar(&o.workers, "workers", 1, "workers of the local cluster")
	cmd.Flags().BoolVar(&o.inProcess, "in-process", false, "train in a plain loop in this process: no etcd, no gRPC (the baseline of 'cnnctl bench cluster')")
	cmd.Flags().StringVarP(&o.out, "out", "o", "", "output folder (default runs/<net>-seed<seed>)")
	cmd.Flags().StringVar(&o.metricsListen, "metrics-listen", "", "serve the local cluster's Prometheus metrics on /metrics at this address (host:port); empty: none")
	return cmd
}

// trainInProcess trains with train.Trainer and one LocalWorkers.
func trainInProcess(ctx context.Context, e *env, spec job.Spec, o trainOptions) error {
	b, err := newBackend(o.backend, o.threads)
	if err != nil {
		return err
	}
	defer backends.Close(b)
	dir, err := dataset.Locate(o.dataDir)
	if err != nil {
		return err
	}
	trainSet, test, err := dataset.LoadMNIST(dir)
	if err != nil {
		return err
	}
	if err := spec.CheckData(job.DataOf(trainSet, test)); err != nil {
		return err
	}
	trainer, err := train.NewTrainer(spec, b, trainSet.Len(), test.Len(), time.Now)
	if err != nil {
		return err
	}
	comp, err := worker.NewComputer(trainer.Spec(), b, trainSet, 500)
	if err != nil {
		return err
	}
	defer comp.Close()
	ckptPath := filepath.Join(o.out, "checkpoint.ckpt")
	fmt.Fprintf(e.stdout, "training %s on %s backend: %d epochs, %d steps of %d images, seed %d\n",
		netName(spec), b.Name(), spec.Epochs, trainer.TotalSteps(), spec.Batch, spec.Seed)
	progress := newProgressPrinter(e.stdout, trainer.TotalSteps(), spec.TrainAccuracyConditions())
	hist, err := createHistory(filepath.Join(o.out, historyFile), spec.TrainAccuracyConditions())
	if err != nil {
		return err
	}
	defer hist.close()
	res, err := trainer.Run(ctx, &train.LocalWorkers{Computer: comp, Test: test},
		func(p train.Progress) {
			hist.addTrain(p)
			progress.report(p)
		},
		func(c *model.Checkpoint) error { return coordinator.WriteCheckpointFile(ckptPath, c) })
	progress.finish()
	if err != nil {
		return err
	}
	if err := hist.close(); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "done: %d steps in %s (%.0f images/s), final loss %.4f, test accuracy %.4f\ncheckpoint: %s\nhistory: %s\n",
		res.Steps, res.Elapsed.Round(time.Second), res.ImagesPerSec, res.FinalLoss, res.TestAccuracy, ckptPath, hist.path)
	return nil
}

func netName(s job.Spec) string {
	if s.NetworkSpec != nil {
		if s.NetworkSpec.Name != "" {
			return s.NetworkSpec.Name
		}
		return "custom"
	}
	return s.Network
}
