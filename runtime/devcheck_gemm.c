/* devcheck_gemm.c: crisp-devcheck's gemm command, the backend's sgemm on the device.
 *
 * Every transpose combination, padded leading dimensions and a strided batch
 * against a double-precision product; the training path's matmuls all go through
 * this call, so it is checked on its own before any attention kernel. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn_task.h"
#include "devcheck.h"

/* ---- gemm ---- */

static int gemm_case(Backend *b, RtTrans ta, RtTrans tb, int m, int n, int k, int batch,
                     uint64_t *rng, double *worst) {
  int rows_a = ta ? k : m, cols_a = ta ? m : k, rows_b = tb ? n : k, cols_b = tb ? k : n;
  int lda = cols_a + 3, ldb = cols_b + 1, ldc = n + 2;   /* padded rows */
  int64_t sa = (int64_t)rows_a * lda, sb = (int64_t)rows_b * ldb, sc = (int64_t)m * ldc;
  int nb = batch > 1 ? batch : 1;
  float *A = malloc((size_t)(sa * nb) * 4), *B = malloc((size_t)(sb * nb) * 4);
  float *C = malloc((size_t)(sc * nb) * 4), *C0 = malloc((size_t)(sc * nb) * 4);
  DevPtr dA = 0, dB = 0, dC = 0;
  int rc = -1;
  if (!A || !B || !C || !C0)
    goto done;
  for (int64_t i = 0; i < sa * nb; i++) A[i] = (float)(rt_rng_uniform(rng) * 2 - 1);
  for (int64_t i = 0; i < sb * nb; i++) B[i] = (float)(rt_rng_uniform(rng) * 2 - 1);
  for (int64_t i = 0; i < sc * nb; i++) C0[i] = (float)(rt_rng_uniform(rng) * 2 - 1);
  if (rt_alloc(b, (size_t)(sa * nb) * 4, &dA) || rt_alloc(b, (size_t)(sb * nb) * 4, &dB) ||
      rt_alloc(b, (size_t)(sc * nb) * 4, &dC) || rt_h2d(b, dA, A, (size_t)(sa * nb) * 4) ||
      rt_h2d(b, dB, B, (size_t)(sb * nb) * 4) || rt_h2d(b, dC, C0, (size_t)(sc * nb) * 4))
    goto done;
  RtGemm g = {ta, tb, m, n, k, 0.75f, 0.5f, dA, dB, dC, lda, ldb, ldc, batch, sa, sb, sc};
  if (rt_gemm(b, &g) || rt_sync(b) || rt_d2h(b, C, dC, (size_t)(sc * nb) * 4))
    goto done;
  for (int p = 0; p < nb; p++)
    for (int i = 0; i < m; i++)
      for (int j = 0; j < n; j++) {
        double acc = 0, mag = 0;
        for (int q = 0; q < k; q++) {
          double a = ta ? A[p * sa + (int64_t)q * lda + i] : A[p * sa + (int64_t)i * lda + q];
          double bb = tb ? B[p * sb + (int64_t)j * ldb + q] : B[p * sb + (int64_t)q * ldb + j];
          acc += a * bb;
          mag += fabs(a * bb);
        }
        double ref = 0.75 * acc + 0.5 * C0[p * sc + (int64_t)i * ldc + j];
        double e = fabs(C[p * sc + (int64_t)i * ldc + j] - ref) / (0.75 * mag + 0.5 + 1e-30);
        *worst = fmax(*worst, e);
      }
  rc = 0;
done:
  rt_free(b, dA), rt_free(b, dB), rt_free(b, dC);
  free(A), free(B), free(C), free(C0);
  return rc;
}

int gemm_check(Backend *b, const Opts *o) {
  uint64_t rng = o->seed;
  struct { RtTrans ta, tb; int m, n, k, batch; } cases[] = {
      {RT_NOTRANS, RT_NOTRANS, 64, 48, 32, 1}, {RT_TRANS, RT_NOTRANS, 33, 65, 17, 1},
      {RT_NOTRANS, RT_TRANS, 7, 129, 64, 1},   {RT_TRANS, RT_TRANS, 50, 3, 100, 1},
      {RT_NOTRANS, RT_TRANS, 16, 20, 24, 3},   {RT_NOTRANS, RT_NOTRANS, 1, 1, 1, 1},
  };
  int failed = 0;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    double worst = 0;
    if (gemm_case(b, cases[i].ta, cases[i].tb, cases[i].m, cases[i].n, cases[i].k,
                  cases[i].batch, &rng, &worst)) {
      printf("FAIL gemm: %s\n", backend_error(b));
      return 1;
    }
    bool ok = worst < 1e-5;
    printf("%s gemm %c%c m=%d n=%d k=%d batch=%d: max err %.2e\n", ok ? "PASS" : "FAIL",
           cases[i].ta ? 'T' : 'N', cases[i].tb ? 'T' : 'N', cases[i].m, cases[i].n, cases[i].k,
           cases[i].batch, worst);
    failed += !ok;
  }
  /* one large product for a rate */
  int n = strcmp(b->kind, "cuda") ? 512 : 4096;
  DevPtr a = 0, bb = 0, c = 0;
  size_t bytes = (size_t)n * n * 4;
  RtEvent *e0 = NULL, *e1 = NULL;
  if (!rt_alloc(b, bytes, &a) && !rt_alloc(b, bytes, &bb) && !rt_alloc(b, bytes, &c) &&
      !rt_memset(b, a, 0x3c, bytes) && !rt_memset(b, bb, 0x3c, bytes) &&
      !rt_event_create(b, &e0) && !rt_event_create(b, &e1)) {
    RtGemm g = {RT_NOTRANS, RT_NOTRANS, n, n, n, 1, 0, a, bb, c, n, n, n, 1, 0, 0, 0};
    double t[5];
    int ok = !rt_gemm(b, &g) && !rt_sync(b);
    for (int r = 0; r < 5 && ok; r++) {
      float f;
      ok = !rt_event_record(b, e0) && !rt_gemm(b, &g) && !rt_event_record(b, e1) &&
           !rt_event_elapsed(b, e0, e1, &f);
      t[r] = f;
    }
    if (ok) {
      double med = tune_median(t, 5);
      printf("gemm %dx%dx%d f32 (%s): %.3f ms, %.1f GFLOP/s\n", n, n, n, b->gemm_lib, med,
             2.0 * n * n * (double)n / med * 1e-6);
    }
  }
  rt_event_destroy(b, e0), rt_event_destroy(b, e1);
  rt_free(b, a), rt_free(b, bb), rt_free(b, c);
  return failed ? 1 : 0;
}
