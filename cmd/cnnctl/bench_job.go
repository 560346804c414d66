package main

import (
	"context"
	"fmt"

	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// runBenchJob submits spec and hands each of its events to onEvent until
// onEvent says it has seen enough or the job ends; a job that ends in any
// state but succeeded is an error. It returns the job's ID.
func runBenchJob(ctx context.Context, c *client, spec job.Spec, onEvent func(*dpcnnv1.JobEvent) (enough bool, err error)) (string, error) {
	var j *dpcnnv1.Job
	err := c.unary(ctx, "submit job", func(ctx context.Context) (err error) {
		j, err = c.jobs().SubmitJob(ctx, &dpcnnv1.SubmitJobRequest{Spec: spec.JSON()})
		return err
	})
	if err != nil {
		return "", err
	}
	return j.Id, c.stream(ctx, "watch "+j.Id, func(ctx context.Context, progressed func()) error {
		stream, err := c.jobs().WatchJob(ctx, &dpcnnv1.WatchJobRequest{JobId: j.Id})
		if err != nil {
			return err
		}
		for {
			ev, err := stream.Recv()
			if err != nil {
				return err
			}
			progressed()
			if enough, err := onEvent(ev); enough || err != nil {
				return err
			}
			if sc := ev.GetStateChange(); sc != nil && sc.NewState.Ended() {
				if sc.NewState != dpcnnv1.JobState_JOB_STATE_SUCCEEDED {
					return fmt.Errorf("job %s %s: %s", j.Id, sc.NewState.Word(), sc.Reason)
				}
				return nil
			}
		}
	})
}
