package kernels

import (
	"fmt"
	"sync"
)

// Sgemm follows GotoBLAS and BLIS. For each panel of up to nc columns and
// each block of up to kc steps of k, op(B) is packed into slivers nr columns
// wide (kc×nr contiguous floats, zero-padded); then for each block of up to
// mc rows of op(A), a micro-kernel runs every sliver over the block's mr-row
// tiles, keeping an mr×nr tile of C in registers. The kernels take A through
// a row stride and a k stride, so A is read where it lies whenever that is
// cache-friendly (see block) and copied or packed only when not. k blocks
// after the first add into C (beta = 1). Tiles that stick out of C use
// column masks or a small edge buffer, with the same arithmetic.

// Sgemm computes C = alpha·op(A)·op(B) + beta·C in single precision for
// row-major matrices, with op(X) = Xᵀ when the matching trans flag is set:
// op(A) is m×k, op(B) is k×n, C is m×n, and lda, ldb, ldc are row strides.
// When beta is 0, C is only written, so NaNs in it do not propagate; when
// alpha is 0 or k is 0, A and B are not read and C becomes beta·C.
//
// Sgemm runs on the calling goroutine and takes its scratch space from a
// pool; callers that want no pool traffic keep a SgemmWorkspace instead.
// It panics when a slice is shorter than its geometry implies.
func Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	w := sgemmPool.Get().(*SgemmWorkspace)
	w.Sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	sgemmPool.Put(w)
}

var sgemmPool = sync.Pool{New: func() any { return new(SgemmWorkspace) }}

// SgemmWorkspace holds the packing buffers of Sgemm, so that repeated calls
// of similar sizes allocate nothing. The zero value is ready to use; a
// workspace is not safe for concurrent use.
//
// The result depends only on the operands and the shapes: the order in which
// each element sums over k is fixed by k alone, so it is the same for every
// workspace, every partition of a larger product into calls that keep k, and
// every micro-kernel: the AVX-512, AVX2, NEON and Go kernels give identical
// bits (each element is one chain of fused multiply-adds, see sgemmMicroGo).
type SgemmWorkspace struct {
	packedA []float32      // an A block that cannot be read in place
	packedB []float32      // the slivers of a B panel
	tailA   []float32      // the rows of a block's last, partial tile
	edge    []float32      // one C tile, for tiles that stick out of C
	gs      sgemmGoScratch // the Go kernels' copies of an A tile and a B sliver

	kernel *sgemmKernel // nil: sgemmBest; tests force the others
}

// sgemmMicro computes tiles consecutive mr×nr tiles of C, of which it
// writes the first cols columns; see sgemmMicroGo for the exact loop every
// implementation follows. While it computes tile t, an assembly kernel
// prefetches the 64·kc bytes at a[pfOff + t·pfStride:] into L2: data that a
// later tile will read, chosen by the caller.
//
// w is the calling workspace, whose scratch space the Go kernels use.
type sgemmMicro func(w *SgemmWorkspace, tiles, kc int, a []float32, rsA, csA, tsA int, b []float32, ldb int, c []float32, ldc, cols, pfOff, pfStride int, alpha, beta float32)

// sgemmKernel is one micro-kernel family, with its packing routines: mr
// rows by a wide or a narrow number of columns. The narrow kernel serves the
// last columns of C when it covers them all.
type sgemmKernel struct {
	name     string
	mr       int
	wideNR   int
	narrowNR int
	wide     sgemmMicro
	narrow   sgemmMicro
	// maskedCols reports that the kernels write fewer than nr columns
	// themselves; otherwise such tiles go through the edge buffer.
	maskedCols bool

	// packB copies kc rows of nr floats, ldb apart, into a packed sliver
	// (nr is wideNR or narrowNR); packAT packs tiles mr-tall slivers of a
	// transposed A, tsd floats apart (see sgemmPackATGo).
	packB  func(dst, src []float32, kc, nr, ldb int)
	packAT func(dst, src []float32, kc, tiles, mr, lda, tsd int)

	// peak, when set, runs iters iterations of peakFlops flops of
	// independent FMAs: the throughput ceiling benchmarks compare to.
	peak      func(iters int)
	peakFlops int

	// implicitWide and implicitNarrow, when set, are the kernels' twins
	// that read A as runs of an image rather than as a matrix (see
	// sgemmRuns): the forward convolution's implicit GEMM. mr is 12.
	implicitWide, implicitNarrow sgemmImplicitMicro
	// filterWide and filterNarrow, when set, compute dW = colᵀ·dy tiles
	// with the patches read from the image (see sgemmFilterMicro): the
	// filter gradient's implicit GEMM. mr is 12.
	filterWide, filterNarrow sgemmFilterMicro
}

// sgemmFilterMicro computes tiles 12-row tiles of C = Aᵀ·B + beta·C for one
// B sliver of nr columns read in place (row p at b[p·ldb:]), where row i of
// tile t, k step p of Aᵀ is the float at byte t·tsA + 4i + off(p) of a: the
// k steps are runs of pixels, runs holding pairs (byte offset of a run's
// first pixel, pixels in it), csA bytes apart within a run. It writes the
// first cols columns of each tile row, 12 rows of ldc floats a tile.
type sgemmFilterMicro func(tiles int, a []float32, tsA int, runs []int, csA int, b []float32, ldb int, c []float32, ldc, cols int, beta float32)

// sgemmCheckFilter panics unless a filter kernel call stays inside its
// slices; the assembly kernels call it before they take raw pointers.
func sgemmCheckFilter(nr, tiles int, a []float32, tsA int, runs []int, csA int, b []float32, ldb int, c []float32, ldc, cols int) {
	bad := tiles < 1 || tsA < 0 || csA < 0 || len(runs) < 2 || len(runs)%2 != 0 || cols < 1 || cols > nr || len(c) < (tiles*12-1)*ldc+cols
	steps, last := 0, 0 // k steps in all; the end of the furthest read
	for i := 0; !bad && i < len(runs); i += 2 {
		off, n := runs[i], runs[i+1]
		if off < 0 || n < 1 {
			bad = true
			break
		}
		steps += n
		last = max(last, off+(n-1)*csA+(tiles-1)*tsA+4*12)
	}
	if !bad && (last > 4*len(a) || len(b) < (steps-1)*ldb+nr) {
		bad = true
	}
	if bad {
		panic(fmt.Sprintf("kernels: sgemm filter kernel 12×%d: %d tiles, %d runs out of range (len a %d, b %d, c %d)", nr, tiles, len(runs)/2, len(a), len(b), len(c)))
	}
}

// sgemmImplicitMicro computes tiles 12-row tiles of C = op(A)·B + beta·C
// for one B sliver (kc×nr, packed), where row i of op(A) is the k steps
// of r read from byte rows[i] of x; it writes the first cols columns.
type sgemmImplicitMicro func(tiles int, rows []int, x []float32, r *sgemmRuns, b, c []float32, ldc, cols int, beta float32)

// sgemmRuns is the k block of an implicit GEMM's A: the byte offsets, the
// same from every row's start, that its kc k steps read. They come in runs
// of consecutive floats: the first from off0 up to ends[0], each next one
// jump bytes after the previous one's end, up to its own end. Every run is
// a whole number of 4 k steps (16 bytes), since the kernels unroll by 4.
type sgemmRuns struct {
	off0, jump int
	ends       []int
	kc         int // k steps in all
}

// valid reports whether the runs are what the kernels can take: ascending,
// each a positive multiple of 16 bytes, kc steps in all.
func (r *sgemmRuns) valid() bool {
	if r.off0 < 0 || r.jump < 0 || len(r.ends) == 0 {
		return false
	}
	start, steps := r.off0, 0
	for i, end := range r.ends {
		if i > 0 {
			start += r.jump
		}
		if n := end - start; n <= 0 || n%16 != 0 {
			return false
		}
		steps += (end - start) / 4
		start = end
	}
	return steps == r.kc
}

// sgemmCheckImplicit panics unless an implicit kernel call stays inside
// its slices; the assembly kernels call it before they take raw pointers.
func sgemmCheckImplicit(nr, tiles int, rows []int, x []float32, r *sgemmRuns, b, c []float32, ldc, cols int) {
	bad := tiles < 1 || len(rows) < 12*tiles || !r.valid() || len(b) < r.kc*nr || cols < 1 || cols > nr || len(c) < (tiles*12-1)*ldc+cols
	if !bad {
		last := r.ends[len(r.ends)-1]
		for _, row := range rows[:12*tiles] {
			if row < 0 || row+last > 4*len(x) {
				bad = true
				break
			}
		}
	}
	if bad {
		panic(fmt.Sprintf("kernels: sgemm implicit kernel 12×%d: %d tiles, kc %d out of range (len rows %d, x %d, b %d, c %d)", nr, tiles, r.kc, len(rows), len(x), len(b), len(c)))
	}
}

// Cache blocking. Only sgemmKC changes results (it splits the sum over k), so
// it is a constant, the same for every kernel; the others only move data.
const (
	// sgemmKC is the largest k block. A B sliver of kc×32 floats (32 KiB)
	// stays in the 48 KiB L1 while the tiles of A stream past it.
	sgemmKC = 256
	// sgemmABlockBytes bounds an A block (mc×kc), which stays in the 2 MiB
	// L2 while every B sliver of the panel runs over it.
	sgemmABlockBytes = 512 << 10
	// sgemmCBlockBytes bounds the C block (mc×nc) that the B slivers update
	// in turn, so that it stays in L2 between them: this matters when kc is
	// small and C is large, as in dcol = dy·Wᵀ.
	sgemmCBlockBytes = 128 << 10
	// sgemmBPanelBytes bounds a packed B panel (kc×nc).
	sgemmBPanelBytes = 2 << 20
)

// sgemmBlockK returns the k block for a product with inner size k: k split
// into equal blocks of at most sgemmKC.
func sgemmBlockK(k int) int {
	blocks := (k + sgemmKC - 1) / sgemmKC
	return (k + blocks - 1) / blocks
}

// blocks returns the block sizes of a product with n columns and inner size
// k: the k block, the rows of an A block (a multiple of mr) and the columns
// of a B panel (a multiple of every NR).
func (kern *sgemmKernel) blocks(n, k int) (kc, mc, nc int) {
	kc = sgemmBlockK(k)
	nc = max(64, sgemmBPanelBytes/(4*kc)/64*64)
	mc = min(sgemmABlockBytes/(4*kc), sgemmCBlockBytes/(4*min(n, nc)))
	mc = max(kern.mr, mc/kern.mr*kern.mr)
	return kc, mc, nc
}

// Sgemm computes C = alpha·op(A)·op(B) + beta·C as the package-level
// Sgemm does, with this workspace's buffers.
func (w *SgemmWorkspace) Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	sgemmCheck(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	if m == 0 || n == 0 {
		return
	}
	if k == 0 || alpha == 0 {
		sgemmScale(m, n, beta, c, ldc)
		return
	}
	w.run(w.kern(), transA, m, n, k, alpha, a, lda, transB, b, ldb, nil, beta, c, ldc)
}

// SgemmPacked computes C = alpha·op(A)·op(B) + beta·C with op(B) packed
// beforehand by pb.Pack, with the same bits as Sgemm: many products that
// share B (the blocks of a convolution) pack it once instead of once each.
// pb must have been packed for this workspace's kernel (the default one
// unless a test chose another).
func (w *SgemmWorkspace) SgemmPacked(transA bool, m int, alpha float32, a []float32, lda int, pb *SgemmPackedB, beta float32, c []float32, ldc int) {
	n, k := pb.n, pb.k
	if pb.kern != w.kern() {
		panic("kernels: SgemmPacked: B was packed for another kernel family")
	}
	if m < 0 {
		panic(fmt.Sprintf("kernels: SgemmPacked: negative size m=%d", m))
	}
	if transA {
		sgemmCheckMatrix("a", a, k, m, lda)
	} else {
		sgemmCheckMatrix("a", a, m, k, lda)
	}
	sgemmCheckMatrix("c", c, m, n, ldc)
	if m == 0 || n == 0 {
		return
	}
	if k == 0 || alpha == 0 {
		sgemmScale(m, n, beta, c, ldc)
		return
	}
	w.run(pb.kern, transA, m, n, k, alpha, a, lda, false, nil, 0, pb, beta, c, ldc)
}

func (w *SgemmWorkspace) kern() *sgemmKernel {
	if w.kernel == nil {
		return sgemmBest
	}
	return w.kernel
}

// run is the blocked product of Sgemm and SgemmPacked: B is packed panel
// by panel from b, or taken from pb when it is not nil.
func (w *SgemmWorkspace) run(kern *sgemmKernel, transA bool, m, n, k int, alpha float32, a []float32, lda int, transB bool, b []float32, ldb int, pb *SgemmPackedB, beta float32, c []float32, ldc int) {
	kcMax, mcMax, ncMax := kern.blocks(n, k)
	inPlace := sgemmStrideSpreads(kern.mr, lda) // see block
	w.reserve(kern, min(mcMax, m), kcMax, min(ncMax, n), pb == nil)

	off := 0 // of the current panel in pb
	for jc := 0; jc < n; jc += ncMax {
		nc := min(ncMax, n-jc)
		for pc := 0; pc < k; pc += kcMax {
			kc := min(kcMax, k-pc)
			betaBlock := beta
			if pc > 0 {
				betaBlock = 1
			}
			var bs []float32
			if pb == nil {
				sgemmPackPanel(kern, w.packedB, transB, b, ldb, pc, kc, jc, nc)
				bs = w.packedB
			} else {
				size := kc * kern.panelWidth(nc)
				bs = pb.data[off : off+size]
				off += size
			}
			for ic := 0; ic < m; ic += mcMax {
				mc := min(mcMax, m-ic)
				w.block(kern, transA, inPlace, a, lda, ic, mc, pc, kc, nc, bs, alpha, betaBlock, c[jc:], ldc)
			}
		}
	}
}

// SgemmPackedB is op(B) of a product packed once, panel after panel in the
// order Sgemm visits them, for SgemmPacked. The zero value is empty; Pack
// fills it and reuses its memory.
type SgemmPackedB struct {
	kern *sgemmKernel
	k, n int
	data []float32
}

// Pack packs op(B), k×n (Bᵀ when transB is set; ldb is B's row stride), for
// products on workspaces with the default kernel family.
func (pb *SgemmPackedB) Pack(transB bool, k, n int, b []float32, ldb int) {
	pb.pack(sgemmBest, transB, k, n, b, ldb)
}

func (pb *SgemmPackedB) pack(kern *sgemmKernel, transB bool, k, n int, b []float32, ldb int) {
	if k < 0 || n < 0 {
		panic(fmt.Sprintf("kernels: SgemmPackedB: negative size k=%d n=%d", k, n))
	}
	rows, cols := k, n
	if transB {
		rows, cols = n, k
	}
	sgemmCheckMatrix("b", b, rows, cols, ldb)
	pb.kern, pb.k, pb.n = kern, k, n
	if k == 0 || n == 0 {
		return
	}
	kcMax, _, ncMax := kern.blocks(n, k)
	size := 0
	for jc := 0; jc < n; jc += ncMax {
		size += k * kern.panelWidth(min(ncMax, n-jc))
	}
	if cap(pb.data) < size {
		pb.data = make([]float32, size)
	}
	pb.data = pb.data[:size]
	off := 0
	for jc := 0; jc < n; jc += ncMax {
		nc := min(ncMax, n-jc)
		for pc := 0; pc < k; pc += kcMax {
			kc := min(kcMax, k-pc)
			sgemmPackPanel(kern, pb.data[off:], transB, b, ldb, pc, kc, jc, nc)
			off += kc * kern.panelWidth(nc)
		}
	}
}

// panelWidth is the packed width of a panel of nc columns: its slivers'
// widths summed.
func (kern *sgemmKernel) panelWidth(nc int) int {
	width := 0
	for j0 := 0; j0 < nc; {
		nr := kern.sliverWidth(nc - j0)
		width += nr
		j0 += min(nr, nc-j0)
	}
	return width
}

// reserve grows the buffers for blocks of up to mc×kc (A) and, when
// packB is set, kc×nc (B).
func (w *SgemmWorkspace) reserve(kern *sgemmKernel, mc, kc, nc int, packB bool) {
	slivers := (nc + kern.narrowNR - 1) / kern.narrowNR
	grow := func(s *[]float32, n int) {
		if cap(*s) < n {
			*s = make([]float32, n)
		}
		*s = (*s)[:cap(*s)]
	}
	grow(&w.packedA, max(mc*sgemmSpreadStride(kern.mr, kc), (mc/kern.mr)*sgemmSliverStride(kern.mr, kc)))
	if packB {
		grow(&w.packedB, kc*slivers*kern.narrowNR+kc*kern.wideNR)
	}
	grow(&w.tailA, kern.mr*kc)
	grow(&w.edge, kern.mr*kern.wideNR)
}

// sliverWidth returns the packed width of the B sliver that starts with
// left columns to go: wide, unless the narrow kernel covers them all.
func (kern *sgemmKernel) sliverWidth(left int) int {
	if left <= kern.narrowNR {
		return kern.narrowNR
	}
	return kern.wideNR
}

// sgemmPackPanel copies op(B)[pc:pc+kc, jc:jc+nc] into slivers at dst:
// sliver s, of width nr, is kc rows of nr floats, zero-padded past column nc.
func sgemmPackPanel(kern *sgemmKernel, dst []float32, transB bool, b []float32, ldb, pc, kc, jc, nc int) {
	for j0 := 0; j0 < nc; {
		nr := kern.sliverWidth(nc - j0)
		cols := min(nr, nc-j0)
		s := dst[:kc*nr]
		if transB {
			// op(B)[p, j] = B[j, p]: read rows of B, scatter down the sliver.
			for j := 0; j < cols; j++ {
				src := b[(jc+j0+j)*ldb+pc:][:kc]
				for p, v := range src {
					s[p*nr+j] = v
				}
			}
			if cols < nr {
				for p := 0; p < kc; p++ {
					clear(s[p*nr+cols : p*nr+nr])
				}
			}
		} else if cols == nr {
			kern.packB(s, b[pc*ldb+jc+j0:], kc, nr, ldb)
		} else {
			for p := 0; p < kc; p++ {
				row := s[p*nr : p*nr+nr]
				copy(row, b[(pc+p)*ldb+jc+j0:][:cols])
				clear(row[cols:])
			}
		}
		dst = dst[kc*nr:]
		j0 += cols
	}
}

// block multiplies op(A)[ic:ic+mc, pc:pc+kc] by the packed B panel bs into
// C[ic:ic+mc, 0:nc] (c starts at the panel's first column): each sliver in
// turn runs over all full tiles with one kernel call, then over the partial
// tile, if any, through the edge buffer. inPlace reports that A's row
// stride lets the kernels read it where it lies.
func (w *SgemmWorkspace) block(kern *sgemmKernel, transA, inPlace bool, a []float32, lda, ic, mc, pc, kc, nc int, bs []float32, alpha, beta float32, c []float32, ldc int) {
	mr := kern.mr
	tiles := mc / mr
	rows := mc - tiles*mr // in the last, partial tile

	// The kernels take element (i, p) of op(A) at i·rsA + p·csA, so A is
	// read in place when that is cache-friendly. Untransposed, the rows of
	// a tile stream side by side; transposed, each k step reads mr floats
	// of one row of A. Either way a row stride near a multiple of 4 KiB
	// would crowd the lines in use into a few L1 sets: then an untransposed
	// block is copied to rows with a friendlier stride, and a transposed one
	// is packed into slivers that hold each k step's mr floats together.
	var ablk []float32
	var rsA, csA, tsA, pfOff, pfStride int
	switch {
	case tiles == 0:
	case !transA:
		ld := lda
		ablk = a[ic*lda+pc:]
		if !inPlace {
			ld = sgemmSpreadStride(mr, kc)
			sgemmCopyRows(w.packedA, ablk, tiles*mr, kc, ld, lda)
			ablk = w.packedA
		}
		rsA, csA, tsA = ld, 1, mr*ld
		pfOff, pfStride = tsA, tsA // the next tile
	case inPlace:
		// Every tile reads across the same kc rows: prefetch the next k block.
		ablk, rsA, csA, tsA = a[pc*lda+ic:], 1, lda, mr
		pfOff, pfStride = kc*lda, 16*kc
	default:
		tsd := sgemmSliverStride(mr, kc)
		kern.packAT(w.packedA, a[pc*lda+ic:], kc, tiles, mr, lda, tsd)
		ablk, rsA, csA, tsA = w.packedA, 1, mr, tsd
		pfOff, pfStride = tsA, tsA
	}
	// The last, partial tile: a transposed A is read in place when the mr
	// columns of A (rows of op(A)) from its first lie inside a, the extra
	// ones feeding only rows of the edge tile that are thrown away;
	// otherwise its rows are packed, zero-padded.
	tail, rsT, csT := w.tailA, 1, mr
	if rows > 0 {
		i0 := ic + tiles*mr
		if transA && inPlace && (pc+kc-1)*lda+i0+mr <= len(a) {
			tail, rsT, csT = a[pc*lda+i0:], 1, lda
		} else {
			sgemmPackATail(w.tailA, mr, rows, transA, a, lda, i0, pc, kc)
		}
	}

	for j0 := 0; j0 < nc; {
		nr := kern.sliverWidth(nc - j0)
		cols := min(nr, nc-j0)
		micro := kern.wide
		if nr == kern.narrowNR {
			micro = kern.narrow
		}
		bsl := bs[:kc*nr]
		cs := c[ic*ldc+j0:]
		if cols == nr || kern.maskedCols {
			if tiles > 0 {
				micro(w, tiles, kc, ablk, rsA, csA, tsA, bsl, nr, cs, ldc, cols, pfOff, pfStride, alpha, beta)
			}
		} else {
			for t := 0; t < tiles; t++ {
				w.edgeTile(micro, mr, nr, mr, cols, kc, ablk[t*tsA:], rsA, csA, bsl, cs[t*mr*ldc:], ldc, alpha, beta)
			}
		}
		if rows > 0 {
			w.edgeTile(micro, mr, nr, rows, cols, kc, tail, rsT, csT, bsl, cs[tiles*mr*ldc:], ldc, alpha, beta)
		}
		bs = bs[kc*nr:]
		j0 += cols
	}
}

// edgeTile computes a tile of which only rows×cols lie inside C, through
// the edge buffer, with the same arithmetic as a full tile.
func (w *SgemmWorkspace) edgeTile(micro sgemmMicro, mr, nr, rows, cols, kc int, a []float32, rsA, csA int, b, c []float32, ldc int, alpha, beta float32) {
	t := w.edge[:mr*nr]
	if beta != 0 {
		for i := 0; i < rows; i++ {
			copy(t[i*nr:i*nr+cols], c[i*ldc:])
		}
	}
	micro(w, 1, kc, a, rsA, csA, 0, b, nr, t, nr, nr, 0, 0, alpha, beta)
	for i := 0; i < rows; i++ {
		copy(c[i*ldc:i*ldc+cols], t[i*nr:])
	}
}

// sgemmPackBGo copies kc rows of nr floats, ldb apart, into a packed
// sliver of kc·nr floats.
func sgemmPackBGo(dst, src []float32, kc, nr, ldb int) {
	for p := 0; p < kc; p++ {
		copy(dst[p*nr:p*nr+nr], src[p*ldb:p*ldb+nr])
	}
}

// sgemmStrideSpreads reports whether mr rows ld floats apart, streamed
// together, spread over enough sets of the 64-set L1 that none holds more
// than four of them; strides near a multiple of 4 KiB do not.
func sgemmStrideSpreads(mr, ld int) bool {
	var rowsPerSet [64]int
	for r := 0; r < mr; r++ {
		set := r * ld * 4 / 64 % 64
		rowsPerSet[set]++
		if rowsPerSet[set] > 4 {
			return false
		}
	}
	return true
}

// sgemmSpreadStride returns the smallest row stride of at least cols floats
// that spreads mr rows over the L1 sets.
func sgemmSpreadStride(mr, cols int) int {
	ld := cols
	for !sgemmStrideSpreads(mr, ld) {
		ld += 4
	}
	return ld
}

// sgemmCopyRows copies rows rows of cols floats from src (stride lds) to
// dst (stride ldd).
func sgemmCopyRows(dst, src []float32, rows, cols, ldd, lds int) {
	for i := 0; i < rows; i++ {
		copy(dst[i*ldd:i*ldd+cols], src[i*lds:])
	}
}

// sgemmSliverStride is the distance between packed slivers of mr×kc
// floats: one cache line more than their size, so that the slivers a
// packing loop writes side by side do not all fall in the same L1 set.
func sgemmSliverStride(mr, kc int) int { return mr*kc + 16 }

// sgemmPackATGo packs tiles mr-tall slivers of op(A) = Aᵀ, where src starts
// at element (0, 0) of the block: sliver t holds element (r, p) at
// t·tsd + p·mr + r, which is A[p·lda + t·mr + r]. So every run of mr
// floats of a row of A is one k step of one sliver.
func sgemmPackATGo(dst, src []float32, kc, tiles, mr, lda, tsd int) {
	for p := 0; p < kc; p++ {
		for t := 0; t < tiles; t++ {
			copy(dst[t*tsd+p*mr:][:mr], src[p*lda+t*mr:])
		}
	}
}

// sgemmPackATail packs rows < mr rows of op(A) starting at row i0, column
// pc, into one sliver laid out as in sgemmPackATGo, zero past the rows.
func sgemmPackATail(dst []float32, mr, rows int, transA bool, a []float32, lda, i0, pc, kc int) {
	dst = dst[:mr*kc]
	if transA {
		for p := 0; p < kc; p++ {
			d := dst[p*mr : p*mr+mr]
			copy(d, a[(pc+p)*lda+i0:][:rows])
			clear(d[rows:])
		}
		return
	}
	clear(dst)
	for r := 0; r < rows; r++ {
		src := a[(i0+r)*lda+pc:][:kc]
		for p, v := range src {
			dst[p*mr+r] = v
		}
	}
}

// sgemmScale sets C = beta·C, writing zeros without reading C when beta is 0.
func sgemmScale(m, n int, beta float32, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		switch beta {
		case 0:
			clear(row)
		case 1:
		default:
			for j := range row {
				row[j] *= beta
			}
		}
	}
}

// sgemmCheck panics when a size is negative, a stride is too small, or a
// slice is shorter than its matrix.
func sgemmCheck(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("kernels: Sgemm: negative size m=%d n=%d k=%d", m, n, k))
	}
	rowsA, colsA := m, k
	if transA {
		rowsA, colsA = k, m
	}
	rowsB, colsB := k, n
	if transB {
		rowsB, colsB = n, k
	}
	sgemmCheckMatrix("a", a, rowsA, colsA, lda)
	sgemmCheckMatrix("b", b, rowsB, colsB, ldb)
	sgemmCheckMatrix("c", c, m, n, ldc)
}

func sgemmCheckMatrix(name string, s []float32, rows, cols, ld int) {
	if ld < max(1, cols) {
		panic(fmt.Sprintf("kernels: Sgemm: ld%s = %d, want at least %d for a %d×%d matrix", name, ld, max(1, cols), rows, cols))
	}
	if rows > 0 && cols > 0 && len(s) < (rows-1)*ld+cols {
		panic(fmt.Sprintf("kernels: Sgemm: len(%s) = %d, want at least %d for a %d×%d matrix with ld%s = %d", name, len(s), (rows-1)*ld+cols, rows, cols, name, ld))
	}
}

// sgemmCheckMicro panics unless a micro-kernel call stays inside its
// slices; the assembly kernels call it before they take raw pointers.
func sgemmCheckMicro(mr, nr, tiles, kc int, a []float32, rsA, csA, tsA int, b []float32, ldb int, c []float32, ldc, cols int) {
	if tiles < 1 || kc < 1 ||
		len(a) < (tiles-1)*tsA+(mr-1)*rsA+(kc-1)*csA+1 ||
		len(b) < (kc-1)*ldb+nr ||
		cols < 1 || cols > nr || len(c) < (tiles*mr-1)*ldc+cols {
		panic(fmt.Sprintf("kernels: sgemm micro-kernel %d×%d: %d tiles, kc %d out of range (len a %d, b %d, c %d)", mr, nr, tiles, kc, len(a), len(b), len(c)))
	}
}
