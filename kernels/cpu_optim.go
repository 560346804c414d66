package kernels

import "math"

// The optimizer updates compute each element in float64 and round once when
// storing, a slot (v, h, m) rounded before the parameter uses it — the same
// arithmetic as the reference, so the two agree bit for bit. Every product
// that feeds a sum is rounded by an explicit conversion, so that no compiler
// fuses it into a multiply-add (Go does on arm64), and Adam's step size
// takes no math.Pow: the same bits on every processor. A network's
// parameters number in the hundreds of thousands, which takes well under a
// millisecond on one thread.

// SGDUpdate computes p −= lr·g.
func (*CPU) SGDUpdate(lr float64, p, g []float32) {
	cpuNeed("sgd g", g, len(p))
	g = g[:len(p)]
	for i := range p {
		p[i] = float32(float64(p[i]) - float64(lr*float64(g[i])))
	}
}

// MomentumUpdate computes v = momentum·v − lr·g, then p += v.
func (*CPU) MomentumUpdate(lr, momentum float64, p, g, v []float32) {
	cpuNeed("momentum g", g, len(p))
	cpuNeed("momentum v", v, len(p))
	g, v = g[:len(p)], v[:len(p)]
	for i := range p {
		v[i] = float32(float64(momentum*float64(v[i])) - float64(lr*float64(g[i])))
		p[i] = float32(float64(p[i]) + float64(v[i]))
	}
}

// AdaGradUpdate computes h += g², then p −= lr·g/(√h + 1e-7).
func (*CPU) AdaGradUpdate(lr float64, p, g, h []float32) {
	cpuNeed("adagrad g", g, len(p))
	cpuNeed("adagrad h", h, len(p))
	g, h = g[:len(p)], h[:len(p)]
	for i := range p {
		gi := float64(g[i])
		h[i] = float32(float64(h[i]) + float64(gi*gi))
		p[i] = float32(float64(p[i]) - lr*gi/(math.Sqrt(float64(h[i]))+1e-7))
	}
}

// AdamUpdate computes lr_t = LR·√(1−β2^T)/(1−β1^T), m += (1−β1)(g−m),
// v += (1−β2)(g²−v), p −= lr_t·m/(√v + Eps). Each element takes a square
// root and a division in float64, so large tensors are split into spans of
// cpuAdamElems run on all threads (elementwise: the split changes nothing).
func (c *CPU) AdamUpdate(a AdamParams, p, g, m, v []float32) {
	cpuNeed("adam g", g, len(p))
	cpuNeed("adam m", m, len(p))
	cpuNeed("adam v", v, len(p))
	c.adam = cpuAdamTask{a: a, p: p, g: g[:len(p)], m: m[:len(p)], v: v[:len(p)]}
	c.parallel(&c.adam, (len(p)+cpuAdamElems-1)/cpuAdamElems, 8*len(p))
	c.adam = cpuAdamTask{}
}

// cpuAdamElems is the number of parameters one item of AdamUpdate updates.
const cpuAdamElems = 4096

type cpuAdamTask struct {
	a          AdamParams
	p, g, m, v []float32
}

func (t *cpuAdamTask) run(_, item int) {
	i0 := item * cpuAdamElems
	i1 := min(i0+cpuAdamElems, len(t.p))
	cpuAdam(t.a, t.p[i0:i1], t.g[i0:i1], t.m[i0:i1], t.v[i0:i1])
}

// adamStepSize is lr_t = LR·√(1−β2^T)/(1−β1^T), with the powers by
// repeated squaring.
func adamStepSize(a AdamParams) float64 {
	return float64(a.LR*math.Sqrt(1-powIntPortable(a.Beta2, a.T))) / (1 - powIntPortable(a.Beta1, a.T))
}

func cpuAdam(a AdamParams, p, g, m, v []float32) {
	g, m, v = g[:len(p)], m[:len(p)], v[:len(p)]
	lrT := adamStepSize(a)
	for i := range p {
		gi := float64(g[i])
		m[i] = float32(float64(m[i]) + float64((1-a.Beta1)*(gi-float64(m[i]))))
		v[i] = float32(float64(v[i]) + float64((1-a.Beta2)*(float64(gi*gi)-float64(v[i]))))
		p[i] = float32(float64(p[i]) - float64(lrT*float64(m[i]))/(math.Sqrt(float64(v[i]))+a.Eps))
	}
}
