package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

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
			if err := checkOutputFormat(output); err != nil {
				return err
			}
			c, err := cf.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			var j *dpcnnv1.Job
			err = c.unary(cmd.Context(), "status "+args[0], func(ctx context.Context) (err error) {
				j, err = c.jobs().GetJob(ctx, &dpcnnv1.GetJobRequest{JobId: args[0]})
				return err
			})
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(e.stdout, j)
			}
			printJob(e.stdout, j, time.Now())
			return nil
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
	cmd := &cobra.Command{
		Use:   "logs JOB",
		Short: "Print a job's events: state changes, log lines, evaluations, checkpoints, workers",
		Long: `Print a job's retained events, oldest first: state changes, log lines from the
coordinator and the workers, evaluations, checkpoints and membership changes.
Plain progress reports are not retained; 'cnnctl watch' follows them live.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
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
					fmt.Fprintf(e.stdout, "%s %s\n", time.Unix(0, ev.TimeUnixNanos).Format("2006-01-02 15:04:05.000"), eventText(ev))
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
	return cmd
}

func checkOutputFormat(f string) error {
	if f != "text" && f != "json" {
		return fmt.Errorf("--output %q: want text or json", f)
	}
	return nil
}

// writeJSON prints a message as indented protobuf JSON.
func writeJSON(w io.Writer, m proto.Message) error {
	// protojson varies its spacing on purpose; json.Indent makes it stable.
	b, err := protojson.Marshal(m)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return err
	}
	out.WriteByte('\n')
	_, err = w.Write(out.Bytes())
	return err
}

func parseJobState(word string) (dpcnnv1.JobState, error) {
	if s, ok := dpcnnv1.ParseJobState(word); ok {
		return s, nil
	}
	return 0, fmt.Errorf("--state %q: want pending, waiting, running, succeeded, failed or cancelled", word)
}

// printJob writes a job's details, one field a line.
func printJob(w io.Writer, j *dpcnnv1.Job, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	field := func(name, format string, a ...any) { fmt.Fprintf(tw, name+":\t"+format+"\n", a...) }
	field("job", "%s", j.Id)
	if j.Name != "" {
		field("name", "%s", j.Name)
	}
	field("state", "%s", j.State.Word())
	if j.Error != "" {
		field("error", "%s", j.Error)
	}
	if j.WaitingFor != "" {
		field("waiting for", "%s", j.WaitingFor)
	}
	if j.Backend != "" {
		field("backend", "%s", j.Backend)
	}
	field("created", "%s", ago(j.CreatedUnixNanos, now))
	if j.StartedUnixNanos != 0 {
		field("started", "%s", ago(j.StartedUnixNanos, now))
	}
	if j.FinishedUnixNanos != 0 {
		field("finished", "%s", ago(j.FinishedUnixNanos, now))
	}
	if p := j.Progress; p != nil {
		field("progress", "%s", progressText(p))
		field("lost work", "%d images given out again, %d steps redone", p.ImagesReissued, p.StepsRedone)
		if p.Straggler != "" {
			field("slowest worker", "%s (an assignment waited %s before a copy went elsewhere)", p.Straggler, time.Duration(p.StragglerWaitNanos).Round(time.Millisecond))
		}
	}
	if ev := j.LastEvaluation; ev != nil {
		field("test accuracy", "%.4f (%d/%d) after epoch %d, step %d", ev.TestAccuracy, ev.Correct, ev.Samples, ev.Epoch, ev.GlobalStep)
	}
	if ck := j.LatestCheckpoint; ck != nil {
		field("checkpoint", "step %d, epoch %d, %d bytes, sha256 %s", ck.Step, ck.Epoch, ck.Size, ck.Sha256)
	}
	tw.Flush()
	if len(j.Checkpoints) > 0 {
		// The parameter hashes let users check that two runs of one spec
		// and seed trained the same bits, whatever their workers did.
		fmt.Fprintln(w, "checkpoints:")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  STEP\tEPOCH\tWRITTEN\tPARAMS SHA256")
		for _, ck := range j.Checkpoints {
			fmt.Fprintf(tw, "  %d\t%d\t%s\t%s\n", ck.Step, ck.Epoch, ago(ck.WrittenUnixNanos, now), ck.ParamsSha256)
		}
		tw.Flush()
	}
}

// printJobTable writes one line per job.
func printJobTable(w io.Writer, jobs []*dpcnnv1.Job, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tNAME\tSTATE\tSTEP\tLOSS\tTEST ACC\tCREATED")
	for _, j := range jobs {
		step, loss, acc := "-", "-", "-"
		if p := j.Progress; p != nil {
			step = fmt.Sprintf("%d/%d", p.GlobalStep, p.TotalSteps)
			loss = fmt.Sprintf("%.4f", p.Loss)
		}
		if ev := j.LastEvaluation; ev != nil {
			acc = fmt.Sprintf("%.4f", ev.TestAccuracy)
		}
		name := j.Name
		if name == "" {
			name = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.Id, name, j.State.Word(), step, loss, acc, ago(j.CreatedUnixNanos, now))
	}
	tw.Flush()
}

// progressText is one line of a progress report.
func progressText(p *dpcnnv1.JobProgress) string {
	s := fmt.Sprintf("epoch %d/%d step %d/%d loss %.4f acc %.3f %.0f img/s",
		p.Epoch, p.Epochs, p.StepInEpoch, p.StepsPerEpoch, p.Loss, p.TrainAccuracy, p.ImagesPerSec)
	if p.EtaNanos > 0 {
		s += " eta " + time.Duration(p.EtaNanos).Round(time.Second).String()
	}
	return s + fmt.Sprintf(" workers %d", p.LiveWorkers)
}

// evaluationText is the line of an evaluation.
func evaluationText(ev *dpcnnv1.Evaluation) string {
	return fmt.Sprintf("epoch %d: test accuracy %.4f (%d/%d)", ev.Epoch, ev.TestAccuracy, ev.Correct, ev.Samples)
}

// eventText is one line describing a job event.
func eventText(ev *dpcnnv1.JobEvent) string {
	switch k := ev.Kind.(type) {
	case *dpcnnv1.JobEvent_Progress:
		if k.Progress.Evaluation != nil {
			return evaluationText(k.Progress.Evaluation)
		}
		return progressText(k.Progress)
	case *dpcnnv1.JobEvent_StateChange:
		s := fmt.Sprintf("state %s -> %s", k.StateChange.OldState.Word(), k.StateChange.NewState.Word())
		if k.StateChange.OldState == dpcnnv1.JobState_JOB_STATE_UNSPECIFIED {
			s = "state " + k.StateChange.NewState.Word()
		}
		if k.StateChange.Reason != "" {
			s += ": " + k.StateChange.Reason
		}
		return s
	case *dpcnnv1.JobEvent_Log:
		level := strings.ToLower(strings.TrimPrefix(k.Log.Level.String(), "LOG_LEVEL_"))
		if k.Log.Level == dpcnnv1.LogLevel_LOG_LEVEL_UNSPECIFIED {
			level = "info"
		}
		return fmt.Sprintf("%s [%s] %s", level, k.Log.Source, k.Log.Message)
	case *dpcnnv1.JobEvent_Checkpoint:
		return fmt.Sprintf("checkpoint at step %d, epoch %d (%d bytes, params sha256 %s)", k.Checkpoint.Step, k.Checkpoint.Epoch, k.Checkpoint.Size, k.Checkpoint.ParamsSha256)
	case *dpcnnv1.JobEvent_WorkersChanged:
		s := fmt.Sprintf("workers: %d live", k.WorkersChanged.Live)
		if len(k.WorkersChanged.Joined) > 0 {
			s += ", joined " + strings.Join(k.WorkersChanged.Joined, " ")
		}
		if len(k.WorkersChanged.Left) > 0 {
			s += ", left " + strings.Join(k.WorkersChanged.Left, " ")
		}
		return s
	default:
		return fmt.Sprintf("event %d", ev.Sequence)
	}
}

// ago says how long before now an instant was, to the second; "-" for 0.
func ago(unixNanos int64, now time.Time) string {
	if unixNanos == 0 {
		return "-"
	}
	d := now.Sub(time.Unix(0, unixNanos)).Round(time.Second)
	if d < 0 {
		d = 0
	}
	return d.String() + " ago"
}
