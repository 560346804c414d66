package coordinator

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sort"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	keyspace "github.com/dpcnn/dpcnn/cluster"
	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// Page sizes of ListJobs and ListJobEvents.
const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

// SubmitJob implements JobService.
func (s *Server) SubmitJob(ctx context.Context, req *dpcnnv1.SubmitJobRequest) (*dpcnnv1.Job, error) {
	if len(bytes.TrimSpace(req.Spec)) == 0 {
		return nil, status.Error(codes.InvalidArgument, "submit job: empty spec")
	}
	spec, err := job.Parse(req.Spec)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if req.Backend != "" && req.Backend != "cpu" && req.Backend != "cuda" {
		return nil, status.Errorf(codes.InvalidArgument, "submit job: backend %q: want cpu, cuda or empty", req.Backend)
	}
	if req.JobId != "" {
		if err := keyspace.CheckJobID(req.JobId); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
	}
	if err := spec.CheckData(s.data); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if _, err := spec.Schedule(s.trainLen); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	l := s.leading()
	if l == nil {
		return nil, s.notLeader(ctx)
	}
	now := time.Now().UTC()
	st := keyspace.JobStatus{State: dpcnnv1.JobState_JOB_STATE_PENDING, Name: spec.Name, Backend: req.Backend, Created: now, Updated: now}
	specJSON := spec.JSON()
	var rec keyspace.JobRecord
	var created bool
	for attempt := 0; ; attempt++ {
		id := req.JobId
		if id == "" {
			if id, err = newJobID(now); err != nil {
				return nil, status.Errorf(codes.Internal, "submit job: %v", err)
			}
		}
		rec, created, err = keyspace.CreateJob(ctx, s.cfg.Etcd, s.cfg.Prefix, id, specJSON, st, l.guard())
		if errors.Is(err, keyspace.ErrJobExists) && req.JobId == "" && attempt < 3 {
			continue // a generated id collided: draw another
		}
		break
	}
	switch {
	case errors.Is(err, keyspace.ErrJobExists):
		return nil, status.Errorf(codes.AlreadyExists, "submit job %s: a job of this id exists with a different spec", req.JobId)
	case errors.Is(err, keyspace.ErrNotLeader):
		return nil, s.notLeader(ctx)
	case err != nil:
		return nil, status.Errorf(codes.Unavailable, "submit job: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lead != l {
		return nil, errLostLead
	}
	e := s.jobs[rec.ID]
	if e == nil { // a new job (or one another leader created)
		e = newJobEntry(rec, l.term)
		s.jobs[rec.ID] = e
		e.publish(stateEvent(dpcnnv1.JobState_JOB_STATE_UNSPECIFIED, rec.Status.State, "submitted"), true)
	}
	if created {
		s.log.Info("job submitted", "job", rec.ID, "name", spec.Name)
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
	return e.proto(s.trainLen), nil
}

// newJobID draws a fresh job id: "job-" and the submission time, then
// random hex against collisions.
func newJobID(now time.Time) (string, error) {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "job-" + now.Format("20060102-150405") + "-" + hex.EncodeToString(b[:]), nil
}

func stateEvent(from, to dpcnnv1.JobState, reason string) *dpcnnv1.JobEvent {
	return &dpcnnv1.JobEvent{Kind: &dpcnnv1.JobEvent_StateChange{StateChange: &dpcnnv1.StateChange{OldState: from, NewState: to, Reason: reason}}}
}

func logEvent(level dpcnnv1.LogLevel, source, msg string) *dpcnnv1.JobEvent {
	return &dpcnnv1.JobEvent{Kind: &dpcnnv1.JobEvent_Log{Log: &dpcnnv1.LogLine{Level: level, Source: source, Message: msg}}}
}

// entry finds a job; the error is the RPC's.
func (s *Server) entry(id string) (*jobEntry, *leadership, error) {
	if id == "" {
		return nil, nil, status.Error(codes.InvalidArgument, "no job id")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lead == nil {
		return nil, nil, errLostLead
	}
	e := s.jobs[id]
	if e == nil {
		return nil, nil, status.Errorf(codes.NotFound, "job %q not found", id)
	}
	return e, s.lead, nil
}

// GetJob implements JobService.
func (s *Server) GetJob(ctx context.Context, req *dpcnnv1.GetJobRequest) (*dpcnnv1.Job, error) {
	e, _, err := s.entry(req.JobId)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return e.proto(s.trainLen), nil
}

// ListJobs implements JobService: newest first, a page at a time; the page
// token is the submission revision of the last job of the previous page.
func (s *Server) ListJobs(ctx context.Context, req *dpcnnv1.ListJobsRequest) (*dpcnnv1.ListJobsResponse, error) {
	size, err := pageSize(req.PageSize)
	if err != nil {
		return nil, err
	}
	before := int64(-1)
	if req.PageToken != "" {
		if before, err = strconv.ParseInt(req.PageToken, 10, 64); err != nil || before < 0 {
			return nil, status.Errorf(codes.InvalidArgument, "list jobs: page token %q is not one this server gave", req.PageToken)
		}
	}
	keep := map[dpcnnv1.JobState]bool{}
	for _, st := range req.States {
		if _, ok := dpcnnv1.JobState_name[int32(st)]; !ok || st == dpcnnv1.JobState_JOB_STATE_UNSPECIFIED {
			return nil, status.Errorf(codes.InvalidArgument, "list jobs: state %v", st)
		}
		keep[st] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lead == nil {
		return nil, errLostLead
	}
	entries := make([]*jobEntry, 0, len(s.jobs))
	for _, e := range s.jobs {
		if (before < 0 || e.revision < before) && (len(keep) == 0 || keep[e.status.State]) {
			entries = append(entries, e)
		}
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].revision > entries[j].revision })
	out := &dpcnnv1.ListJobsResponse{}
	for i, e := range entries {
		if i == size {
			out.NextPageToken = strconv.FormatInt(entries[i-1].revision, 10)
			break
		}
		out.Jobs = append(out.Jobs, e.proto(s.trainLen))
	}
	return out, nil
}

func pageSize(n int32) (int, error) {
	switch {
	case n < 0:
		return 0, status.Errorf(codes.InvalidArgument, "page size %d", n)
	case n == 0:
		return defaultPageSize, nil
	}
	return min(int(n), maxPageSize), nil
}

// CancelJob implements JobService. A running job's driver stops it; a
// queued job is marked cancelled here, after the scheduler is told to skip
// it, so the two never race.
func (s *Server) CancelJob(ctx context.Context, req *dpcnnv1.CancelJobRequest) (*dpcnnv1.Job, error) {
	e, l, err := s.entry(req.JobId)
	if err != nil {
		return nil, err
	}
	reason := req.Reason
	if reason == "" {
		reason = "cancelled by request"
	}
	s.mu.Lock()
	if e.status.Ended() {
		defer s.mu.Unlock()
		return e.proto(s.trainLen), nil
	}
	if d := s.driver; d != nil && d.id == e.id {
		d.inbox.Put(cancelJob{reason})
		s.mu.Unlock()
		return s.waitEnded(ctx, l, e)
	}
	old := e.status.State
	e.status.State = dpcnnv1.JobState_JOB_STATE_CANCELLED
	e.status.Error = reason
	e.status.Finished = time.Now().UTC()
	e.status.Updated = e.status.Finished
	st := e.status
	e.publish(stateEvent(old, dpcnnv1.JobState_JOB_STATE_CANCELLED, reason), true)
	s.mu.Unlock()
	if err := keyspace.PutJobStatus(ctx, s.cfg.Etcd, s.cfg.Prefix, e.id, st, l.guard()); err != nil {
		if errors.Is(err, keyspace.ErrNotLeader) {
			l.cancel()
		}
		return nil, status.Errorf(codes.Unavailable, "cancel job %s: record the cancellation: %v", e.id, err)
	}
	s.log.Info("job cancelled", "job", e.id, "reason", reason)
	s.mu.Lock()
	defer s.mu.Unlock()
	return e.proto(s.trainLen), nil
}

// waitEnded waits until e's job has ended and returns it.
func (s *Server) waitEnded(ctx context.Context, l *leadership, e *jobEntry) (*dpcnnv1.Job, error) {
	for {
		s.mu.Lock()
		if e.status.Ended() {
			defer s.mu.Unlock()
			return e.proto(s.trainLen), nil
		}
		ch := e.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		case <-l.ctx.Done():
			return nil, errLostLead
		}
	}
}

// WatchJob implements JobService.
func (s *Server) WatchJob(req *dpcnnv1.WatchJobRequest, stream grpc.ServerStreamingServer[dpcnnv1.JobEvent]) error {
	e, l, err := s.entry(req.JobId)
	if err != nil {
		return err
	}
	ctx := stream.Context()
	last := req.AfterSequence
	for {
		s.mu.Lock()
		evs := e.since(last)
		ended := e.status.Ended()
		ch := e.changed
		s.mu.Unlock()
		for _, ev := range evs {
			if err := stream.Send(ev); err != nil {
				return err
			}
			last = ev.Sequence
		}
		if ended {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-l.ctx.Done():
			return errLostLead
		}
	}
}

// ListJobEvents implements JobService.
func (s *Server) ListJobEvents(ctx context.Context, req *dpcnnv1.ListJobEventsRequest) (*dpcnnv1.ListJobEventsResponse, error) {
	size, err := pageSize(req.PageSize)
	if err != nil {
		return nil, err
	}
	e, _, err := s.entry(req.JobId)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &dpcnnv1.ListJobEventsResponse{}
	for _, ev := range e.events {
		if ev.Sequence <= req.AfterSequence {
			continue
		}
		if len(out.Events) == size {
			out.More = true
			break
		}
		out.Events = append(out.Events, ev)
	}
	return out, nil
}
