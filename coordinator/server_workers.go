package coordinator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	keyspace "github.com/dpcnn/dpcnn/cluster"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// remoteWorker is a worker that joined this leader.
type remoteWorker struct {
	join    *dpcnnv1.JoinRequest
	session string
	joined  time.Time
	stream  *workStream // the open Work stream; nil when none
	lost    bool        // its last stream ended
}

// workStream is one open Work stream of a worker. The driver of the
// running job queues messages in out; the stream's handler sends them.
type workStream struct {
	worker  string
	backend string
	speed   float64 // images/s the worker joined with
	deltas  bool    // the worker applies parameter deltas (JoinRequest.accepts_params_delta)
	reduce  string  // where it serves ReduceService (JoinRequest.reduce_address); "" when not
	relays  bool    // it fetches its parameters down the tree (JoinRequest.relays_params)
	ctx     context.Context
	cancel  context.CancelCauseFunc
	out     *mailbox[*dpcnnv1.CoordinatorMessage]

	lastSeen atomic.Int64 // unix nanos of the last message received

	mu          sync.Mutex
	outstanding map[uint64]bool      // assignments sent and not yet answered or withdrawn
	routed      map[uint64]bool      // those of them whose results go up a tree of reducers
	sending     map[uint64]time.Time // when the sending of an outstanding assignment began
	measured    float64              // images/s timed from its results; 0 until then
	job         string               // the job whose driver took it in
	// reducerGroups counts the groups of the current step's tree of
	// reducers it adds.
	reducerGroups int
}

// send queues m for the worker; it does nothing once the stream ended.
func (w *workStream) send(m *dpcnnv1.CoordinatorMessage) { w.out.Put(m) }

func (w *workStream) setOutstanding(id uint64, on bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if on {
		w.outstanding[id] = true
	} else {
		delete(w.outstanding, id)
		delete(w.sending, id)
		delete(w.routed, id)
	}
}

// setRouted marks an outstanding assignment as answered through a tree of
// reducers: the worker rightly stops listing it before its answer comes.
func (w *workStream) setRouted(id uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.routed == nil {
		w.routed = map[uint64]bool{}
	}
	w.routed[id] = true
}

// sendingStarts notes that the sending of m begins, when m is an
// assignment, so that its result's round trip can be timed.
func (w *workStream) sendingStarts(m *dpcnnv1.CoordinatorMessage) {
	a := m.GetAssignment()
	if a == nil {
		return
	}
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.outstanding[a.AssignmentId] {
		if w.sending == nil {
			w.sending = map[uint64]time.Time{}
		}
		w.sending[a.AssignmentId] = now
	}
}

// answered marks an assignment answered and returns the round trip from
// the start of its sending (0 when that was not seen).
func (w *workStream) answered(id uint64) time.Duration {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	var rtt time.Duration
	if at, ok := w.sending[id]; ok {
		rtt = now.Sub(at)
	}
	delete(w.outstanding, id)
	delete(w.sending, id)
	delete(w.routed, id)
	return rtt
}

// checkBusy compares a heartbeat's list of the assignments the worker holds
// with those it was sent and has not answered. A stream delivers in order
// and the assignment IDs it carries grow (see assignmentIDs), so when the
// worker lists an assignment, it received every one sent before it: one of
// those still outstanding that it does not list either never reached it or
// was dropped by it. The stream is then not to be trusted; the error
// (DATA_LOSS) ends it, so that the worker's work goes to others at once
// and the worker joins afresh.
func (w *workStream) checkBusy(busy []uint64) error {
	if len(busy) == 0 {
		return nil
	}
	latest := slices.Max(busy)
	w.mu.Lock()
	var missing []uint64
	for id := range w.outstanding {
		if id < latest && !slices.Contains(busy, id) && !w.routed[id] {
			missing = append(missing, id)
		}
	}
	w.mu.Unlock()
	if len(missing) == 0 {
		return nil
	}
	slices.Sort(missing)
	return status.Errorf(codes.DataLoss, "work: worker %s lists assignment %d as received but not the earlier %v, which it was sent and has not answered: "+
		"they never reached it or it dropped them; the stream ends and its work goes to others", w.worker, latest, missing)
}

// Errors a Work stream ends with when the coordinator ends it.
var (
	errStreamReplaced = status.Error(codes.Aborted, "a newer Work stream of this worker replaced this one")
	errHeartbeat      = status.Error(codes.DeadlineExceeded, "no heartbeat: the worker was taken for dead and its work reassigned")
	errLostLead       = notLeading(&dpcnnv1.LeaderResponse{}, "the coordinator no longer leads; ask ClusterService.Leader for the new one")
)

// Join implements WorkerService.
func (s *Server) Join(ctx context.Context, req *dpcnnv1.JoinRequest) (*dpcnnv1.JoinResponse, error) {
	if err := checkJoin(req); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	session, err := newToken()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "join: %v", err)
	}
	s.mu.Lock()
	if s.lead == nil {
		s.mu.Unlock()
		return nil, s.notLeader(ctx)
	}
	w := s.workers[req.WorkerId]
	if w == nil {
		w = &remoteWorker{}
		s.workers[req.WorkerId] = w
	}
	w.join, w.session, w.joined = req, session, time.Now()
	s.mu.Unlock()
	s.log.Info("worker joined", "worker", req.WorkerId, "backend", req.Backend, "cores", req.Cores, "speed", req.ImagesPerSec, "version", req.Version)
	return &dpcnnv1.JoinResponse{
		WorkerId: req.WorkerId, Session: session, CoordinatorId: s.cfg.ID,
		HeartbeatIntervalNanos: int64(s.cfg.HeartbeatInterval), Dataset: s.files,
	}, nil
}

// checkJoin validates a worker's description.
func checkJoin(req *dpcnnv1.JoinRequest) error {
	if err := keyspace.CheckWorkerID(req.WorkerId); err != nil {
		return err
	}
	switch {
	case req.Backend != "cpu" && req.Backend != "cuda":
		return fmt.Errorf("join: worker %s: backend %q: want cpu or cuda", req.WorkerId, req.Backend)
	case req.Cores < 0:
		return fmt.Errorf("join: worker %s: %d cores", req.WorkerId, req.Cores)
	case req.ImagesPerSec < 0 || math.IsNaN(req.ImagesPerSec) || math.IsInf(req.ImagesPerSec, 0):
		return fmt.Errorf("join: worker %s: speed %v images/s", req.WorkerId, req.ImagesPerSec)
	}
	if a := req.ReduceAddress; a != "" {
		if host, port, err := net.SplitHostPort(a); err != nil || host == "" || port == "" || port == "0" {
			return fmt.Errorf("join: worker %s: reduce address %q: want host:port, reachable by the other workers", req.WorkerId, a)
		}
	}
	return nil
}

func newToken() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// Work implements WorkerService: after a valid Hello, the handler sends what
// the job's driver queues for the worker while a second goroutine receives
// the worker's messages, until either side ends the stream, the worker
// misses its heartbeats, a newer stream of the worker replaces this one, or
// the leadership ends.
func (s *Server) Work(stream grpc.BidiStreamingServer[dpcnnv1.WorkerMessage, dpcnnv1.CoordinatorMessage]) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	hello := first.GetHello()
	if hello == nil {
		return status.Error(codes.InvalidArgument, "work: the first message must be a hello")
	}
	ws, err := s.openStream(stream.Context(), hello)
	if err != nil {
		return err
	}
	defer s.closeStream(ws)

	recvErr := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			ws.lastSeen.Store(time.Now().UnixNano())
			if err := s.workerMessage(ws, m); err != nil {
				recvErr <- err
				return
			}
		}
	}()
	var batch []*dpcnnv1.CoordinatorMessage
	for {
		select {
		case <-ws.ctx.Done():
			if cause := context.Cause(ws.ctx); cause != nil && status.Code(cause) != codes.Unknown {
				return cause
			}
			return ws.ctx.Err()
		case err := <-recvErr:
			if errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled {
				return nil
			}
			return err
		case <-ws.out.Ready():
			batch = ws.out.Take(batch[:0])
			for _, m := range batch {
				ws.sendingStarts(m)
				if err := stream.Send(m); err != nil {
					return err
				}
			}
			clear(batch)
		}
	}
}

// openStream binds a stream to the worker the hello names, ending any older
// stream of it, and tells the running job's driver.
func (s *Server) openStream(ctx context.Context, hello *dpcnnv1.Hello) (*workStream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lead == nil {
		return nil, errLostLead
	}
	w := s.workers[hello.WorkerId]
	if w == nil || hello.Session == "" || w.session != hello.Session {
		return nil, status.Errorf(codes.FailedPrecondition, "work: worker %q: unknown session: join first", hello.WorkerId)
	}
	if old := w.stream; old != nil {
		old.cancel(errStreamReplaced)
		s.streamGone(w, old)
	}
	sctx, cancel := context.WithCancelCause(ctx)
	stopOnLoss := context.AfterFunc(s.lead.ctx, func() { cancel(errLostLead) })
	ws := &workStream{
		worker: hello.WorkerId, backend: w.join.Backend, speed: w.join.ImagesPerSec, deltas: w.join.AcceptsParamsDelta,
		reduce: w.join.ReduceAddress, relays: w.join.RelaysParams,
		ctx: sctx, cancel: func(cause error) { stopOnLoss(); cancel(cause) },
		out: newMailbox[*dpcnnv1.CoordinatorMessage](), outstanding: map[uint64]bool{},
	}
	ws.lastSeen.Store(time.Now().UnixNano())
	w.stream, w.lost = ws, false
	if s.driver != nil {
		s.driver.inbox.Put(streamOpened{ws})
	}
	s.log.Info("worker stream open", "worker", ws.worker)
	return ws, nil
}

// closeStream unbinds a stream that ended.
func (s *Server) closeStream(ws *workStream) {
	ws.cancel(context.Canceled)
	ws.out.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.workers[ws.worker]; w != nil && w.stream == ws {
		s.streamGone(w, ws)
	}
}

// streamGone marks w's stream ws ended and tells the running job's driver.
// The caller holds s.mu.
func (s *Server) streamGone(w *remoteWorker, ws *workStream) {
	w.stream, w.lost = nil, true
	if s.driver != nil {
		s.driver.inbox.Put(streamClosed{ws})
	}
	s.log.Info("worker stream closed", "worker", ws.worker, "cause", context.Cause(ws.ctx))
}

// workerMessage handles one message after the hello.
func (s *Server) workerMessage(ws *workStream, m *dpcnnv1.WorkerMessage) error {
	switch k := m.Kind.(type) {
	case *dpcnnv1.WorkerMessage_Hello:
		return status.Error(codes.InvalidArgument, "work: a second hello on one stream")
	case *dpcnnv1.WorkerMessage_Heartbeat:
		if err := ws.checkBusy(k.Heartbeat.GetBusyAssignmentIds()); err != nil {
			s.log.Warn("a worker's heartbeat shows an assignment it never received: ending its stream", "worker", ws.worker, "err", err)
			return err
		}
		return nil
	case *dpcnnv1.WorkerMessage_Result:
		if k.Result == nil {
			return status.Error(codes.InvalidArgument, "work: empty result")
		}
		rtt := ws.answered(k.Result.AssignmentId)
		s.toDriver(ws, k.Result.JobId, workResult{ws, k.Result, rtt})
	case *dpcnnv1.WorkerMessage_Piece:
		if k.Piece == nil || len(k.Piece.Parts) == 0 {
			return status.Error(codes.InvalidArgument, "work: a piece with no parts")
		}
		s.toDriver(ws, k.Piece.JobId, pieceResult{ws, k.Piece})
	case *dpcnnv1.WorkerMessage_Failure:
		if k.Failure == nil {
			return status.Error(codes.InvalidArgument, "work: empty failure")
		}
		ws.setOutstanding(k.Failure.AssignmentId, false)
		s.toDriver(ws, k.Failure.JobId, workFailure{ws, k.Failure})
	default:
		return status.Error(codes.InvalidArgument, "work: a message of no known kind")
	}
	return nil
}

// toDriver hands a worker's answer to the driver of job, when it runs.
func (s *Server) toDriver(ws *workStream, job string, in driverInput) {
	if ws.ctx.Err() != nil {
		return // the stream ended: its work is being redone already
	}
	s.mu.Lock()
	d := s.driver
	s.mu.Unlock()
	if d == nil || d.id != job {
		s.log.Debug("answer for a job that is not running", "worker", ws.worker, "job", job)
		return
	}
	d.inbox.Put(in)
}

// monitorHeartbeats ends the streams of workers that fell silent.
func (s *Server) monitorHeartbeats(l *leadership) {
	t := time.NewTicker(s.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case now := <-t.C:
			s.mu.Lock()
			for _, w := range s.workers {
				if ws := w.stream; ws != nil && now.Sub(time.Unix(0, ws.lastSeen.Load())) > s.cfg.HeartbeatTimeout {
					s.log.Warn("worker missed its heartbeats", "worker", ws.worker, "timeout", s.cfg.HeartbeatTimeout)
					ws.cancel(errHeartbeat)
				}
			}
			s.mu.Unlock()
		}
	}
}
