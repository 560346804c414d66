package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
	"github.com/dpcnn/dpcnn/tree"
)

// A worker that serves ReduceService may be appointed a reducer of a
// step's groups (ReduceWork on its Work stream). It collects the pieces
// the group waits for — its children's results and sums, pushed by them
// or handed over in process — adds them with tree.ReducePieces, in the
// tree's order, and passes the sum up. A flushed group (FlushReduce: a
// worker or reducer below it was lost) passes what it holds up unadded,
// and every later piece at once, so the coordinator adds across the hole.
// A reducer keeps nothing past its Work stream: when the stream ends its
// groups are gone, and the coordinator, which lost it too, gives their
// work out again.

// maxReduceGroups bounds the groups a worker holds, so pieces pushed for
// groups that never come cannot grow it without end.
const maxReduceGroups = 4096

// maxGroupPieces bounds the pieces one group holds: more than a
// ReduceWork ever asks for, so only a sender's mistake reaches it.
const maxGroupPieces = 1024

// orphanAge is how long a group pushed into before its ReduceWork came is
// kept: the ReduceWork is sent before the children's assignments, so it
// is only late, never missing, unless the coordinator changed.
const orphanAge = time.Minute

type groupKey struct {
	job   string
	group uint64
}

type reduceGroup struct {
	work    *dpcnnv1.ReduceWork // nil until it arrives
	pieces  []*dpcnnv1.Piece
	flushed bool
	created time.Time
}

// reducers are a worker's groups of its current Work stream.
type reducers struct {
	self string
	log  *slog.Logger
	// push sends a piece to another worker's ReduceService.
	push func(ctx context.Context, address string, p *dpcnnv1.Piece) error

	mu     sync.Mutex
	s      *stream // the current Work stream; nil when none
	ctx    context.Context
	cancel context.CancelFunc // ends the binding's pushes
	groups map[groupKey]*reduceGroup
	latest map[string]int64 // the latest step of each job's groups
	sends  sync.WaitGroup
}

func newReducers(self string, log *slog.Logger, push func(context.Context, string, *dpcnnv1.Piece) error) *reducers {
	return &reducers{self: self, log: log, push: push, groups: map[groupKey]*reduceGroup{}, latest: map[string]int64{}}
}

// errNoStream answers a Push while the worker has no Work stream.
var errNoStream = errors.New("the reducer has no Work stream to the coordinator")

// bind makes s the stream the groups send up on; unbind forgets every
// group with it.
func (r *reducers) bind(s *stream) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s = s
	r.ctx, r.cancel = context.WithCancel(context.Background())
	clear(r.groups)
	clear(r.latest)
}

func (r *reducers) unbind(s *stream) {
	r.mu.Lock()
	if r.s == s {
		r.s = nil
		r.cancel()
		clear(r.groups)
		clear(r.latest)
	}
	r.mu.Unlock()
	r.sends.Wait()
}

// group returns the group of k, made when missing; nil when the worker
// holds too many.
func (r *reducers) group(k groupKey) *reduceGroup {
	g := r.groups[k]
	if g == nil {
		if len(r.groups) >= maxReduceGroups {
			return nil
		}
		g = &reduceGroup{created: time.Now()}
		r.groups[k] = g
	}
	return g
}

// assign takes a ReduceWork: the groups of the job's earlier steps are
// forgotten, and the group completes at once if its pieces are all in.
func (r *reducers) assign(w *dpcnnv1.ReduceWork) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.s == nil {
		return
	}
	job := w.GetJobId()
	if step, ok := r.latest[job]; !ok || w.GetStep() > step {
		r.latest[job] = w.GetStep()
		for k, g := range r.groups {
			if k.job == job && ((g.work != nil && g.work.GetStep() < w.GetStep()) || (g.work == nil && time.Since(g.created) > orphanAge)) {
				delete(r.groups, k)
			}
		}
	}
	k := groupKey{job, w.GetGroup()}
	g := r.group(k)
	if g == nil {
		r.log.Warn("too many reducer groups: this one is not reduced here", "job", job, "group", w.GetGroup())
		return
	}
	g.work = w
	r.tryComplete(k, g)
}

// flush passes the groups' pieces up unadded, and makes later ones go
// straight up.
func (r *reducers) flush(f *dpcnnv1.FlushReduce) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.s == nil {
		return
	}
	for _, id := range f.GetGroups() {
		k := groupKey{f.GetJobId(), id}
		g := r.group(k)
		if g == nil {
			continue
		}
		g.flushed = true
		r.passUp(g)
	}
}

// take holds a piece pushed into its group (by a child's Push, or by this
// worker itself), or passes it up at once when the group was flushed.
func (r *reducers) take(p *dpcnnv1.Piece) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.s == nil {
		return errNoStream
	}
	k := groupKey{p.GetJobId(), p.GetGroup()}
	g := r.group(k)
	if g == nil {
		return fmt.Errorf("worker %s holds %d reducer groups, the most it takes", r.self, maxReduceGroups)
	}
	if len(g.pieces) >= maxGroupPieces {
		return fmt.Errorf("group %d of job %s holds %d pieces, the most it takes", k.group, k.job, maxGroupPieces)
	}
	g.pieces = append(g.pieces, p)
	if g.flushed {
		r.passUp(g)
		return nil
	}
	r.tryComplete(k, g)
	return nil
}

// tryComplete adds a group's pieces and sends the sum up once they are
// all in. Pieces that do not make the group's node (a coordinator's
// mistake, or a piece that cannot be decoded) go up unadded: the
// coordinator refuses what it cannot take and gives that work out again.
func (r *reducers) tryComplete(k groupKey, g *reduceGroup) {
	w := g.work
	if w == nil || len(g.pieces) < int(w.GetPieces()) {
		return
	}
	delete(r.groups, k)
	sum, err := addPieces(w, g.pieces)
	if err != nil {
		r.log.Warn("reducer group passed up unadded", "job", k.job, "group", k.group, "err", err)
		r.passUp(g)
		return
	}
	sum.From = r.self
	r.sendUp(w.GetUp(), sum)
}

// passUp sends the group's pieces up one by one, as they are.
func (r *reducers) passUp(g *reduceGroup) {
	if g.work == nil {
		// Where up is, the ReduceWork says; without one the pieces go to
		// the coordinator, which is always right (if not the cheapest).
		for _, p := range g.pieces {
			r.sendUp(nil, p)
		}
	} else {
		for _, p := range g.pieces {
			r.sendUp(g.work.GetUp(), p)
		}
	}
	g.pieces = nil
}

// sendUp sends p up (to the coordinator when up names no reducer), in the
// background: pushing may wait on another worker. A push that fails goes
// to the coordinator instead. The caller holds r.mu.
func (r *reducers) sendUp(up *dpcnnv1.ReduceRoute, p *dpcnnv1.Piece) {
	s, bound := r.s, r.ctx
	if up.GetReducerId() != "" {
		p.Group = up.GetGroup()
	} else {
		p.Group = 0
	}
	r.sends.Go(func() {
		if id := up.GetReducerId(); id != "" {
			var err error
			if id == r.self {
				err = r.take(p)
			} else {
				ctx, cancel := context.WithTimeout(bound, pushTimeout)
				err = r.push(ctx, up.GetAddress(), p)
				cancel()
			}
			if err == nil {
				return
			}
			r.log.Warn("reducer unreachable: the sum goes to the coordinator", "reducer", id, "address", up.GetAddress(), "err", err)
			p.Group = 0
		}
		if err := s.send(&dpcnnv1.WorkerMessage{Kind: &dpcnnv1.WorkerMessage_Piece{Piece: p}}); err != nil {
			r.log.Debug("sum not sent up: the stream ended", "err", err)
		}
	})
}

// pushTimeout bounds one Push to a reducer; a reducer that takes longer is
// taken for gone, and the piece goes to the coordinator. A push is
// answered as soon as the reducer holds the piece (milliseconds), so this
// is generous; it is kept well under the least deadline of a job's work
// (2 s, job.Spec.Deadline) because a frozen reducer (its kernel still
// takes the connection) would otherwise hold the pusher's compute past
// it, and with it the backup copies the coordinator gives that worker.
// (At 30 s, a frozen worker stalled TestChaos in CI once parameters came
// down the tree.)
const pushTimeout = time.Second

// addPieces adds a group's pieces, in leaf order, into the sum of its
// node.
func addPieces(w *dpcnnv1.ReduceWork, pieces []*dpcnnv1.Piece) (*dpcnnv1.Piece, error) {
	pieces = slices.Clone(pieces)
	slices.SortFunc(pieces, func(a, b *dpcnnv1.Piece) int { return int(a.GetFirstLeaf()) - int(b.GetFirstLeaf()) })
	in := make([]tree.Piece, len(pieces))
	n := -1
	for i, p := range pieces {
		g := p.GetGradientSum()
		if g == nil {
			return nil, fmt.Errorf("piece %d from %s has no gradient", i, p.GetFrom())
		}
		k, err := g.Elements()
		if err != nil {
			return nil, fmt.Errorf("piece %d from %s: %w", i, p.GetFrom(), err)
		}
		if n >= 0 && k != n {
			return nil, fmt.Errorf("piece %d from %s has %d values, piece 0 %d", i, p.GetFrom(), k, n)
		}
		n = k
		sum := make([]float32, k)
		if err := dpcnnv1.DecodeFloat32s(sum, g.Data); err != nil {
			return nil, fmt.Errorf("piece %d from %s: %w", i, p.GetFrom(), err)
		}
		lo := int(p.GetFirstLeaf())
		in[i] = tree.Piece{Leaves: tree.Subtree{Lo: lo, Hi: lo + int(p.GetLeafCount())}, Sum: sum}
	}
	node := tree.Subtree{Lo: int(w.GetFirstLeaf()), Hi: int(w.GetFirstLeaf() + w.GetLeafCount())}
	sum, err := tree.ReducePieces(node, in, int(w.GetStepLeaves()), func() []float32 { return make([]float32, n) })
	if err != nil {
		return nil, err
	}
	out := &dpcnnv1.Piece{JobId: w.GetJobId(), FirstLeaf: w.GetFirstLeaf(), LeafCount: w.GetLeafCount(),
		GradientSum: dpcnnv1.NewTensor("grad", []int{len(sum)}, sum)}
	for _, p := range pieces {
		out.Parts = append(out.Parts, p.GetParts()...)
	}
	return out, nil
}

// resultPiece is a worker's own result as the piece it pushes up: the
// gradient sum moved into the piece (copied: the result's buffers are
// reused), the part without it.
func resultPiece(self string, r *dpcnnv1.WorkResult, group uint64) *dpcnnv1.Piece {
	t := r.GetTrain()
	g := t.GetGradientSum()
	t.GradientSum = nil // not cloned into the part
	part := proto.CloneOf(r)
	t.GradientSum = g
	return &dpcnnv1.Piece{
		JobId: r.GetJobId(), Group: group, From: self,
		FirstLeaf: t.GetFirstLeaf(), LeafCount: t.GetLeafCount(),
		GradientSum: proto.CloneOf(g),
		Parts:       []*dpcnnv1.PiecePart{{WorkerId: self, Result: part}},
	}
}
