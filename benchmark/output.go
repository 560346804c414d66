package benchmark

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Describe says in one line what a scaling run measured: the net, the
// scaling mode and its batch, the steps, the workers' kind and the links.
func (s Scaling) Describe() string {
	parts := []string{s.Net}
	if s.Mode == "weak" {
		parts = append(parts, fmt.Sprintf("weak scaling, %d images per worker per step", s.PerWorkerBatch))
	} else {
		parts = append(parts, fmt.Sprintf("strong scaling, global batch %d", s.Batch))
	}
	parts = append(parts, fmt.Sprintf("micro-batch %d", s.MicroBatch))
	if m := s.Simulated; m != nil {
		topo := m.Topology
		if m.Topology == "tree" {
			topo = fmt.Sprintf("a tree of fan-out %d", m.FanOut)
		}
		parts = append(parts, fmt.Sprintf("%d steps after %d warm-up, simulated: %s on links of %s, %.2f ms; %.2f ms a micro-batch",
			s.Steps, s.Warmup, topo, bitRate(m.Link.BitsPerSec), m.Link.LatencyMs, m.ComputeMs))
		return strings.Join(parts, ", ")
	}
	parts = append(parts, fmt.Sprintf("%d steps after %d warm-up, %d rounds after one untimed warm-up job", s.Steps, s.Warmup, s.Repeat))
	if s.Synthetic {
		parts = append(parts, fmt.Sprintf("synthetic workers (%g ms per micro-batch)", s.ComputeMs))
	}
	if l := s.Emulated; l != nil {
		parts = append(parts, fmt.Sprintf("emulated links of %s, %.2f ms (%s)", bitRate(l.BitsPerSec), l.LatencyMs, l.How))
	}
	return strings.Join(parts, ", ")
}

func bitRate(bps float64) string {
	switch {
	case bps <= 0:
		return "unlimited rate"
	case bps >= 1e9:
		return strconv.FormatFloat(bps/1e9, 'g', 4, 64) + " Gbit/s"
	default:
		return strconv.FormatFloat(bps/1e6, 'g', 4, 64) + " Mbit/s"
	}
}

// WriteScalingTable writes s for a terminal: what was measured, one row
// per worker count, and the coordinator's cost of each added worker.
func WriteScalingTable(w io.Writer, s Scaling) error {
	fmt.Fprintf(w, "%s\ncluster: %s; machine: %s\n\n", s.Describe(), s.Cluster, s.Machine)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workers\tbatch\timages/s\tstep ms\t±\tcompute\twait\ttransfer\treduce\toptimizer\tbroadcast\tcoord ms/worker\tspeedup\tefficiency\t")
	for _, p := range s.Points {
		ph := p.PhasesMs
		fmt.Fprintf(tw, "%d\t%d\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.3f\t%.2f\t%.1f%%\t\n",
			p.Workers, p.Batch, p.ImagesPerSec, p.StepMs, p.StepMsSpread.StdDev,
			ph.Compute, ph.Wait, ph.Transfer, ph.Reduce, ph.Optimizer, ph.Broadcast,
			p.CoordinatorMsPerWorker, p.Speedup, 100*p.Efficiency)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\nphases in ms per step (medians over the rounds); the coordinator's own time (broadcast, reduce, optimizer) grows by %.3f ms per added worker\n",
		s.CoordinatorMsPerAddedWorker)
	return err
}

// WriteScalingJSON writes s as indented JSON of the fixed schema.
func WriteScalingJSON(w io.Writer, s Scaling) error { return writeJSON(w, s) }

// ReadScalingJSON reads what WriteScalingJSON wrote, refusing fields it
// does not know (a result of another version of the schema says so
// instead of reading as zeros).
func ReadScalingJSON(r io.Reader) (Scaling, error) { return readJSON[Scaling](r, "a scaling result") }

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func readJSON[T any](r io.Reader, what string) (T, error) {
	var v T
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		var zero T
		return zero, fmt.Errorf("benchmark: reading %s: %w", what, err)
	}
	return v, nil
}

// ScalingCSVHeader is the first row WriteScalingCSV writes.
var ScalingCSVHeader = []string{"workers", "batch", "imagesPerSec", "stepMs", "stepMsMin", "stepMsMax", "stepMsStdDev",
	"compute", "wait", "transfer", "reduce", "optimizer", "broadcast", "coordinatorMsPerWorker", "speedup", "efficiency"}

// WriteScalingCSV writes one row per worker count under ScalingCSVHeader.
func WriteScalingCSV(w io.Writer, s Scaling) error {
	cw := csv.NewWriter(w)
	cw.Write(ScalingCSVHeader)
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	for _, p := range s.Points {
		row := []string{strconv.Itoa(p.Workers), strconv.Itoa(p.Batch), f(p.ImagesPerSec), f(p.StepMs),
			f(p.StepMsSpread.Min), f(p.StepMsSpread.Max), f(p.StepMsSpread.StdDev)}
		for _, v := range p.PhasesMs.Values() {
			row = append(row, f(v))
		}
		row = append(row, f(p.CoordinatorMsPerWorker), f(p.Speedup), f(p.Efficiency))
		cw.Write(row)
	}
	cw.Flush()
	return cw.Error()
}
