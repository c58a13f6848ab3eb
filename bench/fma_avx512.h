/* A tight AVX-512 fp32 FMA loop: the rate this core actually reaches, to cross-check
 * the peak computed from the measured clock (peak.c). */
#ifndef CRISP_BENCH_FMA_AVX512_H
#define CRISP_BENCH_FMA_AVX512_H

#include <stdbool.h>

/* Whether this CPU (and build) can run the loop. */
bool fma_avx512_available(void);
/* iters x 24 independent 16-lane FMAs; returns a value that depends on every
 * accumulator, so the work cannot be dropped. FLOPs = iters * FMA_AVX512_FLOPS_PER_ITER. */
float fma_avx512_run(long iters);

enum { FMA_AVX512_FLOPS_PER_ITER = 24 * 16 * 2 };

#endif
