package localcluster

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/grpc"

	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/metrics"
	"github.com/dpcnn/dpcnn/model"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// A small job run with metrics on moves every series the coordinator
// exposes, read back over HTTP as Prometheus would.
func TestMetricsOfAJob(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := metrics.New()
	addr, err := metrics.Serve(ctx, "127.0.0.1:0", m)
	if err != nil {
		t.Fatal(err)
	}
	// Deltas from 2 workers (the default waits for 10), so that both
	// encodings show.
	lc, err := Start(ctx, Config{Dir: t.TempDir(), Workers: 2, Threads: 2, Backend: "cpu", Metrics: m, ParamsDeltaMinWorkers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Stop()
	opts, err := lc.Transport.DialOptions(lc.Coordinator)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(lc.Coordinator, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	jobs := dpcnnv1.NewJobServiceClient(conn)
	spec := job.Spec{Network: "simple", Epochs: 1, Batch: 50, MicroBatch: 25, TrainLimit: 200, TestLimit: 100, Seed: 7,
		Optimizer: model.OptimizerSpec{LR: 0.005}}
	if _, err := jobs.SubmitJob(ctx, &dpcnnv1.SubmitJobRequest{Spec: spec.JSON(), JobId: "tiny"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		j, err := jobs.GetJob(ctx, &dpcnnv1.GetJobRequest{JobId: "tiny"})
		if err != nil {
			t.Fatal(err)
		}
		if j.State >= dpcnnv1.JobState_JOB_STATE_SUCCEEDED {
			if j.State != dpcnnv1.JobState_JOB_STATE_SUCCEEDED {
				t.Fatalf("job ended %v", j.State)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job still %v", j.State)
		}
		time.Sleep(20 * time.Millisecond)
	}

	families := scrape(t, "http://"+addr.String()+"/metrics")
	for _, name := range []string{
		"dpcnn_train_steps_total", "dpcnn_train_images_total", "dpcnn_train_loss", "dpcnn_test_accuracy",
		"dpcnn_step_phase_seconds", "dpcnn_worker_microbatch_seconds", "dpcnn_workers_live",
		"dpcnn_reassignments_total", "dpcnn_worker_failures_total", "dpcnn_jobs", "dpcnn_checkpoints_total",
		"dpcnn_leader", "dpcnn_params_sent_bytes_total", "dpcnn_gradient_sums_received_total",
		"grpc_server_handled_total", "go_goroutines",
	} {
		if families[name] == nil {
			t.Errorf("%s not exposed", name)
		}
	}
	value := func(name string, labels ...string) float64 {
		f := families[name]
		if f == nil {
			return -1
		}
	metric:
		for _, mt := range f.Metric {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range mt.Label {
					found = found || l.GetName() == labels[i] && l.GetValue() == labels[i+1]
				}
				if !found {
					continue metric
				}
			}
			switch {
			case mt.Counter != nil:
				return mt.Counter.GetValue()
			case mt.Gauge != nil:
				return mt.Gauge.GetValue()
			case mt.Histogram != nil:
				return float64(mt.Histogram.GetSampleCount())
			}
		}
		return -1
	}
	want := func(what string, got, min float64) {
		if got < min {
			t.Errorf("%s = %v, want at least %v", what, got, min)
		}
	}
	want("dpcnn_train_steps_total", value("dpcnn_train_steps_total"), 4) // 200 images in batches of 50
	want("dpcnn_train_images_total", value("dpcnn_train_images_total"), 200)
	want("dpcnn_checkpoints_total", value("dpcnn_checkpoints_total"), 1)
	for _, phase := range []string{metrics.PhaseCompute, metrics.PhaseTransfer, metrics.PhaseWait, metrics.PhaseReduce, metrics.PhaseOptimizer, metrics.PhaseBroadcast, metrics.PhaseCheckpoint} {
		want(fmt.Sprintf("dpcnn_step_phase_seconds{phase=%q} count", phase), value("dpcnn_step_phase_seconds", "phase", phase), 1)
	}
	want("dpcnn_worker_microbatch_seconds count", value("dpcnn_worker_microbatch_seconds"), 1)
	want("dpcnn_test_accuracy", value("dpcnn_test_accuracy"), 0.0001)
	if got := value("dpcnn_leader"); got != 1 {
		t.Errorf("dpcnn_leader = %v, want 1", got)
	}
	if got := value("dpcnn_jobs", "state", dpcnnv1.JobState_JOB_STATE_SUCCEEDED.Word()); got != 1 {
		t.Errorf("dpcnn_jobs{state=succeeded} = %v, want 1", got)
	}
	want("dpcnn_workers_live", value("dpcnn_workers_live"), 1)
	// The workers got the first version whole and later ones as deltas.
	want("dpcnn_params_sent_bytes_total{encoding=whole}", value("dpcnn_params_sent_bytes_total", "encoding", metrics.ParamsWhole), 1)
	want("dpcnn_params_sent_bytes_total{encoding=delta}", value("dpcnn_params_sent_bytes_total", "encoding", metrics.ParamsDelta), 1)
	// Two workers are below the tree's threshold: the star's way.
	want("dpcnn_gradient_sums_received_total{via=star}", value("dpcnn_gradient_sums_received_total", "via", metrics.ViaStar), 4)
}

// scrape reads a /metrics page by the text parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p expfmt.TextParser
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return families
}
