package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

func newWatchCmd(e *env) *cobra.Command {
	var cf clientFlags
	var quiet bool
	var output string
	cmd := &cobra.Command{
		Use:   "watch JOB",
		Short: "Follow a job's progress until it ends",
		Long: `Follow a job until it ends: a progress bar on a terminal, else about ten lines
an epoch (epoch, step, loss, training accuracy, images/s, ETA, live workers), and a
line for every evaluation, state change, log line, checkpoint and membership change.
The training accuracy is the step's own forward pass: with dropout on and
augmented images where the job has them, as its label says.
With --output json, every event is one line of JSON (the JobEvent message).
It fails when the job fails or is cancelled.`,
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
			view := newWatchView(e.stdout, quiet)
			view.json = output == "json"
			res, err := c.watch(cmd.Context(), args[0], view)
			if err != nil {
				return err
			}
			return res.err()
		},
	}
	cf.register(cmd.Flags())
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print evaluations, state changes and errors only")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text, or json (one JobEvent a line)")
	return cmd
}

// watchResult is what following a job found.
type watchResult struct {
	JobID       string
	State       dpcnnv1.JobState
	Reason      string                // of the last state change
	Evaluations []*dpcnnv1.Evaluation // in the order they happened
	Progress    *dpcnnv1.JobProgress  // the last progress report
	Checkpoint  *dpcnnv1.CheckpointInfo
}

// err is nil for a job that succeeded and says why otherwise.
func (r *watchResult) err() error {
	switch r.State {
	case dpcnnv1.JobState_JOB_STATE_SUCCEEDED:
		return nil
	case dpcnnv1.JobState_JOB_STATE_FAILED:
		return fmt.Errorf("job %s failed: %s", r.JobID, r.Reason)
	case dpcnnv1.JobState_JOB_STATE_CANCELLED:
		if r.Reason == "" {
			return fmt.Errorf("job %s was cancelled", r.JobID)
		}
		return fmt.Errorf("job %s was cancelled: %s", r.JobID, r.Reason)
	default:
		return fmt.Errorf("job %s: stopped watching while it is %s", r.JobID, r.State.Word())
	}
}

// watch follows a job's events until the job ends, showing each on view.
// Should the stream break on a coordinator that lost the lead, it resumes
// on the new leader after the last event seen.
func (c *client) watch(ctx context.Context, jobID string, view *watchView) (*watchResult, error) {
	res := &watchResult{JobID: jobID}
	var last uint64
	defer view.finish()
	// The job's spec says what its training accuracy is measured under.
	err := c.unary(ctx, "status "+jobID, func(ctx context.Context) error {
		j, err := c.jobs().GetJob(ctx, &dpcnnv1.GetJobRequest{JobId: jobID})
		if err == nil {
			view.conditions = specConditions(j.SpecJson)
		}
		return err
	})
	if err != nil {
		return res, err
	}
	err = c.stream(ctx, "watch "+jobID, func(ctx context.Context, progressed func()) error {
		stream, err := c.jobs().WatchJob(ctx, &dpcnnv1.WatchJobRequest{JobId: jobID, AfterSequence: last})
		if err != nil {
			return err
		}
		for {
			ev, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			if ev.Sequence > last {
				last = ev.Sequence
			}
			progressed()
			res.add(ev)
			view.show(ev)
		}
	})
	if err != nil {
		return res, err
	}
	if !res.State.Ended() {
		// The stream ended without the final state change (a replay of a
		// job that ended long ago may have dropped it): ask.
		err = c.unary(ctx, "status "+jobID, func(ctx context.Context) error {
			j, err := c.jobs().GetJob(ctx, &dpcnnv1.GetJobRequest{JobId: jobID})
			if err == nil {
				res.State, res.Reason = j.State, j.Error
				if res.Checkpoint == nil {
					res.Checkpoint = j.LatestCheckpoint
				}
			}
			return err
		})
	}
	return res, err
}

func (r *watchResult) add(ev *dpcnnv1.JobEvent) {
	switch k := ev.Kind.(type) {
	case *dpcnnv1.JobEvent_Progress:
		r.Progress = k.Progress
		if e := k.Progress.Evaluation; e != nil {
			if n := len(r.Evaluations); n == 0 || r.Evaluations[n-1].GlobalStep != e.GlobalStep {
				r.Evaluations = append(r.Evaluations, e)
			}
		}
	case *dpcnnv1.JobEvent_StateChange:
		r.State, r.Reason = k.StateChange.NewState, k.StateChange.Reason
	case *dpcnnv1.JobEvent_Checkpoint:
		r.Checkpoint = k.Checkpoint
	}
}

// watchView shows a job's events: a progress bar when out is a terminal,
// plain lines (about ten an epoch) otherwise, or every event as a line of
// JSON.
type watchView struct {
	out        io.Writer
	quiet      bool
	json       bool
	tty        bool
	conditions string // of the training accuracy, for its label
	bar        *progressbar.ProgressBar
	history    *historyWriter // when set, gets every progress report (cnnctl train)
}

func newWatchView(out io.Writer, quiet bool) *watchView {
	v := &watchView{out: out, quiet: quiet}
	if f, ok := out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		v.tty = true
	}
	return v
}

func (v *watchView) show(ev *dpcnnv1.JobEvent) {
	if v.history != nil {
		v.history.addEvent(ev)
	}
	if v.json {
		writeJSONLine(v.out, ev) // a broken stdout ends the command by itself
		return
	}
	p, isProgress := ev.Kind.(*dpcnnv1.JobEvent_Progress)
	if !isProgress {
		if _, log := ev.Kind.(*dpcnnv1.JobEvent_Log); v.quiet && log && ev.GetLog().Level < dpcnnv1.LogLevel_LOG_LEVEL_WARN {
			return
		}
		if _, ck := ev.Kind.(*dpcnnv1.JobEvent_Checkpoint); v.quiet && ck {
			return
		}
		if _, wc := ev.Kind.(*dpcnnv1.JobEvent_WorkersChanged); v.quiet && wc {
			return
		}
		v.line(eventText(ev, v.conditions))
		return
	}
	pr := p.Progress
	if v.tty && !v.quiet && pr.TotalSteps > 0 {
		if v.bar == nil {
			v.bar = progressbar.NewOptions64(pr.TotalSteps,
				progressbar.OptionSetWriter(v.out),
				progressbar.OptionShowCount(),
				progressbar.OptionSetWidth(30),
				progressbar.OptionThrottle(200*time.Millisecond),
				progressbar.OptionClearOnFinish(),
			)
		}
		// The bar shows the steps done and their rate; the description
		// the rest of the report, ETA included (the job's own estimate,
		// which knows about evaluations and restarts).
		v.bar.Describe(progressText(pr, v.conditions))
		v.bar.Set64(pr.GlobalStep)
	} else if !v.quiet {
		every := max(1, pr.StepsPerEpoch/10)
		if pr.StepInEpoch%every == 0 || pr.StepInEpoch == pr.StepsPerEpoch || pr.GlobalStep == pr.TotalSteps {
			v.line(progressText(pr, v.conditions))
		}
	}
	if pr.Evaluation != nil {
		v.line(evaluationText(pr.Evaluation))
	}
}

// line prints a line above the bar, if any.
func (v *watchView) line(s string) {
	if v.bar != nil {
		v.bar.Clear()
	}
	fmt.Fprintln(v.out, s)
}

func (v *watchView) finish() {
	if v.bar != nil {
		v.bar.Finish()
		v.bar = nil
	}
}
