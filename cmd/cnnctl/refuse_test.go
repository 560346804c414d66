package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// twoClassNet is the simple network with two classes: a valid spec that
// MNIST's ten labels do not fit. It used to pass every check and panic in
// the loss kernel ("label 6 outside [0, 2)") on the first step.
const twoClassNet = `name: two
input: {height: 28, width: 28, channels: 1}
classes: 2
init: "std:0.01"
layers:
  - {type: conv, filters: 4, size: 5}
  - {type: relu}
  - {type: maxpool, size: 2}
  - {type: affine, units: 2}
  - {type: softmax}
`

// cnnctl train refuses a network that does not fit MNIST before any step,
// on the local cluster and in process, with the rule and both values.
func TestTrainRefusesANetworkThatDoesNotFitTheData(t *testing.T) {
	dir := t.TempDir()
	net := filepath.Join(dir, "two.yaml")
	if err := os.WriteFile(net, []byte(twoClassNet), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, mode := range [][]string{nil, {"--in-process"}} {
		args := append([]string{"train", "--net", net, "--steps", "5", "--batch", "10", "--train-limit", "50", "--test-limit", "20", "--out", dir}, mode...)
		got, err := runCLI(t, args...)
		if err == nil || !strings.Contains(err.Error(), "network has 2 classes, the data set's labels have 10") {
			t.Errorf("train %v: %v\n%s", mode, err, got)
		}
		if _, serr := os.Stat(filepath.Join(dir, "checkpoint.ckpt")); serr == nil {
			t.Errorf("train %v wrote a checkpoint", mode)
		}
	}
}

// cnnctl eval refuses a valid checkpoint whose network takes other images
// than MNIST's, instead of panicking in the first layer.
func TestEvalRefusesACheckpointOfAnotherInputShape(t *testing.T) {
	path := otherShapeCheckpoint(t, t.TempDir())
	got, err := runCLI(t, "eval", path, "--test-limit", "10")
	if err == nil || !strings.Contains(err.Error(), "network input 32x32x1 (height x width x channels) does not match the data set's images, 28x28x1") {
		t.Errorf("eval: %v\n%s", err, got)
	}
	for _, bad := range [][]string{{"--batch", "0"}, {"--test-limit", "-1"}} {
		if _, err := runCLI(t, append([]string{"eval", path}, bad...)...); err == nil || !strings.Contains(err.Error(), bad[0]) {
			t.Errorf("eval %v: %v", bad, err)
		}
	}
}
