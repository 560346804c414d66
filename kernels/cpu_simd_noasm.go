//go:build noasm || !amd64

package kernels

// Builds without assembly run the pure-Go loops of cpu_simd.go.

func cpuReLU(x, y []float32) { cpuReLUGo(x, y[:len(x)]) }

func cpuReLUMask(y, dy, dx []float32) { cpuReLUMaskGo(y[:len(dy)], dy, dx[:len(dy)]) }

func cpuBias(rows, cols int, bias, y []float32, relu bool) {
	cpuBiasGo(rows, cols, bias[:cols], y[:rows*cols], relu)
}

func cpuAddTo(dst, src []float32) {
	dst = dst[:len(src)]
	for i, s := range src {
		dst[i] += s
	}
}

func cpuMaxWindowVec(PoolGeom, []float32, int, int, int, int, int, []float32, []int32) bool {
	return false
}

// cpuHasAVX2 is false without the assembly: every loop is the Go one.
const cpuHasAVX2 = false

func cpuPoolScatterVec(PoolGeom, []float32, []int32, []float32, int, int) bool { return false }

func cpuCopyRows(dst []float32, ldd int, src []float32, lds, rows, cols int) {
	if rows > 0 && cols > 0 {
		cpuCopyRowsGo(dst, ldd, src, lds, rows, cols)
	}
}

func cpuAddRows(dst []float32, ldd int, src []float32, lds, rows, cols int) {
	if rows > 0 && cols > 0 {
		cpuAddRowsGo(dst, ldd, src, lds, rows, cols)
	}
}

// Builds without assembly have no conv1 kernels: conv1 takes the GEMM path.
const cpuHasConv1 = false

func cpuConv1Row(y, xp []float32, wp, n int, w, bias []float32, relu bool) {
	panic("kernels: conv1 kernel in a build without assembly")
}

func cpuConv1FilterRow(dw, db, xp []float32, wp int, dy []float32, n int) {
	panic("kernels: conv1 kernel in a build without assembly")
}
