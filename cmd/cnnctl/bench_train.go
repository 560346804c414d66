package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"gonum.org/v1/gonum/stat"

	"github.com/dpcnn/dpcnn/backends"
	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/model"
)

// benchTrainOptions are the flags of cnnctl bench train.
type benchTrainOptions struct {
	backend string
	net     string
	batch   int
	threads int
	steps   int
	warmup  int
	repeat  int
	json    bool
}

// benchTrainResult is what cnnctl bench train prints with --json: the
// medians over the rounds, and every round, so that noise shows.
type benchTrainResult struct {
	Backend string `json:"backend"`
	// Kernels names the CPU backend's kernel path (avx512, avx2 or go:
	// the same bits, different speeds); empty on other backends.
	Kernels string `json:"kernels,omitempty"`
	Net     string `json:"net"`
	Batch   int    `json:"batch"`
	Threads int    `json:"threads"`
	Steps   int    `json:"steps"`
	Repeat  int    `json:"repeat"`
	// TrainImagesPerSec is the median over rounds of batch·steps divided
	// by the wall time of a round of training steps (forward, loss,
	// backward, Adam update).
	TrainImagesPerSec float64 `json:"trainImagesPerSec"`
	// InferImagesPerSec is the same for test-mode forward passes.
	InferImagesPerSec float64 `json:"inferImagesPerSec"`
	// TrainCPUPerWall is the median ratio of the process's CPU time to
	// wall time while training: near the thread count when the cores were
	// free, lower when other work took them.
	TrainCPUPerWall float64   `json:"trainCpuPerWall"`
	TrainRounds     []float64 `json:"trainRounds"`
	InferRounds     []float64 `json:"inferRounds"`
	// InferLatencyMs and InferLatencyP99Ms are the median and the 99th
	// percentile over every timed test-mode forward pass of all rounds of
	// the time one pass of --batch images took: at --batch 1, how long a
	// served model takes to answer one image.
	InferLatencyMs    float64 `json:"inferLatencyMs"`
	InferLatencyP99Ms float64 `json:"inferLatencyP99Ms"`
}

func newBenchTrainCmd(e *env) *cobra.Command {
	var o benchTrainOptions
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Measure training and inference throughput of one worker, without a cluster",
		Long: `Build the network on the backend and time --steps training steps (forward, softmax
cross-entropy, backward, Adam update) at --batch after --warmup untimed steps, then as
many test-mode forward passes, --repeat rounds each, and print the median images/s of
each, and the median and 99th percentile of one forward pass's latency (at --batch 1:
the time to answer one image). The inputs are fixed pseudo-random images, so nothing is read from disk and the
figure is the compute alone. Plain lines by default, one JSON object with --json.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := benchTrain(o, func(round int, train, infer, cpuPerWall float64) {
				if !o.json {
					fmt.Fprintf(e.stdout, "round %d: train %.0f images/s (CPU/wall %.2f), inference %.0f images/s\n", round, train, cpuPerWall, infer)
				}
			})
			if err != nil {
				return err
			}
			if o.json {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			kernels := ""
			if res.Kernels != "" {
				kernels = ", " + res.Kernels + " kernels"
			}
			fmt.Fprintf(e.stdout, "%s net, batch %d, %s backend, %d threads: median train %.0f images/s, inference %.0f images/s, %.3f ms a pass (p99 %.3f ms) (%d rounds of %d steps%s)\n",
				res.Net, res.Batch, res.Backend, res.Threads, res.TrainImagesPerSec, res.InferImagesPerSec, res.InferLatencyMs, res.InferLatencyP99Ms, res.Repeat, res.Steps, kernels)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.backend, "backend", "cpu", "compute backend: cpu, cuda, auto (CUDA where a device works, else the CPU) or reference")
	fs.StringVar(&o.net, "net", "deep", "built-in network: "+fmt.Sprint(model.BuiltinNames()))
	fs.IntVar(&o.batch, "batch", 100, "images per step")
	fs.IntVar(&o.threads, "threads", 0, "CPU threads (0: GOMAXPROCS)")
	fs.IntVar(&o.steps, "steps", 30, "timed steps per round")
	fs.IntVar(&o.warmup, "warmup", 3, "untimed steps before the first round")
	fs.IntVar(&o.repeat, "repeat", 5, "rounds; the medians are reported")
	fs.BoolVar(&o.json, "json", false, "print one JSON object instead of lines")
	return cmd
}

// benchTrain runs the measurement; report is called after every round.
func benchTrain(o benchTrainOptions, report func(round int, train, infer, cpuPerWall float64)) (benchTrainResult, error) {
	switch {
	case o.batch < 1:
		return benchTrainResult{}, fmt.Errorf("--batch %d: want at least 1", o.batch)
	case o.steps < 1 || o.repeat < 1 || o.warmup < 0:
		return benchTrainResult{}, fmt.Errorf("--steps %d, --repeat %d, --warmup %d: want steps and repeat at least 1, warmup at least 0", o.steps, o.repeat, o.warmup)
	case o.threads < 0:
		return benchTrainResult{}, fmt.Errorf("--threads %d: want 0 (all) or more", o.threads)
	}
	spec, err := model.Builtin(o.net)
	if err != nil {
		return benchTrainResult{}, err
	}
	b, err := newBackend(o.backend, o.threads)
	if err != nil {
		return benchTrainResult{}, err
	}
	defer backends.Close(b)
	threads, kernelPath := 1, ""
	if c, ok := b.(*kernels.CPU); ok {
		threads, kernelPath = c.Threads(), kernels.CPUKernelPath()
	}
	net, err := model.New(spec, b, o.batch)
	if err != nil {
		return benchTrainResult{}, err
	}
	net.InitParams(1)
	opt, err := model.NewOptimizer(model.OptimizerSpec{Type: "adam"}, net.Params(), model.Horizon{})
	if err != nil {
		return benchTrainResult{}, err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, o.batch*net.InputSize())
	for i := range x {
		x[i] = rng.Float32()
	}
	labels := make([]int32, o.batch)
	samples := make([]int64, o.batch)
	for i := range labels {
		labels[i], samples[i] = int32(rng.IntN(net.Classes())), int64(i)
	}
	step := uint64(0)
	train := func() error {
		if _, _, err := net.Loss(x, labels, samples, model.RunContext{Train: true, Seed: 1, Step: step}, 1/float32(o.batch)); err != nil {
			return fmt.Errorf("bench train: step %d: %w", step+1, err)
		}
		if err := net.Backward(); err != nil {
			return fmt.Errorf("bench train: step %d: %w", step+1, err)
		}
		opt.Update(b, net.Params())
		step++
		return nil
	}
	infer := func() error {
		if _, err := net.Forward(x, o.batch, nil, model.RunContext{}); err != nil {
			return fmt.Errorf("bench train: inference: %w", err)
		}
		return nil
	}
	for range o.warmup {
		if err := errors.Join(train(), infer()); err != nil {
			return benchTrainResult{}, err
		}
	}

	res := benchTrainResult{Backend: b.Name(), Kernels: kernelPath, Net: o.net, Batch: o.batch, Threads: threads, Steps: o.steps, Repeat: o.repeat}
	var ratios, latencies []float64
	images := float64(o.batch * o.steps)
	for r := range o.repeat {
		cpu0, wall0 := processCPU(), time.Now()
		for range o.steps {
			if err := train(); err != nil {
				return benchTrainResult{}, err
			}
		}
		wall := time.Since(wall0)
		cpuPerWall := (processCPU() - cpu0).Seconds() / wall.Seconds()
		trainRate := images / wall.Seconds()

		wall0 = time.Now()
		for range o.steps {
			pass0 := time.Now()
			if err := infer(); err != nil {
				return benchTrainResult{}, err
			}
			latencies = append(latencies, float64(time.Since(pass0))/float64(time.Millisecond))
		}
		inferRate := images / time.Since(wall0).Seconds()
		res.TrainRounds = append(res.TrainRounds, trainRate)
		res.InferRounds = append(res.InferRounds, inferRate)
		ratios = append(ratios, cpuPerWall)
		report(r+1, trainRate, inferRate, cpuPerWall)
	}
	res.TrainImagesPerSec = medianFloat(res.TrainRounds)
	res.InferImagesPerSec = medianFloat(res.InferRounds)
	res.TrainCPUPerWall = medianFloat(ratios)
	slices.Sort(latencies)
	res.InferLatencyMs = stat.Quantile(0.5, stat.Empirical, latencies, nil)
	res.InferLatencyP99Ms = stat.Quantile(0.99, stat.Empirical, latencies, nil)
	runtime.KeepAlive(net)
	return res, nil
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// medianFloat is the median of s (the mean of the middle two for an even
// count).
func medianFloat(s []float64) float64 {
	s = slices.Sorted(slices.Values(s))
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
