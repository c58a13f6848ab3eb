/* crisp's sgemm (runtime/sgemm.c) against a double-precision reference:
 *   - random shapes around the kernel's tile (8 x 48) and slab (384) edges, every
 *     transpose, padded leading dimensions, alpha and beta (beta = 0 must not read
 *     C: NaN there stays out), a strided batch, k = 0 and empty m or n;
 *   - nothing outside C's m x n written (a guard pattern around it);
 *   - the AVX-512 tile and the generic one give the same bits, and so do 1, 2 and
 *     3 threads (the sum order of each element does not depend on the split);
 *   - the cpu backend picks it as CRISP_GEMM says, and rejects a bad CRISP_GEMM.
 * Prints the seed; CRISP_SEED repeats a run. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../runtime/sgemm.h"
#include "check.h"

static uint64_t rng;

static uint32_t next(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (uint32_t)(rng >> 16);
}

static int pick(int lo, int hi) { return lo + (int)(next() % (uint32_t)(hi - lo + 1)); }

static float unit(void) { return (float)(next() & 0xffffff) / 16777216.0f * 2.0f - 1.0f; }

typedef struct {
  RtGemm g;
  float *A, *B, *C;   /* C with a guard of `pad` floats each side */
  size_t nc, pad;
} Case;

static const float GUARD = 1234.5f;

static Case make_case(RtTrans ta, RtTrans tb, int m, int n, int k, int batch, float alpha,
                      float beta) {
  Case c = {.pad = 64};
  int lda = (ta ? m : k) + pick(0, 5), ldb = (tb ? k : n) + pick(0, 5), ldc = n + pick(0, 5);
  int64_t sa = (int64_t)lda * (ta ? k : m), sb = (int64_t)ldb * (tb ? n : k),
          sc = (int64_t)ldc * m + pick(0, 3);
  c.g = (RtGemm){ta, tb, m, n, k, alpha, beta, 0, 0, 0, lda, ldb, ldc, batch, sa, sb, sc};
  size_t na = (size_t)(sa * batch) + 1, nb = (size_t)(sb * batch) + 1;
  c.nc = (size_t)(sc * batch) + 1;
  c.A = malloc(na * sizeof *c.A), c.B = malloc(nb * sizeof *c.B);
  c.C = malloc((c.nc + 2 * c.pad) * sizeof *c.C);
  for (size_t i = 0; i < na; i++)
    c.A[i] = unit();
  for (size_t i = 0; i < nb; i++)
    c.B[i] = unit();
  for (size_t i = 0; i < c.nc + 2 * c.pad; i++)
    c.C[i] = GUARD;
  for (int b = 0; b < batch; b++)   /* C's elements: NaN where beta = 0 must not read them */
    for (int i = 0; i < m; i++)
      for (int j = 0; j < n; j++)
        c.C[c.pad + b * sc + (int64_t)i * ldc + j] = beta == 0 ? NAN : unit();
  return c;
}

static void free_case(Case *c) { free(c->A), free(c->B), free(c->C); }

static float *c_copy(const Case *c) {
  float *p = malloc((c->nc + 2 * c->pad) * sizeof *p);
  memcpy(p, c->C, (c->nc + 2 * c->pad) * sizeof *p);
  return p;
}

static void run(Sgemm *s, RtPool *pool, const Case *c, float *C) {
  CHECK(!sgemm_run(s, pool, &c->g, c->A, c->B, C + c->pad), "sgemm_run failed");
}

/* The result in out against the double reference from the original C in c. */
static void check_case(const Case *c, const float *out, const char *what) {
  const RtGemm *g = &c->g;
  double worst = 0;
  int outside = 0;
  for (int b = 0; b < (g->batch > 1 ? g->batch : 1); b++) {
    const float *A = c->A + b * g->stride_a, *B = c->B + b * g->stride_b;
    for (int i = 0; i < g->m; i++)
      for (int j = 0; j < g->n; j++) {
        double sum = 0, mag = 0;
        for (int p = 0; p < g->k; p++) {
          double a = g->ta ? A[(int64_t)p * g->lda + i] : A[(int64_t)i * g->lda + p];
          double bb = g->tb ? B[(int64_t)j * g->ldb + p] : B[(int64_t)p * g->ldb + j];
          sum += a * bb, mag += fabs(a * bb);
        }
        size_t at = c->pad + b * g->stride_c + (size_t)i * g->ldc + j;
        double old = g->beta == 0 ? 0 : g->beta * (double)c->C[at];
        double want = g->alpha * sum + old, scale = fabs(g->alpha) * mag + fabs(old) + 1e-30;
        double err = fabs(out[at] - want) / scale;
        if (!(err <= worst))
          worst = isnan(err) ? INFINITY : err;
      }
  }
  /* every float that is not an element of C keeps the guard */
  const float *orig = c->C;
  for (size_t i = 0; i < c->nc + 2 * c->pad; i++)
    if (orig[i] == GUARD && out[i] != GUARD)
      outside++;
  CHECK(worst < 4e-7 * (1 + sqrt(g->k)), "%s: %c%c %dx%dx%d lda %d ldb %d ldc %d batch %d "
        "alpha %g beta %g: error %.3g", what, g->ta ? 'T' : 'N', g->tb ? 'T' : 'N', g->m, g->n,
        g->k, g->lda, g->ldb, g->ldc, g->batch, g->alpha, g->beta, worst);
  CHECK(!outside, "%s: %d floats written outside C", what, outside);
}

static void test_random(Sgemm *fast, Sgemm *generic, RtPool *pool[3]) {
  const int edges[] = {1, 7, 8, 9, 47, 48, 49, 95, 97, 383, 384, 385, 769};
  const float betas[] = {0.0f, 1.0f, -0.5f};
  for (int t = 0; t < 60; t++) {
    int m = t < 13 ? edges[t] : pick(1, 200), n = t < 13 ? edges[12 - t] : pick(1, 200);
    int k = t < 13 ? edges[(t * 5) % 13] : pick(1, 900);
    Case c = make_case((RtTrans)(t & 1), (RtTrans)((t >> 1) & 1), m, n, k, t % 7 == 3 ? 3 : 1,
                       t % 5 == 0 ? 1.0f : unit() * 2, betas[t % 3]);
    float *out[3], *gen = c_copy(&c);
    run(generic, pool[0], &c, gen);
    check_case(&c, gen, "generic");
    for (int p = 0; p < 3; p++) {
      out[p] = c_copy(&c);
      run(fast, pool[p], &c, out[p]);
    }
    check_case(&c, out[1], "fast, 2 threads");
    size_t bytes = (c.nc + 2 * c.pad) * sizeof(float);
    CHECK(!memcmp(out[0], out[1], bytes) && !memcmp(out[2], out[1], bytes),
          "%dx%dx%d: 1, 2 and 3 threads differ", m, n, k);
    CHECK(!memcmp(gen, out[1], bytes), "%dx%dx%d: the AVX-512 and generic tiles differ", m, n,
          k);
    for (int p = 0; p < 3; p++)
      free(out[p]);
    free(gen);
    free_case(&c);
  }
}

/* k = 0 scales C by beta (0: writes zeros); empty m or n touch nothing. */
static void test_degenerate(Sgemm *s, RtPool *pool) {
  Case c = make_case(RT_NOTRANS, RT_NOTRANS, 5, 9, 0, 1, 1.0f, 0.5f);
  float *out = c_copy(&c);
  run(s, pool, &c, out);
  check_case(&c, out, "k = 0");
  free(out), free_case(&c);
  c = make_case(RT_NOTRANS, RT_TRANS, 0, 9, 4, 1, 1.0f, 0.0f);
  out = c_copy(&c);
  run(s, pool, &c, out);
  CHECK(!memcmp(out, c.C, (c.nc + 2 * c.pad) * sizeof *out), "m = 0 wrote something");
  free(out), free_case(&c);
}

static void test_backend_choice(void) {
  char err[256];
  setenv("CRISP_GEMM", "crisp", 1);
  Backend *b = backend_open("cpu", NULL, err, sizeof err);
  CHECK(b && strstr(b->gemm_lib, "crisp sgemm"), "CRISP_GEMM=crisp: %s",
        b ? b->gemm_lib : err);
  backend_close(b);
  setenv("CRISP_GEMM", "blas", 1);
  b = backend_open("cpu", NULL, err, sizeof err);
  CHECK(b && !strstr(b->gemm_lib, "crisp sgemm"), "CRISP_GEMM=blas: %s", b ? b->gemm_lib : err);
  backend_close(b);
  setenv("CRISP_GEMM", "fastest", 1);
  b = backend_open("cpu", NULL, err, sizeof err);
  CHECK(!b && strstr(err, "CRISP_GEMM=fastest"), "a bad CRISP_GEMM opened: %s", err);
  backend_close(b);
  unsetenv("CRISP_GEMM");
}

int main(void) {
  rng = (uint64_t)time(NULL) | 1;
  const char *env = getenv("CRISP_SEED");
  if (env)
    rng = strtoull(env, NULL, 0) | 1;
  printf("seed %llu (set CRISP_SEED to repeat)\n", (unsigned long long)rng);
  if (!sgemm_supported())
    printf("note: no AVX-512F here: the fast tile is the generic one\n");
  Sgemm *fast = sgemm_new(SGEMM_FAST), *generic = sgemm_new(SGEMM_GENERIC);
  RtPool *pool[3] = {rt_pool_new(1), rt_pool_new(2), rt_pool_new(3)};
  if (!fast || !generic || !pool[0] || !pool[1] || !pool[2]) {
    fprintf(stderr, "out of memory\n");
    return 1;
  }
  test_random(fast, generic, pool);
  test_degenerate(fast, pool[1]);
  test_backend_choice();
  for (int p = 0; p < 3; p++)
    rt_pool_free(pool[p]);
  sgemm_free(fast);
  sgemm_free(generic);
  return check_summary();
}
