/* backward_runs.c: test_backward's suites that run the kernels and compare with the
 * reference: b) the host-JIT'd kernels on fresh random shapes, c) the GPU mapping in
 * the IR interpreter (races, uninitialised shared reads) for several tiles, e) the
 * forward kernel writing o, lse, tau for the backward kernels. Apart from the
 * problem set-up (backward_case.c), which they share. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ir/interp.h"

#define CHECK_SHARED
#include "backward_test.h"
#include "check.h"

/* ---- b) host JIT against the reference ---- */

typedef struct {
  Module m;
  Jit *jit;
  CpuKernelFn fn[2];   /* the module's backward kernels in launch order (1 or 2) */
} Host;

/* Runs the backward kernels m->kernels[first..] (fn[0..]) in order. */
static void run_bwd(CpuKernelFn const fn[], Module *m, int first, BwdArgs *a) {
  for (int i = first; i < m->n; i++)
    run_host(fn[i - first], m->kernels[i], a);
}

/* Looks up m->kernels[first..] into fn; false (with a CHECK) if one is missing. */
static bool lookup_bwd(Jit *jit, Module *m, int first, CpuKernelFn fn[2]) {
  bool ok = m->n - first >= 1 && m->n - first <= 2;
  for (int i = first; ok && i < m->n; i++)
    ok = (fn[i - first] = jit_lookup(jit, m->kernels[i]->name)) != NULL;
  CHECK(ok, "lookup of the backward kernels");
  return ok;
}

static int host_compile(Host *hk, const Spec *s, TileConfig t) {
  char err[1024];
  memset(hk, 0, sizeof *hk);
  if (compile(&hk->m, s, &t, MAP_CPU, err, sizeof err) ||
      !(hk->jit = jit_compile(&hk->m, err, sizeof err))) {
    CHECK(0, "compile: %s", err);
    ir_module_free(&hk->m);
    return -1;
  }
  return lookup_bwd(hk->jit, &hk->m, 0, hk->fn) ? 0 : -1;
}

static void host_check(Host *hk, Case *c, const char *what) {
  case_reference(c);
  case_poison(c);
  BwdArgs a;
  bwd_args(&a, c);
  run_bwd(hk->fn, &hk->m, 0, &a);
  Err e[4];
  case_errors(c, e);
  report(c, what, e);
}

void host_suite(const Spec *s, TileConfig t) {
  Host hk;
  if (host_compile(&hk, s, t))
    return;
  static const double sparsities[] = {0.0, 0.5, 0.8, 0.999};
  const int ns[] = {1, 7, 33, 128};
  for (int ni = 0; ni < 4; ni++)
    for (int si = 0; si < 4; si++)
      for (int drop = 0; drop < 2; drop++) {
        int n = ns[ni] > s->max_seq ? s->max_seq : ns[ni];
        Case c;
        case_init(&c, s, 2, n > 64 ? 2 : 3, n, (ni + si) % 2 == 0, (si + drop) % 2 == 0);
        c.sparsity = s->select == SEL_NONE ? 0.0 : sparsities[si];
        c.tau_inf = drop;
        c.dp = (AttnDropout){drop ? 0.1f : 0.0f, (uint32_t)(uniform() * 4e9),
                             (uint32_t)(uniform() * 1000), (uint32_t)ni};
        case_fill(&c);
        if ((ni + drop) % 2)
          random_lengths(&c);
        host_check(&hk, &c, "host");
        case_free(&c);
      }
  /* every valid length 1..n */
  Case c;
  case_init(&c, s, 12, 1, 12, true, true);
  c.sparsity = 0.7;
  c.tau_inf = true;   /* short rows keep every key (keep_min): dense and masked blocks */
  c.dp = (AttnDropout){0.1f, 7, 1, 2};
  case_fill(&c);
  for (int b = 0; b < 12; b++)
    c.lengths[b] = b + 1;
  host_check(&hk, &c, "every length");
  case_free(&c);
  /* all scores equal (q = 0): everything ties at tau and is kept */
  case_init(&c, s, 2, 2, 21, false, true);
  c.sparsity = 0.8;
  case_fill(&c);
  for (int b = 0; b < 2; b++)
    for (int i = 0; i < 21; i++)
      for (int h = 0; h < 2; h++)
        memset(c.q + at_in(&c, b, i, h), 0, (size_t)s->head_dim * sizeof(float));
  host_check(&hk, &c, "all equal");
  case_free(&c);
  jit_free(hk.jit);
  ir_module_free(&hk.m);
}

/* ---- c) the GPU mapping in the interpreter ---- */

void interp_suite(const Spec *s, TileConfig t) {
  char err[1024];
  Module m = {0};
  if (compile(&m, s, &t, MAP_NONE, err, sizeof err)) {
    CHECK(0, "compile for the interpreter: %s", err);
    ir_module_free(&m);
    return;
  }
  static const int ns[] = {1, 5, 19, 40};
  for (int ni = 0; ni < 4; ni++) {
    Case c;
    case_init(&c, s, 2, 2, ns[ni] < s->max_seq ? ns[ni] : s->max_seq, ni % 2 == 0, ni % 2 == 1);
    c.sparsity = s->select == SEL_NONE ? 0.0 : (double[]){0.0, 0.6, 0.95, 0.5}[ni];
    c.dp = (AttnDropout){ni == 1 ? 0.0f : 0.2f, (uint32_t)(uniform() * 4e9), 5, 0};
    case_fill(&c);
    random_lengths(&c);
    if (ni == 3)   /* one full example: two staged tiles, the second partial */
      c.lengths[0] = c.l.N;
    case_reference(&c);
    case_poison(&c);
    BwdArgs a;
    bwd_args(&a, &c);
    InterpOptions opt = {true, true};
    int rc = 0;
    for (int kk = 0; kk < m.n && !rc; kk++) {
      int32_t grid[3];
      ir_grid(m.kernels[kk], a.args, grid);
      rc = interp_run(m.kernels[kk], a.args, a.counts, grid, &opt, err, sizeof err);
      CHECK(rc == 0, "interpreter (rows %d warps %d, %s): %s", t.rows, t.warps,
            m.kernels[kk]->name, err);
    }
    if (!rc) {
      Err e[4];
      case_errors(&c, e);
      char what[64];
      snprintf(what, sizeof what, "interpreter rows=%d warps=%d", t.rows, t.warps);
      report(&c, what, e);
    }
    case_free(&c);
  }
  ir_module_free(&m);
}

/* ---- e) forward kernel -> backward kernels ---- */

/* The kernel's f32 score for a reference score of quantized inputs (see kernel_score). */
static float as_kernel_score(double s, int D) {
  if (!isfinite(s))
    return (float)s;
  double dot = nearbyint(s * sqrt((double)D) * 16) / 16;
  return (float)dot * (float)(1.0 / sqrt((double)D));
}

void e2e_suite(const Spec *s, TileConfig t) {
  char err[1024];
  Module m = {0};
  Jit *jit = NULL;
  m.kernels[m.n++] = attention_fwd_build(s, &t);
  Kernel *fk = m.kernels[0];
  int rc = attention_bwd_build(s, &t, &m, err, sizeof err);
  for (int i = 0; !rc && i < m.n; i++)
    rc = ir_verify(m.kernels[i], err, sizeof err) || ir_simplify(m.kernels[i], err, sizeof err) ||
         ir_map(m.kernels[i], MAP_CPU, err, sizeof err) ||
         ir_simplify(m.kernels[i], err, sizeof err) || ir_verify(m.kernels[i], err, sizeof err);
  if (rc || !(jit = jit_compile(&m, err, sizeof err))) {
    CHECK(0, "forward + backward compile (%s): %s", select_name(s->select), err);
    ir_module_free(&m);
    return;
  }
  CpuKernelFn fwd = jit_lookup(jit, fk->name), bwd[2];
  CHECK(fwd, "lookup of the forward kernel");
  bool found = lookup_bwd(jit, &m, 1, bwd);
  for (int rep = 0; fwd && found && rep < 4; rep++) {
    Case c;
    int N = (int[]){1, 17, 40, 64}[rep];
    case_init(&c, s, 2, 2, N, rep % 2 == 0, true);
    c.sparsity = s->select == SEL_NONE ? 0.0 : (double[]){0.5, 0.8, 0.0, 0.95}[rep];
    c.dp = (AttnDropout){rep % 2 ? 0.1f : 0.0f, (uint32_t)(uniform() * 4e9), 11, 4};
    case_fill(&c);
    random_lengths(&c);
    case_reference(&c);   /* reference gradients; o, lse, tau below come from the kernel */
    int64_t G = (int64_t)c.l.B * c.l.H;
    float *tg = xcalloc((size_t)G, sizeof *tg), *ent = xcalloc((size_t)c.nrows, sizeof *ent);
    double *tgr = xcalloc((size_t)G, sizeof *tgr);
    int ng = attention_group_tau_ref(s, &c.l, c.q, c.k, c.lengths, c.sparsity, tgr);
    for (int g = 0; g < ng; g++)
      tg[g] = as_kernel_score(tgr[g], s->head_dim);
    int32_t *kept = xcalloc((size_t)c.nrows, sizeof *kept);
    for (int64_t x = 0; x < c.no; x++)
      c.o[x] = NAN;
    for (int64_t x = 0; x < c.nrows; x++)
      c.lse[x] = c.tau[x] = NAN;
    void *fp[ATTN_B] = {c.q, c.k, c.v, c.o, c.lengths, kept, c.lse, c.tau, ent, ent, tg};
    int32_t fi[9] = {c.l.B, c.l.H, c.l.N, (int32_t)c.l.qkv_sb, (int32_t)c.l.qkv_sn,
                     (int32_t)c.l.qkv_sh, (int32_t)c.l.o_sb, (int32_t)c.l.o_sn, (int32_t)c.l.o_sh};
    double sp = c.sparsity;
    int32_t ctr[4] = {(int32_t)c.dp.seed, (int32_t)c.dp.step, (int32_t)c.dp.layer, 0};
    void *fa[ATTN_NPARAMS];
    for (int i = 0; i < ATTN_B; i++)
      fa[i] = &fp[i];
    for (int i = 0; i < 9; i++)
      fa[ATTN_B + i] = &fi[i];
    fa[ATTN_SPARSITY] = &sp;
    fa[ATTN_DROPOUT] = &c.dp.p;
    fa[ATTN_SEED] = &ctr[0], fa[ATTN_STEP] = &ctr[1], fa[ATTN_LAYER] = &ctr[2];
    fa[ATTN_STATS] = &ctr[3];
    int32_t grid[3];
    ir_grid(fk, fa, grid);
    fwd(fa, grid, 0, (int64_t)grid[0] * grid[1] * grid[2]);
    case_poison(&c);
    BwdArgs a;
    bwd_args(&a, &c);
    run_bwd(bwd, &m, 1, &a);
    Err e[4];
    case_errors(&c, e);
    report(&c, "forward kernel -> backward kernels", e);
    free(tg);
    free(ent);
    free(tgr);
    free(kept);
    case_free(&c);
  }
  jit_free(jit);
  ir_module_free(&m);
}
