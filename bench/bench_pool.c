/* bench_pool.c: what one launch costs with no work in it, the latency that every
 * kernel launch and GEMM phase on the CPU backend pays.
 *
 *     bench_pool [--threads T] [--runs R] [--rounds K] [--gap-us G] [--spin-us S]
 *
 * Three ways to run T threads over an empty body, interleaved round by round in one
 * process (so all see the same machine): pthread_create + join of T threads per
 * launch (what bench/fwd_bwd.c did before it used the pool), crisp's pool with
 * spinning off (sleep on the condition variable at once: the pool before it spun),
 * and the pool spinning S us (default: the pool's own default). Each round times R
 * launches back to back, with G us of the caller's own busy work between them (0:
 * none; more than the spin budget shows what a spin that times out costs). Prints
 * per way the median over rounds of wall and process-CPU microseconds per launch,
 * the gap's own time taken off. */
#include "../runtime/pool.h"
#include "bench_args.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { MAX_THREADS = 64, MAX_ROUNDS = 101 };

static double clock_us(clockid_t id) {
  struct timespec t;
  clock_gettime(id, &t);
  return t.tv_sec * 1e6 + t.tv_nsec * 1e-3;
}

static void busy_us(double us) {
  double end = clock_us(CLOCK_MONOTONIC) + us;
  while (us > 0 && clock_us(CLOCK_MONOTONIC) < end) {
  }
}

static void empty(void *ctx, int64_t first, int64_t last) {
  (void)ctx, (void)first, (void)last;
}

static void *empty_thread(void *arg) { return arg; }

static void launch_pthreads(int threads) {
  pthread_t tid[MAX_THREADS];
  for (int i = 0; i < threads; i++)
    if (pthread_create(&tid[i], NULL, empty_thread, NULL))
      abort();
  for (int i = 0; i < threads; i++)
    pthread_join(tid[i], NULL);
}

typedef struct {
  const char *name;
  RtPool *pool;   /* NULL: pthread_create + join */
  double wall[MAX_ROUNDS], cpu[MAX_ROUNDS];
} Way;

static void time_round(Way *w, int r, int threads, int runs, double gap) {
  double w0 = clock_us(CLOCK_MONOTONIC), c0 = clock_us(CLOCK_PROCESS_CPUTIME_ID);
  for (int i = 0; i < runs; i++) {
    busy_us(gap);
    if (w->pool)
      rt_pool_run(w->pool, threads, 1, empty, NULL);
    else
      launch_pthreads(threads);
  }
  double w1 = clock_us(CLOCK_MONOTONIC), c1 = clock_us(CLOCK_PROCESS_CPUTIME_ID);
  w->wall[r] = (w1 - w0) / runs - gap;
  w->cpu[r] = (c1 - c0) / runs - gap;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static const char USAGE[] =
    "usage: bench_pool [--threads T] [--runs R] [--rounds K] [--gap-us G] [--spin-us S]\n"
    "  --threads T   2..64 (default 2)\n"
    "  --runs R      launches per round, 1..10000000 (default 2000)\n"
    "  --rounds K    1..101 (default 15)\n"
    "  --gap-us G    the caller's busy work between launches, 0..1000000 us (default 0)\n"
    "  --spin-us S   the spinning pool's budget, 0..1000000 us (default the pool's)\n";

int main(int argc, char **argv) {
  int threads = 2, runs = 2000, rounds = 15, gap = 0, spin = RT_POOL_SPIN_US_DEFAULT;
  BenchArgs args = bench_args(argc, argv, "bench_pool", USAGE);
  while (bench_next(&args))
    if (!bench_int(&args, "--threads", 2, MAX_THREADS, &threads) &&
        !bench_int(&args, "--runs", 1, 10000000, &runs) &&
        !bench_int(&args, "--rounds", 1, MAX_ROUNDS, &rounds) &&
        !bench_int(&args, "--gap-us", 0, 1000000, &gap) &&
        !bench_int(&args, "--spin-us", 0, RT_POOL_SPIN_US_MAX, &spin))
      bench_unknown(&args);
  RtPool *sleeps = rt_pool_new(threads), *spins = rt_pool_new(threads);
  if (!sleeps || !spins) {
    fprintf(stderr, "bench_pool: cannot start %d threads\n", threads);
    return 1;
  }
  rt_pool_set_spin_us(sleeps, 0);
  rt_pool_set_spin_us(spins, spin);
  char spin_name[64];
  snprintf(spin_name, sizeof spin_name, "pool, spin %d us", spin);
  Way ways[] = {{"pthread_create+join", NULL, {0}, {0}},
                {"pool, spin 0 (sleep)", sleeps, {0}, {0}},
                {spin_name, spins, {0}, {0}}};
  enum { NWAYS = sizeof ways / sizeof ways[0] };
  for (int r = 0; r < rounds; r++)
    for (int k = 0; k < NWAYS; k++)
      time_round(&ways[k], r, threads, runs, gap);
  printf("threads %d, %d launches x %d rounds, gap %d us (%d online cores)\n", threads, runs,
         rounds, gap, rt_cpu_count());
  printf("%-22s %14s %14s\n", "way", "wall us/launch", "CPU us/launch");
  for (int k = 0; k < NWAYS; k++)
    printf("%-22s %14.2f %14.2f\n", ways[k].name, median(ways[k].wall, rounds),
           median(ways[k].cpu, rounds));
  rt_pool_free(sleeps);
  rt_pool_free(spins);
  return 0;
}
