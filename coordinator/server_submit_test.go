package coordinator

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	keyspace "github.com/dpcnn/dpcnn/cluster"
	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/model"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// A job that passes the spec's own rules but not the data set's (a label
// outside the network's classes, images of another shape, parameters no
// message carries) is refused by SubmitJob, naming the rule and both
// values, and nothing of it is stored.
func TestServerRefusesJobsThatDoNotFitTheData(t *testing.T) {
	cli := testEtcd(t)
	c := startCoordinator(t, cli, "c1", t.TempDir())
	waitLeading(t, c)
	jobs := dpcnnv1.NewJobServiceClient(c.conn)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()

	withNet := func(edit func(*model.Spec)) job.Spec {
		net, err := model.Builtin("simple")
		if err != nil {
			t.Fatal(err)
		}
		edit(&net)
		s := tinySpec()
		s.Network, s.NetworkSpec = "", &net
		return s
	}
	for _, tc := range []struct {
		name string
		spec job.Spec
		want string
	}{
		{"two classes", withNet(func(n *model.Spec) { n.Classes, n.Layers[len(n.Layers)-2].Units = 2, 2 }), "network has 2 classes, the data set's labels have 10"},
		{"32x32 input", withNet(func(n *model.Spec) { n.Input.Height, n.Input.Width = 32, 32 }), "network input 32x32x1 (height x width x channels) does not match the data set's images, 28x28x1"},
		{"too many parameters", withNet(func(n *model.Spec) { n.Layers[3].Units = 20000 }), "that fit one message of 256 MiB"},
		{"test limit", func() job.Spec { s := tinySpec(); s.TestLimit = 20000; return s }(), "testLimit 20000 exceeds the data set's 10000 test samples"},
	} {
		_, err := jobs.SubmitJob(ctx, &dpcnnv1.SubmitJobRequest{Spec: tc.spec.JSON(), JobId: "refused"})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.want) {
			t.Errorf("%s: %v; want InvalidArgument mentioning %q", tc.name, err, tc.want)
		}
	}
	list, err := jobs.ListJobs(ctx, &dpcnnv1.ListJobsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Jobs) != 0 {
		t.Errorf("refused jobs were stored: %v", list.Jobs)
	}
}

// A job that was stored without these checks (by an earlier version, or a
// coordinator with another data set) fails when its turn comes, with the
// rule, instead of reaching any worker.
func TestServerFailsAStoredJobThatDoesNotFitTheData(t *testing.T) {
	cli := testEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	net, err := model.Builtin("simple")
	if err != nil {
		t.Fatal(err)
	}
	net.Classes, net.Layers[len(net.Layers)-2].Units = 2, 2
	spec := tinySpec()
	spec.Network, spec.NetworkSpec = "", &net
	now := time.Now().UTC()
	if _, _, err := keyspace.CreateJob(ctx, cli, "/test/", "stored", spec.WithDefaults().JSON(),
		keyspace.JobStatus{State: dpcnnv1.JobState_JOB_STATE_PENDING, Created: now, Updated: now}); err != nil {
		t.Fatal(err)
	}
	c := startCoordinator(t, cli, "c1", t.TempDir())
	waitLeading(t, c)
	jobs := dpcnnv1.NewJobServiceClient(c.conn)
	watchToEnd(t, jobs, "stored")
	j, err := jobs.GetJob(ctx, &dpcnnv1.GetJobRequest{JobId: "stored"})
	if err != nil {
		t.Fatal(err)
	}
	if j.State != dpcnnv1.JobState_JOB_STATE_FAILED || !strings.Contains(j.Error, "network has 2 classes, the data set's labels have 10") {
		t.Errorf("stored job ended %v: %s", j.State, j.Error)
	}
}

// A leader that took over before a job's newest checkpoint reached it
// answers a download UNAVAILABLE, to be retried, rather than INTERNAL.
func TestServerDownloadOfACheckpointNotYetHere(t *testing.T) {
	cli := testEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	now := time.Now().UTC()
	st := keyspace.JobStatus{State: dpcnnv1.JobState_JOB_STATE_SUCCEEDED, Created: now, Updated: now, Checkpoint: "/elsewhere/jobs/done/checkpoint-0000000004.ckpt", CheckpointStep: 4}
	if _, _, err := keyspace.CreateJob(ctx, cli, "/test/", "done", tinySpec().WithDefaults().JSON(), st); err != nil {
		t.Fatal(err)
	}
	c := startCoordinator(t, cli, "c1", t.TempDir())
	waitLeading(t, c)
	jobs := dpcnnv1.NewJobServiceClient(c.conn)
	type chunks interface {
		Recv() (*dpcnnv1.FileChunk, error)
	}
	for name, open := range map[string]func() (chunks, error){
		"checkpoint": func() (chunks, error) {
			return jobs.DownloadCheckpoint(ctx, &dpcnnv1.DownloadCheckpointRequest{JobId: "done"})
		},
		"model": func() (chunks, error) {
			return jobs.DownloadModel(ctx, &dpcnnv1.DownloadModelRequest{JobId: "done"})
		},
	} {
		stream, err := open()
		if err == nil {
			_, err = stream.Recv()
		}
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "checkpoint-0000000004.ckpt is not on this coordinator yet") {
			t.Errorf("download %s: %v; want UNAVAILABLE naming the file", name, err)
		}
	}
}
