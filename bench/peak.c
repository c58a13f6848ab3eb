/* See peak.h. */
#include "peak.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fma_avx512.h"

enum { TRIALS = 100, ADD_ITERS = 1 << 17, ADDS_PER_ITER = 32, FMA_ITERS = 1 << 17,
       MAX_THREADS = 64 };

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

#if defined(__x86_64__) && defined(__GNUC__)
/* 32 dependent register-register adds per iteration: each needs the previous result,
 * so they retire one per cycle whatever the core's width; the loop counter's own add
 * and branch run beside them on other ports. The addend is a register, not an
 * immediate, so the renamer cannot fold the chain away. */
static uint64_t add_chain(long iters) {
  uint64_t x = 0, one = 1;
  for (long i = 0; i < iters; i++)
    __asm__ volatile(".rept 32\n\tadd %1, %0\n\t.endr" : "+r"(x) : "r"(one));
  return x;
}
#define HAVE_ADD_CHAIN 1
#else
static uint64_t add_chain(long iters) { return (uint64_t)iters; }
#define HAVE_ADD_CHAIN 0
#endif

typedef struct {
  pthread_barrier_t *start;
  bool fma;
  double best;     /* GHz (adds per ns) or GFLOP/s */
  float sink;
} Worker;

static void *worker(void *p) {
  Worker *w = p;
  pthread_barrier_wait(w->start);
  w->best = 0;
  for (int t = 0; t < TRIALS; t++) {
    double t0 = now(), work;
    if (w->fma) {
      w->sink += fma_avx512_run(FMA_ITERS);
      work = (double)FMA_ITERS * FMA_AVX512_FLOPS_PER_ITER;
    } else {
      w->sink += (float)add_chain(ADD_ITERS);
      work = (double)ADD_ITERS * ADDS_PER_ITER;
    }
    double dt = now() - t0;
    if (dt > 0 && work / dt * 1e-9 > w->best)
      w->best = work / dt * 1e-9;
  }
  return NULL;
}

/* Every thread runs its trials at once, so the clock is the one the cores hold with
 * all of them busy (turbo drops as more cores wake). */
static void run_all(Worker *w, int threads, bool fma) {
  pthread_t tid[MAX_THREADS];
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, (unsigned)threads);
  for (int i = 0; i < threads; i++) {
    w[i] = (Worker){&start, fma, 0, 0};
    if (pthread_create(&tid[i], NULL, worker, &w[i]))
      abort();
  }
  for (int i = 0; i < threads; i++)
    pthread_join(tid[i], NULL);
  pthread_barrier_destroy(&start);
}

void machine_peak_measure(MachinePeak *p, int threads) {
  memset(p, 0, sizeof *p);
  threads = threads < 1 ? 1 : threads > MAX_THREADS ? MAX_THREADS : threads;
  p->threads = threads;
  Worker w[MAX_THREADS];
  p->clock_ok = HAVE_ADD_CHAIN;
  p->clock_ghz = p->peak_gflops = NAN;
  if (p->clock_ok) {
    run_all(w, threads, false);
    double sum = 0;
    p->clock_min_ghz = INFINITY;
    for (int i = 0; i < threads; i++) {
      sum += w[i].best;
      p->clock_min_ghz = fmin(p->clock_min_ghz, w[i].best);
      p->clock_max_ghz = fmax(p->clock_max_ghz, w[i].best);
    }
    p->clock_ghz = sum / threads;
    p->peak_gflops = threads * p->clock_ghz * PEAK_FLOPS_PER_CYCLE;
  }
  p->fma_ok = fma_avx512_available();
  p->fma_gflops = NAN;
  if (p->fma_ok) {
    run_all(w, threads, true);
    p->fma_gflops = 0;
    for (int i = 0; i < threads; i++)
      p->fma_gflops += w[i].best;
  }
}
