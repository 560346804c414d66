package coordinator

import (
	"context"
	"strings"
	"testing"
	"time"

	keyspace "github.com/dpcnn/dpcnn/cluster"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// Job records the previous version wrote, whose states are words
// ("succeeded", "pending"), load in a new leader: the ended ones show
// their states and are not run, the pending one is scheduled (it waits for
// workers), and what this version writes back names the enum.
func TestServerLoadsJobRecordsOfThePreviousVersion(t *testing.T) {
	cli := testEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	spec := string(tinySpec().WithDefaults().JSON())
	for id, state := range map[string]string{"old-done": "succeeded", "old-cancelled": "cancelled", "old-queued": "pending"} {
		status := `{"state":"` + state + `","step":0,"epoch":0,"loss":0,"trainAccuracy":0,"testAccuracy":0,"imagesPerSec":0,"liveWorkers":0,` +
			`"updated":"2025-01-01T00:00:00Z","created":"2025-01-01T00:00:00Z"}`
		if _, err := cli.Put(ctx, keyspace.JobKey("/test/", id), spec); err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Put(ctx, keyspace.JobStatusKey("/test/", id), status); err != nil {
			t.Fatal(err)
		}
	}
	c := startCoordinator(t, cli, "c1", t.TempDir())
	waitLeading(t, c)
	jobs := dpcnnv1.NewJobServiceClient(c.conn)
	for id, want := range map[string]dpcnnv1.JobState{
		"old-done":      dpcnnv1.JobState_JOB_STATE_SUCCEEDED,
		"old-cancelled": dpcnnv1.JobState_JOB_STATE_CANCELLED,
	} {
		j, err := jobs.GetJob(ctx, &dpcnnv1.GetJobRequest{JobId: id})
		if err != nil || j.State != want {
			t.Errorf("job %s: %v, %v; want %v", id, j.GetState(), err, want)
		}
	}
	list, err := jobs.ListJobs(ctx, &dpcnnv1.ListJobsRequest{States: []dpcnnv1.JobState{dpcnnv1.JobState_JOB_STATE_SUCCEEDED}})
	if err != nil || len(list.Jobs) != 1 || list.Jobs[0].Id != "old-done" {
		t.Errorf("ListJobs of the succeeded: %v, %v; want old-done alone", list.GetJobs(), err)
	}
	for {
		j, err := jobs.GetJob(ctx, &dpcnnv1.GetJobRequest{JobId: "old-queued"})
		if err != nil {
			t.Fatal(err)
		}
		if j.State == dpcnnv1.JobState_JOB_STATE_WAITING_FOR_WORKERS {
			break
		}
		if j.State != dpcnnv1.JobState_JOB_STATE_PENDING {
			t.Fatalf("the old pending job is %v (%s), want it scheduled and waiting for workers", j.State, j.Error)
		}
		select {
		case <-ctx.Done():
			t.Fatal("the old pending job was never scheduled")
		case <-time.After(20 * time.Millisecond):
		}
	}
	resp, err := cli.Get(ctx, keyspace.JobStatusKey("/test/", "old-queued"))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || !strings.Contains(string(resp.Kvs[0].Value), `"state":"JOB_STATE_WAITING_FOR_WORKERS"`) {
		t.Errorf("the status written back: %q; want the state by the enum's name", resp.Kvs)
	}
}
