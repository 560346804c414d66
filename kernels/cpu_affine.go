package kernels

// AffineForward computes y = x·w + bias.
func (c *CPU) AffineForward(n, in, out int, x, w, bias, y []float32) {
	cpuNeed("affine x", x, n*in)
	cpuNeed("affine w", w, in*out)
	cpuNeed("affine bias", bias, out)
	cpuNeed("affine y", y, n*out)
	c.Gemm(false, false, n, out, in, 1, x, in, w, out, 0, y, out)
	cpuAddBias(n, out, bias, y)
}

// AffineBackward computes dx = dy·wᵀ, dw = xᵀ·dy and dbias = Σ rows of dy.
//
// dw needs no partial sums: each item computes whole rows of dw, summing over
// the full batch, so the sums do not depend on how the rows are shared out.
func (c *CPU) AffineBackward(n, in, out int, x, w, dy, dx, dw, dbias []float32) {
	cpuNeed("affine x", x, n*in)
	cpuNeed("affine dy", dy, n*out)
	cpuNeed("affine dw", dw, in*out)
	cpuNeed("affine dbias", dbias, out)
	t := &c.affine
	*t = cpuAffineBackwardTask{c: c, n: n, in: in, out: out, x: x, dy: dy, dw: dw, db: dbias}
	if dx != nil {
		cpuNeed("affine w", w, in*out)
		cpuNeed("affine dx", dx, n*in)
		c.packedW.Pack(true, out, in, w, out) // wᵀ, packed once for every block of dx
		t.dx = dx
		t.dxItems = (n + cpuGemmRows - 1) / cpuGemmRows
	}
	dwItems := (in + cpuGemmRows - 1) / cpuGemmRows
	c.parallel(t, t.dxItems+dwItems+1, 4*n*in*out)
	*t = cpuAffineBackwardTask{}
}

// cpuAffineBackwardTask's items are, in order: blocks of rows of dx, blocks
// of rows of dw, and dbias.
type cpuAffineBackwardTask struct {
	c                 *CPU
	n, in, out        int
	x, dy, dx, dw, db []float32
	dxItems           int
}

func (t *cpuAffineBackwardTask) run(worker, item int) {
	dwItems := (t.in + cpuGemmRows - 1) / cpuGemmRows
	switch {
	case item < t.dxItems:
		i0 := item * cpuGemmRows
		rows := min(cpuGemmRows, t.n-i0)
		t.c.gemmSpace[worker].SgemmPacked(false, rows, 1, t.dy[i0*t.out:], t.out, &t.c.packedW, 0, t.dx[i0*t.in:], t.in)
	case item < t.dxItems+dwItems:
		k0 := (item - t.dxItems) * cpuGemmRows
		rows := min(cpuGemmRows, t.in-k0)
		t.c.sgemm(worker, true, false, rows, t.out, t.n, 1, t.x[k0:], t.in, t.dy, t.out, 0, t.dw[k0*t.out:], t.out)
	default:
		clear(t.db[:t.out])
		cpuSumRows(t.n, t.out, t.dy, t.db)
	}
}
