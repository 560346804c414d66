package metrics

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Phases of a training step, the values of dpcnn_step_phase_seconds'
// label phase.
// (dpcnnv1.StepPhases says how each is measured.)
const (
	PhaseCompute    = "compute"    // the mean of the step's workers' compute, as they timed it
	PhaseTransfer   = "transfer"   // the mean of the step's round trips less the workers' time holding the work
	PhaseWait       = "wait"       // the rest of the step: waiting for the slowest worker
	PhaseReduce     = "reduce"     // the engine taking the step's results in, but the last
	PhaseOptimizer  = "optimizer"  // the engine's handling of the last result: final reduction and update
	PhaseBroadcast  = "broadcast"  // building and queuing the step's assignments
	PhaseCheckpoint = "checkpoint" // storing a checkpoint
)

// Metrics is one process's series, on a registry of its own (never the
// global default, so that two in one process, as in tests, do not clash).
type Metrics struct {
	reg *prometheus.Registry

	steps, images, reassignments, failures, checkpoints prometheus.Counter
	loss, accuracy                                      prometheus.Gauge
	phase, microbatch                                   *prometheus.HistogramVec
	paramsSent, sumsReceived                            *prometheus.CounterVec
	paramsRelayed                                       prometheus.Counter

	mu    sync.Mutex
	state func() State // nil: no coordinator in this process
}

// State is what the coordinator reports at each scrape.
type State struct {
	Leader      bool
	WorkersLive int
	Jobs        map[string]int // jobs by state word
}

// New makes the series and registers them with the Go and process
// collectors.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	}
	m.steps = counter("dpcnn_train_steps_total", "Optimizer steps applied.")
	m.images = counter("dpcnn_train_images_total", "Training images of the applied steps.")
	m.reassignments = counter("dpcnn_reassignments_total", "Work given out again: backup copies for stragglers and the work of lost or failed workers.")
	m.failures = counter("dpcnn_worker_failures_total", "Workers' failed work, lost streams and flagged workers.")
	m.checkpoints = counter("dpcnn_checkpoints_total", "Checkpoints stored.")
	m.loss = gauge("dpcnn_train_loss", "Mean training loss of the latest step.")
	m.accuracy = gauge("dpcnn_test_accuracy", "Test accuracy of the latest evaluation.")
	m.phase = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "dpcnn_step_phase_seconds", Help: "Duration of each phase of a training step.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10), // 100 µs … 26 s
	}, []string{"phase"})
	m.microbatch = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "dpcnn_worker_microbatch_seconds", Help: "Compute time of one micro-batch, by worker.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
	}, []string{"worker"})
	m.paramsSent = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dpcnn_params_sent_bytes_total",
		Help: "Parameter bytes sent to workers, by encoding: whole vectors, or deltas from the version before.",
	}, []string{"encoding"})
	m.paramsRelayed = counter("dpcnn_params_relayed_total", "Assignments whose parameters went down the tree: fetched from another worker, not sent by the coordinator.")
	m.sumsReceived = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dpcnn_gradient_sums_received_total",
		Help: "Gradient sums that reached the coordinator, by the way they came: star (a worker's own result) or tree (up a tree of reducers: a reducer's sum, or a sum passed up unadded).",
	}, []string{"via"})
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.steps, m.images, m.reassignments, m.failures, m.checkpoints,
		m.loss, m.accuracy, m.phase, m.microbatch, m.paramsSent, m.sumsReceived, m.paramsRelayed,
		stateCollector{m},
	)
	return m
}

// Registry is the registry the series are on, for more collectors (the
// gRPC server's).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// StepApplied counts an optimizer step of images images and sets the loss.
func (m *Metrics) StepApplied(images int, loss float64) {
	if m == nil {
		return
	}
	m.steps.Inc()
	m.images.Add(float64(images))
	m.loss.Set(loss)
}

// Evaluated sets the latest test accuracy.
func (m *Metrics) Evaluated(accuracy float64) {
	if m != nil {
		m.accuracy.Set(accuracy)
	}
}

// Phase records the duration of one phase of a step (a Phase* word).
func (m *Metrics) Phase(phase string, d time.Duration) {
	if m != nil {
		m.phase.WithLabelValues(phase).Observe(d.Seconds())
	}
}

// Microbatches records a worker's compute of n micro-batches in d, as n
// observations of d/n each.
func (m *Metrics) Microbatches(worker string, n int, d time.Duration) {
	if m == nil || n <= 0 || d < 0 {
		return
	}
	h := m.microbatch.WithLabelValues(worker)
	for range n {
		h.Observe(d.Seconds() / float64(n))
	}
}

// Reassigned counts work given out again.
func (m *Metrics) Reassigned() {
	if m != nil {
		m.reassignments.Inc()
	}
}

// Parameter encodings, the values of dpcnn_params_sent_bytes_total's label
// encoding.
const (
	ParamsWhole = "whole"
	ParamsDelta = "delta"
)

// ParamsSent counts the bytes of parameters sent to one worker.
func (m *Metrics) ParamsSent(encoding string, bytes int) {
	if m != nil {
		m.paramsSent.WithLabelValues(encoding).Add(float64(bytes))
	}
}

// ParamsRelayed counts an assignment whose parameters go down the tree.
func (m *Metrics) ParamsRelayed() {
	if m != nil {
		m.paramsRelayed.Inc()
	}
}

// The ways a gradient sum reaches the coordinator, the values of
// dpcnn_gradient_sums_received_total's label via.
const (
	ViaStar = "star"
	ViaTree = "tree"
)

// SumReceived counts a gradient sum that reached the coordinator.
func (m *Metrics) SumReceived(via string) {
	if m != nil {
		m.sumsReceived.WithLabelValues(via).Inc()
	}
}

// WorkerFailed counts a worker's failure.
func (m *Metrics) WorkerFailed() {
	if m != nil {
		m.failures.Inc()
	}
}

// CheckpointStored counts a stored checkpoint.
func (m *Metrics) CheckpointStored() {
	if m != nil {
		m.checkpoints.Inc()
	}
}

// ReportState has the coordinator's state read at each scrape (it must be
// quick and safe from any goroutine). Without it dpcnn_leader,
// dpcnn_workers_live and dpcnn_jobs are not exposed, as on a worker.
func (m *Metrics) ReportState(state func() State) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.state = state
	m.mu.Unlock()
}

var (
	leaderDesc  = prometheus.NewDesc("dpcnn_leader", "1 on the leading coordinator, 0 otherwise.", nil, nil)
	workersDesc = prometheus.NewDesc("dpcnn_workers_live", "Workers connected to this coordinator.", nil, nil)
	jobsDesc    = prometheus.NewDesc("dpcnn_jobs", "Jobs known to this coordinator, by state.", []string{"state"}, nil)
)

// stateCollector reads the coordinator's state when scraped, so that the
// coordinator need not update gauges on every change.
type stateCollector struct{ m *Metrics }

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- leaderDesc
	ch <- workersDesc
	ch <- jobsDesc
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	state := c.m.state
	c.m.mu.Unlock()
	if state == nil {
		return
	}
	st := state()
	leader := 0.0
	if st.Leader {
		leader = 1
	}
	ch <- prometheus.MustNewConstMetric(leaderDesc, prometheus.GaugeValue, leader)
	ch <- prometheus.MustNewConstMetric(workersDesc, prometheus.GaugeValue, float64(st.WorkersLive))
	for s, n := range st.Jobs {
		ch <- prometheus.MustNewConstMetric(jobsDesc, prometheus.GaugeValue, float64(n), s)
	}
}

// Serve serves m on /metrics at addr (host:port; port 0 picks one) until
// ctx ends. It returns the address listened on once listening.
func Serve(ctx context.Context, addr string, m *Metrics) (net.Addr, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	// Serve returns only when the listener fails or ctx closes the
	// server; a scrape endpoint has nobody to report either to.
	go func() { _ = srv.Serve(lis) }()
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	return lis.Addr(), nil
}
