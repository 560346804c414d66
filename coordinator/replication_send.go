package coordinator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	keyspace "github.com/dpcnn/dpcnn/cluster"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
	"github.com/dpcnn/dpcnn/secure"
)

// replicator pushes one term's checkpoints and models to the standby
// coordinators: the coordinators announced in etcd, less this one. See
// replication.go for what is waited for.
type replicator struct {
	s       *Server
	ctx     context.Context // the term's
	timeout time.Duration

	mu       sync.Mutex
	standbys map[string]*standby // by coordinator id
	alone    map[string]bool     // jobs told that no standby is live
	wg       sync.WaitGroup      // the standbys' catch-up loops
}

// standby is one other coordinator as the leader pushes to it.
type standby struct {
	id, addr string
	ctx      context.Context // ends when it leaves the registry or the term ends
	cancel   context.CancelFunc
	conn     *grpc.ClientConn // nil when it cannot be dialed (dialErr)
	dialErr  error
	wake     chan struct{} // asks the catch-up loop for a round

	mu sync.Mutex
	// behind says that the standby may lack a job's newest files:
	// checkpoints do not wait for it until the catch-up has sent them.
	// lapses counts the times it fell behind, so that a round that began
	// before a failure does not declare it caught up.
	behind bool
	lapses int
	held   map[string]heldFiles // by job id: what it acknowledged
}

// heldFiles is what a standby holds of one job, as far as this term knows.
type heldFiles struct {
	checkpoint string // the newest checkpoint's file name
	model      bool
}

func newReplicator(s *Server, ctx context.Context) *replicator {
	return &replicator{s: s, ctx: ctx, timeout: s.cfg.Replication.Timeout,
		standbys: map[string]*standby{}, alone: map[string]bool{}}
}

// run follows the coordinator registry in etcd until the term ends, adding
// and removing standbys as they come and go; then it stops them all. Nil
// (replication disabled) returns at once.
func (r *replicator) run() {
	if r == nil {
		return
	}
	defer func() {
		r.mu.Lock()
		for id, sb := range r.standbys {
			r.stop(id, sb)
		}
		r.mu.Unlock()
		r.wg.Wait()
	}()
	prefix := keyspace.CoordinatorKey(r.s.cfg.Prefix, "")
	for r.ctx.Err() == nil {
		resp, err := r.s.cfg.Etcd.Get(r.ctx, prefix, clientv3.WithPrefix())
		if err != nil {
			if r.ctx.Err() == nil {
				r.s.log.Warn("replication: read the coordinators from etcd", "err", err)
				keyspace.Sleep(r.ctx, time.Second)
			}
			continue
		}
		announced := map[string]string{}
		for _, kv := range resp.Kvs {
			if id := strings.TrimPrefix(string(kv.Key), prefix); id != r.s.cfg.ID {
				announced[id] = string(kv.Value)
			}
		}
		r.reconcile(announced)
		// Wait for the next change, then read the whole registry again.
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(r.ctx))
		for wr := range r.s.cfg.Etcd.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1)) {
			if wr.Err() != nil || len(wr.Events) > 0 {
				break
			}
		}
		cancel()
	}
}

// reconcile makes the standbys those announced (id → address).
func (r *replicator) reconcile(announced map[string]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, sb := range r.standbys {
		if announced[id] != sb.addr {
			r.stop(id, sb)
		}
	}
	for id, addr := range announced {
		if r.standbys[id] != nil {
			continue
		}
		ctx, cancel := context.WithCancel(r.ctx)
		sb := &standby{id: id, addr: addr, ctx: ctx, cancel: cancel, wake: make(chan struct{}, 1),
			behind: true, held: map[string]heldFiles{}}
		sb.conn, sb.dialErr = r.dial(addr)
		r.standbys[id] = sb
		r.s.log.Info("replication: standby coordinator", "standby", id, "address", addr)
		r.wg.Go(func() { r.catchUp(sb) })
	}
}

// stop forgets a standby. The caller holds r.mu.
func (r *replicator) stop(id string, sb *standby) {
	sb.cancel()
	if sb.conn != nil {
		sb.conn.Close()
	}
	delete(r.standbys, id)
}

// dial connects to a standby as ReplicationConfig.ClientTLS says.
func (r *replicator) dial(addr string) (*grpc.ClientConn, error) {
	var creds credentials.TransportCredentials
	switch tc := r.s.cfg.Replication.ClientTLS; {
	case tc != nil:
		creds = credentials.NewTLS(tc.Clone())
	case r.s.cfg.Credentials == nil:
		if err := secure.CheckPlaintext("replication: standby coordinator", addr); err != nil {
			return nil, err
		}
		creds = insecure.NewCredentials()
	default:
		return nil, errors.New("this coordinator serves TLS but has no client TLS to dial the other coordinators with (ReplicationConfig.ClientTLS)")
	}
	return grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
}

// replication is what became of one file pushed to the standbys.
type replication struct {
	standbys int              // live when it was pushed
	acked    []string         // stored it (or held it already)
	behind   []string         // not waited for: catching up
	failed   map[string]error // did not store it in time
}

// replicate pushes the job's file at path, described by info, to every
// standby in sync and waits until each has stored it or the timeout has
// passed. A standby that fails falls behind; one that is behind is not
// waited for, and its catch-up is woken instead.
func (r *replicator) replicate(jobID, path string, info *dpcnnv1.FileInfo) replication {
	r.mu.Lock()
	all := make([]*standby, 0, len(r.standbys))
	for _, sb := range r.standbys {
		all = append(all, sb)
	}
	r.mu.Unlock()
	out := replication{standbys: len(all), failed: map[string]error{}}
	ctx, cancel := context.WithTimeout(r.ctx, r.timeout)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, sb := range all {
		if sb.isBehind() {
			out.behind = append(out.behind, sb.id)
			sb.nudge()
			continue
		}
		wg.Go(func() {
			start := time.Now()
			resp, err := sb.push(ctx, jobID, path, info)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				out.failed[sb.id] = err
				sb.fallBehind()
				return
			}
			sb.hold(jobID, info.Name)
			out.acked = append(out.acked, sb.id)
			r.s.log.Debug("replicated", "job", jobID, "file", info.Name, "standby", sb.id,
				"alreadyHeld", resp.AlreadyHeld, "took", time.Since(start).Round(time.Millisecond))
		})
	}
	wg.Wait()
	slices.Sort(out.acked)
	slices.Sort(out.behind)
	return out
}

// catchUp brings a standby that is behind up to date, a round at a time:
// when it joins, whenever it falls behind, and on failure again with
// backoff, until it leaves or the term ends.
func (r *replicator) catchUp(sb *standby) {
	retries := keyspace.Backoff(replicaRetryMin, replicaRetryMax)
	for {
		lapses := sb.lapseCount()
		err := r.sendNewest(sb)
		var retry *time.Timer
		if err != nil {
			if sb.ctx.Err() != nil {
				return
			}
			wait := retries.NextBackOff()
			r.s.log.Warn("replication: standby coordinator behind; retrying", "standby", sb.id, "address", sb.addr, "err", err, "retryIn", wait)
			retry = time.NewTimer(wait)
		} else {
			if sb.caughtUp(lapses) {
				r.s.log.Info("replication: standby coordinator up to date", "standby", sb.id)
			}
			retries.Reset()
			retry = time.NewTimer(time.Duration(math.MaxInt64)) // only a nudge starts the next round
		}
		select {
		case <-sb.ctx.Done():
			retry.Stop()
			return
		case <-sb.wake:
		case <-retry.C:
		}
		retry.Stop()
	}
}

// sendNewest pushes to the standby what it does not hold yet of every job:
// the newest checkpoint in this coordinator's folder, and the model. A file
// the standby refuses for what it is (not for who sends it) is reported and
// not sent again.
func (r *replicator) sendNewest(sb *standby) error {
	for _, f := range r.s.replicaFiles() {
		if sb.holds(f.job, f.name) {
			continue
		}
		info, err := describeFile(f.path, f.name)
		if notExist(err) {
			continue // pruned meanwhile: a newer one took its place
		}
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(sb.ctx, r.timeout)
		_, err = sb.push(ctx, f.job, f.path, info)
		cancel()
		switch status.Code(err) {
		case codes.OK:
		case codes.InvalidArgument, codes.NotFound:
			r.s.log.Warn("replication: the standby refused a file", "standby", sb.id, "job", f.job, "file", f.name, "err", err)
		default:
			return fmt.Errorf("job %s, %s: %w", f.job, f.name, err)
		}
		sb.hold(f.job, f.name)
	}
	return nil
}

// replicaFile is a file of a job that standbys should hold.
type replicaFile struct{ job, name, path string }

// replicaFiles lists every job's newest checkpoint file in this
// coordinator's folder and its model: jobs that have not ended first (a
// failover needs theirs most), then the newest.
func (s *Server) replicaFiles() []replicaFile {
	type jobRef struct {
		id    string
		ended bool
		rev   int64
	}
	s.mu.Lock()
	jobs := make([]jobRef, 0, len(s.jobs))
	for _, e := range s.jobs {
		jobs = append(jobs, jobRef{e.id, e.status.Ended(), e.revision})
	}
	s.mu.Unlock()
	slices.SortFunc(jobs, func(a, b jobRef) int {
		if a.ended != b.ended {
			if a.ended {
				return 1
			}
			return -1
		}
		return cmp.Compare(b.rev, a.rev)
	})
	var files []replicaFile
	for _, j := range jobs {
		dir := s.jobDir(j.id)
		if paths, err := jobCheckpoints(dir); err == nil && len(paths) > 0 {
			files = append(files, replicaFile{j.id, filepath.Base(paths[0]), paths[0]})
		}
		if p := filepath.Join(dir, modelFileName); fileExists(p) {
			files = append(files, replicaFile{j.id, modelFileName, p})
		}
	}
	return files
}

// push sends the file at path to the standby, as info describes it, and
// returns its acknowledgement.
func (sb *standby) push(ctx context.Context, jobID, path string, info *dpcnnv1.FileInfo) (*dpcnnv1.PushFileResponse, error) {
	if sb.conn == nil {
		return nil, sb.dialErr
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	stream, err := dpcnnv1.NewReplicationServiceClient(sb.conn).PushFile(ctx)
	if err != nil {
		return nil, err
	}
	msg := &dpcnnv1.PushFileRequest{JobId: jobID, File: info}
	for offset := int64(0); ; {
		data := make([]byte, min(int64(dpcnnv1.ChunkSize), info.Size-offset))
		if _, err := io.ReadFull(f, data); err != nil {
			return nil, fmt.Errorf("read %s at byte %d of %d: %w", path, offset, info.Size, err)
		}
		msg.Offset, msg.Data = offset, data
		if err := stream.Send(msg); errors.Is(err, io.EOF) {
			break // the standby answered early (it holds the file, or refused it): its answer follows
		} else if err != nil {
			return nil, err
		}
		if offset += int64(len(data)); offset >= info.Size {
			break
		}
		msg = &dpcnnv1.PushFileRequest{}
	}
	return stream.CloseAndRecv()
}

func (sb *standby) isBehind() bool {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.behind
}

// fallBehind marks the standby behind and wakes its catch-up.
func (sb *standby) fallBehind() {
	sb.mu.Lock()
	sb.behind = true
	sb.lapses++
	sb.mu.Unlock()
	sb.nudge()
}

func (sb *standby) lapseCount() int {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.lapses
}

// caughtUp ends the standby's being behind, unless it fell behind again
// since lapses was read; it reports whether it was behind.
func (sb *standby) caughtUp(lapses int) bool {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	was := sb.behind
	if sb.lapses == lapses {
		sb.behind = false
	}
	return was && !sb.behind
}

func (sb *standby) nudge() {
	select {
	case sb.wake <- struct{}{}:
	default:
	}
}

func (sb *standby) holds(jobID, name string) bool {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	h := sb.held[jobID]
	return name == modelFileName && h.model || name == h.checkpoint
}

func (sb *standby) hold(jobID, name string) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	h := sb.held[jobID]
	if name == modelFileName {
		h.model = true
	} else if step, ok := checkpointStep(name); ok {
		if old, ok := checkpointStep(h.checkpoint); !ok || step > old {
			h.checkpoint = name
		}
	}
	sb.held[jobID] = h
}

// replicate pushes a file of the job that this coordinator has just
// written durably to the standbys (see replicator.replicate) and says in
// the job log what did not arrive; what is the file in words, for it.
func (d *driver) replicate(path string, file *dpcnnv1.FileInfo, what string) {
	r := d.l.replicas
	if r == nil {
		return
	}
	out := r.replicate(d.id, path, file)
	if out.standbys == 0 {
		r.mu.Lock()
		said := r.alone[d.id]
		r.alone[d.id] = true
		r.mu.Unlock()
		if !said {
			d.logLine(dpcnnv1.LogLevel_LOG_LEVEL_INFO, "no standby coordinator is live: the checkpoints are on this coordinator's disk alone until one joins")
		}
		return
	}
	if r.ctx.Err() != nil {
		return // the term ended: the pushes were cut short on purpose
	}
	ids := make([]string, 0, len(out.failed))
	for id := range out.failed {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		d.logLine(dpcnnv1.LogLevel_LOG_LEVEL_WARN, fmt.Sprintf("%s did not reach the standby coordinator %s (timeout %s): %v; "+
			"it is sent again in the background, and until it arrives a failover to %s redoes more steps",
			what, id, r.timeout, out.failed[id], id))
	}
	if len(out.behind) > 0 {
		d.log.Info("replication: standbys catching up, not waited for", "file", filepath.Base(path), "standbys", out.behind)
	}
}
