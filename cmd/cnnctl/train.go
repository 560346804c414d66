package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dpcnn/dpcnn/coordinator"
	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/model"
	"github.com/dpcnn/dpcnn/worker"
)

// jobFlags are the flags that build or override a job spec.
type jobFlags struct {
	file      string
	net       string
	epochs    int
	steps     int64
	batch     int
	micro     int
	optimizer string
	lr        float64
	seed      uint64
	trainLim  int
	testLim   int
	evalEvery int
	aug       dataset.Augment
}

func (f *jobFlags) register(fs *pflag.FlagSet) {
	fs.StringVarP(&f.file, "job", "f", "", "job spec file (YAML or JSON); flags given explicitly override it")
	fs.StringVar(&f.net, "net", job.DefaultNetwork, "network: deep, simple, lenet, or a network spec file (YAML or JSON)")
	fs.IntVar(&f.epochs, "epochs", job.DefaultEpochs, "epochs to train")
	fs.Int64Var(&f.steps, "steps", 0, "stop after this many optimizer steps (0: run every epoch)")
	fs.IntVar(&f.batch, "batch", job.DefaultBatch, "global batch size of one optimizer step")
	fs.IntVar(&f.micro, "micro-batch", 0, "micro-batch size, the unit of work (0: the whole batch)")
	fs.StringVar(&f.optimizer, "optimizer", model.OptAdam, "optimizer: sgd, momentum, adagrad, adam")
	fs.Float64Var(&f.lr, "lr", 0, "learning rate (0: the optimizer's default, 0.001 for Adam)")
	fs.Uint64Var(&f.seed, "seed", 1, "seed of every random draw (init, order, augmentation, dropout)")
	fs.IntVar(&f.trainLim, "train-limit", 0, "train on the first N training images only (0: all 60000)")
	fs.IntVar(&f.testLim, "test-limit", 0, "evaluate on the first N test images only (0: all 10000)")
	fs.IntVar(&f.evalEvery, "eval-every", 1, "evaluate on the test set every N epochs")
	registerAugmentFlags(fs, &f.aug)
}

// spec builds the job: the file if given, then every flag set explicitly.
func (f *jobFlags) spec(fs *pflag.FlagSet) (job.Spec, error) {
	var s job.Spec
	if f.file != "" {
		data, err := os.ReadFile(f.file)
		if err != nil {
			return s, err
		}
		if s, err = job.Parse(data); err != nil {
			return s, fmt.Errorf("%s: %w", f.file, err)
		}
	}
	set := func(name string) bool { return f.file == "" || fs.Changed(name) }
	if set("net") {
		if _, err := model.Builtin(f.net); err == nil {
			s.Network, s.NetworkSpec = f.net, nil
		} else {
			data, rerr := os.ReadFile(f.net)
			if rerr != nil {
				return s, fmt.Errorf("--net %q is neither a built-in network (%v) nor a readable spec file", f.net, model.BuiltinNames())
			}
			ns, err := model.ParseSpec(data)
			if err != nil {
				return s, fmt.Errorf("%s: %w", f.net, err)
			}
			s.Network, s.NetworkSpec = "", &ns
		}
	}
	if set("epochs") {
		s.Epochs = f.epochs
	}
	if set("steps") {
		s.Steps = f.steps
	}
	if set("batch") {
		s.Batch = f.batch
	}
	if set("micro-batch") {
		s.MicroBatch = f.micro
	}
	if set("optimizer") {
		s.Optimizer.Type = f.optimizer
	}
	if set("lr") {
		s.Optimizer.LR = f.lr
	}
	if set("seed") {
		s.Seed = f.seed
	}
	if set("train-limit") {
		s.TrainLimit = f.trainLim
	}
	if set("test-limit") {
		s.TestLimit = f.testLim
	}
	if set("eval-every") {
		s.EvalEvery = f.evalEvery
	}
	mergeAugmentFlags(fs, f.file == "", &s.Augment, f.aug)
	s = s.WithDefaults()
	return s, s.Validate()
}

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
			spec, err := jf.spec(cmd.Flags())
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
