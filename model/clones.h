/* clones.h: CRISP_CLONES compiles a hot loop for AVX-512, AVX2 and baseline x86-64,
 * the clone picked at load time (GCC's target_clones; off under clang and the
 * sanitizers). Only for loops whose result cannot depend on the clone: integer
 * arithmetic, or float arithmetic in a file built with -ffp-contract=off (no FMA
 * contraction) and elementwise or with fixed partial sums. */
#ifndef CRISP_MODEL_CLONES_H
#define CRISP_MODEL_CLONES_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__SANITIZE_ADDRESS__)
#define CRISP_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CRISP_CLONES
#endif

#endif
