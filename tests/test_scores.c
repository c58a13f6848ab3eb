/* test_scores.c: the score helpers' bit contract (templates/attention_common.h). The
 * forward, select and backward kernels of SCHED_WARP each recompute S, and they agree
 * on the kept set S >= tau only if they compute S to the same bit. The attention
 * suites cannot see a broken contract: their inputs are multiples of 1/4, so every
 * form of the dot is exact. Here the inputs are random floats, so a changed order or
 * a fused multiply-add shows:
 *   - attn_rows_scores for R = 2, 3, 4 rows at once gives each row exactly what
 *     attn_row_scores (host = false) gives it alone, and both give exactly the C
 *     loop "s = s + q_d k_d in order of d, then s * f32(1/sqrt(D))";
 *   - each row writes only its own j < m (rows of one set have different m, and the
 *     last set has rows past the end, m = 0);
 * in the interpreter (the GPU mapping) and on the host JIT. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../compiler/jit.h"
#include "../ir/interp.h"
#include "../ir/passes.h"
#include "../templates/attention_common.h"
#include "attn_harness.h"
#include "check.h"

enum { NR = 7, NK = 45, D = 40, KLD = D + 1 };   /* NK > 32: lanes take two keys */

static uint64_t rng;

/* out[r NK + j] = S_rj for j < m[r]: R rows at a time (R = 0: attn_row_scores per row) */
static Kernel *scores_kernel(int R) {
  char name[32];
  snprintf(name, sizeof name, "scores%d", R);
  Kernel *k = ir_kernel_new(name, 1);
  Buf *q = ir_param_buf(k, "q", TY_F32, ROLE_IN);
  Buf *kk = ir_param_buf(k, "k", TY_F32, ROLE_IN);
  Buf *m = ir_param_buf(k, "m", TY_I32, ROLE_IN);
  Buf *out = ir_param_buf(k, "out", TY_F32, ROLE_INOUT);
  Builder b = ir_builder(k), warp;
  ir_pfor(&b, AXIS_WARP, ir_const_i32(&b, 1), "w", &warp);
  Op *zero = ir_const_i32(&warp, 0), *ld = ir_const_i32(&warp, KLD);
  int per = R ? R : 1;
  for (int r0 = 0; r0 < NR; r0 += per) {
    AttnRow rows[ATTN_ROWS_MAX];
    Op *qoff[ATTN_ROWS_MAX];
    for (int t = 0; t < per; t++) {
      int r = r0 + t < NR ? r0 + t : r0;   /* past the end: q of a valid row, m = 0 */
      Op *mr = r0 + t < NR ? ir_load(&warp, m, ir_const_i32(&warp, r)) : zero;
      rows[t] = (AttnRow){out, ir_const_i32(&warp, r * NK), mr};
      qoff[t] = ir_const_i32(&warp, r * D);
    }
    if (R)
      attn_rows_scores(&warp, R, rows, q, qoff, kk, zero, ld, D);
    else
      attn_row_scores(&warp, &rows[0], q, kk, qoff[0], zero, ld, D, false);
  }
  return k;
}

/* The contract, in C: a product rounded to f32, then added, in order of d. */
static float score_ref(const float *q, const float *k) {
  float s = 0;
  for (int d = 0; d < D; d++) {
    volatile float p = q[d] * k[d];   /* no contraction into an fma */
    s = s + p;
  }
  return s * (float)(1.0 / sqrt((double)D));
}

static float draw(void) { return (float)(2 * harness_uniform(&rng) - 1); }

static void run_form(int R, bool host, const float *q, const float *kk, const int32_t *m) {
  char err[512];
  Kernel *k = scores_kernel(R);
  Module mod = {.kernels = {k}, .n = 1};
  Jit *jit = NULL;
  float *out = malloc(sizeof(float) * NR * NK);
  for (int e = 0; e < NR * NK; e++)
    out[e] = NAN;
  void *args[] = {&(const float *){q}, &(const float *){kk}, &(const int32_t *){m}, &out};
  int32_t grid[3] = {1, 1, 1};
  int rc = ir_run_passes(k, host ? MAP_CPU : MAP_NONE, err, sizeof err);
  if (!rc && host) {
    CpuKernelFn fn = (jit = jit_compile(&mod, err, sizeof err)) ? jit_lookup(jit, k->name) : NULL;
    rc = fn ? (fn(args, grid, 0, 1), 0) : -1;
  } else if (!rc) {
    int64_t counts[] = {NR * D, NK * KLD, NR, NR * NK};
    rc = interp_run(k, args, counts, grid, &(InterpOptions){true, true}, err, sizeof err);
  }
  CHECK(rc == 0, "R = %d, %s: %s", R, host ? "host" : "interpreter", err);
  int bad = 0, where = -1;
  for (int r = 0; r < NR && !rc; r++)
    for (int j = 0; j < NK; j++) {
      float want = j < m[r] ? score_ref(q + r * D, kk + j * KLD) : NAN;
      float got = out[r * NK + j];
      bool same = j < m[r] ? memcmp(&got, &want, sizeof got) == 0 : isnan(got);
      if (!same && bad++ == 0)
        where = r * NK + j;
    }
  CHECK(bad == 0, "R = %d, %s: %d entries differ from the in-order f32 sum (first row %d, "
        "key %d)", R, host ? "host" : "interpreter", bad, where / NK, where % NK);
  free(out);
  jit_free(jit);
  ir_module_free(&mod);
}

int main(void) {
  rng = harness_seed();
  float q[NR * D], kk[NK * KLD];
  int32_t m[NR] = {NK, 3, 32, 33, 0, NK - 1, 17};   /* across a lane's two keys */
  for (int e = 0; e < NR * D; e++)
    q[e] = draw();
  for (int e = 0; e < NK * KLD; e++)
    kk[e] = draw();
  for (int host = 0; host < 2; host++)
    for (int R = 0; R <= 4; R++)
      run_form(R, host, q, kk, m);
  return check_summary();
}
