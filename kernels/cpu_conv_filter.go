package kernels

// The filter gradient with im2col fused into the packing of the GEMM's A
// operand. dW (K×OC) = colᵀ·dy is a product whose A = colᵀ the micro-kernels
// read fastest as packed slivers (12 rows of K by the k steps, contiguous),
// and whose B = dy block is already in sliver form: its rows are OC floats,
// and the kernels take B through a row stride. So instead of writing the
// patch matrix and then packing it, each k block's patches are written from
// x straight into the slivers, and the kernels run on them and on dy where
// it lies: no patch matrix, no B packing, no partial tiles (K and OC are
// whole tiles).

// cpuFilterKC is the most pixel rows (k steps) one packed block of patches
// holds: 48 slivers of K = 576 by 128 rows stay in L2 (300 KiB).
//
// Measured on the deep network (Zen 4, batch 100), this path costs the same
// CPU time as im2col followed by Sgemm (within 1%): writing the slivers
// costs what packing the patch matrix saved. It is used only where that
// plain path would pack the patch matrix a second time (K above
// cpuKMajorMaxK); for smaller K the plain path reads the patch matrix in
// place and is 1–2% faster.
const cpuFilterKC = 128

// cpuFilterKBlocked reports whether the filter gradient of plan p sums
// each block's pixel rows in k blocks of cpuFilterBlockK rather than the
// GEMM's own (sgemmBlockK): the shapes the fused path can take (K and the
// floats of one filter row whole 12-row tiles, OC whole 16-column slivers,
// K above cpuKMajorMaxK). It depends on the shape alone, as everything that
// changes bits must; whether the fused path then runs (cpuFusedFilter)
// depends on the processor and changes nothing.
func cpuFilterKBlocked(g ConvGeom, p cpuConvPlan) bool {
	return !p.direct && p.k > cpuKMajorMaxK && p.k%cpuTileRows == 0 && (g.KW*g.C)%cpuTileRows == 0 && g.OC%16 == 0
}

// cpuFusedFilter reports whether the filter gradient of plan p takes the
// fused path: a k-blocked shape (cpuFilterKBlocked) and the AVX-512 kernel
// family (12-row tiles, masked columns, slivers of 16 and 32).
func cpuFusedFilter(g ConvGeom, p cpuConvPlan) bool {
	kern := sgemmBest
	return cpuFilterKBlocked(g, p) && kern.mr == cpuTileRows && kern.maskedCols && g.OC%kern.narrowNR == 0
}

// cpuFilterBlockK returns the k block for a block of rows pixel rows: rows
// split into equal blocks of at most cpuFilterKC.
func cpuFilterBlockK(rows int) int {
	blocks := (rows + cpuFilterKC - 1) / cpuFilterKC
	return (rows + blocks - 1) / blocks
}

// cpuFilterPackLen is the length of the packed patches of the longest k
// block followed by the scratch row of cpuPackPatchesT. A short last block
// has longer k blocks than a whole one (128 of its 128 rows, where a whole
// block of 192 is split into two of 96), so the longest is cpuFilterKC,
// or a whole block where that is shorter.
func cpuFilterPackLen(p cpuConvPlan, g ConvGeom) int {
	kc := min(cpuFilterKC, p.blockSamples*p.pixels)
	return p.k/cpuTileRows*sgemmSliverStride(cpuTileRows, kc) + g.KW*g.C
}

// fusedChunk computes the partial dW of one chunk of blocks into dW (K×OC),
// k block after k block, the first written (beta 0), the others added.
func (t *cpuConvFilterTask) fusedChunk(worker, b0, b1 int, dW []float32) {
	g, p := t.g, t.plan
	kern := sgemmBest
	const mr = cpuTileRows
	tiles := p.k / mr
	beta := float32(0)
	for b := b0; b < b1; b++ {
		n0, n1 := p.samples(g, b)
		rows := (n1 - n0) * p.pixels
		kcMax := cpuFilterBlockK(rows)
		for r0 := 0; r0 < rows; r0 += kcMax {
			kc := min(kcMax, rows-r0)
			tsd := sgemmSliverStride(mr, kc)
			a := t.c.col[worker][:tiles*tsd]
			buf := t.c.col[worker][tiles*tsd : tiles*tsd+g.KW*g.C]
			cpuPackPatchesT(g, t.x, n0, r0, kc, a, tsd, buf)
			dy := t.dy[(n0*p.pixels+r0)*g.OC:]
			for j0 := 0; j0 < g.OC; {
				nr := kern.sliverWidth(g.OC - j0)
				micro := kern.wide
				if nr == kern.narrowNR {
					micro = kern.narrow
				}
				micro(&t.c.gemmSpace[worker].SgemmWorkspace, tiles, kc, a, 1, mr, tsd, dy[j0:], g.OC, dW[j0:], g.OC, nr, tsd, tsd, 1, beta)
				j0 += nr
			}
			beta = 1
		}
	}
}

// cpuPackPatchesT writes the patch rows r0 … r0+kc−1 of the block that
// starts at sample n0, transposed into 12-row slivers: K index kk of patch
// row r0+pp goes to a[(kk/12)·tsd + pp·12 + kk%12]. It is cpuIm2Col with
// another destination; each filter row of a patch is KW·C floats, a whole
// number of slivers. buf is scratch space for one filter row.
func cpuPackPatchesT(g ConvGeom, x []float32, n0, r0, kc int, a []float32, tsd int, buf []float32) {
	const mr = cpuTileRows
	oh, ow := g.OH(), g.OW()
	pixels := oh * ow
	tapRow := g.KW * g.C
	pieces := tapRow / mr // slivers per filter row
	qa, qb := cpuInterior(g)
	buf = buf[:tapRow]
	for pp := 0; pp < kc; {
		r := r0 + pp
		n := n0 + r/pixels
		p, q0 := r%pixels/ow, r%ow
		q1 := min(ow, q0+kc-pp) // this output row's pixels in the k block
		for kh := range g.KH {
			slivers := a[kh*pieces*tsd:]
			ih := p*g.Stride - g.Pad + kh
			if ih < 0 || ih >= g.H {
				for s := range pieces {
					clear(slivers[s*tsd+pp*mr : s*tsd+(pp+q1-q0)*mr])
				}
				continue
			}
			src := x[((n*g.H+ih)*g.W)*g.C : ((n*g.H+ih)*g.W+g.W)*g.C]
			// Interior pixels: each sliver piece is a strided copy.
			if ia, ib := max(q0, qa), min(q1, qb); ia < ib {
				for s := range pieces {
					cpuCopyRows(slivers[s*tsd+(pp+ia-q0)*mr:], mr, src[(ia*g.Stride-g.Pad)*g.C+s*mr:], g.Stride*g.C, ib-ia, mr)
				}
			}
			// Pixels whose filter row hangs over the padding: the row is
			// assembled in buf, then scattered to the slivers in one call.
			for q := q0; q < q1; q++ {
				if q >= qa && q < qb {
					continue
				}
				for kw := range g.KW {
					cell := buf[kw*g.C : (kw+1)*g.C]
					if iw := q*g.Stride - g.Pad + kw; iw >= 0 && iw < g.W {
						copy(cell, src[iw*g.C:(iw+1)*g.C])
					} else {
						clear(cell)
					}
				}
				cpuCopyRows(slivers[(pp+q-q0)*mr:], tsd, buf, mr, pieces, mr)
			}
		}
		pp += q1 - q0
	}
}
