package kernels

// Convolutions on the CPU are im2col + GEMM over blocks of whole samples:
//
//	forward:        col = im2col(x block);  y block = col·W + bias
//	backward data:  dcol = dy block·Wᵀ;      dx block = col2im(dcol)
//	backward filter: per chunk of blocks, dWᵀ chunk = Σ dy blockᵀ·col;
//	                 dW = chunk 0 + chunk 1 + … in chunk order
//
// Block and chunk sizes depend only on the geometry, so the same multiplies
// with the same operands happen for any thread count.

// cpuColTarget is the number of im2col floats a block aims at: large enough
// for an efficient multiply, small enough (256 KiB) to stay in cache between
// im2col and the multiply.
const cpuColTarget = 1 << 16

// cpuMaxGradChunks bounds the number of partial filter gradients, and with
// it the scratch space and the cost of adding them up, while leaving enough
// chunks to keep every thread of a large machine busy.
const cpuMaxGradChunks = 32

// cpuConvPlan is how a convolution is cut into blocks and chunks.
type cpuConvPlan struct {
	pixels       int  // OH·OW: output pixels (patch-matrix rows) per sample
	k            int  // KH·KW·C: patch-matrix columns
	direct       bool // a 1×1, stride 1, unpadded convolution: x is its own patch matrix
	blockSamples int  // samples per block
	blocks       int
	chunkBlocks  int // blocks per gradient chunk
	chunks       int
}

func cpuPlanConv(g ConvGeom) cpuConvPlan {
	p := cpuConvPlan{
		pixels: g.OH() * g.OW(),
		k:      g.ColCols(),
		direct: g.KH == 1 && g.KW == 1 && g.Stride == 1 && g.Pad == 0,
	}
	p.blockSamples = min(max(cpuColTarget/(p.pixels*p.k), 1), g.N)
	p.blocks = (g.N + p.blockSamples - 1) / p.blockSamples
	p.chunkBlocks = (p.blocks + cpuMaxGradChunks - 1) / cpuMaxGradChunks
	p.chunks = (p.blocks + p.chunkBlocks - 1) / p.chunkBlocks
	return p
}

// samples returns the samples [n0, n1) of a block.
func (p cpuConvPlan) samples(g ConvGeom, block int) (n0, n1 int) {
	n0 = block * p.blockSamples
	return n0, min(n0+p.blockSamples, g.N)
}

// partialLen is the length of one chunk's partial gradient: dWᵀ, then dbias.
func (p cpuConvPlan) partialLen(g ConvGeom) int { return g.OC*p.k + g.OC }

// cpuConvArgs are the operands of a convolution task. The task types below
// are all this struct with different run methods, so the one copy kept in
// the CPU serves every one of them.
type cpuConvArgs struct {
	c    *CPU
	g    ConvGeom
	plan cpuConvPlan
	// x, w, bias, y, dy, dx, dw, db are the caller's tensors; col is the
	// patch matrix of Im2Col and Col2Im.
	x, w, bias, y, dy, dx, dw, db, col []float32
}

// startConv fills in the task arguments of a convolution whose geometry
// and tensors the caller has checked.
func (c *CPU) startConv(g ConvGeom, a cpuConvArgs) *cpuConvArgs {
	a.c, a.g, a.plan = c, g, cpuPlanConv(g)
	c.conv = a
	return &c.conv
}

// cpuCheckConv panics on a geometry that cannot be computed: geometries come
// from validated network specs, so a bad one here is a programming error.
func cpuCheckConv(g ConvGeom) {
	if err := g.Validate(); err != nil {
		panic(err)
	}
}

// Im2Col writes the patch matrix of x, a block of samples per item.
func (c *CPU) Im2Col(g ConvGeom, x, col []float32) {
	cpuCheckConv(g)
	cpuNeed("im2col x", x, g.InLen())
	cpuNeed("im2col col", col, g.ColRows()*g.ColCols())
	t := c.startConv(g, cpuConvArgs{x: x, col: col})
	c.parallel((*cpuIm2ColTask)(t), t.plan.blocks, g.ColRows()*g.ColCols())
	c.conv = cpuConvArgs{}
}

type cpuIm2ColTask cpuConvArgs

func (t *cpuIm2ColTask) run(_, item int) {
	n0, n1 := t.plan.samples(t.g, item)
	cpuIm2Col(t.g, t.x, n0, n1, t.col[n0*t.plan.pixels*t.plan.k:])
}

// Col2Im overwrites dx with the adjoint of Im2Col, a block of samples per
// item (blocks of whole samples never write the same element of dx).
func (c *CPU) Col2Im(g ConvGeom, col, dx []float32) {
	cpuCheckConv(g)
	cpuNeed("col2im col", col, g.ColRows()*g.ColCols())
	cpuNeed("col2im dx", dx, g.InLen())
	t := c.startConv(g, cpuConvArgs{col: col, dx: dx})
	c.parallel((*cpuCol2ImTask)(t), t.plan.blocks, g.ColRows()*g.ColCols())
	c.conv = cpuConvArgs{}
}

type cpuCol2ImTask cpuConvArgs

func (t *cpuCol2ImTask) run(_, item int) {
	n0, n1 := t.plan.samples(t.g, item)
	cpuCol2Im(t.g, t.col[n0*t.plan.pixels*t.plan.k:], n0, n1, t.dx)
}

// ConvForward computes y = conv(x, w) + bias.
func (c *CPU) ConvForward(g ConvGeom, x, w, bias, y []float32) {
	cpuCheckConv(g)
	cpuNeed("conv x", x, g.InLen())
	cpuNeed("conv w", w, g.FilterLen())
	cpuNeed("conv bias", bias, g.OC)
	cpuNeed("conv y", y, g.OutLen())
	t := c.startConv(g, cpuConvArgs{x: x, w: w, bias: bias, y: y})
	if !t.plan.direct {
		c.growCol(t.plan.blockSamples * t.plan.pixels * t.plan.k)
	}
	c.parallel((*cpuConvForwardTask)(t), t.plan.blocks, 2*g.ColRows()*g.ColCols()*g.OC)
	c.conv = cpuConvArgs{}
}

// patches returns the patch matrix of samples [n0, n1) of the current
// convolution's x: x itself for a direct convolution, else the worker's col
// block filled by im2col.
func (c *CPU) patches(worker, n0, n1 int) []float32 {
	g, p := c.conv.g, c.conv.plan
	if p.direct {
		return c.conv.x[n0*p.pixels*p.k : n1*p.pixels*p.k]
	}
	col := c.col[worker][:(n1-n0)*p.pixels*p.k]
	cpuIm2Col(g, c.conv.x, n0, n1, col)
	return col
}

type cpuConvForwardTask cpuConvArgs

func (t *cpuConvForwardTask) run(worker, item int) {
	g, p := t.g, t.plan
	n0, n1 := p.samples(g, item)
	rows := (n1 - n0) * p.pixels
	col := t.c.patches(worker, n0, n1)
	y := t.y[n0*p.pixels*g.OC : n1*p.pixels*g.OC]
	t.c.sgemm(worker, false, false, rows, g.OC, p.k, 1, col, p.k, t.w, g.OC, 0, y, g.OC)
	cpuAddBias(rows, g.OC, t.bias, y)
}

// ConvBackwardData computes dx = col2im(dy·Wᵀ).
func (c *CPU) ConvBackwardData(g ConvGeom, dy, w, dx []float32) {
	cpuCheckConv(g)
	cpuNeed("conv dy", dy, g.OutLen())
	cpuNeed("conv w", w, g.FilterLen())
	cpuNeed("conv dx", dx, g.InLen())
	t := c.startConv(g, cpuConvArgs{dy: dy, w: w, dx: dx})
	p := t.plan
	c.transposed = cpuGrow(c.transposed, g.OC*p.k)
	cpuTranspose(p.k, g.OC, w, g.OC, c.transposed)
	if !p.direct {
		c.growCol(p.blockSamples * p.pixels * p.k)
	}
	c.parallel((*cpuConvDataTask)(t), p.blocks, 2*g.ColRows()*g.ColCols()*g.OC)
	c.conv = cpuConvArgs{}
}

type cpuConvDataTask cpuConvArgs

func (t *cpuConvDataTask) run(worker, item int) {
	g, p := t.g, t.plan
	n0, n1 := p.samples(g, item)
	rows := (n1 - n0) * p.pixels
	dy := t.dy[n0*p.pixels*g.OC:]
	if p.direct {
		t.c.sgemm(worker, false, false, rows, p.k, g.OC, 1, dy, g.OC, t.c.transposed, p.k, 0, t.dx[n0*p.pixels*p.k:], p.k)
		return
	}
	dcol := t.c.col[worker][:rows*p.k]
	t.c.sgemm(worker, false, false, rows, p.k, g.OC, 1, dy, g.OC, t.c.transposed, p.k, 0, dcol, p.k)
	cpuCol2Im(g, dcol, n0, n1, t.dx)
}

// ConvBackwardFilter computes dw = colᵀ·dy and dbias = Σ rows of dy: first
// one partial sum per chunk of blocks, then the partials added in chunk
// order.
//
// Each chunk computes dWᵀ = dyᵀ·col (OC×K) rather than dW: the inner loops of
// the multiply then run along the K columns of col, which are longer than
// the OC columns of dy. The reduction transposes back for free.
func (c *CPU) ConvBackwardFilter(g ConvGeom, x, dy, dw, dbias []float32) {
	cpuCheckConv(g)
	cpuNeed("conv x", x, g.InLen())
	cpuNeed("conv dy", dy, g.OutLen())
	cpuNeed("conv dw", dw, g.FilterLen())
	cpuNeed("conv dbias", dbias, g.OC)
	t := c.startConv(g, cpuConvArgs{x: x, dy: dy, dw: dw, db: dbias})
	p := t.plan
	if !p.direct {
		c.growCol(p.blockSamples * p.pixels * p.k)
	}
	c.partials = cpuGrow(c.partials, p.chunks*p.partialLen(g))
	c.parallel((*cpuConvFilterTask)(t), p.chunks, 2*g.ColRows()*g.ColCols()*g.OC)
	c.parallel((*cpuConvReduceTask)(t), (p.k+cpuReduceRows-1)/cpuReduceRows, p.chunks*p.partialLen(g))
	c.conv = cpuConvArgs{}
}

type cpuConvFilterTask cpuConvArgs

func (t *cpuConvFilterTask) run(worker, chunk int) {
	g, p := t.g, t.plan
	partial := t.c.partials[chunk*p.partialLen(g) : (chunk+1)*p.partialLen(g)]
	dwT, db := partial[:g.OC*p.k], partial[g.OC*p.k:]
	b0 := chunk * p.chunkBlocks
	b1 := min(b0+p.chunkBlocks, p.blocks)
	for b := b0; b < b1; b++ {
		n0, n1 := p.samples(g, b)
		rows := (n1 - n0) * p.pixels
		col := t.c.patches(worker, n0, n1)
		var beta float32
		if b > b0 {
			beta = 1
		}
		t.c.sgemm(worker, true, false, g.OC, p.k, rows, 1, t.dy[n0*p.pixels*g.OC:], g.OC, col, p.k, beta, dwT, p.k)
	}
	n0, _ := p.samples(g, b0)
	_, n1 := p.samples(g, b1-1)
	clear(db)
	cpuSumRows((n1-n0)*p.pixels, g.OC, t.dy[n0*p.pixels*g.OC:], db)
}

// cpuReduceRows is the number of rows of dw one reduction item writes.
const cpuReduceRows = 32

type cpuConvReduceTask cpuConvArgs

// run writes rows [r0, r1) of dw (and, in item 0, dbias) as partial 0 +
// partial 1 + … in chunk order.
func (t *cpuConvReduceTask) run(_, item int) {
	g, p := t.g, t.plan
	r0 := item * cpuReduceRows
	r1 := min(r0+cpuReduceRows, p.k)
	plen := p.partialLen(g)
	for ch := range p.chunks {
		dwT := t.c.partials[ch*plen : ch*plen+g.OC*p.k]
		for o := range g.OC {
			src := dwT[o*p.k+r0 : o*p.k+r1]
			if ch == 0 {
				for i, v := range src {
					t.dw[(r0+i)*g.OC+o] = v
				}
			} else {
				for i, v := range src {
					t.dw[(r0+i)*g.OC+o] += v
				}
			}
		}
		if item == 0 {
			db := t.c.partials[ch*plen+g.OC*p.k : (ch+1)*plen]
			if ch == 0 {
				copy(t.db[:g.OC], db)
			} else {
				for o, v := range db {
					t.db[o] += v
				}
			}
		}
	}
}

// cpuIm2Col writes the patch-matrix rows of samples [n0, n1) to col (whose
// first element is the first row of sample n0).
func cpuIm2Col(g ConvGeom, x []float32, n0, n1 int, col []float32) {
	oh, ow, k := g.OH(), g.OW(), g.ColCols()
	tapRow := g.KW * g.C // floats of one filter row (kh) in a patch row
	row := 0
	for n := n0; n < n1; n++ {
		for p := range oh {
			for q := range ow {
				dst := col[row*k : (row+1)*k]
				row++
				iw0 := q*g.Stride - g.Pad
				for kh := range g.KH {
					seg := dst[kh*tapRow : (kh+1)*tapRow]
					ih := p*g.Stride - g.Pad + kh
					if ih < 0 || ih >= g.H {
						clear(seg)
						continue
					}
					src := x[((n*g.H+ih)*g.W)*g.C:]
					if iw0 >= 0 && iw0+g.KW <= g.W {
						// The whole filter row is inside: one copy.
						copy(seg, src[iw0*g.C:(iw0+g.KW)*g.C])
						continue
					}
					for kw := range g.KW {
						iw := iw0 + kw
						cell := seg[kw*g.C : (kw+1)*g.C]
						if iw < 0 || iw >= g.W {
							clear(cell)
						} else {
							copy(cell, src[iw*g.C:(iw+1)*g.C])
						}
					}
				}
			}
		}
	}
}

// cpuCol2Im overwrites the input-gradient of samples [n0, n1) in dx with the
// adjoint of cpuIm2Col: zero, then every patch entry added to the input
// position it was read from, rows in order.
func cpuCol2Im(g ConvGeom, col []float32, n0, n1 int, dx []float32) {
	oh, ow, k := g.OH(), g.OW(), g.ColCols()
	tapRow := g.KW * g.C
	clear(dx[n0*g.H*g.W*g.C : n1*g.H*g.W*g.C])
	row := 0
	for n := n0; n < n1; n++ {
		for p := range oh {
			for q := range ow {
				src := col[row*k : (row+1)*k]
				row++
				iw0 := q*g.Stride - g.Pad
				for kh := range g.KH {
					ih := p*g.Stride - g.Pad + kh
					if ih < 0 || ih >= g.H {
						continue
					}
					seg := src[kh*tapRow : (kh+1)*tapRow]
					dst := dx[((n*g.H+ih)*g.W)*g.C:]
					lo, hi := max(0, -iw0), min(g.KW, g.W-iw0)
					if lo >= hi {
						continue
					}
					d := dst[(iw0+lo)*g.C : (iw0+hi)*g.C]
					for i, v := range seg[lo*g.C : hi*g.C] {
						d[i] += v
					}
				}
			}
		}
	}
}

// cpuAddBias adds bias[j] to y[i·cols + j].
func cpuAddBias(rows, cols int, bias, y []float32) {
	bias = bias[:cols]
	for i := range rows {
		row := y[i*cols : (i+1)*cols]
		for j, b := range bias {
			row[j] += b
		}
	}
}

// cpuSumRows adds the rows of the rows×cols matrix a to sum, in row order.
func cpuSumRows(rows, cols int, a, sum []float32) {
	sum = sum[:cols]
	for i := range rows {
		for j, v := range a[i*cols : (i+1)*cols] {
			sum[j] += v
		}
	}
}

// AddBias adds bias[j] to y[i·cols + j] for every row i.
func (c *CPU) AddBias(rows, cols int, bias, y []float32) {
	cpuNeed("bias", bias, cols)
	cpuNeed("y", y, rows*cols)
	cpuAddBias(rows, cols, bias, y)
}
