package worker

import (
	"context"
	"net/http"
	"testing"

	"github.com/prometheus/common/expfmt"

	"github.com/dpcnn/dpcnn/metrics"
)

// A worker with metrics counts each micro-batch it computes in its own
// histogram, read back over HTTP as Prometheus would.
func TestWorkerMetricsCountMicrobatches(t *testing.T) {
	train, test := tinySets(t)
	stub := newStub("c1")
	addr, _ := serveStub(t, stub, "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := testWorkerConfig(t, "w-m", addr, train, test)
	cfg.Metrics = metrics.New()
	maddr, err := metrics.Serve(ctx, "127.0.0.1:0", cfg.Metrics)
	if err != nil {
		t.Fatal(err)
	}
	stop := startWorker(t, cfg)
	defer stop()

	ss := waitStream(t, stub)
	spec := testSpec()
	ss.assign(t, trainAssignment(1, "job-m", spec.JSON(), 0, initialParams(t, spec), 0, 0, subtree(0, 2, 3, 17, 0, 31)))
	ss.next(t) // the result: the subtree's two micro-batches are computed

	resp, err := http.Get("http://" + maddr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p expfmt.TextParser
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	f := families["dpcnn_worker_microbatch_seconds"]
	if f == nil || len(f.Metric) != 1 {
		t.Fatalf("dpcnn_worker_microbatch_seconds: %v", f)
	}
	m := f.Metric[0]
	if len(m.Label) != 1 || m.Label[0].GetName() != "worker" || m.Label[0].GetValue() != "w-m" {
		t.Errorf("labels %v, want worker=w-m", m.Label)
	}
	if n := m.GetHistogram().GetSampleCount(); n != 2 {
		t.Errorf("%d micro-batches observed, want 2", n)
	}
	if families["dpcnn_leader"] != nil {
		t.Error("a worker exposes dpcnn_leader")
	}
}
