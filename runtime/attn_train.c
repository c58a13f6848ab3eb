/* One training-time attention call on a backend, checked and timed (attn_train.h). */
#include "attn_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../templates/attention_select.h"
#include "../templates/reference_bwd.h"
#include "attn_task.h"

/* the dropout mask's counters: arbitrary, non-zero, so the check covers them */
enum { TRAIN_SEED = 1234567, TRAIN_STEP = 42, TRAIN_LAYER = 3 };

static int alloc(AttnTrain *t, DevPtr *p, int64_t count, char *err, size_t cap) {
  if (rt_alloc(t->b, (size_t)(count > 0 ? count : 1) * 4, p)) {
    snprintf(err, cap, "%s", backend_error(t->b));
    return -1;
  }
  return 0;
}

static const RtKernel *kernel(AttnTrain *t, RtModule *m, const char *suffix, char *err,
                              size_t cap) {
  char name[128];
  snprintf(name, sizeof name, "%.63s_%s", t->spec.name, suffix);
  const RtKernel *k = rt_kernel(t->b, m, name);
  if (!k)
    snprintf(err, cap, "no kernel %s in the module: %s", name, backend_error(t->b));
  return k;
}

int attn_train_init(AttnTrain *t, Backend *b, RtModule *m, const Spec *s,
                    const AttnTrainShape *sh, char *err, size_t cap) {
  memset(t, 0, sizeof *t);
  t->b = b, t->spec = *s, t->sh = *sh;
  int B = sh->B, H = sh->H, N = sh->N, D = s->head_dim;
  if (B < 1 || H < 1 || N < 1 || N > s->max_seq) {
    snprintf(err, cap, "shape B=%d H=%d N=%d out of range (max_seq %d)", B, H, N, s->max_seq);
    return -1;
  }
  int64_t C = (int64_t)H * D;
  t->l = (AttnLayout){B, H, N, N * 3 * C, 3 * C, D, N * C, C, D};
  t->n_qkv = (int64_t)B * N * 3 * C, t->n_o = (int64_t)B * N * C, t->n_row = (int64_t)B * H * N;
  t->groups = attention_select_groups(s, B, H);
  t->qkv = malloc((size_t)t->n_qkv * sizeof *t->qkv);
  t->dout = malloc((size_t)t->n_o * sizeof *t->dout);
  t->lengths = malloc((size_t)B * sizeof *t->lengths);
  if (!t->qkv || !t->dout || !t->lengths) {
    snprintf(err, cap, "out of memory");
    attn_train_free(t);
    return -1;
  }
  char fused[128];   /* the tile schedule's one backward kernel, else the warp's two */
  snprintf(fused, sizeof fused, "%.63s_attn_bwd", s->name);
  if (!(t->fwd = kernel(t, m, "attn_fwd", err, cap)) ||
      (!(t->bwd[0] = rt_kernel(b, m, fused)) &&
       (!(t->bwd[0] = kernel(t, m, "attn_bwd_dq", err, cap)) ||
        !(t->bwd[1] = kernel(t, m, "attn_bwd_dkdv", err, cap))))) {
    attn_train_free(t);
    return -1;
  }
  for (int i = 0; i < SELECT_NKERNELS && t->groups > 0; i++)
    if (!(t->sel[i] = kernel(t, m, attention_select_kernel_name((SelectKernel)i), err, cap))) {
      attn_train_free(t);
      return -1;
    }
  int G = t->groups > 0 ? t->groups : 1;
  if (t->groups > 0 && rt_param_index(t->sel[SELECT_KERNEL_HIST]->info, "cand") >= 0)
    t->cand_cap = attention_select_cand_cap(N);
  if (alloc(t, &t->d_qkv, t->n_qkv, err, cap) || alloc(t, &t->d_dqkv, t->n_qkv, err, cap) ||
      alloc(t, &t->d_o, t->n_o, err, cap) || alloc(t, &t->d_dout, t->n_o, err, cap) ||
      alloc(t, &t->d_len, B, err, cap) || alloc(t, &t->d_kept, t->n_row, err, cap) ||
      alloc(t, &t->d_lse, t->n_row, err, cap) || alloc(t, &t->d_tau, t->n_row, err, cap) ||
      alloc(t, &t->d_ent, t->n_row, err, cap) || alloc(t, &t->d_delta, t->n_row, err, cap) ||
      alloc(t, &t->d_hist, (int64_t)G * SELECT_BINS, err, cap) ||
      alloc(t, &t->d_prefix, G, err, cap) || alloc(t, &t->d_rank, G, err, cap) ||
      alloc(t, &t->d_tg, G, err, cap) ||
      alloc(t, &t->d_cand, attention_select_cand_len(B, H, t->cand_cap), err, cap)) {
    attn_train_free(t);
    return -1;
  }
  return 0;
}

void attn_train_free(AttnTrain *t) {
  DevPtr *dev[] = {&t->d_qkv, &t->d_o, &t->d_dout, &t->d_len, &t->d_kept, &t->d_lse,
                   &t->d_tau, &t->d_ent, &t->d_delta, &t->d_dqkv, &t->d_hist, &t->d_prefix,
                   &t->d_rank, &t->d_tg, &t->d_cand};
  for (size_t i = 0; i < sizeof dev / sizeof *dev; i++)
    if (*dev[i])
      rt_free(t->b, *dev[i]);
  free(t->qkv);
  free(t->dout);
  free(t->lengths);
  memset(t, 0, sizeof *t);
}

static float quarter(uint64_t *rng) { return (float)(round((rt_rng_uniform(rng) * 2 - 1) * 4) / 4); }
static float uniform(uint64_t *rng) { return (float)(rt_rng_uniform(rng) * 2 - 1); }

int attn_train_fill(AttnTrain *t, uint64_t *rng) {
  const AttnLayout *l = &t->l;
  int64_t C = (int64_t)l->H * t->spec.head_dim;
  for (int64_t r = 0; r < (int64_t)l->B * l->N; r++)   /* one token: q, k, v of every head */
    for (int64_t c = 0; c < C; c++) {
      t->qkv[r * 3 * C + c] = quarter(rng);
      t->qkv[r * 3 * C + C + c] = quarter(rng);
      t->qkv[r * 3 * C + 2 * C + c] = uniform(rng);
    }
  for (int64_t i = 0; i < t->n_o; i++)
    t->dout[i] = uniform(rng);
  for (int b = 0; b < l->B; b++)
    t->lengths[b] = t->sh.random_lengths ? 1 + (int32_t)(rt_rng_next(rng) % (uint64_t)l->N) : l->N;
  if (t->sh.random_lengths && l->B > 1)
    t->lengths[0] = l->N;
  if (rt_h2d(t->b, t->d_qkv, t->qkv, (size_t)t->n_qkv * 4) ||
      rt_h2d(t->b, t->d_dout, t->dout, (size_t)t->n_o * 4) ||
      rt_h2d(t->b, t->d_len, t->lengths, (size_t)l->B * 4))
    return -1;
  return 0;
}

/* ---- launching: arguments by name (the contracts of templates.h, attention_bwd.h,
 * attention_select.h) ---- */

typedef struct Args {
  DevPtr q, k, v, dq, dk, dv;
  int32_t B, H, N, sb, sn, sh, osb, osn, osh, seed, step, layer, stats, round;
  double sparsity;
  float dropout;
} Args;

static int launch(AttnTrain *t, const RtKernel *k, const RtArg *tab, int n) {
  char err[512];
  if (rt_launch_named(t->b, k, tab, n, err, sizeof err)) {
    fprintf(stderr, "attn_train: %s\n", err);
    return -1;
  }
  return 0;
}

#define BUF(n, v) {n, true, RT_T_F32, &(v)}
#define I32(n, v) {n, false, RT_T_I32, &(v)}

int attn_train_run(AttnTrain *t, bool forward, bool backward) {
  const AttnLayout *l = &t->l;
  int64_t C = (int64_t)l->H * t->spec.head_dim;
  Args a = {.q = t->d_qkv, .k = t->d_qkv + 4 * C, .v = t->d_qkv + 8 * C, .dq = t->d_dqkv,
            .dk = t->d_dqkv + 4 * C, .dv = t->d_dqkv + 8 * C, .B = l->B, .H = l->H, .N = l->N,
            .sb = (int32_t)l->qkv_sb, .sn = (int32_t)l->qkv_sn, .sh = (int32_t)l->qkv_sh,
            .osb = (int32_t)l->o_sb, .osn = (int32_t)l->o_sn, .osh = (int32_t)l->o_sh,
            .seed = TRAIN_SEED, .step = TRAIN_STEP, .layer = TRAIN_LAYER, .stats = 0,
            .sparsity = t->sh.sparsity, .dropout = t->sh.dropout};
  const RtArg tab[] = {
      BUF("q", a.q), BUF("k", a.k), BUF("v", a.v), BUF("o", t->d_o), BUF("dout", t->d_dout),
      BUF("lengths", t->d_len), BUF("kept", t->d_kept), BUF("lse", t->d_lse),
      BUF("tau", t->d_tau), BUF("entropy", t->d_ent), BUF("dense_entropy", t->d_ent),
      BUF("tau_group", t->d_tg), BUF("hist", t->d_hist), BUF("prefix", t->d_prefix),
      BUF("rank", t->d_rank), BUF("delta", t->d_delta), BUF("dq", a.dq), BUF("dk", a.dk),
      BUF("dv", a.dv), I32("B", a.B), I32("H", a.H), I32("N", a.N), I32("qkv_sb", a.sb),
      I32("qkv_sn", a.sn), I32("qkv_sh", a.sh), I32("o_sb", a.osb), I32("o_sn", a.osn),
      I32("o_sh", a.osh), I32("dqkv_sb", a.sb), I32("dqkv_sn", a.sn), I32("dqkv_sh", a.sh),
      {"sparsity", false, RT_T_F64, &a.sparsity}, {"dropout", false, RT_T_F32, &a.dropout},
      I32("seed", a.seed), I32("step", a.step), I32("layer", a.layer), I32("stats", a.stats),
      I32("round", a.round), BUF("cand", t->d_cand), I32("cand_cap", t->cand_cap)};
  int n = (int)(sizeof tab / sizeof *tab);
  if (forward && t->groups > 0) {
    SelectLaunch plan[SELECT_PLAN_MAX];
    bool tile = rt_param_index(t->sel[SELECT_KERNEL_HIST]->info, "cand") >= 0;
    int np = attention_select_plan(
        attention_select_plan_kind(&t->spec, tile, a.B, a.H, a.N, a.sparsity), plan);
    for (int i = 0; i < np; i++) {
      a.round = plan[i].round;
      if (launch(t, t->sel[plan[i].kernel], tab, n))
        return -1;
    }
  }
  if (forward && launch(t, t->fwd, tab, n))
    return -1;
  for (int i = 0; backward && i < 2 && t->bwd[i]; i++)
    if (launch(t, t->bwd[i], tab, n))
      return -1;
  return 0;
}

#undef BUF
#undef I32

/* ---- checking ---- */

bool attn_train_ok(const AttnTrainErr *e) {
  double tol = ATTN_TRAIN_TOL_E6 * 1e-6;
  return e->kept_ok && e->tau_group_ok && !e->unwritten && e->o <= tol && e->lse <= tol &&
         e->dq <= tol && e->dk <= tol && e->dv <= tol && e->delta <= tol;
}

static void bad(AttnTrainErr *e, const char *fmt, const char *what, long long at, double got,
                double want) {
  if (!e->first_bad[0])
    snprintf(e->first_bad, sizeof e->first_bad, fmt, what, at, got, want);
}

/* max |x - ref| / scale over n elements at offsets off(i) (NULL: i); NaN = unwritten */
static double tensor_err(AttnTrainErr *e, const char *what, const float *x, const double *ref,
                         const int64_t *off, int64_t n, double scale) {
  double worst = 0;
  for (int64_t i = 0; i < n; i++) {
    int64_t at = off ? off[i] : i;
    if (isnan(x[at])) {
      bad(e, "%s[%lld] unwritten (got %g, reference %g)", what, (long long)at, x[at], ref[i]);
      e->unwritten = true;
      continue;
    }
    double d = fabs(x[at] - ref[i]) / scale;
    if (d > ATTN_TRAIN_TOL_E6 * 1e-6)
      bad(e, "%s[%lld] = %.9g, reference %.9g", what, (long long)at, x[at], ref[i]);
    worst = fmax(worst, d);
  }
  return worst;
}

static double max_abs(const double *x, int64_t n) {
  double m = 1e-30;
  for (int64_t i = 0; i < n; i++)
    m = fmax(m, fabs(x[i]));
  return m;
}

typedef struct Ref {
  double *o, *lse, *tau, *delta, *dq, *dk, *dv, *tg;
  float *q, *k, *v, *fdq;   /* q/k/v views copied out of qkv; fdq: device gradients */
  int64_t *off;             /* offset in qkv of element e of one tensor, e in [0, n_o) */
} Ref;

static void ref_free(Ref *r) {
  void *p[] = {r->o, r->lse, r->tau, r->delta, r->dq, r->dk, r->dv, r->tg, r->q, r->k, r->v,
               r->fdq, r->off};
  for (size_t i = 0; i < sizeof p / sizeof *p; i++)
    free(p[i]);
}

/* The reference for t's inputs, in per-tensor [B, N, H, D] order (off[] maps to qkv). */
static int reference(AttnTrain *t, Ref *r) {
  const AttnLayout *l = &t->l;
  int D = t->spec.head_dim;
  int64_t C = (int64_t)l->H * D, n = t->n_o, rows = t->n_row;
  memset(r, 0, sizeof *r);
  AttnLayout sep = {l->B, l->H, l->N, l->N * C, C, D, l->N * C, C, D};   /* unfused copies */
#define A(p, cnt) ((p) = calloc((size_t)(cnt), sizeof *(p)))
  if (!A(r->o, n) || !A(r->lse, rows) || !A(r->tau, rows) || !A(r->delta, rows) ||
      !A(r->dq, n) || !A(r->dk, n) || !A(r->dv, n) || !A(r->tg, l->B * l->H) || !A(r->q, n) ||
      !A(r->k, n) || !A(r->v, n) || !A(r->fdq, t->n_qkv) || !A(r->off, n))
    return -1;
#undef A
  for (int64_t e = 0; e < n; e++) {   /* e = ((b * N + i) * H + h) * D + d */
    r->off[e] = e / C * 3 * C + e % C;
    r->q[e] = t->qkv[r->off[e]], r->k[e] = t->qkv[r->off[e] + C], r->v[e] = t->qkv[r->off[e] + 2 * C];
  }
  AttnDropout dp = {t->sh.dropout, TRAIN_SEED, TRAIN_STEP, TRAIN_LAYER};
  AttnBwdRef out = {.o = r->o, .lse = r->lse, .tau = r->tau, .delta = r->delta, .dq = r->dq,
                    .dk = r->dk, .dv = r->dv};
  attention_bwd_ref(&t->spec, &sep, r->q, r->k, r->v, t->dout, t->lengths, t->sh.sparsity, &dp,
                    &out);
  attention_group_tau_ref(&t->spec, &sep, r->q, r->k, t->lengths, t->sh.sparsity, r->tg);
  return 0;
}

static int download(AttnTrain *t, float *o, int32_t *kept, float *lse, float *delta, float *tg,
                    float *dqkv) {
  Backend *b = t->b;
  size_t rows = (size_t)t->n_row * 4;
  return rt_d2h(b, o, t->d_o, (size_t)t->n_o * 4) || rt_d2h(b, kept, t->d_kept, rows) ||
         rt_d2h(b, lse, t->d_lse, rows) || rt_d2h(b, delta, t->d_delta, rows) ||
         (t->groups > 0 && rt_d2h(b, tg, t->d_tg, (size_t)t->groups * 4)) ||
         rt_d2h(b, dqkv, t->d_dqkv, (size_t)t->n_qkv * 4);
}

/* The reference's kept mask [B, H, N, N] (ties included), or NULL when out of memory. */
static uint8_t *reference_mask(AttnTrain *t, const Ref *r) {
  const AttnLayout *l = &t->l;
  int64_t N = l->N, C = (int64_t)l->H * t->spec.head_dim;
  uint8_t *mask = malloc((size_t)(t->n_row * N));
  double *tau = malloc((size_t)t->n_row * sizeof *tau);
  if (mask && tau) {
    AttnLayout sep = {l->B, l->H, l->N, N * C, C, t->spec.head_dim, 0, 0, 0};
    attention_mask_ref(&t->spec, &sep, r->q, r->k, t->lengths, t->sh.sparsity, mask, tau);
  } else {
    free(mask), mask = NULL;
  }
  free(tau);
  return mask;
}

static double row_max_abs(const float *x, int D) {
  double m = 0;
  for (int d = 0; d < D; d++)
    m = fmax(m, fabs(x[d]));
  return m;
}

/* Magnitudes of the terms the backward sums before they cancel, F = dq, dk, dv: an
 * f32 kernel's error is a small multiple of eps times these, not of the result. Where
 * the terms cancel exactly (n = 1: dS = P (dP - Delta) = 0), the reference is 0 and
 * any two correct summation orders of dP and Delta differ in the last bits; measured
 * against max |ref| alone, that would fail every correct kernel. As
 * tests/backward_case.c (term_scales), the dropout bits bounded by 1 / (1 - p). */
static int term_scales(AttnTrain *t, const Ref *r, const uint8_t *mask, double F[3]) {
  const AttnLayout *l = &t->l;
  int D = t->spec.head_dim;
  int64_t N = l->N, C = (int64_t)l->H * D;
  AttnLayout sep = {l->B, l->H, l->N, N * C, C, D, N * C, C, D};
  double *tk = malloc((size_t)N * sizeof *tk), *tv = malloc((size_t)N * sizeof *tv);
  double *s = malloc((size_t)N * sizeof *s), inv = 1.0 / sqrt((double)D);
  double keep = 1.0 - t->sh.dropout;
  F[0] = F[1] = F[2] = 0;
  for (int b = 0; b < l->B && tk && tv && s; b++)
    for (int h = 0; h < l->H; h++) {
      memset(tk, 0, (size_t)N * sizeof *tk), memset(tv, 0, (size_t)N * sizeof *tv);
      for (int i = 0; i < t->lengths[b]; i++) {
        int64_t row = ((int64_t)b * l->H + h) * N + i, at = ((int64_t)b * N + i) * C + h * D;
        const float *gi = t->dout + at;
        double dl = fabs(r->delta[row]), tq = 0;
        attention_scores_ref(&t->spec, &sep, r->q, r->k, b, h, i, (int)N, s);
        for (int64_t j = 0; j < N; j++) {
          if (!mask[row * N + j])
            continue;
          int64_t aj = ((int64_t)b * N + j) * C + h * D;
          double p = exp(s[j] - r->lse[row]), dp = 0;
          for (int d = 0; d < D; d++)
            dp += fabs(gi[d] * r->v[aj + d]);
          double term = p * (dp / keep + dl) * inv;
          tq += term * row_max_abs(r->k + aj, D);
          tk[j] += term * row_max_abs(r->q + at, D);
          tv[j] += p / keep * row_max_abs(gi, D);
        }
        F[0] = fmax(F[0], tq);
      }
      for (int64_t j = 0; j < N; j++)
        F[1] = fmax(F[1], tk[j]), F[2] = fmax(F[2], tv[j]);
    }
  int rc = tk && tv && s ? 0 : -1;
  free(tk), free(tv), free(s);
  return rc;
}

/* kept counts exactly (the reference's mask, ties included) and tau_group bit for bit */
static void compare_rows(AttnTrain *t, const Ref *r, const uint8_t *mask, const int32_t *kept,
                         const float *tg, AttnTrainErr *e) {
  int64_t N = t->l.N;
  e->kept_ok = e->tau_group_ok = true;
  for (int64_t row = 0; row < t->n_row && e->kept_ok; row++) {
    int want = 0;
    for (int64_t j = 0; j < N; j++)
      want += mask[row * N + j];
    if (kept[row] != want) {
      e->kept_ok = false;
      bad(e, "%s[%lld] = %.0f, reference %.0f", "kept", (long long)row, kept[row], want);
    }
  }
  for (int g = 0; g < t->groups; g++)
    if ((float)r->tg[g] != tg[g] && e->tau_group_ok) {
      e->tau_group_ok = false;
      bad(e, "%s[%lld] = %.9g, reference %.9g", "tau_group", g, tg[g], r->tg[g]);
    }
}

int attn_train_check(AttnTrain *t, AttnTrainErr *e, char *err, size_t cap) {
  memset(e, 0, sizeof *e);
  Ref r = {0};
  float *o = malloc((size_t)t->n_o * 4), *lse = malloc((size_t)t->n_row * 4),
        *delta = malloc((size_t)t->n_row * 4), *tg = malloc((size_t)(t->groups + 1) * 4);
  int32_t *kept = malloc((size_t)t->n_row * 4);
  uint8_t *mask = NULL;
  int rc = -1;
  if (!o || !lse || !delta || !tg || !kept || reference(t, &r)) {
    snprintf(err, cap, "out of memory");
    goto done;
  }
  DevPtr outs[] = {t->d_o, t->d_kept, t->d_lse, t->d_tau, t->d_delta, t->d_dqkv, t->d_tg};
  size_t bytes[] = {(size_t)t->n_o * 4, (size_t)t->n_row * 4, (size_t)t->n_row * 4,
                    (size_t)t->n_row * 4, (size_t)t->n_row * 4, (size_t)t->n_qkv * 4, 4};
  for (int i = 0; i < 7; i++)
    if (rt_memset(t->b, outs[i], 0xff, bytes[i]))
      goto device;
  if (attn_train_run(t, true, true) || rt_sync(t->b) || download(t, o, kept, lse, delta, tg, r.fdq))
    goto device;
  const AttnLayout *l = &t->l;
  int64_t C = (int64_t)l->H * t->spec.head_dim;
  double vmax = 1e-30;
  for (int64_t i = 0; i < t->n_o; i++)
    vmax = fmax(vmax, fabs(r.v[i]));
  e->o = tensor_err(e, "o", o, r.o, NULL, t->n_o, vmax);
  for (int64_t i = 0; i < t->n_row; i++) {   /* lse relative to max(1, |ref|) */
    double d = isnan(lse[i]) ? INFINITY : fabs(lse[i] - r.lse[i]) / fmax(1, fabs(r.lse[i]));
    if (d > ATTN_TRAIN_TOL_E6 * 1e-6)
      bad(e, "%s[%lld] = %.9g, reference %.9g", "lse", (long long)i, lse[i], r.lse[i]);
    e->lse = fmax(e->lse, d);
  }
  e->delta = tensor_err(e, "delta", delta, r.delta, NULL, t->n_row, max_abs(r.delta, t->n_row));
  double F[3];
  if (!(mask = reference_mask(t, &r)) || term_scales(t, &r, mask, F)) {
    snprintf(err, cap, "out of memory");
    goto done;
  }
  e->dq = tensor_err(e, "dq", r.fdq, r.dq, r.off, t->n_o, fmax(max_abs(r.dq, t->n_o), F[0]));
  for (int64_t i = 0; i < t->n_o; i++)
    r.off[i] += C;
  e->dk = tensor_err(e, "dk", r.fdq, r.dk, r.off, t->n_o, fmax(max_abs(r.dk, t->n_o), F[1]));
  for (int64_t i = 0; i < t->n_o; i++)
    r.off[i] += C;
  e->dv = tensor_err(e, "dv", r.fdq, r.dv, r.off, t->n_o, fmax(max_abs(r.dv, t->n_o), F[2]));
  compare_rows(t, &r, mask, kept, tg, e);
  rc = 0;
  goto done;
device:
  snprintf(err, cap, "%s", backend_error(t->b));
done:
  ref_free(&r);
  free(o), free(lse), free(delta), free(tg), free(kept), free(mask);
  return rc;
}
