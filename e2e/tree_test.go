package e2e

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dpcnn/dpcnn/coordinator"
	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/metrics"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
	"github.com/dpcnn/dpcnn/worker"
)

// TestTreeTrainsLikeOne: eight workers that serve the reduce service, and
// a coordinator set for the tree with a fan-out of 2, send every step's
// sums up a tree of reducers two levels deep (the job's log says so), and
// the parameters are bit for bit those of one in-process worker, as the
// star's are (TestThreeWorkersTrainLikeOne).
func TestTreeTrainsLikeOne(t *testing.T) {
	jobs, m, train, test := treeCluster(t, 8, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	spec := smallJob(11)
	spec.Batch, spec.MicroBatch = 40, 5 // 8 micro-batches a step, one a worker
	spec.MinWorkers = 8                 // every step over all eight
	run := submitAndWatch(ctx, t, jobs, spec)
	if run.State != dpcnnv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job %s ended %v: %s", run.ID, run.State, run.Reason)
	}
	tree := false
	for _, l := range run.Logs {
		if strings.Contains(l, "up a tree of") && strings.Contains(l, "2 levels deep") {
			tree = true
		}
	}
	if !tree {
		t.Errorf("the job's log never says its sums went up a tree 2 levels deep: %q", run.Logs)
	}
	// Two sums reached the coordinator a step (the fan-out), mostly
	// reducers' (a worker given a whole half of a step, as the measured
	// speeds may have it, sends its own result straight up).
	steps := float64(len(run.Losses))
	if star, tree := sumsReceived(t, m, metrics.ViaStar), sumsReceived(t, m, metrics.ViaTree); star+tree != 2*steps || tree < steps {
		t.Errorf("gradient sums received over %v steps: %v straight from workers, %v up the tree; want %v in all, most up the tree", steps, star, tree, 2*steps)
	}
	// The parameters went down the tree: at a fan-out of 2, all but two
	// of a step's workers fetch them from another (how many have work in
	// a step depends on their measured speeds; a step that starts with an
	// evaluation sends the version with it).
	if relayed := counterValue(t, m, "dpcnn_params_relayed_total"); relayed < 3*steps {
		t.Errorf("parameters relayed down the tree to %v assignments over %v steps; want most of them", relayed, steps)
	}
	likeOneWorker(ctx, t, jobs, run.ID, spec, train, test, "up a tree of 8 workers")
}

// sumsReceived reads dpcnn_gradient_sums_received_total{via}.
func sumsReceived(t *testing.T, m *metrics.Metrics, via string) float64 {
	t.Helper()
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "dpcnn_gradient_sums_received_total" {
			continue
		}
		for _, mt := range f.Metric {
			for _, l := range mt.Label {
				if l.GetName() == "via" && l.GetValue() == via {
					return mt.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// likeOneWorker checks that the job's final parameters are bit for bit
// those of one in-process worker; how says how the job was trained.
func likeOneWorker(ctx context.Context, t *testing.T, jobs dpcnnv1.JobServiceClient, id string, spec job.Spec, train, test *dataset.Set, how string) {
	t.Helper()
	stream, err := jobs.DownloadCheckpoint(ctx, &dpcnnv1.DownloadCheckpointRequest{JobId: id})
	ckpt := readCheckpoint(t, receive(t, stream, err))
	ref := trainInProcess(t, spec, train, test)
	if got, want := paramsSum(ckpt), paramsSum(ref); got != want {
		t.Errorf("parameters after %d steps %s: sha256 %s; with 1 in-process worker: %s (seed %d)", ckpt.Step, how, got, want, spec.Seed)
	}
}

// counterValue reads an unlabelled counter.
func counterValue(t *testing.T, m *metrics.Metrics, name string) float64 {
	t.Helper()
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.Metric) == 1 {
			return f.Metric[0].GetCounter().GetValue()
		}
	}
	return 0
}

// TestTreeSurvivesAnUnreachableReducer: three of four reducing workers
// advertise an address no one can reach, so every push to the groups they
// host fails (three, not two: which workers share a group depends on the
// order they joined in and their measured speeds, and with two a step's
// groups could all be hosted by the reachable ones). The pushers send
// their results to the coordinator instead, which flushes the groups that
// waited for them (and the workers below an unreachable parameter relay
// have their work given out again); every step still completes, to the
// bits of one in-process worker.
func TestTreeSurvivesAnUnreachableReducer(t *testing.T) {
	jobs, m, train, test := treeCluster(t, 4, func(c *worker.DaemonConfig) {
		if c.ID != "e2e-w4" {
			c.ReduceAdvertise = unreachable(t)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	spec := smallJob(13)
	spec.Batch, spec.MicroBatch, spec.MinWorkers = 40, 5, 4
	run := submitAndWatch(ctx, t, jobs, spec)
	if run.State != dpcnnv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job %s ended %v: %s", run.ID, run.State, run.Reason)
	}
	// Some results went straight to the coordinator, past the reducers
	// they could not reach (a worker's own result to a group it hosts
	// itself needs no push, so not all).
	if star := sumsReceived(t, m, metrics.ViaStar); star == 0 {
		t.Errorf("no result came straight to the coordinator, though three reducers could not be reached")
	}
	likeOneWorker(ctx, t, jobs, run.ID, spec, train, test, "past unreachable reducers")
}

// TestTreeSurvivesUnreachableRelays: every worker advertises a reduce
// service no one can reach, so whichever relays a step's parameters, the
// workers below it cannot fetch them. They say so; their work goes out
// again with the parameters inline, each relay that did not answer relays
// no more (the job's log names them), and the job ends with the bits of
// one in-process worker.
func TestTreeSurvivesUnreachableRelays(t *testing.T) {
	jobs, m, train, test := treeCluster(t, 4, func(c *worker.DaemonConfig) {
		c.ReduceAdvertise = unreachable(t)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	spec := smallJob(17)
	spec.Batch, spec.MicroBatch, spec.MinWorkers = 40, 5, 4
	run := submitAndWatch(ctx, t, jobs, spec)
	if run.State != dpcnnv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job %s ended %v: %s", run.ID, run.State, run.Reason)
	}
	dropped := 0
	for _, l := range run.Logs {
		if strings.Contains(l, "could not fetch its parameters from worker") && strings.Contains(l, "relays no more parameters") {
			dropped++
		}
	}
	if dropped == 0 {
		t.Errorf("no relay was dropped, though none could be reached: %q", run.Logs)
	}
	if relayed := counterValue(t, m, "dpcnn_params_relayed_total"); relayed == 0 {
		t.Errorf("no assignment was sent its parameters down the tree")
	}
	likeOneWorker(ctx, t, jobs, run.ID, spec, train, test, "past unreachable relays")
}

// unreachable is a loopback address nothing listens on: a port taken and
// let go.
func unreachable(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

// treeCluster starts etcd, a coordinator set for the tree at a fan-out of
// 2, with metrics, and n workers serving the reduce service on loopback
// (tune, when set, adjusts each); it returns the coordinator's job service,
// its metrics and the data set.
func treeCluster(t *testing.T, n int, tune func(*worker.DaemonConfig)) (dpcnnv1.JobServiceClient, *metrics.Metrics, *dataset.Set, *dataset.Set) {
	t.Helper()
	dir, train, test := mnist(t)
	cli, _ := startEtcd(t)
	m := metrics.New()
	addr := startCoordinator(t, cli, dir, func(c *coordinator.ServerConfig) {
		c.Topology, c.TreeFanOut, c.Metrics = coordinator.TopologyTree, 2, m
	})
	startWorkers(t, cli, n, dir, train, test, func(c *worker.DaemonConfig) {
		c.ReduceListen = "127.0.0.1:0"
		if tune != nil {
			tune(c)
		}
	})
	return dpcnnv1.NewJobServiceClient(dial(t, addr)), m, train, test
}
