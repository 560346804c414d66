package dpcnnv1

import "strings"

// The job states' one vocabulary is the JobState enum: the API sends it,
// etcd stores its names (cluster.JobStatus), and people read and type its
// words (cnnctl). Word and ParseJobState are the only translations.

// Word is the state as people read and type it: the name without its
// JOB_STATE_ prefix, in lower case ("pending", "running", "succeeded",
// "failed", "cancelled"), and "waiting" for WAITING_FOR_WORKERS. These
// are also the words job records in etcd held before they stored the
// enum's names.
func (s JobState) Word() string {
	if s == JobState_JOB_STATE_WAITING_FOR_WORKERS {
		return "waiting"
	}
	return strings.ToLower(strings.TrimPrefix(s.String(), "JOB_STATE_"))
}

// ParseJobState reads a job state from its enum name
// ("JOB_STATE_RUNNING"), that name without the prefix, or its Word, in
// any case. ok is false for anything else, and for UNSPECIFIED, which is
// no state a job is in.
func ParseJobState(name string) (s JobState, ok bool) {
	name = strings.ToUpper(strings.TrimSpace(name))
	if name == "WAITING" {
		return JobState_JOB_STATE_WAITING_FOR_WORKERS, true
	}
	if !strings.HasPrefix(name, "JOB_STATE_") {
		name = "JOB_STATE_" + name
	}
	v, found := JobState_value[name]
	if !found || v == int32(JobState_JOB_STATE_UNSPECIFIED) {
		return JobState_JOB_STATE_UNSPECIFIED, false
	}
	return JobState(v), true
}

// Ended reports whether the state is final: SUCCEEDED, FAILED or
// CANCELLED.
func (s JobState) Ended() bool {
	return s == JobState_JOB_STATE_SUCCEEDED || s == JobState_JOB_STATE_FAILED || s == JobState_JOB_STATE_CANCELLED
}
