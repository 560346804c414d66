package coordinator

import (
	"context"
	"slices"
	"time"

	keyspace "github.com/dpcnn/dpcnn/cluster"
	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// maxRetainedEvents bounds the events kept per job for late watchers; the
// oldest go first.
const maxRetainedEvents = 10000

// jobEntry is the leader's view of one job: its record in etcd, and the
// events it retains for WatchJob and ListJobEvents. Guarded by Server.mu.
type jobEntry struct {
	id       string
	spec     []byte // canonical spec JSON
	revision int64  // etcd create revision of the spec: submission order
	status   keyspace.JobStatus
	progress *dpcnnv1.JobProgress // latest; nil before the first step

	events  []*dpcnnv1.JobEvent // retained, by sequence
	latest  *dpcnnv1.JobEvent   // the latest progress event, retained or not
	nextSeq uint64
	changed chan struct{} // closed (and replaced) when an event is added
}

// newJobEntry is a job's entry in a term. Its events are numbered from
// term<<32 + 1, so that numbers grow across terms (terms are etcd
// revisions, which grow): a watcher that resumes on the next leader after
// the last event it saw (WatchJobRequest.AfterSequence) misses none of the
// new leader's, whose numbering would otherwise start again below it.
func newJobEntry(rec keyspace.JobRecord, term int64) *jobEntry {
	return &jobEntry{id: rec.ID, spec: rec.Spec, revision: rec.Revision, status: rec.Status,
		nextSeq: uint64(term)<<32 | 1, changed: make(chan struct{})}
}

// loadJobs reads every job from etcd for a new term.
func (s *Server) loadJobs(ctx context.Context, term int64) (map[string]*jobEntry, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	recs, err := keyspace.ListJobs(ctx, s.cfg.Etcd, s.cfg.Prefix)
	if err != nil {
		return nil, err
	}
	jobs := make(map[string]*jobEntry, len(recs))
	for _, r := range recs {
		e := newJobEntry(r, term)
		// What an earlier leader's watchers saw is gone with it; its latest
		// progress and, for an ended job, its end stand in for the history.
		if r.Status.Step > 0 {
			e.publish(&dpcnnv1.JobEvent{Kind: &dpcnnv1.JobEvent_Progress{Progress: e.progressFromStatus(s.trainLen)}}, false)
		}
		if r.Status.Ended() {
			reason := r.Status.Error
			e.publish(stateEvent(dpcnnv1.JobState_JOB_STATE_UNSPECIFIED, r.Status.State, reason), true)
		}
		jobs[r.ID] = e
	}
	return jobs, nil
}

// publish adds an event to e (retained unless it is a plain progress
// report) and wakes its watchers. The caller holds Server.mu.
func (e *jobEntry) publish(ev *dpcnnv1.JobEvent, retain bool) {
	ev.Sequence = e.nextSeq
	e.nextSeq++
	ev.JobId = e.id
	if ev.TimeUnixNanos == 0 {
		ev.TimeUnixNanos = time.Now().UnixNano()
	}
	if _, ok := ev.Kind.(*dpcnnv1.JobEvent_Progress); ok {
		e.latest = ev
	}
	if retain {
		if len(e.events) >= maxRetainedEvents {
			e.events = slices.Delete(e.events, 0, len(e.events)-maxRetainedEvents+1)
		}
		e.events = append(e.events, ev)
	}
	close(e.changed)
	e.changed = make(chan struct{})
}

// since returns, in sequence order, the retained events after seq and the
// latest progress report when it is newer than seq and not among them. The
// caller holds Server.mu.
func (e *jobEntry) since(seq uint64) []*dpcnnv1.JobEvent {
	i, _ := slices.BinarySearchFunc(e.events, seq+1, func(ev *dpcnnv1.JobEvent, s uint64) int {
		switch {
		case ev.Sequence < s:
			return -1
		case ev.Sequence > s:
			return 1
		}
		return 0
	})
	out := slices.Clone(e.events[i:])
	if l := e.latest; l != nil && l.Sequence > seq && !slices.Contains(out, l) {
		j, _ := slices.BinarySearchFunc(out, l.Sequence, func(ev *dpcnnv1.JobEvent, s uint64) int { return int(ev.Sequence) - int(s) })
		out = slices.Insert(out, j, l)
	}
	return out
}

func unixNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// proto returns the job as the API shows it, with a training set of
// trainLen samples. The caller holds Server.mu.
func (e *jobEntry) proto(trainLen int) *dpcnnv1.Job {
	st := e.status
	j := &dpcnnv1.Job{
		Id: e.id, Name: st.Name, State: st.State, SpecJson: e.spec, Backend: st.Backend,
		CreatedUnixNanos: unixNanos(st.Created), StartedUnixNanos: unixNanos(st.Started),
		FinishedUnixNanos: unixNanos(st.Finished), Error: st.Error, WaitingFor: st.Waiting,
		Progress: e.progress,
	}
	if j.Progress == nil && st.Step > 0 {
		j.Progress = e.progressFromStatus(trainLen)
	}
	if st.Evaluated {
		j.LastEvaluation = &dpcnnv1.Evaluation{
			Epoch: st.EvalEpoch, GlobalStep: st.EvalStep, TestAccuracy: st.TestAccuracy,
			Correct: st.EvalCorrect, Samples: st.EvalSamples,
		}
	}
	if st.Checkpoint != "" {
		j.LatestCheckpoint = &dpcnnv1.CheckpointInfo{
			Step: st.CheckpointStep, Epoch: st.CheckpointEpoch, Size: st.CheckpointSize,
			Sha256: st.CheckpointSHA256, WrittenUnixNanos: unixNanos(st.CheckpointWritten),
			ParamsSha256: st.CheckpointParamsSHA256,
		}
	}
	for _, r := range st.Checkpoints {
		j.Checkpoints = append(j.Checkpoints, &dpcnnv1.CheckpointInfo{
			Step: r.Step, Epoch: r.Epoch, Size: r.Size, Sha256: r.SHA256,
			WrittenUnixNanos: unixNanos(r.Written), ParamsSha256: r.ParamsSHA256,
		})
	}
	return j
}

// progressFromStatus rebuilds a progress report from the etcd status of a
// job another leader ran.
func (e *jobEntry) progressFromStatus(trainLen int) *dpcnnv1.JobProgress {
	st := e.status
	p := &dpcnnv1.JobProgress{
		GlobalStep: st.Step, Loss: st.Loss, TrainAccuracy: st.TrainAccuracy,
		ImagesPerSec: st.ImagesPerSec, LiveWorkers: int32(st.LiveWorkers),
		ImagesReissued: st.ImagesReissued, StepsRedone: st.StepsRedone,
		Straggler: st.Straggler, StragglerWaitNanos: int64(st.StragglerWait),
	}
	if spec, err := job.Parse(e.spec); err == nil {
		if sc, err := spec.Schedule(trainLen); err == nil {
			p.TotalSteps, p.StepsPerEpoch, p.Epochs = sc.Total, sc.PerEpoch, sc.Epochs()
			p.Epoch = min((st.Step-1)/sc.PerEpoch+1, p.Epochs)
			p.StepInEpoch = (st.Step-1)%sc.PerEpoch + 1
		}
	}
	return p
}
