package coordinator

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	keyspace "github.com/dpcnn/dpcnn/cluster"
	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// replicaReceiver serves ReplicationService: it stores the files another
// coordinator (the leader) pushes into this coordinator's data folder.
// Every coordinator serves it, leading or not.
type replicaReceiver struct {
	dpcnnv1.UnimplementedReplicationServiceServer
	s *Server
	// peers is the subject every coordinator's certificate carries (this
	// one's); nil when this coordinator has none (plaintext, or no
	// ClientTLS).
	peers *pkix.Name
	// mu orders the final steps of storing a file (rename, prune), so that
	// two pushes to one job folder never prune each other's files.
	mu sync.Mutex
}

func newReplicaReceiver(s *Server) (*replicaReceiver, error) {
	r := &replicaReceiver{s: s}
	if t := s.cfg.Replication.ClientTLS; t != nil && len(t.Certificates) > 0 && len(t.Certificates[0].Certificate) > 0 {
		own := t.Certificates[0].Leaf
		if own == nil {
			var err error
			if own, err = x509.ParseCertificate(t.Certificates[0].Certificate[0]); err != nil {
				return nil, fmt.Errorf("coordinator: replication: this coordinator's certificate: %w", err)
			}
		}
		r.peers = &own.Subject
	}
	return r, nil
}

// PushFile implements ReplicationService.
func (r *replicaReceiver) PushFile(stream grpc.ClientStreamingServer[dpcnnv1.PushFileRequest, dpcnnv1.PushFileResponse]) error {
	ctx := stream.Context()
	if err := r.checkCaller(ctx); err != nil {
		return err
	}
	first, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return status.Error(codes.InvalidArgument, "push file: no message: the first names the job and the file")
	}
	if err != nil {
		return err
	}
	step, isCheckpoint, err := r.checkHeader(first)
	if err != nil {
		return err
	}
	id, info := first.JobId, first.File
	spec, err := r.jobSpec(ctx, id)
	if err != nil {
		return err
	}
	final := filepath.Join(r.s.jobDir(id), info.Name)
	if held(final, info) {
		return stream.SendAndClose(&dpcnnv1.PushFileResponse{CoordinatorId: r.s.cfg.ID, AlreadyHeld: true})
	}
	tmp, err := createAtomic(final)
	if err != nil {
		return status.Errorf(codes.Internal, "push file %s/%s: %v", id, info.Name, err)
	}
	defer tmp.discard() // unless installed: a refused push leaves nothing behind
	if err := receiveInto(tmp, stream, first, info); err != nil {
		return fmt.Errorf("push file %s/%s: %w", id, info.Name, err)
	}
	if err := tmp.finish(); err != nil {
		return status.Errorf(codes.Internal, "push file %s/%s: %v", id, info.Name, err)
	}
	if isCheckpoint {
		// The bytes are the announced ones; they must also be a sound
		// checkpoint (its CRC) of the named step of this job.
		c, err := ReadCheckpointFile(tmp.Name())
		switch {
		case err != nil:
			return status.Errorf(codes.InvalidArgument, "push file %s/%s: %v", id, info.Name, err)
		case c.Step != step:
			return status.Errorf(codes.InvalidArgument, "push file %s/%s: the checkpoint is of step %d", id, info.Name, c.Step)
		case c.Seed != spec.Seed:
			return status.Errorf(codes.InvalidArgument, "push file %s/%s: the checkpoint is of seed %d, the job's seed is %d", id, info.Name, c.Seed, spec.Seed)
		}
	}
	if err := r.install(tmp, isCheckpoint); err != nil {
		return status.Errorf(codes.Internal, "push file %s/%s: %v", id, info.Name, err)
	}
	r.s.log.Info("replica stored", "job", id, "file", info.Name, "bytes", info.Size, "from", peerAddr(ctx))
	return stream.SendAndClose(&dpcnnv1.PushFileResponse{CoordinatorId: r.s.cfg.ID})
}

// checkCaller lets only coordinators push: over TLS, the caller's verified
// certificate must carry the subject of this coordinator's own and the
// serverAuth usage, which cnnctl's certificates lack (the workers' carry it,
// for their reduce service, under another subject; the
// Authenticator has already refused callers without a verified
// certificate). Over plaintext, allowed on loopback only, the connection
// itself was trusted explicitly, as for the other services.
func (r *replicaReceiver) checkCaller(ctx context.Context) error {
	if r.s.cfg.Credentials == nil {
		return nil
	}
	var leaf *x509.Certificate
	if p, ok := peer.FromContext(ctx); ok {
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.VerifiedChains) > 0 && len(info.State.VerifiedChains[0]) > 0 {
			leaf = info.State.VerifiedChains[0][0]
		}
	}
	code, reason := codes.PermissionDenied, ""
	switch {
	case leaf == nil:
		code, reason = codes.Unauthenticated, "no verified client certificate"
	case r.peers == nil:
		reason = fmt.Sprintf("coordinator %s has no certificate of its own to recognise the other coordinators' by (ReplicationConfig.ClientTLS)", r.s.cfg.ID)
	case !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth):
		reason = fmt.Sprintf("the certificate of %q is not a coordinator's: it lacks the serverAuth usage", leaf.Subject)
	case leaf.Subject.String() != r.peers.String():
		reason = fmt.Sprintf("the certificate of %q is not a coordinator's (%q)", leaf.Subject, r.peers)
	default:
		return nil
	}
	method := dpcnnv1.ReplicationService_PushFile_FullMethodName
	r.s.log.Warn("refused replication call", "peer", peerAddr(ctx), "method", method, "reason", reason)
	return status.Errorf(code, "%s: %s", method, reason)
}

// checkHeader checks what the first message of a push says; it returns the
// step of a checkpoint.
func (r *replicaReceiver) checkHeader(m *dpcnnv1.PushFileRequest) (step int64, isCheckpoint bool, err error) {
	if err := keyspace.CheckJobID(m.JobId); err != nil {
		return 0, false, status.Errorf(codes.InvalidArgument, "push file: %v", err)
	}
	info := m.File
	if info == nil {
		return 0, false, status.Errorf(codes.InvalidArgument, "push file %s: the first message describes no file", m.JobId)
	}
	name := info.Name
	if step, isCheckpoint = checkpointStep(name); isCheckpoint && name != checkpointFileName(step) {
		isCheckpoint = false // "checkpoint-7.ckpt": not a name the leader writes
	}
	switch {
	case strings.ContainsAny(name, `/\`) || name == "." || name == "..":
		return 0, false, status.Errorf(codes.InvalidArgument, "push file %s: file name %q is a path: want a name in the job's folder", m.JobId, name)
	case !isCheckpoint && name != modelFileName:
		return 0, false, status.Errorf(codes.InvalidArgument, "push file %s: file name %q: want %s (a checkpoint, the step in ten digits) or %s",
			m.JobId, name, checkpointFileName(42), modelFileName)
	case info.Size < 0:
		return 0, false, status.Errorf(codes.InvalidArgument, "push file %s/%s: size %d", m.JobId, name, info.Size)
	case info.Size > maxReplicaFileSize:
		return 0, false, status.Errorf(codes.ResourceExhausted, "push file %s/%s: %d bytes, over the limit of %d", m.JobId, name, info.Size, int64(maxReplicaFileSize))
	case !isSHA256(info.Sha256):
		return 0, false, status.Errorf(codes.InvalidArgument, "push file %s/%s: sha256 %q: want 64 lowercase hex digits", m.JobId, name, info.Sha256)
	}
	return step, isCheckpoint, nil
}

// jobSpec reads the job's spec from etcd: a push for a job etcd does not
// know is refused.
func (r *replicaReceiver) jobSpec(ctx context.Context, id string) (job.Spec, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rec, found, err := keyspace.GetJob(ctx, r.s.cfg.Etcd, r.s.cfg.Prefix, id)
	switch {
	case err != nil:
		return job.Spec{}, status.Errorf(codes.Unavailable, "push file %s: read the job from etcd: %v", id, err)
	case !found:
		return job.Spec{}, status.Errorf(codes.NotFound, "push file: job %q not found", id)
	}
	spec, err := job.Parse(rec.Spec)
	if err != nil {
		return job.Spec{}, status.Errorf(codes.InvalidArgument, "push file %s: the job's spec: %v", id, err)
	}
	return spec, nil
}

// receiveInto writes the pushed bytes to f, starting with first's, and
// checks them against info: offsets in order, no chunk over ChunkSize,
// exactly info.Size bytes with info.Sha256.
func receiveInto(f io.Writer, stream grpc.ClientStreamingServer[dpcnnv1.PushFileRequest, dpcnnv1.PushFileResponse], first *dpcnnv1.PushFileRequest, info *dpcnnv1.FileInfo) error {
	h := sha256.New()
	w := io.MultiWriter(f, h)
	var n int64
	for m := first; ; {
		switch {
		case m != first && (m.JobId != "" || m.File != nil):
			return status.Error(codes.InvalidArgument, "the job and the file are named on the first message only")
		case m.Offset != n:
			return status.Errorf(codes.InvalidArgument, "a chunk at offset %d after %d bytes", m.Offset, n)
		case len(m.Data) > dpcnnv1.ChunkSize:
			return status.Errorf(codes.ResourceExhausted, "a chunk of %d bytes, over the %d a chunk may carry", len(m.Data), dpcnnv1.ChunkSize)
		case n+int64(len(m.Data)) > info.Size:
			return status.Errorf(codes.InvalidArgument, "more than the %d bytes announced", info.Size)
		}
		if _, err := w.Write(m.Data); err != nil {
			return status.Errorf(codes.Internal, "%v", err)
		}
		n += int64(len(m.Data))
		var err error
		if m, err = stream.Recv(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return err
		}
	}
	if n != info.Size {
		return status.Errorf(codes.InvalidArgument, "%d bytes, %d announced", n, info.Size)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != info.Sha256 {
		return status.Errorf(codes.InvalidArgument, "the bytes have sha256 %s, %s announced", sum, info.Sha256)
	}
	return nil
}

// install puts the verified file into place; after a checkpoint it
// removes the job's checkpoints older than its two newest, as the leader
// keeps them.
func (r *replicaReceiver) install(f *atomicFile, isCheckpoint bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := f.install(); err != nil {
		return err
	}
	if !isCheckpoint {
		return nil
	}
	dir := filepath.Dir(f.final)
	paths, err := jobCheckpoints(dir)
	if err != nil || len(paths) <= 2 {
		return err
	}
	keep, _ := checkpointStep(filepath.Base(paths[1]))
	if err := pruneCheckpoints(dir, keep); err != nil {
		r.s.log.Warn("remove old replicated checkpoints", "dir", dir, "err", err)
	}
	return nil
}

// held says whether the file at path has the size and SHA-256 of info.
func held(path string, info *dpcnnv1.FileInfo) bool {
	st, err := os.Stat(path)
	if err != nil || !st.Mode().IsRegular() || st.Size() != info.Size {
		return false
	}
	held, err := describeFile(path, info.Name)
	return err == nil && held.Sha256 == info.Sha256
}

func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return "unknown"
}

// notExist says whether err is a missing file.
func notExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
