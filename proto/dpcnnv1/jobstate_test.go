package dpcnnv1

import "testing"

// Every state reads back from its enum name, its short name and its word,
// in any case; the words are the ones job records and cnnctl used.
func TestJobStateWords(t *testing.T) {
	words := map[JobState]string{
		JobState_JOB_STATE_PENDING:             "pending",
		JobState_JOB_STATE_WAITING_FOR_WORKERS: "waiting",
		JobState_JOB_STATE_RUNNING:             "running",
		JobState_JOB_STATE_SUCCEEDED:           "succeeded",
		JobState_JOB_STATE_FAILED:              "failed",
		JobState_JOB_STATE_CANCELLED:           "cancelled",
	}
	if len(words) != len(JobState_name)-1 {
		t.Fatalf("%d words for %d states: a state was added, give it a word", len(words), len(JobState_name)-1)
	}
	for s, w := range words {
		if s.Word() != w {
			t.Errorf("%v.Word() = %q, want %q", s, s.Word(), w)
		}
		for _, in := range []string{s.String(), s.String()[len("JOB_STATE_"):], w, " " + w + " "} {
			if got, ok := ParseJobState(in); !ok || got != s {
				t.Errorf("ParseJobState(%q) = %v, %v; want %v", in, got, ok, s)
			}
		}
		ended := s == JobState_JOB_STATE_SUCCEEDED || s == JobState_JOB_STATE_FAILED || s == JobState_JOB_STATE_CANCELLED
		if s.Ended() != ended {
			t.Errorf("%v.Ended() = %v", s, s.Ended())
		}
	}
	if got, ok := ParseJobState("RUNNING"); !ok || got != JobState_JOB_STATE_RUNNING {
		t.Errorf("ParseJobState(RUNNING) = %v, %v", got, ok)
	}
	for _, in := range []string{"", "unspecified", "JOB_STATE_UNSPECIFIED", "done", "JOB_STATE_", "7"} {
		if got, ok := ParseJobState(in); ok {
			t.Errorf("ParseJobState(%q) = %v, want no state", in, got)
		}
	}
}
