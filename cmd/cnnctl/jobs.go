package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// The job commands: status, list, cancel and logs. watch is in
// client_watch.go, download in jobs_download.go, submit in submit.go.

func newStatusCmd(e *env) *cobra.Command {
	var cf clientFlags
	var output string
	cmd := &cobra.Command{
		Use:   "status JOB",
		Short: "Show a job's state, progress, evaluation and checkpoint",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return getAndShow(cmd.Context(), e, &cf, output, "status "+args[0],
				func(ctx context.Context, c *client) (*dpcnnv1.Job, error) {
					return c.jobs().GetJob(ctx, &dpcnnv1.GetJobRequest{JobId: args[0]})
				},
				func(w io.Writer, j *dpcnnv1.Job) { printJob(w, j, time.Now()) })
		},
	}
	cf.register(cmd.Flags())
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func newListCmd(e *env) *cobra.Command {
	var cf clientFlags
	var output string
	var states []string
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List jobs, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutputFormat(output); err != nil {
				return err
			}
			if limit < 0 {
				return fmt.Errorf("--limit %d: must not be negative", limit)
			}
			req := &dpcnnv1.ListJobsRequest{}
			for _, s := range states {
				st, err := parseJobState(s)
				if err != nil {
					return err
				}
				req.States = append(req.States, st)
			}
			c, err := cf.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			var jobs []*dpcnnv1.Job
			for {
				var page *dpcnnv1.ListJobsResponse
				err := c.unary(cmd.Context(), "list jobs", func(ctx context.Context) (err error) {
					page, err = c.jobs().ListJobs(ctx, req)
					return err
				})
				if err != nil {
					return err
				}
				jobs = append(jobs, page.Jobs...)
				if page.NextPageToken == "" || (limit > 0 && len(jobs) >= limit) {
					break
				}
				req.PageToken = page.NextPageToken
			}
			if limit > 0 && len(jobs) > limit {
				jobs = jobs[:limit]
			}
			if output == "json" {
				return writeJSON(e.stdout, &dpcnnv1.ListJobsResponse{Jobs: jobs})
			}
			printJobTable(e.stdout, jobs, time.Now())
			return nil
		},
	}
	cf.register(cmd.Flags())
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().StringSliceVar(&states, "state", nil, "list only jobs in these states: pending, waiting, running, succeeded, failed, cancelled")
	cmd.Flags().IntVar(&limit, "limit", 0, "list at most N jobs (0: all)")
	return cmd
}

func newCancelCmd(e *env) *cobra.Command {
	var cf clientFlags
	var reason string
	cmd := &cobra.Command{
		Use:   "cancel JOB",
		Short: "Stop a job; it keeps its latest checkpoint",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			var j *dpcnnv1.Job
			err = c.unary(cmd.Context(), "cancel "+args[0], func(ctx context.Context) (err error) {
				j, err = c.jobs().CancelJob(ctx, &dpcnnv1.CancelJobRequest{JobId: args[0], Reason: reason})
				return err
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "job %s: %s\n", j.Id, j.State.Word())
			return nil
		},
	}
	cf.register(cmd.Flags())
	cmd.Flags().StringVar(&reason, "reason", "cancelled with cnnctl", "reason recorded with the job")
	return cmd
}

func newLogsCmd(e *env) *cobra.Command {
	var cf clientFlags
	var after uint64
	var output string
	cmd := &cobra.Command{
		Use:   "logs JOB",
		Short: "Print a job's events: state changes, log lines, evaluations, checkpoints, workers",
		Long: `Print a job's retained events, oldest first: state changes, log lines from the
coordinator and the workers (a worker lost with work in hand, work given out again,
a slow worker, the coordinator that leads the job), evaluations, checkpoints and
membership changes. Plain progress reports are not retained; 'cnnctl watch' follows
them live. With --output json, every event is one line of JSON (the JobEvent message).

The events are the leading coordinator's, kept in its memory: after a failover
they start at the new leader's taking over the job ("coordinator X leads the
job"), with its latest progress standing in for what came before. The job's
status (state, checkpoints, evaluations) is in etcd and survives.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutputFormat(output); err != nil {
				return err
			}
			c, err := cf.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			req := &dpcnnv1.ListJobEventsRequest{JobId: args[0], AfterSequence: after}
			for {
				var page *dpcnnv1.ListJobEventsResponse
				err := c.unary(cmd.Context(), "logs "+args[0], func(ctx context.Context) (err error) {
					page, err = c.jobs().ListJobEvents(ctx, req)
					return err
				})
				if err != nil {
					return err
				}
				for _, ev := range page.Events {
					if output == "json" {
						if err := writeJSONLine(e.stdout, ev); err != nil {
							return err
						}
					} else {
						// Retained progress reports all carry an
						// evaluation, so no training accuracy needs its
						// label here.
						fmt.Fprintf(e.stdout, "%s %s\n", time.Unix(0, ev.TimeUnixNanos).Format("2006-01-02 15:04:05.000"), eventText(ev, ""))
					}
					req.AfterSequence = ev.Sequence
				}
				if !page.More || len(page.Events) == 0 {
					return nil
				}
			}
		},
	}
	cf.register(cmd.Flags())
	cmd.Flags().Uint64Var(&after, "after", 0, "print only events after this sequence number")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text, or json (one JobEvent a line)")
	return cmd
}

func checkOutputFormat(f string) error {
	if f != "text" && f != "json" {
		return fmt.Errorf("--output %q: want text or json", f)
	}
	return nil
}

func parseJobState(word string) (dpcnnv1.JobState, error) {
	if s, ok := dpcnnv1.ParseJobState(word); ok {
		return s, nil
	}
	return 0, fmt.Errorf("--state %q: want pending, waiting, running, succeeded, failed or cancelled", word)
}
