//go:build ignore

// This program writes sgemm_amd64.s, the assembly micro-kernels of Sgemm:
//
//	go run sgemm_asm_gen.go > sgemm_amd64.s
//
// Every kernel runs the loop of sgemmMicroGo (its pure-Go twin and
// reference) over tiles consecutive register tiles of C. A tile's mr×nr
// accumulators live in vector registers; each k step loads one nr-wide row
// of the packed B sliver and, for each row, broadcasts one element of A,
// addressed through the row and k strides so that A can be read in place or
// packed. Before a tile's k loop the kernel prefetches the tile's C into L1;
// during it, it prefetches one line per k step of a region the caller points
// at (a later tile's A) into L2. The write-back is C = alpha·acc + beta·C as
// a multiply and a fused multiply-add, and never reads C when beta is ±0; the
// Z-register kernels mask it to the first cols columns. The kernels are
// generated rather than written out because they are long, unrolled and
// differ only in their sizes.
//
// The implicit kernels (sgemmImplicit*) are the 12-row Z-register tiles
// again, for an A that is not a matrix: each of a tile's rows starts at an
// offset of its own in an image, and every row reads the same runs of
// consecutive floats from there (sgemmRuns), which is a convolution's patch
// row read in place. The filter kernels (sgemmFilter*) read Aᵀ of the filter
// gradient the same way: each k step's 12 row values from one address of the
// image, the k steps in runs of pixels. Both keep the same FMA chain per
// element, so they give the bits of the matrix kernels on the im2col matrix
// of the same patches.
package main

import (
	"fmt"
	"os"
	"strings"
)

// tile describes one register tile.
type tile struct {
	name    string // Go function name
	mr      int    // rows (A elements broadcast per k step)
	vecs    int    // vector registers per row (nr = vecs·lanes)
	lanes   int    // float32 lanes per vector register: 16 (Z) or 8 (Y)
	reg     string // register prefix: "Z" or "Y"
	embedBC bool   // one vector per row: fold the broadcast into the FMA
}

func (t tile) nr() int { return t.vecs * t.lanes }

// Register roles, fixed for every kernel:
//
//	R8  tiles left          CX  k steps left (then scratch in the write-back)
//	AX  A, rows 0-4         R13 A, rows 5-9        R14 A, rows 10-11
//	R11 row stride of A     R12 3·row stride       SI  k stride of A
//	DI  A step from the end of one tile's k loop to the start of the next
//	BX  B, current k        R9  k stride of B
//	DX  C, current row      R10 prefetch pointer (see pfOff)
//
// Strides are in bytes. R14 is free here: ABI0 wrappers restore it.

// rowAddr is the memory operand of element k of row r of the current A tile.
func rowAddr(r int) string {
	base := []string{"AX", "R13", "R14"}[r/5]
	switch r % 5 {
	case 0:
		return "(" + base + ")"
	case 1:
		return "(" + base + ")(R11*1)"
	case 2:
		return "(" + base + ")(R11*2)"
	case 3:
		return "(" + base + ")(R12*1)"
	default:
		return "(" + base + ")(R11*4)"
	}
}

var out strings.Builder

func emit(format string, args ...any) {
	fmt.Fprintf(&out, "\t"+format+"\n", args...)
}

func label(l string) { fmt.Fprintf(&out, "%s:\n", l) }

func acc(t tile, r, v int) string { return fmt.Sprintf("%s%d", t.reg, r*t.vecs+v) }

// step emits one k step reading its B row at bRow, a memory operand
// without displacement.
func step(t tile, bRow string) {
	nregs := 32
	if t.reg == "Y" {
		nregs = 16
	}
	emit("PREFETCHT1 (R10)")
	emit("ADDQ $64, R10")
	if t.embedBC {
		b := fmt.Sprintf("%s%d", t.reg, nregs-4)
		emit("VMOVUPS %s, %s", bRow, b)
		for r := 0; r < t.mr; r++ {
			emit("VFMADD231PS.BCST %s, %s, %s", rowAddr(r), b, acc(t, r, 0))
		}
	} else {
		bregs := make([]string, t.vecs)
		for v := range bregs {
			bregs[v] = fmt.Sprintf("%s%d", t.reg, nregs-2-t.vecs+v)
			disp := ""
			if v > 0 {
				disp = fmt.Sprint(v * t.lanes * 4)
			}
			emit("VMOVUPS %s%s, %s", disp, bRow, bregs[v])
		}
		for r := 0; r < t.mr; r++ {
			a := fmt.Sprintf("%s%d", t.reg, nregs-2+r%2)
			emit("VBROADCASTSS %s, %s", rowAddr(r), a)
			for v := 0; v < t.vecs; v++ {
				emit("VFMADD231PS %s, %s, %s", bregs[v], a, acc(t, r, v))
			}
		}
	}
	emit("ADDQ SI, AX")
	if t.mr > 5 {
		emit("ADDQ SI, R13")
	}
	if t.mr > 10 {
		emit("ADDQ SI, R14")
	}
}

const unroll = 4

// Argument offsets of every kernel (ABI0, on the stack).
const (
	argTiles    = "tiles+0(FP)"
	argKC       = "kc+8(FP)"
	argA        = "a+16(FP)"
	argRsA      = "rsA+24(FP)"
	argCsA      = "csA+32(FP)"
	argTsA      = "tsA+40(FP)"
	argB        = "b+48(FP)"
	argLdb      = "ldb+56(FP)"
	argC        = "c+64(FP)"
	argLdc      = "ldc+72(FP)"
	argCols     = "cols+80(FP)"
	argPfOff    = "pfOff+88(FP)"
	argPfStride = "pfStride+96(FP)"
	argAlpha    = "alpha+104(FP)"
	argBeta     = "beta+108(FP)"
	argSize     = 112
)

func kernel(t tile) {
	nregs := 32
	if t.reg == "Y" {
		nregs = 16
	}
	alpha := fmt.Sprintf("%s%d", t.reg, nregs-2)
	beta := fmt.Sprintf("%s%d", t.reg, nregs-1)
	p := t.name
	// With Z registers, the write-back is masked to the first cols
	// columns (K1, K2 hold the masks of the two vectors); the Y kernels
	// always write all nr columns.
	masked := t.reg == "Z"
	mask := func(v int) string {
		if !masked {
			return ""
		}
		return fmt.Sprintf("K%d, ", v+1)
	}

	fmt.Fprintf(&out, "// func %s(tiles, kc int, a *float32, rsA, csA, tsA int, b *float32, ldb int, c *float32, ldc, cols, pfOff, pfStride int, alpha, beta float32)\n", t.name)
	fmt.Fprintf(&out, "TEXT ·%s(SB), NOSPLIT, $0-%d\n", t.name, argSize)
	if masked {
		columnMasks(t, argCols)
	}
	emit("MOVQ %s, R8", argTiles)
	emit("MOVQ %s, AX", argA)
	emit("MOVQ %s, R11", argRsA)
	emit("SHLQ $2, R11")
	emit("LEAQ (R11)(R11*2), R12")
	emit("MOVQ %s, SI", argCsA)
	emit("SHLQ $2, SI")
	emit("MOVQ %s, DI", argKC)
	emit("IMULQ SI, DI")
	emit("NEGQ DI")
	emit("MOVQ %s, CX", argTsA)
	emit("SHLQ $2, CX")
	emit("ADDQ CX, DI")
	emit("MOVQ %s, R9", argLdb)
	emit("SHLQ $2, R9")
	emit("MOVQ %s, DX", argC)
	// R10 walks the prefetch region, 64 bytes a k step; pfStride's slot
	// becomes the jump from the end of one tile's walk to the next start.
	emit("MOVQ %s, R10", argPfOff)
	emit("LEAQ (AX)(R10*4), R10")
	emit("MOVQ %s, CX", argPfStride)
	emit("SHLQ $2, CX")
	emit("MOVQ %s, BX", argKC)
	emit("SHLQ $6, BX")
	emit("SUBQ BX, CX")
	emit("MOVQ CX, %s", argPfStride)
	emit("TESTQ R8, R8")
	emit("JZ %s_done", p)

	label(p + "_tile")
	if t.mr > 5 {
		emit("LEAQ (AX)(R11*4), R13")
		emit("ADDQ R11, R13")
	}
	if t.mr > 10 {
		emit("LEAQ (R13)(R11*4), R14")
		emit("ADDQ R11, R14")
	}
	// Fetch the C tile now, so the write-back after the k loop finds it.
	emit("MOVQ %s, CX", argLdc)
	emit("SHLQ $2, CX")
	emit("MOVQ DX, BX")
	for r := 0; r < t.mr; r++ {
		for off := 0; off < t.nr()*4; off += 64 {
			emit("PREFETCHT0 %d(BX)", off)
		}
		emit("PREFETCHT0 %d(BX)", t.nr()*4-1)
		emit("ADDQ CX, BX")
	}
	emit("MOVQ %s, BX", argB)
	for r := 0; r < t.mr; r++ {
		for v := 0; v < t.vecs; v++ {
			x := acc(t, r, v)
			if t.reg == "Z" {
				emit("VPXORD %s, %s, %s", x, x, x)
			} else {
				emit("VXORPS %s, %s, %s", x, x, x)
			}
		}
	}
	emit("MOVQ %s, CX", argKC)
	emit("SHRQ $%d, CX", trailingZeros(unroll))
	emit("JZ %s_rest", p)
	label(p + "_k4")
	for u := 0; u < unroll; u++ {
		if u%2 == 0 {
			step(t, "(BX)")
		} else {
			step(t, "(BX)(R9*1)")
			emit("LEAQ (BX)(R9*2), BX")
		}
	}
	emit("DECQ CX")
	emit("JNZ %s_k4", p)
	label(p + "_rest")
	emit("MOVQ %s, CX", argKC)
	emit("ANDQ $%d, CX", unroll-1)
	emit("JZ %s_store", p)
	label(p + "_k1")
	step(t, "(BX)")
	emit("ADDQ R9, BX")
	emit("DECQ CX")
	emit("JNZ %s_k1", p)

	// C = alpha·acc + beta·C; with beta == ±0, C is not read.
	label(p + "_store")
	emit("VBROADCASTSS %s, %s", argAlpha, alpha)
	emit("VBROADCASTSS %s, %s", argBeta, beta)
	emit("MOVQ %s, BX", argLdc)
	emit("SHLQ $2, BX")
	emit("MOVL %s, CX", argBeta)
	emit("SHLL $1, CX")
	emit("JZ %s_store0", p)
	for r := 0; r < t.mr; r++ {
		for v := 0; v < t.vecs; v++ {
			x := acc(t, r, v)
			emit("VMULPS %s, %s, %s", alpha, x, x)
			emit("VFMADD231PS %d(DX), %s, %s%s", v*t.lanes*4, beta, mask(v), x)
			emit("VMOVUPS %s, %s%d(DX)", x, mask(v), v*t.lanes*4)
		}
		emit("ADDQ BX, DX")
	}
	emit("JMP %s_next", p)
	label(p + "_store0")
	for r := 0; r < t.mr; r++ {
		for v := 0; v < t.vecs; v++ {
			x := acc(t, r, v)
			emit("VMULPS %s, %s, %s", alpha, x, x)
			emit("VMOVUPS %s, %s%d(DX)", x, mask(v), v*t.lanes*4)
		}
		emit("ADDQ BX, DX")
	}
	label(p + "_next")
	emit("ADDQ DI, AX")
	emit("ADDQ %s, R10", argPfStride)
	emit("DECQ R8")
	emit("JNZ %s_tile", p)
	label(p + "_done")
	emit("VZEROUPPER")
	emit("RET")
	out.WriteString("\n")
}

// Argument offsets of the implicit kernels (ABI0, on the stack), and their
// locals, below the pseudo-SP.
const (
	impTiles  = "tiles+0(FP)"
	impRows   = "rows+8(FP)"
	impX      = "x+16(FP)"
	impOff0   = "off0+24(FP)"
	impEnds   = "ends+32(FP)"
	impRuns   = "runs+40(FP)"
	impJump   = "jump+48(FP)"
	impB      = "b+56(FP)"
	impC      = "c+64(FP)"
	impLdc    = "ldc+72(FP)"
	impCols   = "cols+80(FP)"
	impBeta   = "beta+88(FP)"
	impSize   = 92
	impFrame  = 56
	locTiles  = "tleft-8(SP)"  // tiles left
	locTable  = "tbl-16(SP)"   // the next tile's row offsets
	locC      = "cptr-24(SP)"  // the next tile's C
	locRunP   = "runp-32(SP)"  // the current run's end in ends
	locRuns   = "rleft-40(SP)" // runs left in the tile's k loop
	locRunEnd = "runend-48(SP)"
	locSpill  = "spill-56(SP)"
)

// columnMasks sets K1 (and K2 for two vectors a row) to the first cols
// columns of each of a row's vectors, cols read from the argument at
// colsArg: K(v+1) = (1 << clamp(cols − 16v, 0, 16)) − 1. BX and CX are
// scratch.
func columnMasks(t tile, colsArg string) {
	for v := 0; v < t.vecs; v++ {
		emit("MOVQ %s, CX", colsArg)
		if v > 0 {
			emit("SUBQ $%d, CX", v*t.lanes)
		}
		emit("MOVQ $%d, BX", t.lanes)
		emit("CMPQ CX, BX")
		emit("CMOVQGT BX, CX")
		emit("XORQ BX, BX")
		emit("CMPQ CX, BX")
		emit("CMOVQLT BX, CX")
		emit("MOVL $1, BX")
		emit("SHLL CX, BX")
		emit("DECL BX")
		emit("KMOVW BX, K%d", v+1)
	}
}

// maskedStore writes a Z-register tile back through the column masks:
// C = acc + beta·C (alpha is 1), C not read when beta == ±0. DX points at
// the tile's first row and advances by the row stride in ldcReg (bytes),
// ending past the tile; CX is scratch. It falls through to label p_next.
func maskedStore(t tile, p, betaArg, ldcReg string) {
	mask := func(v int) string { return fmt.Sprintf("K%d, ", v+1) }
	emit("MOVL %s, CX", betaArg)
	emit("SHLL $1, CX")
	emit("JZ %s_store0", p)
	emit("VBROADCASTSS %s, Z31", betaArg)
	for r := 0; r < t.mr; r++ {
		for v := 0; v < t.vecs; v++ {
			x := acc(t, r, v)
			emit("VFMADD231PS %d(DX), Z31, %s%s", v*t.lanes*4, mask(v), x)
			emit("VMOVUPS %s, %s%d(DX)", x, mask(v), v*t.lanes*4)
		}
		emit("ADDQ %s, DX", ldcReg)
	}
	emit("JMP %s_next", p)
	label(p + "_store0")
	for r := 0; r < t.mr; r++ {
		for v := 0; v < t.vecs; v++ {
			emit("VMOVUPS %s, %s%d(DX)", acc(t, r, v), mask(v), v*t.lanes*4)
		}
		emit("ADDQ %s, DX", ldcReg)
	}
	label(p + "_next")
}

// implicitRow is the base register of row r of an implicit kernel's tile.
func implicitRow(r int) string {
	return []string{"AX", "BX", "DX", "SI", "DI", "R8", "R9", "R10", "R11", "R12", "R13", "R14"}[r]
}

// implicitKernel emits the implicit-GEMM twin of kernel(t): the same tile,
// the same chain of FMAs per element and the same write-back with alpha = 1,
// but A is not a matrix. Row r of tile t starts at byte rows[12t + r] of x,
// and every row reads the same byte offsets from there: a run of k steps
// 4 bytes apart from off0 up to ends[0], then jump bytes further, the next
// run up to ends[1], and so on for runs runs. A convolution's patches are
// such runs of a zero-padded input (one filter row each), so the kernel
// reads them where they lie and im2col never writes them. Twelve base
// registers, the shared offset (CX) and B (R15) use every register but the
// stack's; the loop state lives in the frame.
func implicitKernel(t tile) {
	p := t.name
	nr := t.nr()
	fmt.Fprintf(&out, "// func %s(tiles int, rows *int, x *float32, off0 int, ends *int, runs, jump int, b, c *float32, ldc, cols int, beta float32)\n", p)
	fmt.Fprintf(&out, "TEXT ·%s(SB), NOSPLIT, $%d-%d\n", p, impFrame, impSize)
	columnMasks(t, impCols)
	emit("MOVQ %s, CX", impTiles)
	emit("MOVQ CX, %s", locTiles)
	emit("TESTQ CX, CX")
	emit("JZ %s_done", p)
	emit("MOVQ %s, CX", impRows)
	emit("MOVQ CX, %s", locTable)
	emit("MOVQ %s, CX", impC)
	emit("MOVQ CX, %s", locC)

	label(p + "_tile")
	// Fetch the C tile now, so the write-back after the k loop finds it.
	emit("MOVQ %s, BX", locC)
	emit("MOVQ %s, CX", impLdc)
	emit("SHLQ $2, CX")
	for r := 0; r < t.mr; r++ {
		for off := 0; off < nr*4; off += 64 {
			emit("PREFETCHT0 %d(BX)", off)
		}
		emit("PREFETCHT0 %d(BX)", nr*4-1)
		emit("ADDQ CX, BX")
	}
	for r := 0; r < t.mr; r++ {
		for v := 0; v < t.vecs; v++ {
			x := acc(t, r, v)
			emit("VPXORD %s, %s, %s", x, x, x)
		}
	}
	emit("MOVQ %s, CX", impEnds)
	emit("MOVQ CX, %s", locRunP)
	emit("MOVQ (CX), CX")
	emit("MOVQ CX, %s", locRunEnd)
	emit("MOVQ %s, CX", impRuns)
	emit("MOVQ CX, %s", locRuns)
	emit("MOVQ %s, R15", locTable)
	emit("MOVQ %s, CX", impX)
	for r := 0; r < t.mr; r++ {
		emit("MOVQ %d(R15), %s", 8*r, implicitRow(r))
		emit("ADDQ CX, %s", implicitRow(r))
	}
	emit("ADDQ $%d, R15", 8*t.mr)
	emit("MOVQ R15, %s", locTable)
	emit("MOVQ %s, R15", impB)
	emit("MOVQ %s, CX", impOff0)

	label(p + "_k4")
	for u := 0; u < unroll; u++ {
		aAt := func(r int) string {
			disp := ""
			if u > 0 {
				disp = fmt.Sprint(4 * u)
			}
			return fmt.Sprintf("%s(%s)(CX*1)", disp, implicitRow(r))
		}
		bDisp := u * nr * 4
		if t.embedBC {
			emit("VMOVUPS %d(R15), Z28", bDisp)
			for r := 0; r < t.mr; r++ {
				emit("VFMADD231PS.BCST %s, Z28, %s", aAt(r), acc(t, r, 0))
			}
			continue
		}
		for v := 0; v < t.vecs; v++ {
			emit("VMOVUPS %d(R15), Z%d", bDisp+v*t.lanes*4, 28+v)
		}
		for r := 0; r < t.mr; r++ {
			a := fmt.Sprintf("Z%d", 30+r%2)
			emit("VBROADCASTSS %s, %s", aAt(r), a)
			for v := 0; v < t.vecs; v++ {
				emit("VFMADD231PS Z%d, %s, %s", 28+v, a, acc(t, r, v))
			}
		}
	}
	emit("ADDQ $%d, R15", unroll*nr*4)
	emit("ADDQ $%d, CX", unroll*4)
	emit("CMPQ CX, %s", locRunEnd)
	emit("JLT %s_k4", p)
	// The run is over: jump to the next one, whose end AX fetches while
	// its row waits in the frame.
	emit("DECQ %s", locRuns)
	emit("JZ %s_store", p)
	emit("ADDQ %s, CX", impJump)
	emit("MOVQ AX, %s", locSpill)
	emit("MOVQ %s, AX", locRunP)
	emit("ADDQ $8, AX")
	emit("MOVQ AX, %s", locRunP)
	emit("MOVQ (AX), AX")
	emit("MOVQ AX, %s", locRunEnd)
	emit("MOVQ %s, AX", locSpill)
	emit("JMP %s_k4", p)

	// C = acc + beta·C (alpha is 1); with beta == ±0, C is not read.
	label(p + "_store")
	emit("MOVQ %s, DX", locC)
	emit("MOVQ %s, BX", impLdc)
	emit("SHLQ $2, BX")
	maskedStore(t, p, impBeta, "BX")
	emit("MOVQ DX, %s", locC)
	emit("DECQ %s", locTiles)
	emit("JNZ %s_tile", p)
	label(p + "_done")
	emit("VZEROUPPER")
	emit("RET")
	out.WriteString("\n")
}

// Argument offsets of the filter kernels (ABI0, on the stack).
const (
	filTiles = "tiles+0(FP)"
	filA     = "a+8(FP)"
	filTsA   = "tsA+16(FP)"
	filRuns  = "runs+24(FP)"
	filNRuns = "nruns+32(FP)"
	filCsA   = "csA+40(FP)"
	filB     = "b+48(FP)"
	filLdb   = "ldb+56(FP)"
	filC     = "c+64(FP)"
	filLdc   = "ldc+72(FP)"
	filCols  = "cols+80(FP)"
	filBeta  = "beta+88(FP)"
	filSize  = 92
)

// filterKernel emits the filter-gradient twin of kernel(t) for dW = colᵀ·dy
// with colᵀ never written: a tile's 12 rows are 12 consecutive floats of a
// patch (one filter row of a convolution holds whole tiles), so each k step
// (one output pixel) broadcasts them from one address, and the next pixel
// of the same output row is csA bytes on. The k steps come in runs, one
// per output row a k block touches: runs holds nruns pairs (byte offset of
// the run's first pixel from the tile's base, pixels). B (dy) is read in
// place, ldb floats a row, every k step the next row. Tile t's base is
// tsA bytes after tile t−1's, its C 12 rows of ldc floats after. The FMA
// chain and the write-back (alpha = 1) are the matrix kernel's, so the bits
// are those of the product on the im2col matrix of the same patches.
//
// Registers: AX the current pixel of A, R8 the tile's base, R15 B, CX
// pixels left in the run, DX the next run, BX runs left, SI csA, DI ldb
// in bytes, R9 tiles left, R10 C, R11 ldc in bytes, R12 tsA.
func filterKernel(t tile) {
	p := t.name
	fmt.Fprintf(&out, "// func %s(tiles int, a *float32, tsA int, runs *int, nruns, csA int, b *float32, ldb int, c *float32, ldc, cols int, beta float32)\n", p)
	fmt.Fprintf(&out, "TEXT ·%s(SB), NOSPLIT, $0-%d\n", p, filSize)
	columnMasks(t, filCols)
	emit("MOVQ %s, R9", filTiles)
	emit("TESTQ R9, R9")
	emit("JZ %s_done", p)
	emit("MOVQ %s, R8", filA)
	emit("MOVQ %s, R12", filTsA)
	emit("MOVQ %s, SI", filCsA)
	emit("MOVQ %s, DI", filLdb)
	emit("SHLQ $2, DI")
	emit("MOVQ %s, R10", filC)
	emit("MOVQ %s, R11", filLdc)
	emit("SHLQ $2, R11")

	label(p + "_tile")
	for r := 0; r < t.mr; r++ {
		for v := 0; v < t.vecs; v++ {
			x := acc(t, r, v)
			emit("VPXORD %s, %s, %s", x, x, x)
		}
	}
	emit("MOVQ %s, DX", filRuns)
	emit("MOVQ %s, BX", filNRuns)
	emit("MOVQ %s, R15", filB)

	label(p + "_run")
	emit("MOVQ (DX), AX")
	emit("ADDQ R8, AX")
	emit("MOVQ 8(DX), CX")
	emit("ADDQ $16, DX")

	label(p + "_k")
	if t.embedBC {
		emit("VMOVUPS (R15), Z28")
		for r := 0; r < t.mr; r++ {
			emit("VFMADD231PS.BCST %d(AX), Z28, %s", 4*r, acc(t, r, 0))
		}
	} else {
		for v := 0; v < t.vecs; v++ {
			emit("VMOVUPS %d(R15), Z%d", v*t.lanes*4, 28+v)
		}
		for r := 0; r < t.mr; r++ {
			a := fmt.Sprintf("Z%d", 30+r%2)
			emit("VBROADCASTSS %d(AX), %s", 4*r, a)
			for v := 0; v < t.vecs; v++ {
				emit("VFMADD231PS Z%d, %s, %s", 28+v, a, acc(t, r, v))
			}
		}
	}
	emit("ADDQ SI, AX")
	emit("ADDQ DI, R15")
	emit("DECQ CX")
	emit("JNZ %s_k", p)
	emit("DECQ BX")
	emit("JNZ %s_run", p)

	// C = acc + beta·C (alpha is 1); with beta == ±0, C is not read.
	emit("MOVQ R10, DX")
	maskedStore(t, p, filBeta, "R11")
	emit("MOVQ DX, R10")
	emit("ADDQ R12, R8")
	emit("DECQ R9")
	emit("JNZ %s_tile", p)
	label(p + "_done")
	emit("VZEROUPPER")
	emit("RET")
	out.WriteString("\n")
}

func trailingZeros(x int) int {
	n := 0
	for x > 1 {
		x >>= 1
		n++
	}
	return n
}

// peak emits a loop of independent FMAs, the throughput ceiling the kernels
// are measured against: iters iterations of chains FMAs each, no loads.
func peak(name, reg string, chains int) {
	fmt.Fprintf(&out, "// func %s(iters int)\n", name)
	fmt.Fprintf(&out, "TEXT ·%s(SB), NOSPLIT, $0-8\n", name)
	emit("MOVQ iters+0(FP), CX")
	// Real operands, not zeros: the FMA units draw more power, and may
	// clock lower, when their inputs toggle.
	for i, bits := range []string{"0x3f800001", "0x3e99999a"} {
		emit("MOVL $%s, AX", bits)
		emit("VMOVD AX, X0")
		emit("VPBROADCASTD X0, %s%d", reg, chains+i)
	}
	for i := 0; i < chains; i++ {
		if reg == "Z" {
			emit("VPXORD Z%d, Z%d, Z%d", i, i, i)
		} else {
			emit("VXORPS Y%d, Y%d, Y%d", i, i, i)
		}
	}
	emit("TESTQ CX, CX")
	emit("JZ %s_done", name)
	label(name + "_loop")
	for i := 0; i < chains; i++ {
		emit("VFMADD231PS %s%d, %s%d, %s%d", reg, chains, reg, chains+1, reg, i)
	}
	emit("DECQ CX")
	emit("JNZ %s_loop", name)
	label(name + "_done")
	emit("VZEROUPPER")
	emit("RET")
	out.WriteString("\n")
}

// packers are the copy loops of the packing step, shared by both
// instruction sets (they need only AVX).
const packers = `// func sgemmPackBAVX(dst, src *float32, kc, nr, ldb int)
// copies kc rows of nr ∈ {8, 16, 32} floats, ldb apart, into a packed sliver.
TEXT ·sgemmPackBAVX(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ kc+16(FP), CX
	MOVQ ldb+32(FP), DX
	SHLQ $2, DX
	MOVQ nr+24(FP), AX
	CMPQ AX, $32
	JEQ packb32
	CMPQ AX, $16
	JEQ packb16
packb8:
	VMOVUPS (SI), Y0
	VMOVUPS Y0, (DI)
	ADDQ DX, SI
	ADDQ $32, DI
	DECQ CX
	JNZ packb8
	JMP packbdone
packb16:
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	ADDQ DX, SI
	ADDQ $64, DI
	DECQ CX
	JNZ packb16
	JMP packbdone
packb32:
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS 64(SI), Y2
	VMOVUPS 96(SI), Y3
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	ADDQ DX, SI
	ADDQ $128, DI
	DECQ CX
	JNZ packb32
packbdone:
	VZEROUPPER
	RET

// func sgemmPackATAVX(dst, src *float32, kc, tiles, mr, lda, tsd int)
// packs tiles slivers of mr ∈ {6, 12} columns of kc rows of A, lda apart,
// into slivers tsd floats apart: each run of mr floats is copied as two
// overlapping vectors.
TEXT ·sgemmPackATAVX(SB), NOSPLIT, $0-56
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ kc+16(FP), CX
	MOVQ lda+40(FP), DX
	SHLQ $2, DX
	MOVQ mr+32(FP), R8
	SHLQ $2, R8
	MOVQ tsd+48(FP), R9
	SHLQ $2, R9
	CMPQ R8, $48
	JEQ packa12
packa6:
	MOVQ SI, R10
	MOVQ DI, R11
	MOVQ tiles+24(FP), BX
packa6tile:
	VMOVUPS (R10), X0
	VMOVUPS 8(R10), X1
	VMOVUPS X0, (R11)
	VMOVUPS X1, 8(R11)
	ADDQ R8, R10
	ADDQ R9, R11
	DECQ BX
	JNZ packa6tile
	ADDQ DX, SI
	ADDQ R8, DI
	DECQ CX
	JNZ packa6
	JMP packadone
packa12:
	MOVQ SI, R10
	MOVQ DI, R11
	MOVQ tiles+24(FP), BX
packa12tile:
	VMOVUPS (R10), Y0
	VMOVUPS 16(R10), Y1
	VMOVUPS Y0, (R11)
	VMOVUPS Y1, 16(R11)
	ADDQ R8, R10
	ADDQ R9, R11
	DECQ BX
	JNZ packa12tile
	ADDQ DX, SI
	ADDQ R8, DI
	DECQ CX
	JNZ packa12
packadone:
	VZEROUPPER
	RET

`

func main() {
	out.WriteString("// Code generated by go run sgemm_asm_gen.go; DO NOT EDIT.\n\n")
	out.WriteString("//go:build amd64 && !noasm\n\n")
	out.WriteString("#include \"textflag.h\"\n\n")
	kernel(tile{name: "sgemmKernelAVX512x12x32", mr: 12, vecs: 2, lanes: 16, reg: "Z"})
	kernel(tile{name: "sgemmKernelAVX512x12x16", mr: 12, vecs: 1, lanes: 16, reg: "Z", embedBC: true})
	kernel(tile{name: "sgemmKernelAVX2x6x16", mr: 6, vecs: 2, lanes: 8, reg: "Y"})
	kernel(tile{name: "sgemmKernelAVX2x6x8", mr: 6, vecs: 1, lanes: 8, reg: "Y"})
	implicitKernel(tile{name: "sgemmImplicitAVX512x12x32", mr: 12, vecs: 2, lanes: 16, reg: "Z"})
	implicitKernel(tile{name: "sgemmImplicitAVX512x12x16", mr: 12, vecs: 1, lanes: 16, reg: "Z", embedBC: true})
	filterKernel(tile{name: "sgemmFilterAVX512x12x32", mr: 12, vecs: 2, lanes: 16, reg: "Z"})
	filterKernel(tile{name: "sgemmFilterAVX512x12x16", mr: 12, vecs: 1, lanes: 16, reg: "Z", embedBC: true})
	out.WriteString(packers)
	peak("sgemmPeakAVX512", "Z", 24)
	peak("sgemmPeakAVX2", "Y", 12)
	os.Stdout.WriteString(out.String())
}
