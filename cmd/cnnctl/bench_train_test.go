package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestBenchTrain(t *testing.T) {
	got, err := runCLI(t, "bench", "train", "--net", "lenet", "--batch", "4", "--steps", "2", "--warmup", "1", "--repeat", "3", "--threads", "2")
	if err != nil {
		t.Fatalf("bench train: %v\n%s", err, got)
	}
	for _, want := range []string{"round 3: train ", "lenet net, batch 4, cpu backend, 2 threads: median train ", " ms a pass (p99 "} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}

	got, err = runCLI(t, "bench", "train", "--net", "simple", "--backend", "reference", "--batch", "2", "--steps", "1", "--warmup", "0", "--repeat", "1", "--json")
	if err != nil {
		t.Fatalf("bench train --json: %v\n%s", err, got)
	}
	var res benchTrainResult
	if err := json.Unmarshal([]byte(got), &res); err != nil {
		t.Fatalf("--json output is not one JSON object: %v\n%s", err, got)
	}
	if res.Backend != "reference" || res.Net != "simple" || res.Batch != 2 || len(res.TrainRounds) != 1 ||
		!(res.TrainImagesPerSec > 0) || !(res.InferImagesPerSec > 0) ||
		!(res.InferLatencyMs > 0) || res.InferLatencyP99Ms < res.InferLatencyMs {
		t.Errorf("JSON result %+v", res)
	}
}

// refusal is a command line a command must refuse, and a part of the
// error that names the problem.
type refusal struct {
	args []string
	want string
}

// wantRefusals runs each command line after command and checks it fails
// with an error naming its problem.
func wantRefusals(t *testing.T, command []string, cases []refusal) {
	t.Helper()
	for _, tc := range cases {
		_, stderr, err := runCLISplit(t, append(slices.Clone(command), tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: error %v, want one naming %q\n%s", command, tc.args, err, tc.want, stderr)
		}
	}
}

func TestBenchTrainRefusesBadFlags(t *testing.T) {
	wantRefusals(t, []string{"bench", "train"}, []refusal{
		{[]string{"--batch", "0"}, "--batch 0"},
		{[]string{"--steps", "0"}, "--steps 0"},
		{[]string{"--threads", "-1"}, "--threads -1"},
		{[]string{"--net", "nonet"}, "nonet"},
		{[]string{"--backend", "abacus"}, "abacus"},
	})
}
