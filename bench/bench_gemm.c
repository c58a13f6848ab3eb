/* Benchmark: crisp's sgemm (runtime/sgemm.c) against the BLAS the backend would
 * otherwise load, in one process, on the same pool of threads, calls interleaved,
 * at the GEMM shapes of one training step of the model (16 x 64 tokens): for a
 * linear layer of in -> out features, the forward Y = X W^T (1024 x out x in),
 * dX = dY W (1024 x in x out) and dW = dY^T X (out x in x 1024). Prints per shape
 * the median milliseconds of each, the ratio BLAS / crisp, GFLOP/s, and the share
 * of this machine's measured fp32 FMA peak (bench/peak.h); before timing, checks
 * that both give C within 1e-5 of C's rms of each other on every shape.
 *
 *     bench_gemm [--shape minilm|distilbert|all] [--threads T] [--reps K]
 *
 * --threads 0..1024 (0: one per core), --reps 1..101; a bad value or an unknown flag
 * exits 2 before anything runs (bench_args.h).
 *
 * The BLAS side runs as the environment sets it up: OPENBLAS_CORETYPE, when set,
 * chooses OpenBLAS's kernels (bench/bench_gemm.sh runs both settings). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../runtime/backend.h"
#include "bench_args.h"
#include "peak.h"

enum { MAXREPS = 101 };

typedef struct {
  const char *what;
  RtTrans ta, tb;
  int m, n, k;
} Shape;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static Backend *open_cpu(const char *gemm, int threads) {
  char err[512];
  setenv("CRISP_GEMM", gemm, 1);
  Backend *b = backend_open("cpu", &(BackendOptions){.threads = threads}, err, sizeof err);
  unsetenv("CRISP_GEMM");
  if (!b)
    fprintf(stderr, "bench_gemm: %s\n", err);
  return b;
}

/* The three GEMMs of a linear layer in -> out over R rows. */
static int layer_shapes(Shape *s, const char *name, int R, int in, int out) {
  static char names[64][48];
  static int used;
  const char *fmt[3] = {"%s fwd", "%s dX", "%s dW"};
  for (int i = 0; i < 3; i++)
    snprintf(names[used + i], sizeof names[0], fmt[i], name);
  s[0] = (Shape){names[used], RT_NOTRANS, RT_TRANS, R, out, in};
  s[1] = (Shape){names[used + 1], RT_NOTRANS, RT_NOTRANS, R, in, out};
  s[2] = (Shape){names[used + 2], RT_TRANS, RT_NOTRANS, out, in, R};
  used += 3;
  return 3;
}

static float *rand_buf(size_t n, unsigned seed) {
  float *p = malloc(n * sizeof *p);
  if (!p)
    abort();
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1664525u + 1013904223u;
    p[i] = (float)(seed >> 8) / 16777216.0f - 0.5f;
  }
  return p;
}

static RtGemm gemm_of(const Shape *s, float *A, float *B, float *C) {
  int lda = s->ta ? s->m : s->k, ldb = s->tb ? s->k : s->n;
  return (RtGemm){s->ta, s->tb, s->m, s->n, s->k, 1.0f, 0.0f, (DevPtr)(uintptr_t)A,
                  (DevPtr)(uintptr_t)B, (DevPtr)(uintptr_t)C, lda, ldb, s->n, 1, 0, 0, 0};
}

static double time_one(Backend *b, const RtGemm *g) {
  double t = now();
  if (rt_gemm(b, g)) {
    fprintf(stderr, "bench_gemm: %s\n", b->err);
    exit(1);
  }
  return now() - t;
}

/* Both backends on one shape: check, then reps interleaved calls each. */
static void run_shape(Backend *own, Backend *blas, const Shape *s, int reps, double peak) {
  size_t na = (size_t)s->m * s->k, nb = (size_t)s->k * s->n, nc = (size_t)s->m * s->n;
  float *A = rand_buf(na, 1), *B = rand_buf(nb, 2), *C1 = calloc(nc, 4), *C2 = calloc(nc, 4);
  RtGemm g1 = gemm_of(s, A, B, C1), g2 = gemm_of(s, A, B, C2);
  time_one(own, &g1);
  time_one(blas, &g2);
  double worst = 0, sq = 0;
  for (size_t i = 0; i < nc; i++) {
    double d = fabs((double)C1[i] - C2[i]);
    worst = d > worst ? d : worst;
    sq += (double)C2[i] * C2[i];
  }
  worst /= sqrt(sq / (double)nc);   /* against C's rms: sums of k products */
  if (!(worst < 1e-5)) {
    printf("MISMATCH %s: crisp and BLAS differ by %.3g of C's rms\n", s->what, worst);
    exit(1);
  }
  double t1[MAXREPS], t2[MAXREPS];
  for (int r = 0; r < reps; r++) {
    t1[r] = time_one(own, &g1);
    t2[r] = time_one(blas, &g2);
  }
  qsort(t1, (size_t)reps, sizeof *t1, cmp_double);
  qsort(t2, (size_t)reps, sizeof *t2, cmp_double);
  double m1 = t1[reps / 2], m2 = t2[reps / 2], flop = 2.0 * s->m * s->n * s->k;
  printf("| %-16s | %c%c | %4d x %4d x %4d | %7.3f | %7.3f | %5.2fx | %6.1f | %6.1f | %5.1f |\n",
         s->what, s->ta ? 'T' : 'N', s->tb ? 'T' : 'N', s->m, s->n, s->k, 1e3 * m1, 1e3 * m2,
         m2 / m1, flop / m1 * 1e-9, flop / m2 * 1e-9, 100 * flop / m1 * 1e-9 / peak);
  free(A), free(B), free(C1), free(C2);
}

static const char USAGE[] =
    "usage: bench_gemm [--shape minilm|distilbert|all] [--threads T] [--reps K]\n"
    "  --shape S    the model's GEMM shapes (default all)\n"
    "  --threads T  0..1024 (default 0: one per online core)\n"
    "  --reps K     interleaved calls each, 1..101 (default 21)\n";

int main(int argc, char **argv) {
  static const char *const shapes[] = {"all", "minilm", "distilbert", NULL};
  int shape_k = 0, threads = 0, reps = 21;
  BenchArgs args = bench_args(argc, argv, "bench_gemm", USAGE);
  while (bench_next(&args))
    if (!bench_choice(&args, "--shape", shapes, &shape_k) &&
        !bench_int(&args, "--threads", 0, 1024, &threads) &&
        !bench_int(&args, "--reps", 1, MAXREPS, &reps))
      bench_unknown(&args);
  const char *shape = shapes[shape_k];
  Backend *own = open_cpu("crisp", threads), *blas = open_cpu("blas", threads);
  if (!own || !blas)
    return 1;
  if (strstr(blas->gemm_lib, "built-in")) {
    printf("bench_gemm: no BLAS library found (install libopenblas0): nothing to compare\n");
    return 0;
  }
  MachinePeak pk;
  machine_peak_measure(&pk, own->threads);
  const char *core = getenv("OPENBLAS_CORETYPE");
  printf("threads %d, peak %.1f GFLOP/s (clock %.3f GHz)\ncrisp: %s\nBLAS:  %s "
         "(OPENBLAS_CORETYPE=%s)\nmedian of %d interleaved calls each\n\n",
         own->threads, pk.peak_gflops, pk.clock_ghz, own->gemm_lib, blas->gemm_lib,
         core ? core : "unset", reps);
  printf("| GEMM | op | m x n x k | crisp ms | BLAS ms | BLAS/crisp | crisp GF/s | BLAS GF/s "
         "| crisp %% peak |\n|---|---|---|---|---|---|---|---|---|\n");
  Shape s[32];
  int ns = 0;
  if (strcmp(shape, "distilbert")) {
    ns += layer_shapes(s + ns, "minilm qkv", 1024, 384, 1152);
    ns += layer_shapes(s + ns, "minilm out", 1024, 384, 384);
    ns += layer_shapes(s + ns, "minilm ffn1", 1024, 384, 1536);
    ns += layer_shapes(s + ns, "minilm ffn2", 1024, 1536, 384);
  }
  if (strcmp(shape, "minilm")) {
    ns += layer_shapes(s + ns, "distil qkv", 1024, 768, 2304);
    ns += layer_shapes(s + ns, "distil out", 1024, 768, 768);
    ns += layer_shapes(s + ns, "distil ffn1", 1024, 768, 3072);
    ns += layer_shapes(s + ns, "distil ffn2", 1024, 3072, 768);
  }
  for (int i = 0; i < ns; i++)
    run_shape(own, blas, &s[i], reps, pk.peak_gflops);
  backend_close(own);
  backend_close(blas);
  return 0;
}
