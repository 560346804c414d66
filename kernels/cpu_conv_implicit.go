package kernels

// The forward convolution as an implicit GEMM. With NHWC input and a
// zero-padded copy of it, the patch row of output pixel (n, p, q) is KH runs
// of KW·C consecutive floats, one per filter row, which start at the pixel's
// corner of the padded image and lie Wp·C floats apart. So every pixel's
// patch row is the same list of byte offsets from a start of its own, and
// the implicit micro-kernels (sgemmKernel.implicitWide) read the patches
// there instead of from an im2col matrix: the patch matrix, nine times the
// input, is never written. Each output element is the same chain of fused
// multiply-adds over the same values in the same order as the im2col
// product's (the same k blocks, the same packed W), so the two paths give
// the same bits, and either may run on any processor.
//
// Padding costs one copy of the input block, its borders zeroed; an
// unpadded convolution (conv4's backward data, computed as a forward
// convolution) reads x itself.

// cpuImplicitEnabled lets tests compare the implicit path with im2col.
var cpuImplicitEnabled = true

// cpuImplicit is one forward call's implicit GEMM: the padded geometry, the
// byte offset of every output pixel's patch in a padded block of
// blockSamples samples, and the runs of each k block of W.
type cpuImplicit struct {
	hp, wp int
	rows   []int
	blocks []sgemmRuns
	ends   []int // the blocks' ends, one after another
	// edgeRows holds each thread's row offsets of a block's last, partial
	// tile (12 per thread).
	edgeRows []int
}

// cpuImplicitFits reports whether the forward pass of plan p can take the
// implicit path: the processor has the kernels, the input is not its own
// patch matrix already, every run and k block is a whole number of 4 k
// steps, and W is one GEMM panel.
func cpuImplicitFits(g ConvGeom, p cpuConvPlan) bool {
	kern := sgemmBest
	if !cpuImplicitEnabled || kern.implicitWide == nil || p.direct || p.conv1 {
		return false
	}
	kc, _, nc := kern.blocks(g.OC, p.k)
	return (g.KW*g.C)%4 == 0 && kc%4 == 0 && g.OC <= nc
}

// plan fills in the implicit GEMM of a forward convolution with plan p;
// its slices are reused from call to call.
func (im *cpuImplicit) plan(g ConvGeom, p cpuConvPlan, threads int) {
	im.hp, im.wp = g.H+2*g.Pad, g.W+2*g.Pad
	ow := g.OW()
	tiles := (p.blockSamples*p.pixels + cpuTileRows - 1) / cpuTileRows
	im.rows = cpuGrowInts(im.rows, tiles*cpuTileRows)
	im.edgeRows = cpuGrowInts(im.edgeRows, threads*cpuTileRows)
	for r := range im.rows {
		im.rows[r] = 0 // rows past the block read the block's first pixel
		if r < p.blockSamples*p.pixels {
			n, pix := r/p.pixels, r%p.pixels
			ih, iw := pix/ow*g.Stride, pix%ow*g.Stride
			im.rows[r] = 4 * ((n*im.hp+ih)*im.wp + iw) * g.C
		}
	}
	// k index kk = kh·L + rest is at float kh·Wp·C + rest of a patch.
	run, line := g.KW*g.C, im.wp*g.C
	kcMax, _, _ := sgemmBest.blocks(g.OC, p.k)
	im.blocks, im.ends = im.blocks[:0], im.ends[:0]
	for pc := 0; pc < p.k; pc += kcMax {
		kc := min(kcMax, p.k-pc)
		first := len(im.ends)
		at := pc/run*line + pc%run
		off0 := at
		for kk := pc; kk < pc+kc; {
			end := min((kk/run+1)*run, pc+kc)
			at += end - kk
			im.ends = append(im.ends, 4*at)
			at += line - run
			kk = end
		}
		im.blocks = append(im.blocks, sgemmRuns{off0: 4 * off0, jump: 4 * (line - run), kc: kc, ends: im.ends[first:len(im.ends):len(im.ends)]})
	}
}

// cpuGrowInts returns s with length n, reusing its memory when it can.
func cpuGrowInts(s []int, n int) []int {
	if cap(s) < n {
		return make([]int, n)
	}
	return s[:n]
}

// implicitLen is the scratch length of one block's padded input.
func (im *cpuImplicit) implicitLen(g ConvGeom, p cpuConvPlan) int {
	if g.Pad == 0 {
		return 0
	}
	return p.blockSamples * im.hp * im.wp * g.C
}

// cpuPadBlock writes samples [n0, n1) of x into xp with Pad zeros around
// each image.
func cpuPadBlock(g ConvGeom, x []float32, n0, n1, hp, wp int, xp []float32) {
	line, pad := wp*g.C, g.Pad*g.C
	for n := n0; n < n1; n++ {
		img := xp[(n-n0)*hp*line : (n-n0+1)*hp*line]
		clear(img[:g.Pad*line])
		clear(img[(g.Pad+g.H)*line:])
		for h := range g.H {
			row := img[(g.Pad+h)*line : (g.Pad+h+1)*line]
			clear(row[:pad])
			copy(row[pad:pad+g.W*g.C], x[((n*g.H+h)*g.W)*g.C:][:g.W*g.C])
			clear(row[pad+g.W*g.C:])
		}
	}
}

// implicitForward computes the block of samples [n0, n1) of the forward
// pass: y block = patches·W (+ bias, ReLU), the patches read in place.
func (t *cpuConvForwardTask) implicitForward(worker, n0, n1 int) {
	g, p, im := t.g, t.plan, &t.c.implicit
	xb := t.x[n0*g.H*g.W*g.C : n1*g.H*g.W*g.C]
	if g.Pad > 0 {
		xp := t.c.col[worker][:(n1-n0)*im.hp*im.wp*g.C]
		cpuPadBlock(g, t.x, n0, n1, im.hp, im.wp, xp)
		xb = xp
	}
	rows := (n1 - n0) * p.pixels
	tiles, rest := rows/cpuTileRows, rows%cpuTileRows
	y := t.y[n0*p.pixels*g.OC : n1*p.pixels*g.OC]
	kern := sgemmBest
	edge := t.c.gemmSpace[worker].edge
	// The last, partial tile's rows: its own pixels, then the block's first.
	edgeRows := im.edgeRows[worker*cpuTileRows : (worker+1)*cpuTileRows]
	copy(edgeRows, im.rows[tiles*cpuTileRows:][:rest])
	clear(edgeRows[rest:])
	bs := t.c.packedW.data
	for b := range im.blocks {
		runs := &im.blocks[b]
		beta := float32(0)
		if b > 0 {
			beta = 1
		}
		for j0 := 0; j0 < g.OC; {
			nr := kern.sliverWidth(g.OC - j0)
			cols := min(nr, g.OC-j0)
			micro := kern.implicitWide
			if nr == kern.narrowNR {
				micro = kern.implicitNarrow
			}
			sliver := bs[:runs.kc*nr]
			if tiles > 0 {
				micro(tiles, im.rows, xb, runs, sliver, y[j0:], g.OC, cols, beta)
			}
			if rest > 0 {
				e := edge[:cpuTileRows*nr]
				base := tiles * cpuTileRows * g.OC
				if beta != 0 {
					for i := range rest {
						copy(e[i*nr:i*nr+cols], y[base+i*g.OC+j0:])
					}
				}
				micro(1, edgeRows, xb, runs, sliver, e, nr, cols, beta)
				for i := range rest {
					copy(y[base+i*g.OC+j0:][:cols], e[i*nr:])
				}
			}
			bs = bs[runs.kc*nr:]
			j0 += cols
		}
	}
	cpuBias(rows, g.OC, t.bias, y, t.relu)
}
