package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/dpcnn/dpcnn/coordinator"
	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/model"
	"github.com/dpcnn/dpcnn/worker"
)

func newTrainCmd(e *env) *cobra.Command {
	var jf jobFlags
	var dataDir, backend, out string
	var threads int
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Train a network on MNIST on this machine",
		Long: `Train a network on MNIST on this machine and report test accuracy per epoch.

The run writes checkpoint.ckpt (parameters, optimizer state, step, seed, network)
to --out after every epoch and at the end; evaluate it with 'cnnctl eval' and
export it with 'cnnctl export onnx'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			spec, err := jf.build(cmd.Flags())
			if err != nil {
				return err
			}
			b, err := newBackend(backend, threads)
			if err != nil {
				return err
			}
			dir, err := dataset.Locate(dataDir)
			if err != nil {
				return err
			}
			train, test, err := dataset.LoadMNIST(dir)
			if err != nil {
				return err
			}
			trainer, err := coordinator.NewTrainer(spec, b, train.Len(), test.Len())
			if err != nil {
				return err
			}
			comp, err := worker.NewComputer(trainer.Spec(), b, train, 500)
			if err != nil {
				return err
			}
			if out == "" {
				out = filepath.Join("runs", fmt.Sprintf("%s-seed%d", netName(spec), spec.Seed))
			}
			ckptPath := filepath.Join(out, "checkpoint.ckpt")
			fmt.Fprintf(e.stdout, "training %s on %s backend: %d epochs, %d steps of %d images, seed %d\n",
				netName(spec), b.Name(), spec.Epochs, trainer.TotalSteps(), spec.Batch, spec.Seed)
			progress := newProgressPrinter(e.stdout, trainer.TotalSteps())
			res, err := trainer.Run(cmd.Context(), &coordinator.LocalWorkers{Computer: comp, Test: test},
				progress.report,
				func(c *model.Checkpoint) error { return coordinator.WriteCheckpointFile(ckptPath, c) })
			progress.finish()
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "done: %d steps in %s (%.0f images/s), final loss %.4f, test accuracy %.4f\ncheckpoint: %s\n",
				res.Steps, res.Elapsed.Round(time.Second), res.ImagesPerSec, res.FinalLoss, res.TestAccuracy, ckptPath)
			return nil
		},
	}
	jf.register(cmd.Flags())
	cmd.Flags().StringVar(&dataDir, "data", "", "folder with the MNIST IDX files (default: $DPCNN_MNIST_DIR, else the GoMNIST Go module)")
	cmd.Flags().StringVar(&backend, "backend", "cpu", "compute backend: cpu or reference")
	cmd.Flags().IntVar(&threads, "threads", 0, "CPU threads (0: all cores)")
	cmd.Flags().StringVarP(&out, "out", "o", "", "output folder (default runs/<net>-seed<seed>)")
	return cmd
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
