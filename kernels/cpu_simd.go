package kernels

import "fmt"

// The pure-Go elementwise loops that cpu_simd_amd64.s vectorises: the
// reference for its bits, the tail of every vector loop, and the whole loop
// on processors or builds without AVX2. (A scalar ReLU over activations
// that are half positive mispredicts every other branch, so the vector loops
// matter more than their width suggests.)

// cpuReLUGo writes y = x where x > 0, else +0 (also for NaN and −0).
func cpuReLUGo(x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] = cpuPositive(v)
	}
}

// cpuReLUMaskGo writes dx = dy where y > 0, else +0.
func cpuReLUMaskGo(y, dy, dx []float32) {
	y, dx = y[:len(dy)], dx[:len(dy)]
	for i, d := range dy {
		if y[i] > 0 {
			dx[i] = d
		} else {
			dx[i] = 0
		}
	}
}

// cpuBiasGo adds bias[j] to y[i·cols + j] and, with relu, applies
// cpuPositive.
func cpuBiasGo(rows, cols int, bias, y []float32, relu bool) {
	bias = bias[:cols]
	for i := range rows {
		row := y[i*cols : (i+1)*cols]
		row = row[:len(bias)]
		for j, b := range bias {
			v := row[j] + b
			if relu {
				v = cpuPositive(v)
			}
			row[j] = v
		}
	}
}

// cpuPositive is v when v > 0, else +0.
func cpuPositive(v float32) float32 {
	if v > 0 {
		return v
	}
	return 0
}

// cpuCopyRowsGo copies rows rows of cols floats, lds apart in src, to rows
// ldd apart in dst. Short rows (conv1's are 3 floats) are copied element by
// element, which costs less than a call of copy each.
func cpuCopyRowsGo(dst []float32, ldd int, src []float32, lds, rows, cols int) {
	for i := range rows {
		d, s := dst[i*ldd:i*ldd+cols], src[i*lds:i*lds+cols]
		if cols < 16 {
			for j, v := range s {
				d[j] = v
			}
		} else {
			copy(d, s)
		}
	}
}

// cpuAddRowsGo adds rows rows of cols floats, lds apart in src, to rows ldd
// apart in dst, in row order.
func cpuAddRowsGo(dst []float32, ldd int, src []float32, lds, rows, cols int) {
	for i := range rows {
		d, s := dst[i*ldd:i*ldd+cols], src[i*lds:i*lds+cols]
		for j, v := range s {
			d[j] += v
		}
	}
}

// cpuCheckRows panics unless rows rows of cols floats, ldd and lds apart,
// lie inside dst and src: the assembly loops take raw pointers.
func cpuCheckRows(what string, dst []float32, ldd int, src []float32, lds, rows, cols int) {
	if ldd < 0 || lds < 0 || len(dst) < (rows-1)*ldd+cols || len(src) < (rows-1)*lds+cols {
		panic(fmt.Sprintf("kernels: cpu: %s: %d rows of %d floats, strides %d and %d, do not fit slices of %d and %d", what, rows, cols, ldd, lds, len(dst), len(src)))
	}
}
