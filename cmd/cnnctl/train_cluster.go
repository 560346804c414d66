package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/localcluster"
	"github.com/dpcnn/dpcnn/metrics"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// trainLocalCluster trains on a cluster started in this process: it
// submits the job over gRPC, watches it to the end and downloads the final
// checkpoint into the output folder.
func trainLocalCluster(ctx context.Context, e *env, spec job.Spec, o trainOptions) error {
	dir, err := localcluster.TempDir()
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var m *metrics.Metrics
	if o.metricsListen != "" {
		m = metrics.New()
		addr, err := metrics.Serve(ctx, o.metricsListen, m)
		if err != nil {
			return fmt.Errorf("--metrics-listen %s: %w", o.metricsListen, err)
		}
		fmt.Fprintf(e.stdout, "metrics on http://%s/metrics\n", addr)
	}
	lc, err := localcluster.Start(ctx, localcluster.Config{
		Dir: dir, Workers: o.workers, Threads: o.threads, Backend: o.backend, MNISTDir: o.dataDir, Logger: e.log, Version: localVersion,
		Metrics: m,
	})
	if err != nil {
		return err
	}
	defer lc.Stop()
	if err := spec.CheckData(job.DataOf(lc.Train, lc.Test)); err != nil {
		return err
	}
	// Should a part of the cluster stop by itself, the watch ends with why.
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-lc.Failed:
			cancel(fmt.Errorf("local cluster: %w", lc.Err()))
		case <-wctx.Done():
		}
	}()

	c, err := dialLocal(lc, 30*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	var j *dpcnnv1.Job
	err = c.unary(wctx, "submit job", func(ctx context.Context) (err error) {
		j, err = c.jobs().SubmitJob(ctx, &dpcnnv1.SubmitJobRequest{Spec: spec.JSON()})
		return err
	})
	if err != nil {
		return causeOr(wctx, err)
	}
	sched, _ := spec.Schedule(lc.Train.Len()) // the coordinator took the job: it fits
	fmt.Fprintf(e.stdout, "training %s on %s backend, %s: %d epochs, %d steps of %d images, seed %d\n",
		netName(spec), o.backend, workersText(o.workers, threadsOr(o.threads)), spec.Epochs, sched.Total, spec.Batch, spec.Seed)
	fmt.Fprintf(e.stdout, "job %s on coordinator %s, etcd %s\n", j.Id, lc.Coordinator, lc.Etcd[0])
	if note := idleWorkersNote(spec, o.workers); note != "" {
		fmt.Fprintln(e.stderr, note)
	}

	ckptPath := filepath.Join(o.out, "checkpoint.ckpt")
	hist, err := createHistory(filepath.Join(o.out, historyFile), spec.TrainAccuracyConditions())
	if err != nil {
		return err
	}
	defer hist.close()
	view := newWatchView(e.stdout, false)
	view.history = hist
	res, err := c.watch(wctx, j.Id, view)
	if err == nil {
		err = res.err()
	}
	if err == nil {
		err = hist.close()
	}
	if err != nil {
		if ctx.Err() != nil {
			// Interrupted: keep what was trained so far.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if os.MkdirAll(o.out, 0o755) == nil {
				if info, derr := c.downloadCheckpoint(dctx, j.Id, ckptPath); derr == nil {
					fmt.Fprintf(e.stdout, "interrupted; checkpoint: %s (%d bytes)\n", ckptPath, info.Size)
				}
			}
			return ctx.Err()
		}
		return causeOr(wctx, err)
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	if _, err := c.downloadCheckpoint(wctx, j.Id, ckptPath); err != nil {
		return causeOr(wctx, err)
	}
	var steps int64
	var elapsed time.Duration
	var loss, speed float64
	if p := res.Progress; p != nil {
		steps, elapsed, loss, speed = p.GlobalStep, time.Duration(p.ElapsedNanos), p.Loss, p.ImagesPerSec
	}
	acc := "-"
	if n := len(res.Evaluations); n > 0 {
		acc = fmt.Sprintf("%.4f", res.Evaluations[n-1].TestAccuracy)
	}
	fmt.Fprintf(e.stdout, "done: %d steps in %s (%.0f images/s), final loss %.4f, test accuracy %s\ncheckpoint: %s\nhistory: %s\n",
		steps, elapsed.Round(time.Second), speed, loss, acc, ckptPath, hist.path)
	return nil
}

// localVersion is the build version the local cluster's daemons report.
const localVersion = "cnnctl-local"

// localLeaderWait is how long a client of the local cluster waits for its
// coordinator to lead again. The only coordinator steps down when its etcd,
// in the same process, does not answer for half the lease (a disk or CPU
// stall of a few seconds), and leads again once it answers: a watch must
// wait for it rather than end a long run (it did, at epoch 18 of 20).
const localLeaderWait = time.Minute

// dialLocal makes a client of a local cluster's coordinator with the
// cluster's CA and token.
func dialLocal(lc *localcluster.Cluster, timeout time.Duration) (*client, error) {
	c := &client{timeout: timeout, transport: lc.Transport, leaderWait: localLeaderWait}
	if err := c.connect(lc.Coordinator); err != nil {
		return nil, err
	}
	return c, nil
}

// causeOr returns why ctx was cancelled when a failed part of the cluster
// cancelled it, else err.
func causeOr(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}

func workersText(workers, threads int) string {
	per := max(1, threads/workers)
	return fmt.Sprintf("%s of %s", plural(workers, "local worker"), plural(per, "thread"))
}

// plural is "1 thing" or "n things".
func plural(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}
