//go:build amd64 && !noasm

package kernels

import "golang.org/x/sys/cpu"

// The elementwise loops of the CPU backend in AVX2 (cpu_simd_amd64.s), with
// the pure-Go loops of cpu_simd.go for the last few elements and for
// processors without AVX2. Each produces the same bits as its Go loop.

//go:noescape
func cpuReLUAVX2(x, y *float32, n int)

//go:noescape
func cpuReLUMaskAVX2(y, dy, dx *float32, n int)

//go:noescape
func cpuBiasAVX2(y, bias *float32, rows, cols int, relu bool)

//go:noescape
func cpuAddToAVX2(dst, src *float32, n int)

var cpuHasAVX2 = cpu.X86.HasAVX2

// cpuReLU writes y = x where x > 0, else +0 (NaN included).
func cpuReLU(x, y []float32) {
	y = y[:len(x)]
	v := len(x) &^ 7
	if cpuHasAVX2 && v > 0 {
		cpuReLUAVX2(&x[0], &y[0], v)
		x, y = x[v:], y[v:]
	}
	cpuReLUGo(x, y)
}

// cpuReLUMask writes dx = dy where y > 0, else +0.
func cpuReLUMask(y, dy, dx []float32) {
	y, dx = y[:len(dy)], dx[:len(dy)]
	v := len(dy) &^ 7
	if cpuHasAVX2 && v > 0 {
		cpuReLUMaskAVX2(&y[0], &dy[0], &dx[0], v)
		y, dy, dx = y[v:], dy[v:], dx[v:]
	}
	cpuReLUMaskGo(y, dy, dx)
}

// cpuBias adds bias[j] to y[i·cols + j] for rows rows and, with relu, then
// applies cpuReLU's rule.
func cpuBias(rows, cols int, bias, y []float32, relu bool) {
	bias, y = bias[:cols], y[:rows*cols]
	if cpuHasAVX2 && cols%8 == 0 && rows > 0 && cols > 0 {
		cpuBiasAVX2(&y[0], &bias[0], rows, cols, relu)
		return
	}
	cpuBiasGo(rows, cols, bias, y, relu)
}

// cpuAddTo adds src to dst element by element.
func cpuAddTo(dst, src []float32) {
	dst = dst[:len(src)]
	v := len(src) &^ 7
	if cpuHasAVX2 && v > 0 {
		cpuAddToAVX2(&dst[0], &src[0], v)
		dst, src = dst[v:], src[v:]
	}
	for i, s := range src {
		dst[i] += s
	}
}

//go:noescape
func cpuMaxWindowAVX2(x *float32, first, rowStride, rows, cols, c int, y *float32, argmax *int32)

// cpuMaxWindowVec computes cpuMaxWindow's window with AVX2 when the channel
// count allows, and reports whether it did.
func cpuMaxWindowVec(g PoolGeom, x []float32, n, h0, h1, w0, w1 int, y []float32, argmax []int32) bool {
	if !cpuHasAVX2 || g.C%8 != 0 || h1 <= h0 || w1 <= w0 {
		return false
	}
	first := ((n*g.H+h0)*g.W + w0) * g.C
	last := ((n*g.H+h1-1)*g.W+w1-1)*g.C + g.C
	if last > len(x) || len(y) < g.C || len(argmax) < g.C {
		panic(cpuShortSlice("maxpool window", len(x), last))
	}
	cpuMaxWindowAVX2(&x[0], first, g.W*g.C, h1-h0, w1-w0, g.C, &y[0], &argmax[0])
	return true
}

//go:noescape
func cpuPoolScatterAVX2(dx, dy *float32, argmax *int32, cell0, ow, size, c int)

// cpuPoolScatterVec writes the input gradient of samples [n0, n1) of a max
// pool whose windows tile the image exactly (stride == size, no padding, H
// and W multiples of the size) with AVX2, and reports whether it did: each
// input row once, every cell written, so dx needs no clearing first.
func cpuPoolScatterVec(g PoolGeom, dy []float32, argmax []int32, dx []float32, n0, n1 int) bool {
	if !cpuHasAVX2 || g.C%8 != 0 || g.Pad != 0 || g.Stride != g.Size || g.H%g.Size != 0 || g.W%g.Size != 0 {
		return false
	}
	oh, ow := g.OH(), g.OW()
	if n1*g.H*g.W*g.C > len(dx) || n1*oh*ow*g.C > len(dy) || n1*oh*ow*g.C > len(argmax) {
		panic(cpuShortSlice("maxpool backward", len(dx), n1*g.H*g.W*g.C))
	}
	for n := n0; n < n1; n++ {
		for p := range oh {
			out := (n*oh + p) * ow * g.C
			for kh := range g.Size {
				cell := (n*g.H + p*g.Size + kh) * g.W * g.C
				cpuPoolScatterAVX2(&dx[cell], &dy[out], &argmax[out], cell, ow, g.Size, g.C)
			}
		}
	}
	return true
}

//go:noescape
func cpuCopyRowsAVX2(dst *float32, ldd int, src *float32, lds int, rows, cols int)

//go:noescape
func cpuCopyRows4AVX(dst *float32, ldd int, src *float32, lds int, rows, cols int)

//go:noescape
func cpuAddRowsAVX2(dst *float32, ldd int, src *float32, lds int, rows, cols int)

// cpuCopyRows copies rows rows of cols floats, lds apart in src, to rows ldd
// apart in dst.
func cpuCopyRows(dst []float32, ldd int, src []float32, lds, rows, cols int) {
	if rows <= 0 || cols <= 0 {
		return
	}
	cpuCheckRows("copy rows", dst, ldd, src, lds, rows, cols)
	if cpuHasAVX2 && cols%8 == 0 {
		cpuCopyRowsAVX2(&dst[0], ldd, &src[0], lds, rows, cols)
		return
	}
	if cpuHasAVX2 && cols%4 == 0 {
		cpuCopyRows4AVX(&dst[0], ldd, &src[0], lds, rows, cols)
		return
	}
	cpuCopyRowsGo(dst, ldd, src, lds, rows, cols)
}

// cpuAddRows adds rows rows of cols floats, lds apart in src, to rows ldd
// apart in dst, in row order (the rows of dst may overlap).
func cpuAddRows(dst []float32, ldd int, src []float32, lds, rows, cols int) {
	if rows <= 0 || cols <= 0 {
		return
	}
	cpuCheckRows("add rows", dst, ldd, src, lds, rows, cols)
	if cpuHasAVX2 && cols%8 == 0 {
		cpuAddRowsAVX2(&dst[0], ldd, &src[0], lds, rows, cols)
		return
	}
	cpuAddRowsGo(dst, ldd, src, lds, rows, cols)
}

//go:noescape
func cpuConv1ForwardAVX512(y, xp *float32, wp, n int, w, bias *float32, relu bool)

//go:noescape
func cpuConv1FilterAVX512(dw, db, xp *float32, wp int, dy *float32, n int)

// cpuHasConv1 reports whether the conv1 kernels (AVX-512) run here.
var cpuHasConv1 = cpu.X86.HasAVX512F

// cpuConv1Row computes one output row of n pixels of a conv1 forward pass
// (see cpu_conv1.go): xp starts at the row's first padded input row.
func cpuConv1Row(y, xp []float32, wp, n int, w, bias []float32, relu bool) {
	if n < 1 || len(y) < 16*n || len(xp) < 2*wp+n+2 || len(w) < 144 || len(bias) < 16 {
		panic(cpuShortSlice("conv1 row", len(xp), 2*wp+n+2))
	}
	cpuConv1ForwardAVX512(&y[0], &xp[0], wp, n, &w[0], &bias[0], relu)
}

// cpuConv1FilterRow adds one output row's terms to the conv1 filter and
// bias gradients.
func cpuConv1FilterRow(dw, db, xp []float32, wp int, dy []float32, n int) {
	if n < 1 || len(dy) < 16*n || len(xp) < 2*wp+n+2 || len(dw) < 144 || len(db) < 16 {
		panic(cpuShortSlice("conv1 filter row", len(xp), 2*wp+n+2))
	}
	cpuConv1FilterAVX512(&dw[0], &db[0], &xp[0], wp, &dy[0], n)
}
