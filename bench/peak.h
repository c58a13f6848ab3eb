/* This machine's fp32 FMA peak, measured rather than read from /proc (a VM's
 * "model name" and cpu MHz are nominal): the core clock from a chain of dependent
 * 1-cycle integer adds timed on every thread at once, peak = threads x clock x 64
 * (two 512-bit FMA pipes x 16 lanes x 2 FLOPs), and as a cross-check the rate a tight
 * AVX-512 FMA loop reaches on the same threads. */
#ifndef CRISP_BENCH_PEAK_H
#define CRISP_BENCH_PEAK_H

#include <stdbool.h>

typedef struct MachinePeak {
  int threads;
  bool clock_ok;               /* false: no add chain for this architecture */
  double clock_ghz;            /* mean over the threads of each one's best interval */
  double clock_min_ghz, clock_max_ghz;
  double peak_gflops;          /* threads * clock * 64 */
  bool fma_ok;                 /* false: no AVX-512 here */
  double fma_gflops;           /* the AVX-512 loop, summed over the threads */
} MachinePeak;

enum { PEAK_FLOPS_PER_CYCLE = 64 };

/* Takes about half a second per measure; best of many short intervals per thread,
 * because on a shared machine being descheduled only ever makes an interval slower. */
void machine_peak_measure(MachinePeak *p, int threads);

#endif
