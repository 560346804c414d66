package kernels

// The first layer of an MNIST network convolves one input channel with a
// few 3×3 filters: K = 9, a product far too thin for the GEMM (a 9-deep sum
// per 12×16 tile, and an im2col of 3-float pieces). With AVX-512 it has
// kernels of its own (cpu_simd_amd64.s) for 16 filters: each output pixel's
// 16 sums are one vector register, each tap one broadcast multiply-add, and
// the input is read from a zero-padded copy of the image, so no tap needs a
// bounds check. The filter gradient keeps its nine 16-wide rows in registers
// across a whole output row.
//
// Whether these kernels run depends on the processor, so they must give the
// bits of the GEMM path that runs elsewhere: the forward pass sums the taps
// from zero and adds the bias last, as Sgemm and cpuBias do; the filter
// gradient sums each block's pixels in Sgemm's k blocks (sgemmBlockK), each
// from zero, and adds each block's sum to the chunk's, as Sgemm with beta = 1
// does; the bias gradient adds the rows of dy in order, as cpuSumRows does.

// cpuIsConv1 reports whether g takes the conv1 kernels.
func cpuIsConv1(g ConvGeom) bool {
	return cpuHasConv1 && g.C == 1 && g.OC == 16 && g.KH == 3 && g.KW == 3 && g.Stride == 1
}

// cpuConv1PadLen is the length of one sample's zero-padded image.
func cpuConv1PadLen(g ConvGeom) int { return (g.H + 2*g.Pad) * (g.W + 2*g.Pad) }

// cpuConv1Pad writes sample n of x, zero-padded by g.Pad on every side, to
// xp (rows W + 2·Pad floats apart).
func cpuConv1Pad(g ConvGeom, x []float32, n int, xp []float32) {
	wp := g.W + 2*g.Pad
	xp = xp[:cpuConv1PadLen(g)]
	clear(xp[:g.Pad*wp])
	clear(xp[(g.Pad+g.H)*wp:])
	for h := range g.H {
		row := xp[(g.Pad+h)*wp : (g.Pad+h+1)*wp]
		clear(row[:g.Pad])
		copy(row[g.Pad:g.Pad+g.W], x[(n*g.H+h)*g.W:(n*g.H+h+1)*g.W])
		clear(row[g.Pad+g.W:])
	}
}

// cpuConv1Forward computes samples [n0, n1) of y = conv(x, w) + bias, and
// the ReLU of that with relu; xp is scratch for one padded image.
func cpuConv1Forward(g ConvGeom, x, w, bias, y []float32, n0, n1 int, relu bool, xp []float32) {
	oh, ow, wp := g.OH(), g.OW(), g.W+2*g.Pad
	for n := n0; n < n1; n++ {
		cpuConv1Pad(g, x, n, xp)
		for p := range oh {
			cpuConv1Row(y[((n*oh+p)*ow)*16:], xp[p*wp:], wp, ow, w, bias, relu)
		}
	}
}

// cpuConv1Filter writes the filter gradient (9×16, the kMajor layout) and
// bias gradient of blocks [b0, b1) of plan p to dw and db: the sums of the
// GEMM path's multiplies dW = colᵀ·dy block after block. xp is scratch for
// one padded image, part for one k block's 144 sums.
func cpuConv1Filter(g ConvGeom, p cpuConvPlan, x, dy, dw, db []float32, b0, b1 int, xp, part []float32) {
	oh, ow, wp := g.OH(), g.OW(), g.W+2*g.Pad
	dw, part = dw[:9*16], part[:9*16]
	clear(db[:16])
	padded, first := -1, true
	for b := b0; b < b1; b++ {
		n0, n1 := p.samples(g, b)
		rows := (n1 - n0) * p.pixels
		kc := sgemmBlockK(rows)
		for r0 := 0; r0 < rows; r0 += kc {
			r1 := min(r0+kc, rows)
			clear(part)
			// The k block's pixels, one piece of an output row at a time.
			for r := r0; r < r1; {
				n := n0 + r/p.pixels
				if n != padded {
					cpuConv1Pad(g, x, n, xp)
					padded = n
				}
				row, q := r%p.pixels/ow, r%ow
				cnt := min(ow-q, r1-r)
				cpuConv1FilterRow(part, db, xp[row*wp+q:], wp, dy[((n*oh+row)*ow+q)*16:], cnt)
				r += cnt
			}
			if first {
				copy(dw, part)
				first = false
			} else {
				cpuAddTo(dw, part)
			}
		}
	}
}
