package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

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

// writeJSONLine prints a message as protobuf JSON on one line, for streams
// of messages (JSON Lines).
func writeJSONLine(w io.Writer, m proto.Message) error {
	b, err := protojson.Marshal(m)
	if err != nil {
		return err
	}
	// protojson varies its spacing on purpose; compact keeps it one line.
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return err
	}
	out.WriteByte('\n')
	_, err = w.Write(out.Bytes())
	return err
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
		field("progress", "%s", progressText(p, specConditions(j.SpecJson)))
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

// specConditions is job.Spec.TrainAccuracyConditions of a job's spec JSON;
// "" when it does not parse (an older coordinator's job, say), which only
// leaves the label off.
func specConditions(specJSON []byte) string {
	s, err := job.Parse(specJSON)
	if err != nil {
		return ""
	}
	return s.TrainAccuracyConditions()
}

// trainAccuracyText is the training accuracy with the conditions it was
// measured under, e.g. "train acc 0.523 (dropout on)".
func trainAccuracyText(acc float64, conditions string) string {
	if conditions == "" {
		return fmt.Sprintf("train acc %.3f", acc)
	}
	return fmt.Sprintf("train acc %.3f (%s)", acc, conditions)
}

// progressText is one line of a progress report; conditions are the
// training accuracy's (job.Spec.TrainAccuracyConditions).
func progressText(p *dpcnnv1.JobProgress, conditions string) string {
	s := fmt.Sprintf("epoch %d/%d step %d/%d loss %.4f %s%s %.0f img/s",
		p.Epoch, p.Epochs, p.StepInEpoch, p.StepsPerEpoch, p.Loss, trainAccuracyText(p.TrainAccuracy, conditions), rateText(p.LearningRate), p.ImagesPerSec)
	if p.EtaNanos > 0 {
		s += " eta " + time.Duration(p.EtaNanos).Round(time.Second).String()
	}
	return s + fmt.Sprintf(" workers %d", p.LiveWorkers)
}

// rateText is the learning rate of a progress line, " lr 0.000812"; empty
// when unknown (a coordinator older than the field).
func rateText(lr float64) string {
	if lr <= 0 {
		return ""
	}
	return fmt.Sprintf(" lr %.3g", lr)
}

// evaluationText is the line of an evaluation.
func evaluationText(ev *dpcnnv1.Evaluation) string {
	return fmt.Sprintf("epoch %d: test accuracy %.4f (%d/%d)", ev.Epoch, ev.TestAccuracy, ev.Correct, ev.Samples)
}

// eventText is one line describing a job event; conditions label a
// progress report's training accuracy.
func eventText(ev *dpcnnv1.JobEvent, conditions string) string {
	switch k := ev.Kind.(type) {
	case *dpcnnv1.JobEvent_Progress:
		if k.Progress.Evaluation != nil {
			return evaluationText(k.Progress.Evaluation)
		}
		return progressText(k.Progress, conditions)
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
