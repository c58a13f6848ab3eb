/* backward_nonfinite.c: test_backward's check that a NaN in dO reaches the gradients
 * that depend on it and no others (the forward's side: test_nonfinite.c). A NaN in
 * dO_i[0] must make dq_i NaN (Delta_i and every dP_ij are), and for each key j row i
 * keeps, dk_j NaN (dS_ij is) and dv_j[0] NaN (P_ij dO_i[0]); every other row's dq and
 * every delta but row i's keep the bits of the run without the NaN (with dropout, so
 * that some kept pairs weigh 0 in dV and NaN in dK). A kernel that
 * took a NaN weight for "nothing to add" (the IR's float NE is ordered: NaN != 0 is
 * false) left dq_i finite: the warp schedules did until 2026-12-07.
 * dk, dv of keys row i does not keep are not checked: a dense GEMM block adds
 * 0 * NaN there, as PyTorch's matmul does. For none and row_topk, on the host tile and
 * warp schedules and the GPU mapping in the IR interpreter. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../ir/interp.h"

#define CHECK_SHARED
#include "backward_test.h"
#include "check.h"

enum { NB = 1, NH = 2, NN = 19, PH = 1, PI = 5 };

/* The backward kernels, JIT-compiled for the host (fn) or for the interpreter
 * (interp: the GPU mapping). */
typedef struct {
  Module m;
  Jit *jit;
  CpuKernelFn fn[2];
  bool interp;
} Kernels;

static int kernels_build(Kernels *k, const Spec *s, TileConfig t, bool interp) {
  char err[1024] = "";
  *k = (Kernels){.interp = interp};
  int rc = compile(&k->m, s, &t, interp ? MAP_NONE : MAP_CPU, err, sizeof err);
  if (!rc && !interp && !(k->jit = jit_compile(&k->m, err, sizeof err)))
    rc = -1;
  for (int i = 0; !rc && !interp && i < k->m.n && i < 2; i++)
    rc = (k->fn[i] = jit_lookup(k->jit, k->m.kernels[i]->name)) ? 0 : -1;
  CHECK(rc == 0 && k->m.n <= 2, "compile: %s", rc ? err : "more than two kernels");
  return rc || k->m.n > 2 ? -1 : 0;
}

/* The case's gradients (dq, dk, dv interleaved in grad) and deltas after one run. */
static void run(Kernels *k, Case *c, float *grad, float *delta) {
  case_poison(c);
  BwdArgs a;
  bwd_args(&a, c);
  for (int i = 0; i < k->m.n; i++) {
    if (!k->interp) {
      run_host(k->fn[i], k->m.kernels[i], &a);
      continue;
    }
    char err[1024];
    int32_t grid[3];
    ir_grid(k->m.kernels[i], a.args, grid);
    int rc = interp_run(k->m.kernels[i], a.args, a.counts, grid, &(InterpOptions){true, true},
                        err, sizeof err);
    CHECK(rc == 0, "interpreter: %s", err);
  }
  memcpy(grad, c->grad, (size_t)c->ng * sizeof *grad);
  memcpy(delta, c->delta, (size_t)c->nrows * sizeof *delta);
}

static int64_t at_g(const Case *c, int i, int h) { return i * c->g_sn + h * c->g_sh; }

static bool all_nan(const float *x, int n) {
  bool all = true;
  for (int d = 0; d < n; d++)
    all &= isnan(x[d]);
  return all;
}

static void check_dout_nan(const Spec *s, TileConfig t, bool interp, const char *name) {
  Kernels k;
  if (kernels_build(&k, s, t, interp))
    return;
  Case c;
  case_init(&c, s, NB, NH, NN, true, true);
  c.sparsity = s->select == SEL_NONE ? 0.0 : 0.8;   /* 0.8: the tile walks kept pairs */
  /* dropout: a kept, dropped pair has weight 0 for dV but dS_ij = -P_ij Delta_i, NaN */
  c.dp = (AttnDropout){0.3f, 12345u, 7u, 2u};
  case_fill(&c);
  case_reference(&c);
  float *grad[2], *delta[2];
  for (int v = 0; v < 2; v++) {
    grad[v] = xcalloc((size_t)c.ng, sizeof(float));
    delta[v] = xcalloc((size_t)c.nrows, sizeof(float));
  }
  run(&k, &c, grad[0], delta[0]);
  c.dout[at_o(&c, 0, PI, PH)] = NAN;
  run(&k, &c, grad[1], delta[1]);
  int D = s->head_dim, wrong = 0;
  int64_t dq = c.dq - c.grad, dk = c.dk - c.grad, dv = c.dv - c.grad;
  wrong += !all_nan(grad[1] + dq + at_g(&c, PI, PH), D) || !isnan(delta[1][PH * NN + PI]);
  for (int j = 0; j < NN; j++) {
    if (c.mask[(PH * NN + PI) * NN + j])
      wrong += !all_nan(grad[1] + dk + at_g(&c, j, PH), D) ||
               !isnan(grad[1][dv + at_g(&c, j, PH)]);
    for (int h = 0; h < NH; h++) {
      if (h == PH && j == PI)
        continue;
      int64_t g = dq + at_g(&c, j, h);
      wrong += memcmp(grad[0] + g, grad[1] + g, (size_t)D * sizeof(float)) != 0 ||
               memcmp(&delta[0][h * NN + j], &delta[1][h * NN + j], sizeof(float)) != 0;
    }
  }
  CHECK(wrong == 0, "%s, %s: a NaN in dO row %d: %d gradient rows wrong (expected NaN in "
        "dq of that row and in dk, dv of the keys it keeps, the clean run's bits in every "
        "other dq and delta)", name, select_name(s->select), PI, wrong);
  for (int v = 0; v < 2; v++) {
    free(grad[v]);
    free(delta[v]);
  }
  case_free(&c);
  jit_free(k.jit);
  ir_module_free(&k.m);
}

void nonfinite_suite(void) {
  static const SelectKind sels[] = {SEL_NONE, SEL_ROW_TOPK};
  for (int si = 0; si < 2; si++) {
    Spec s = make_spec(16, 64, sels[si], false, 1);
    check_dout_nan(&s, tile_resolve(&s, TUNE_CPU), false, "host tile schedule");
    check_dout_nan(&s, (TileConfig){16, 1, SCHED_WARP_HOST}, false, "host warp schedule");
    check_dout_nan(&s, (TileConfig){8, 4, SCHED_WARP}, true, "GPU mapping 8x4 (interpreter)");
  }
}
