//go:build amd64

#include "textflag.h"

// Accumulates the mr×nr = 6×16 tile Σ_t a[t*6+i]·b[t*16+j] in Y0–Y11
// (row i in Y(2i), Y(2i+1)); k in CX, a in SI, b in DI. Clobbers Y12–Y15.

// func gemmTileAVX2(k int, a, b *float32, c *[96]float32)
TEXT ·gemmTileAVX2(SB), NOSPLIT, $0-32
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	MOVQ c+24(FP), DX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	TESTQ CX, CX
	JLE gemmdone
gemmloop:
	VMOVUPS (DI), Y12
	VMOVUPS 32(DI), Y13
	VBROADCASTSS 0(SI), Y14
	VFMADD231PS Y12, Y14, Y0
	VFMADD231PS Y13, Y14, Y1
	VBROADCASTSS 4(SI), Y15
	VFMADD231PS Y12, Y15, Y2
	VFMADD231PS Y13, Y15, Y3
	VBROADCASTSS 8(SI), Y14
	VFMADD231PS Y12, Y14, Y4
	VFMADD231PS Y13, Y14, Y5
	VBROADCASTSS 12(SI), Y15
	VFMADD231PS Y12, Y15, Y6
	VFMADD231PS Y13, Y15, Y7
	VBROADCASTSS 16(SI), Y14
	VFMADD231PS Y12, Y14, Y8
	VFMADD231PS Y13, Y14, Y9
	VBROADCASTSS 20(SI), Y15
	VFMADD231PS Y12, Y15, Y10
	VFMADD231PS Y13, Y15, Y11
	ADDQ $24, SI
	ADDQ $64, DI
	DECQ CX
	JNZ gemmloop
gemmdone:
	VMOVUPS Y0, 0(DX)
	VMOVUPS Y1, 32(DX)
	VMOVUPS Y2, 64(DX)
	VMOVUPS Y3, 96(DX)
	VMOVUPS Y4, 128(DX)
	VMOVUPS Y5, 160(DX)
	VMOVUPS Y6, 192(DX)
	VMOVUPS Y7, 224(DX)
	VMOVUPS Y8, 256(DX)
	VMOVUPS Y9, 288(DX)
	VMOVUPS Y10, 320(DX)
	VMOVUPS Y11, 352(DX)
	VZEROUPPER
	RET

// func distTileAVX2(k int, a, b *float32, nb *[16]float32, na, thr *[6]float32, cthr *[16]float32, out *[96]float32, masks *[6]uint32, cmasks *[6]uint32)
TEXT ·distTileAVX2(SB), NOSPLIT, $0-80
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	TESTQ CX, CX
	JLE distdone
distloop:
	VMOVUPS (DI), Y12
	VMOVUPS 32(DI), Y13
	VBROADCASTSS 0(SI), Y14
	VFMADD231PS Y12, Y14, Y0
	VFMADD231PS Y13, Y14, Y1
	VBROADCASTSS 4(SI), Y15
	VFMADD231PS Y12, Y15, Y2
	VFMADD231PS Y13, Y15, Y3
	VBROADCASTSS 8(SI), Y14
	VFMADD231PS Y12, Y14, Y4
	VFMADD231PS Y13, Y14, Y5
	VBROADCASTSS 12(SI), Y15
	VFMADD231PS Y12, Y15, Y6
	VFMADD231PS Y13, Y15, Y7
	VBROADCASTSS 16(SI), Y14
	VFMADD231PS Y12, Y14, Y8
	VFMADD231PS Y13, Y14, Y9
	VBROADCASTSS 20(SI), Y15
	VFMADD231PS Y12, Y15, Y10
	VFMADD231PS Y13, Y15, Y11
	ADDQ $24, SI
	ADDQ $64, DI
	DECQ CX
	JNZ distloop
distdone:
	MOVQ nb+24(FP), R8
	MOVQ na+32(FP), R9
	MOVQ thr+40(FP), R10
	MOVQ cthr+48(FP), R12
	MOVQ out+56(FP), DX
	MOVQ masks+64(FP), R11
	MOVQ cmasks+72(FP), R13
	VMOVUPS (R8), Y12
	VMOVUPS 32(R8), Y13
	// row 0: out = acc + (na+nb); mask: out ≤ thr[row]; cmask: out ≤ cthr[column]
	VBROADCASTSS 0(R9), Y14
	VADDPS Y12, Y14, Y15
	VADDPS Y15, Y0, Y0
	VADDPS Y13, Y14, Y15
	VADDPS Y15, Y1, Y1
	VMOVUPS Y0, 0(DX)
	VMOVUPS Y1, 32(DX)
	VBROADCASTSS 0(R10), Y14
	VCMPPS $2, Y14, Y0, Y15
	VMOVMSKPS Y15, AX
	VCMPPS $2, Y14, Y1, Y15
	VMOVMSKPS Y15, BX
	SHLL $8, BX
	ORL BX, AX
	MOVL AX, 0(R11)
	VCMPPS $2, (R12), Y0, Y15
	VMOVMSKPS Y15, AX
	VCMPPS $2, 32(R12), Y1, Y15
	VMOVMSKPS Y15, BX
	SHLL $8, BX
	ORL BX, AX
	MOVL AX, 0(R13)
	// row 1: out = acc + (na+nb); mask: out ≤ thr[row]; cmask: out ≤ cthr[column]
	VBROADCASTSS 4(R9), Y14
	VADDPS Y12, Y14, Y15
	VADDPS Y15, Y2, Y2
	VADDPS Y13, Y14, Y15
	VADDPS Y15, Y3, Y3
	VMOVUPS Y2, 64(DX)
	VMOVUPS Y3, 96(DX)
	VBROADCASTSS 4(R10), Y14
	VCMPPS $2, Y14, Y2, Y15
	VMOVMSKPS Y15, AX
	VCMPPS $2, Y14, Y3, Y15
	VMOVMSKPS Y15, BX
	SHLL $8, BX
	ORL BX, AX
	MOVL AX, 4(R11)
	VCMPPS $2, (R12), Y2, Y15
	VMOVMSKPS Y15, AX
	VCMPPS $2, 32(R12), Y3, Y15
	VMOVMSKPS Y15, BX
	SHLL $8, BX
	ORL BX, AX
	MOVL AX, 4(R13)
	// row 2: out = acc + (na+nb); mask: out ≤ thr[row]; cmask: out ≤ cthr[column]
	VBROADCASTSS 8(R9), Y14
	VADDPS Y12, Y14, Y15
	VADDPS Y15, Y4, Y4
	VADDPS Y13, Y14, Y15
	VADDPS Y15, Y5, Y5
	VMOVUPS Y4, 128(DX)
	VMOVUPS Y5, 160(DX)
	VBROADCASTSS 8(R10), Y14
	VCMPPS $2, Y14, Y4, Y15
	VMOVMSKPS Y15, AX
	VCMPPS $2, Y14, Y5, Y15
	VMOVMSKPS Y15, BX
	SHLL $8, BX
	ORL BX, AX
	MOVL AX, 8(R11)
	VCMPPS $2, (R12), Y4, Y15
	VMOVMSKPS Y15, AX
	VCMPPS $2, 32(R12), Y5, Y15
	VMOVMSKPS Y15, BX
	SHLL $8, BX
	ORL BX, AX
	MOVL AX, 8(R13)
	// row 3: out = acc + (na+nb); mask: out ≤ thr[row]; cmask: out ≤ cthr[column]
	VBROADCASTSS 12(R9), Y14
	VADDPS Y12, Y14, Y15
	VADDPS Y15, Y6, Y6
	VADDPS Y13, Y14, Y15
	VADDPS Y15, Y7, Y7
	VMOVUPS Y6, 192(DX)
	VMOVUPS Y7, 224(DX)
	VBROADCASTSS 12(R10), Y14
	VCMPPS $2, Y14, Y6, Y15
	VMOVMSKPS Y15, AX
	VCMPPS $2, Y14, Y7, Y15
	VMOVMSKPS Y15, BX
	SHLL $8, BX
	ORL BX, AX
	MOVL AX, 12(R11)
	VCMPPS $2, (R12), Y6, Y15
	VMOVMSKPS Y15, AX
	VCMPPS $2, 32(R12), Y7, Y15
	VMOVMSKPS Y15, BX
	SHLL $8, BX
	ORL BX, AX
	MOVL AX, 12(R13)
	// row 4: out = acc + (na+nb); mask: out ≤ thr[row]; cmask: out ≤ cthr[column]
	VBROADCASTSS 16(R9), Y14
	VADDPS Y12, Y14, Y15
	VADDPS Y15, Y8, Y8
	VADDPS Y13, Y14, Y15
	VADDPS Y15, Y9, Y9
	VMOVUPS Y8, 256(DX)
	VMOVUPS Y9, 288(DX)
	VBROADCASTSS 16(R10), Y14
	VCMPPS $2, Y14, Y8, Y15
	VMOVMSKPS Y15, AX
	VCMPPS $2, Y14, Y9, Y15
	VMOVMSKPS Y15, BX
	SHLL $8, BX
	ORL BX, AX
	MOVL AX, 16(R11)
	VCMPPS $2, (R12), Y8, Y15
	VMOVMSKPS Y15, AX
	VCMPPS $2, 32(R12), Y9, Y15
	VMOVMSKPS Y15, BX
	SHLL $8, BX
	ORL BX, AX
	MOVL AX, 16(R13)
	// row 5: out = acc + (na+nb); mask: out ≤ thr[row]; cmask: out ≤ cthr[column]
	VBROADCASTSS 20(R9), Y14
	VADDPS Y12, Y14, Y15
	VADDPS Y15, Y10, Y10
	VADDPS Y13, Y14, Y15
	VADDPS Y15, Y11, Y11
	VMOVUPS Y10, 320(DX)
	VMOVUPS Y11, 352(DX)
	VBROADCASTSS 20(R10), Y14
	VCMPPS $2, Y14, Y10, Y15
	VMOVMSKPS Y15, AX
	VCMPPS $2, Y14, Y11, Y15
	VMOVMSKPS Y15, BX
	SHLL $8, BX
	ORL BX, AX
	MOVL AX, 20(R11)
	VCMPPS $2, (R12), Y10, Y15
	VMOVMSKPS Y15, AX
	VCMPPS $2, 32(R12), Y11, Y15
	VMOVMSKPS Y15, BX
	SHLL $8, BX
	ORL BX, AX
	MOVL AX, 20(R13)
	VZEROUPPER
	RET

// Barnes-Hut source kernels: one float32 lane per point of a group of
// bhLeafSize = 8 points, one source (an accepted cell or a point) per step.

// bhSelfMask<>+4(7-s) is the 8-lane mask with only lane s set: it clears the
// self-interaction of source s with lane s.
DATA bhSelfMask<>+0(SB)/4, $0
DATA bhSelfMask<>+4(SB)/4, $0
DATA bhSelfMask<>+8(SB)/4, $0
DATA bhSelfMask<>+12(SB)/4, $0
DATA bhSelfMask<>+16(SB)/4, $0
DATA bhSelfMask<>+20(SB)/4, $0
DATA bhSelfMask<>+24(SB)/4, $0
DATA bhSelfMask<>+28(SB)/4, $0xffffffff
DATA bhSelfMask<>+32(SB)/4, $0
DATA bhSelfMask<>+36(SB)/4, $0
DATA bhSelfMask<>+40(SB)/4, $0
DATA bhSelfMask<>+44(SB)/4, $0
DATA bhSelfMask<>+48(SB)/4, $0
DATA bhSelfMask<>+52(SB)/4, $0
DATA bhSelfMask<>+56(SB)/4, $0
DATA bhSelfMask<>+60(SB)/4, $0
GLOBL bhSelfMask<>(SB), RODATA|NOPTR, $64

// BH2W computes, for the 2-D source at SI, e = g − (x, y) in Y6, Y7 and
// w = 1/(1 + |e|²) in Y9 (VRCPPS, ~12 bits, then one Newton step
// r += r·(1 − d·r) to ~22 bits). Needs gx, gy in Y0, Y1 and 1.0 in Y2;
// clobbers Y8, Y10. VDIVPS measured the same per source on the AMD EPYC
// development machine (1.6–1.9 ns in 2-D, 1.9–2.2 in 3-D, BenchmarkBHSources)
// but has a far lower throughput on older cores (one per 14 cycles on
// Haswell), so the reciprocal estimate is the safer choice.
#define BH2W \
	VBROADCASTSS 0(SI), Y6; \
	VBROADCASTSS 4(SI), Y7; \
	VSUBPS       Y6, Y0, Y6; \
	VSUBPS       Y7, Y1, Y7; \
	VMULPS       Y6, Y6, Y8; \
	VFMADD231PS  Y7, Y7, Y8; \
	VADDPS       Y2, Y8, Y8; \
	VRCPPS       Y8, Y9; \
	VMOVAPS      Y2, Y10; \
	VFNMADD231PS Y9, Y8, Y10; \
	VFMADD231PS  Y10, Y9, Y9

// BH2ACC adds cnt·w to Y3 and cnt·w²·e to Y4, Y5 (cnt at 8(SI)); clobbers
// Y11.
#define BH2ACC \
	VBROADCASTSS 8(SI), Y11; \
	VMULPS       Y11, Y9, Y11; \
	VADDPS       Y11, Y3, Y3; \
	VMULPS       Y11, Y9, Y11; \
	VFMADD231PS  Y11, Y6, Y4; \
	VFMADD231PS  Y11, Y7, Y5

// BHFLUSH adds the float32 lanes of Y to the 8 float64 at off(DX);
// clobbers Y12, Y13.
#define BHFLUSH(Y, X, off) \
	VCVTPS2PD    X, Y12; \
	VEXTRACTF128 $1, Y, X13; \
	VCVTPS2PD    X13, Y13; \
	VADDPD       off(DX), Y12, Y12; \
	VADDPD       off+32(DX), Y13, Y13; \
	VMOVUPD      Y12, off(DX); \
	VMOVUPD      Y13, off+32(DX)

// func bhSources2AVX2(grp *bhLaneXYZ, src *float32, n, nself int, acc *bhAcc)
//
// The sources are summed in float32 in Y3–Y5 over chunks of 64 (bhChunk)
// and each chunk is added to acc in float64. 0 ≤ nself ≤ 8, nself ≤ n.
TEXT ·bhSources2AVX2(SB), NOSPLIT, $0-40
	MOVQ    grp+0(FP), AX
	MOVQ    src+8(FP), SI
	MOVQ    n+16(FP), CX
	MOVQ    nself+24(FP), BX
	MOVQ    acc+32(FP), DX
	VMOVUPS 0(AX), Y0
	VMOVUPS 32(AX), Y1
	MOVL    $0x3f800000, R10
	VMOVD   R10, X2
	VBROADCASTSS X2, Y2
	LEAQ    bhSelfMask<>+28(SB), R11
	XORQ    R8, R8

b2chunk:
	CMPQ    R8, CX
	JGE     b2done
	VXORPS  Y3, Y3, Y3
	VXORPS  Y4, Y4, Y4
	VXORPS  Y5, Y5, Y5
	LEAQ    64(R8), R9
	CMPQ    R9, CX
	CMOVQGT CX, R9

b2self:
	CMPQ    R8, BX
	JGE     b2loop
	BH2W
	VMOVUPS (R11), Y12
	VANDNPS Y9, Y12, Y9
	BH2ACC
	SUBQ    $4, R11
	INCQ    R8
	ADDQ    $12, SI
	JMP     b2self

b2loop:
	CMPQ    R8, R9
	JGE     b2flush
	BH2W
	BH2ACC
	INCQ    R8
	ADDQ    $12, SI
	JMP     b2loop

b2flush:
	BHFLUSH(Y3, X3, 0)
	BHFLUSH(Y4, X4, 64)
	BHFLUSH(Y5, X5, 128)
	JMP     b2chunk

b2done:
	VZEROUPPER
	RET

// BH3W is BH2W in 3-D: e in Y8–Y10, w in Y12 from the source at SI; needs
// gx, gy, gz in Y0–Y2 and 1.0 in Y3; clobbers Y11, Y13.
#define BH3W \
	VBROADCASTSS 0(SI), Y8; \
	VBROADCASTSS 4(SI), Y9; \
	VBROADCASTSS 8(SI), Y10; \
	VSUBPS       Y8, Y0, Y8; \
	VSUBPS       Y9, Y1, Y9; \
	VSUBPS       Y10, Y2, Y10; \
	VMULPS       Y8, Y8, Y11; \
	VFMADD231PS  Y9, Y9, Y11; \
	VFMADD231PS  Y10, Y10, Y11; \
	VADDPS       Y3, Y11, Y11; \
	VRCPPS       Y11, Y12; \
	VMOVAPS      Y3, Y13; \
	VFNMADD231PS Y12, Y11, Y13; \
	VFMADD231PS  Y13, Y12, Y12

// BH3ACC adds cnt·w to Y4 and cnt·w²·e to Y5–Y7 (cnt at 12(SI)); clobbers
// Y13.
#define BH3ACC \
	VBROADCASTSS 12(SI), Y13; \
	VMULPS       Y13, Y12, Y13; \
	VADDPS       Y13, Y4, Y4; \
	VMULPS       Y13, Y12, Y13; \
	VFMADD231PS  Y13, Y8, Y5; \
	VFMADD231PS  Y13, Y9, Y6; \
	VFMADD231PS  Y13, Y10, Y7

// func bhSources3AVX2(grp *bhLaneXYZ, src *float32, n, nself int, acc *bhAcc)
//
// bhSources2AVX2 in 3-D: sources (x, y, z, cnt), sums in Y4–Y7.
TEXT ·bhSources3AVX2(SB), NOSPLIT, $0-40
	MOVQ    grp+0(FP), AX
	MOVQ    src+8(FP), SI
	MOVQ    n+16(FP), CX
	MOVQ    nself+24(FP), BX
	MOVQ    acc+32(FP), DX
	VMOVUPS 0(AX), Y0
	VMOVUPS 32(AX), Y1
	VMOVUPS 64(AX), Y2
	MOVL    $0x3f800000, R10
	VMOVD   R10, X3
	VBROADCASTSS X3, Y3
	LEAQ    bhSelfMask<>+28(SB), R11
	XORQ    R8, R8

b3chunk:
	CMPQ    R8, CX
	JGE     b3done
	VXORPS  Y4, Y4, Y4
	VXORPS  Y5, Y5, Y5
	VXORPS  Y6, Y6, Y6
	VXORPS  Y7, Y7, Y7
	LEAQ    64(R8), R9
	CMPQ    R9, CX
	CMOVQGT CX, R9

b3self:
	CMPQ    R8, BX
	JGE     b3loop
	BH3W
	VMOVUPS (R11), Y14
	VANDNPS Y12, Y14, Y12
	BH3ACC
	SUBQ    $4, R11
	INCQ    R8
	ADDQ    $16, SI
	JMP     b3self

b3loop:
	CMPQ    R8, R9
	JGE     b3flush
	BH3W
	BH3ACC
	INCQ    R8
	ADDQ    $16, SI
	JMP     b3loop

b3flush:
	BHFLUSH(Y4, X4, 0)
	BHFLUSH(Y5, X5, 64)
	BHFLUSH(Y6, X6, 128)
	BHFLUSH(Y7, X7, 192)
	JMP     b3chunk

b3done:
	VZEROUPPER
	RET

// func attract2AVX2(y *float32, col *int32, val *float32, n int, yi *[2]float32, out *[2]float64)
//
// The attraction of one 2-D point over n (a multiple of 8) entries of its
// row of P: out = Σ val[e]·(yi − y_j)/(1+‖yi − y_j‖²), j = col[e]. The
// neighbours' coordinates are gathered eight at a time (VGATHERDPS); each
// term is computed in float32 as attraction2Go does, eight lanes sum in
// float32 (a lane gets an eighth of one row) and the lanes are added in
// float64. 1/(1+d²) is VRCPPS refined by one Newton step (relative error
// ~1e-7, as in bhSources2AVX2): VDIVPS behind the gathers made the loop
// twice as slow. Every col[e] must index a point of y.
TEXT ·attract2AVX2(SB), NOSPLIT, $0-48
	MOVQ         y+0(FP), AX
	MOVQ         col+8(FP), SI
	MOVQ         val+16(FP), DI
	MOVQ         n+24(FP), CX
	MOVQ         yi+32(FP), BX
	MOVQ         out+40(FP), DX
	VBROADCASTSS 0(BX), Y0
	VBROADCASTSS 4(BX), Y1
	MOVL         $0x3f800000, R10
	VMOVD        R10, X2
	VBROADCASTSS X2, Y2
	VXORPS       Y3, Y3, Y3
	VXORPS       Y4, Y4, Y4
	XORQ         R8, R8

a2loop:
	CMPQ         R8, CX
	JGE          a2done
	VMOVDQU      (SI)(R8*4), Y8
	VPSLLD       $1, Y8, Y8
	VPCMPEQD     Y12, Y12, Y12
	VGATHERDPS   Y12, (AX)(Y8*4), Y9
	VPCMPEQD     Y13, Y13, Y13
	VGATHERDPS   Y13, 4(AX)(Y8*4), Y10
	VSUBPS       Y9, Y0, Y9
	VSUBPS       Y10, Y1, Y10
	VMULPS       Y9, Y9, Y11
	VMULPS       Y10, Y10, Y14
	VADDPS       Y14, Y11, Y11
	VADDPS       Y2, Y11, Y11
	VRCPPS       Y11, Y12
	VMOVAPS      Y2, Y13
	VFNMADD231PS Y12, Y11, Y13
	VFMADD231PS  Y13, Y12, Y12
	VMULPS       (DI)(R8*4), Y12, Y15
	VFMADD231PS  Y15, Y9, Y3
	VFMADD231PS  Y15, Y10, Y4
	ADDQ         $8, R8
	JMP          a2loop

a2done:
	VEXTRACTF128 $1, Y3, X5
	VCVTPS2PD    X3, Y3
	VCVTPS2PD    X5, Y5
	VADDPD       Y5, Y3, Y3
	VEXTRACTF128 $1, Y4, X5
	VCVTPS2PD    X4, Y4
	VCVTPS2PD    X5, Y5
	VADDPD       Y5, Y4, Y4
	VHADDPD      Y4, Y3, Y3
	VEXTRACTF128 $1, Y3, X5
	VADDPD       X5, X3, X3
	VMOVUPD      X3, (DX)
	VZEROUPPER
	RET

// Reports whether q is among the n (a positive multiple of 16) int32 at
// list, sixteen a step: two compares of eight against the broadcast q.

// func containsAVX2(list *int32, n int, q int32) bool
TEXT ·containsAVX2(SB), NOSPLIT, $0-25
	MOVQ list+0(FP), SI
	MOVQ n+8(FP), CX
	MOVL q+16(FP), AX
	VMOVD AX, X0
	VPBROADCASTD X0, Y0
containsloop:
	VPCMPEQD (SI), Y0, Y1
	VPCMPEQD 32(SI), Y0, Y2
	VPOR Y1, Y2, Y1
	VPTEST Y1, Y1
	JNZ containsfound
	ADDQ $64, SI
	SUBQ $16, CX
	JNZ containsloop
	VZEROUPPER
	MOVB $0, ret+24(FP)
	RET
containsfound:
	VZEROUPPER
	MOVB $1, ret+24(FP)
	RET

// Hints the cache lines of rows idx[0..n) of a table of stride-byte rows at
// base into L2 (PREFETCHT1), lines per row from each row's first byte. A
// prefetch never faults, so lines may run past the table's end.

// func prefetchRowsAsm(base unsafe.Pointer, idx *int32, n, stride, lines int)
TEXT ·prefetchRowsAsm(SB), NOSPLIT, $0-40
	MOVQ base+0(FP), SI
	MOVQ idx+8(FP), DI
	MOVQ n+16(FP), CX
	MOVQ stride+24(FP), DX
	MOVQ lines+32(FP), R8
	TESTQ CX, CX
	JLE pfdone
pfrow:
	MOVLQSX (DI), AX
	IMULQ DX, AX
	ADDQ SI, AX
	MOVQ R8, R9
pfline:
	PREFETCHT1 (AX)
	ADDQ $64, AX
	DECQ R9
	JNZ pfline
	ADDQ $4, DI
	DECQ CX
	JNZ pfrow
pfdone:
	RET
