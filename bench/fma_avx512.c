/* See fma_avx512.h. Only this function is compiled for AVX-512 (target attribute),
 * so the rest of the benchmark runs on any x86-64 and the caller checks the CPU first.
 * 24 accumulators: an FMA has 4 cycles' latency and two pipes, so at least 8
 * independent chains are needed to keep both busy; 24 leaves room and still fits the
 * 32 zmm registers. acc = acc * a + b with |a| < 1 converges to b / (1 - a): no
 * overflow and no denormals, whatever iters is. */
#include "fma_avx512.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

bool fma_avx512_available(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f");
}

enum { NACC = 24 };

__attribute__((target("avx512f"))) float fma_avx512_run(long iters) {
  __m512 acc[NACC];
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
#pragma GCC unroll 24
  for (int k = 0; k < NACC; k++)
    acc[k] = _mm512_set1_ps((float)k);
  for (long i = 0; i < iters; i++) {
#pragma GCC unroll 24
    for (int k = 0; k < NACC; k++)
      acc[k] = _mm512_fmadd_ps(acc[k], a, b);
  }
  __m512 s = acc[0];
#pragma GCC unroll 24
  for (int k = 1; k < NACC; k++)
    s = _mm512_add_ps(s, acc[k]);
  return _mm512_reduce_add_ps(s);
}

#else

bool fma_avx512_available(void) { return false; }
float fma_avx512_run(long iters) {
  (void)iters;
  return 0;
}

#endif
