package kernels

// Pooling runs over blocks of whole samples: a sample's outputs read and its
// input gradients receive only that sample's elements, so blocks never
// touch the same memory. Each window is visited once, all channels of a
// pixel together (they are adjacent in NHWC).

// cpuSpanElems is the number of elements an item of an elementwise or
// pooling task aims to touch.
const cpuSpanElems = 1 << 15

type cpuPoolKind int

const (
	cpuMaxPoolForward cpuPoolKind = iota
	cpuMaxPoolBackward
	cpuAvgPoolForward
	cpuAvgPoolBackward
)

type cpuPoolTask struct {
	kind         cpuPoolKind
	g            PoolGeom
	blockSamples int
	x, y, dy, dx []float32
	argmax       []int32
}

// MaxPoolForward writes each window's maximum and the index into x of the
// first cell (in row-major window order) that holds it.
func (c *CPU) MaxPoolForward(g PoolGeom, x, y []float32, argmax []int32) {
	cpuCheckPool(g)
	cpuNeed("maxpool x", x, g.InLen())
	cpuNeed("maxpool y", y, g.OutLen())
	cpuNeedIndex("maxpool argmax", argmax, g.OutLen())
	c.runPool(cpuPoolTask{kind: cpuMaxPoolForward, g: g, x: x, y: y, argmax: argmax})
}

// MaxPoolBackward overwrites dx with each dy added to the input that won its
// window.
func (c *CPU) MaxPoolBackward(g PoolGeom, dy []float32, argmax []int32, dx []float32) {
	cpuCheckPool(g)
	cpuNeed("maxpool dy", dy, g.OutLen())
	cpuNeedIndex("maxpool argmax", argmax, g.OutLen())
	cpuNeed("maxpool dx", dx, g.InLen())
	c.runPool(cpuPoolTask{kind: cpuMaxPoolBackward, g: g, dy: dy, dx: dx, argmax: argmax})
}

// AvgPoolForward writes the mean of the cells of each window inside the
// image.
func (c *CPU) AvgPoolForward(g PoolGeom, x, y []float32) {
	cpuCheckPool(g)
	cpuNeed("avgpool x", x, g.InLen())
	cpuNeed("avgpool y", y, g.OutLen())
	c.runPool(cpuPoolTask{kind: cpuAvgPoolForward, g: g, x: x, y: y})
}

// AvgPoolBackward overwrites dx with each dy spread evenly over the cells of
// its window inside the image.
func (c *CPU) AvgPoolBackward(g PoolGeom, dy, dx []float32) {
	cpuCheckPool(g)
	cpuNeed("avgpool dy", dy, g.OutLen())
	cpuNeed("avgpool dx", dx, g.InLen())
	c.runPool(cpuPoolTask{kind: cpuAvgPoolBackward, g: g, dy: dy, dx: dx})
}

func (c *CPU) runPool(t cpuPoolTask) {
	t.blockSamples = max(1, cpuSpanElems/(t.g.H*t.g.W*t.g.C))
	c.pool = t
	c.parallel(&c.pool, (t.g.N+t.blockSamples-1)/t.blockSamples, t.g.InLen()+t.g.OutLen())
	c.pool = cpuPoolTask{}
}

// cpuCheckPool panics on a geometry that cannot be computed (a programming
// error: geometries come from validated specs).
func cpuCheckPool(g PoolGeom) {
	if err := g.Validate(); err != nil {
		panic(err)
	}
}

func (t *cpuPoolTask) run(_, item int) {
	g := t.g
	n0 := item * t.blockSamples
	n1 := min(n0+t.blockSamples, g.N)
	if t.kind == cpuMaxPoolBackward && cpuPoolScatterVec(g, t.dy, t.argmax, t.dx, n0, n1) {
		return
	}
	if t.kind == cpuMaxPoolBackward || t.kind == cpuAvgPoolBackward {
		clear(t.dx[n0*g.H*g.W*g.C : n1*g.H*g.W*g.C])
	}
	oh, ow := g.OH(), g.OW()
	for n := n0; n < n1; n++ {
		for p := range oh {
			h0, h1 := max(p*g.Stride-g.Pad, 0), min(p*g.Stride-g.Pad+g.Size, g.H)
			for q := range ow {
				w0, w1 := max(q*g.Stride-g.Pad, 0), min(q*g.Stride-g.Pad+g.Size, g.W)
				out := ((n*oh+p)*ow + q) * g.C
				switch t.kind {
				case cpuMaxPoolForward:
					cpuMaxWindow(g, t.x, n, h0, h1, w0, w1, t.y[out:out+g.C], t.argmax[out:out+g.C])
				case cpuMaxPoolBackward:
					for c, i := range t.argmax[out : out+g.C] {
						t.dx[i] += t.dy[out+c]
					}
				case cpuAvgPoolForward:
					y := t.y[out : out+g.C]
					clear(y)
					for ih := h0; ih < h1; ih++ {
						for iw := w0; iw < w1; iw++ {
							cell := ((n*g.H+ih)*g.W + iw) * g.C
							for c, v := range t.x[cell : cell+g.C] {
								y[c] += v
							}
						}
					}
					count := float32((h1 - h0) * (w1 - w0))
					for c := range y {
						y[c] /= count
					}
				case cpuAvgPoolBackward:
					count := float32((h1 - h0) * (w1 - w0))
					dy := t.dy[out : out+g.C]
					for ih := h0; ih < h1; ih++ {
						for iw := w0; iw < w1; iw++ {
							cell := ((n*g.H+ih)*g.W + iw) * g.C
							dx := t.dx[cell : cell+g.C]
							for c, d := range dy {
								dx[c] += d / count
							}
						}
					}
				}
			}
		}
	}
}

// cpuMaxWindow writes the maximum over rows [h0, h1) and columns [w0, w1) of
// sample n, and where it was first found, for every channel.
func cpuMaxWindow(g PoolGeom, x []float32, n, h0, h1, w0, w1 int, y []float32, argmax []int32) {
	if cpuMaxWindowVec(g, x, n, h0, h1, w0, w1, y, argmax) {
		return
	}
	first := ((n*g.H+h0)*g.W + w0) * g.C
	copy(y, x[first:first+g.C])
	for c := range argmax {
		argmax[c] = int32(first + c)
	}
	for ih := h0; ih < h1; ih++ {
		for iw := w0; iw < w1; iw++ {
			cell := ((n*g.H+ih)*g.W + iw) * g.C
			for c, v := range x[cell : cell+g.C] {
				if v > y[c] {
					y[c] = v
					argmax[c] = int32(cell + c)
				}
			}
		}
	}
}

// cpuNeedIndex is cpuNeed for index slices.
func cpuNeedIndex(what string, s []int32, n int) {
	if len(s) < n {
		panic(cpuShortSlice(what, len(s), n))
	}
}
