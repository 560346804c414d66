package kernels

// The convolutions of the reference backend are direct loop nests over the
// definition, never im2col + GEMM, so that a bug in an im2col-based backend
// cannot be reproduced here and cancel itself out. Backward passes gather
// (each output element sums everything that contributes to it) rather than
// scatter, so every sum is accumulated in float64 and written once.

// inputTap returns the output coordinate o whose window reads input
// coordinate i through filter tap k (i = o·stride − pad + k), and whether
// there is one in [0, outSize).
func inputTap(i, k, stride, pad, outSize int) (o int, ok bool) {
	t := i + pad - k
	if t < 0 || t%stride != 0 || t/stride >= outSize {
		return 0, false
	}
	return t / stride, true
}

// Im2Col writes row (n·OH + oh)·OW + ow, column (kh·KW + kw)·C + c of the
// patch matrix as x[n, oh·Stride−Pad+kh, ow·Stride−Pad+kw, c], or 0 where
// that position is padding.
func (*Reference[T]) Im2Col(g ConvGeom, x, col []T) {
	oh, ow, cols := g.OH(), g.OW(), g.ColCols()
	for n := range g.N {
		for p := range oh {
			for q := range ow {
				row := ((n*oh+p)*ow + q) * cols
				for kh := range g.KH {
					for kw := range g.KW {
						ih, iw := p*g.Stride-g.Pad+kh, q*g.Stride-g.Pad+kw
						inside := ih >= 0 && ih < g.H && iw >= 0 && iw < g.W
						for c := range g.C {
							var v T
							if inside {
								v = x[((n*g.H+ih)*g.W+iw)*g.C+c]
							}
							col[row+(kh*g.KW+kw)*g.C+c] = v
						}
					}
				}
			}
		}
	}
}

// Col2Im overwrites dx[n, ih, iw, c] with the sum of every patch-matrix
// entry that Im2Col would have read from that position.
func (*Reference[T]) Col2Im(g ConvGeom, col, dx []T) {
	oh, ow, cols := g.OH(), g.OW(), g.ColCols()
	for n := range g.N {
		for ih := range g.H {
			for iw := range g.W {
				for c := range g.C {
					var sum float64
					for kh := range g.KH {
						p, ok := inputTap(ih, kh, g.Stride, g.Pad, oh)
						if !ok {
							continue
						}
						for kw := range g.KW {
							q, ok := inputTap(iw, kw, g.Stride, g.Pad, ow)
							if !ok {
								continue
							}
							sum += float64(col[((n*oh+p)*ow+q)*cols+(kh*g.KW+kw)*g.C+c])
						}
					}
					dx[((n*g.H+ih)*g.W+iw)*g.C+c] = T(sum)
				}
			}
		}
	}
}

// ConvForward computes
//
//	y[n,oh,ow,o] = bias[o] + Σ_{kh,kw,c} x[n, oh·S−P+kh, ow·S−P+kw, c]·w[kh,kw,c,o]
//
// over the taps that fall inside the image.
func (*Reference[T]) ConvForward(g ConvGeom, x, w, bias, y []T) {
	oh, ow := g.OH(), g.OW()
	for n := range g.N {
		for p := range oh {
			for q := range ow {
				for o := range g.OC {
					sum := float64(bias[o])
					for kh := range g.KH {
						ih := p*g.Stride - g.Pad + kh
						if ih < 0 || ih >= g.H {
							continue
						}
						for kw := range g.KW {
							iw := q*g.Stride - g.Pad + kw
							if iw < 0 || iw >= g.W {
								continue
							}
							for c := range g.C {
								sum += float64(x[((n*g.H+ih)*g.W+iw)*g.C+c]) *
									float64(w[((kh*g.KW+kw)*g.C+c)*g.OC+o])
							}
						}
					}
					y[((n*oh+p)*ow+q)*g.OC+o] = T(sum)
				}
			}
		}
	}
}

// ConvForwardReLU is ConvForward followed by ReLUForward.
func (r *Reference[T]) ConvForwardReLU(g ConvGeom, x, w, bias, y []T) {
	r.ConvForward(g, x, w, bias, y)
	r.ReLUForward(y[:g.OutLen()], y)
}

// ConvBackwardData computes dx[n,ih,iw,c] = Σ dy[n,oh,ow,o]·w[kh,kw,c,o]
// over every (oh, ow, kh, kw) with ih = oh·S−P+kh and iw = ow·S−P+kw, and o.
func (*Reference[T]) ConvBackwardData(g ConvGeom, dy, w, dx []T) {
	oh, ow := g.OH(), g.OW()
	for n := range g.N {
		for ih := range g.H {
			for iw := range g.W {
				for c := range g.C {
					var sum float64
					for kh := range g.KH {
						p, ok := inputTap(ih, kh, g.Stride, g.Pad, oh)
						if !ok {
							continue
						}
						for kw := range g.KW {
							q, ok := inputTap(iw, kw, g.Stride, g.Pad, ow)
							if !ok {
								continue
							}
							for o := range g.OC {
								sum += float64(dy[((n*oh+p)*ow+q)*g.OC+o]) *
									float64(w[((kh*g.KW+kw)*g.C+c)*g.OC+o])
							}
						}
					}
					dx[((n*g.H+ih)*g.W+iw)*g.C+c] = T(sum)
				}
			}
		}
	}
}

// ConvBackwardFilter computes dw[kh,kw,c,o] = Σ_{n,oh,ow} x[n, oh·S−P+kh,
// ow·S−P+kw, c]·dy[n,oh,ow,o] and dbias[o] = Σ_{n,oh,ow} dy[n,oh,ow,o].
func (*Reference[T]) ConvBackwardFilter(g ConvGeom, x, dy, dw, dbias []T) {
	oh, ow := g.OH(), g.OW()
	for kh := range g.KH {
		for kw := range g.KW {
			for c := range g.C {
				for o := range g.OC {
					var sum float64
					for n := range g.N {
						for p := range oh {
							ih := p*g.Stride - g.Pad + kh
							if ih < 0 || ih >= g.H {
								continue
							}
							for q := range ow {
								iw := q*g.Stride - g.Pad + kw
								if iw < 0 || iw >= g.W {
									continue
								}
								sum += float64(x[((n*g.H+ih)*g.W+iw)*g.C+c]) *
									float64(dy[((n*oh+p)*ow+q)*g.OC+o])
							}
						}
					}
					dw[((kh*g.KW+kw)*g.C+c)*g.OC+o] = T(sum)
				}
			}
		}
	}
	for o := range g.OC {
		var sum float64
		for i := range g.N * oh * ow {
			sum += float64(dy[i*g.OC+o])
		}
		dbias[o] = T(sum)
	}
}
