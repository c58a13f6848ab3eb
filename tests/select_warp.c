/* test_select's checks of the warp schedule's block-staged hist kernel
 * (templates/attention_select_warp.c) in the IR interpreter, GPU semantics: every
 * thread, barriers, races on shared and global memory, reads of shared memory no
 * thread wrote, out-of-bounds accesses. test_select's own interpreter cases run at
 * N = 9, inside one key tile; these take several: N past the tile (a full tile and a
 * partial one), each layout select_warp_layout picks for a legal spec (64- and
 * 32-key tiles, Q staged or not), rows not a multiple of the key tile or of N, padded and
 * one-row examples, N = 1, causal, head and layer. Each runs the radix plan and
 * compares tau bit for bit with the reference (quantized inputs: exact scores), and
 * the histogram must be zero afterwards. */
#define CHECK_SHARED

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../compiler/emit.h"
#include "../ir/interp.h"
#include "../templates/attention_select_impl.h"
#include "../templates/reference.h"
#include "check.h"
#include "select_harness.h"

typedef struct {
  int D, rows, warps, N, len1;   /* len1: example 1's length */
  int kt;                        /* the layout this case is meant to cover */
  bool stage_q;
} WarpCase;

static const WarpCase cases[] = {
  {16, 8, 4, 70, 45, 64, true},     /* the GPU default tile; two key tiles, padded rows */
  {16, 16, 1, 70, 1, 64, true},     /* an example of one row */
  {16, 64, 1, 70, 66, 64, true},    /* rows = the key tile; a block of 6 rows */
  {16, 6, 2, 1, 1, 64, true},       /* N = 1 */
  {64, 64, 1, 70, 33, 64, false},   /* Q would pass 32 KiB: q read from global memory */
  {128, 8, 4, 40, 35, 32, true},    /* 32-key tiles with Q: 32 + 8 */
  {256, 3, 1, 40, 21, 32, false},   /* 32-key tiles, no Q */
};

typedef struct {
  const int64_t *counts;
  SelTrace *trace;   /* or NULL */
  char err[1024];
} Launcher;

static int launch(void *ctx, SelectKernel which, Kernel *k, void **args, const int32_t grid[3]) {
  Launcher *l = ctx;
  int rc = interp_run(k, args, l->counts, grid, NULL, l->err, sizeof l->err);
  if (l->trace)
    sel_trace_record(l->trace, which, args);
  return rc;
}

static uint32_t bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

/* The taus of a plan against the reference; the histogram must be zero afterwards
 * (radix) or untouched, still sel_args' garbage (WHOLE writes tau and rank only). */
static void check_plan(AttnCase *c, SelArgs *a, bool radix, const char *what) {
  double *ref = malloc((size_t)a->G * sizeof(double));
  attention_group_tau_ref(&c->spec, &c->l, c->q, c->k, c->lengths, a->sparsity, ref);
  int bad = 0, first = -1;
  for (int g = 0; g < a->G; g++)
    if (bits(a->tau[g]) != bits(sel_kernel_score(ref[g], c->spec.head_dim)) && bad++ == 0)
      first = g;
  int64_t dirty = 0;
  for (int64_t i = 0; i < (int64_t)a->G * SELECT_BINS; i++)
    dirty += a->hist[i] != (radix ? 0 : (int32_t)(i * 2654435761u));
  CHECK(bad == 0 && dirty == 0, "%s s=%g: %d of %d taus wrong (g=%d: %.9g, want %.9g), %lld bins "
        "not as the plan leaves them", what, a->sparsity, bad, a->G, first,
        first >= 0 ? a->tau[first] : 0.0,
        first >= 0 ? sel_kernel_score(ref[first], c->spec.head_dim) : 0.0, (long long)dirty);
  free(ref);
}

/* The radix plan on c at sparsity sp in the interpreter, checked. */
static void run_case(Module *m, AttnCase *c, double sp, const char *what) {
  SelArgs a;
  sel_args(&a, c, sp);
  Launcher l = {.counts = a.counts};
  int rc = attention_select_run_plan(m->kernels, a.args, SELECT_PLAN_RADIX, launch, &l);
  CHECK(rc == 0, "%s: %s", what, l.err);
  if (rc == 0)
    check_plan(c, &a, true, what);
  sel_args_free(&a);
}

/* A tile no layout fits is refused with an error, never built (head_dim 2048 is past
 * what a spec may say, 256: an 8-key tile of it alone is 64 KiB). */
static void refused(void) {
  Spec s = harness_spec("t", SEL_HEAD_QUANTILE, 2048, 128, false, 1);
  TileConfig t = {8, 4, SCHED_WARP};
  Module m = {0};
  char err[256] = "";
  int rc = attention_select_build(&s, &t, &m, err, sizeof err);
  CHECK(rc == -1 && m.n == 0 && strstr(err, "shared memory") && strstr(err, "head_dim = 2048"),
        "select hist with head_dim 2048: rc %d, %d kernels, error \"%s\"", rc, m.n, err);
  ir_module_free(&m);
}

/* The largest layout a legal spec gets (head_dim 256, 16 warps: 32-key tiles, 42 KiB)
 * lowers to PTX: the GPU lowering's own count of the shared bytes agrees with
 * attention_select_hist_shared_bytes (it once counted 39/8 bytes per f32). */
static void widest_lowers(void) {
  Spec s = harness_spec("t", SEL_HEAD_QUANTILE, 256, 512, false, 1);
  TileConfig t = {16, 16, SCHED_WARP};
  Module m = {0};
  char err[1024] = "";
  char *ptx = NULL;
  size_t len = 0;
  int64_t bytes = attention_select_hist_shared_bytes(&s, &t);
  int rc = sel_compile(&m, &s, &t, MAP_GPU, err, sizeof err);
  if (!rc)
    rc = emit_module(&m, TARGET_SM90, EMIT_ASM, &ptx, &len, err, sizeof err);
  CHECK(rc == 0 && bytes > 40 * 1024 && bytes <= 48 * 1024,
        "head_dim 256, tile (16, 16): %lld bytes of shared memory: %s", (long long)bytes, err);
  free(ptx);
  ir_module_free(&m);
}

/* The whole-head plan (round WHOLE) of small head_quantile specs: the plan callers
 * get (one hist launch) in the interpreter and on the host JIT, and the radix plan on
 * the same kernels; N from 2 to max_seq (N = 1 keeps every score: no select), padded
 * and empty examples, causal. */
static int whole_plans(uint64_t *rng) {
  static const struct { int D, max_seq, rows, warps, N, len1; } wc[] = {
    {16, 64, 8, 4, 64, 50}, {16, 64, 16, 1, 9, 0}, {16, 40, 3, 1, 40, 1},
    {64, 64, 8, 4, 2, 1}, {128, 64, 16, 16, 33, 20}};
  int runs = 0;
  for (size_t ci = 0; ci < sizeof wc / sizeof wc[0]; ci++)
    for (int causal = 0; causal < 2; causal++) {
      Spec s = harness_spec("t", SEL_HEAD_QUANTILE, wc[ci].D, wc[ci].max_seq, causal, 2);
      TileConfig t = {wc[ci].rows, wc[ci].warps, SCHED_WARP};
      char what[160], err[1024];
      snprintf(what, sizeof what, "warp whole causal=%d D=%d max_seq=%d tile (%d, %d) N=%d",
               causal, wc[ci].D, wc[ci].max_seq, t.rows, t.warps, wc[ci].N);
      Module m = {0};
      SelHost hk;
      if (sel_compile(&m, &s, &t, MAP_NONE, err, sizeof err) ||
          sel_host_compile(&hk, &s, &t, err, sizeof err)) {
        CHECK(0, "%s: %s", what, err);
        ir_module_free(&m);
        continue;
      }
      AttnCase c;
      attn_case_init(&c, &s, 2, 2, wc[ci].N, ci % 2 == 0);
      attn_case_fill(&c, rng, true);
      c.lengths[1] = wc[ci].len1;
      for (int k = 0; k < 2; k++, runs++) {
        SelArgs a;
        SelTrace tr;
        sel_args(&a, &c, k ? 0.8 : 0.35);
        sel_trace_init(&tr, a.G);
        Launcher l = {.counts = a.counts, .trace = &tr};
        CHECK(attention_select_plan_kind(&s, false, 2, 2, wc[ci].N, a.sparsity) ==
                  SELECT_PLAN_WHOLE, "%s: not the whole-head plan", what);
        int rc = attention_select_run(m.kernels, &s, a.args, launch, &l);
        CHECK(rc == 0 && tr.launches[SELECT_KERNEL_INIT] == 0 &&
                  tr.launches[SELECT_KERNEL_HIST] == 1 && tr.launches[SELECT_KERNEL_PICK] == 0,
              "%s: rc %d (%s), init %d, hist %d, pick %d launches (want 0, 1, 0)", what, rc, l.err,
              tr.launches[SELECT_KERNEL_INIT], tr.launches[SELECT_KERNEL_HIST],
              tr.launches[SELECT_KERNEL_PICK]);
        if (rc == 0)
          check_plan(&c, &a, false, what);
        sel_trace_free(&tr);
        sel_args_free(&a);
        sel_args(&a, &c, k ? 0.8 : 0.35);
        CHECK(sel_host_run(&hk, &a) == 0, "%s: host plan failed", what);
        check_plan(&c, &a, false, what);
        sel_args_free(&a);
      }
      run_case(&m, &c, 0.6, what);
      attn_case_free(&c);
      sel_host_free(&hk);
      ir_module_free(&m);
    }
  return runs;
}

void sel_test_warp(uint64_t *rng) {
  refused();
  widest_lowers();
  printf("interpreter and host, warp whole-head plan: %d plans\n", whole_plans(rng));
  static const double sps[] = {0.8, 0.5, 0.3, 0.95};
  int runs = 0;
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
    for (int mode = 0; mode < 2; mode++)
      for (int causal = 0; causal < 2; causal++) {
        const WarpCase *w = &cases[ci];
        Spec s = harness_spec("t", mode ? SEL_LAYER_QUANTILE : SEL_HEAD_QUANTILE, w->D, 128,
                              causal, 2);
        TileConfig t = {w->rows, w->warps, SCHED_WARP};
        SelectWarpLayout lay = select_warp_layout(&s, &t);
        char what[160], err[1024];
        snprintf(what, sizeof what, "warp staged %s causal=%d D=%d tile (%d, %d) N=%d",
                 select_name(s.select), causal, w->D, w->rows, w->warps, w->N);
        CHECK(lay.kt == w->kt && lay.stage_q == w->stage_q && lay.bytes <= 48 * 1024 &&
                  lay.bytes == attention_select_hist_shared_bytes(&s, &t),
              "%s: layout kt %d, Q %d, %lld bytes (the case is for kt %d, Q %d)", what, lay.kt,
              lay.stage_q, (long long)lay.bytes, w->kt, w->stage_q);
        Module m = {0};
        if (sel_compile(&m, &s, &t, MAP_NONE, err, sizeof err)) {
          CHECK(0, "%s: %s", what, err);
          ir_module_free(&m);
          continue;
        }
        AttnCase c;
        attn_case_init(&c, &s, 2, 2, w->N, ci % 2 == 1);
        attn_case_fill(&c, rng, true);
        c.lengths[1] = w->len1;
        run_case(&m, &c, sps[(ci + 2 * mode + causal) % 4], what);
        runs++;
        attn_case_free(&c);
        ir_module_free(&m);
      }
  printf("interpreter, staged warp hist: %d plans over several key tiles, races checked\n", runs);
}
