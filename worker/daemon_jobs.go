package worker

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/metrics"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
	"github.com/dpcnn/dpcnn/tree"
)

// jobs is what a worker daemon holds for the jobs it computes: per job a
// network replica, the parameter version it holds and reused buffers.
// It is used by the daemon's compute goroutine only, and outlives streams:
// after a reconnection the coordinator sends the spec and parameters
// again, and a job whose spec is unchanged keeps its replica.
type jobs struct {
	worker    string
	backend   kernels.Backend[float32]
	evalBatch int
	byID      map[string]*jobRun
	metrics   *metrics.Metrics
	synthetic time.Duration // > 0: skip the math (DaemonConfig.Synthetic)
}

// replica is what computes a job's work: a Computer, or a synthetic
// worker's stand-in.
type replica interface {
	tree.Replica
	ParamCount() int
	SetParams(flat []float32) error
	Evaluate(set *dataset.Set, from, to int) (correct int, err error)
	Close() error
}

func newJobs(worker string, b kernels.Backend[float32], evalBatch int) *jobs {
	return &jobs{worker: worker, backend: b, evalBatch: evalBatch, byID: make(map[string]*jobRun)}
}

// jobRun is one job's replica and buffers.
type jobRun struct {
	id       string
	specJSON []byte
	spec     job.Spec
	leaves   int // micro-batches per step: the leaves of a step's reduction tree
	comp     replica
	// evalPiece is how many test samples an evaluation takes between
	// looks at its context: a few batches of the replica's size.
	evalPiece int
	worker    string
	metrics   *metrics.Metrics

	params     []float32 // decode buffer of Assignment.params
	version    uint64    // of the parameters in comp, when haveParams
	haveParams bool
	// unreached is 1 + the version whose parameters could not be fetched
	// from a relay (0: none): work of that version queued after it, sent
	// none because the coordinator counted on the fetch, fails alike, as
	// not the worker's doing.
	unreached uint64
	codec     dpcnnv1.DeltaCodec // applies parameter deltas to params

	leafGrads  [][]float32
	leafLosses []float64
	micro      []MicroBatch

	// The result message, reused from subtree to subtree: gRPC has encoded
	// it by the time Send returns.
	msg    dpcnnv1.WorkerMessage
	result dpcnnv1.WorkResult
	train  dpcnnv1.SubtreeGradient
	grad   dpcnnv1.Tensor
}

// release forgets a job, freeing its replica.
func (js *jobs) release(id string) {
	if j := js.byID[id]; j != nil {
		j.comp.Close()
	}
	delete(js.byID, id)
}

// reset forgets every job (their replicas read a data set that changed).
func (js *jobs) reset() { clear(js.byID) }

// prepare readies a's job on train: it builds the job's replica when a
// carries a spec it does not hold, and loads a's parameters when it comes
// with them (params: carried whole, or fetched from its relay; or a
// delta). It runs for every assignment, cancelled or not, in the order they
// came, since later assignments rely on the parameters earlier ones
// carried.
func (js *jobs) prepare(a *dpcnnv1.Assignment, params *dpcnnv1.Tensor, train *dataset.Set) (*jobRun, error) {
	j := js.byID[a.GetJobId()]
	if spec := a.GetJobSpecJson(); len(spec) > 0 && (j == nil || !bytes.Equal(spec, j.specJSON)) {
		js.release(a.GetJobId())
		var err error
		if j, err = js.build(a.GetJobId(), spec, train); err != nil {
			return nil, err
		}
		js.byID[j.id] = j
	}
	if j == nil {
		return nil, fmt.Errorf("unknown job %q: no spec received on this stream", a.GetJobId())
	}
	if t := params; t != nil {
		if err := t.DecodeInto(j.params); err != nil {
			return nil, fmt.Errorf("parameters of version %d: %w", a.GetParamsVersion(), err)
		}
		if err := j.comp.SetParams(j.params); err != nil {
			return nil, err
		}
		j.version, j.haveParams = a.GetParamsVersion(), true
	} else if d := a.GetParamsDelta(); d != nil {
		if err := j.applyDelta(a.GetParamsVersion(), d); err != nil {
			return nil, err
		}
	}
	return j, nil
}

// applyDelta turns the parameters held into version, from a delta against
// the version held. A delta that does not fit leaves the replica without
// parameters, so that later work fails too until whole parameters come:
// the coordinator sends those after any failure.
func (j *jobRun) applyDelta(version uint64, d *dpcnnv1.ParamsDelta) error {
	if !j.haveParams || j.version != d.GetBaseVersion() {
		held := "none"
		if j.haveParams {
			held = fmt.Sprintf("version %d", j.version)
		}
		j.haveParams = false
		return fmt.Errorf("parameters of version %d as a delta against version %d: %s held", version, d.GetBaseVersion(), held)
	}
	if err := j.codec.Apply(j.params, d); err != nil {
		j.haveParams = false
		return fmt.Errorf("parameters of version %d: %w", version, err)
	}
	if err := j.comp.SetParams(j.params); err != nil {
		j.haveParams = false
		return err
	}
	j.version = version
	return nil
}

// build makes a job's replica from its spec.
func (js *jobs) build(id string, specJSON []byte, train *dataset.Set) (*jobRun, error) {
	if train == nil {
		return nil, fmt.Errorf("job %q: no data set loaded", id)
	}
	spec, err := job.Parse(specJSON)
	if err != nil {
		return nil, fmt.Errorf("job %q: %w", id, err)
	}
	var comp replica
	if js.synthetic > 0 {
		comp, err = newSyntheticReplica(spec, js.synthetic)
	} else {
		comp, err = NewComputer(spec, js.backend, train, js.evalBatch)
	}
	if err != nil {
		return nil, fmt.Errorf("job %q: %w", id, err)
	}
	return &jobRun{
		id:        id,
		specJSON:  bytes.Clone(specJSON),
		spec:      spec,
		leaves:    spec.Batch / spec.MicroBatch,
		comp:      comp,
		evalPiece: 4 * max(spec.MicroBatch, js.evalBatch),
		params:    make([]float32, comp.ParamCount()),
		worker:    js.worker,
		metrics:   js.metrics,
	}, nil
}

// checkVersion checks that the replica holds the parameters a needs.
func (j *jobRun) checkVersion(a *dpcnnv1.Assignment) error {
	if (!j.haveParams || j.version != a.GetParamsVersion()) && j.unreached == a.GetParamsVersion()+1 {
		return fmt.Errorf("%w: parameters of version %d wanted: their fetch from the relay failed", errParamsUnreached, a.GetParamsVersion())
	}
	if !j.haveParams {
		return fmt.Errorf("no parameters received for version %d", a.GetParamsVersion())
	}
	if j.version != a.GetParamsVersion() {
		return fmt.Errorf("parameters of version %d wanted, version %d held and none sent", a.GetParamsVersion(), j.version)
	}
	return nil
}

// subtree computes one subtree of a training assignment and returns its
// result message (reused by the next call).
func (j *jobRun) subtree(ctx context.Context, a *dpcnnv1.Assignment, sub *dpcnnv1.Subtree) (*dpcnnv1.WorkerMessage, error) {
	first, count := int(sub.GetFirstLeaf()), int(sub.GetLeafCount())
	if !(tree.Subtree{Lo: first, Hi: first + count}).IsNode(j.leaves) {
		return nil, fmt.Errorf("subtree of leaves [%d, %d): not a node of the reduction tree over the step's %d micro-batches",
			first, first+count, j.leaves)
	}
	m := j.spec.MicroBatch
	idx := sub.GetIndices()
	if len(idx) != count*m {
		return nil, fmt.Errorf("subtree of leaves [%d, %d): %d sample indices, want %d leaves × %d",
			first, first+count, len(idx), count, m)
	}
	if a.GetEpoch() < 0 || a.GetStep() < 0 {
		return nil, fmt.Errorf("epoch %d, step %d: must not be negative", a.GetEpoch(), a.GetStep())
	}
	for len(j.leafGrads) < count {
		j.leafGrads = append(j.leafGrads, make([]float32, j.comp.ParamCount()))
		j.leafLosses = append(j.leafLosses, 0)
	}
	j.micro = j.micro[:0]
	for i := range count {
		j.micro = append(j.micro, MicroBatch{Epoch: a.GetEpoch(), Step: a.GetStep(), Indices: idx[i*m : (i+1)*m]})
	}
	start := time.Now()
	grad, losses, correct, err := tree.ComputeSubtree(ctx, j.comp, j.micro, j.leafGrads, j.leafLosses)
	if err != nil {
		return nil, fmt.Errorf("subtree of leaves [%d, %d): %w", first, first+count, err)
	}
	elapsed := time.Since(start)
	j.metrics.Microbatches(j.worker, count, elapsed)

	j.grad.SetFloat32s("grad", []int{len(grad)}, grad)
	j.train.FirstLeaf, j.train.LeafCount = sub.GetFirstLeaf(), sub.GetLeafCount()
	j.train.GradientSum = &j.grad
	j.train.LeafLossSums = losses
	j.train.Correct = int64(correct)
	j.result.AssignmentId, j.result.JobId = a.GetAssignmentId(), a.GetJobId()
	j.result.Outcome = &dpcnnv1.WorkResult_Train{Train: &j.train}
	j.result.ComputeNanos = elapsed.Nanoseconds()
	j.msg.Kind = &dpcnnv1.WorkerMessage_Result{Result: &j.result}
	return &j.msg, nil
}

// evaluate counts the test samples of an evaluation assignment that the
// replica classifies correctly, in pieces of the evaluation batch so that
// ctx can stop it between them.
func (j *jobRun) evaluate(ctx context.Context, a *dpcnnv1.Assignment, test *dataset.Set) (*dpcnnv1.WorkerMessage, error) {
	ev := a.GetEval()
	begin, end := ev.GetBegin(), ev.GetEnd()
	if test == nil || begin < 0 || begin > end || end > int64(test.Len()) {
		n := 0
		if test != nil {
			n = test.Len()
		}
		return nil, fmt.Errorf("evaluate test samples [%d, %d) of %d", begin, end, n)
	}
	start := time.Now()
	correct := 0
	for lo := int(begin); lo < int(end); {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hi := min(lo+j.evalPiece, int(end))
		n, err := j.comp.Evaluate(test, lo, hi)
		if err != nil {
			return nil, err
		}
		correct += n
		lo = hi
	}
	return &dpcnnv1.WorkerMessage{Kind: &dpcnnv1.WorkerMessage_Result{Result: &dpcnnv1.WorkResult{
		AssignmentId: a.GetAssignmentId(),
		JobId:        a.GetJobId(),
		Outcome:      &dpcnnv1.WorkResult_Eval{Eval: &dpcnnv1.EvalCount{Begin: begin, End: end, Correct: int64(correct)}},
		ComputeNanos: time.Since(start).Nanoseconds(),
	}}}, nil
}
