package kernels

// Convolutions on the CPU are im2col + GEMM over blocks of whole samples:
//
//	forward:        col = im2col(x block);  y block = col·W + bias (+ ReLU)
//	backward data:  dcol = dy block·Wᵀ;      dx block = col2im(dcol)
//	                (or, with stride 1 and C ≥ OC, a forward convolution of
//	                dy with the flipped filter: see cpuFlipGeom)
//	backward filter: per chunk of blocks, dWᵀ chunk = Σ dy blockᵀ·col
//	                 (or dW = Σ colᵀ·dy block: see cpuConvPlan.kMajor);
//	                 dW = chunk 0 + chunk 1 + … in chunk order
//
// W (or Wᵀ) is packed for the GEMM once per call, not once per block.
// conv1 (one input channel, 16 3×3 filters) has kernels of its own
// (cpu_conv1.go).
//
// Block and chunk sizes depend only on the geometry, so the same multiplies
// with the same operands happen for any thread count.

// cpuColTarget is the number of im2col floats a block aims at: large enough
// for an efficient multiply, small enough (256 KiB) to stay in cache between
// im2col and the multiply.
const cpuColTarget = 1 << 16

// cpuTileRows is the row count of the AVX-512 micro-kernel's tiles (and
// twice the AVX2 one's), which blocks of patch rows try to fill.
const cpuTileRows = 12

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// cpuMaxGradChunks bounds the number of partial filter gradients, and with
// it the scratch space and the cost of adding them up, while leaving enough
// chunks to keep every thread of a large machine busy.
const cpuMaxGradChunks = 32

// cpuKMajorMaxK is the largest K for which the filter gradient is computed
// as dW = colᵀ·dy (see cpuConvPlan.kMajor) whatever OC is. Measured on the
// deep network's layers (AMD Zen 4): K = 144 runs 20–35% faster that way
// (the OC = 16 or 32 rows of dWᵀ fill 12-row tiles badly, and col needs no
// packing), while K = 288 and 576 run 25–35% slower, reading col in place
// with a long stride.
const cpuKMajorMaxK = 160

// cpuConvPlan is how a convolution is cut into blocks and chunks.
type cpuConvPlan struct {
	pixels       int  // OH·OW: output pixels (patch-matrix rows) per sample
	k            int  // KH·KW·C: patch-matrix columns
	direct       bool // a 1×1, stride 1, unpadded convolution: x is its own patch matrix
	blockSamples int  // samples per block
	blocks       int
	chunkBlocks  int // blocks per gradient chunk
	chunks       int
	// kMajor: a chunk's partial filter gradient is dW (K×OC) rather than
	// dWᵀ (OC×K); see cpuKMajorMaxK. For conv1 (K = 9, OC = 16), OC×K
	// would pad every 9-wide tile to 16.
	kMajor bool
	// kBlocked: the filter gradient sums each block's pixel rows in k
	// blocks of cpuFilterBlockK (see cpuFilterKBlocked); then kMajor is
	// set too.
	kBlocked bool
	// conv1: one input channel, 16 3×3 filters, stride 1: the forward and
	// filter passes take the kernels of cpu_conv1.go.
	conv1 bool
}

func cpuPlanConv(g ConvGeom) cpuConvPlan {
	p := cpuConvPlan{
		pixels: g.OH() * g.OW(),
		k:      g.ColCols(),
		direct: g.KH == 1 && g.KW == 1 && g.Stride == 1 && g.Pad == 0,
	}
	p.kBlocked = cpuFilterKBlocked(g, p)
	p.conv1 = cpuIsConv1(g)
	p.kMajor = p.k < g.OC || p.k <= cpuKMajorMaxK || p.kBlocked
	p.blockSamples = max(cpuColTarget/(p.pixels*p.k), 1)
	// A block whose rows end in a partial 12-row tile wastes most of that
	// tile's work in every multiply (conv6: 64 rows = 5⅓ tiles). Round the
	// block up to whole tiles when the patch block stays within twice its
	// target size.
	if p.pixels*p.blockSamples%cpuTileRows != 0 {
		step := cpuTileRows / gcd(p.pixels, cpuTileRows)
		if bs := (p.blockSamples + step - 1) / step * step; bs*p.pixels*p.k <= 2*cpuColTarget {
			p.blockSamples = bs
		}
	}
	p.blockSamples = min(p.blockSamples, g.N)
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

// partialLen is the length of one chunk's partial gradient: dWᵀ (or dW),
// then dbias.
func (p cpuConvPlan) partialLen(g ConvGeom) int { return g.OC*p.k + g.OC }

// partialShape is the rows and columns of a chunk's partial filter
// gradient: OC×K (dWᵀ), or K×OC (dW) when kMajor.
func (p cpuConvPlan) partialShape(g ConvGeom) (rows, cols int) {
	if p.kMajor {
		return p.k, g.OC
	}
	return g.OC, p.k
}

// reduceRows is the number of partial-gradient rows one reduction item
// sums: about cpuReduceElems floats.
func (p cpuConvPlan) reduceRows(g ConvGeom) int {
	_, cols := p.partialShape(g)
	return max(1, cpuReduceElems/cols)
}

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
	// relu applies ReLU to the forward output, with the bias.
	relu bool
	// implicit: the forward pass or the filter gradient reads its patches
	// in place (see cpu_conv_implicit.go and cpu_conv_filter_implicit.go).
	implicit bool
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
	c.convForward(g, x, w, bias, y, false)
}

// ConvForwardReLU computes y = max(conv(x, w) + bias, 0). The bias and the
// ReLU are applied to each block of y right after its multiply, while it is
// still in cache, so the activations make one trip through memory instead
// of three.
func (c *CPU) ConvForwardReLU(g ConvGeom, x, w, bias, y []float32) {
	c.convForward(g, x, w, bias, y, true)
}

func (c *CPU) convForward(g ConvGeom, x, w, bias, y []float32, relu bool) {
	cpuCheckConv(g)
	cpuNeed("conv x", x, g.InLen())
	cpuNeed("conv w", w, g.FilterLen())
	cpuNeed("conv bias", bias, g.OC)
	cpuNeed("conv y", y, g.OutLen())
	t := c.startConv(g, cpuConvArgs{x: x, w: w, bias: bias, y: y, relu: relu})
	switch {
	case t.plan.conv1:
		c.growCol(cpuConv1PadLen(g))
	case t.plan.direct:
		c.packedW.Pack(false, t.plan.k, g.OC, w, g.OC)
	case cpuImplicitFits(g, t.plan):
		c.packedW.Pack(false, t.plan.k, g.OC, w, g.OC)
		t.implicit = true
		c.implicit.plan(g, t.plan, c.threads)
		c.growCol(c.implicit.implicitLen(g, t.plan))
		c.growEdges()
	default:
		c.packedW.Pack(false, t.plan.k, g.OC, w, g.OC)
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
	if p.conv1 {
		cpuConv1Forward(g, t.x, t.w, t.bias, t.y, n0, n1, t.relu, t.c.col[worker])
		return
	}
	if t.implicit {
		t.implicitForward(worker, n0, n1)
		return
	}
	rows := (n1 - n0) * p.pixels
	col := t.c.patches(worker, n0, n1)
	y := t.y[n0*p.pixels*g.OC : n1*p.pixels*g.OC]
	t.c.gemmSpace[worker].SgemmPacked(false, rows, 1, col, p.k, &t.c.packedW, 0, y, g.OC)
	cpuBias(rows, g.OC, t.bias, y, t.relu)
}

// cpuFlipGeom returns, for a stride-1 convolution g with a square filter and
// Pad < KH, the convolution whose forward pass is g's backward data pass:
//
//	dx[n, i, j, c] = Σ_{kh,kw,o} dy[n, i+P−kh, j+P−kw, o]·w[kh, kw, c, o]
//
// is a convolution of dy (OC channels), padded by KH−1−P, with the filter
// flipped in both directions and its channels swapped (cpuFlipFilter), into
// C channels of H×W pixels. Its GEMM has K = KH·KW·OC and N = C, where
// dcol = dy·Wᵀ has K = OC and N = KH·KW·C, and its output needs no col2im:
// no clearing, no adds. It is taken when C ≥ OC, where it measured faster
// on the deep network (Zen 4, batch 100): conv2 (16→16) 1.39 → 1.27 ms,
// conv4 (32→32, pad 2, so no padding at all) 1.31 → 1.00 ms, conv6 (64→64)
// 1.15 → 1.12 ms; with C < OC it was 5–20% slower (conv3, conv5; conv1,
// whose N would be 1, 2.5 times slower).
func cpuFlipGeom(g ConvGeom) (ConvGeom, bool) {
	if g.Stride != 1 || g.KH != g.KW || g.Pad >= g.KH || (g.KH == 1 && g.Pad == 0) || g.C < g.OC {
		return ConvGeom{}, false
	}
	return ConvGeom{N: g.N, H: g.OH(), W: g.OW(), C: g.OC, OC: g.C, KH: g.KH, KW: g.KW, Stride: 1, Pad: g.KH - 1 - g.Pad}, true
}

// cpuFlipFilter writes the filter of cpuFlipGeom(g): wf[kh', kw', o, c] =
// w[KH−1−kh', KW−1−kw', c, o], both HWIO.
func cpuFlipFilter(g ConvGeom, w, wf []float32) {
	for kh := range g.KH {
		for kw := range g.KW {
			src := w[((g.KH-1-kh)*g.KW+(g.KW-1-kw))*g.C*g.OC:][:g.C*g.OC]
			dst := wf[(kh*g.KW+kw)*g.OC*g.C:][:g.OC*g.C]
			for c := range g.C {
				for o := range g.OC {
					dst[o*g.C+c] = src[c*g.OC+o]
				}
			}
		}
	}
}

// ConvBackwardData computes dx = col2im(dy·Wᵀ), or, for a stride-1
// convolution, the same sums as a forward convolution (see cpuFlipGeom).
func (c *CPU) ConvBackwardData(g ConvGeom, dy, w, dx []float32) {
	cpuCheckConv(g)
	cpuNeed("conv dy", dy, g.OutLen())
	cpuNeed("conv w", w, g.FilterLen())
	cpuNeed("conv dx", dx, g.InLen())
	if gf, ok := cpuFlipGeom(g); ok {
		c.flipped = cpuGrow(c.flipped, gf.FilterLen()+gf.OC)
		wf, zeroBias := c.flipped[:gf.FilterLen()], c.flipped[gf.FilterLen():]
		cpuFlipFilter(g, w, wf)
		clear(zeroBias)
		c.convForward(gf, dy, wf, zeroBias, dx, false)
		return
	}
	t := c.startConv(g, cpuConvArgs{dy: dy, w: w, dx: dx})
	p := t.plan
	c.packedW.Pack(true, g.OC, p.k, w, g.OC) // Wᵀ
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
	ws := &t.c.gemmSpace[worker]
	if p.direct {
		ws.SgemmPacked(false, rows, 1, dy, g.OC, &t.c.packedW, 0, t.dx[n0*p.pixels*p.k:], p.k)
		return
	}
	dcol := t.c.col[worker][:rows*p.k]
	ws.SgemmPacked(false, rows, 1, dy, g.OC, &t.c.packedW, 0, dcol, p.k)
	cpuCol2Im(g, dcol, n0, n1, t.dx)
}

// ConvBackwardFilter computes dw = colᵀ·dy and dbias = Σ rows of dy: first
// one partial sum per chunk of blocks, then the partials added in chunk
// order.
//
// Each chunk computes dWᵀ = dyᵀ·col (OC×K) rather than dW: the inner loops of
// the multiply then run along the K columns of col, which are longer than
// the OC columns of dy. The reduction transposes back for free. When K is
// the shorter (kMajor), the chunk computes dW = colᵀ·dy instead.
func (c *CPU) ConvBackwardFilter(g ConvGeom, x, dy, dw, dbias []float32) {
	cpuCheckConv(g)
	cpuNeed("conv x", x, g.InLen())
	cpuNeed("conv dy", dy, g.OutLen())
	cpuNeed("conv dw", dw, g.FilterLen())
	cpuNeed("conv dbias", dbias, g.OC)
	t := c.startConv(g, cpuConvArgs{x: x, dy: dy, dw: dw, db: dbias})
	p := t.plan
	switch {
	case p.conv1:
		c.growCol(cpuConv1PadLen(g) + 9*16)
	case cpuImplicitFilterFits(g, p):
		t.implicit = true
		c.growCol(cpuFilterPaddedLen(g, p))
		c.growFilterRuns()
	case !p.direct:
		c.growCol(p.blockSamples * p.pixels * p.k)
	}
	c.partials = cpuGrow(c.partials, p.chunks*p.partialLen(g))
	c.parallel((*cpuConvFilterTask)(t), p.chunks, 2*g.ColRows()*g.ColCols()*g.OC)
	rows, _ := p.partialShape(g)
	c.parallel((*cpuConvReduceTask)(t), (rows+p.reduceRows(g)-1)/p.reduceRows(g), p.chunks*p.partialLen(g))
	c.conv = cpuConvArgs{}
}

type cpuConvFilterTask cpuConvArgs

func (t *cpuConvFilterTask) run(worker, chunk int) {
	g, p := t.g, t.plan
	partial := t.c.partials[chunk*p.partialLen(g) : (chunk+1)*p.partialLen(g)]
	dwT, db := partial[:g.OC*p.k], partial[g.OC*p.k:] // dW when kMajor
	b0 := chunk * p.chunkBlocks
	b1 := min(b0+p.chunkBlocks, p.blocks)
	n0, _ := p.samples(g, b0)
	_, n1 := p.samples(g, b1-1)
	if p.conv1 {
		col := t.c.col[worker]
		cpuConv1Filter(g, p, t.x, t.dy, dwT, db, b0, b1, col[:cpuConv1PadLen(g)], col[cpuConv1PadLen(g):])
		return
	}
	if t.implicit {
		t.implicitChunk(worker, b0, b1, dwT)
	} else {
		var beta float32
		for b := b0; b < b1; b++ {
			n0, n1 := p.samples(g, b)
			rows := (n1 - n0) * p.pixels
			col := t.c.patches(worker, n0, n1)
			dy := t.dy[n0*p.pixels*g.OC:]
			// One multiply over the block's rows, or, k-blocked, one per
			// k block, as the fused path sums them.
			kc := rows
			if p.kBlocked {
				kc = cpuFilterBlockK(rows)
			}
			for r0 := 0; r0 < rows; r0 += kc {
				r := min(kc, rows-r0)
				if p.kMajor {
					t.c.sgemm(worker, true, false, p.k, g.OC, r, 1, col[r0*p.k:], p.k, dy[r0*g.OC:], g.OC, beta, dwT, g.OC)
				} else {
					t.c.sgemm(worker, true, false, g.OC, p.k, r, 1, dy[r0*g.OC:], g.OC, col[r0*p.k:], p.k, beta, dwT, p.k)
				}
				beta = 1
			}
		}
	}
	clear(db)
	cpuSumRows((n1-n0)*p.pixels, g.OC, t.dy[n0*p.pixels*g.OC:], db)
}

// cpuReduceElems is about the number of partial-gradient floats one
// reduction item sums from each chunk.
const cpuReduceElems = 4096

type cpuConvReduceTask cpuConvArgs

// run sums rows [r0, r1) of the chunks' partial gradients into chunk 0's, as
// partial 0 + partial 1 + … in chunk order, and writes them to dw (through a
// transpose unless kMajor); item 0 does the same for dbias.
func (t *cpuConvReduceTask) run(_, item int) {
	g, p := t.g, t.plan
	rows, cols := p.partialShape(g)
	r0 := item * p.reduceRows(g)
	r1 := min(r0+p.reduceRows(g), rows)
	plen := p.partialLen(g)
	sum := t.c.partials[r0*cols : r1*cols]
	for ch := 1; ch < p.chunks; ch++ {
		cpuAddTo(sum, t.c.partials[ch*plen+r0*cols:ch*plen+r1*cols])
	}
	if p.kMajor {
		copy(t.dw[r0*cols:r1*cols], sum)
	} else {
		// sum holds rows o ∈ [r0, r1) of dWᵀ; dw[kk·OC + o] = dWᵀ[o·K + kk].
		for o := r0; o < r1; o++ {
			for kk, v := range sum[(o-r0)*cols : (o-r0+1)*cols] {
				t.dw[kk*g.OC+o] = v
			}
		}
	}
	if item == 0 {
		db := t.c.partials[g.OC*p.k : plen]
		for ch := 1; ch < p.chunks; ch++ {
			cpuAddTo(db, t.c.partials[ch*plen+g.OC*p.k:(ch+1)*plen])
		}
		copy(t.db[:g.OC], db)
	}
}

// cpuInterior returns the output columns [qa, qb) whose filter rows lie
// wholly inside the image, so that their patch segments are plain copies.
func cpuInterior(g ConvGeom) (qa, qb int) {
	ow := g.OW()
	qa = min((g.Pad+g.Stride-1)/g.Stride, ow)
	qb = qa
	if last := g.W - g.KW + g.Pad; last >= 0 {
		qb = max(qa, min(ow, last/g.Stride+1))
	}
	return qa, qb
}

// cpuIm2Col writes the patch-matrix rows of samples [n0, n1) to col (whose
// first element is the first row of sample n0). For each output row and
// filter row kh, the segments of the interior output columns are one
// strided copy (cpuCopyRows); only the columns where the filter row hangs
// over the padding are assembled cell by cell.
func cpuIm2Col(g ConvGeom, x []float32, n0, n1 int, col []float32) {
	oh, ow, k := g.OH(), g.OW(), g.ColCols()
	tapRow := g.KW * g.C // floats of one filter row (kh) in a patch row
	qa, qb := cpuInterior(g)
	row := 0
	for n := n0; n < n1; n++ {
		for p := range oh {
			rows := col[row*k : (row+ow)*k]
			row += ow
			for kh := range g.KH {
				ih := p*g.Stride - g.Pad + kh
				if ih < 0 || ih >= g.H {
					for q := range ow {
						clear(rows[q*k+kh*tapRow : q*k+(kh+1)*tapRow])
					}
					continue
				}
				src := x[((n*g.H+ih)*g.W)*g.C : ((n*g.H+ih)*g.W+g.W)*g.C]
				for q := range ow {
					if q == qa && qb > qa {
						cpuCopyRows(rows[qa*k+kh*tapRow:], k, src[(qa*g.Stride-g.Pad)*g.C:], g.Stride*g.C, qb-qa, tapRow)
					}
					if q >= qa && q < qb {
						continue
					}
					seg := rows[q*k+kh*tapRow : q*k+(kh+1)*tapRow]
					iw0 := q*g.Stride - g.Pad
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
// position it was read from. Each element of dx receives its terms in
// output-pixel order (a given output row and input row fix kh), the same
// order for any split of the work.
func cpuCol2Im(g ConvGeom, col []float32, n0, n1 int, dx []float32) {
	oh, ow, k := g.OH(), g.OW(), g.ColCols()
	tapRow := g.KW * g.C
	qa, qb := cpuInterior(g)
	clear(dx[n0*g.H*g.W*g.C : n1*g.H*g.W*g.C])
	row := 0
	for n := n0; n < n1; n++ {
		for p := range oh {
			rows := col[row*k : (row+ow)*k]
			row += ow
			for kh := range g.KH {
				ih := p*g.Stride - g.Pad + kh
				if ih < 0 || ih >= g.H {
					continue
				}
				dst := dx[((n*g.H+ih)*g.W)*g.C : ((n*g.H+ih)*g.W+g.W)*g.C]
				for q := range ow {
					if q == qa && qb > qa {
						cpuAddRows(dst[(qa*g.Stride-g.Pad)*g.C:], g.Stride*g.C, rows[qa*k+kh*tapRow:], k, qb-qa, tapRow)
					}
					if q >= qa && q < qb {
						continue
					}
					seg := rows[q*k+kh*tapRow : q*k+(kh+1)*tapRow]
					iw0 := q*g.Stride - g.Pad
					lo, hi := max(0, -iw0), min(g.KW, g.W-iw0)
					if lo < hi {
						cpuAddTo(dst[(iw0+lo)*g.C:(iw0+hi)*g.C], seg[lo*g.C:hi*g.C])
					}
				}
			}
		}
	}
}

// cpuAddBias adds bias[j] to y[i·cols + j].
func cpuAddBias(rows, cols int, bias, y []float32) { cpuBias(rows, cols, bias, y, false) }

// cpuSumRows adds the rows of the rows×cols matrix a to sum, in row order.
func cpuSumRows(rows, cols int, a, sum []float32) {
	sum = sum[:cols]
	for i := range rows {
		cpuAddTo(sum, a[i*cols:(i+1)*cols])
	}
}

// AddBias adds bias[j] to y[i·cols + j] for every row i.
func (c *CPU) AddBias(rows, cols int, bias, y []float32) {
	cpuNeed("bias", bias, cols)
	cpuNeed("y", y, rows*cols)
	cpuAddBias(rows, cols, bias, y)
}
