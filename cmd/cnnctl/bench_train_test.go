package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestBenchTrain(t *testing.T) {
	got, err := runCLI(t, "bench", "train", "--net", "lenet", "--batch", "4", "--steps", "2", "--warmup", "1", "--repeat", "3", "--threads", "2")
	if err != nil {
		t.Fatalf("bench train: %v\n%s", err, got)
	}
	for _, want := range []string{"round 3: train ", "lenet net, batch 4, cpu backend, 2 threads: median train "} {
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
		!(res.TrainImagesPerSec > 0) || !(res.InferImagesPerSec > 0) {
		t.Errorf("JSON result %+v", res)
	}
}

func TestBenchTrainRefusesBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--batch", "0"}, "--batch 0"},
		{[]string{"--steps", "0"}, "--steps 0"},
		{[]string{"--threads", "-1"}, "--threads -1"},
		{[]string{"--net", "nonet"}, "nonet"},
		{[]string{"--backend", "abacus"}, "abacus"},
	} {
		got, err := runCLI(t, append([]string{"bench", "train"}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("bench train %v: error %v, want one naming %q\n%s", tc.args, err, tc.want, got)
		}
	}
}
