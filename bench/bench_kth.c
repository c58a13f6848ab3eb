/* Benchmark: the exact k-th largest search (templates/attention_kth.c) alone, in
 * tests/kth_kernel.c's kernel on the host JIT, one thread: rows of bell-shaped
 * scores (sums of three uniforms), the rows' search time over the same kernel's
 * time with k = m (no search: the copy into shared memory and the row maxima).
 * Process CPU time, median of reps. Attention's forward times the search among
 * much else (bench_backward); this isolates it for before/after comparisons.
 *
 *   bench_kth [--m 128,512] [--s 0.8] [--group 4] [--reps 7]
 *
 * --m 1..512, --s [0, 0.999], --group 1 or 4, --reps 1..64; a bad value or an unknown
 * flag exits 2 before anything runs (bench_args.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_args.h"
#include "jit.h"
#include "kth_kernel.h"
#include "passes.h"

enum { ROWS = 8192 };

static double cpu_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double uni(uint64_t *s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(*s >> 11) * (1.0 / 9007199254740992.0);
}

/* Median seconds of one launch over all rows, every row with keep k (m: no search). */
static double time_rows(CpuKernelFn fn, Kernel *kern, float *x, int32_t *meta, int m, int k,
                        int reps) {
  static float tau[ROWS];
  static int32_t cnt[ROWS];
  int rows = ROWS;
  for (int r = 0; r < ROWS; r++)
    meta[2 * r] = m, meta[2 * r + 1] = k;
  void *args[] = {&x, &meta, &(float *){tau}, &(int32_t *){cnt}, &rows};
  int32_t grid[3];
  ir_grid(kern, args, grid);
  double t[64];
  for (int i = 0; i < reps; i++) {
    double t0 = cpu_now();
    fn(args, grid, 0, (int64_t)grid[0] * grid[1] * grid[2]);
    t[i] = cpu_now() - t0;
  }
  qsort(t, (size_t)reps, sizeof t[0], cmp_double);
  return t[reps / 2];
}

static const char USAGE[] =
    "usage: bench_kth [--m 128,512] [--s 0.8] [--group 1|4] [--reps N]\n"
    "  --m LIST    up to 8 row lengths, 1..512 (default 128,512)\n"
    "  --s LIST    up to 8 sparsities in [0, 0.999] (default 0.8)\n"
    "  --group G   rows per warp, 1 or 4 (default 4)\n"
    "  --reps N    1..64 (default 7)\n";

int main(int argc, char **argv) {
  int ms[8] = {128, 512};
  double ss[8] = {0.8};
  int nm = 2, ns = 1, group = KTH_GROUP_MAX, reps = 7;
  BenchArgs args = bench_args(argc, argv, "bench_kth", USAGE);
  while (bench_next(&args))
    if (!bench_int_list(&args, "--m", 1, KTH_COLS, ms, 8, &nm) &&
        !bench_list(&args, "--s", 0, 0.999, ss, 8, &ns) &&
        !bench_int(&args, "--group", 1, KTH_GROUP_MAX, &group) &&
        !bench_int(&args, "--reps", 1, 64, &reps))
      bench_unknown(&args);
  if (group != 1 && group != KTH_GROUP_MAX)
    bench_fail(&args, "--group", "expected 1 or %d, got %d", KTH_GROUP_MAX, group);
  char err[512];
  Module mod = {0};
  Kernel *kern = mod.kernels[mod.n++] = kth_kernel("kth", group);
  if (ir_run_passes(kern, MAP_CPU, err, sizeof err)) {
    fprintf(stderr, "bench_kth: %s\n", err);
    return 1;
  }
  Jit *j = jit_compile(&mod, err, sizeof err);
  CpuKernelFn fn = j ? jit_lookup(j, "kth") : NULL;
  if (!fn) {
    fprintf(stderr, "bench_kth: jit: %s\n", err);
    return 1;
  }
  float *x = malloc((size_t)ROWS * KTH_COLS * sizeof(float));
  int32_t *meta = malloc(2 * ROWS * sizeof(int32_t));
  uint64_t seed = 7;
  for (size_t i = 0; i < (size_t)ROWS * KTH_COLS; i++)
    x[i] = (float)(uni(&seed) + uni(&seed) + uni(&seed) - 1.5);
  printf("k-th largest search, %d rows, %s, 1 thread, median of %d (ns per row)\n", ROWS,
         group == 1 ? "one row per warp" : "four rows interleaved", reps);
  printf("    m     s  no search  search  search only\n");
  for (int a = 0; a < nm; a++) {
    int m = ms[a];
    double base = time_rows(fn, kern, x, meta, m, m, reps);
    for (int b = 0; b < ns; b++) {
      int k = (int)ceil((1 - ss[b]) * m - 1e-6);
      k = k < 1 ? 1 : k;
      double t = time_rows(fn, kern, x, meta, m, k, reps);
      printf("%5d  %4.2f  %9.1f  %6.1f  %11.1f\n", m, ss[b], base / ROWS * 1e9, t / ROWS * 1e9,
             (t - base) / ROWS * 1e9);
    }
  }
  jit_free(j);
  ir_module_free(&mod);
  free(x), free(meta);
  return 0;
}
