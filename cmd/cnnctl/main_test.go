package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, &stdout, &stderr)
	return stdout.String() + stderr.String(), err
}

func TestTrainEvalExport(t *testing.T) {
	out := t.TempDir()
	got, err := runCLI(t, "train", "--net", "simple", "--epochs", "1", "--batch", "50", "--micro-batch", "25",
		"--train-limit", "200", "--test-limit", "300", "--rotate", "5", "--out", out)
	if err != nil {
		t.Fatalf("train: %v\n%s", err, got)
	}
	// The rotation makes the training accuracy's images other than the
	// test set's, and its label says so.
	for _, want := range []string{"train acc 0.", " (augmented) ", "epoch 1: test accuracy", "done: 4 steps", "checkpoint: "} {
		if !strings.Contains(got, want) {
			t.Errorf("train output lacks %q:\n%s", want, got)
		}
	}
	ckpt := filepath.Join(out, "checkpoint.ckpt")
	// The checkpoint evaluates to the accuracy the run reported.
	var reported string
	for _, line := range strings.Split(got, "\n") {
		if i := strings.Index(line, "test accuracy "); i >= 0 && strings.HasPrefix(line, "done:") {
			reported = line[i+len("test accuracy "):]
		}
	}
	ev, err := runCLI(t, "eval", ckpt, "--test-limit", "300")
	if err != nil {
		t.Fatalf("eval: %v\n%s", err, ev)
	}
	if reported == "" || !strings.Contains(ev, "test accuracy "+reported) {
		t.Errorf("eval says %q, training reported %q", ev, reported)
	}
	var res evalResult
	if ev, err := runCLI(t, "eval", ckpt, "--test-limit", "300", "-o", "json"); err != nil {
		t.Fatalf("eval -o json: %v\n%s", err, ev)
	} else if err := json.Unmarshal([]byte(ev), &res); err != nil || res.Samples != 300 || res.Step != 4 ||
		fmt.Sprintf("%.4f", res.TestAccuracy) != reported || res.Correct != int(res.TestAccuracy*300+0.5) || len(res.ParamsSHA256) != 64 {
		t.Errorf("eval -o json printed %s (%v), want 300 samples, step 4 and the accuracy %s", ev, err, reported)
	}
	onnxPath := filepath.Join(out, "model.onnx")
	if ex, err := runCLI(t, "export", "onnx", ckpt, "--out", onnxPath); err != nil {
		t.Fatalf("export: %v\n%s", err, ex)
	}
	if st, err := os.Stat(onnxPath); err != nil || st.Size() < 1000 {
		t.Fatalf("exported model: %v, %v", st, err)
	}
}

// With --eval-ema the run evaluates the moving average of its parameters,
// and cnnctl eval of its checkpoint scores the same model: the average.
func TestTrainEvalEMA(t *testing.T) {
	for _, mode := range []string{"--in-process", "--workers=1"} {
		out := t.TempDir()
		got, err := runCLI(t, "train", mode, "--net", "simple", "--epochs", "1", "--batch", "50", "--train-limit", "200",
			"--test-limit", "300", "--lr", "0.01", "--ema", "0.5", "--eval-ema", "--out", out)
		if err != nil {
			t.Fatalf("train %s: %v\n%s", mode, err, got)
		}
		var reported string
		for _, line := range strings.Split(got, "\n") {
			if i := strings.Index(line, "test accuracy "); i >= 0 && strings.HasPrefix(line, "done:") {
				reported = line[i+len("test accuracy "):]
			}
		}
		ev, err := runCLI(t, "eval", filepath.Join(out, "checkpoint.ckpt"), "--test-limit", "300")
		if err != nil {
			t.Fatalf("eval: %v\n%s", err, ev)
		}
		if reported == "" || !strings.Contains(ev, "test accuracy "+reported) {
			t.Errorf("%s: eval says %q, training reported %q", mode, ev, reported)
		}
	}
	if _, err := runCLI(t, "train", "--eval-ema", "--steps", "1", "--train-limit", "100", "--test-limit", "10", "--out", t.TempDir()); err == nil || !strings.Contains(err.Error(), "no average is kept without a decay") {
		t.Errorf("--eval-ema without --ema: %v", err)
	}
}

func TestTrainJobFileAndOverrides(t *testing.T) {
	dir := t.TempDir()
	jobFile := filepath.Join(dir, "job.yaml")
	os.WriteFile(jobFile, []byte("network: lenet\nepochs: 5\nbatch: 40\ntrainLimit: 80\ntestLimit: 50\nseed: 9\n"), 0o644)
	got, err := runCLI(t, "train", "-f", jobFile, "--epochs", "1", "--out", dir)
	if err != nil {
		t.Fatalf("train: %v\n%s", err, got)
	}
	if !strings.Contains(got, "training lenet") || !strings.Contains(got, "1 epochs, 2 steps of 40 images, seed 9") {
		t.Fatalf("job file or override not applied:\n%s", got)
	}
	// A flag mends a rule the file breaks: the spec is validated after the
	// overrides.
	os.WriteFile(jobFile, []byte("network: simple\nepochs: 1\nbatch: 40\nmicroBatch: 30\ntrainLimit: 80\ntestLimit: 50\n"), 0o644)
	got, err = runCLI(t, "train", "-f", jobFile, "--micro-batch", "20", "--net", "lenet", "--out", dir)
	if err != nil || !strings.Contains(got, "training lenet") {
		t.Fatalf("override of microBatch and net: %v\n%s", err, got)
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("network: deep\nbatch: 100\nmicroBatch: 33\n"), 0o644)
	garbage := filepath.Join(dir, "garbage.ckpt")
	os.WriteFile(garbage, []byte("not a checkpoint at all"), 0o644)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"train", "--net", "resnet"}, `"resnet" is neither a built-in network`},
		{[]string{"train", "-f", bad}, "not a multiple of microBatch 33"},
		{[]string{"train", "-f", filepath.Join(dir, "missing.yaml")}, "no such file"},
		{[]string{"train", "--batch", "-5"}, "batch -5"},
		{[]string{"train", "--backend", "tpu", "--steps", "1"}, `unknown backend "tpu"`},
		{[]string{"train", "--rotate", "-3"}, "rotate"},
		{[]string{"train", "--schedule", "linear"}, `schedule: unknown type "linear"`},
		{[]string{"train", "--schedule", "cosine", "--lr-gamma", "0.5"}, "gamma applies to step and exponential only"},
		{[]string{"train", "--epochs", "2", "--warmup-epochs", "2"}, "warmupEpochs 2: must be shorter than the job's 2 epochs"},
		{[]string{"train", "--weight-decay", "1.5"}, "weightDecay 1.5"},
		{[]string{"train", "--data", dir, "--steps", "1"}, "MNIST"},
		{[]string{"eval", garbage}, garbage},
		{[]string{"eval"}, "accepts 1 arg"},
		{[]string{"export", "onnx", garbage, "--out", filepath.Join(dir, "x.onnx")}, garbage},
		{[]string{"frobnicate"}, "unknown command"},
	}
	for _, c := range cases {
		args := c.args
		if args[0] == "train" {
			// Should a case be accepted by mistake, it trains briefly.
			args = append(args, "--train-limit", "100", "--test-limit", "10", "--out", dir)
			if !strings.Contains(strings.Join(args, " "), "--steps") {
				args = append(args, "--steps", "1")
			}
		}
		got, err := runCLI(t, args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("cnnctl %s: err = %v, want one containing %q (output %q)", strings.Join(c.args, " "), err, c.want, got)
		}
	}
}
