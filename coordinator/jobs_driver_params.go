package coordinator

import (
	"github.com/dpcnn/dpcnn/metrics"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// DefaultParamsDeltaMinWorkers is where deltas start to pay on a
// 10 Gbit/s coordinator link, measured (AMD EPYC, 2 cores; cnnctl bench
// scaling --netem --synthetic --compute-ms 25.3 --params-delta-min-workers
// 1 against the default, 5 alternating rounds each): 8 emulated workers
// took 0.74 ms less a step with deltas (median of the paired rounds,
// faster in all 5), 4 and 2 no less (+0.30 and +0.05 ms, within the
// noise). Encoding a step's delta costs the coordinator about 0.1 ms and
// applying it a worker about 0.04 ms (BenchmarkParamsDelta, AVX-512),
// against 0.15 ms of the link per worker at 10 Gbit/s that the 38% of the
// 494 KB left out would take (1.5 ms at 1 Gbit/s, where fewer workers pay).
// ServerConfig.ParamsDeltaMinWorkers, the coordinator's
// --params-delta-min-workers, sets it.
const DefaultParamsDeltaMinWorkers = 8

// paramsOut encodes the parameter versions a driver sends: a version as a
// whole vector, or as its delta from the version before for workers that
// hold that one and apply deltas. Each encoding is made once and shared by
// every worker's message (gRPC only reads them).
type paramsOut struct {
	// cur and prev are the latest two versions seen (−1: none), copies:
	// the engine's buffer changes with the next step.
	cur, prev               []float32
	curVersion, prevVersion int64

	whole        *dpcnnv1.Tensor
	wholeVersion int64
	delta        *dpcnnv1.ParamsDelta
	deltaVersion int64 // the version delta gives; −1 for none made
	codec        dpcnnv1.DeltaCodec
}

func newParamsOut() *paramsOut {
	return &paramsOut{curVersion: -1, prevVersion: -1, wholeVersion: -1, deltaVersion: -1}
}

// see notes version's parameters; every assignment passes through it, so
// that the version before is at hand for a delta.
func (p *paramsOut) see(version int64, params []float32) {
	if version == p.curVersion {
		return
	}
	p.prev, p.cur = p.cur, p.prev
	p.prevVersion = p.curVersion
	p.cur = append(p.cur[:0], params...)
	p.curVersion = version
}

// set puts version on a, which goes to a worker holding held (−1: none),
// as a delta where the worker takes deltas and holds the version before,
// else whole, and counts the bytes.
func (p *paramsOut) set(a *dpcnnv1.Assignment, version, held int64, deltas bool, m *metrics.Metrics) {
	if deltas && held >= 0 && held == version-1 && p.prevVersion == held && p.curVersion == version {
		if p.deltaVersion != version {
			d, err := p.codec.Encode(uint64(held), p.prev, p.cur)
			if err != nil {
				d = nil // lengths differ: cannot happen within a job; send it whole
			}
			p.delta, p.deltaVersion = d, version
		}
		if p.delta != nil {
			a.ParamsDelta = p.delta
			m.ParamsSent(metrics.ParamsDelta, len(p.delta.Planes))
			return
		}
	}
	if p.wholeVersion != version {
		p.whole = dpcnnv1.NewTensor("params", []int{len(p.cur)}, p.cur)
		p.wholeVersion = version
	}
	a.Params = p.whole
	m.ParamsSent(metrics.ParamsWhole, len(p.whole.Data))
}
