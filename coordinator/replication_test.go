package coordinator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	keyspace "github.com/dpcnn/dpcnn/cluster"
	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/model"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
	"github.com/dpcnn/dpcnn/secure"
	"github.com/dpcnn/dpcnn/worker"
)

// testPKI is a development set of certificates (secure.NewDevelopmentSet,
// what `cnnctl certs` writes) in a folder of the test.
type testPKI struct{ dir string }

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	set, err := secure.NewDevelopmentSet(nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := testPKI{dir: filepath.Join(t.TempDir(), "certs")}
	if err := set.Write(p.dir, false); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p testPKI) file(name string) string { return filepath.Join(p.dir, name) }

// clientTLS verifies servers against the set's CA and presents the
// certificate cert with key (none when cert is "").
func (p testPKI) clientTLS(t *testing.T, cert, key string) *tls.Config {
	t.Helper()
	f := secure.Files{CA: p.file(secure.FileCA)}
	if cert != "" {
		f.Cert, f.Key = p.file(cert), p.file(key)
	}
	cfg, err := secure.ClientTLS(f, "")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func (p testPKI) coordinatorTLS(t *testing.T) *tls.Config {
	return p.clientTLS(t, secure.FileCoordinatorCert, secure.FileCoordinatorKey)
}

// dialTLS connects to addr over TLS as cfg says, until the test ends.
func dialTLS(t *testing.T, addr string, cfg *tls.Config) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(dpcnnv1.MaxMessageSize)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// startTLSCoordinator serves a coordinator over mutual TLS with the set's
// coordinator certificate, replicating with timeout; the returned conn is
// cnnctl's (its client certificate: the server takes no tokens).
func startTLSCoordinator(t *testing.T, cli *clientv3.Client, pki testPKI, id, dataDir string, timeout time.Duration) *testCoordinator {
	t.Helper()
	server, err := secure.ServerTLS(secure.Files{CA: pki.file(secure.FileCA), Cert: pki.file(secure.FileCoordinatorCert), Key: pki.file(secure.FileCoordinatorKey)}, false)
	if err != nil {
		t.Fatal(err)
	}
	return startCoordinatorWith(t, cli, id, dataDir, func(cfg *ServerConfig) {
		cfg.Credentials = credentials.NewTLS(server)
		cfg.Replication = ReplicationConfig{Timeout: timeout, ClientTLS: pki.coordinatorTLS(t)}
	}, grpc.WithTransportCredentials(credentials.NewTLS(pki.clientTLS(t, secure.FileCnnctlCert, secure.FileCnnctlKey))))
}

// startTLSDaemons runs n worker daemons with the set's worker certificate,
// finding the leader in etcd, until the test ends.
func startTLSDaemons(t *testing.T, cli *clientv3.Client, pki testPKI, n int) {
	t.Helper()
	startDaemonsFrom(t, cli, 0, n, func(cfg *worker.DaemonConfig) {
		cfg.ID = "tls-" + cfg.ID
		cfg.Credentials = credentials.NewTLS(pki.clientTLS(t, secure.FileWorkerCert, secure.FileWorkerKey))
	})
}

// waitInSync waits until the leader c pushes to the standby id and has
// nothing left to catch up with it.
func waitInSync(t *testing.T, c *testCoordinator, id string) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for {
		if l := c.srv.leading(); l != nil && l.replicas != nil {
			l.replicas.mu.Lock()
			sb := l.replicas.standbys[id]
			l.replicas.mu.Unlock()
			if sb != nil && !sb.isBehind() {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the leader at %s never had the standby %s in sync", c.addr, id)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// push sends one PushFile stream: first (the job and the file), then data
// in chunks of chunk bytes, the first of them on first itself.
func push(ctx context.Context, conn *grpc.ClientConn, first *dpcnnv1.PushFileRequest, data []byte, chunk int) (*dpcnnv1.PushFileResponse, error) {
	stream, err := dpcnnv1.NewReplicationServiceClient(conn).PushFile(ctx)
	if err != nil {
		return nil, err
	}
	msg := first
	for off := 0; ; {
		n := min(chunk, len(data)-off)
		msg.Offset, msg.Data = int64(off), data[off:off+n]
		if err := stream.Send(msg); err != nil {
			break // answered early: CloseAndRecv says how
		}
		if off += n; off >= len(data) {
			break
		}
		msg = &dpcnnv1.PushFileRequest{}
	}
	return stream.CloseAndRecv()
}

// fileOf describes data as the file name.
func fileOf(name string, data []byte) *dpcnnv1.FileInfo {
	sum := sha256.Sum256(data)
	return &dpcnnv1.FileInfo{Name: name, Size: int64(len(data)), Sha256: hex.EncodeToString(sum[:])}
}

// trainedCheckpoints runs spec in-process and returns the bytes of every
// checkpoint it writes, by step.
func trainedCheckpoints(t *testing.T, spec job.Spec) map[int64][]byte {
	t.Helper()
	tr, local := newLocalRun(t, spec, 1)
	out := map[int64][]byte{}
	_, err := tr.Run(context.Background(), local, nil, func(c *model.Checkpoint) error {
		var b bytes.Buffer
		if err := model.WriteCheckpoint(&b, c); err != nil {
			return err
		}
		out[c.Step] = b.Bytes()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// folder lists the files in a job's folder, temporary ones included, with
// each one's SHA-256; a file that vanishes while it is read (a temporary
// file renamed) is left out.
func folder(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range entries {
		info, err := describeFile(filepath.Join(dir, e.Name()), e.Name())
		if notExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = info.Sha256
	}
	return out
}

// A coordinator stores what another coordinator pushes, over mutual TLS,
// in its own folder under the leader's names: SHA-256 and CRC checked,
// written atomically, the two newest checkpoints kept, a repeated push
// answered without writing. Every bad push is refused with its own error
// and leaves the folder exactly as it was: a caller without a coordinator's
// certificate, an unknown job, a path for a name, a wrong SHA-256 or size,
// an oversize file or chunk, a corrupt checkpoint, one of another step or
// seed, a malformed stream.
func TestReplicationRefusesBadPushes(t *testing.T) {
	cli := testEtcd(t)
	pki := newTestPKI(t)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	spec := tinySpec()
	spec.Epochs = 3 // checkpoints at steps 4, 8 and 12
	ckpts := trainedCheckpoints(t, spec)
	other := spec
	other.Seed++
	for id, s := range map[string]job.Spec{"tiny": spec, "other": other} {
		st := keyspace.JobStatus{State: dpcnnv1.JobState_JOB_STATE_SUCCEEDED, Created: time.Now().UTC()} // nothing for the leader to run
		if _, _, err := keyspace.CreateJob(ctx, cli, "/test/", id, s.WithDefaults().JSON(), st); err != nil {
			t.Fatal(err)
		}
	}
	dataDir := t.TempDir()
	c := startTLSCoordinator(t, cli, pki, "c1", dataDir, 0)
	dir := filepath.Join(dataDir, "jobs", "tiny")
	peer := dialTLS(t, c.addr, pki.coordinatorTLS(t))

	name4 := checkpointFileName(4)
	if resp, err := push(ctx, peer, &dpcnnv1.PushFileRequest{JobId: "tiny", File: fileOf(name4, ckpts[4])}, ckpts[4], dpcnnv1.ChunkSize); err != nil || resp.AlreadyHeld || resp.CoordinatorId != "c1" {
		t.Fatalf("push %s: %v, %v", name4, resp, err)
	}
	before := folder(t, dir)
	if want := map[string]string{name4: fileOf(name4, ckpts[4]).Sha256}; !mapsEqual(before, want) {
		t.Fatalf("after one push the folder holds %v, want %v", before, want)
	}

	good := ckpts[8]
	name8 := checkpointFileName(8)
	corrupt := slices.Clone(good)
	corrupt[len(corrupt)/2] ^= 0x10
	wrongSum := fileOf(name8, good)
	wrongSum.Sha256 = fileOf(name8, corrupt).Sha256
	oversize := fileOf(name8, good)
	oversize.Size = maxReplicaFileSize + 1
	short, long := fileOf(name8, good), fileOf(name8, good)
	short.Size++
	long.Size--
	other8 := trainedCheckpoints(t, func() job.Spec { s := other; s.Epochs = 2; return s }())[8]

	noCert := dialTLS(t, c.addr, pki.clientTLS(t, "", ""))
	workerCert := dialTLS(t, c.addr, pki.clientTLS(t, secure.FileWorkerCert, secure.FileWorkerKey))
	etcdCert := dialTLS(t, c.addr, pki.clientTLS(t, secure.FileEtcdCert, secure.FileEtcdKey))
	strangerPKI := newTestPKI(t)
	strangerCfg := strangerPKI.coordinatorTLS(t)
	strangerCfg.RootCAs = pki.coordinatorTLS(t).RootCAs // trusts the server, but its own certificate is another CA's
	stranger := dialTLS(t, c.addr, strangerCfg)

	for _, tc := range []struct {
		name  string
		conn  *grpc.ClientConn
		first *dpcnnv1.PushFileRequest
		data  []byte
		chunk int
		code  codes.Code
		want  string
	}{
		{"no client certificate", noCert, &dpcnnv1.PushFileRequest{JobId: "tiny", File: fileOf(name8, good)}, good, dpcnnv1.ChunkSize,
			codes.Unauthenticated, "no verified client certificate"},
		{"a worker's certificate", workerCert, &dpcnnv1.PushFileRequest{JobId: "tiny", File: fileOf(name8, good)}, good, dpcnnv1.ChunkSize,
			codes.PermissionDenied, `the certificate of "CN=dpcnn worker,O=dpcnn" is not a coordinator's ("CN=dpcnn coordinator,O=dpcnn")`},
		{"etcd's certificate", etcdCert, &dpcnnv1.PushFileRequest{JobId: "tiny", File: fileOf(name8, good)}, good, dpcnnv1.ChunkSize,
			codes.PermissionDenied, `the certificate of "CN=dpcnn etcd,O=dpcnn" is not a coordinator's ("CN=dpcnn coordinator,O=dpcnn")`},
		{"a certificate of another CA", stranger, &dpcnnv1.PushFileRequest{JobId: "tiny", File: fileOf(name8, good)}, good, dpcnnv1.ChunkSize,
			codes.Unavailable, ""},
		{"an unknown job", peer, &dpcnnv1.PushFileRequest{JobId: "nosuch", File: fileOf(name8, good)}, good, dpcnnv1.ChunkSize,
			codes.NotFound, `job "nosuch" not found`},
		{"a job id that is a path", peer, &dpcnnv1.PushFileRequest{JobId: "../tiny", File: fileOf(name8, good)}, good, dpcnnv1.ChunkSize,
			codes.InvalidArgument, `job id "../tiny"`},
		{"a name that climbs out", peer, &dpcnnv1.PushFileRequest{JobId: "tiny", File: fileOf("../"+name8, good)}, good, dpcnnv1.ChunkSize,
			codes.InvalidArgument, `file name "../checkpoint-0000000008.ckpt" is a path`},
		{"a name in a subfolder", peer, &dpcnnv1.PushFileRequest{JobId: "tiny", File: fileOf("sub/"+name8, good)}, good, dpcnnv1.ChunkSize,
			codes.InvalidArgument, "is a path"},
		{"the parent folder", peer, &dpcnnv1.PushFileRequest{JobId: "tiny", File: fileOf("..", good)}, good, dpcnnv1.ChunkSize,
			codes.InvalidArgument, "is a path"},
		{"a name the leader never writes", peer, &dpcnnv1.PushFileRequest{JobId: "tiny", File: fileOf("checkpoint-8.ckpt", good)}, good, dpcnnv1.ChunkSize,
			codes.InvalidArgument, `file name "checkpoint-8.ckpt": want checkpoint-0000000042.ckpt`},
		{"no file", peer, &dpcnnv1.PushFileRequest{JobId: "tiny"}, good, dpcnnv1.ChunkSize,
			codes.InvalidArgument, "describes no file"},
		{"a wrong SHA-256", peer, &dpcnnv1.PushFileRequest{JobId: "tiny", File: wrongSum}, good, dpcnnv1.ChunkSize,
			codes.InvalidArgument, "the bytes have sha256 " + fileOf(name8, good).Sha256 + ", " + wrongSum.Sha256 + " announced"},
		{"a SHA-256 that is none", peer, &dpcnnv1.PushFileRequest{JobId: "tiny", File: &dpcnnv1.FileInfo{Name: name8, Size: int64(len(good)), Sha256: "abc"}}, good, dpcnnv1.ChunkSize,
			codes.InvalidArgument, `sha256 "abc": want 64 lowercase hex digits`},
		{"fewer bytes than announced", peer, &dpcnnv1.PushFileRequest{JobId: "tiny", File: short}, good, dpcnnv1.ChunkSize,
			codes.InvalidArgument, fmt.Sprintf("%d bytes, %d announced", len(good), short.Size)},
		{"more bytes than announced", peer, &dpcnnv1.PushFileRequest{JobId: "tiny", File: long}, good, dpcnnv1.ChunkSize,
			codes.InvalidArgument, fmt.Sprintf("more than the %d bytes announced", long.Size)},
		{"an oversize file", peer, &dpcnnv1.PushFileRequest{JobId: "tiny", File: oversize}, good, dpcnnv1.ChunkSize,
			codes.ResourceExhausted, "over the limit of"},
		{"an oversize chunk", peer, &dpcnnv1.PushFileRequest{JobId: "tiny", File: fileOf(name8, good)}, good, dpcnnv1.ChunkSize + 1,
			codes.ResourceExhausted, fmt.Sprintf("a chunk of %d bytes", dpcnnv1.ChunkSize+1)},
		{"a corrupt checkpoint", peer, &dpcnnv1.PushFileRequest{JobId: "tiny", File: fileOf(name8, corrupt)}, corrupt, dpcnnv1.ChunkSize,
			codes.InvalidArgument, "checksum"},
		{"a checkpoint of another step", peer, &dpcnnv1.PushFileRequest{JobId: "tiny", File: fileOf(checkpointFileName(12), good)}, good, dpcnnv1.ChunkSize,
			codes.InvalidArgument, "the checkpoint is of step 8"},
		{"a checkpoint of another job", peer, &dpcnnv1.PushFileRequest{JobId: "tiny", File: fileOf(name8, other8)}, other8, dpcnnv1.ChunkSize,
			codes.InvalidArgument, fmt.Sprintf("the checkpoint is of seed %d, the job's seed is %d", other.Seed, spec.Seed)},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			resp, err := push(ctx, tc.conn, tc.first, tc.data, tc.chunk)
			if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.want) {
				t.Fatalf("push: %v, %v; want %v mentioning %q", resp, err, tc.code, tc.want)
			}
			if after := folder(t, dir); !mapsEqual(after, before) {
				t.Fatalf("after a refused push the folder holds %v, before it %v", after, before)
			}
		})
	}
	// Malformed streams.
	for _, tc := range []struct {
		name string
		msgs []*dpcnnv1.PushFileRequest
		want string
	}{
		{"no message", nil, "no message"},
		{"a gap", []*dpcnnv1.PushFileRequest{{JobId: "tiny", File: fileOf(name8, good), Data: good[:10]}, {Offset: 20, Data: good[20:]}}, "a chunk at offset 20 after 10 bytes"},
		{"the header twice", []*dpcnnv1.PushFileRequest{{JobId: "tiny", File: fileOf(name8, good), Data: good[:10]}, {JobId: "tiny", Offset: 10, Data: good[10:]}},
			"on the first message only"},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			stream, err := dpcnnv1.NewReplicationServiceClient(peer).PushFile(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range tc.msgs {
				if stream.Send(m) != nil {
					break
				}
			}
			resp, err := stream.CloseAndRecv()
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("push: %v, %v; want INVALID_ARGUMENT mentioning %q", resp, err, tc.want)
			}
			if after := folder(t, dir); !mapsEqual(after, before) {
				t.Fatalf("after a refused push the folder holds %v, before it %v", after, before)
			}
		})
	}

	// Good pushes: the two newest checkpoints stay, in small chunks too; a
	// repeat is answered without writing; the model is stored beside them.
	for _, step := range []int64{8, 12} {
		resp, err := push(ctx, peer, &dpcnnv1.PushFileRequest{JobId: "tiny", File: fileOf(checkpointFileName(step), ckpts[step])}, ckpts[step], 4096)
		if err != nil || resp.AlreadyHeld {
			t.Fatalf("push step %d: %v, %v", step, resp, err)
		}
	}
	resp, err := push(ctx, peer, &dpcnnv1.PushFileRequest{JobId: "tiny", File: fileOf(checkpointFileName(12), ckpts[12])}, ckpts[12], dpcnnv1.ChunkSize)
	if err != nil || !resp.AlreadyHeld {
		t.Fatalf("push step 12 again: %v, %v; want it already held", resp, err)
	}
	onnx := []byte("not really ONNX: the receiver checks only the size and the SHA-256 of a model")
	if _, err := push(ctx, peer, &dpcnnv1.PushFileRequest{JobId: "tiny", File: fileOf(modelFileName, onnx)}, onnx, dpcnnv1.ChunkSize); err != nil {
		t.Fatalf("push the model: %v", err)
	}
	want := map[string]string{
		checkpointFileName(8):  fileOf("", ckpts[8]).Sha256,
		checkpointFileName(12): fileOf("", ckpts[12]).Sha256,
		modelFileName:          fileOf("", onnx).Sha256,
	}
	if got := folder(t, dir); !mapsEqual(got, want) {
		t.Fatalf("the folder holds %v, want %v", got, want)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// Two coordinators over mutual TLS, each with its own data folder: every
// checkpoint the leader records is already on the standby's disk. The
// leader stops and its folder is deleted; the standby resumes from the
// latest checkpoint, redoing at most one checkpoint interval, and ends with
// the local Trainer's parameters; the checkpoint and the model download from
// it. A third coordinator that joins after the job ended gets its final
// checkpoint and model.
func TestReplicationFailoverWithoutSharedDisk(t *testing.T) {
	cli := testEtcd(t)
	pki := newTestPKI(t)
	dir1, dir2, dir3 := t.TempDir(), t.TempDir(), t.TempDir()
	first := startTLSCoordinator(t, cli, pki, "c1", dir1, 0)
	waitLeading(t, first)
	second := startTLSCoordinator(t, cli, pki, "c2", dir2, 0)
	waitInSync(t, first, "c2")
	startTLSDaemons(t, cli, pki, 2)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()

	spec := submitCheckpointingJob(ctx, t, first, 2)
	const interval = 4 // steps per epoch; a checkpoint every epoch
	j, err := dpcnnv1.NewJobServiceClient(first.conn).GetJob(ctx, &dpcnnv1.GetJobRequest{JobId: "tiny"})
	if err != nil {
		t.Fatal(err)
	}
	recorded := j.LatestCheckpoint
	onStandby := folder(t, filepath.Join(dir2, "jobs", "tiny"))
	newest := int64(-1)
	for name := range onStandby {
		if step, ok := checkpointStep(name); ok {
			newest = max(newest, step)
		}
	}
	if sum, ok := onStandby[checkpointFileName(recorded.Step)]; newest < recorded.Step || ok && sum != recorded.Sha256 {
		t.Fatalf("the leader recorded the checkpoint at step %d (sha256 %s); the standby holds %v", recorded.Step, recorded.Sha256, onStandby)
	}

	first.stop()
	if err := os.RemoveAll(dir1); err != nil {
		t.Fatal(err)
	}
	rec, _, err := keyspace.GetJob(ctx, cli, "/test/", "tiny")
	if err != nil {
		t.Fatal(err)
	}
	waitLeading(t, second)
	evs := watchToEnd(t, dpcnnv1.NewJobServiceClient(second.conn), "tiny")
	resumed := int64(-1)
	for _, ev := range evs {
		fmt.Sscanf(ev.GetLog().GetMessage(), "resuming the running job from its checkpoint at step %d", &resumed)
	}
	if resumed < rec.Status.CheckpointStep {
		t.Fatalf("the old leader recorded step %d as its latest checkpoint; the new one resumed from %d (events %v)", rec.Status.CheckpointStep, resumed, evs)
	}
	got := checkTinyJob(t, cli, second, spec, 2)
	if redone := got.Progress.GetStepsRedone(); redone > interval || rec.Status.Step-resumed > interval {
		t.Fatalf("steps redone: %d reported, %d..%d seen; want at most one checkpoint interval (%d)", redone, resumed+1, rec.Status.Step, interval)
	}
	t.Logf("the old leader recorded step %d and its checkpoint at step %d; the new leader resumed from %d and reports %d steps redone",
		rec.Status.Step, rec.Status.CheckpointStep, resumed, got.Progress.GetStepsRedone())

	// A standby that joins late gets the final checkpoint and the model.
	startTLSCoordinator(t, cli, pki, "c3", dir3, 0)
	want := folder(t, filepath.Join(dir2, "jobs", "tiny"))
	final := checkpointFileName(got.LatestCheckpoint.Step)
	if want[final] != got.LatestCheckpoint.Sha256 || want[modelFileName] == "" {
		t.Fatalf("the new leader holds %v; want %s with sha256 %s and the model", want, final, got.LatestCheckpoint.Sha256)
	}
	for deadline := time.Now().Add(hangGuard); ; time.Sleep(20 * time.Millisecond) {
		have := folder(t, filepath.Join(dir3, "jobs", "tiny"))
		if have[final] == want[final] && have[modelFileName] == want[modelFileName] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the late standby holds %v; want %s and %s as the leader holds them (%v)", have, final, modelFileName, want)
		}
	}
}

// blackHole accepts connections on 127.0.0.1 and never answers, as a hung
// process would; it closes them when the test ends.
func blackHole(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return lis.Addr().String()
}

// A standby that never answers costs the job one replication timeout: the
// leader records the checkpoint without it, says so in the job log, stops
// waiting for it, and the job ends with the local Trainer's parameters.
func TestReplicationDoesNotWaitForAHungStandby(t *testing.T) {
	cli := testEtcd(t)
	pki := newTestPKI(t)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	if _, err := cli.Put(ctx, keyspace.CoordinatorKey("/test/", "hung"), blackHole(t)); err != nil {
		t.Fatal(err)
	}
	c := startTLSCoordinator(t, cli, pki, "c1", t.TempDir(), 300*time.Millisecond)
	waitLeading(t, c)
	startTLSDaemons(t, cli, pki, 2)
	spec := tinySpec()
	spec.Epochs = 3
	jobs := dpcnnv1.NewJobServiceClient(c.conn)
	if _, err := jobs.SubmitJob(ctx, &dpcnnv1.SubmitJobRequest{Spec: spec.JSON(), JobId: "tiny"}); err != nil {
		t.Fatal(err)
	}
	var warnings []string
	for _, ev := range watchToEnd(t, jobs, "tiny") {
		if l := ev.GetLog(); l != nil && strings.Contains(l.Message, "did not reach the standby coordinator") {
			warnings = append(warnings, l.Message)
		}
	}
	if len(warnings) != 1 || !strings.HasPrefix(warnings[0], "the checkpoint at step 4 did not reach the standby coordinator hung (timeout 300ms)") {
		t.Fatalf("job log warnings %q; want one, about the first checkpoint and the standby hung", warnings)
	}
	checkTinyJob(t, cli, c, spec, 2)
}

// With no standby, nothing is waited for, and the job log says that the
// checkpoints are on the leader's disk alone.
func TestReplicationWithoutStandby(t *testing.T) {
	cli := testEtcd(t)
	c := startCoordinator(t, cli, "c1", t.TempDir())
	waitLeading(t, c)
	startDaemons(t, cli, 2)
	runTinyJob(t, cli, c, tinySpec(), 2, false)
	evs, err := dpcnnv1.NewJobServiceClient(c.conn).ListJobEvents(context.Background(), &dpcnnv1.ListJobEventsRequest{JobId: "tiny"})
	if err != nil {
		t.Fatal(err)
	}
	said := 0
	for _, ev := range evs.Events {
		if strings.HasPrefix(ev.GetLog().GetMessage(), "no standby coordinator is live: the checkpoints are on this coordinator's disk alone") {
			said++
		}
	}
	if said != 1 {
		t.Fatalf("the job log says %d times that no standby is live, want once: %v", said, evs.Events)
	}
}
