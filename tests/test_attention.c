/* The attention forward kernel against the double-precision reference, for every
 * select mode (none, row_topk, head_quantile, layer_quantile), causal or not:
 *   - host JIT over many shapes (n = 1, odd n, n not a multiple of the tile, a fresh
 *     random n, n = max_seq, all-equal scores, every valid length 1..n, s = 0 ..
 *     0.999, fused and separate layouts, keep_min, several tiles), every output
 *     (o, kept, lse, tau, entropies) poisoned first;
 *   - no valid row is empty and no output is NaN, even at s = 0.999, all ties, or
 *     scores so spread that most exponentials underflow;
 *   - dynamic padding and pad-to-max_seq give bit-identical outputs;
 *   - attention dropout: reproducible per seed, seed-dependent, off at p = 0, the
 *     dropped fraction of kept keys within 4 sigma of p, stats taken before it;
 *   - the GPU-mapped kernel in the IR interpreter (threads, warps, shared memory,
 *     races) for several block configurations, the staged warp schedule's several
 *     groups per block and short key tiles included; tiles that cannot fit refused;
 *   - row_topk on unquantized scores (no ties): kept = keep(M) exactly in every row.
 * Inputs with sparsity > 0 are quantized so the kernel's f32 scores are exact and
 * its kept sets and thresholds can be compared with the reference's exactly. In
 * quantile modes the group thresholds are inputs: the harness computes them with
 * attention_group_tau_ref. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../ir/interp.h"
#include "attn_harness.h"
#include "check.h"

static uint64_t rng;
static const double TOL = 1e-5;

static Spec make_spec(int head_dim, int max_seq, SelectKind sel, bool causal, int keep_min) {
  return harness_spec("t", sel, head_dim, max_seq, causal, keep_min);
}

/* One compiled host kernel per spec variant. */
typedef struct {
  Module m;
  Jit *jit;
  CpuKernelFn fn;
  TileConfig t;
} HostKernel;

static int host_compile(HostKernel *hk, const Spec *s, TileConfig t) {
  char err[1024];
  memset(hk, 0, sizeof *hk);
  hk->t = t;
  if (harness_compile(&hk->m, s, &t, MAP_CPU, err, sizeof err) ||
      !(hk->jit = jit_compile(&hk->m, err, sizeof err))) {
    CHECK(0, "compile: %s", err);
    ir_module_free(&hk->m);
    return -1;
  }
  hk->fn = jit_lookup(hk->jit, hk->m.kernels[0]->name);
  CHECK(hk->fn != NULL, "lookup %s", hk->m.kernels[0]->name);
  return hk->fn ? 0 : -1;
}

static void host_free(HostKernel *hk) {
  jit_free(hk->jit);
  ir_module_free(&hk->m);
}

static void run_host(HostKernel *hk, AttnCase *c, const AttnRun *r) {
  AttnArgs a;
  attn_case_poison(c);
  attn_args_run(&a, c, r);
  harness_run_jit(hk->fn, hk->m.kernels[0], &a);
}

/* Every valid row keeps at least one key. */
static bool rows_nonempty(const AttnCase *c) {
  for (int b = 0; b < c->l.B; b++)
    for (int h = 0; h < c->l.H; h++)
      for (int i = 0; i < c->lengths[b]; i++)
        if (c->kept[((int64_t)b * c->l.H + h) * c->l.N + i] < 1)
          return false;
  return true;
}

static void expect_ref(AttnCase *c, const AttnRun *r, const char *what, const char *where) {
  AttnErr e;
  attn_case_check(c, r, &e);
  bool nonempty = rows_nonempty(c);
  CHECK(e.o < TOL && e.lse < TOL && e.entropy < TOL && e.dense_entropy < TOL && e.kept_ok &&
            e.tau_ok && !e.unwritten && nonempty,
        "%s (%s): B=%d H=%d N=%d D=%d max_seq=%d s=%g p=%g stats=%d select=%s causal=%d "
        "keep_min=%d: err o %.3g lse %.3g H %.3g Hd %.3g, kept %s, tau %s (row %lld: kept %d "
        "tau %g), %s%s", what, where, c->l.B, c->l.H, c->l.N, c->spec.head_dim,
        c->spec.max_seq, r->sparsity, r->dropout, r->stats, select_name(c->spec.select),
        c->spec.causal, c->spec.keep_min, e.o, e.lse, e.entropy, e.dense_entropy,
        e.kept_ok ? "ok" : "WRONG", e.tau_ok ? "ok" : "WRONG", (long long)e.bad_row,
        e.bad_row >= 0 ? c->kept[e.bad_row] : 0, e.bad_row >= 0 ? c->tau[e.bad_row] : 0.0,
        e.unwritten ? "UNWRITTEN/NaN outputs " : "", nonempty ? "" : "EMPTY rows");
}

static void check_case(HostKernel *hk, AttnCase *c, const AttnRun *r, const char *what) {
  run_host(hk, c, r);
  char where[64];
  snprintf(where, sizeof where, "host tile %d/%d%s", hk->t.rows, hk->t.warps,
           hk->t.sched == SCHED_TILE ? " (tile schedule)" : "");
  expect_ref(c, r, what, where);
}

static void random_lengths(AttnCase *c) {
  for (int b = 0; b < c->l.B; b++)
    c->lengths[b] = 1 + (int)(harness_uniform(&rng) * c->l.N);
}

static bool needs_quantized(const Spec *s, double sp) { return sp > 0 || s->select != SEL_NONE; }

static void shapes(HostKernel *hk, const Spec *s) {
  static const double sparsities[] = {0.0, 0.5, 0.8, 0.999};
  int fresh = 2 + (int)(harness_uniform(&rng) * (s->max_seq - 1));
  int ns[] = {1, 7, 33, fresh, s->max_seq};
  for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
    for (size_t si = 0; si < 4; si++) {
      if (ns[ni] > s->max_seq)
        continue;
      double sp = sparsities[si];
      AttnCase c;
      int B = ns[ni] > 128 ? 1 : 2, H = ns[ni] > 128 ? 2 : 3;
      attn_case_init(&c, s, B, H, ns[ni], (ni + si) % 2 == 0);
      attn_case_fill(&c, &rng, needs_quantized(s, sp));
      if (ni % 2)
        random_lengths(&c);
      check_case(hk, &c, &(AttnRun){.sparsity = sp, .stats = (int)(ni + si) % 4}, "shape");
      attn_case_free(&c);
    }
}

/* The tile forward's P.V runs a chunk of 32 keys in order when >= 3/4 of them are
 * used by some row of a group of 4 (zero weights included), else its used keys only:
 * s = 0.6 makes most chunks of the first kind with unused keys in them (a group uses
 * ~87% of the keys), s = 0.8 the second (~59%), n = 80 and 150 end in a partial
 * chunk, causal rows of a group see different key counts, dropout zeroes more weights. */
static void pv_chunk_paths(HostKernel *hk, const Spec *s) {
  static const double sps[] = {0.6, 0.8};
  static const int ns[] = {80, 150};
  for (int ni = 0; ni < 2; ni++)
    for (int si = 0; si < 2; si++)
      for (int drop = 0; drop < 2; drop++) {
        if (ns[ni] > s->max_seq)
          continue;
        AttnCase c;
        attn_case_init(&c, s, 2, 2, ns[ni], drop);
        attn_case_fill(&c, &rng, true);
        AttnRun r = {.sparsity = sps[si], .stats = 1};
        if (drop)
          r.dropout = 0.2f, r.seed = 9, r.step = (uint32_t)si, r.layer = 1;
        check_case(hk, &c, &r, "P.V chunk paths");
        attn_case_free(&c);
      }
}

/* every valid length 1..n, one example each */
static void every_length(HostKernel *hk, const Spec *s, int n) {
  AttnCase c;
  attn_case_init(&c, s, n, 2, n, true);
  attn_case_fill(&c, &rng, true);
  for (int b = 0; b < n; b++)
    c.lengths[b] = b + 1;
  check_case(hk, &c, &(AttnRun){.sparsity = 0.8, .stats = 3}, "every length");
  check_case(hk, &c, &(AttnRun){.sparsity = 0.0, .stats = 3}, "every length");
  check_case(hk, &c, &(AttnRun){.sparsity = 0.999, .stats = 3}, "every length");
  attn_case_free(&c);
}

/* all scores equal (q = 0): every key ties at tau and is kept, tau = -inf */
static void all_equal(HostKernel *hk, const Spec *s) {
  int n = s->max_seq < 37 ? s->max_seq : 37;
  for (int si = 0; si < 2; si++) {
    AttnCase c;
    attn_case_init(&c, s, 2, 2, n, false);
    attn_case_fill(&c, &rng, true);
    for (int64_t i = 0; i < c.qkv_count; i++)
      c.q[i] = 0;
    check_case(hk, &c, &(AttnRun){.sparsity = si ? 0.999 : 0.8, .stats = 3}, "all equal");
    bool ok = true;
    for (int64_t i = 0; i < c.kept_count; i++) {
      int valid = s->causal ? (int)(i % n) + 1 : n;
      ok &= c.kept[i] == valid && c.tau[i] == -INFINITY && !isnan(c.lse[i]) &&
            fabs(c.entropy[i] - log(valid)) < 1e-5;
    }
    CHECK(ok, "all equal (%s causal=%d): every key must be kept with tau = -inf and "
          "entropy log(M)", select_name(s->select), s->causal);
    attn_case_free(&c);
  }
}

/* scores spread over hundreds: most e^(S - max) underflow to 0 in f32, which must
 * drop out of P.V and of the entropies without a NaN */
static void extreme_scores(HostKernel *hk, const Spec *s) {
  int n = s->max_seq < 45 ? s->max_seq : 45;
  AttnCase c;
  attn_case_init(&c, s, 2, 2, n, false);
  attn_case_fill(&c, &rng, true);
  for (int64_t i = 0; i < c.qkv_count; i++)
    c.q[i] *= 8, c.k[i] *= 8;   /* still exact: dots are multiples of 4 below 2^12 */
  random_lengths(&c);
  check_case(hk, &c, &(AttnRun){.sparsity = 0.5, .stats = 3}, "extreme scores");
  check_case(hk, &c, &(AttnRun){.sparsity = 0.0, .dropout = 0.5f, .seed = 3, .stats = 3},
             "extreme scores");
  attn_case_free(&c);
}

/* row_topk on unquantized scores, spread narrow to wide: the k-th largest search
 * (attention_kth.c) then stops on its interpolated probes rather than on a tie, which
 * the quantized cases above cannot show. Every valid row must keep keep(M) keys, more
 * only where f32 scores tie at tau (ties are kept; at scale 30 a seed gave two equal
 * f32 scores at tau in one row): the excess may not exceed the keys whose double
 * score lies within f32 rounding of tau, besides tau's own. */
static int near_tau(const AttnCase *c, int b, int h, int i, int64_t m, float tau) {
  int D = c->spec.head_dim, near = 0;
  const float *q = c->q + b * c->l.qkv_sb + i * c->l.qkv_sn + h * c->l.qkv_sh;
  for (int64_t j = 0; j < m; j++) {
    const float *k = c->k + b * c->l.qkv_sb + j * c->l.qkv_sn + h * c->l.qkv_sh;
    double dot = 0, mag = 0;
    for (int d = 0; d < D; d++)
      dot += (double)q[d] * k[d], mag += fabs((double)q[d] * k[d]);
    near += fabs(dot / sqrt(D) - tau) <= 1e-5 * (mag / sqrt(D) + fabs(tau));
  }
  return near;
}

static void untied_topk(HostKernel *hk, const Spec *s) {
  static const float scales[] = {1e-3f, 1.0f, 30.0f};
  int n = s->max_seq < 300 ? s->max_seq : 300;
  for (int si = 0; si < 3; si++) {
    AttnCase c;
    attn_case_init(&c, s, 2, 2, n, si == 1);
    attn_case_fill(&c, &rng, false);
    for (int64_t i = 0; i < c.qkv_count; i++)
      c.q[i] *= scales[si];
    random_lengths(&c);
    for (int pi = 0; pi < 3; pi++) {
      double sp = (double[]){0.3, 0.8, 0.97}[pi];
      AttnRun run = {.sparsity = sp};
      run_host(hk, &c, &run);
      bool ok = true;
      int64_t bad = -1;
      for (int b = 0; b < c.l.B; b++)
        for (int h = 0; h < c.l.H; h++)
          for (int i = 0; i < c.lengths[b]; i++) {
            int64_t at = ((int64_t)b * c.l.H + h) * c.l.N + i;
            int64_t m = s->causal && i + 1 < c.lengths[b] ? i + 1 : c.lengths[b];
            int64_t keep = attention_keep_count(sp, s->keep_min, m);
            bool fine = c.kept[at] == keep ||
                        (c.kept[at] > keep && c.kept[at] - keep < near_tau(&c, b, h, i, m, c.tau[at]));
            if (!fine && bad < 0)
              ok = false, bad = at;
          }
      CHECK(ok, "untied row_topk (scale %g, s = %g, causal %d, tile %d/%d): row %lld keeps %d",
            scales[si], sp, s->causal, hk->t.rows, hk->t.warps, (long long)bad,
            bad >= 0 ? c.kept[bad] : 0);
    }
    attn_case_free(&c);
  }
}

static bool same_rows(const AttnCase *x, const AttnCase *y, int n) {
  const AttnLayout *a = &x->l, *b = &y->l;
  int D = x->spec.head_dim;
  bool same = true;
  for (int bb = 0; bb < a->B; bb++)
    for (int h = 0; h < a->H; h++)
      for (int i = 0; i < n; i++) {
        same &= !memcmp(x->o + bb * a->o_sb + i * a->o_sn + h * a->o_sh,
                        y->o + bb * b->o_sb + i * b->o_sn + h * b->o_sh, (size_t)D * sizeof(float));
        int64_t r = ((int64_t)bb * a->H + h) * a->N + i, q = ((int64_t)bb * b->H + h) * b->N + i;
        same &= x->kept[r] == y->kept[q] && !memcmp(&x->lse[r], &y->lse[q], 4) &&
                !memcmp(&x->tau[r], &y->tau[q], 4) && !memcmp(&x->entropy[r], &y->entropy[q], 4) &&
                !memcmp(&x->dense_entropy[r], &y->dense_entropy[q], 4);
      }
  return same;
}

/* dynamic padding (N = longest) and pad-to-max_seq give the same numbers */
static void padding_independent(HostKernel *hk, const Spec *s) {
  int n = s->max_seq < 21 ? s->max_seq : 21, B = 3, H = 2, D = s->head_dim;
  AttnCase dyn, pad;
  attn_case_init(&dyn, s, B, H, n, false);
  attn_case_init(&pad, s, B, H, s->max_seq, false);
  attn_case_fill(&dyn, &rng, true);
  attn_case_fill(&pad, &rng, true);   /* padding holds garbage */
  for (int b = 0; b < B; b++) {
    dyn.lengths[b] = pad.lengths[b] = n - (n / 4) * b;
    for (int i = 0; i < n; i++)
      for (int h = 0; h < H; h++)
        for (int d = 0; d < D; d++) {
          int64_t x = b * dyn.l.qkv_sb + i * dyn.l.qkv_sn + h * dyn.l.qkv_sh + d;
          int64_t y = b * pad.l.qkv_sb + i * pad.l.qkv_sn + h * pad.l.qkv_sh + d;
          pad.q[y] = dyn.q[x], pad.k[y] = dyn.k[x], pad.v[y] = dyn.v[x];
        }
  }
  AttnRun r = {.sparsity = 0.8, .dropout = 0.2f, .seed = 5, .step = 1, .layer = 2, .stats = 3};
  check_case(hk, &dyn, &r, "dynamic padding");
  check_case(hk, &pad, &r, "pad to max_seq");
  CHECK(same_rows(&dyn, &pad, n), "padding changed the outputs of valid rows (%s causal=%d)",
        select_name(s->select), s->causal);
  attn_case_free(&dyn);
  attn_case_free(&pad);
}

static bool same_floats(const float *x, const float *y, int64_t n) {
  return !memcmp(x, y, (size_t)n * sizeof(float));
}

/* Attention dropout: the reference (dropout.h's C functions) is the truth for the
 * mask; the kernel must match it, be reproducible, depend on the seed, be off at
 * p = 0, and leave kept/lse/tau/entropies as without dropout. */
static void dropout(HostKernel *hk, const Spec *s) {
  int n = s->max_seq < 29 ? s->max_seq : 29;
  AttnCase c;
  attn_case_init(&c, s, 2, 3, n, true);
  attn_case_fill(&c, &rng, true);
  random_lengths(&c);
  int64_t no = c.o_count, nr = c.kept_count;
  float *keep = malloc((size_t)(no + 4 * nr) * sizeof(float));
  AttnRun r = {.sparsity = 0.5, .dropout = 0.25f, .seed = 11, .step = 3, .layer = 1, .stats = 3};
  check_case(hk, &c, &r, "dropout");
  memcpy(keep, c.o, (size_t)no * sizeof(float));
  memcpy(keep + no, c.lse, (size_t)nr * sizeof(float));
  memcpy(keep + no + nr, c.tau, (size_t)nr * sizeof(float));
  memcpy(keep + no + 2 * nr, c.entropy, (size_t)nr * sizeof(float));
  memcpy(keep + no + 3 * nr, c.dense_entropy, (size_t)nr * sizeof(float));
  run_host(hk, &c, &r);
  CHECK(same_floats(keep, c.o, no), "dropout: the same seed gave a different output");
  run_host(hk, &c, &(AttnRun){0.5, 0.25f, 12, 3, 1, 3});
  CHECK(!same_floats(keep, c.o, no), "dropout: another seed gave the same output");
  run_host(hk, &c, &(AttnRun){0.5, 0.25f, 11, 4, 1, 3});
  CHECK(!same_floats(keep, c.o, no), "dropout: another step gave the same output");
  AttnRun off = {.sparsity = 0.5, .dropout = 0, .seed = 11, .step = 3, .layer = 1, .stats = 3};
  check_case(hk, &c, &off, "dropout = 0");
  CHECK(same_floats(keep + no, c.lse, nr) && same_floats(keep + no + nr, c.tau, nr) &&
            same_floats(keep + no + 2 * nr, c.entropy, nr) &&
            same_floats(keep + no + 3 * nr, c.dense_entropy, nr),
        "dropout changed lse, tau or the entropies (they are taken before dropout)");
  memcpy(keep, c.o, (size_t)no * sizeof(float));
  run_host(hk, &c, &(AttnRun){.sparsity = 0.5, .seed = 99, .stats = 3});
  CHECK(same_floats(keep, c.o, no), "dropout = 0: the seed changed the output");
  free(keep);
  attn_case_free(&c);
}

/* The dropped fraction of kept keys over a large row set: within 4 sigma of p. */
static void dropout_rate(HostKernel *hk, const Spec *s, float p) {
  int n = s->max_seq < 96 ? s->max_seq : 96;
  AttnCase c;
  attn_case_init(&c, s, 3, 4, n, false);
  attn_case_fill(&c, &rng, true);
  AttnRun r = {.sparsity = 0.3, .dropout = p, .seed = (uint32_t)(harness_uniform(&rng) * 1e9),
               .step = 7, .layer = 3, .stats = 0};
  run_host(hk, &c, &r);
  AttnErr e;
  attn_case_check(&c, &r, &e);
  double frac = (double)e.dropped / (double)e.kept_total;
  double sigma = sqrt(p * (1.0 - p) / (double)e.kept_total);
  CHECK(e.o < TOL && e.kept_ok && !e.unwritten && fabs(frac - p) < 4 * sigma,
        "dropout rate p=%g: dropped %lld of %lld kept (%.5f, 4 sigma %.5f), err o %.3g",
        (double)p, (long long)e.dropped, (long long)e.kept_total, frac, 4 * sigma, e.o);
  attn_case_free(&c);
}

static void host_suite(const Spec *s, TileConfig t) {
  HostKernel hk;
  if (host_compile(&hk, s, t))
    return;
  shapes(&hk, s);
  every_length(&hk, s, 11);
  all_equal(&hk, s);
  extreme_scores(&hk, s);
  if (s->select == SEL_ROW_TOPK)
    untied_topk(&hk, s);
  padding_independent(&hk, s);
  dropout(&hk, s);
  if (t.sched == SCHED_TILE)
    pv_chunk_paths(&hk, s);
  host_free(&hk);
}

/* The GPU mapping in the interpreter: small shapes, several block configurations. */
static void interp_suite(const Spec *s, TileConfig t) {
  char err[1024];
  Module m = {0};
  if (harness_compile(&m, s, &t, MAP_NONE, err, sizeof err)) {
    CHECK(0, "compile for interpreter: %s", err);
    return;
  }
  static const int ns[] = {1, 5, 19, 40};
  static const double sps[] = {0.0, 0.6, 0.999};
  for (int ni = 0; ni < 4; ni++)
    for (int si = 0; si < 3; si++) {
      AttnRun r = {.sparsity = sps[si], .stats = 3};
      if ((ni + si) % 3 == 1)
        r.dropout = 0.3f, r.seed = 77, r.step = (uint32_t)ni, r.layer = 4;
      AttnCase c;
      attn_case_init(&c, s, 2, 2, ns[ni], si == 1);
      attn_case_fill(&c, &rng, true);
      random_lengths(&c);
      attn_case_poison(&c);
      AttnArgs a;
      attn_args_run(&a, &c, &r);
      int32_t grid[3];
      ir_grid(m.kernels[0], a.args, grid);
      InterpOptions opt = {true, true};
      int rc = interp_run(m.kernels[0], a.args, a.counts, grid, &opt, err, sizeof err);
      CHECK(rc == 0, "interpreter (rows %d warps %d, %s causal=%d): %s", t.rows, t.warps,
            select_name(s->select), s->causal, err);
      char where[64];
      snprintf(where, sizeof where, "interpreter tile %d/%d%s", t.rows, t.warps,
               t.sched == SCHED_TILE ? " (tile schedule)" : "");
      if (!rc)
        expect_ref(&c, &r, "gpu mapping", where);
      attn_case_free(&c);
    }
  ir_module_free(&m);
}

/* The staged warp schedule's other regimes (attention_fwd_staged.c), which the small
 * specs above never reach: several groups of rows per block, and key tiles under 32
 * where max_seq leaves no room for 32 keys beside one row per warp. Each case checks
 * it is in the regime it claims, then runs the interpreter suite. */
static void staged_regimes(void) {
  static const struct {
    int head_dim, max_seq;
    TileConfig t;
    int group, keys;
  } cases[] = {
      {16, 2048, {16, 1, SCHED_WARP}, 4, 32},   /* 4 groups of 4 */
      {16, 2048, {6, 3, SCHED_WARP}, 3, 32},    /* 2 groups, one row per warp */
      {16, 3000, {8, 4, SCHED_WARP}, 4, 8},     /* 2 groups, 8-key tiles */
  };
  static const SelectKind modes[] = {SEL_NONE, SEL_ROW_TOPK, SEL_HEAD_QUANTILE,
                                     SEL_LAYER_QUANTILE};
  for (int ci = 0; ci < 3; ci++)
    for (int causal = 0; causal < 2; causal++) {
      Spec s = make_spec(cases[ci].head_dim, cases[ci].max_seq, modes[(ci + 2 * causal) % 4],
                         causal, 1 + causal);
      FwdStage st = attention_fwd_stage(&s, &cases[ci].t);
      CHECK(st.group == cases[ci].group && st.keys == cases[ci].keys && st.bytes <= 48 * 1024,
            "max_seq %d, tile %d/%d: group %d, keys %d, %lld bytes (expected %d, %d)",
            s.max_seq, cases[ci].t.rows, cases[ci].t.warps, st.group, st.keys,
            (long long)st.bytes, cases[ci].group, cases[ci].keys);
      interp_suite(&s, cases[ci].t);
    }
}

/* Tiles whose staged layout cannot fit are refused by tile_check with a message
 * naming shared memory; the largest spec still builds with one warp. */
static void staged_limits(void) {
  char err[256];
  Spec big = make_spec(256, 8192, SEL_ROW_TOPK, false, 1);
  TileConfig one = {16, 1, SCHED_WARP}, two = {16, 2, SCHED_WARP};
  FwdStage st = attention_fwd_stage(&big, &one);
  CHECK(tile_check(&big, &one, err, sizeof err) == 0 && st.group == 1 && st.keys == 8,
        "head_dim 256, max_seq 8192, one warp: group %d, keys %d (%s)", st.group, st.keys, err);
  CHECK(tile_check(&big, &two, err, sizeof err) != 0 && strstr(err, "shared memory"),
        "head_dim 256, max_seq 8192, two warps: accepted (group %d)",
        attention_fwd_stage(&big, &two).group);
  Spec def = make_spec(64, 512, SEL_ROW_TOPK, false, 1);
  st = attention_fwd_stage(&def, &(TileConfig){8, 4, SCHED_WARP});
  CHECK(st.group == 8 && st.keys == 32 && st.bytes == 4 * (32 * 65 + 8 * (512 + 65)),
        "default tile at max_seq 512: group %d, keys %d, %lld bytes", st.group, st.keys,
        (long long)st.bytes);
  st = attention_fwd_stage(&def, &(TileConfig){64, 1, SCHED_WARP});
  CHECK(st.group == 16, "rows 64 at max_seq 512: group %d (expected 4 groups of 16)", st.group);
}

int main(void) {
  rng = harness_seed();
  static const SelectKind modes[] = {SEL_NONE, SEL_ROW_TOPK, SEL_HEAD_QUANTILE,
                                     SEL_LAYER_QUANTILE};
  /* {64, 4}: four groups of 16 rows per block at max_seq 512 (attention_fwd_stage);
   * both forms of the warp schedule's sums on the host */
  static const TileConfig host_tiles[] = {{16, 1, SCHED_WARP_HOST}, {4, 2, SCHED_WARP},
                                          {6, 3, SCHED_WARP_HOST}, {64, 4, SCHED_WARP}};
  /* the CPU tile schedule: one group per block, and several groups */
  static const TileConfig cpu_tiles[] = {{4, 1, SCHED_TILE}, {32, 1, SCHED_TILE}};
  for (int mi = 0; mi < 4; mi++) {
    SelectKind sel = modes[mi];
    host_suite((Spec[]){make_spec(64, 512, sel, false, 1)}, host_tiles[mi]);
    host_suite((Spec[]){make_spec(32, 128, sel, true, 3)}, host_tiles[(mi + 1) % 4]);
    host_suite((Spec[]){make_spec(64, 512, sel, mi & 1, 1 + 2 * (mi >> 1))}, cpu_tiles[mi & 1]);
    host_suite((Spec[]){make_spec(32, 100, sel, !(mi & 1), 1)}, cpu_tiles[!(mi & 1)]);
  }
  host_suite((Spec[]){make_spec(128, 96, SEL_ROW_TOPK, false, 1)}, host_tiles[0]);
  host_suite((Spec[]){make_spec(8, 40, SEL_HEAD_QUANTILE, true, 1)}, host_tiles[0]);
  host_suite((Spec[]){make_spec(40, 64, SEL_LAYER_QUANTILE, false, 70)}, host_tiles[2]);
  {
    HostKernel hk;
    Spec s = make_spec(64, 512, SEL_NONE, false, 1);
    if (!host_compile(&hk, &s, host_tiles[0])) {
      dropout_rate(&hk, &s, 0.1f);
      dropout_rate(&hk, &s, 0.5f);
      host_free(&hk);
    }
  }
  static const TileConfig tiles[] = {{1, 1, SCHED_WARP}, {4, 2, SCHED_WARP},
                                     {8, 4, SCHED_WARP}, {6, 3, SCHED_WARP},
                                     {8, 1, SCHED_TILE}, {4, 1, SCHED_TILE}};
  for (int mi = 0; mi < 4; mi++)
    for (int i = 0; i < 6; i++) {
      int keep_min = 1 + (i & 1);
      interp_suite((Spec[]){make_spec(16, 48, modes[mi], false, keep_min)}, tiles[i]);
      interp_suite((Spec[]){make_spec(8, 40, modes[mi], true, 3 - keep_min)}, tiles[i]);
    }
  /* d past one warp's lanes: each lane owns two slices of d (D = 64), the second
   * partly past D (D = 40) */
  interp_suite((Spec[]){make_spec(40, 48, SEL_ROW_TOPK, false, 1)}, tiles[1]);
  interp_suite((Spec[]){make_spec(64, 48, SEL_HEAD_QUANTILE, true, 2)}, tiles[2]);
  staged_regimes();
  staged_limits();
  return check_summary();
}
