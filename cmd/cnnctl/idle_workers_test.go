package main

import (
	"strings"
	"testing"

	"github.com/dpcnn/dpcnn/job"
)

// TestIdleWorkersNote: the warning appears exactly when workers outnumber
// a step's micro-batches, and names the micro-batch that would use them.
func TestIdleWorkersNote(t *testing.T) {
	for _, c := range []struct {
		batch, micro, workers int
		want                  string // "" for no note
	}{
		{100, 0, 1, ""},
		{100, 0, 2, "1 worker left idle; set --micro-batch 50"},
		{100, 50, 2, ""},
		{100, 25, 4, ""},
		{100, 50, 4, "2 workers left idle; set --micro-batch 25"},
		{200, 100, 8, "6 workers left idle; set --micro-batch 25"},
	} {
		got := idleWorkersNote(job.Spec{Batch: c.batch, MicroBatch: c.micro}, c.workers)
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("batch %d, micro-batch %d, %d workers: note %q, want one containing %q", c.batch, c.micro, c.workers, got, c.want)
		}
	}
}
