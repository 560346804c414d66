package kernels

// Elementwise primitives split their elements into fixed spans of
// cpuSpanElems; which thread computes a span cannot change an element.
// Like the reference, a forward pass takes its length from x, a backward pass
// from dy. Sigmoid and LRN compute in float64, exactly as the reference does,
// with the portable exp and pow of mathfn.go and every product that feeds a
// sum rounded explicitly, so that no compiler fuses it.

type cpuSpanKind int

const (
	cpuReLUForward cpuSpanKind = iota
	cpuReLUBackward
	cpuSigmoidForward
	cpuSigmoidBackward
	cpuMultiply // out = a·b
	cpuScaleBy  // out = a·scale
)

// cpuSpanTask computes out from a (and b) element by element.
type cpuSpanTask struct {
	kind      cpuSpanKind
	a, b, out []float32
	scale     float32
}

func (c *CPU) runSpan(t cpuSpanTask) {
	c.span = t
	n := len(t.a)
	c.parallel(&c.span, (n+cpuSpanElems-1)/cpuSpanElems, n)
	c.span = cpuSpanTask{}
}

func (t *cpuSpanTask) run(_, item int) {
	i0 := item * cpuSpanElems
	i1 := min(i0+cpuSpanElems, len(t.a))
	a, out := t.a[i0:i1], t.out[i0:i1]
	var b []float32
	if t.b != nil {
		b = t.b[i0:i1]
	}
	switch t.kind {
	case cpuReLUForward:
		cpuReLU(a, out)
	case cpuReLUBackward: // a = y, b = dy
		cpuReLUMask(a, b, out)
	case cpuSigmoidForward:
		for i, v := range a {
			out[i] = float32(1 / (1 + expPortable(-float64(v))))
		}
	case cpuSigmoidBackward: // a = dy, b = y
		for i, d := range a {
			s := float64(b[i])
			out[i] = float32(float64(d) * s * (1 - s))
		}
	case cpuMultiply:
		for i, v := range a {
			out[i] = v * b[i]
		}
	case cpuScaleBy:
		for i, v := range a {
			out[i] = v * t.scale
		}
	}
}

// ReLUForward computes y = max(x, 0).
func (c *CPU) ReLUForward(x, y []float32) {
	cpuNeed("relu y", y, len(x))
	c.runSpan(cpuSpanTask{kind: cpuReLUForward, a: x, out: y})
}

// ReLUBackward computes dx = dy where y > 0, else 0.
func (c *CPU) ReLUBackward(y, dy, dx []float32) {
	cpuNeed("relu y", y, len(dy))
	cpuNeed("relu dx", dx, len(dy))
	c.runSpan(cpuSpanTask{kind: cpuReLUBackward, a: y[:len(dy)], b: dy, out: dx})
}

// SigmoidForward computes y = 1/(1+e^−x).
func (c *CPU) SigmoidForward(x, y []float32) {
	cpuNeed("sigmoid y", y, len(x))
	c.runSpan(cpuSpanTask{kind: cpuSigmoidForward, a: x, out: y})
}

// SigmoidBackward computes dx = dy·y·(1−y).
func (c *CPU) SigmoidBackward(y, dy, dx []float32) {
	cpuNeed("sigmoid y", y, len(dy))
	cpuNeed("sigmoid dx", dx, len(dy))
	c.runSpan(cpuSpanTask{kind: cpuSigmoidBackward, a: dy, b: y, out: dx})
}

// DropoutBackward computes dx = dy·mask.
func (c *CPU) DropoutBackward(mask, dy, dx []float32) {
	cpuNeed("dropout mask", mask, len(dy))
	cpuNeed("dropout dx", dx, len(dy))
	c.runSpan(cpuSpanTask{kind: cpuMultiply, a: dy, b: mask, out: dx})
}

// DropoutForward draws each row's mask with FillDropoutMask, from the stream
// of the row's sample, and multiplies, in training; at test time it scales
// by DropoutTestScale and leaves mask alone.
func (c *CPU) DropoutForward(d DropoutParams, rows, cols int, samples []int64, x, y, mask []float32) {
	cpuNeed("dropout x", x, rows*cols)
	cpuNeed("dropout y", y, rows*cols)
	if !d.Train {
		c.runSpan(cpuSpanTask{kind: cpuScaleBy, a: x[:rows*cols], out: y, scale: float32(DropoutTestScale(d))})
		return
	}
	cpuNeed("dropout mask", mask, rows*cols)
	if len(samples) < rows {
		panic(cpuShortSlice("dropout samples", len(samples), rows))
	}
	t := &c.dropout
	*t = cpuDropoutTask{d: d, cols: cols, rowsPerItem: max(1, cpuSpanElems/max(cols, 1)), rows: rows, samples: samples, x: x, y: y, mask: mask}
	// Drawing the mask (ten Philox rounds per four units) dominates.
	c.parallel(t, (rows+t.rowsPerItem-1)/t.rowsPerItem, 8*rows*cols)
	*t = cpuDropoutTask{}
}

type cpuDropoutTask struct {
	d                       DropoutParams
	rows, cols, rowsPerItem int
	samples                 []int64
	x, y, mask              []float32
}

func (t *cpuDropoutTask) run(_, item int) {
	r0 := item * t.rowsPerItem
	r1 := min(r0+t.rowsPerItem, t.rows)
	for r := r0; r < r1; r++ {
		m := t.mask[r*t.cols : (r+1)*t.cols]
		FillDropoutMask(t.d, t.samples[r], m)
		y := t.y[r*t.cols : (r+1)*t.cols]
		for j, v := range t.x[r*t.cols : (r+1)*t.cols] {
			y[j] = v * m[j]
		}
	}
}

// LRNForward normalises across channels (ONNX LRN): scale = K +
// Alpha/Size·Σ x² over Size channels centred on each channel, y =
// x·scale^−Beta.
func (c *CPU) LRNForward(p LRNParams, x, y, scale []float32) {
	n := p.Rows * p.C
	cpuNeed("lrn x", x, n)
	cpuNeed("lrn y", y, n)
	cpuNeed("lrn scale", scale, n)
	c.runLRN(cpuLRNTask{p: p, x: x, y: y, scale: scale})
}

// LRNBackward computes dx[j] = dy[j]·scale[j]^−Beta − 2·Alpha·Beta/Size ·
// x[j] · Σ dy[c]·y[c]/scale[c] over the channels c whose window holds j.
func (c *CPU) LRNBackward(p LRNParams, x, y, scale, dy, dx []float32) {
	n := p.Rows * p.C
	for _, s := range [...][]float32{x, y, scale, dy, dx} {
		cpuNeed("lrn tensor", s, n)
	}
	c.runLRN(cpuLRNTask{p: p, backward: true, x: x, y: y, scale: scale, dy: dy, dx: dx})
}

func (c *CPU) runLRN(t cpuLRNTask) {
	if t.p.Rows <= 0 || t.p.C <= 0 {
		return
	}
	t.rowsPerItem = max(1, cpuSpanElems/t.p.C)
	c.lrn = t
	// A power per element: count it as several operations.
	c.parallel(&c.lrn, (t.p.Rows+t.rowsPerItem-1)/t.rowsPerItem, 16*t.p.Rows*t.p.C)
	c.lrn = cpuLRNTask{}
}

type cpuLRNTask struct {
	p                   LRNParams
	backward            bool
	rowsPerItem         int
	x, y, scale, dy, dx []float32
}

func (t *cpuLRNTask) run(_, item int) {
	p := t.p
	before := (p.Size - 1) / 2
	after := p.Size - 1 - before
	coef := 2 * p.Alpha * p.Beta / float64(p.Size)
	r0 := item * t.rowsPerItem
	r1 := min(r0+t.rowsPerItem, p.Rows)
	for r := r0; r < r1; r++ {
		base := r * p.C
		x, y, scale := t.x[base:base+p.C], t.y[base:base+p.C], t.scale[base:base+p.C]
		if !t.backward {
			for c := range p.C {
				var sq float64
				for i := max(c-before, 0); i <= min(c+after, p.C-1); i++ {
					sq += float64(float64(x[i]) * float64(x[i]))
				}
				s := p.K + float64(p.Alpha/float64(p.Size)*sq)
				scale[c] = float32(s)
				y[c] = float32(float64(x[c]) * powPortable(s, -p.Beta))
			}
			continue
		}
		dy, dx := t.dy[base:base+p.C], t.dx[base:base+p.C]
		for j := range p.C {
			// j is in the window [c−before, c+after] of channel c exactly
			// when c is in [j−after, j+before].
			var sum float64
			for c := max(j-after, 0); c <= min(j+before, p.C-1); c++ {
				sum += float64(dy[c]) * float64(y[c]) / float64(scale[c])
			}
			s := float64(scale[j])
			dx[j] = float32(float64(float64(dy[j])*powPortable(s, -p.Beta)) - float64(coef*float64(x[j])*sum))
		}
	}
}
