package kernels

import "math"

// Batch normalisation computes the reference's expressions in the
// reference's order (reference_norm.go), so its results are the
// reference's bits on every path and for any thread count. The sums over
// rows (statistics, dgamma and dbeta) are items of cpuBNBlock channels,
// each summing its channels in float64 in row order, as the reference sums
// one channel; y and dx, elementwise once those are known, are items of
// whole rows. Every product that is added to something is rounded
// explicitly (float64(a*b)), so that no compiler fuses it.

// cpuBNBlock is the number of channels one item of a sum over rows takes:
// its accumulators live on the stack.
const cpuBNBlock = 8

type cpuBNKind int

const (
	cpuBNStats cpuBNKind = iota // per channel block: mean, invStd and the statistics
	cpuBNTrain                  // per row span: y from mean and invStd
	cpuBNInfer                  // per row span: y from the running statistics
	cpuBNSums                   // per channel block: dbeta and dgamma
	cpuBNDx                     // per row span: dx from dbeta and dgamma
)

// cpuBNTask is one pass of a batch normalisation primitive. mean and
// invStd are the running mean and √(runVar+Eps) (rootVar) in inference.
type cpuBNTask struct {
	kind        cpuBNKind
	p           BatchNormParams
	rowsPerItem int
	x, gamma, beta, y, mean, invStd, meanStat, varStat,
	dy, dx, dgamma, dbeta []float32
	rootVar []float64
}

// runBN runs pass kind of t: over channel blocks for the sums, over row
// spans for the elementwise passes.
func (c *CPU) runBN(t cpuBNTask, kind cpuBNKind) {
	t.kind = kind
	p := t.p
	c.bn = t
	switch kind {
	case cpuBNStats, cpuBNSums:
		c.parallel(&c.bn, (p.C+cpuBNBlock-1)/cpuBNBlock, 2*p.Rows*p.C)
	default:
		c.bn.rowsPerItem = max(1, cpuSpanElems/p.C)
		c.parallel(&c.bn, (p.Rows+c.bn.rowsPerItem-1)/c.bn.rowsPerItem, 4*p.Rows*p.C)
	}
	c.bn = cpuBNTask{}
}

func (t *cpuBNTask) run(_, item int) {
	switch t.kind {
	case cpuBNStats:
		t.stats(item)
	case cpuBNSums:
		t.sums(item)
	default:
		t.elementwise(item)
	}
}

// stats computes mean, invStd and the statistics of one channel block.
func (t *cpuBNTask) stats(item int) {
	p := t.p
	c0 := item * cpuBNBlock
	c1 := min(c0+cpuBNBlock, p.C)
	var sum, mean, squares [cpuBNBlock]float64
	for r := range p.Rows {
		for j, v := range t.x[r*p.C+c0 : r*p.C+c1] {
			sum[j] += float64(v)
		}
	}
	for j := range c1 - c0 {
		mean[j] = sum[j] / float64(p.Rows)
	}
	for r := range p.Rows {
		for j, v := range t.x[r*p.C+c0 : r*p.C+c1] {
			d := float64(v) - mean[j]
			squares[j] += float64(d * d)
		}
	}
	for j := range c1 - c0 {
		c := c0 + j
		v := squares[j] / float64(p.Rows)
		t.mean[c] = float32(mean[j])
		t.invStd[c] = float32(1 / math.Sqrt(v+p.Eps))
		if t.meanStat != nil {
			t.meanStat[c] = float32(p.StatWeight * mean[j])
		}
		if t.varStat != nil {
			t.varStat[c] = float32(p.StatWeight * bnUnbiased(p, squares[j], v))
		}
	}
}

// sums computes dbeta and dgamma of one channel block.
func (t *cpuBNTask) sums(item int) {
	p := t.p
	c0 := item * cpuBNBlock
	c1 := min(c0+cpuBNBlock, p.C)
	mean, invStd := t.mean[c0:c1], t.invStd[c0:c1]
	var sumDy, sumDyXhat [cpuBNBlock]float64
	for r := range p.Rows {
		dy := t.dy[r*p.C+c0 : r*p.C+c1]
		for j, v := range t.x[r*p.C+c0 : r*p.C+c1] {
			d := float64(dy[j])
			sumDy[j] += d
			sumDyXhat[j] += float64(d * ((float64(v) - float64(mean[j])) * float64(invStd[j])))
		}
	}
	for j := range c1 - c0 {
		t.dbeta[c0+j] = float32(sumDy[j])
		t.dgamma[c0+j] = float32(sumDyXhat[j])
	}
}

// elementwise computes y (training or inference) or dx for one span of
// rows.
func (t *cpuBNTask) elementwise(item int) {
	p := t.p
	r0 := item * t.rowsPerItem
	r1 := min(r0+t.rowsPerItem, p.Rows)
	rows := float64(p.Rows)
	for r := r0; r < r1; r++ {
		base := r * p.C
		x := t.x[base : base+p.C]
		switch t.kind {
		case cpuBNTrain:
			y := t.y[base : base+p.C]
			for c, v := range x {
				g, b := float64(t.gamma[c]), float64(t.beta[c])
				y[c] = float32(float64(g*(float64(v)-float64(t.mean[c]))*float64(t.invStd[c])) + b)
			}
		case cpuBNInfer:
			y := t.y[base : base+p.C]
			for c, v := range x {
				g, b := float64(t.gamma[c]), float64(t.beta[c])
				y[c] = float32(float64(g*(float64(v)-float64(t.mean[c]))/t.rootVar[c]) + b)
			}
		case cpuBNDx:
			dy, dx := t.dy[base:base+p.C], t.dx[base:base+p.C]
			for c, v := range x {
				inv := float64(t.invStd[c])
				k := float64(t.gamma[c]) * inv
				meanDy, meanDyXhat := float64(t.dbeta[c])/rows, float64(t.dgamma[c])/rows
				xhat := (float64(v) - float64(t.mean[c])) * inv
				dx[c] = float32(k * (float64(dy[c]) - meanDy - float64(xhat*meanDyXhat)))
			}
		}
	}
}

// BatchNormForwardTrain normalises each channel with the batch's mean and
// biased variance (see Reference.BatchNormForwardTrain for the exact
// expressions).
func (c *CPU) BatchNormForwardTrain(p BatchNormParams, x, gamma, beta, y, mean, invStd, meanStat, varStat []float32) {
	n := p.Rows * p.C
	cpuNeed("batchnorm x", x, n)
	cpuNeed("batchnorm gamma", gamma, p.C)
	cpuNeed("batchnorm beta", beta, p.C)
	cpuNeed("batchnorm y", y, n)
	cpuNeed("batchnorm mean", mean, p.C)
	cpuNeed("batchnorm invStd", invStd, p.C)
	if meanStat != nil {
		cpuNeed("batchnorm meanStat", meanStat, p.C)
	}
	if varStat != nil {
		cpuNeed("batchnorm varStat", varStat, p.C)
	}
	if p.Rows < 0 || p.C <= 0 {
		return
	}
	t := cpuBNTask{p: p, x: x, gamma: gamma, beta: beta, y: y, mean: mean, invStd: invStd, meanStat: meanStat, varStat: varStat}
	c.runBN(t, cpuBNStats)
	c.runBN(t, cpuBNTrain)
}

// BatchNormForwardInfer normalises with the running statistics: y =
// gamma·(x−runMean)/√(runVar+Eps) + beta in float64, the root computed
// once per channel.
func (c *CPU) BatchNormForwardInfer(p BatchNormParams, x, gamma, beta, runMean, runVar, y []float32) {
	n := p.Rows * p.C
	cpuNeed("batchnorm x", x, n)
	cpuNeed("batchnorm gamma", gamma, p.C)
	cpuNeed("batchnorm beta", beta, p.C)
	cpuNeed("batchnorm runMean", runMean, p.C)
	cpuNeed("batchnorm runVar", runVar, p.C)
	cpuNeed("batchnorm y", y, n)
	if p.Rows <= 0 || p.C <= 0 {
		return
	}
	if cap(c.bnRootVar) < p.C {
		c.bnRootVar = make([]float64, p.C)
	}
	root := c.bnRootVar[:p.C]
	for ch, v := range runVar[:p.C] {
		root[ch] = math.Sqrt(float64(v) + p.Eps)
	}
	c.runBN(cpuBNTask{p: p, x: x, gamma: gamma, beta: beta, mean: runMean, rootVar: root, y: y}, cpuBNInfer)
}

// BatchNormBackward computes dbeta = Σ dy and dgamma = Σ dy·x̂ per channel,
// then dx from them (see Reference.BatchNormBackward).
func (c *CPU) BatchNormBackward(p BatchNormParams, x, gamma, mean, invStd, dy, dx, dgamma, dbeta []float32) {
	n := p.Rows * p.C
	cpuNeed("batchnorm x", x, n)
	cpuNeed("batchnorm gamma", gamma, p.C)
	cpuNeed("batchnorm mean", mean, p.C)
	cpuNeed("batchnorm invStd", invStd, p.C)
	cpuNeed("batchnorm dy", dy, n)
	if dx != nil {
		cpuNeed("batchnorm dx", dx, n)
	}
	cpuNeed("batchnorm dgamma", dgamma, p.C)
	cpuNeed("batchnorm dbeta", dbeta, p.C)
	if p.Rows < 0 || p.C <= 0 {
		return
	}
	t := cpuBNTask{p: p, x: x, gamma: gamma, mean: mean, invStd: invStd, dy: dy, dx: dx, dgamma: dgamma, dbeta: dbeta}
	c.runBN(t, cpuBNSums)
	if dx != nil {
		c.runBN(t, cpuBNDx)
	}
}
