//go:build amd64 && !noasm

#include "textflag.h"

// The byte kernels of DeltaCodec in AVX-512 (see paramsdelta_amd64.go):
// whole blocks of 16 parameters or 64 plane bytes, n > 0 a multiple of
// the block.

// splitIdx gathers the bytes of 16 words into four runs of 16: the most
// significant bytes first.
DATA splitIdx<>+0(SB)/8, $0x1f1b17130f0b0703
DATA splitIdx<>+8(SB)/8, $0x3f3b37332f2b2723
DATA splitIdx<>+16(SB)/8, $0x1e1a16120e0a0602
DATA splitIdx<>+24(SB)/8, $0x3e3a36322e2a2622
DATA splitIdx<>+32(SB)/8, $0x1d1915110d090501
DATA splitIdx<>+40(SB)/8, $0x3d3935312d292521
DATA splitIdx<>+48(SB)/8, $0x1c1814100c080400
DATA splitIdx<>+56(SB)/8, $0x3c3834302c282420
GLOBL splitIdx<>(SB), RODATA|NOPTR, $64

// mergeIdx puts them back.
DATA mergeIdx<>+0(SB)/8, $0x0111213100102030
DATA mergeIdx<>+8(SB)/8, $0x0313233302122232
DATA mergeIdx<>+16(SB)/8, $0x0515253504142434
DATA mergeIdx<>+24(SB)/8, $0x0717273706162636
DATA mergeIdx<>+32(SB)/8, $0x0919293908182838
DATA mergeIdx<>+40(SB)/8, $0x0b1b2b3b0a1a2a3a
DATA mergeIdx<>+48(SB)/8, $0x0d1d2d3d0c1c2c3c
DATA mergeIdx<>+56(SB)/8, $0x0f1f2f3f0e1e2e3e
GLOBL mergeIdx<>(SB), RODATA|NOPTR, $64

// func splitPlanesAVX512(p0, p1, p2, p3 *byte, base, next *float32, n int)
TEXT ·splitPlanesAVX512(SB), NOSPLIT, $0-56
	MOVQ p0+0(FP), DI
	MOVQ p1+8(FP), R8
	MOVQ p2+16(FP), R9
	MOVQ p3+24(FP), R10
	MOVQ base+32(FP), SI
	MOVQ next+40(FP), DX
	MOVQ n+48(FP), CX
	VMOVDQU8 splitIdx<>(SB), Z31
split:
	VMOVDQU32 (SI), Z0
	VPXORD (DX), Z0, Z0
	VPERMB Z0, Z31, Z1
	VMOVDQU8 X1, (DI)
	VEXTRACTI32X4 $1, Z1, (R8)
	VEXTRACTI32X4 $2, Z1, (R9)
	VEXTRACTI32X4 $3, Z1, (R10)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $16, DI
	ADDQ $16, R8
	ADDQ $16, R9
	ADDQ $16, R10
	SUBQ $16, CX
	JNZ split
	VZEROUPPER
	RET

// func mergePlanesAVX512(params *float32, p0, p1, p2, p3 *byte, n int)
TEXT ·mergePlanesAVX512(SB), NOSPLIT, $0-48
	MOVQ params+0(FP), DI
	MOVQ p0+8(FP), R8
	MOVQ p1+16(FP), R9
	MOVQ p2+24(FP), R10
	MOVQ p3+32(FP), R11
	MOVQ n+40(FP), CX
	VMOVDQU8 mergeIdx<>(SB), Z31
merge:
	VMOVDQU8 (R8), X0
	VINSERTI32X4 $1, (R9), Z0, Z0
	VINSERTI32X4 $2, (R10), Z0, Z0
	VINSERTI32X4 $3, (R11), Z0, Z0
	VPERMB Z0, Z31, Z1
	VPXORD (DI), Z1, Z1
	VMOVDQU32 Z1, (DI)
	ADDQ $64, DI
	ADDQ $16, R8
	ADDQ $16, R9
	ADDQ $16, R10
	ADDQ $16, R11
	SUBQ $16, CX
	JNZ merge
	VZEROUPPER
	RET

// func countNonzeroAVX512(p *byte, n int) int
TEXT ·countNonzeroAVX512(SB), NOSPLIT, $0-24
	MOVQ p+0(FP), SI
	MOVQ n+8(FP), CX
	XORQ AX, AX
count:
	VMOVDQU8 (SI), Z0
	VPTESTMB Z0, Z0, K1
	KMOVQ K1, BX
	POPCNTQ BX, BX
	ADDQ BX, AX
	ADDQ $64, SI
	SUBQ $64, CX
	JNZ count
	MOVQ AX, ret+16(FP)
	VZEROUPPER
	RET

// func markNonzeroAVX512(bitmap, p *byte, n int)
TEXT ·markNonzeroAVX512(SB), NOSPLIT, $0-24
	MOVQ bitmap+0(FP), DI
	MOVQ p+8(FP), SI
	MOVQ n+16(FP), CX
mark:
	VMOVDQU8 (SI), Z0
	VPTESTMB Z0, Z0, K1
	KMOVQ K1, (DI)
	ADDQ $64, SI
	ADDQ $8, DI
	SUBQ $64, CX
	JNZ mark
	VZEROUPPER
	RET

// func compressNonzeroAVX512(dst, p *byte, n int) int
//
// The register form of VPCOMPRESSB, then a whole store: the memory form
// is microcoded and slow on some cores.
TEXT ·compressNonzeroAVX512(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ p+8(FP), SI
	MOVQ n+16(FP), CX
	MOVQ DI, R8
compress:
	VMOVDQU8 (SI), Z0
	VPTESTMB Z0, Z0, K1
	VPCOMPRESSB.Z Z0, K1, Z1
	VMOVDQU8 Z1, (DI)
	KMOVQ K1, BX
	POPCNTQ BX, BX
	ADDQ BX, DI
	ADDQ $64, SI
	SUBQ $64, CX
	JNZ compress
	SUBQ R8, DI
	MOVQ DI, ret+24(FP)
	VZEROUPPER
	RET

// func expandMarkedAVX512(dst, bitmap, values *byte, n int) int
//
// Each block's values are loaded under a mask of as many bytes as its
// bitmap marks, so nothing past them is read.
TEXT ·expandMarkedAVX512(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ bitmap+8(FP), BX
	MOVQ values+16(FP), SI
	MOVQ n+24(FP), CX
	MOVQ SI, R8
	MOVQ $-1, R9
expand:
	MOVQ (BX), AX
	KMOVQ AX, K1
	POPCNTQ AX, DX
	BZHIQ DX, R9, R10
	KMOVQ R10, K2
	VMOVDQU8.Z (SI), K2, Z0
	VPEXPANDB.Z Z0, K1, Z1
	VMOVDQU8 Z1, (DI)
	ADDQ DX, SI
	ADDQ $8, BX
	ADDQ $64, DI
	SUBQ $64, CX
	JNZ expand
	SUBQ R8, SI
	MOVQ SI, ret+32(FP)
	VZEROUPPER
	RET
