package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// ErrJobExists is returned by CreateJob when the id is taken by a job with
// a different spec.
var ErrJobExists = errors.New("cluster: job exists with a different spec")

// ErrNotLeader is returned by a guarded write when the writer's guard (its
// leadership) no longer holds.
var ErrNotLeader = errors.New("cluster: write refused: no longer the leader")

// JobStatus is a job's state and latest metrics under
// <prefix>jobs/<id>/status. The coordinator that leads rewrites it as the
// job progresses; a new leader reads it to resume.
type JobStatus struct {
	// State is stored as the enum's name ("JOB_STATE_RUNNING"). Records
	// written before held its word ("running", see JobState.Word), and
	// still load; a state of neither form loads as UNSPECIFIED.
	State         dpcnnv1.JobState `json:"-"`
	Step          int64            `json:"step"`
	Epoch         int64            `json:"epoch"`
	Loss          float64          `json:"loss"`
	TrainAccuracy float64          `json:"trainAccuracy"`
	TestAccuracy  float64          `json:"testAccuracy"`
	ImagesPerSec  float64          `json:"imagesPerSec"`
	LiveWorkers   int              `json:"liveWorkers"`
	// The work failures cost, over every leader's term: training images
	// given out more than once (to replace lost, slow or wrong workers'
	// work, and backup copies), and optimizer steps computed again after a
	// leader resumed from a checkpoint older than the last step recorded.
	ImagesReissued int64 `json:"imagesReissued,omitempty"`
	StepsRedone    int64 `json:"stepsRedone,omitempty"`
	// Straggler is the worker that last missed a deadline, and how long
	// its assignment had waited when a copy went to another worker.
	Straggler     string        `json:"straggler,omitempty"`
	StragglerWait time.Duration `json:"stragglerWait,omitempty"`
	// Checkpoint is the path of the latest checkpoint file in the data
	// folder of the leader that wrote it; every coordinator holds its copy
	// under the same job folder and name in its own (the leader pushes it
	// there). Empty before the first.
	Checkpoint string `json:"checkpoint,omitempty"`
	Error      string `json:"error,omitempty"`
	// Waiting says what a job in state waiting waits for.
	Waiting string    `json:"waiting,omitempty"`
	Updated time.Time `json:"updated"`

	// What the public API reports beside the above.
	Name              string    `json:"name,omitempty"`
	Backend           string    `json:"backend,omitempty"`
	Created           time.Time `json:"created"`
	Started           time.Time `json:"started,omitzero"`
	Finished          time.Time `json:"finished,omitzero"`
	CheckpointStep    int64     `json:"checkpointStep,omitempty"`
	CheckpointEpoch   int64     `json:"checkpointEpoch,omitempty"`
	CheckpointSize    int64     `json:"checkpointSize,omitempty"`
	CheckpointSHA256  string    `json:"checkpointSha256,omitempty"`
	CheckpointWritten time.Time `json:"checkpointWritten,omitzero"`
	// CheckpointParamsSHA256 is the latest checkpoint's parameter hash.
	CheckpointParamsSHA256 string `json:"checkpointParamsSha256,omitempty"`
	// Checkpoints is the history of the job's checkpoints, oldest first,
	// at most MaxCheckpointHistory of them.
	Checkpoints []CheckpointRecord `json:"checkpoints,omitempty"`
	EvalStep    int64              `json:"evalStep,omitempty"`
	EvalEpoch   int64              `json:"evalEpoch,omitempty"`
	EvalCorrect int64              `json:"evalCorrect,omitempty"`
	EvalSamples int64              `json:"evalSamples,omitempty"`
	Evaluated   bool               `json:"evaluated,omitempty"`
}

// MaxCheckpointHistory bounds JobStatus.Checkpoints, so that a long job's
// record stays small.
const MaxCheckpointHistory = 64

// CheckpointRecord is one checkpoint in a job's history.
type CheckpointRecord struct {
	Step         int64     `json:"step"`
	Epoch        int64     `json:"epoch"`
	Size         int64     `json:"size"`
	SHA256       string    `json:"sha256"`
	ParamsSHA256 string    `json:"paramsSha256"`
	Written      time.Time `json:"written"`
}

// AddCheckpoint appends r to the history, dropping the oldest records
// beyond MaxCheckpointHistory and any record of a step at or after r's (a
// job resumed from an older checkpoint writes those steps again).
func (s *JobStatus) AddCheckpoint(r CheckpointRecord) {
	h := s.Checkpoints
	for len(h) > 0 && h[len(h)-1].Step >= r.Step {
		h = h[:len(h)-1]
	}
	h = append(h, r)
	if len(h) > MaxCheckpointHistory {
		h = append([]CheckpointRecord(nil), h[len(h)-MaxCheckpointHistory:]...)
	}
	s.Checkpoints = h
}

// Ended reports whether the state is final.
func (s JobStatus) Ended() bool { return s.State.Ended() }

// jobStatusFields is JobStatus without its methods, for its JSON codec.
type jobStatusFields JobStatus

// jobStatusJSON is a JobStatus as etcd stores it: the state by name.
type jobStatusJSON struct {
	State string `json:"state"`
	*jobStatusFields
}

// MarshalJSON writes the status with its state as the enum's name.
func (s JobStatus) MarshalJSON() ([]byte, error) {
	return json.Marshal(jobStatusJSON{State: s.State.String(), jobStatusFields: (*jobStatusFields)(&s)})
}

// UnmarshalJSON reads a status whose state is an enum name or, as the
// previous version wrote them, a word.
func (s *JobStatus) UnmarshalJSON(data []byte) error {
	v := jobStatusJSON{jobStatusFields: (*jobStatusFields)(s)}
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	s.State, _ = dpcnnv1.ParseJobState(v.State)
	return nil
}

// JobRecord is a job as the keyspace holds it.
type JobRecord struct {
	ID string
	// Spec is the canonical spec JSON (job.Spec.JSON).
	Spec   []byte
	Status JobStatus
	// Revision is the etcd revision that created the job's spec key: jobs
	// sort by it in submission order.
	Revision int64
}

// JobsPrefix is the key prefix of every job key.
func JobsPrefix(prefix string) string { return prefix + "jobs/" }

// JobKey is the key of job id's spec.
func JobKey(prefix, id string) string { return JobsPrefix(prefix) + id }

// JobStatusKey is the key of job id's status.
func JobStatusKey(prefix, id string) string { return JobKey(prefix, id) + "/status" }

// CreateJob writes a new job's spec and status in one transaction, when
// guard holds (typically: the writer still leads). Creating a job again with
// the same spec changes nothing and returns the existing record with
// created=false; with a different spec it returns ErrJobExists.
func CreateJob(ctx context.Context, cli *clientv3.Client, prefix, id string, spec []byte, status JobStatus, guard ...clientv3.Cmp) (rec JobRecord, created bool, err error) {
	if err := CheckJobID(id); err != nil {
		return JobRecord{}, false, err
	}
	value, err := json.Marshal(status)
	if err != nil {
		return JobRecord{}, false, fmt.Errorf("cluster: create job %s: %w", id, err)
	}
	cmps := append([]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(JobKey(prefix, id)), "=", 0)}, guard...)
	resp, err := cli.Txn(ctx).If(cmps...).Then(
		clientv3.OpPut(JobKey(prefix, id), string(spec)),
		clientv3.OpPut(JobStatusKey(prefix, id), string(value)),
	).Commit()
	if err != nil {
		return JobRecord{}, false, fmt.Errorf("cluster: create job %s: %w", id, err)
	}
	if resp.Succeeded {
		return JobRecord{ID: id, Spec: spec, Status: status, Revision: resp.Header.Revision}, true, nil
	}
	existing, found, err := GetJob(ctx, cli, prefix, id)
	if err != nil {
		return JobRecord{}, false, err
	}
	if !found {
		return JobRecord{}, false, fmt.Errorf("cluster: create job %s: %w", id, ErrNotLeader)
	}
	if !bytes.Equal(existing.Spec, spec) {
		return existing, false, fmt.Errorf("cluster: create job %s: %w", id, ErrJobExists)
	}
	return existing, false, nil
}

// PutJobStatus rewrites job id's status when guard holds, else returns
// ErrNotLeader.
func PutJobStatus(ctx context.Context, cli *clientv3.Client, prefix, id string, status JobStatus, guard ...clientv3.Cmp) error {
	value, err := json.Marshal(status)
	if err != nil {
		return fmt.Errorf("cluster: put job %s status: %w", id, err)
	}
	resp, err := cli.Txn(ctx).If(guard...).Then(clientv3.OpPut(JobStatusKey(prefix, id), string(value))).Commit()
	if err != nil {
		return fmt.Errorf("cluster: put job %s status: %w", id, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("cluster: put job %s status: %w", id, ErrNotLeader)
	}
	return nil
}

// GetJob reads job id; found is false when there is no such job.
func GetJob(ctx context.Context, cli *clientv3.Client, prefix, id string) (rec JobRecord, found bool, err error) {
	if err := CheckJobID(id); err != nil {
		return JobRecord{}, false, err
	}
	resp, err := cli.Txn(ctx).Then(
		clientv3.OpGet(JobKey(prefix, id)),
		clientv3.OpGet(JobStatusKey(prefix, id)),
	).Commit()
	if err != nil {
		return JobRecord{}, false, fmt.Errorf("cluster: get job %s: %w", id, err)
	}
	specKvs := resp.Responses[0].GetResponseRange().Kvs
	if len(specKvs) == 0 {
		return JobRecord{}, false, nil
	}
	rec = JobRecord{ID: id, Spec: specKvs[0].Value, Revision: specKvs[0].CreateRevision}
	if statusKvs := resp.Responses[1].GetResponseRange().Kvs; len(statusKvs) > 0 {
		if err := json.Unmarshal(statusKvs[0].Value, &rec.Status); err != nil {
			return JobRecord{}, false, fmt.Errorf("cluster: get job %s: status: %w", id, err)
		}
	}
	return rec, true, nil
}

// ListJobs returns every job in submission order (oldest first). A job whose
// status does not decode is listed with an empty status.
func ListJobs(ctx context.Context, cli *clientv3.Client, prefix string) ([]JobRecord, error) {
	resp, err := cli.Get(ctx, JobsPrefix(prefix), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("cluster: list jobs: %w", err)
	}
	byID := map[string]*JobRecord{}
	get := func(id string) *JobRecord {
		r := byID[id]
		if r == nil {
			r = &JobRecord{ID: id}
			byID[id] = r
		}
		return r
	}
	for _, kv := range resp.Kvs {
		rest := strings.TrimPrefix(string(kv.Key), JobsPrefix(prefix))
		id, sub, hasSub := strings.Cut(rest, "/")
		switch {
		case !hasSub:
			r := get(id)
			r.Spec, r.Revision = kv.Value, kv.CreateRevision
		case sub == "status":
			_ = json.Unmarshal(kv.Value, &get(id).Status)
		}
	}
	out := make([]JobRecord, 0, len(byID))
	for _, r := range byID {
		if r.Spec != nil {
			out = append(out, *r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Revision < out[j].Revision })
	return out, nil
}

// CheckJobID accepts the ids SubmitJobRequest allows: 1 to 63 characters
// of [a-z0-9-], starting with a letter; the error names the broken rule.
func CheckJobID(id string) error {
	if len(id) == 0 || len(id) > 63 {
		return fmt.Errorf("cluster: job id %q: want 1 to 63 characters", id)
	}
	if id[0] < 'a' || id[0] > 'z' {
		return fmt.Errorf("cluster: job id %q: want a lowercase letter first", id)
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("cluster: job id %q: want only [a-z0-9-]", id)
		}
	}
	return nil
}
