//go:build amd64 && !noasm

#include "textflag.h"

// The elementwise loops of the CPU backend (see cpu_simd_amd64.go), AVX2,
// eight floats a vector. Counts are multiples of 8; the Go wrappers do the
// rest. No FMAs: every result is the same single operation as in Go.

// func cpuReLUAVX2(x, y *float32, n int)
// y = x > 0 ? x : 0. VMAXPS returns its second source when the first is not
// greater (NaN, −0), so max(x, +0) is exactly that.
TEXT ·cpuReLUAVX2(SB), NOSPLIT, $0-24
	MOVQ x+0(FP), SI
	MOVQ y+8(FP), DI
	MOVQ n+16(FP), CX
	VXORPS Y0, Y0, Y0
	SHRQ $3, CX
	JZ relu_done
relu_loop:
	VMOVUPS (SI), Y1
	VMAXPS Y0, Y1, Y1
	VMOVUPS Y1, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	DECQ CX
	JNZ relu_loop
relu_done:
	VZEROUPPER
	RET

// func cpuReLUMaskAVX2(y, dy, dx *float32, n int)
// dx = y > 0 ? dy : 0, with an ordered compare (NaN is not greater).
TEXT ·cpuReLUMaskAVX2(SB), NOSPLIT, $0-32
	MOVQ y+0(FP), SI
	MOVQ dy+8(FP), BX
	MOVQ dx+16(FP), DI
	MOVQ n+24(FP), CX
	VXORPS Y0, Y0, Y0
	SHRQ $3, CX
	JZ mask_done
mask_loop:
	VMOVUPS (SI), Y1
	VCMPPS $0x1e, Y0, Y1, Y2
	VANDPS (BX), Y2, Y2
	VMOVUPS Y2, (DI)
	ADDQ $32, SI
	ADDQ $32, BX
	ADDQ $32, DI
	DECQ CX
	JNZ mask_loop
mask_done:
	VZEROUPPER
	RET

// func cpuBiasAVX2(y, bias *float32, rows, cols int, relu bool)
// y[i·cols + j] += bias[j], then, with relu, max(·, +0) as above.
TEXT ·cpuBiasAVX2(SB), NOSPLIT, $0-33
	MOVQ y+0(FP), DI
	MOVQ rows+16(FP), DX
	MOVQ cols+24(FP), R8
	SHRQ $3, R8
	MOVBLZX relu+32(FP), R9
	VXORPS Y0, Y0, Y0
	TESTQ DX, DX
	JZ bias_done
	TESTQ R8, R8
	JZ bias_done
bias_row:
	MOVQ bias+8(FP), SI
	MOVQ R8, CX
bias_col:
	VMOVUPS (DI), Y1
	VADDPS (SI), Y1, Y1
	TESTQ R9, R9
	JZ bias_store
	VMAXPS Y0, Y1, Y1
bias_store:
	VMOVUPS Y1, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	DECQ CX
	JNZ bias_col
	DECQ DX
	JNZ bias_row
bias_done:
	VZEROUPPER
	RET

// func cpuAddToAVX2(dst, src *float32, n int)
// dst += src.
TEXT ·cpuAddToAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $3, CX
	JZ add_done
add_loop:
	VMOVUPS (DI), Y1
	VADDPS (SI), Y1, Y1
	VMOVUPS Y1, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	DECQ CX
	JNZ add_loop
add_done:
	VZEROUPPER
	RET

DATA cpuIota<>+0(SB)/4, $0
DATA cpuIota<>+4(SB)/4, $1
DATA cpuIota<>+8(SB)/4, $2
DATA cpuIota<>+12(SB)/4, $3
DATA cpuIota<>+16(SB)/4, $4
DATA cpuIota<>+20(SB)/4, $5
DATA cpuIota<>+24(SB)/4, $6
DATA cpuIota<>+28(SB)/4, $7
GLOBL cpuIota<>(SB), RODATA|NOPTR, $32

// func cpuMaxWindowAVX2(x *float32, first, rowStride, rows, cols, c int, y *float32, argmax *int32)
// For each channel j < c (a multiple of 8), the maximum over the window of
// rows×cols cells whose first cell starts at element first of x, cells c
// apart in a row and rows rowStride apart, and the index into x of the first
// cell holding it: a cell replaces the best so far only when it is greater
// (an ordered compare, so NaN never wins and ties keep the earlier cell),
// as the scalar loop does.
TEXT ·cpuMaxWindowAVX2(SB), NOSPLIT, $0-64
	MOVQ x+0(FP), SI
	MOVQ first+8(FP), R8
	MOVQ rowStride+16(FP), R9
	MOVQ rows+24(FP), R10
	MOVQ c+40(FP), R12
	MOVQ y+48(FP), DI
	MOVQ argmax+56(FP), DX
	VMOVDQU cpuIota<>(SB), Y15
	XORQ BX, BX
	TESTQ R12, R12
	JZ maxw_done
	// The index moves into vector registers are VEX-encoded (VMOVQ, not
	// MOVQ): a legacy-SSE instruction while the upper halves of the YMM
	// registers are dirty costs a state transition on many processors,
	// which made this loop some 35 times slower.
maxw_chan:
	LEAQ (R8)(BX*1), AX
	VMOVUPS (SI)(AX*4), Y0
	VMOVQ AX, X1
	VPBROADCASTD X1, Y1
	VPADDD Y15, Y1, Y1
	MOVQ AX, R13
	MOVQ R10, CX
maxw_row:
	MOVQ R13, R14
	MOVQ cols+32(FP), AX
maxw_col:
	VMOVUPS (SI)(R14*4), Y2
	VCMPPS $0x1e, Y0, Y2, Y3
	VBLENDVPS Y3, Y2, Y0, Y0
	VMOVQ R14, X4
	VPBROADCASTD X4, Y4
	VPADDD Y15, Y4, Y4
	VBLENDVPS Y3, Y4, Y1, Y1
	ADDQ R12, R14
	DECQ AX
	JNZ maxw_col
	ADDQ R9, R13
	DECQ CX
	JNZ maxw_row
	VMOVUPS Y0, (DI)(BX*4)
	VMOVDQU Y1, (DX)(BX*4)
	ADDQ $8, BX
	CMPQ BX, R12
	JLT maxw_chan
maxw_done:
	VZEROUPPER
	RET

// func cpuCopyRowsAVX2(dst *float32, ldd int, src *float32, lds int, rows, cols int)
// copies rows rows of cols floats (a multiple of 8), lds apart in src, to
// rows ldd apart in dst, row after row.
TEXT ·cpuCopyRowsAVX2(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ ldd+8(FP), R8
	SHLQ $2, R8
	MOVQ src+16(FP), SI
	MOVQ lds+24(FP), R9
	SHLQ $2, R9
	MOVQ rows+32(FP), DX
	MOVQ cols+40(FP), R10
	SHRQ $3, R10
	TESTQ DX, DX
	JZ copyrows_done
	TESTQ R10, R10
	JZ copyrows_done
copyrows_row:
	XORQ AX, AX
	MOVQ R10, CX
copyrows_col:
	VMOVUPS (SI)(AX*1), Y0
	VMOVUPS Y0, (DI)(AX*1)
	ADDQ $32, AX
	DECQ CX
	JNZ copyrows_col
	ADDQ R8, DI
	ADDQ R9, SI
	DECQ DX
	JNZ copyrows_row
copyrows_done:
	VZEROUPPER
	RET

// func cpuAddRowsAVX2(dst *float32, ldd int, src *float32, lds int, rows, cols int)
// adds rows rows of cols floats (a multiple of 8), lds apart in src, to
// rows ldd apart in dst, row after row (rows of dst may overlap: each row is
// stored before the next is loaded).
TEXT ·cpuAddRowsAVX2(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ ldd+8(FP), R8
	SHLQ $2, R8
	MOVQ src+16(FP), SI
	MOVQ lds+24(FP), R9
	SHLQ $2, R9
	MOVQ rows+32(FP), DX
	MOVQ cols+40(FP), R10
	SHRQ $3, R10
	TESTQ DX, DX
	JZ addrows_done
	TESTQ R10, R10
	JZ addrows_done
addrows_row:
	XORQ AX, AX
	MOVQ R10, CX
addrows_col:
	VMOVUPS (DI)(AX*1), Y0
	VADDPS (SI)(AX*1), Y0, Y0
	VMOVUPS Y0, (DI)(AX*1)
	ADDQ $32, AX
	DECQ CX
	JNZ addrows_col
	ADDQ R8, DI
	ADDQ R9, SI
	DECQ DX
	JNZ addrows_row
addrows_done:
	VZEROUPPER
	RET

// func cpuCopyRows4AVX(dst *float32, ldd int, src *float32, lds int, rows, cols int)
// is cpuCopyRowsAVX2 for cols a multiple of 4, four floats a move.
TEXT ·cpuCopyRows4AVX(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ ldd+8(FP), R8
	SHLQ $2, R8
	MOVQ src+16(FP), SI
	MOVQ lds+24(FP), R9
	SHLQ $2, R9
	MOVQ rows+32(FP), DX
	MOVQ cols+40(FP), R10
	SHRQ $2, R10
	TESTQ DX, DX
	JZ copyrows4_done
	TESTQ R10, R10
	JZ copyrows4_done
copyrows4_row:
	XORQ AX, AX
	MOVQ R10, CX
copyrows4_col:
	VMOVUPS (SI)(AX*1), X0
	VMOVUPS X0, (DI)(AX*1)
	ADDQ $16, AX
	DECQ CX
	JNZ copyrows4_col
	ADDQ R8, DI
	ADDQ R9, SI
	DECQ DX
	JNZ copyrows4_row
copyrows4_done:
	RET

// The conv1 kernels: a 3×3 convolution of one input channel into 16
// output channels, stride 1, over a zero-padded image xp whose rows are wp
// floats apart (see cpu_conv1.go). The nine filter taps of 16 floats live in
// Z0–Z8; each output pixel's 16 sums are one Z register. The taps of a pixel
// are summed from zero in (kh, kw) order with FMAs and the bias is added
// last: the arithmetic of the GEMM path (Sgemm, then cpuBias), bit for bit.

// func cpuConv1ForwardAVX512(y, xp *float32, wp, n int, w, bias *float32, relu bool)
// writes y[j·16 : j·16+16] = (Σ_{kh,kw} xp[kh·wp + j + kw]·w[(kh·3+kw)·16 :]) + bias
// for the n pixels j of one output row, then max(·, +0) with relu.
TEXT ·cpuConv1ForwardAVX512(SB), NOSPLIT, $0-49
	MOVQ y+0(FP), DI
	MOVQ xp+8(FP), SI
	MOVQ wp+16(FP), R8
	SHLQ $2, R8
	LEAQ (SI)(R8*1), R9
	LEAQ (R9)(R8*1), R10
	MOVQ n+24(FP), CX
	MOVQ w+32(FP), AX
	VMOVUPS 0(AX), Z0
	VMOVUPS 64(AX), Z1
	VMOVUPS 128(AX), Z2
	VMOVUPS 192(AX), Z3
	VMOVUPS 256(AX), Z4
	VMOVUPS 320(AX), Z5
	VMOVUPS 384(AX), Z6
	VMOVUPS 448(AX), Z7
	VMOVUPS 512(AX), Z8
	MOVQ bias+40(FP), BX
	VMOVUPS (BX), Z9
	MOVBLZX relu+48(FP), DX
	VPXORD Z10, Z10, Z10
c1f_loop4:
	CMPQ CX, $4
	JLT c1f_tail
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VFMADD231PS.BCST 0(SI), Z0, Z11
	VFMADD231PS.BCST 4(SI), Z0, Z12
	VFMADD231PS.BCST 8(SI), Z0, Z13
	VFMADD231PS.BCST 12(SI), Z0, Z14
	VFMADD231PS.BCST 4(SI), Z1, Z11
	VFMADD231PS.BCST 8(SI), Z1, Z12
	VFMADD231PS.BCST 12(SI), Z1, Z13
	VFMADD231PS.BCST 16(SI), Z1, Z14
	VFMADD231PS.BCST 8(SI), Z2, Z11
	VFMADD231PS.BCST 12(SI), Z2, Z12
	VFMADD231PS.BCST 16(SI), Z2, Z13
	VFMADD231PS.BCST 20(SI), Z2, Z14
	VFMADD231PS.BCST 0(R9), Z3, Z11
	VFMADD231PS.BCST 4(R9), Z3, Z12
	VFMADD231PS.BCST 8(R9), Z3, Z13
	VFMADD231PS.BCST 12(R9), Z3, Z14
	VFMADD231PS.BCST 4(R9), Z4, Z11
	VFMADD231PS.BCST 8(R9), Z4, Z12
	VFMADD231PS.BCST 12(R9), Z4, Z13
	VFMADD231PS.BCST 16(R9), Z4, Z14
	VFMADD231PS.BCST 8(R9), Z5, Z11
	VFMADD231PS.BCST 12(R9), Z5, Z12
	VFMADD231PS.BCST 16(R9), Z5, Z13
	VFMADD231PS.BCST 20(R9), Z5, Z14
	VFMADD231PS.BCST 0(R10), Z6, Z11
	VFMADD231PS.BCST 4(R10), Z6, Z12
	VFMADD231PS.BCST 8(R10), Z6, Z13
	VFMADD231PS.BCST 12(R10), Z6, Z14
	VFMADD231PS.BCST 4(R10), Z7, Z11
	VFMADD231PS.BCST 8(R10), Z7, Z12
	VFMADD231PS.BCST 12(R10), Z7, Z13
	VFMADD231PS.BCST 16(R10), Z7, Z14
	VFMADD231PS.BCST 8(R10), Z8, Z11
	VFMADD231PS.BCST 12(R10), Z8, Z12
	VFMADD231PS.BCST 16(R10), Z8, Z13
	VFMADD231PS.BCST 20(R10), Z8, Z14
	VADDPS Z9, Z11, Z11
	VADDPS Z9, Z12, Z12
	VADDPS Z9, Z13, Z13
	VADDPS Z9, Z14, Z14
	TESTQ DX, DX
	JZ c1f_store4
	VMAXPS Z10, Z11, Z11
	VMAXPS Z10, Z12, Z12
	VMAXPS Z10, Z13, Z13
	VMAXPS Z10, Z14, Z14
c1f_store4:
	VMOVUPS Z11, 0(DI)
	VMOVUPS Z12, 64(DI)
	VMOVUPS Z13, 128(DI)
	VMOVUPS Z14, 192(DI)
	ADDQ $16, SI
	ADDQ $16, R9
	ADDQ $16, R10
	ADDQ $256, DI
	SUBQ $4, CX
	JMP c1f_loop4
c1f_tail:
	TESTQ CX, CX
	JZ c1f_done
	VPXORD Z11, Z11, Z11
	VFMADD231PS.BCST 0(SI), Z0, Z11
	VFMADD231PS.BCST 4(SI), Z1, Z11
	VFMADD231PS.BCST 8(SI), Z2, Z11
	VFMADD231PS.BCST 0(R9), Z3, Z11
	VFMADD231PS.BCST 4(R9), Z4, Z11
	VFMADD231PS.BCST 8(R9), Z5, Z11
	VFMADD231PS.BCST 0(R10), Z6, Z11
	VFMADD231PS.BCST 4(R10), Z7, Z11
	VFMADD231PS.BCST 8(R10), Z8, Z11
	VADDPS Z9, Z11, Z11
	TESTQ DX, DX
	JZ c1f_store1
	VMAXPS Z10, Z11, Z11
c1f_store1:
	VMOVUPS Z11, (DI)
	ADDQ $4, SI
	ADDQ $4, R9
	ADDQ $4, R10
	ADDQ $64, DI
	DECQ CX
	JMP c1f_tail
c1f_done:
	VZEROUPPER
	RET

// func cpuConv1FilterAVX512(dw, db, xp *float32, wp int, dy *float32, n int)
// adds, for the n pixels j of one output row in order, xp[kh·wp + j + kw]·
// dy[j·16 :] to dw[(kh·3+kw)·16 :] (an FMA) and dy[j·16 :] to db (an add).
TEXT ·cpuConv1FilterAVX512(SB), NOSPLIT, $0-48
	MOVQ dw+0(FP), AX
	MOVQ db+8(FP), BX
	MOVQ xp+16(FP), SI
	MOVQ wp+24(FP), R8
	SHLQ $2, R8
	LEAQ (SI)(R8*1), R9
	LEAQ (R9)(R8*1), R10
	MOVQ dy+32(FP), DI
	MOVQ n+40(FP), CX
	VMOVUPS 0(AX), Z0
	VMOVUPS 64(AX), Z1
	VMOVUPS 128(AX), Z2
	VMOVUPS 192(AX), Z3
	VMOVUPS 256(AX), Z4
	VMOVUPS 320(AX), Z5
	VMOVUPS 384(AX), Z6
	VMOVUPS 448(AX), Z7
	VMOVUPS 512(AX), Z8
	VMOVUPS (BX), Z9
	TESTQ CX, CX
	JZ c1w_store
c1w_loop:
	VMOVUPS (DI), Z10
	VFMADD231PS.BCST 0(SI), Z10, Z0
	VFMADD231PS.BCST 4(SI), Z10, Z1
	VFMADD231PS.BCST 8(SI), Z10, Z2
	VFMADD231PS.BCST 0(R9), Z10, Z3
	VFMADD231PS.BCST 4(R9), Z10, Z4
	VFMADD231PS.BCST 8(R9), Z10, Z5
	VFMADD231PS.BCST 0(R10), Z10, Z6
	VFMADD231PS.BCST 4(R10), Z10, Z7
	VFMADD231PS.BCST 8(R10), Z10, Z8
	VADDPS Z10, Z9, Z9
	ADDQ $4, SI
	ADDQ $4, R9
	ADDQ $4, R10
	ADDQ $64, DI
	DECQ CX
	JNZ c1w_loop
c1w_store:
	VMOVUPS Z0, 0(AX)
	VMOVUPS Z1, 64(AX)
	VMOVUPS Z2, 128(AX)
	VMOVUPS Z3, 192(AX)
	VMOVUPS Z4, 256(AX)
	VMOVUPS Z5, 320(AX)
	VMOVUPS Z6, 384(AX)
	VMOVUPS Z7, 448(AX)
	VMOVUPS Z8, 512(AX)
	VMOVUPS Z9, (BX)
	VZEROUPPER
	RET

// func cpuPoolScatterAVX2(dx, dy *float32, argmax *int32, cell0, ow, size, c int)
// Writes one input row of a max-pool backward whose windows tile the image
// (stride == size, no padding): for q < ow, kw < size and channel j < c (a
// multiple of 8), input cell i = cell0 + (q·size + kw)·c + j (the index
// argmax holds) gets dy[q·c + j] + 0 where argmax[q·c + j] == i, else +0.
// That is what clearing dx and adding each dy to its winner gives, -0 and
// NaN included, in one pass of whole-row stores.
TEXT ·cpuPoolScatterAVX2(SB), NOSPLIT, $0-56
	MOVQ dx+0(FP), DI
	MOVQ dy+8(FP), SI
	MOVQ argmax+16(FP), BX
	MOVQ cell0+24(FP), AX
	MOVQ ow+32(FP), R8
	MOVQ size+40(FP), R9
	MOVQ c+48(FP), R10
	SHRQ $3, R10
	VXORPS Y0, Y0, Y0
	VMOVD AX, X4
	VPBROADCASTD X4, Y4
	VPADDD cpuIota<>(SB), Y4, Y4 // the indices of the next 8 cells
	MOVL $8, AX
	VMOVD AX, X5
	VPBROADCASTD X5, Y5
	TESTQ R8, R8
	JZ scatter_done
	TESTQ R10, R10
	JZ scatter_done
scatter_pixel:
	MOVQ R9, DX
scatter_cell:
	MOVQ SI, R11
	MOVQ BX, R12
	MOVQ R10, CX
scatter_chan:
	VPCMPEQD (R12), Y4, Y2
	VADDPS (R11), Y0, Y3
	VANDPS Y2, Y3, Y3
	VMOVUPS Y3, (DI)
	VPADDD Y5, Y4, Y4
	ADDQ $32, R11
	ADDQ $32, R12
	ADDQ $32, DI
	DECQ CX
	JNZ scatter_chan
	DECQ DX
	JNZ scatter_cell
	MOVQ R11, SI
	MOVQ R12, BX
	DECQ R8
	JNZ scatter_pixel
scatter_done:
	VZEROUPPER
	RET
