package main

import (
	"fmt"

	"github.com/dpcnn/dpcnn/job"
)

// idleWorkersNote warns when an embedded cluster has more workers than a
// step has micro-batches. The micro-batch is the unit of work and part of
// the job's spec (it fixes the order of the gradient sums, and so the
// bits), so the coordinator cannot cut a step finer by itself: with the
// default microBatch (the whole batch) a second worker only waits, and on
// two cores one single-threaded worker then computes every step. Empty
// when every worker gets work.
func idleWorkersNote(spec job.Spec, workers int) string {
	s := spec.WithDefaults()
	if s.Batch < 1 || s.MicroBatch < 1 {
		return ""
	}
	pieces := s.Batch / s.MicroBatch
	if pieces >= workers {
		return ""
	}
	return fmt.Sprintf("note: %d workers but a step of %d images in micro-batches of %d is %s: %s idle; set --micro-batch %d (or fewer workers) to use them all",
		workers, s.Batch, s.MicroBatch, plural(pieces, "piece")+" of work", plural(workers-pieces, "worker")+" left", s.Batch/workers)
}
