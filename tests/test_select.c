/* The select kernels (templates/attention_select.h) against attention_group_tau_ref:
 *   - host JIT of the launch plan (hist blocks split over two threads at once, so
 *     the global atomics are real) for head_quantile and layer_quantile, causal or
 *     not, B/H/N from 1 up, padded and empty lengths, all-equal scores, s = 0 ..
 *     0.999, keep_min; the buffers start as garbage (init must clean them) and the
 *     histogram must be all zero after a plan that uses it;
 *     with the CPU default (the tile schedule), GPU tiles and tile-schedule tiles
 *     of 8 and 4 rows (the tile hist block is a whole head whatever the rows;
 *     N from 1 gives partial row groups);
 *   - the GPU-mapped kernels in the IR interpreter (races and uninitialised reads
 *     checked) with two warp-schedule and two tile-schedule configurations, the
 *     latter with candidate buffers of no, some and every row group (cand_cap);
 *   - groups that keep every score (tau = -inf): s = 0, and groups of one or two
 *     rows at s = 0.1, through the radix and bracket plans (round 0's and
 *     pick(SAMPLE)'s own checks) and the plan callers get (at s = 0 one pick, no
 *     init or hist: counted launches);
 *   - the plans and the API without kernels (select_plan.c): launch sequences,
 *     plan kinds, attention_select_keeps_all against the reference's keep count;
 *   - PTX of the select kernels through ptxas sm_80/sm_90, without spills.
 * q and k are quantized (multiples of 1/4 in [-1, 1]) so the f32 dot products are
 * exact and tau must equal the reference's score bit for bit, as the f32 the
 * kernels compute (f32(dot) * f32(1/sqrt(D))). */
#define _POSIX_C_SOURCE 200809L   /* popen */
#define CHECK_SHARED
#define CHECK_OWNER

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../compiler/emit.h"
#include "fsutil.h"
#include "ptxas_util.h"
#include "../ir/interp.h"
#include "select_harness.h"
#include "../templates/attention_tile.h"
#include "check.h"

static uint64_t rng;

static Spec make_spec(SelectKind sel, int head_dim, bool causal, int keep_min) {
  return harness_spec("t", sel, head_dim, 128, causal, keep_min);
}

static const char *describe(const Spec *s, char *buf, size_t cap) {
  snprintf(buf, cap, "%s D=%d causal=%d keep_min=%d", select_name(s->select), s->head_dim,
           s->causal, s->keep_min);
  return buf;
}

static uint32_t bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

/* tau (bitwise) against the reference; the histogram must be zero again after a
 * plan that used it (hist_used: all but SELECT_PLAN_ALL_KEPT and SELECT_PLAN_WHOLE,
 * which write tau and rank only). */
static void check_taus(AttnCase *c, SelArgs *a, double s, bool hist_used, const char *what) {
  double *ref = malloc((size_t)a->G * sizeof(double));
  int G = attention_group_tau_ref(&c->spec, &c->l, c->q, c->k, c->lengths, s, ref);
  int bad = 0, first = -1;
  for (int g = 0; g < G; g++)
    if (bits(a->tau[g]) != bits(sel_kernel_score(ref[g], c->spec.head_dim)) && bad++ == 0)
      first = g;
  int64_t dirty = 0;
  for (int64_t i = 0; hist_used && i < (int64_t)G * SELECT_BINS; i++)
    dirty += a->hist[i] != 0;
  char d[96];
  CHECK(G == a->G && bad == 0 && dirty == 0,
        "%s: %s B=%d H=%d N=%d s=%g: %d of %d taus wrong (g=%d: %.9g, want %.9g), %lld "
        "histogram bins left nonzero", what, describe(&c->spec, d, sizeof d), c->l.B, c->l.H,
        c->l.N, s, bad, G, first, first >= 0 ? a->tau[first] : 0.0,
        first >= 0 ? sel_kernel_score(ref[first], c->spec.head_dim) : 0.0, (long long)dirty);
  free(ref);
}

/* ---- host JIT ---- */

/* One plan (hk->plan) on a's buffers, checked: the taus, and where the host picked
 * the all-kept plan, that it launched one pick and nothing that scores. */
static void run_checked(SelHost *hk, AttnCase *c, SelArgs *a, const char *what) {
  SelTrace tr;
  sel_trace_init(&tr, a->G);
  hk->trace = &tr;
  SelectPlanKind kind = sel_host_plan_kind(hk, a);
  int rc = sel_host_run(hk, a);
  hk->trace = NULL;
  CHECK(rc == 0, "%s: plan failed", what);
  check_taus(c, a, a->sparsity, kind != SELECT_PLAN_ALL_KEPT && kind != SELECT_PLAN_WHOLE,
             what);
  if (kind == SELECT_PLAN_WHOLE)
    CHECK(tr.launches[SELECT_KERNEL_INIT] == 0 && tr.launches[SELECT_KERNEL_HIST] == 1 &&
              tr.launches[SELECT_KERNEL_PICK] == 0,
          "%s: the whole-head plan (N = %d) launched init %d, hist %d, pick %d times", what,
          a->ints[2], tr.launches[SELECT_KERNEL_INIT], tr.launches[SELECT_KERNEL_HIST],
          tr.launches[SELECT_KERNEL_PICK]);
  if (kind == SELECT_PLAN_ALL_KEPT)
    CHECK(tr.launches[SELECT_KERNEL_INIT] == 0 && tr.launches[SELECT_KERNEL_HIST] == 0 &&
              tr.launches[SELECT_KERNEL_PICK] == 1,
          "%s: the all-kept plan (s = %g) launched init %d, hist %d, pick %d times", what,
          a->sparsity, tr.launches[SELECT_KERNEL_INIT], tr.launches[SELECT_KERNEL_HIST],
          tr.launches[SELECT_KERNEL_PICK]);
  sel_trace_free(&tr);
}

/* The plan on fresh (garbage) buffers, then again on the same ones, as a runtime
 * reuses them from batch to batch: the plan callers get (by N and s), for the tile
 * schedule also the sample + bracket plan whatever N is, and where the host finds
 * that every group keeps every score, also the radix plan (so that round 0's and
 * pick(SAMPLE)'s own all-kept checks are tested where callers skip them). */
static void host_case(SelHost *hk, AttnCase *c, double s, const char *what) {
  bool tile = ir_param_index(hk->m.kernels[SELECT_KERNEL_HIST], "cand") >= 0;
  static const SelPlan plans[3] = {SEL_PLAN_BY_LENGTH, SEL_PLAN_BRACKET, SEL_PLAN_RADIX};
  for (int p = 0; p < 3; p++) {
    hk->plan = plans[p];
    SelArgs a;
    sel_args(&a, c, s);
    bool all_kept = attention_select_keeps_all(&c->spec, c->l.B, c->l.H, c->l.N, s);
    if ((plans[p] == SEL_PLAN_BRACKET && !tile) || (plans[p] == SEL_PLAN_RADIX && !all_kept)) {
      sel_args_free(&a);
      continue;
    }
    run_checked(hk, c, &a, what);
    a.sparsity = s > 0.5 ? s - 0.4 : s + 0.3;
    run_checked(hk, c, &a, what);
    sel_args_free(&a);
  }
  hk->plan = SEL_PLAN_BY_LENGTH;
}

static void fill_equal(AttnCase *c, float value) {
  const AttnLayout *l = &c->l;
  for (int b = 0; b < l->B; b++)
    for (int i = 0; i < l->N; i++)
      for (int h = 0; h < l->H; h++)
        for (int d = 0; d < c->spec.head_dim; d++) {
          int64_t at = b * l->qkv_sb + i * l->qkv_sn + h * l->qkv_sh + d;
          c->q[at] = value;
          c->k[at] = value;
        }
}

static void host_shapes(SelHost *hk, const Spec *s) {
  static const double sparsities[] = {0.0, 0.5, 0.8, 0.999};
  static const int shapes[][3] = {{1, 1, 1}, {2, 3, 7}, {3, 2, 33}, {2, 2, 64}, {1, 2, 100}};
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
    AttnCase c;
    int B = shapes[si][0], H = shapes[si][1], N = shapes[si][2];
    attn_case_init(&c, s, B, H, N, si % 2 == 1);
    attn_case_fill(&c, &rng, true);
    for (size_t k = 0; k < sizeof sparsities / sizeof sparsities[0]; k++)
      host_case(hk, &c, sparsities[k], "host");
    /* padding, one example empty when B > 1 */
    for (int b = 0; b < B; b++)
      c.lengths[b] = b == 1 ? 0 : 1 + (int)(harness_uniform(&rng) * N);
    host_case(hk, &c, 0.8, "host padded");
    host_case(hk, &c, 0.5, "host padded");
    host_case(hk, &c, 0.0, "host padded");   /* every group -inf, the empty one +inf */
    /* groups of one or two rows keep every score at s = 0.1 (M = 1, 4; 3 causal):
     * -inf from the full plans' picks, next to the other groups' taus */
    for (int b = 0; b < B; b++)
      c.lengths[b] = b % 3 == 0 && N >= 2 ? 2 : b % 3 == 1 ? 1 : N;
    host_case(hk, &c, 0.1, "host one or two rows");
    /* every score equal: tau is that score, whatever keep is */
    for (int b = 0; b < B; b++)
      c.lengths[b] = N;
    fill_equal(&c, 0.25f);
    host_case(hk, &c, 0.8, "host all-equal");
    fill_equal(&c, -0.5f);
    c.lengths[0] = N > 2 ? N - 2 : N;
    host_case(hk, &c, 0.3, "host all-equal padded");
    attn_case_free(&c);
  }
}

/* Unquantized inputs: the kernel's f32 scores round differently from the double
 * reference's, so tau agrees to rounding only. */
static void host_unquantized(SelHost *hk, const Spec *s) {
  AttnCase c;
  attn_case_init(&c, s, 2, 2, 50, false);
  attn_case_fill(&c, &rng, false);
  SelArgs a;
  sel_args(&a, &c, 0.8);
  CHECK(sel_host_run(hk, &a) == 0, "plan failed");
  double ref[4];
  int G = attention_group_tau_ref(&c.spec, &c.l, c.q, c.k, c.lengths, 0.8, ref);
  double worst = 0;
  for (int g = 0; g < G; g++)
    worst = fmax(worst, fabs(a.tau[g] - ref[g]) / fmax(fabs(ref[g]), 1e-3));
  CHECK(worst < 1e-5, "unquantized %s: tau relative error %.3g", select_name(s->select), worst);
  sel_args_free(&a);
  attn_case_free(&c);
}

static void test_host(void) {
  static const SelectKind modes[] = {SEL_HEAD_QUANTILE, SEL_LAYER_QUANTILE};
  static const int dims[] = {16, 64, 32};   /* 1/sqrt(32) is inexact: kernel_score rounds */
  int variants = 0;
  for (int mi = 0; mi < 2; mi++)
    for (int causal = 0; causal < 2; causal++)
      for (int di = 0; di < 3; di++) {
        Spec s = make_spec(modes[mi], dims[di], causal, di == 2 ? 5 : 1);
        /* the CPU default (tile schedule, 128 rows), a GPU tile, and small
         * tile-schedule tiles (their hist block is still a whole head) */
        TileConfig tiles[4] = {tile_resolve(&s, TUNE_CPU), {8, 4, SCHED_WARP},
                               {8, 1, SCHED_TILE}, {4, 1, SCHED_TILE}};
        for (int ti = 0; ti < (di == 0 ? 4 : 1); ti++) {
          SelHost hk;
          char err[1024];
          if (sel_host_compile(&hk, &s, &tiles[ti], err, sizeof err)) {
            CHECK(0, "compile select kernels: %s", err);
            continue;
          }
          host_shapes(&hk, &s);
          if (di == 1 && !causal)
            host_unquantized(&hk, &s);
          sel_host_free(&hk);
          variants++;
        }
      }
  printf("host JIT: %d compiled variants of the select plan\n", variants);
}

/* ---- the GPU mapping in the interpreter ---- */

typedef struct {
  const int64_t *counts;
  SelTrace *trace;
  char err[1024];
} InterpCtx;

static int launch_interp(void *ctx, SelectKernel which, Kernel *k, void **args,
                         const int32_t grid[3]) {
  InterpCtx *ic = ctx;
  int rc = interp_run(k, args, ic->counts, grid, NULL, ic->err, sizeof ic->err);
  sel_trace_record(ic->trace, which, args);
  return rc;
}

/* The tile schedule's one-launch plan for head_quantile (SELECT_PLAN_WHOLE, what
 * callers get at this N), in the interpreter: the taus, and one hist launch. Returns
 * the plans run. */
static int interp_whole(Module *m, const Spec *s, const TileConfig *t, AttnCase *c) {
  char d[96];
  if (!attention_select_whole(s, attention_select_has_cand(t), c->l.N))
    return 0;
  int runs = 0;
  for (int k = 0; k < 2; k++, runs++) {
    double sp = k ? 0.8 : 0.3;
    SelArgs a;
    SelTrace tr;
    sel_args(&a, c, sp);
    sel_trace_init(&tr, a.G);
    InterpCtx ic = {.counts = a.counts, .trace = &tr};
    int rc = attention_select_run(m->kernels, s, a.args, launch_interp, &ic);
    CHECK(rc == 0, "interp whole %s tile (%d, %d): %s", describe(s, d, sizeof d), t->rows,
          t->warps, ic.err);
    if (rc == 0)
      check_taus(c, &a, sp, false, "interp whole");
    CHECK(tr.launches[SELECT_KERNEL_HIST] == 1 && tr.launches[SELECT_KERNEL_INIT] == 0 &&
              tr.launches[SELECT_KERNEL_PICK] == 0,
          "interp whole %s: init %d, hist %d, pick %d launches (want 0, 1, 0)",
          describe(s, d, sizeof d), tr.launches[SELECT_KERNEL_INIT],
          tr.launches[SELECT_KERNEL_HIST], tr.launches[SELECT_KERNEL_PICK]);
    sel_trace_free(&tr);
    sel_args_free(&a);
  }
  return runs;
}

/* Groups that keep every score, in the interpreter: example 1 cut to two rows at
 * s = 0.1 (its groups -inf from round 0's or pick(SAMPLE)'s check, beside example
 * 0's taus), then s = 0 through the full plan (every group -inf; the tile schedule
 * settles all in pick(SAMPLE)) and through the plan callers get (one pick launched).
 * Returns the plans run. */
static int interp_all_kept(Module *m, const Spec *s, const TileConfig *t, AttnCase *c) {
  char d[96];
  bool tile = attention_select_has_cand(t);
  c->lengths[1] = 2;
  for (int k = 0; k < 3; k++) {
    double sp = k == 0 ? 0.1 : 0.0;
    SelArgs a;
    SelTrace tr;
    sel_args(&a, c, sp);
    sel_trace_init(&tr, a.G);
    InterpCtx ic = {.counts = a.counts, .trace = &tr};
    int rc = k < 2 ? attention_select_run_plan(m->kernels, a.args,
                                               tile ? SELECT_PLAN_BRACKET : SELECT_PLAN_RADIX,
                                               launch_interp, &ic)
                   : attention_select_run(m->kernels, s, a.args, launch_interp, &ic);
    CHECK(rc == 0, "interp all kept %s tile (%d, %d): %s", describe(s, d, sizeof d), t->rows,
          t->warps, ic.err);
    if (rc == 0)
      check_taus(c, &a, sp, k < 2, "interp all kept");
    sel_trace_count(&tr);
    CHECK(k != 1 || !tile || tr.count[PATH_SAMPLE] == a.G,
          "interp %s s = 0: %d of %d groups settled by pick(SAMPLE)", describe(s, d, sizeof d),
          tr.count[PATH_SAMPLE], a.G);
    CHECK(k != 2 || (tr.launches[SELECT_KERNEL_PICK] == 1 && tr.launches[SELECT_KERNEL_HIST] == 0 &&
                     tr.launches[SELECT_KERNEL_INIT] == 0),
          "interp %s s = 0, the plan by length: init %d, hist %d, pick %d launches (want 0, 0, 1)",
          describe(s, d, sizeof d), tr.launches[SELECT_KERNEL_INIT],
          tr.launches[SELECT_KERNEL_HIST], tr.launches[SELECT_KERNEL_PICK]);
    sel_trace_free(&tr);
    sel_args_free(&a);
  }
  return 3;
}

static void test_interp(void) {
  static const TileConfig tiles[] = {{4, 2, SCHED_WARP}, {3, 1, SCHED_WARP},
                                     {4, 1, SCHED_TILE}, {8, 1, SCHED_TILE}};
  static const SelectKind modes[] = {SEL_HEAD_QUANTILE, SEL_LAYER_QUANTILE};
  int runs = 0;
  for (int mi = 0; mi < 2; mi++)
    for (int causal = 0; causal < 2; causal++)
      for (int ti = 0; ti < 4; ti++) {
        Spec s = make_spec(modes[mi], 16, causal, 2);
        Module m = {0};
        char err[1024], d[96];
        if (sel_compile(&m, &s, &tiles[ti], MAP_NONE, err, sizeof err)) {
          CHECK(0, "compile %s: %s", describe(&s, d, sizeof d), err);
          ir_module_free(&m);
          continue;
        }
        AttnCase c;
        attn_case_init(&c, &s, 2, 2, 9, ti == 0);
        attn_case_fill(&c, &rng, true);
        c.lengths[1] = 6;
        /* the tile schedule's candidates and the path they make the groups take: the
         * default room (N = 9: the whole head is the sample), none (the radix rounds;
         * round 2 recomputes every score), and 120 (a sample of two of the three row
         * groups of example 0, then the bracket) */
        static const SelPath path[3] = {PATH_SAMPLE, PATH_RADIX, PATH_BRACKET};
        int caps[3] = {attention_select_cand_cap(c.l.N), 0, 120};
        for (int k = 0; k < 2; k++)
          for (int ci = 0; ci < (tiles[ti].sched == SCHED_TILE ? 3 : 1); ci++) {
            double sp = k ? 0.8 : 0.5;
            SelArgs a;
            SelTrace tr;
            sel_args_cap(&a, &c, sp, caps[ci]);
            sel_trace_init(&tr, a.G);
            InterpCtx ic = {.counts = a.counts, .trace = &tr};
            int rc = attention_select_run_plan(m.kernels, a.args,
                                               attention_select_has_cand(&tiles[ti])
                                                   ? SELECT_PLAN_BRACKET
                                                   : SELECT_PLAN_RADIX,
                                               launch_interp, &ic);
            CHECK(rc == 0, "interp %s tile (%d, %d) cand_cap %d: %s", describe(&s, d, sizeof d),
                  tiles[ti].rows, tiles[ti].warps, caps[ci], ic.err);
            if (rc == 0)
              check_taus(&c, &a, sp, true, "interp");
            sel_trace_count(&tr);
            CHECK(tiles[ti].sched != SCHED_TILE || tr.count[path[ci]] > 0,
                  "interp %s cand_cap %d: no group settled by path %d (sample %d, bracket %d, "
                  "radix %d)", describe(&s, d, sizeof d), caps[ci], (int)path[ci],
                  tr.count[PATH_SAMPLE], tr.count[PATH_BRACKET], tr.count[PATH_RADIX]);
            sel_trace_free(&tr);
            sel_args_free(&a);
            runs++;
          }
        runs += interp_whole(&m, &s, &tiles[ti], &c);
        runs += interp_all_kept(&m, &s, &tiles[ti], &c);
        attn_case_free(&c);
        ir_module_free(&m);
      }
  printf("interpreter: %d plans run with the GPU mapping, races checked\n", runs);
}

/* ---- PTX ---- */

static void run_ptxas(const char *ptxas, Target t, const char *ptx, size_t len, const char *what) {
  char err[512], path[96], cmd[1024];
  snprintf(path, sizeof path, "/tmp/crisp_select_%d_%s.ptx", (int)getpid(), target_name(t));
  if (rt_write_atomic(path, ptx, len, err, sizeof err)) {
    CHECK(0, "%s", err);
    return;
  }
  snprintf(cmd, sizeof cmd, "%s -v -arch=%s %s -o /dev/null 2>&1", ptxas, target_name(t), path);
  FILE *p = popen(cmd, "r");
  char *out = malloc(1 << 16);
  size_t n = p && out ? fread(out, 1, (1 << 16) - 1, p) : 0;
  if (out)
    out[n] = 0;
  int rc = p ? pclose(p) : -1;
  int spills = out ? count(out, "spill stores") : 0;
  int zero = out ? count(out, " 0 bytes spill stores") : 0;
  CHECK(rc == 0 && spills == SELECT_NKERNELS && zero == spills,
        "%s: ptxas -arch=%s: rc %d, %d functions, %d spill-free:\n%s", what, target_name(t), rc,
        spills, zero, out ? out : "");
  if (getenv("CRISP_TEST_VERBOSE") && out)
    fputs(out, stdout);
  unlink(path);
  free(out);
}

static void test_ptx(void) {
  const char *ptxas = find_ptxas();
  if (!ptxas)
    printf("ptxas not found: PTX is emitted but not assembled\n");
  /* the GPU default, a causal one, and the H100's best forward tile at n = 512 (its
   * hist block stages no Q rows: select_warp_layout), and the default at max_seq 64 (head:
   * the whole-head round) */
  static const TileConfig tiles[] = {{8, 4, SCHED_WARP}, {16, 8, SCHED_WARP}, {64, 1, SCHED_WARP},
                                     {8, 4, SCHED_WARP}};
  static const Target targets[] = {TARGET_SM90, TARGET_SM80};
  int assembled = 0;
  for (int mi = 0; mi < 2; mi++)
    for (int ti = 0; ti < 4; ti++)
      for (int tt = 0; tt < 2; tt++) {
        Spec s = make_spec(mi ? SEL_LAYER_QUANTILE : SEL_HEAD_QUANTILE, 64, ti == 1, 1);
        if (ti == 3)   /* head_quantile: the warp schedule's whole-head round */
          s.max_seq = SELECT_WARP_WHOLE_SEQ;
        char err[1024], d[96], what[160];
        snprintf(what, sizeof what, "%s max_seq %d tile (%d, %d)", describe(&s, d, sizeof d),
                 s.max_seq, tiles[ti].rows, tiles[ti].warps);
        Module m = {0};
        if (sel_compile(&m, &s, &tiles[ti], MAP_GPU, err, sizeof err)) {
          CHECK(0, "%s: %s", what, err);
          ir_module_free(&m);
          continue;
        }
        char *ptx = NULL;
        size_t len = 0;
        int ok = !emit_module(&m, targets[tt], EMIT_ASM, &ptx, &len, err, sizeof err);
        CHECK(ok, "%s: PTX for %s: %s", what, target_name(targets[tt]), err);
        if (ok) {
          CHECK(count(ptx, ".entry ") == SELECT_NKERNELS && strstr(ptx, "atom.shared.add.u32") &&
                    strstr(ptx, "atom.global.add.u32"),
                "%s: PTX lacks the kernels or their atomics", what);
          if (getenv("CRISP_TEST_PTX"))
            fputs(ptx, stdout);
          if (ptxas) {
            run_ptxas(ptxas, targets[tt], ptx, len, what);
            assembled++;
          }
        }
        free(ptx);
        ir_module_free(&m);
      }
  printf("ptxas: %d modules of %d select kernels assembled (sm_90, sm_80)\n", assembled,
         SELECT_NKERNELS);
}

int main(void) {
  rng = harness_seed();
  sel_test_plan();
  test_host();
  test_interp();
  sel_test_warp(&rng);
  test_ptx();
  LLVMShutdown();
  return check_summary();
}
