package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
	"github.com/dpcnn/dpcnn/viz"
)

func newVizCurvesCmd(e *env) *cobra.Command {
	var cf clientFlags
	var history, jobID, out string
	var width, height int
	cmd := &cobra.Command{
		Use:   "curves (--history FILE | --job JOB)",
		Short: "Loss and accuracy against step and wall time, from a run's history or a job",
		Long: `Draw four panels: the loss, and the training and test accuracy, against the
step and against the wall time in seconds. The training accuracy is each step's
own forward pass, its legend says under what (dropout on, augmented); the test
accuracy is a dot an evaluation.

--history reads the history.jsonl that 'cnnctl train' writes beside its checkpoint,
a line a step (also while it is still training). --job asks a coordinator for a
job's retained events, running or ended: those are the progress reports that
came with an evaluation (plus the job's latest report), so its curves have a
point an evaluation, not a step.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (history == "") == (jobID == "") {
				return errors.New("say where the curves come from: --history FILE (cnnctl train's history.jsonl) or --job JOB, one of them")
			}
			if width < viz.MinCurvesWidth || height < viz.MinCurvesHeight {
				return fmt.Errorf("--width %d --height %d: want at least %d×%d pixels", width, height, viz.MinCurvesWidth, viz.MinCurvesHeight)
			}
			var h viz.History
			var err error
			if history != "" {
				h, err = readHistory(history)
			} else {
				h, err = jobHistory(cmd.Context(), &cf, jobID)
			}
			if err != nil {
				return err
			}
			// Drawn in memory first, so a failure leaves no half a file.
			var b bytes.Buffer
			if err := viz.Curves(&b, h, width, height); err != nil {
				return err
			}
			if err := os.WriteFile(out, b.Bytes(), 0o644); err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, out)
			return nil
		},
	}
	cf.register(cmd.Flags())
	fs := cmd.Flags()
	fs.StringVar(&history, "history", "", "a run's history.jsonl (cnnctl train writes it into --out)")
	fs.StringVar(&jobID, "job", "", "a job on the coordinator, running or ended")
	fs.StringVarP(&out, "out", "o", "curves.png", "PNG file to write")
	fs.IntVar(&width, "width", 1200, "picture width in pixels")
	fs.IntVar(&height, "height", 800, "picture height in pixels")
	return cmd
}

// jobHistory is a job's history from its retained events, its training
// accuracy's conditions from its spec.
func jobHistory(ctx context.Context, cf *clientFlags, jobID string) (viz.History, error) {
	c, err := cf.dial()
	if err != nil {
		return viz.History{}, err
	}
	defer c.Close()
	var j *dpcnnv1.Job
	err = c.unary(ctx, "status "+jobID, func(ctx context.Context) (err error) {
		j, err = c.jobs().GetJob(ctx, &dpcnnv1.GetJobRequest{JobId: jobID})
		return err
	})
	if err != nil {
		return viz.History{}, err
	}
	var events []*dpcnnv1.JobEvent
	req := &dpcnnv1.ListJobEventsRequest{JobId: jobID}
	for {
		var page *dpcnnv1.ListJobEventsResponse
		err := c.unary(ctx, "logs "+jobID, func(ctx context.Context) (err error) {
			page, err = c.jobs().ListJobEvents(ctx, req)
			return err
		})
		if err != nil {
			return viz.History{}, err
		}
		events = append(events, page.Events...)
		if n := len(page.Events); n > 0 {
			req.AfterSequence = page.Events[n-1].Sequence
		}
		if !page.More || len(page.Events) == 0 {
			break
		}
	}
	h := historyOfEvents(events, j.Progress, specConditions(j.SpecJson))
	if len(h.Points) == 0 {
		return h, fmt.Errorf("job %s (%s) has no progress reports yet", jobID, j.State.Word())
	}
	return h, nil
}
