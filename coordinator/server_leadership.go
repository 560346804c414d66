package coordinator

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	keyspace "github.com/dpcnn/dpcnn/cluster"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// The leadership: the campaign in etcd, one term as the leader, the lease
// fence that ends a term before a successor can be elected, and what a
// coordinator that does not lead (or cannot reach etcd) answers.

// leadership is one term of this coordinator as the leader.
type leadership struct {
	ctx      context.Context
	cancel   context.CancelFunc
	election *concurrency.Election
	term     int64
	since    time.Time
	wake     chan struct{} // nudges the scheduler: a job was queued or ended
	replicas *replicator   // pushes checkpoints to the standbys; nil when disabled
	// ids numbers the term's assignments; only the term's scheduler
	// goroutine, which runs its drivers one after another, touches it.
	ids assignmentIDs
}

// assignmentIDs draws assignment IDs from the term: an ID has the term
// (the etcd revision of the election it won, which grows with every
// election) in its high 32 bits and a counter in its low 32 that the
// term's drivers share, each engine numbering on from where the one
// before it stopped. So every ID is above every ID of an earlier term, and
// no two jobs (or two runs of one job) in a term share one, with nothing
// stored: a late answer to an earlier leader's or driver's assignment is
// never taken for an assignment of ours. A term has 2^32−1 IDs (the
// counter starts at 1), and the order holds for terms below 2^32 (etcd
// revisions: one per write).
type assignmentIDs struct {
	term uint64
	next uint64 // the first ID of the next engine
}

func newAssignmentIDs(term int64) assignmentIDs {
	return assignmentIDs{term: uint64(term), next: uint64(term)<<32 | 1}
}

// first is the first ID for the next engine; ok is false once the term
// has no IDs left.
func (a *assignmentIDs) first() (id uint64, ok bool) { return a.next, a.next < (a.term+1)<<32 }

// used records that an engine numbered its assignments up to next.
func (a *assignmentIDs) used(next uint64) { a.next = max(a.next, next) }

// guard is the etcd comparison that holds while this term lasts: every
// write of a leader is conditional on it.
func (l *leadership) guard() clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(l.election.Key()), "=", l.election.Rev())
}

// campaign runs for leadership again and again until ctx ends: each round
// opens an etcd session, announces the coordinator under its id, waits to
// win the election, then leads until the session is lost or ctx ends.
//
// While etcd cannot be reached the coordinator does not lead (it could not
// know that no other does): it says so to every caller (notLeader), and
// tries again with exponential backoff, logging each failure.
func (s *Server) campaign(ctx context.Context) {
	ttl := int(math.Ceil(s.cfg.SessionTTL.Seconds()))
	addr := s.advertiseAddr()
	retries := keyspace.Backoff(etcdRetryMin, etcdRetryMax)
	for ctx.Err() == nil {
		// The session outlives ctx, so that closing it can still revoke its
		// lease; ctx (or the attempt's time limit) only aborts its creation.
		sessCtx, cancelSess := context.WithCancel(context.WithoutCancel(ctx))
		stopAbort := context.AfterFunc(ctx, cancelSess)
		attempt := time.AfterFunc(max(s.cfg.SessionTTL, etcdAttemptTimeout), cancelSess)
		sess, err := concurrency.NewSession(s.cfg.Etcd, concurrency.WithTTL(ttl), concurrency.WithContext(sessCtx))
		attempt.Stop()
		stopAbort()
		if err != nil {
			cancelSess()
			if ctx.Err() != nil {
				return
			}
			down := s.noteEtcdDown(err)
			wait := retries.NextBackOff()
			s.log.Warn("etcd unreachable: not leading; retrying", "err", err, "since", down.since.Format(time.RFC3339),
				"attempts", down.attempts, "retryIn", wait)
			keyspace.Sleep(ctx, wait)
			continue
		}
		if s.noteEtcdUp() {
			s.log.Info("etcd reachable again")
		}
		retries.Reset()
		lost := s.runSession(ctx, sess, addr)
		sess.Close() // revokes the lease: our keys vanish now, not after the TTL
		cancelSess()
		if lost && ctx.Err() == nil {
			// The lease lapsed: etcd was out of reach for a TTL.
			s.noteEtcdDown(errors.New("the etcd session's lease lapsed: etcd was out of reach"))
		}
	}
}

// Backoff of the campaign while etcd cannot be reached (cluster.Backoff:
// doubling from the first, randomised, the doubling stopping at the
// second), and the time one attempt to open a session may take.
const (
	etcdRetryMin       = 250 * time.Millisecond
	etcdRetryMax       = 10 * time.Second
	etcdAttemptTimeout = 5 * time.Second
)

// etcdOutage describes etcd being out of reach.
type etcdOutage struct {
	since    time.Time // zero when etcd answers
	attempts int
	err      error
}

// noteEtcdDown records a failed attempt to reach etcd.
func (s *Server) noteEtcdDown(err error) etcdOutage {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.etcdDown.since.IsZero() {
		s.etcdDown.since = time.Now()
	}
	s.etcdDown.attempts++
	s.etcdDown.err = err
	return s.etcdDown
}

// noteEtcdUp records that etcd answered; it reports whether it had not.
func (s *Server) noteEtcdUp() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	was := !s.etcdDown.since.IsZero()
	s.etcdDown = etcdOutage{}
	return was
}

// etcdOutage returns the current outage (zero since when etcd answers).
func (s *Server) etcdOutage() etcdOutage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.etcdDown
}

// runSession campaigns and leads within one etcd session; it reports
// whether the session was lost (its lease lapsed) rather than ended.
func (s *Server) runSession(ctx context.Context, sess *concurrency.Session, addr string) (lost bool) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-sess.Done():
			cancel()
		case <-sctx.Done():
		}
	}()
	defer func() {
		select {
		case <-sess.Done():
			lost = ctx.Err() == nil
		default:
		}
	}()
	if _, err := s.cfg.Etcd.Put(sctx, keyspace.CoordinatorKey(s.cfg.Prefix, s.cfg.ID), addr, clientv3.WithLease(sess.Lease())); err != nil {
		if sctx.Err() == nil {
			s.log.Warn("announce coordinator", "err", err)
			keyspace.Sleep(sctx, time.Second)
		}
		return
	}
	election := concurrency.NewElection(sess, keyspace.LeaderKey(s.cfg.Prefix))
	if err := election.Campaign(sctx, addr); err != nil {
		if sctx.Err() == nil {
			s.log.Warn("campaign", "err", err)
			keyspace.Sleep(sctx, time.Second)
		}
		return
	}
	s.leadTerm(sctx, sess, election)
	resignCtx, cancelResign := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancelResign()
	if err := election.Resign(resignCtx); err != nil && sess.Ctx().Err() == nil {
		s.log.Warn("resign leadership", "err", err)
	}
	return
}

// leadTerm leads until ctx ends: it loads the jobs from etcd, then runs the
// job scheduler and the heartbeat monitor; at the end it stops them and
// forgets the workers (they join the next leader afresh).
func (s *Server) leadTerm(ctx context.Context, sess *concurrency.Session, election *concurrency.Election) {
	term := election.Rev()
	jobs, err := s.loadJobs(ctx, term)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("load jobs after winning the election", "err", err)
			keyspace.Sleep(ctx, time.Second)
		}
		return
	}
	s.ownCheckpointPaths(jobs)
	lctx, cancel := context.WithCancel(ctx)
	l := &leadership{ctx: lctx, cancel: cancel, election: election, term: term, since: time.Now(), wake: make(chan struct{}, 1)}
	l.ids = newAssignmentIDs(l.term)
	if !s.cfg.Replication.Disabled {
		l.replicas = newReplicator(s, lctx)
	}
	s.mu.Lock()
	s.lead = l
	s.jobs = jobs
	s.workers = map[string]*remoteWorker{}
	s.mu.Unlock()
	s.setServiceHealth(true)
	s.log.Info("leading", "term", l.term)

	var wg sync.WaitGroup
	wg.Go(func() { s.schedule(l) })
	wg.Go(func() { s.monitorHeartbeats(l) })
	wg.Go(func() { s.holdLease(l, sess.Lease()) })
	wg.Go(l.replicas.run)
	<-lctx.Done()
	// Callers hear at once that this coordinator no longer leads, while
	// the term's work winds down.
	s.mu.Lock()
	s.lead = nil
	s.mu.Unlock()
	s.setServiceHealth(false)
	wg.Wait()

	s.mu.Lock()
	s.workers = map[string]*remoteWorker{}
	s.mu.Unlock()
	s.log.Info("no longer leading", "term", l.term)
}

// holdLease ends the term when this coordinator cannot be sure that its
// etcd lease, and so its leadership, still holds: it refreshes the lease
// itself every SessionTTL/5, and steps down when no refresh has succeeded
// for half the TTL. A refresh sent at t keeps the lease alive on the etcd
// server until at least t+TTL, and no other coordinator can be elected
// before the lease lapses there, so stepping down at t+TTL/2 leaves half a
// TTL for the term to wind down before a successor can start: a leader cut
// off from etcd (a partition, not a crash) never overlaps the next one. The
// session's own keep-alive only notices the loss after a whole TTL, too
// late for that.
func (s *Server) holdLease(l *leadership, lease clientv3.LeaseID) {
	ttl := s.cfg.SessionTTL
	every := max(ttl/5, 10*time.Millisecond)
	lastOK := time.Now() // the election was just won: the lease is alive
	for {
		sent := time.Now()
		ctx, cancel := context.WithTimeout(l.ctx, every)
		_, err := s.cfg.Etcd.KeepAliveOnce(ctx, lease)
		cancel()
		if l.ctx.Err() != nil {
			return
		}
		switch {
		case err == nil:
			lastOK = sent
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			s.log.Warn("the leadership's etcd lease has lapsed: stepping down", "term", l.term)
			l.cancel()
			return
		}
		if quiet := time.Since(lastOK); quiet > ttl/2 {
			s.log.Warn("etcd out of reach for half the lease: stepping down before another coordinator can be elected",
				"term", l.term, "since", quiet.Round(time.Millisecond), "err", err)
			s.noteEtcdDown(fmt.Errorf("no answer from etcd for %s: %w", quiet.Round(time.Millisecond), err))
			l.cancel()
			return
		}
		select {
		case <-l.ctx.Done():
			return
		case <-time.After(time.Until(sent.Add(every))):
		}
	}
}

// leading returns the current term, or nil while this coordinator does
// not lead.
func (s *Server) leading() *leadership {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lead
}

// notLeader is the UNAVAILABLE error of a coordinator that does not lead,
// naming the leader when there is one.
//
// Every such refusal carries a LeaderResponse detail, its address empty
// while no leader is known: clients tell by it that the call was refused
// unread, and may send it again (to the leader it names, or later).
func (s *Server) notLeader(ctx context.Context) error {
	if down := s.etcdOutage(); !down.since.IsZero() {
		return notLeading(&dpcnnv1.LeaderResponse{}, "coordinator %s does not lead: etcd unreachable since %s (%d attempts, retrying with backoff): %v",
			s.cfg.ID, down.since.UTC().Format(time.RFC3339), down.attempts, down.err)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	l, err := keyspace.LeaderAddress(ctx, s.cfg.Etcd, s.cfg.Prefix)
	switch {
	case errors.Is(err, keyspace.ErrNoLeader):
		return notLeading(&dpcnnv1.LeaderResponse{}, "coordinator %s does not lead: no coordinator leads (an election is under way)", s.cfg.ID)
	case err != nil:
		return notLeading(&dpcnnv1.LeaderResponse{}, "coordinator %s does not lead: %v", s.cfg.ID, err)
	}
	if l.Address == s.advertiseAddr() {
		// This coordinator's election key comes first, but it has not
		// taken over yet (it is loading the jobs): a moment's wait, not a
		// redirect.
		return notLeading(&dpcnnv1.LeaderResponse{CoordinatorId: s.cfg.ID, Address: l.Address, Term: l.Term},
			"coordinator %s does not lead yet: it won the election and is taking over (loading the jobs); ask again shortly", s.cfg.ID)
	}
	id := s.coordinatorAt(ctx, l.Address)
	// The leader travels as a structured detail, for clients to follow;
	// the message is for people.
	return notLeading(&dpcnnv1.LeaderResponse{CoordinatorId: id, Address: l.Address, Term: l.Term},
		"coordinator %s does not lead: the leader is %s at %s", s.cfg.ID, id, l.Address)
}

// notLeading is an UNAVAILABLE refusal with leader as its detail.
func notLeading(leader *dpcnnv1.LeaderResponse, format string, args ...any) error {
	st := status.Newf(codes.Unavailable, format, args...)
	if detailed, err := st.WithDetails(leader); err == nil {
		st = detailed
	}
	return st.Err()
}

// coordinatorAt names the coordinator announced at addr ("" when none is).
func (s *Server) coordinatorAt(ctx context.Context, addr string) string {
	resp, err := s.cfg.Etcd.Get(ctx, keyspace.CoordinatorKey(s.cfg.Prefix, ""), clientv3.WithPrefix())
	if err != nil {
		return ""
	}
	for _, kv := range resp.Kvs {
		if string(kv.Value) == addr {
			return strings.TrimPrefix(string(kv.Key), keyspace.CoordinatorKey(s.cfg.Prefix, ""))
		}
	}
	return ""
}
