package kernels

// sgemmMicroGo is the pure-Go micro-kernel, and its loop is the definition
// every micro-kernel implements. For each of tiles tiles it computes an
// mr×nr block of C from the tile's rows of A and the packed B sliver:
//
//	for t := 0; t < tiles; t++ {
//		for i := 0; i < mr; i++ {
//			for j := 0; j < cols; j++ { // cols ≤ nr
//				var acc float32
//				for p := 0; p < kc; p++ {
//					acc = fma32(a[t·tsA + i·rsA + p·csA], b[p·ldb + j], acc)
//				}
//				c[(t·mr+i)·ldc + j] = fma32(beta, c[…], alpha·acc) // beta == ±0: alpha·acc
//			}
//		}
//	}
//
// with fma32 a single-precision fused multiply-add and alpha·acc rounded to
// float32 before it is added. Element (i, p) of the tile's A is at i·rsA +
// p·csA, so the same kernel reads an untransposed A in place (rsA = lda,
// csA = 1) and a packed sliver (rsA = 1, csA = mr). The sum over p always
// runs in order from zero, and the write-back is the same expression for
// every tile, full or edge, so every kernel family gives the same bits.
//
// sgemmMicroRef is that loop written out; sgemmGoTiles (sgemm_go_fused.go or
// sgemm_go_emulated.go) computes the same thing register-blocked.
func sgemmMicroGo(w *SgemmWorkspace, mr, nr, tiles, kc int, a []float32, rsA, csA, tsA int, b []float32, ldb int, c []float32, ldc, cols int, alpha, beta float32) {
	sgemmCheckMicro(mr, nr, tiles, kc, a, rsA, csA, tsA, b, ldb, c, ldc, cols)
	sgemmGoTiles(w, mr, nr, tiles, kc, a, rsA, csA, tsA, b, ldb, c, ldc, cols, alpha, beta)
}

// sgemmMicroRef is the loop of sgemmMicroGo as its comment writes it: the
// reference the register-blocked kernels are tested against, and the
// emulated kernel's path for operands outside the range its fast path
// assumes.
func sgemmMicroRef(mr, tiles, kc int, a []float32, rsA, csA, tsA int, b []float32, ldb int, c []float32, ldc, cols int, alpha, beta float32) {
	for t := 0; t < tiles; t++ {
		for i := 0; i < mr; i++ {
			for j := 0; j < cols; j++ {
				var acc float32
				for p := 0; p < kc; p++ {
					acc = fma32(a[t*tsA+i*rsA+p*csA], b[p*ldb+j], acc)
				}
				ci := &c[(t*mr+i)*ldc+j]
				*ci = sgemmStore(*ci, acc, alpha, beta)
			}
		}
	}
}

// sgemmStore is the write-back of one element of C: fma(beta, c, alpha·acc)
// with the product alpha·acc rounded first, as the assembly kernels compute
// it, or alpha·acc without reading c when beta is ±0. The explicit
// conversion keeps a compiler that fuses from folding alpha·acc into the add.
func sgemmStore(c, acc, alpha, beta float32) float32 {
	scaled := float32(alpha * acc)
	if beta == 0 {
		return scaled
	}
	return fma32(beta, c, scaled)
}

// sgemmGo is the pure-Go kernel family.
var sgemmGo = &sgemmKernel{
	name: "go", mr: 6, wideNR: 16, narrowNR: 8,
	packB: sgemmPackBGo, packAT: sgemmPackATGo, maskedCols: true,
	wide: func(w *SgemmWorkspace, tiles, kc int, a []float32, rsA, csA, tsA int, b []float32, ldb int, c []float32, ldc, cols, _, _ int, alpha, beta float32) {
		sgemmMicroGo(w, 6, 16, tiles, kc, a, rsA, csA, tsA, b, ldb, c, ldc, cols, alpha, beta)
	},
	narrow: func(w *SgemmWorkspace, tiles, kc int, a []float32, rsA, csA, tsA int, b []float32, ldb int, c []float32, ldc, cols, _, _ int, alpha, beta float32) {
		sgemmMicroGo(w, 6, 8, tiles, kc, a, rsA, csA, tsA, b, ldb, c, ldc, cols, alpha, beta)
	},
}
