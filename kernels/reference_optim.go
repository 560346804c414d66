package kernels

import "math"

// The updates below compute each element in float64 and round once when
// storing, with the arithmetic of the CPU backend (see cpu_optim.go). A slot (v, h, m) is rounded to T before the parameter uses it, so
// the parameter follows the state that is kept.

// SGDUpdate computes p −= lr·g.
func (*Reference[T]) SGDUpdate(lr float64, p, g []T) {
	g = g[:len(p)]
	for i := range p {
		p[i] = T(float64(p[i]) - float64(lr*float64(g[i])))
	}
}

// MomentumUpdate computes v = momentum·v − lr·g, then p += v.
func (*Reference[T]) MomentumUpdate(lr, momentum float64, p, g, v []T) {
	g, v = g[:len(p)], v[:len(p)]
	for i := range p {
		v[i] = T(float64(momentum*float64(v[i])) - float64(lr*float64(g[i])))
		p[i] = T(float64(p[i]) + float64(v[i]))
	}
}

// AdaGradUpdate computes h += g², then p −= lr·g/(√h + 1e-7).
func (*Reference[T]) AdaGradUpdate(lr float64, p, g, h []T) {
	g, h = g[:len(p)], h[:len(p)]
	for i := range p {
		gi := float64(g[i])
		h[i] = T(float64(h[i]) + float64(gi*gi))
		p[i] = T(float64(p[i]) - lr*gi/(math.Sqrt(float64(h[i]))+1e-7))
	}
}

// AdamUpdate computes lr_t = LR·√(1−β2^T)/(1−β1^T), m += (1−β1)(g−m),
// v += (1−β2)(g²−v), p −= lr_t·m/(√v + Eps).
func (*Reference[T]) AdamUpdate(a AdamParams, p, g, m, v []T) {
	g, m, v = g[:len(p)], m[:len(p)], v[:len(p)]
	lrT := adamStepSize(a)
	for i := range p {
		gi := float64(g[i])
		m[i] = T(float64(m[i]) + float64((1-a.Beta1)*(gi-float64(m[i]))))
		v[i] = T(float64(v[i]) + float64((1-a.Beta2)*(float64(gi*gi)-float64(v[i]))))
		p[i] = T(float64(p[i]) - float64(lrT*float64(m[i]))/(math.Sqrt(float64(v[i]))+a.Eps))
	}
}
