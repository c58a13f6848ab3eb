/* Benchmark: the JIT-compiled crisp attention forward on the CPU against the
 * straightforward C version (naive_attention.c, -O3 -march=native), both in this
 * run, on the same threads, over the same inputs; the median of several
 * repetitions; ratios and GFLOP/s (4 n^2 d FLOPs per head, dense count).
 * Then crispc spec -> PTX end to end, median wall time of several runs.
 *
 *   bench_attention [--quick] [--reps N] [--crispc PATH] [--warp]
 * --warp: the warp-per-row schedule (tile 16 x 1) instead of the CPU tile schedule.
 * --reps is 1..31; a flag it does not know, or a bad value, exits 2 (bench_args.h). */
#include <math.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../tests/attn_harness.h"
#include "bench_args.h"
#include "naive_attention.h"

extern char **environ;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ---- running either implementation on every core ---- */

typedef struct {
  int which;          /* 0 = crisp JIT, 1 = naive C */
  CpuKernelFn fn;
  Kernel *k;
  AttnArgs *a;
  AttnCase *c;
  double sparsity;
  int topk;
  int part, parts;
} Job;

static void *job_run(void *p) {
  Job *j = p;
  if (j->which == 0) {
    int32_t grid[3];
    ir_grid(j->k, j->a->args, grid);
    int64_t total = (int64_t)grid[0] * grid[1] * grid[2];
    j->fn(j->a->args, grid, total * j->part / j->parts, total * (j->part + 1) / j->parts);
  } else {
    const AttnLayout *l = &j->c->l;
    naive_attention_fwd(j->c->q, j->c->k, j->c->v, j->c->o, j->c->lengths, j->c->kept, l->B,
                        l->H, l->N, j->c->spec.head_dim, l->qkv_sb, l->qkv_sn, l->qkv_sh,
                        j->sparsity, j->topk, l->B * j->part / j->parts,
                        l->B * (j->part + 1) / j->parts);
  }
  return NULL;
}

static double timed(Job proto, int threads) {
  pthread_t tid[64];
  Job jobs[64];
  double t0 = now();
  for (int i = 0; i < threads; i++) {
    jobs[i] = proto;
    jobs[i].part = i;
    jobs[i].parts = threads;
    pthread_create(&tid[i], NULL, job_run, &jobs[i]);
  }
  for (int i = 0; i < threads; i++)
    pthread_join(tid[i], NULL);
  return now() - t0;
}

static void bench_shape(CpuKernelFn fn, Kernel *k, const Spec *s, int n, double sp, int reps,
                        int threads, uint64_t *rng) {
  AttnCase c;
  attn_case_init(&c, s, 16, 12, n, false);
  attn_case_fill(&c, rng, false);
  AttnArgs a;
  attn_args(&a, &c, sp);
  Job crisp = {0, fn, k, &a, &c, sp, sp > 0, 0, 1};
  Job naive = {1, fn, k, &a, &c, sp, sp > 0, 0, 1};
  double tc[32], tn[32];
  timed(crisp, threads);   /* warm-up */
  timed(naive, threads);
  for (int r = 0; r < reps; r++) {   /* interleaved, so drift hits both alike */
    tc[r] = timed(crisp, threads);
    tn[r] = timed(naive, threads);
  }
  double mc = median(tc, reps), mn = median(tn, reps);
  double flops = 16.0 * 12 * 4 * (double)n * n * s->head_dim;
  printf("%5d  %4.2f  %10.3f  %10.3f  %8.2f  %8.2f  %6.2fx\n", n, sp, mc * 1e3, mn * 1e3,
         flops / mc * 1e-9, flops / mn * 1e-9, mn / mc);
  attn_case_free(&c);
}

static double time_crispc(const char *crispc, int runs) {
  double t[32];
  char *argv[] = {(char *)crispc, "examples/crisp80.spec", "-o", "/tmp/crisp_bench.ptx", NULL};
  for (int r = 0; r < runs; r++) {
    pid_t pid;
    double t0 = now();
    if (posix_spawn(&pid, crispc, NULL, NULL, argv, environ))
      return -1;
    int status;
    waitpid(pid, &status, 0);
    t[r] = now() - t0;
    if (!WIFEXITED(status) || WEXITSTATUS(status))
      return -1;
  }
  unlink("/tmp/crisp_bench.ptx");
  unlink("/tmp/crisp_bench.manifest.json");
  return median(t, runs);
}

static const char USAGE[] =
    "usage: bench_attention [--quick] [--reps N] [--crispc PATH] [--warp]\n"
    "  --quick        n = 64, 128 only, 3 repetitions\n"
    "  --reps N       repetitions, 1..31 (default 5)\n"
    "  --crispc PATH  also time crispc examples/crisp80.spec -> PTX\n"
    "  --warp         the warp-per-row schedule instead of the CPU tile schedule\n";

int main(int argc, char **argv) {
  int reps = 5, quick = 0, warp = 0;
  const char *crispc = NULL;
  BenchArgs args = bench_args(argc, argv, "bench_attention", USAGE);
  while (bench_next(&args)) {
    if (bench_flag(&args, "--quick"))
      quick = 1, reps = 3;
    else if (bench_flag(&args, "--warp"))
      warp = 1;
    else if (!bench_int(&args, "--reps", 1, 31, &reps) && !bench_str(&args, "--crispc", &crispc))
      bench_unknown(&args);
  }
  int threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
  threads = threads < 1 ? 1 : threads > 64 ? 64 : threads;
  uint64_t rng = harness_seed();

  Spec s;
  spec_defaults(&s);
  snprintf(s.name, sizeof s.name, "bench");
  TileConfig t = tile_resolve(&s, TUNE_CPU);
  if (warp)
    t = (TileConfig){16, 1, SCHED_WARP};
  Module m = {0};
  char err[1024];
  double t0 = now();
  Jit *jit = NULL;
  if (harness_compile(&m, &s, &t, MAP_CPU, err, sizeof err) ||
      !(jit = jit_compile(&m, err, sizeof err))) {
    fprintf(stderr, "bench: %s\n", err);
    return 1;
  }
  CpuKernelFn fn = jit_lookup(jit, m.kernels[0]->name);
  printf("JIT compile (template -> IR -> LLVM O3 -> machine code): %.1f ms\n", (now() - t0) * 1e3);
  printf("attention forward, B=16 H=12 D=64, %d threads, median of %d (ms; GFLOP/s counts 4n^2d "
         "per head)\n", threads, reps);
  printf("    n     s    crisp ms    naive ms  crisp GF  naive GF  speedup\n");
  int ns[] = {64, 128, 512};
  for (int i = 0; i < (quick ? 2 : 3); i++)
    for (int si = 0; si < 2; si++)
      bench_shape(fn, m.kernels[0], &s, ns[i], si ? 0.8 : 0.0, reps, threads, &rng);
  jit_free(jit);
  ir_module_free(&m);

  if (crispc) {
    double tc = time_crispc(crispc, 9);
    if (tc < 0)
      printf("crispc failed\n");
    else
      printf("crispc examples/crisp80.spec -> PTX + manifest, end to end: %.1f ms (median of 9; "
             "target < 100 ms)\n", tc * 1e3);
  }
  return 0;
}
