package kernels

// poolWindow calls visit with the flat index into x of every cell of the
// window of output (n, oh, ow, c) that lies inside the image, in row-major
// window order; padded cells are skipped.
func poolWindow(g PoolGeom, n, oh, ow, c int, visit func(xi int)) {
	for kh := range g.Size {
		ih := oh*g.Stride - g.Pad + kh
		if ih < 0 || ih >= g.H {
			continue
		}
		for kw := range g.Size {
			iw := ow*g.Stride - g.Pad + kw
			if iw < 0 || iw >= g.W {
				continue
			}
			visit(((n*g.H+ih)*g.W+iw)*g.C + c)
		}
	}
}

// MaxPoolForward scans each window in row-major order and keeps the first
// cell of greatest value.
func (*Reference[T]) MaxPoolForward(g PoolGeom, x, y []T, argmax []int32) {
	oh, ow := g.OH(), g.OW()
	for n := range g.N {
		for p := range oh {
			for q := range ow {
				for c := range g.C {
					best := -1
					poolWindow(g, n, p, q, c, func(xi int) {
						if best < 0 || x[xi] > x[best] {
							best = xi
						}
					})
					out := ((n*oh+p)*ow+q)*g.C + c
					y[out] = x[best]
					argmax[out] = int32(best)
				}
			}
		}
	}
}

// MaxPoolBackward zeroes dx and adds each dy[i] to dx[argmax[i]].
func (*Reference[T]) MaxPoolBackward(g PoolGeom, dy []T, argmax []int32, dx []T) {
	clear(dx[:g.InLen()])
	for i := range g.OutLen() {
		dx[argmax[i]] += dy[i]
	}
}

// AvgPoolForward writes the mean of the cells of each window that lie inside
// the image.
func (*Reference[T]) AvgPoolForward(g PoolGeom, x, y []T) {
	oh, ow := g.OH(), g.OW()
	for n := range g.N {
		for p := range oh {
			for q := range ow {
				for c := range g.C {
					var sum float64
					count := 0
					poolWindow(g, n, p, q, c, func(xi int) {
						sum += float64(x[xi])
						count++
					})
					y[((n*oh+p)*ow+q)*g.C+c] = T(sum / float64(count))
				}
			}
		}
	}
}

// AvgPoolBackward zeroes dx and adds dy/count to each of the count cells of
// every window that lie inside the image.
func (*Reference[T]) AvgPoolBackward(g PoolGeom, dy, dx []T) {
	clear(dx[:g.InLen()])
	oh, ow := g.OH(), g.OW()
	for n := range g.N {
		for p := range oh {
			for q := range ow {
				for c := range g.C {
					count := 0
					poolWindow(g, n, p, q, c, func(int) { count++ })
					share := T(float64(dy[((n*oh+p)*ow+q)*g.C+c]) / float64(count))
					poolWindow(g, n, p, q, c, func(xi int) { dx[xi] += share })
				}
			}
		}
	}
}
