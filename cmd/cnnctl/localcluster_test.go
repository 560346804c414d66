package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dpcnn/dpcnn/localcluster"
	"github.com/dpcnn/dpcnn/secure"
)

// The client commands against a real coordinator, etcd and two workers,
// all in this process.
func TestClientAgainstLocalCluster(t *testing.T) {
	lc, err := localcluster.Start(context.Background(), localcluster.Config{Dir: t.TempDir(), Workers: 2, Threads: 2, Backend: "cpu", Version: localVersion})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lc.Stop)
	addr := lc.Coordinator
	// The local cluster makes its own CA and token; cnnctl needs both.
	creds := []string{"--coordinator", addr, "--tls-ca", filepath.Join(lc.TLSDir, secure.FileCA), "--token-file", filepath.Join(lc.TLSDir, secure.FileToken)}
	cli := func(args ...string) (string, error) { return runCLI(t, append(args, creds...)...) }
	ok := func(args ...string) string {
		t.Helper()
		out, err := cli(args...)
		if err != nil {
			t.Fatalf("cnnctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	small := []string{"--net", "simple", "--batch", "50", "--micro-batch", "25", "--train-limit", "100", "--test-limit", "100"}

	out := ok(append([]string{"submit", "job", "--id", "small", "--epochs", "1", "--wait", "--name", "tiny"}, small...)...)
	for _, w := range []string{"job small submitted", "epoch 1: test accuracy", "state running -> succeeded"} {
		if !strings.Contains(out, w) {
			t.Errorf("submit --wait: output lacks %q:\n%s", w, out)
		}
	}
	// Submitting the same id and spec again is a safe retry.
	if out := ok(append([]string{"submit", "job", "--id", "small", "--epochs", "1", "--name", "tiny"}, small...)...); !strings.Contains(out, "job small submitted (succeeded)") {
		t.Errorf("retried submission: %s", out)
	}
	if _, err := cli(append([]string{"submit", "job", "--id", "small", "--epochs", "2"}, small...)...); err == nil {
		t.Errorf("the same id with another spec was accepted")
	}

	ckpt := filepath.Join(t.TempDir(), "small.ckpt")
	ok("download", "small", "--checkpoint", "-o", ckpt)
	ev, err := runCLI(t, "eval", ckpt, "--test-limit", "100")
	if err != nil {
		t.Fatal(err)
	}
	status := ok("status", "small")
	acc := regexp.MustCompile(`test accuracy:\s+([0-9.]+ \(\d+/100\))`).FindStringSubmatch(status)
	if acc == nil || !strings.Contains(ev, "test accuracy "+acc[1]) {
		t.Errorf("status says\n%s\neval says %s", status, ev)
	}
	onnx := filepath.Join(t.TempDir(), "m.onnx")
	ok("download", "small", "--model", "--logits", "-o", onnx)
	if st, err := os.Stat(onnx); err != nil || st.Size() < 1000 {
		t.Errorf("model: %v, %v", st, err)
	}

	// A long job, cancelled while it runs.
	ok(append([]string{"submit", "job", "--id", "long", "--epochs", "50"}, small...)...)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(ok("status", "long"), "running") {
		if time.Now().After(deadline) {
			t.Fatal("the long job did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if out := ok("cancel", "long", "--reason", "enough"); !strings.Contains(out, "job long: cancelled") {
		t.Errorf("cancel: %s", out)
	}
	if _, err := cli("watch", "long"); err == nil || !strings.Contains(err.Error(), "job long was cancelled: enough") {
		t.Errorf("watch of a cancelled job: %v", err)
	}

	list := ok("list")
	if !regexp.MustCompile(`long\s+-\s+cancelled`).MatchString(list) || !regexp.MustCompile(`small\s+tiny\s+succeeded\s+2/2`).MatchString(list) {
		t.Errorf("list:\n%s", list)
	}
	if out := ok("list", "--state", "succeeded"); strings.Contains(out, "long") || !strings.Contains(out, "small") {
		t.Errorf("list --state succeeded:\n%s", out)
	}
	if out := ok("workers"); !strings.Contains(out, "local-1") || !strings.Contains(out, "local-2") {
		t.Errorf("workers:\n%s", out)
	}
	// The job may wait for the workers to join before it runs.
	if out := ok("logs", "small"); !regexp.MustCompile(`state (pending|waiting) -> running`).MatchString(out) || !strings.Contains(out, "checkpoint at step 2") {
		t.Errorf("logs:\n%s", out)
	}

	// Without the token, or without TLS, nothing is served.
	if _, err := runCLI(t, "list", "--coordinator", addr, "--tls-ca", filepath.Join(lc.TLSDir, secure.FileCA)); err == nil || !strings.Contains(err.Error(), "refused our credentials") {
		t.Errorf("list without the token: %v", err)
	}
	if _, err := runCLI(t, "list", "--coordinator", addr, "--insecure", "--timeout", "2s"); err == nil {
		t.Errorf("list in plaintext was served")
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"status", "nosuchjob"}, "nosuchjob"},
		{[]string{"download", "nosuchjob", "--checkpoint", "-o", filepath.Join(t.TempDir(), "x")}, "nosuchjob"},
		{[]string{"submit", "job", "--id", "Bad_Id", "--net", "simple"}, "refused"},
	} {
		if out, err := cli(c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("cnnctl %s: err = %v, want one containing %q (output %q)", strings.Join(c.args, " "), err, c.want, out)
		}
	}
}

// Two local workers train exactly what the in-process loop trains.
func TestTrainLocalClusterMatchesInProcess(t *testing.T) {
	args := []string{"train", "--net", "simple", "--epochs", "1", "--batch", "50", "--micro-batch", "10", "--train-limit", "150", "--test-limit", "50"}
	dist, local := t.TempDir(), t.TempDir()
	out, err := runCLI(t, append(args, "--workers", "2", "--threads", "2", "--out", dist)...)
	if err != nil || !strings.Contains(out, "2 local workers of 1 thread") || !strings.Contains(out, "done: 3 steps") {
		t.Fatalf("train --workers 2: %v\n%s", err, out)
	}
	if out, err := runCLI(t, append(args, "--in-process", "--out", local)...); err != nil {
		t.Fatalf("train --in-process: %v\n%s", err, out)
	}
	a, errA := os.ReadFile(filepath.Join(dist, "checkpoint.ckpt"))
	b, errB := os.ReadFile(filepath.Join(local, "checkpoint.ckpt"))
	if errA != nil || errB != nil || string(a) != string(b) {
		t.Errorf("checkpoints differ: %d bytes (%v) from the cluster, %d bytes (%v) in process", len(a), errA, len(b), errB)
	}
}

func TestBenchCluster(t *testing.T) {
	out, err := runCLI(t, "bench", "cluster", "--net", "simple", "--batch", "50", "--micro-batch", "25",
		"--train-limit", "300", "--steps", "2", "--warmup", "1", "--repeat", "1", "--threads", "2")
	if err != nil {
		t.Fatalf("bench cluster: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`median: in process \S+/step, local cluster \S+/step: [+-][0-9.]+%`).MatchString(out) {
		t.Errorf("bench cluster output:\n%s", out)
	}
}

func TestLocalClusterBadInput(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"train", "--workers", "0"}, "--workers 0"},
		{[]string{"train", "--in-process", "--workers", "2"}, "--in-process runs one worker"},
		{[]string{"train", "--threads", "-1"}, "--threads -1"},
		{[]string{"train", "--workers", "2", "--data", dir}, "MNIST"},
		{[]string{"etcd"}, "--data-dir is required"},
		{[]string{"bench"}, "say what to measure"},
		{[]string{"bench", "cluster", "--repeat", "0"}, "--repeat 0"},
		{[]string{"bench", "cluster", "--net", "simple", "--train-limit", "100", "--batch", "50", "--steps", "5"}, "fewer than --warmup plus --steps"},
	} {
		args := c.args
		if args[0] == "train" {
			args = append(args, "--steps", "1", "--train-limit", "100", "--test-limit", "10", "--out", dir)
		}
		got, err := runCLI(t, args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("cnnctl %s: err = %v, want one containing %q (output %q)", strings.Join(c.args, " "), err, c.want, got)
		}
	}
}
