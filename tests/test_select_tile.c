/* The select kernels of the CPU tile schedule (templates/attention_select_tile.c)
 * on unquantized inputs, where the order of a dot product's roundings shows:
 *   - tau_group must equal, bit for bit, the keep-th largest of the tile schedule's
 *     own f32 scores (an in-order fmaf chain over d, times f32(1/sqrt(D)), emulated
 *     here in C), for head_quantile and layer_quantile, causal or not, padded and
 *     empty examples, D with an exact and an inexact 1/sqrt(D);
 *   - the tile forward, fed that tau_group, must keep exactly the entries
 *     S >= min(tau_group, the row's keep_min-th largest) of those scores in every
 *     row: select and forward agree on the kept set;
 *   - the same taus whatever the candidate buffer holds: every row group of a head
 *     stored in round 1, none (round 2 recomputes all), or the first groups only
 *     (the others binned directly and recomputed), which must happen in some head.
 * test_select.c checks the same kernels against the double reference on quantized
 * inputs (where every summation order gives the same bits), in the interpreter too. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "emit.h"
#include "select_harness.h"
#include "../templates/attention_select_impl.h"
#include "../templates/attention_tile.h"
#include "check.h"

static uint64_t rng;

static Spec make_spec(SelectKind sel, int D, bool causal, int keep_min) {
  return harness_spec("st", sel, D, 160, causal, keep_min);
}

/* S_ij as tile_scores computes it (attention_tile.h). */
static float tile_score(const AttnCase *c, int b, int h, int i, int j) {
  const AttnLayout *l = &c->l;
  int D = c->spec.head_dim;
  const float *q = c->q + b * l->qkv_sb + i * l->qkv_sn + h * l->qkv_sh;
  const float *k = c->k + b * l->qkv_sb + j * l->qkv_sn + h * l->qkv_sh;
  float acc = 0;
  for (int d = 0; d < D; d++)
    acc = fmaf(q[d], k[d], acc);
  return acc * (float)(1.0 / sqrt((double)D));
}

/* Appends the valid scores of (b, h) to out; returns the new count. */
static int64_t head_scores(const AttnCase *c, int b, int h, float *out, int64_t n) {
  int L = c->lengths[b];
  for (int i = 0; i < L; i++)
    for (int j = 0; j < attention_valid_keys(&c->spec, i, L); j++)
      out[n++] = tile_score(c, b, h, i, j);
  return n;
}

/* tau_group from the emulated scores, by the reference's rule
 * (attention_group_tau_of_ref: the keep-th largest, +inf for no scores, -inf when
 * every score is kept) over their exact double values. */
static void expected_taus(const AttnCase *c, double sparsity, float *tau) {
  const AttnLayout *l = &c->l;
  size_t cap = (size_t)l->B * l->H * l->N * l->N;
  float *all = malloc(cap * sizeof(float));
  double *wide = malloc(cap * sizeof(double));
  bool per_head = c->spec.select == SEL_HEAD_QUANTILE;
  int64_t n = 0;
  int g = 0;
  for (int b = 0; b < l->B; b++)
    for (int h = 0; h < l->H; h++) {
      n = head_scores(c, b, h, all, per_head ? 0 : n);
      if (!per_head && (b < l->B - 1 || h < l->H - 1))
        continue;
      for (int64_t i = 0; i < n; i++)
        wide[i] = all[i];
      tau[g++] = (float)attention_group_tau_of_ref(wide, n, sparsity, c->spec.keep_min);
    }
  free(wide);
  free(all);
}

/* The tile forward's kept counts against S >= the row's tau from the emulated scores. */
static int check_forward_kept(CpuKernelFn fwd, Kernel *k, AttnCase *c, const float *tau,
                              double sparsity) {
  const AttnLayout *l = &c->l;
  AttnArgs fa;
  attn_args(&fa, c, sparsity);
  memcpy(c->tau_group, tau, (size_t)attention_select_groups(&c->spec, l->B, l->H) * 4);
  harness_run_jit(fwd, k, &fa);
  double *row = malloc((size_t)l->N * sizeof(double));
  int bad = 0;
  for (int b = 0; b < l->B; b++)
    for (int h = 0; h < l->H; h++)
      for (int i = 0; i < c->lengths[b]; i++) {
        int m = attention_valid_keys(&c->spec, i, c->lengths[b]), want = 0;
        for (int j = 0; j < m; j++)
          row[j] = tile_score(c, b, h, i, j);
        float tg = tau[c->spec.select == SEL_HEAD_QUANTILE ? b * l->H + h : 0];
        double thr = attention_row_tau_ref(&c->spec, row, m, sparsity, tg);
        for (int j = 0; j < m; j++)
          want += row[j] >= thr;
        bad += c->kept[((int64_t)b * l->H + h) * l->N + i] != want;
      }
  free(row);
  return bad;
}

static uint32_t bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

/* Rows of (b, h) whose keys round 1 stored as candidates (the cand header). */
static int rows_stored(const SelArgs *a, int bh) {
  return a->cand[(int64_t)bh * (a->cand_cap + SELECT_CAND_HEAD) + 1];
}

/* The sample's stride over row groups of lk keys, as attention_select_impl.h's rule
 * gives it (0: no sample fits). */
static int sample_stride(int lk, int cap) {
  int per = TILE_RT * lk > 1 ? TILE_RT * lk : 1, room = cap - TILE_RT * lk;
  int fit = (room < SELECT_SAMPLE_KEYS ? room : SELECT_SAMPLE_KEYS) / per;
  int ng = (lk + TILE_RT - 1) / TILE_RT;
  return fit <= 0 ? 0 : ng <= fit ? 1 : (ng + fit - 1) / fit;
}

/* The candidate capacities a case runs with: the default (the sample, then the
 * bracket or, for small heads, the whole head in the sample), none (no sample: the
 * radix rounds, round 2 recomputing every score), room for about one row group (no
 * sample; round 1 stores the first groups, the others are recomputed) and for two
 * (a sample of one group, so wide a bracket that round BRACKET overflows). */
enum { CAP_DEFAULT, CAP_NONE, CAP_ONE_GROUP, CAP_OVERFLOW, NCAPS };
static const char *const cap_names[NCAPS] = {"default", "none", "one group", "overflow"};

static int cand_cap(const AttnCase *c, int which) {
  int N = c->l.N;
  return which == CAP_DEFAULT ? attention_select_cand_cap(N)
         : which == CAP_NONE  ? 0
         : which == CAP_ONE_GROUP ? TILE_RT * N + 1
                                  : 2 * TILE_RT * N + 1;
}

/* The partial capacity must split some head into stored and recomputed rows, or the
 * case would not test the fallback next to the candidates. */
static bool splits_a_head(const AttnCase *c, const SelArgs *a) {
  for (int bh = 0; bh < c->l.B * c->l.H; bh++) {
    int r = rows_stored(a, bh);
    if (r > 0 && r < c->lengths[bh / c->l.H])
      return true;
  }
  return false;
}

/* Every group took path p. */
static bool all_by(const SelTrace *t, SelPath p) { return t->count[p] == t->G; }

/* Whether a full-length case (every L = N, s = 0.8, N >= 2 TILE_RT) took the paths it
 * must: the default capacity settles every group from the sample (whole head) or the
 * bracket, or none (`radix`: the sampled rows were made unlike the others); no
 * capacity and one group's go to the radix, the latter storing some rows in round 1;
 * two groups' sample a group, and round BRACKET overflows. */
static bool covered(const AttnCase *c, const SelArgs *a, const SelTrace *t, int ci, bool radix) {
  switch (ci) {
  case CAP_DEFAULT:
    return radix ? all_by(t, PATH_RADIX)
                 : all_by(t, sample_stride(c->l.N, a->cand_cap) == 1 ? PATH_SAMPLE : PATH_BRACKET);
  case CAP_ONE_GROUP:
    return all_by(t, PATH_RADIX) && splits_a_head(c, a);
  case CAP_OVERFLOW:
    for (int g = 0; g < t->G; g++)
      if (t->after_sample[g] != SELECT_BRACKETED)
        return false;
    return all_by(t, PATH_RADIX);
  default:
    return all_by(t, PATH_RADIX);
  }
}

/* The plan callers get (attention_select_run: by N and s): the same taus, bit for
 * bit; head_quantile up to N = 128 one hist launch and nothing else (the whole-head
 * plan), else the sample and bracket picks ran exactly when N >= SELECT_BRACKET_MIN_N
 * and s > 0; at s = 0 one pick and nothing that scores. */
static void by_length_case(SelHost *sh, AttnCase *c, double sparsity, const float *want,
                           const char *what) {
  SelArgs a;
  SelTrace tr;
  sel_args(&a, c, sparsity);
  sel_trace_init(&tr, a.G);
  sh->trace = &tr;
  sh->plan = SEL_PLAN_BY_LENGTH;
  SelectPlanKind kind = sel_host_plan_kind(sh, &a);
  int rc = sel_host_run(sh, &a), bad = 0;
  sh->trace = NULL;
  for (int g = 0; g < a.G; g++)
    bad += bits(a.tau[g]) != bits(want[g]);
  bool all = sparsity == 0;
  bool whole = c->spec.select == SEL_HEAD_QUANTILE && (int64_t)c->l.N * c->l.N <= SELECT_WHOLE_KEYS;
  int picks = c->l.N >= SELECT_BRACKET_MIN_N && !all && !whole ? 2 : 0;
  int scoring = tr.launches[SELECT_KERNEL_HIST] + tr.launches[SELECT_KERNEL_INIT];
  bool plan_ok = all     ? scoring == 0 && tr.launches[SELECT_KERNEL_PICK] == 1
                 : whole ? kind == SELECT_PLAN_WHOLE && tr.launches[SELECT_KERNEL_HIST] == 1 &&
                               tr.launches[SELECT_KERNEL_INIT] == 0 &&
                               tr.launches[SELECT_KERNEL_PICK] == 0
                         : scoring > 0;
  CHECK(rc == 0 && bad == 0 && tr.early_picks == picks && plan_ok,
        "%s %s N=%d s=%g, the plan by length: rc %d, %d of %d taus differ, %d sample/bracket "
        "picks ran (want %d), init + hist launches %d, picks %d", what,
        select_name(c->spec.select), c->l.N, sparsity, rc, bad, a.G, tr.early_picks, picks,
        scoring, tr.launches[SELECT_KERNEL_PICK]);
  sel_trace_free(&tr);
  sel_args_free(&a);
}

static void run_case(SelHost *sh, CpuKernelFn fwd, Kernel *fk, AttnCase *c, double sparsity,
                     const char *what) {
  float *want = malloc((size_t)attention_select_groups(&c->spec, c->l.B, c->l.H) * 4);
  expected_taus(c, sparsity, want);
  bool radix = !strcmp(what, "adversarial");
  for (int ci = 0; ci < NCAPS; ci++) {
    SelArgs a;
    SelTrace tr;
    sel_args_cap(&a, c, sparsity, cand_cap(c, ci));
    sel_trace_init(&tr, a.G);
    sh->trace = &tr;
    sh->plan = SEL_PLAN_BRACKET;   /* every path at every length; by_length below */
    int rc = sel_host_run(sh, &a), bad = 0, first = -1;
    sh->trace = NULL;
    sel_trace_count(&tr);
    for (int g = 0; g < a.G; g++)
      if (bits(a.tau[g]) != bits(want[g]) && bad++ == 0)
        first = g;
    int kept_bad = rc || ci != CAP_DEFAULT ? 0 : check_forward_kept(fwd, fk, c, a.tau, sparsity);
    /* at s = 0.8 tau's bin holds a few percent of the scores, more than fit beside the
     * first group; near s = 0 and 0.5 (tiny bins around 0) there may be too few */
    bool full = c->l.N >= 2 * TILE_RT && c->lengths[0] == c->l.N && sparsity == 0.8;
    bool paths = !full || covered(c, &a, &tr, ci, radix);
    CHECK(rc == 0 && bad == 0 && kept_bad == 0 && paths,
          "%s %s D=%d causal=%d B=%d H=%d N=%d s=%g, cand_cap %d (%s): plan rc %d, %d of %d "
          "taus differ from the tile scores' (g=%d: %.9g, want %.9g), %d rows with other "
          "kept counts%s (groups by sample %d, bracket %d, radix %d)", what,
          select_name(c->spec.select), c->spec.head_dim, c->spec.causal, c->l.B, c->l.H,
          c->l.N, sparsity, a.cand_cap, cap_names[ci], rc, bad, a.G, first,
          first >= 0 ? a.tau[first] : 0.0, first >= 0 ? want[first] : 0.0, kept_bad,
          paths ? "" : ", and not the paths this capacity must take", tr.count[PATH_SAMPLE],
          tr.count[PATH_BRACKET], tr.count[PATH_RADIX]);
    sel_trace_free(&tr);
    sel_args_free(&a);
  }
  by_length_case(sh, c, sparsity, want, what);
  free(want);
}

/* The rows round SAMPLE scores (every stride-th row group) scaled up 30 times: the
 * sample then misplaces tau's bracket, and every group must fall back to the radix
 * (still exact). Needs a stride >= 2 (not the whole head). */
static void make_adversarial(AttnCase *c) {
  const AttnLayout *l = &c->l;
  int stride = sample_stride(l->N, attention_select_cand_cap(l->N));
  for (int b = 0; b < l->B; b++)
    for (int h = 0; h < l->H; h++)
      for (int i = 0; i < l->N; i++)
        if ((i / TILE_RT) % stride == 0)
          for (int d = 0; d < c->spec.head_dim; d++)
            c->q[b * l->qkv_sb + i * l->qkv_sn + h * l->qkv_sh + d] *= 30;
}

static int cmp_key_desc(const void *x, const void *y) {
  uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
  return a < b ? 1 : a > b ? -1 : 0;
}

/* The keep-th largest score of head (0, 0) by order keys (-0 below +0, as the radix
 * orders them), from the emulated scores. */
static float keyed_tau(const AttnCase *c, double sparsity) {
  float *all = malloc((size_t)c->l.N * c->l.N * sizeof(float));
  int64_t m = head_scores(c, 0, 0, all, 0);
  uint32_t *keys = malloc((size_t)m * sizeof(uint32_t));
  for (int64_t i = 0; i < m; i++) {
    uint32_t u = bits(all[i]);
    keys[i] = u >> 31 ? ~u : u | 0x80000000u;
  }
  qsort(keys, (size_t)m, sizeof *keys, cmp_key_desc);
  uint32_t k = keys[attention_keep_count(sparsity, c->spec.keep_min, m) - 1];
  uint32_t u = k >> 31 ? k & 0x7FFFFFFFu : ~k;
  float tau;
  memcpy(&tau, &u, 4);
  free(keys);
  free(all);
  return tau;
}

/* Signed zeros (head_quantile): scores of +-eps vectors underflow to +0 and -0 (a
 * quarter each, beside a quarter positive and a quarter negative), and tau, the
 * keep-th largest, is -0 where the radix's order keys put it there (-0 below +0). Every
 * plan must give those bits: the whole-head plan's counting search compares floats, in
 * which -0 == +0, and must restore the sign (attention_select_whole.c). */
static void test_signed_zeros(SelHost *sh, const Spec *s) {
  if (s->select != SEL_HEAD_QUANTILE)
    return;
  AttnCase c;
  attn_case_init(&c, s, 1, 1, 8, false);
  const AttnLayout *l = &c.l;
  for (int i = 0; i < l->N; i++)
    for (int d = 0; d < s->head_dim; d++) {
      c.q[i * l->qkv_sn + d] = i % 2 ? -1e-30f : 1e-30f;
      c.k[i * l->qkv_sn + d] = i < l->N / 2 ? 1e-30f : 1.0f;
    }
  static const double sps[2] = {0.375, 0.6875};   /* keep 40 of 64: -0; keep 20: +0 */
  static const SelPlan plans[3] = {SEL_PLAN_BY_LENGTH, SEL_PLAN_BRACKET, SEL_PLAN_RADIX};
  for (int si = 0; si < 2; si++) {
    float want = keyed_tau(&c, sps[si]);
    CHECK(want == 0 && (bits(want) >> 31) == (uint32_t)(si == 0),
          "signed zeros, causal %d: the case's tau is %g (sign %u), not the zero it is built for",
          s->causal, want, bits(want) >> 31);
    for (int p = 0; p < 3; p++) {
      SelArgs a;
      sel_args(&a, &c, sps[si]);
      sh->plan = plans[p];
      int rc = sel_host_run(sh, &a);
      CHECK(rc == 0 && bits(a.tau[0]) == bits(want),
            "signed zeros, causal %d, s = %g, plan %d (kind %d): tau %g (bits %08x), want %g "
            "(bits %08x)", s->causal, sps[si], (int)plans[p], (int)sel_host_plan_kind(sh, &a),
            a.tau[0], bits(a.tau[0]), want, bits(want));
      sel_args_free(&a);
    }
  }
  sh->plan = SEL_PLAN_BY_LENGTH;
  attn_case_free(&c);
}

/* The hist kernel's prefetches (attention_select_sample.c: the next key group's rows,
 * and in round WHOLE the next head's queries) must reach the host code: they change
 * no result, so only the assembly shows that they are there. */
static void check_prefetches(SelHost *sh, const Spec *s) {
  char err[512];
  char *text = NULL;
  size_t len = 0;
  if (emit_module(&sh->m, TARGET_HOST, EMIT_ASM, &text, &len, err, sizeof err)) {
    CHECK(0, "select kernels as host assembly: %s", err);
    return;
  }
  int n = 0;
  for (const char *p = text; (p = strstr(p, "prefetcht0")); p++)
    n++;
  /* per line of TILE_RT rows: the key rows before the pack and per key group in round
   * SAMPLE, the same in WHOLE (head_quantile) and there the next head's queries */
  int want = (s->select == SEL_HEAD_QUANTILE ? 5 : 2) * TILE_RT * (s->head_dim / 16);
  CHECK(n >= want, "%s D %d causal %d: %d prefetcht0 in the select kernels, want >= %d",
        select_name(s->select), s->head_dim, s->causal, n, want);
  free(text);
}

static void test_variant(const Spec *s, const TileConfig *t) {
  char err[1024];
  SelHost sh;
  if (sel_host_compile(&sh, s, t, err, sizeof err)) {
    CHECK(0, "compile select kernels: %s", err);
    return;
  }
  Module fm = {0};
  Jit *fj = NULL;
  CpuKernelFn fwd = NULL;
  if (harness_compile(&fm, s, t, MAP_CPU, err, sizeof err) ||
      !(fj = jit_compile(&fm, err, sizeof err)) || !(fwd = jit_lookup(fj, fm.kernels[0]->name)))
    CHECK(0, "compile the tile forward: %s", err);
  check_prefetches(&sh, s);
  test_signed_zeros(&sh, s);
  static const int shapes[][3] = {{2, 3, 37}, {3, 2, 130}, {1, 1, 5}};
  for (int si = 0; fwd && si < 3; si++) {
    AttnCase c;
    int B = shapes[si][0], H = shapes[si][1], N = shapes[si][2];
    attn_case_init(&c, s, B, H, N, si == 1);
    attn_case_fill(&c, &rng, false);
    run_case(&sh, fwd, fm.kernels[0], &c, 0.8, "full");
    run_case(&sh, fwd, fm.kernels[0], &c, 0.0, "full");
    if (sample_stride(N, attention_select_cand_cap(N)) >= 2) {
      make_adversarial(&c);
      run_case(&sh, fwd, fm.kernels[0], &c, 0.8, "adversarial");
    }
    for (int b = 0; b < B; b++)
      c.lengths[b] = b == 1 ? 0 : 1 + (int)(harness_uniform(&rng) * N);
    run_case(&sh, fwd, fm.kernels[0], &c, 0.5, "padded");
    run_case(&sh, fwd, fm.kernels[0], &c, 0.95, "padded");
    run_case(&sh, fwd, fm.kernels[0], &c, 0.0, "padded");   /* -inf, +inf for L = 0 */
    attn_case_free(&c);
  }
  jit_free(fj);
  ir_module_free(&fm);
  sel_host_free(&sh);
}

int main(void) {
  rng = harness_seed();
  static const SelectKind modes[] = {SEL_HEAD_QUANTILE, SEL_LAYER_QUANTILE};
  int variants = 0;
  for (int mi = 0; mi < 2; mi++)
    for (int causal = 0; causal < 2; causal++)
      for (int di = 0; di < 2; di++) {
        Spec s = make_spec(modes[mi], di ? 32 : 64, causal, 1 + 2 * di);
        /* tile = auto (128 rows), and a small tile (the hist block is a whole head) */
        TileConfig tiles[2] = {tile_resolve(&s, TUNE_CPU), {8, 1, SCHED_TILE}};
        CHECK(tiles[0].sched == SCHED_TILE, "tile = auto on the CPU: %s takes the tile schedule",
              select_name(s.select));
        test_variant(&s, &tiles[di]);
        variants++;
      }
  printf("%d variants: tile select taus are the tile forward's scores\n", variants);
  return check_summary();
}
