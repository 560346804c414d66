package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dpcnn/dpcnn/cluster"
	"github.com/dpcnn/dpcnn/coordinator"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
	"github.com/dpcnn/dpcnn/secure"
)

// etcd, two coordinators (a leader and a standby) and three workers run as
// separate processes built from cmd/; the cnnctl client commands, run as
// processes too, submit a job, follow it, download its checkpoint and
// evaluate it. A worker is killed (SIGKILL) mid-job: its work is redone
// elsewhere and the parameters still equal one in-process worker's.
func TestSeparateProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the commands: skipped with -short")
	}
	mnistDir, train, test := mnist(t)
	bin := buildCommands(t)
	tmp := t.TempDir()
	// Every connection is mutual TLS with what `cnnctl certs` makes, and
	// cnnctl's calls carry its token.
	tls := makeClusterTLS(t, bin, tmp)

	// etcd: `cnnctl etcd` writes its endpoint to a file once it serves.
	endpoints := runEtcdCommand(t, localStarter(t), bin, tmp, tls)
	if !strings.HasPrefix(endpoints, "https://") {
		t.Fatalf("etcd serves %s, not https", endpoints)
	}
	cli := tls.dialEtcd(t, endpoints)

	coordinators := map[string]*process{}
	coord := func(id string) *process {
		coordinators[id] = startProcess(t, id, filepath.Join(bin, "coordinator"), append([]string{"--listen", "127.0.0.1:0", "--etcd", endpoints,
			"--data-dir", filepath.Join(tmp, "coordinator-data"), "--mnist", mnistDir, "--id", id, "--threads", "1", "--log-level", "warn"}, tls.coordinator...)...)
		return coordinators[id]
	}
	coord("c1")
	waitLeader(t, cli, "")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	leader, err := cluster.LeaderAddress(ctx, cli, cluster.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	coord("c2")
	standby := waitKey(t, cli, cluster.CoordinatorKey(cluster.DefaultPrefix, "c2"))

	// Workers: the first reads MNIST from disk, the others fetch it from
	// the coordinator into their own caches.
	workers := make([]*process, 3)
	for i := range workers {
		id := fmt.Sprintf("w%d", i+1)
		args := append([]string{"--etcd", endpoints, "--id", id, "--threads", "1", "--log-level", "warn",
			"--cache-dir", filepath.Join(tmp, "cache-"+id)}, tls.worker...)
		if i == 0 {
			args = append(args, "--data", mnistDir)
		}
		workers[i] = startProcess(t, id, filepath.Join(bin, "worker"), args...)
	}
	conn := tls.dial(t, leader.Address)
	waitIdleWorkers(ctx, t, dpcnnv1.NewClusterServiceClient(conn), 3)

	cnnctl := func(args ...string) string {
		t.Helper()
		return runCommand(ctx, t, filepath.Join(bin, "cnnctl"), append(append(args, "--coordinator", leader.Address), tls.cnnctl...)...)
	}
	// Without the token, or in plaintext, cnnctl is refused; the leader
	// logs the refusal.
	for _, args := range [][]string{
		{"list", "--coordinator", leader.Address, "--tls-ca", tls.file(secure.FileCA)},
		{"list", "--coordinator", leader.Address, "--insecure", "--timeout", "2s"},
	} {
		if out, err := exec.CommandContext(ctx, filepath.Join(bin, "cnnctl"), args...).CombinedOutput(); err == nil {
			t.Errorf("cnnctl %s was served:\n%s", strings.Join(args, " "), out)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		logs := coordinators["c1"].out.String()
		if strings.Contains(logs, "refused unauthenticated call") && strings.Contains(logs, "refused TLS handshake") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the leader did not log the refusals:\n%s", logs)
		}
	}
	spec := smallJob(11)
	out := cnnctl("submit", "job", "--net", "simple", "--epochs", "2", "--batch", "50", "--micro-batch", "10",
		"--train-limit", "300", "--test-limit", "200", "--seed", "11", "--id", "e2e-processes", "--name", "e2e")
	if !strings.Contains(out, "job e2e-processes submitted") {
		t.Fatalf("submit: %s", out)
	}

	// Kill a worker once the job is under way.
	jobs := dpcnnv1.NewJobServiceClient(conn)
	stream, err := jobs.WatchJob(ctx, &dpcnnv1.WatchJobRequest{JobId: "e2e-processes"})
	if err != nil {
		t.Fatal(err)
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		if p := ev.GetProgress(); p != nil && p.GlobalStep >= 2 {
			workers[2].kill(t)
			break
		}
		if sc := ev.GetStateChange(); sc != nil && sc.NewState >= dpcnnv1.JobState_JOB_STATE_SUCCEEDED {
			t.Fatalf("job ended %v before a worker could be killed", sc.NewState)
		}
	}

	// `cnnctl watch` follows it to the end; through the standby, which
	// names the leader.
	out = runCommand(ctx, t, filepath.Join(bin, "cnnctl"), append([]string{"watch", "e2e-processes", "--coordinator", standby}, tls.cnnctl...)...)
	acc := regexp.MustCompile(`epoch 2: test accuracy ([0-9.]+) \((\d+)/200\)`).FindStringSubmatch(out)
	if acc == nil || !strings.Contains(out, "succeeded") {
		t.Fatalf("watch:\n%s", out)
	}

	ckpt := filepath.Join(tmp, "final.ckpt")
	out = cnnctl("download", "e2e-processes", "--checkpoint", "-o", ckpt)
	if !strings.Contains(out, ckpt+": ") {
		t.Fatalf("download: %s", out)
	}
	out = runCommand(ctx, t, filepath.Join(bin, "cnnctl"), "eval", ckpt, "--test-limit", "200", "--data", mnistDir)
	if want := fmt.Sprintf("test accuracy %s (%s/200)", acc[1], acc[2]); !strings.Contains(out, want) {
		t.Errorf("eval says %q; the job reported %q", out, want)
	}
	c, err := coordinator.ReadCheckpointFile(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	ref := trainInProcess(t, spec, train, test)
	if got, want := paramsSum(c), paramsSum(ref); got != want {
		t.Errorf("parameters with 3 worker processes, one killed: sha256 %s; with 1 in-process worker: %s (seed %d)", got, want, spec.Seed)
	}

	for _, cmd := range []struct {
		args []string
		want []string
	}{
		{[]string{"status", "e2e-processes"}, []string{"succeeded", "test accuracy:", "checkpoint:"}},
		{[]string{"list"}, []string{"e2e-processes  e2e", "succeeded", "12/12"}},
		{[]string{"logs", "e2e-processes"}, []string{"state pending -> running", "state running -> succeeded", "w3"}},
		{[]string{"workers"}, []string{"w1", "w2"}},
	} {
		out := cnnctl(cmd.args...)
		for _, w := range cmd.want {
			if !strings.Contains(out, w) {
				t.Errorf("cnnctl %s: output lacks %q:\n%s", strings.Join(cmd.args, " "), w, out)
			}
		}
	}
	onnx := filepath.Join(tmp, "model.onnx")
	cnnctl("download", "e2e-processes", "--model", "-o", onnx)
	if st, err := os.Stat(onnx); err != nil || st.Size() < 1000 {
		t.Errorf("downloaded model: %v, %v", st, err)
	}
}

// buildCommands builds cnnctl, coordinator and worker into a temporary
// folder.
func buildCommands(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	cmd := exec.Command("go", "build", "-o", bin+string(filepath.Separator),
		"github.com/dpcnn/dpcnn/cmd/cnnctl", "github.com/dpcnn/dpcnn/cmd/coordinator", "github.com/dpcnn/dpcnn/cmd/worker")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// process is a command running in the background until the test ends.
type process struct {
	name string
	cmd  *exec.Cmd
	out  syncBuffer
	done chan struct{}
}

// syncBuffer is a bytes.Buffer safe for the process's writes and the
// test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startProcess starts a command; when the test ends it is stopped with
// SIGTERM (SIGKILL after 10 s), and its output is logged if the test
// failed.
func startProcess(t *testing.T, name, path string, args ...string) *process {
	t.Helper()
	p := &process{name: name, cmd: exec.Command(path, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.cmd.Env = os.Environ()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
			t.Errorf("%s did not stop within 10 s of SIGTERM", name)
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.out.String())
		}
	})
	return p
}

// kill ends the process at once, as a crash would.
func (p *process) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill %s: %v", p.name, err)
	}
	<-p.done
}

// runCommand runs a command to completion and returns its output, failing
// the test if it fails.
func runCommand(ctx context.Context, t *testing.T, path string, args ...string) string {
	t.Helper()
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(path), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// waitFile waits until a file exists and returns its content.
func waitFile(t *testing.T, path string, timeout time.Duration) []byte {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if b, err := os.ReadFile(path); err == nil {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear within %s", path, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitKey waits until an etcd key exists and returns its value.
func waitKey(t *testing.T, cli *clientv3.Client, key string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		r, err := cli.Get(ctx, key)
		cancel()
		if err == nil && len(r.Kvs) == 1 {
			return string(r.Kvs[0].Value)
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd key %s did not appear within 20 s (%v)", key, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitIdleWorkers waits until the leader knows n idle workers.
func waitIdleWorkers(ctx context.Context, t *testing.T, c dpcnnv1.ClusterServiceClient, n int) {
	t.Helper()
	for {
		r, err := c.ListWorkers(ctx, &dpcnnv1.ListWorkersRequest{})
		// A coordinator whose election key comes first refuses
		// (UNAVAILABLE) until it has loaded the jobs and leads: ask again.
		if err != nil && status.Code(err) != codes.Unavailable {
			t.Fatalf("list workers: %v", err)
		}
		idle := 0
		for _, w := range r.GetWorkers() {
			if w.State == dpcnnv1.WorkerState_WORKER_STATE_IDLE {
				idle++
			}
		}
		if idle >= n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d idle workers of %d wanted: %v (%v)", idle, n, r.GetWorkers(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// localStarter starts commands on this machine.
func localStarter(t *testing.T) starter {
	return func(name, path string, args ...string) *process { return startProcess(t, name, path, args...) }
}
