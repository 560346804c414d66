package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/dpcnn/dpcnn/benchmark"
	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/localcluster"
	"github.com/dpcnn/dpcnn/netlab"
)

// benchTarget is the cluster a benchmark runs its jobs on: a real one
// (--coordinator), or an embedded one it started, perhaps inside an
// emulated network.
type benchTarget struct {
	client  *client
	name    string          // "embedded", or the coordinator's address
	link    *benchmark.Link // the emulated links; nil when not emulated
	closers []func()
}

func (t *benchTarget) close() {
	for i := len(t.closers) - 1; i >= 0; i-- {
		t.closers[i]()
	}
	t.closers = nil
}

// openTarget dials the real cluster, or starts the embedded one with the
// largest worker count of the plan.
func (o *benchScalingOptions) openTarget(ctx context.Context, e *env, p *scalingPlan) (_ *benchTarget, err error) {
	t := &benchTarget{}
	defer func() {
		if err != nil {
			t.close()
		}
	}()
	if !p.onLocal {
		c, err := o.cf.dial()
		if err != nil {
			return nil, err
		}
		t.client, t.name = c, o.cf.addr
		t.closers = append(t.closers, func() { c.Close() })
		return t, nil
	}
	dir, err := dataset.Locate(o.train.dataDir)
	if err != nil {
		return nil, err
	}
	tmp, err := localcluster.TempDir()
	if err != nil {
		return nil, err
	}
	t.closers = append(t.closers, func() { os.RemoveAll(tmp) })
	cfg := localcluster.Config{
		Dir: tmp, Workers: slices.Max(p.counts), Threads: o.train.threads, Backend: o.train.backend,
		MNISTDir: dir, Logger: e.log, Version: localVersion, ParamsDeltaMinWorkers: o.deltaMin,
		Topology: o.topology, TreeFanOut: o.fanOut,
	}
	if o.synthetic {
		cfg.Synthetic = time.Duration(o.computeMs * float64(time.Millisecond))
	}
	if o.netem {
		if cfg.WorkerNetwork, t.link, err = o.emulatedNetwork(t, cfg.Workers); err != nil {
			return nil, err
		}
	}
	lc, err := localcluster.Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	t.closers = append(t.closers, lc.Stop)
	c, err := dialLocal(lc, 30*time.Second)
	if err != nil {
		return nil, err
	}
	t.closers = append(t.closers, func() { c.Close() })
	t.client, t.name = c, "embedded"
	return t, nil
}

// registerEmbedded registers the flags of an embedded cluster that a
// benchmark starts: its data, backend and threads.
func (o *trainOptions) registerEmbedded(fs *pflag.FlagSet) {
	fs.StringVar(&o.dataDir, "data", "", "embedded cluster: folder with the MNIST IDX files (default: $DPCNN_MNIST_DIR, else the GoMNIST Go module)")
	fs.StringVar(&o.backend, "backend", "cpu", "embedded cluster: compute backend: cpu, cuda, auto or reference")
	fs.IntVar(&o.threads, "threads", 0, "embedded cluster: CPU threads in all, shared among the workers (0: all cores)")
}

// emulatedNetwork makes a network lab with the coordinator and each of
// workers on a host of its own, joined by links of --bandwidth and
// --latency.
func (o *benchScalingOptions) emulatedNetwork(t *benchTarget, workers int) (*localcluster.WorkerNetwork, *benchmark.Link, error) {
	bps, err := parseBitRate(o.bandwidth)
	if err != nil {
		return nil, nil, fmt.Errorf("--bandwidth %q: %w", o.bandwidth, err)
	}
	hosts := []string{"coordinator"}
	for i := range workers {
		hosts = append(hosts, fmt.Sprintf("w%d", i+1))
	}
	lab, err := netlab.New(netlab.Config{Hosts: hosts, Link: netlab.Link{BitsPerSec: bps, Latency: o.latency}})
	if err != nil {
		return nil, nil, fmt.Errorf("--netem: %w", err)
	}
	t.closers = append(t.closers, func() { lab.Close() })
	lis, err := lab.Listen("coordinator", 0)
	if err != nil {
		return nil, nil, fmt.Errorf("--netem: %w", err)
	}
	_, port, err := net.SplitHostPort(lis.Addr().String())
	if err != nil {
		lis.Close()
		return nil, nil, err
	}
	wn := &localcluster.WorkerNetwork{
		Listener: lis,
		Address:  net.JoinHostPort(lab.Addr("coordinator"), port),
		Dialer: func(i int) func(context.Context, string) (net.Conn, error) {
			return lab.Dialer(hosts[i+1])
		},
		// Each worker serves the reduce service on its own host, so the
		// tree's pushes and parameter fetches cross the emulated links too.
		ReduceListener: func(i int) (net.Listener, error) { return lab.Listen(hosts[i+1], 0) },
	}
	return wn, &benchmark.Link{BitsPerSec: bps, LatencyMs: ms(o.latency), How: lab.How()}, nil
}

// parseBitRate reads a rate as tc writes it: a number and a unit of bit,
// kbit, mbit, gbit or tbit (any case; "10Gbit"), or bits/s alone.
func parseBitRate(s string) (float64, error) {
	units := []struct {
		suffix string
		scale  float64
	}{{"tbit", 1e12}, {"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"bit", 1}}
	num, scale := strings.ToLower(strings.TrimSpace(s)), 1.0
	for _, u := range units {
		if n, ok := strings.CutSuffix(num, u.suffix); ok {
			num, scale = n, u.scale
			break
		}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("not a positive rate such as 1Gbit, 10Gbit or 500Mbit")
	}
	return v * scale, nil
}
