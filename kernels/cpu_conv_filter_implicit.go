package kernels

// The filter gradient as an implicit GEMM. dW (K×OC) = colᵀ·dy sums, for
// each patch float kk and filter o, patch[pixel, kk]·dy[pixel, o] over the
// pixels. Twelve consecutive kk of one filter row (KW·C floats, a whole
// number of 12-row tiles) are twelve consecutive floats of the zero-padded
// input, at the pixel's corner plus the filter row's offset, and the next
// pixel of the same output row is Stride·C floats on. So the filter kernels
// (sgemmKernel.filterWide) broadcast each k step's twelve values from one
// address in the image, walk an output row at a fixed stride, and jump
// between output rows: colᵀ is neither written (im2col) nor packed into
// slivers (cpu_conv_filter.go), and dy is read in place as B. Each element
// is the chain of FMAs, in the k blocks, of the product on the im2col matrix
// (Sgemm's k blocks, or cpuFilterBlockK's where the shape is k-blocked), so
// the bits are the same as on the other paths.

// cpuImplicitFilterFits reports whether the filter gradient of plan p can
// take the implicit path: the processor has the kernels, dW is computed K
// by OC (kMajor), a filter row is whole 12-row tiles, and dy's columns are
// whole slivers, so that B can be read in place.
func cpuImplicitFilterFits(g ConvGeom, p cpuConvPlan) bool {
	kern := sgemmBest
	return cpuImplicitEnabled && kern.filterWide != nil && !p.direct && !p.conv1 && p.kMajor &&
		(g.KW*g.C)%cpuTileRows == 0 && g.OC%kern.narrowNR == 0
}

// cpuFilterPaddedLen is the scratch length of one block's padded input.
func cpuFilterPaddedLen(g ConvGeom, p cpuConvPlan) int {
	if g.Pad == 0 {
		return 0
	}
	return p.blockSamples * (g.H + 2*g.Pad) * (g.W + 2*g.Pad) * g.C
}

// cpuFilterRunsCap bounds the ints one k block's runs take: a pair per
// output row it touches, and it has at most sgemmKC pixels.
const cpuFilterRunsCap = 2 * (sgemmKC + 1)

// growFilterRuns gives every thread room for one k block's runs.
func (c *CPU) growFilterRuns() {
	for len(c.filterRuns) < len(c.col) {
		c.filterRuns = append(c.filterRuns, make([]int, 0, cpuFilterRunsCap))
	}
}

// cpuFilterRuns appends to runs the pixel runs of the block's pixel rows
// r0 … r0+kc−1, one per output row: the byte offset of the run's first
// pixel's corner in the padded block (hp×wp images), and its pixels.
func cpuFilterRuns(g ConvGeom, p cpuConvPlan, r0, kc, hp, wp int, runs []int) []int {
	ow := g.OW()
	for r := r0; r < r0+kc; {
		n, pix := r/p.pixels, r%p.pixels
		oh, q := pix/ow, pix%ow
		pixels := min(ow-q, r0+kc-r)
		runs = append(runs, 4*((n*hp+oh*g.Stride)*wp+q*g.Stride)*g.C, pixels)
		r += pixels
	}
	return runs
}

// implicitChunk computes the partial dW (K×OC) of the chunk of blocks
// [b0, b1), k block after k block, the first written (beta 0), the others
// added.
func (t *cpuConvFilterTask) implicitChunk(worker, b0, b1 int, dW []float32) {
	g, p := t.g, t.plan
	kern := sgemmBest
	hp, wp := g.H+2*g.Pad, g.W+2*g.Pad
	tapRow := g.KW * g.C
	tiles := tapRow / cpuTileRows
	csA := 4 * g.Stride * g.C
	runs := t.c.filterRuns[worker]
	beta := float32(0)
	for b := b0; b < b1; b++ {
		n0, n1 := p.samples(g, b)
		xb := t.x[n0*g.H*g.W*g.C : n1*g.H*g.W*g.C]
		if g.Pad > 0 {
			xp := t.c.col[worker][:(n1-n0)*hp*wp*g.C]
			cpuPadBlock(g, t.x, n0, n1, hp, wp, xp)
			xb = xp
		}
		rows := (n1 - n0) * p.pixels
		kcMax := sgemmBlockK(rows) // as Sgemm splits the block's product
		if p.kBlocked {
			kcMax = cpuFilterBlockK(rows)
		}
		for r0 := 0; r0 < rows; r0 += kcMax {
			kc := min(kcMax, rows-r0)
			runs = cpuFilterRuns(g, p, r0, kc, hp, wp, runs[:0])
			dy := t.dy[(n0*p.pixels+r0)*g.OC:]
			for kh := range g.KH {
				a := xb[kh*wp*g.C:]
				c := dW[kh*tapRow*g.OC:]
				for j0 := 0; j0 < g.OC; {
					nr := kern.sliverWidth(g.OC - j0)
					micro := kern.filterWide
					if nr == kern.narrowNR {
						micro = kern.filterNarrow
					}
					micro(tiles, a, 4*cpuTileRows, runs, csA, dy[j0:], g.OC, c[j0:], g.OC, nr, beta)
					j0 += nr
				}
			}
			beta = 1
		}
	}
	t.c.filterRuns[worker] = runs
}
