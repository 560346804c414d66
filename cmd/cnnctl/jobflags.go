package main

import (
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/model"
)

// jobFlags builds a job spec from flags, optionally on top of a job file.
// The flags are bound straight to the fields of spec; with a file, the file
// is read into spec and the flags given explicitly are applied again, so a
// flag always wins over the file and no field is copied by hand.
type jobFlags struct {
	file string
	net  string
	spec job.Spec
}

func (f *jobFlags) register(fs *pflag.FlagSet) {
	s := &f.spec
	fs.StringVarP(&f.file, "job", "f", "", "job spec file (YAML or JSON); flags given explicitly override it")
	fs.StringVar(&f.net, "net", job.DefaultNetwork, "network: deep, simple, lenet, or a network spec file (YAML or JSON)")
	fs.IntVar(&s.Epochs, "epochs", job.DefaultEpochs, "epochs to train")
	fs.Int64Var(&s.Steps, "steps", 0, "stop after this many optimizer steps (0: run every epoch)")
	fs.IntVar(&s.Batch, "batch", job.DefaultBatch, "global batch size of one optimizer step")
	fs.IntVar(&s.MicroBatch, "micro-batch", 0, "micro-batch size, the unit of work (0: the whole batch)")
	fs.StringVar(&s.Optimizer.Type, "optimizer", model.OptAdam, "optimizer: sgd, momentum, adagrad, adam")
	fs.Float64Var(&s.Optimizer.LR, "lr", 0, "learning rate (0: the optimizer's default, 0.001 for Adam); the base of --schedule, onecycle's peak")
	fs.StringVar(&s.Optimizer.Schedule.Type, "schedule", "", "learning-rate schedule: constant, step, exponential, cosine, onecycle (default constant)")
	fs.Float64Var(&s.Optimizer.Schedule.WarmupEpochs, "warmup-epochs", 0, "ramp the learning rate up linearly over this many epochs (constant, step, exponential, cosine)")
	fs.IntVar(&s.Optimizer.Schedule.Every, "lr-every", 0, "step schedule: epochs between decays (default 1)")
	fs.Float64Var(&s.Optimizer.Schedule.Gamma, "lr-gamma", 0, "step and exponential schedules: factor of each decay (default 0.1 and 0.9)")
	fs.Float64Var(&s.Optimizer.Schedule.MinLR, "min-lr", 0, "cosine schedule: the learning rate at the end (default 0)")
	fs.Float64Var(&s.Optimizer.Schedule.PctStart, "pct-start", 0, "onecycle schedule: share of the steps spent rising (default 0.3)")
	fs.Float64Var(&s.Optimizer.WeightDecay, "weight-decay", 0, "decoupled weight decay of the conv and affine weights (AdamW), e.g. 0.0001")
	fs.Float64Var(&s.Optimizer.ClipNorm, "clip-norm", 0, "scale the mean gradient down to this global L2 norm when longer (0: no clipping)")
	fs.Float64Var(&s.Optimizer.EMA.Decay, "ema", 0, "keep a moving average of the parameters with this decay, e.g. 0.999 (0: none)")
	fs.BoolVar(&s.Optimizer.EMA.Evaluate, "eval-ema", false, "evaluate and export the moving average (--ema) in place of the raw parameters")
	fs.Uint64Var(&s.Seed, "seed", 1, "seed of every random draw (init, order, augmentation, dropout)")
	fs.IntVar(&s.TrainLimit, "train-limit", 0, "train on the first N training images only (0: all 60000)")
	fs.IntVar(&s.TestLimit, "test-limit", 0, "evaluate on the first N test images only (0: all 10000)")
	fs.IntVar(&s.EvalEvery, "eval-every", 1, "evaluate on the test set every N epochs")
	fs.IntVar(&s.MinWorkers, "min-workers", 0, "pause training while fewer workers are live (0: 1)")
	fs.IntVar(&s.MaxWorkers, "max-workers", 0, "give work to at most this many live workers, the earliest to join (0: all)")
	fs.StringVar(&s.Deadline, "deadline", "", "how long a worker may keep an assignment before a copy goes to another, e.g. 30s (default: 4x its expected time, at least 2s)")
	fs.Float64Var(&s.Augment.RotateDeg, "rotate", 0, "augment: rotate by up to ± this many degrees")
	fs.Float64Var(&s.Augment.ShiftPx, "shift", 0, "augment: shift by up to ± this many pixels on each axis")
	fs.IntVar(&s.Augment.CropPad, "crop-pad", 0, "augment: pad by this many pixels, then crop a random 28x28 window")
	fs.Float64Var(&s.Augment.Scale, "scale", 0, "augment: zoom by a factor in 1 ± this fraction")
	fs.BoolVar(&s.Augment.Flip, "flip", false, "augment: mirror left-right half the time (off by default: a mirrored digit is often no digit)")
	fs.Float64Var(&s.Augment.Elastic.Alpha, "elastic-alpha", 0, "augment: elastic distortion strength in pixels (Simard et al. used 34)")
	fs.Float64Var(&s.Augment.Elastic.Sigma, "elastic-sigma", 0, "augment: elastic distortion smoothing in pixels (Simard et al. used 4)")
}

// build returns the validated job, with defaults filled in.
func (f *jobFlags) build(fs *pflag.FlagSet) (job.Spec, error) {
	if f.file != "" {
		// The values are read now: the flags' storage is overwritten by the file.
		var given [][2]string
		fs.Visit(func(fl *pflag.Flag) { given = append(given, [2]string{fl.Name, fl.Value.String()}) })
		data, err := os.ReadFile(f.file)
		if err != nil {
			return job.Spec{}, err
		}
		if f.spec, err = job.Decode(data); err != nil {
			return job.Spec{}, fmt.Errorf("%s: %w", f.file, err)
		}
		for _, fl := range given {
			if err := fs.Set(fl[0], fl[1]); err != nil {
				return job.Spec{}, err
			}
		}
	}
	if f.file == "" || fs.Changed("net") {
		if err := f.setNetwork(); err != nil {
			return job.Spec{}, err
		}
	}
	s := f.spec.WithDefaults()
	return s, s.Validate()
}

// setNetwork resolves --net: a built-in name, else a network spec file.
func (f *jobFlags) setNetwork() error {
	if _, err := model.Builtin(f.net); err == nil {
		f.spec.Network, f.spec.NetworkSpec = f.net, nil
		return nil
	}
	data, err := os.ReadFile(f.net)
	if err != nil {
		return fmt.Errorf("--net %q is neither a built-in network %v nor a readable spec file", f.net, model.BuiltinNames())
	}
	ns, err := model.ParseSpec(data)
	if err != nil {
		return fmt.Errorf("%s: %w", f.net, err)
	}
	f.spec.Network, f.spec.NetworkSpec = "", &ns
	return nil
}
