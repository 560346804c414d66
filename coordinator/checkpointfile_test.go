package coordinator

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/job"
)

func TestCheckpointFileCorrupt(t *testing.T) {
	tr, _ := newLocalRun(t, job.Spec{
		Network: "simple", Epochs: 2, Batch: 50, MicroBatch: 25, TrainLimit: 500, TestLimit: 200, Seed: 3,
		Augment: dataset.Augment{RotateDeg: 10, ShiftPx: 2},
	}, 1)
	path := filepath.Join(t.TempDir(), "checkpoint.ckpt")
	if err := WriteCheckpointFile(path, tr.Checkpoint()); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x40
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadCheckpointFile(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("corrupt checkpoint: err = %v, want an error naming %s", err, path)
	}
	if _, err := ReadCheckpointFile(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("missing checkpoint file read without error")
	}
}
