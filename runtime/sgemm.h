/* sgemm.h: crisp's own single-precision GEMM for the CPU backend.
 *
 * Why: the BLAS a machine has is not always free to use the CPU's widest vectors.
 * OpenBLAS picks its kernels from OPENBLAS_CORETYPE when that is set (this
 * project's machines set it to Haswell: 256-bit FMAs, half of an AVX-512 core's
 * peak), and PyTorch's MKL takes its AVX2 path on AMD CPUs. This GEMM runs 512-bit
 * FMAs wherever the CPU has AVX-512F, whatever the environment says; the backend
 * uses it where the BLAS would not (runtime/cpu.c, choose_gemm), and keeps BLAS
 * where sgemm_supported() is false.
 *
 * The algorithm is the usual packed one (Goto / BLIS): op(B) is packed once per
 * call into panels of SGEMM_NR columns, each worker reads SGEMM_MR-row slices of
 * op(A) in place (row-major A) or packs them (transposed A, short slices) for its
 * block of C, and an 8 x 48 register tile (24 zmm accumulators) runs over the k
 * dimension in slabs of SGEMM_KC. Each element of C is summed in the
 * same order whatever the thread count or block split: results do not depend on
 * the number of threads.
 *
 *   Sgemm *s = sgemm_new(SGEMM_FAST);  (SGEMM_GENERIC: the portable reference tile)
 *   sgemm_run(s, pool, &g, A, B, C);    row-major C = alpha op(A) op(B) + beta C
 *   sgemm_free(s);
 *
 * An Sgemm holds the packing buffers between calls (grown on demand); one call at a
 * time per Sgemm. g's device pointers are ignored: A, B, C are host pointers to the
 * first product of a strided batch. Returns 0, or -1 when out of memory. */
#ifndef CRISP_RT_SGEMM_H
#define CRISP_RT_SGEMM_H

#include <stdbool.h>

#include "backend.h"
#include "pool.h"

enum { SGEMM_MR = 8, SGEMM_NR = 48, SGEMM_KC = 384 };

typedef struct Sgemm Sgemm;

/* Which register tile: the AVX-512 one where the CPU has it (else the generic one),
 * or always the generic one, which gives the same bits on every CPU. */
typedef enum { SGEMM_FAST, SGEMM_GENERIC } SgemmKernel;

/* Whether this CPU runs the kernel (x86-64 with AVX-512F). */
bool sgemm_supported(void);
Sgemm *sgemm_new(SgemmKernel which);
void sgemm_free(Sgemm *s);
int sgemm_run(Sgemm *s, RtPool *pool, const RtGemm *g, const float *A, const float *B, float *C);

#endif
