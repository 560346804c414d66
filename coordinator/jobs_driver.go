package coordinator

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/metrics"
	"github.com/dpcnn/dpcnn/model"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
	"github.com/dpcnn/dpcnn/train"
	"github.com/dpcnn/dpcnn/tree"
)

// driver runs one job: it alone owns the job's Engine and does all the I/O
// around it. It turns what the workers' streams bring (streams opening and
// closing, results, failures) and cancellations into engine events, ticks
// the engine's clock, and carries out the engine's effects: assignments and
// withdrawals to workers, checkpoints and the final model to disk, the
// job's status to etcd and its events to watchers.
type driver struct {
	s     *Server
	l     *leadership
	id    string
	entry *jobEntry // fields guarded by s.mu
	log   *slog.Logger
	inbox *mailbox[driverInput]
	// now is the driver's clock (ServerConfig.Clock): the time of the
	// engine's Ticks and of everything the driver stamps or measures.
	now train.Clock

	spec    job.Spec
	specErr error
	backend string // the kind of worker the job runs on; "" until chosen
	// otherKind lists the workers of another kind left out of the job,
	// each said once in the job log.
	otherKind map[string]bool
	// backupFor is the worker the last straggler's copy went to: its
	// log line said why that work was given out again.
	backupFor string
	eng       *train.Engine
	sched     job.Schedule             // the job's optimizer steps, in all and per epoch
	workers   map[string]*driverWorker // in the engine, by id
	touched   map[*workStream]bool     // streams given any of the job's work

	effects []train.Effect
	ended   bool

	started   time.Time // when this run of the job began
	startStep int64     // the step it began at
	images    int64     // trained since started
	held      *dpcnnv1.JobProgress
	lastCkpt  *model.Checkpoint
	// reissuedBefore is the job's ImagesReissued when this term took it
	// over; the engine counts this term's.
	reissuedBefore int64
	dirty          bool // the status changed since it was last written
	lastWrite      time.Time
	grad           []float32  // received gradients, decoded
	times          stepTimes  // for the metrics and the progress reports
	params         *paramsOut // the parameter versions sent, encoded once each
	deltasLogged   bool       // the first delta sent was logged
	// tree is the current step's tree of reducers; nil when its sums go
	// straight to the coordinator. routes are the routes of the step's
	// assignments not yet sent; topology the last one chosen (logged when
	// it changes); lastGroup the last group ID given out.
	tree      *stepTree
	routes    map[uint64]*dpcnnv1.ReduceRoute
	topology  string
	lastGroup uint64
	// relays is the current step's tree of parameter relays (nil: none);
	// badRelay the workers that did not answer as relays, asked no more.
	relays   *relayTree
	badRelay map[string]bool
}

// driverWorker is a worker in the engine and what its stream has been sent.
type driverWorker struct {
	ws       *workStream
	specSent bool
	version  int64 // the parameters version the stream holds; −1 for none
}

// driverInput is what the server hands a driver.
type driverInput interface{ driverInput() }

type (
	streamOpened struct{ ws *workStream }
	streamClosed struct{ ws *workStream }
	workResult   struct {
		ws *workStream
		r  *dpcnnv1.WorkResult
		// roundTrip is from the start of sending the assignment to the
		// result's arrival; 0 when the sending was not seen.
		roundTrip time.Duration
	}
	workFailure struct {
		ws *workStream
		f  *dpcnnv1.WorkFailure
	}
	cancelJob struct{ reason string }
)

func (streamOpened) driverInput() {}
func (streamClosed) driverInput() {}
func (workResult) driverInput()   {}
func (workFailure) driverInput()  {}
func (cancelJob) driverInput()    {}

// newDriver prepares the driver of e's job. The caller holds s.mu.
func newDriver(s *Server, l *leadership, e *jobEntry) *driver {
	d := &driver{
		s: s, l: l, id: e.id, entry: e, log: s.log.With("job", e.id),
		now:     s.cfg.Clock,
		inbox:   newMailbox[driverInput](),
		backend: e.status.Backend,
		workers: map[string]*driverWorker{},
		touched: map[*workStream]bool{},
		params:  newParamsOut(),
	}
	d.spec, d.specErr = job.Parse(e.spec)
	if d.specErr == nil {
		// SubmitJob checks this too; a job stored before it did, or by a
		// coordinator holding another data set, ends here rather than on
		// every worker it reaches.
		d.specErr = d.spec.CheckData(s.data)
	}
	return d
}

// run drives the job until it ends or the term does; in the latter case
// the job's status stays as it is, for the next leader to resume it.
func (d *driver) run() {
	defer d.inbox.Close()
	defer d.releaseWorkers()
	if d.specErr != nil {
		d.finish(dpcnnv1.JobState_JOB_STATE_FAILED, fmt.Sprintf("job spec: %v", d.specErr))
		return
	}
	cfg := d.s.cfg.Engine
	// Assignment IDs above any an earlier run or leader used, so a late
	// answer to one of those is never taken for one of ours.
	first, ok := d.l.ids.first()
	if !ok {
		d.log.Error("the term has given out all its assignment IDs: stepping down for a new term", "term", d.l.term)
		d.l.cancel()
		return
	}
	cfg.FirstAssignment = first
	if d.spec.MinWorkers > 0 {
		cfg.MinWorkers = d.spec.MinWorkers
	}
	cfg.MaxWorkers = d.spec.MaxWorkers
	if dl := d.spec.DeadlineDuration(); dl > 0 {
		cfg.Deadline = dl
	}
	d.eng = train.NewEngine(d.s.backend, cfg)
	defer func() { d.l.ids.used(d.eng.NextAssignment()) }()
	d.started = d.now()

	// Workers already connected join before the job starts, so it starts
	// running at once rather than first waiting for them.
	var inputs []driverInput
	inputs = d.inbox.Take(inputs)
	for _, in := range inputs {
		if o, ok := in.(streamOpened); ok {
			d.input(o)
		}
	}
	// Which coordinator drives the job, and since which election, is in
	// the job's log, so a reader sees where a leader change took it over.
	d.logLine(dpcnnv1.LogLevel_LOG_LEVEL_INFO, fmt.Sprintf("coordinator %s leads the job (term %d)", d.s.cfg.ID, d.l.term))
	resume := d.loadCheckpoint()
	if resume != nil {
		d.startStep = resume.Step
		d.lastCkpt = resume
	}
	d.s.mu.Lock()
	st := &d.entry.status
	if redo := st.Step - d.startStep; redo > 0 {
		// Steps applied by an earlier term after its last checkpoint
		// are computed again, to the same bits.
		st.StepsRedone += redo
		d.dirty = true
	}
	d.reissuedBefore = st.ImagesReissued
	d.s.mu.Unlock()
	d.step(train.JobStarted{Spec: d.spec, TrainLen: d.s.trainLen, TestLen: d.s.testLen, Resume: resume})
	if d.ended {
		return
	}
	d.sched = d.eng.Schedule()
	for _, in := range inputs {
		if _, ok := in.(streamOpened); !ok && !d.ended {
			d.input(in)
		}
	}

	tick := time.NewTicker(d.s.cfg.TickInterval)
	defer tick.Stop()
	for !d.ended {
		select {
		case <-d.l.ctx.Done():
			d.log.Info("job stopped: the term ended", "step", d.eng.StepsApplied())
			return
		case <-d.inbox.Ready():
			inputs = d.inbox.Take(inputs[:0])
			for _, in := range inputs {
				if d.ended {
					break
				}
				d.input(in)
			}
			clear(inputs)
		case <-tick.C:
			d.step(train.Tick{Now: d.now()})
			d.writeStatus(false)
		}
	}
}

// input handles one thing the server handed over.
func (d *driver) input(in driverInput) {
	switch in := in.(type) {
	case streamOpened:
		d.streamOpened(in.ws)
	case streamClosed:
		if dw := d.workers[in.ws.worker]; dw != nil && dw.ws == in.ws {
			if in.ws.hasOutstanding() {
				d.s.cfg.Metrics.WorkerFailed() // gone with work in hand
				d.logLine(dpcnnv1.LogLevel_LOG_LEVEL_WARN, fmt.Sprintf("worker %s was lost with work in hand; its work goes to the others", in.ws.worker))
			}
			d.lose(in.ws.worker)
		}
	case workResult:
		if dw := d.workers[in.ws.worker]; dw != nil && dw.ws == in.ws && d.eng != nil {
			if in.r.GetTrain() != nil {
				d.s.cfg.Metrics.SumReceived(metrics.ViaStar)
			}
			d.resultTimed(in.r, in.roundTrip)
			d.step(d.resultEvent(in.ws, in.r))
		}
	case pieceResult:
		if dw := d.workers[in.ws.worker]; dw != nil && dw.ws == in.ws && d.eng != nil {
			d.s.cfg.Metrics.SumReceived(metrics.ViaTree)
			d.piece(in.ws, in.p)
		}
	case workFailure:
		if dw := d.workers[in.ws.worker]; dw != nil && dw.ws == in.ws && d.eng != nil {
			if in.f.GetParamsUnreached() {
				d.paramsUnreached(dw, in.f)
				break
			}
			// The failure may have left the worker without the parameters
			// it was sent (a delta it could not apply): send them whole.
			dw.version = -1
			d.s.cfg.Metrics.WorkerFailed()
			d.step(train.WorkFailed{Worker: in.ws.worker, Assignment: in.f.AssignmentId, Err: errors.New(in.f.Message)})
		}
	case cancelJob:
		d.finish(dpcnnv1.JobState_JOB_STATE_CANCELLED, in.reason)
	}
}

// streamOpened takes a worker's new stream into the engine, when the
// worker is of the job's kind (the first one chooses the kind of a job
// that did not fix it).
func (d *driver) streamOpened(ws *workStream) {
	if ws.ctx.Err() != nil {
		return // already closed
	}
	if d.backend == "" {
		d.backend = ws.backend
		d.s.mu.Lock()
		d.entry.status.Backend = ws.backend
		d.s.mu.Unlock()
		d.dirty = true
	}
	if ws.backend != d.backend {
		// CPU and CUDA kernels sum in different orders: mixing them would
		// make the result depend on who computed what.
		if !d.otherKind[ws.worker] {
			if d.otherKind == nil {
				d.otherKind = map[string]bool{}
			}
			d.otherKind[ws.worker] = true
			d.logLine(dpcnnv1.LogLevel_LOG_LEVEL_INFO, fmt.Sprintf("worker %s computes on %s and takes no part: the job computes on %s, and the two backends' results differ in the last bits", ws.worker, ws.backend, d.backend))
		}
		return
	}
	if dw := d.workers[ws.worker]; dw != nil {
		d.lose(ws.worker) // its older stream
	}
	d.workers[ws.worker] = &driverWorker{ws: ws, version: -1}
	ws.mu.Lock()
	ws.job = d.id
	ws.mu.Unlock()
	d.publish(&dpcnnv1.JobEvent{Kind: &dpcnnv1.JobEvent_WorkersChanged{WorkersChanged: &dpcnnv1.WorkersChanged{
		Live: int32(len(d.workers)), Joined: []string{ws.worker}}}}, true)
	d.step(train.WorkerJoined{ID: ws.worker, Speed: ws.speed})
}

// lose takes a worker out of the engine; its work goes to others, and so
// does the work whose sums it held as a reducer.
func (d *driver) lose(id string) {
	delete(d.workers, id)
	d.publish(&dpcnnv1.JobEvent{Kind: &dpcnnv1.JobEvent_WorkersChanged{WorkersChanged: &dpcnnv1.WorkersChanged{
		Live: int32(len(d.workers)), Left: []string{id}}}}, true)
	held := d.reducerLost(id)
	d.step(train.WorkerLost{ID: id})
	d.resultsLost(held)
}

// resultEvent turns a worker's result into the engine's event. Malformed
// gradients go to the engine as they are (a nil or wrongly sized vector),
// and so does the result's echo of its work (the subtree, the test
// samples), so that it refuses them and takes the work elsewhere.
func (d *driver) resultEvent(ws *workStream, r *dpcnnv1.WorkResult) train.Event {
	switch o := r.Outcome.(type) {
	case *dpcnnv1.WorkResult_Train:
		t := o.Train // may be nil: the getters below are nil-safe
		grad := d.decodeGradient(t.GetGradientSum(), ws.worker, r.AssignmentId)
		return d.trainReceived(ws, ws.worker, r, grad)
	case *dpcnnv1.WorkResult_Eval:
		e := o.Eval
		return train.EvalReceived{Worker: ws.worker, Assignment: r.AssignmentId,
			From: clampCount(e.GetBegin()), To: clampCount(e.GetEnd()), Correct: clampCount(e.GetCorrect())}
	}
	return train.WorkFailed{Worker: ws.worker, Assignment: r.AssignmentId, Err: errors.New("a result with neither gradients nor an evaluation")}
}

// decodeGradient decodes a gradient sum into the driver's buffer; nil
// (said in the log) when it is missing or malformed.
func (d *driver) decodeGradient(g *dpcnnv1.Tensor, worker string, id uint64) []float32 {
	if g == nil {
		d.log.Warn("result without a gradient", "worker", worker, "assignment", id)
		return nil
	}
	n, err := g.Elements()
	if err != nil {
		d.log.Warn("malformed gradient", "worker", worker, "assignment", id, "err", err)
		return nil
	}
	if cap(d.grad) < n {
		d.grad = make([]float32, n)
	}
	grad := d.grad[:n]
	if err := dpcnnv1.DecodeFloat32s(grad, g.Data); err != nil {
		return nil
	}
	return grad
}

// trainReceived is the engine's event for worker's training result r,
// with its gradient sum grad; ws, when set, is the worker's stream, whose
// speed the result measures.
func (d *driver) trainReceived(ws *workStream, worker string, r *dpcnnv1.WorkResult, grad []float32) train.GradientsReceived {
	t := r.GetTrain()
	leafLosses := t.GetLeafLossSums()
	if ws != nil && r.ComputeNanos > 0 && len(leafLosses) > 0 {
		ws.mu.Lock()
		ws.measured = train.ObserveSpeed(ws.measured, len(leafLosses)*d.spec.MicroBatch, time.Duration(r.ComputeNanos))
		ws.mu.Unlock()
		d.s.cfg.Metrics.Microbatches(worker, len(leafLosses), time.Duration(r.ComputeNanos))
	}
	first := int(t.GetFirstLeaf())
	return train.GradientsReceived{
		Worker: worker, Assignment: r.AssignmentId, Leaves: tree.Subtree{Lo: first, Hi: first + int(t.GetLeafCount())},
		Grad: grad, LeafLosses: leafLosses,
		Correct: clampCount(t.GetCorrect()), Compute: time.Duration(max(r.ComputeNanos, 0)),
	}
}

// clampCount maps counts (and sample numbers) beyond int32 to −1, which
// the engine refuses.
func clampCount(n int64) int {
	if n < math.MinInt32 || n > math.MaxInt32 {
		return -1
	}
	return int(n)
}

// step hands the engine an event and carries out its effects in order.
func (d *driver) step(ev train.Event) {
	d.timeEngineCall(ev)
	d.planTree()
	for i, ef := range d.effects {
		if !d.ended {
			d.effect(ef)
		}
		d.effects[i] = nil
	}
	d.engineCallDone()
	d.checkTree()
}

func (d *driver) effect(ef train.Effect) {
	switch ef := ef.(type) {
	case train.Assign:
		dw := d.workers[ef.Worker]
		if dw == nil {
			d.log.Error("assignment for a worker not in the job", "worker", ef.Worker)
			return
		}
		began := time.Now() // building it is part of the broadcast
		var idx []int32
		for _, mb := range ef.Micro {
			idx = append(idx, mb.Indices...)
		}
		a := d.assignment(dw, ef.ID, ef.Epoch, ef.Step, ef.Step, ef.Params)
		a.Work = &dpcnnv1.Assignment_Train{Train: &dpcnnv1.TrainWork{Subtree: &dpcnnv1.Subtree{
			FirstLeaf: uint32(ef.Leaves.Lo), LeafCount: uint32(ef.Leaves.Len()), Indices: idx}}}
		if r := d.routes[ef.ID]; r != nil {
			a.Route = r
			delete(d.routes, ef.ID)
			dw.ws.setRouted(ef.ID) // before it is sent: its heartbeats may leave it out at once
		}
		d.sendWork(dw, a)
		if again := d.assignSent(ef.Leaves, time.Since(began)); again && d.backupFor == ef.Worker {
			d.backupFor = "" // the straggler's copy, said already
		} else if again {
			d.logLine(dpcnnv1.LogLevel_LOG_LEVEL_INFO, fmt.Sprintf("step %d: micro-batches [%d, %d) given out again, to worker %s", ef.Step+1, ef.Leaves.Lo, ef.Leaves.Hi, ef.Worker))
		}
	case train.Evaluate:
		dw := d.workers[ef.Worker]
		if dw == nil {
			d.log.Error("evaluation for a worker not in the job", "worker", ef.Worker)
			return
		}
		a := d.assignment(dw, ef.ID, d.eng.EpochsDone(), ef.Version, ef.ParamsVersion, ef.Params)
		a.Work = &dpcnnv1.Assignment_Eval{Eval: &dpcnnv1.EvalWork{Begin: int64(ef.From), End: int64(ef.To)}}
		d.sendWork(dw, a)
		d.evalSent(ef.From)
	case train.StepApplied:
		if d.tree != nil && d.tree.step < ef.Step {
			d.tree = nil // its step is done
		}
		d.stepApplied(ef, d.stepTimed(ef))
	case train.EvalDone:
		d.evalTimed(ef)
		d.evalDone(ef)
	case train.PersistCheckpoint:
		began := time.Now()
		if err := d.persist(ef.Checkpoint); err != nil {
			d.finish(dpcnnv1.JobState_JOB_STATE_FAILED, fmt.Sprintf("checkpoint at step %d: %v", ef.Checkpoint.Step, err))
			return
		}
		d.s.cfg.Metrics.Phase(metrics.PhaseCheckpoint, time.Since(began))
		d.s.cfg.Metrics.CheckpointStored()
	case train.JobFinished:
		d.writeModel()
		d.finish(dpcnnv1.JobState_JOB_STATE_SUCCEEDED, "")
	case train.JobFailed:
		d.finish(dpcnnv1.JobState_JOB_STATE_FAILED, ef.Err.Error())
	case train.Waiting:
		reason := ef.Reason
		if d.backend != "" {
			reason = fmt.Sprintf("%s (of backend %s)", reason, d.backend)
		}
		d.setState(dpcnnv1.JobState_JOB_STATE_WAITING_FOR_WORKERS, reason)
	case train.Refused:
		d.log.Warn("result refused", "worker", ef.Worker, "assignment", ef.Assignment, "err", ef.Err)
		d.logLine(dpcnnv1.LogLevel_LOG_LEVEL_WARN, fmt.Sprintf("refused: %v", ef.Err))
	case train.Dropped:
		d.log.Debug("result dropped", "worker", ef.Worker, "assignment", ef.Assignment, "reason", ef.Reason)
	case train.WorkerFlagged:
		d.s.cfg.Metrics.WorkerFailed()
		d.log.Warn("worker flagged", "worker", ef.Worker, "err", ef.Err)
		d.logLine(dpcnnv1.LogLevel_LOG_LEVEL_WARN, fmt.Sprintf("worker %s gets no more work: %v", ef.Worker, ef.Err))
	case train.Straggler:
		d.backupFor = ef.Backup
		d.log.Warn("slow worker", "worker", ef.Worker, "assignment", ef.Assignment, "waited", ef.Waited, "deadline", ef.Deadline, "backup", ef.Backup)
		d.logLine(dpcnnv1.LogLevel_LOG_LEVEL_WARN, fmt.Sprintf("worker %s is slow: its assignment %d has waited %s, past its deadline of %s; a copy went to %s",
			ef.Worker, ef.Assignment, ef.Waited.Round(time.Millisecond), ef.Deadline.Round(time.Millisecond), ef.Backup))
		d.s.mu.Lock()
		st := &d.entry.status
		st.Straggler, st.StragglerWait, st.Updated = ef.Worker, ef.Waited, d.now().UTC()
		d.s.mu.Unlock()
		d.dirty = true
	case train.Cancel:
		if dw := d.workers[ef.Worker]; dw != nil {
			dw.ws.setOutstanding(ef.Assignment, false)
			dw.ws.send(&dpcnnv1.CoordinatorMessage{Kind: &dpcnnv1.CoordinatorMessage_Cancel{Cancel: &dpcnnv1.CancelWork{
				JobId: d.id, AssignmentIds: []uint64{ef.Assignment}}}})
		}
	}
}

// assignment starts a worker's assignment, with the job's spec when the
// stream has not had it and the parameters when it holds another version.
func (d *driver) assignment(dw *driverWorker, id uint64, epoch, step, version int64, params []float32) *dpcnnv1.Assignment {
	a := &dpcnnv1.Assignment{AssignmentId: id, JobId: d.id, Epoch: epoch, Step: step, ParamsVersion: uint64(version)}
	if !dw.specSent {
		a.JobSpecJson = d.entry.spec // never changes
		dw.specSent = true
	}
	d.params.see(version, params)
	if dw.version != version && d.relayedParams(dw, a, version) {
		dw.version = version
	} else if dw.version != version {
		deltas := dw.ws.deltas && len(d.workers) >= d.s.cfg.ParamsDeltaMinWorkers && !d.relaysWhole(dw.ws.worker, version)
		if deltas && !d.deltasLogged {
			d.deltasLogged = true
			d.log.Info("parameters go as deltas to the workers that take them", "live_workers", len(d.workers), "from", d.s.cfg.ParamsDeltaMinWorkers)
		}
		d.params.set(a, version, dw.version, deltas, d.s.cfg.Metrics)
		dw.version = version
	}
	return a
}

func (d *driver) sendWork(dw *driverWorker, a *dpcnnv1.Assignment) {
	d.touched[dw.ws] = true
	dw.ws.setOutstanding(a.AssignmentId, true)
	dw.ws.send(&dpcnnv1.CoordinatorMessage{Kind: &dpcnnv1.CoordinatorMessage_Assignment{Assignment: a}})
	d.setState(dpcnnv1.JobState_JOB_STATE_RUNNING, "")
}

// releaseWorkers tells every stream that had the job's work that the job
// is over for it.
func (d *driver) releaseWorkers() {
	for ws := range d.touched {
		ws.mu.Lock()
		clear(ws.outstanding)
		ws.reducerGroups = 0 // the job's tree is gone with it
		if ws.job == d.id {
			ws.job = ""
		}
		ws.mu.Unlock()
		ws.send(&dpcnnv1.CoordinatorMessage{Kind: &dpcnnv1.CoordinatorMessage_Cancel{Cancel: &dpcnnv1.CancelWork{JobId: d.id, ReleaseJob: true}}})
	}
}

func (d *driver) stepApplied(ef train.StepApplied, phases *dpcnnv1.StepPhases) {
	d.images += int64(ef.Images)
	elapsed := d.now().Sub(d.started)
	p := &dpcnnv1.JobProgress{
		Epoch: ef.Epoch + 1, Epochs: d.sched.Epochs(),
		StepInEpoch: int64(ef.InEpoch + 1), StepsPerEpoch: d.sched.PerEpoch,
		GlobalStep: ef.Step, TotalSteps: d.sched.Total, Loss: ef.Loss, TrainAccuracy: ef.TrainAccuracy,
		LearningRate: ef.LR,
		ImagesPerSec: float64(d.images) / elapsed.Seconds(), ElapsedNanos: int64(elapsed),
		LiveWorkers:    int32(len(d.workers)),
		ImagesReissued: d.reissuedBefore + ef.ImagesReissued,
		Phases:         phases,
	}
	if done := ef.Step - d.startStep; done > 0 {
		p.EtaNanos = int64(elapsed) / done * (d.sched.Total - ef.Step)
	}
	d.s.mu.Lock()
	st := &d.entry.status
	st.Step, st.Epoch, st.Loss, st.TrainAccuracy = ef.Step, d.eng.EpochsDone(), ef.Loss, ef.TrainAccuracy
	st.ImagesPerSec, st.LiveWorkers, st.Updated = p.ImagesPerSec, len(d.workers), d.now().UTC()
	st.ImagesReissued = p.ImagesReissued
	p.StepsRedone = st.StepsRedone
	p.Straggler, p.StragglerWaitNanos = st.Straggler, int64(st.StragglerWait)
	d.entry.progress = p
	d.s.mu.Unlock()
	d.dirty = true
	if ef.Evaluate {
		d.held = p // reported with its evaluation
		return
	}
	d.publish(&dpcnnv1.JobEvent{Kind: &dpcnnv1.JobEvent_Progress{Progress: p}}, false)
}

func (d *driver) evalDone(ef train.EvalDone) {
	ev := &dpcnnv1.Evaluation{Epoch: ef.Epoch, GlobalStep: ef.Version, TestAccuracy: ef.Accuracy, Correct: int64(ef.Correct), Samples: int64(ef.Total)}
	p := &dpcnnv1.JobProgress{GlobalStep: ef.Version, TotalSteps: d.sched.Total}
	if d.held != nil {
		// The held report is already the job's latest progress, which
		// GetJob and ListJobs read (and marshal) under Server.mu: change
		// a copy, never the message they may be sending.
		p = proto.Clone(d.held).(*dpcnnv1.JobProgress)
		d.held = nil
	}
	p.Evaluation = ev
	d.s.mu.Lock()
	st := &d.entry.status
	st.Evaluated, st.TestAccuracy, st.EvalStep, st.EvalEpoch = true, ef.Accuracy, ef.Version, ef.Epoch
	st.EvalCorrect, st.EvalSamples, st.Updated = int64(ef.Correct), int64(ef.Total), d.now().UTC()
	d.entry.progress = p
	d.s.mu.Unlock()
	d.dirty = true
	d.publish(&dpcnnv1.JobEvent{Kind: &dpcnnv1.JobEvent_Progress{Progress: p}}, true)
	d.log.Info("evaluated", "step", ef.Version, "accuracy", ef.Accuracy)
	d.writeStatus(true)
}
