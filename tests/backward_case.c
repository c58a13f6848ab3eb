/* backward_case.c: one backward problem for test_backward: the inputs (q, k
 * quantized so the kernels' f32 scores are exact), the double reference and the o,
 * lse, tau the kernels read, the kernels' arguments, and the error measure against
 * the reference. Every suite (b, c, e) builds and judges its cases here, so the
 * measure is one piece of code, apart from the suites that run the kernels. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_SHARED
#include "backward_test.h"
#include "check.h"

static const double TOL = 1e-5;       /* norm-wise relative error of the f32 kernels */
static const double TERM_TOL = 1e-6;  /* error relative to the summed terms' magnitude */

/* ---- one backward problem: inputs, kernel outputs, reference ---- */


void case_init(Case *c, const Spec *s, int B, int H, int N, bool fused_in,
                      bool fused_grad) {
  memset(c, 0, sizeof *c);
  c->spec = *s;
  int64_t D = s->head_dim, one = (int64_t)B * N * H * D;
  AttnLayout *l = &c->l;
  l->B = B, l->H = H, l->N = N;
  l->qkv_sh = D, l->qkv_sn = (fused_in ? 3 : 1) * H * D, l->qkv_sb = N * l->qkv_sn;
  l->o_sh = D, l->o_sn = H * D, l->o_sb = N * H * D;
  c->g_sh = D, c->g_sn = (fused_grad ? 3 : 1) * H * D, c->g_sb = N * c->g_sn;
  c->nin = 3 * one;
  c->in = xcalloc((size_t)c->nin, sizeof(float));
  c->q = c->in, c->k = c->in + (fused_in ? H * D : one), c->v = c->in + (fused_in ? 2 * H * D : 2 * one);
  c->ng = 3 * one;
  c->grad = xcalloc((size_t)c->ng, sizeof(float));
  c->dq = c->grad, c->dk = c->grad + (fused_grad ? H * D : one);
  c->dv = c->grad + (fused_grad ? 2 * H * D : 2 * one);
  c->no = one;
  c->o = xcalloc((size_t)one, sizeof(float));
  c->dout = xcalloc((size_t)one, sizeof(float));
  c->nrows = (int64_t)B * H * N;
  c->lse = xcalloc((size_t)c->nrows, sizeof(float));
  c->tau = xcalloc((size_t)c->nrows, sizeof(float));
  c->delta = xcalloc((size_t)c->nrows, sizeof(float));
  c->lengths = xcalloc((size_t)B, sizeof(int32_t));
  for (int b = 0; b < B; b++)
    c->lengths[b] = N;
  c->nq = attention_qkv_extent(l, (int)D);
  AttnBwdRef *r = &c->ref;
  r->o = xcalloc((size_t)one, sizeof(double));
  r->lse = xcalloc((size_t)c->nrows, sizeof(double));
  r->tau = xcalloc((size_t)c->nrows, sizeof(double));
  r->delta = xcalloc((size_t)c->nrows, sizeof(double));
  r->dq = xcalloc((size_t)c->nq, sizeof(double));
  r->dk = xcalloc((size_t)c->nq, sizeof(double));
  r->dv = xcalloc((size_t)c->nq, sizeof(double));
  c->mask = xcalloc((size_t)(c->nrows * N), 1);
}

void case_free(Case *c) {
  void *p[] = {c->in, c->grad, c->o, c->dout, c->lse, c->tau, c->delta, c->lengths,
               c->ref.o, c->ref.lse, c->ref.tau, c->ref.delta, c->ref.dq, c->ref.dk,
               c->ref.dv, c->mask};
  for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
    free(p[i]);
}

int64_t at_in(const Case *c, int b, int i, int h) {
  return b * c->l.qkv_sb + i * c->l.qkv_sn + h * c->l.qkv_sh;
}
int64_t at_o(const Case *c, int b, int i, int h) {
  return b * c->l.o_sb + i * c->l.o_sn + h * c->l.o_sh;
}
static int64_t at_g(const Case *c, int b, int i, int h) {
  return b * c->g_sb + i * c->g_sn + h * c->g_sh;
}

void random_lengths(Case *c) {
  for (int b = 0; b < c->l.B; b++)
    c->lengths[b] = 1 + (int)(uniform() * c->l.N);
}

/* q, k quantized (multiples of 1/4), v and dout uniform in [-1, 1]. */
void case_fill(Case *c) {
  const AttnLayout *l = &c->l;
  for (int b = 0; b < l->B; b++)
    for (int i = 0; i < l->N; i++)
      for (int h = 0; h < l->H; h++)
        for (int d = 0; d < c->spec.head_dim; d++) {
          int64_t x = at_in(c, b, i, h) + d;
          c->q[x] = draw(true), c->k[x] = draw(true), c->v[x] = draw(false);
          c->dout[at_o(c, b, i, h) + d] = draw(false);
        }
}

/* The kernel's f32 score: an exact f32 dot (quantized inputs) times f32(1/sqrt(d)). */
float kernel_score(const Case *c, int b, int h, int i, int j) {
  const float *qi = c->q + at_in(c, b, i, h), *kj = c->k + at_in(c, b, j, h);
  double dot = 0;
  for (int d = 0; d < c->spec.head_dim; d++)
    dot += (double)qi[d] * kj[d];
  float scale = (float)(1.0 / sqrt((double)c->spec.head_dim));
  return (float)dot * scale;
}

/* Reference backward, then the kernel inputs o, lse, tau derived from it. */
void case_reference(Case *c) {
  const AttnLayout *l = &c->l;
  attention_bwd_ref(&c->spec, l, c->q, c->k, c->v, c->dout, c->lengths, c->sparsity, &c->dp,
                    &c->ref);
  double *tau = xcalloc((size_t)c->nrows, sizeof *tau);
  attention_mask_ref(&c->spec, l, c->q, c->k, c->lengths, c->sparsity, c->mask, tau);
  for (int64_t x = 0; x < c->nrows; x++)
    CHECK(tau[x] == c->ref.tau[x] || (isinf(tau[x]) && isinf(c->ref.tau[x])),
          "reference tau differs between calls");
  free(tau);
  for (int64_t x = 0; x < c->no; x++)
    c->o[x] = (float)c->ref.o[x];
  for (int b = 0; b < l->B; b++)
    for (int h = 0; h < l->H; h++)
      for (int i = 0; i < l->N; i++) {
        int64_t r = ((int64_t)b * l->H + h) * l->N + i;
        c->lse[r] = (float)c->ref.lse[r];
        float t = INFINITY;
        int kept = 0, L = c->lengths[b];
        for (int j = 0; j < l->N; j++)
          if (c->mask[r * l->N + j]) {
            float s = kernel_score(c, b, h, i, j);
            t = s < t ? s : t;
            kept++;
          }
        if (c->tau_inf && i < L && kept == (c->spec.causal && i + 1 < L ? i + 1 : L))
          t = -INFINITY;
        /* select = none must not read tau: NaN would drop every key */
        c->tau[r] = c->spec.select == SEL_NONE && i < c->lengths[b] ? NAN : t;
      }
}

void case_poison(Case *c) {
  for (int64_t x = 0; x < c->ng; x++)
    c->grad[x] = NAN;
  for (int64_t x = 0; x < c->nrows; x++)
    c->delta[x] = NAN;
}


void bwd_args(BwdArgs *a, Case *c) {
  memset(a, 0, sizeof *a);
  const AttnLayout *l = &c->l;
  void *ptrs[12] = {c->q, c->k, c->v, c->o, c->dout, c->lse, c->tau, c->lengths,
                    c->delta, c->dq, c->dk, c->dv};
  int64_t counts[12] = {c->nin - (c->q - c->in), c->nin - (c->k - c->in),
                        c->nin - (c->v - c->in), c->no, c->no, c->nrows, c->nrows, l->B,
                        c->nrows, c->ng - (c->dq - c->grad), c->ng - (c->dk - c->grad),
                        c->ng - (c->dv - c->grad)};
  int64_t ints[16] = {l->B, l->H, l->N, l->qkv_sb, l->qkv_sn, l->qkv_sh, l->o_sb, l->o_sn,
                      l->o_sh, c->g_sb, c->g_sn, c->g_sh, 0, c->dp.seed, c->dp.step,
                      c->dp.layer};
  for (int i = 0; i < 12; i++) {
    a->ptrs[i] = ptrs[i];
    a->args[i] = &a->ptrs[i];
    a->counts[i] = counts[i];
  }
  for (int i = 0; i < 16; i++)
    a->ints[i] = (int32_t)(uint32_t)ints[i];
  for (int i = 0; i < 12; i++)
    a->args[ATTN_BWD_B + i] = &a->ints[i];
  a->p = c->dp.p;
  a->args[ATTN_BWD_DROPOUT] = &a->p;
  a->args[ATTN_BWD_SEED] = &a->ints[13];
  a->args[ATTN_BWD_STEP] = &a->ints[14];
  a->args[ATTN_BWD_LAYER] = &a->ints[15];
}

/* ---- comparing the kernel's outputs with the reference ---- */

static double maxabs_row(const float *x, int n) {
  double m = 0;
  for (int d = 0; d < n; d++)
    m = fmax(m, fabs(x[d]));
  return m;
}

/* Magnitudes of the summed terms (before cancellation), per tensor: an f32 kernel's
 * error is a small multiple of eps times these. F[0..3] = dq, dk, dv, delta. */
static void term_scales(const Case *c, double F[4]) {
  const AttnLayout *l = &c->l;
  int D = c->spec.head_dim;
  double *tk = xcalloc((size_t)l->N, sizeof *tk), *tv = xcalloc((size_t)l->N, sizeof *tv);
  double *s = xcalloc((size_t)l->N, sizeof *s);
  double inv = 1.0 / sqrt((double)D);
  F[0] = F[1] = F[2] = F[3] = 0;
  for (int b = 0; b < l->B; b++)
    for (int h = 0; h < l->H; h++) {
      memset(tk, 0, (size_t)l->N * sizeof *tk);
      memset(tv, 0, (size_t)l->N * sizeof *tv);
      for (int i = 0; i < c->lengths[b]; i++) {
        int64_t r = ((int64_t)b * l->H + h) * l->N + i;
        const float *gi = c->dout + at_o(c, b, i, h);
        double dl = fabs(c->ref.delta[r]), tq = 0, td = 0;
        for (int d = 0; d < D; d++)
          td += fabs(gi[d] * c->ref.o[at_o(c, b, i, h) + d]);
        attention_scores_ref(&c->spec, l, c->q, c->k, b, h, i, l->N, s);
        for (int j = 0; j < l->N; j++) {
          if (!c->mask[r * l->N + j])
            continue;
          double p = exp(s[j] - c->ref.lse[r]), dp = 0;
          const float *vj = c->v + at_in(c, b, j, h);
          for (int d = 0; d < D; d++)
            dp += fabs(gi[d] * vj[d]);
          dp /= 1.0 - c->dp.p;
          tq += p * (dp + dl) * maxabs_row(c->k + at_in(c, b, j, h), D) * inv;
          tk[j] += p * (dp + dl) * maxabs_row(c->q + at_in(c, b, i, h), D) * inv;
          tv[j] += p / (1.0 - c->dp.p) * maxabs_row(gi, D);
        }
        F[0] = fmax(F[0], tq);
        F[3] = fmax(F[3], td);
      }
      for (int j = 0; j < l->N; j++)
        F[1] = fmax(F[1], tk[j]), F[2] = fmax(F[2], tv[j]);
    }
  free(tk);
  free(tv);
  free(s);
}


static bool err_ok(Err e) { return !e.unwritten && (e.rel < TOL || e.term < TERM_TOL); }

static void err_add(Err *e, double diff, double ref_max, double scale) {
  e->rel = fmax(e->rel, diff / fmax(ref_max, 1e-300));
  e->term = fmax(e->term, diff / fmax(scale, 1e-300));
}

/* Errors of dq, dk, dv, delta (in that order). */
void case_errors(const Case *c, Err e[4]) {
  const AttnLayout *l = &c->l;
  int D = c->spec.head_dim;
  double F[4];
  term_scales(c, F);
  const float *x[3] = {c->dq, c->dk, c->dv};
  const double *ref[3] = {c->ref.dq, c->ref.dk, c->ref.dv};
  for (int t = 0; t < 3; t++) {
    double mx = 0, diff = 0;
    e[t] = (Err){0};
    for (int b = 0; b < l->B; b++)
      for (int i = 0; i < l->N; i++)
        for (int h = 0; h < l->H; h++)
          for (int d = 0; d < D; d++) {
            double y = x[t][at_g(c, b, i, h) + d], r = ref[t][at_in(c, b, i, h) + d];
            if (isnan(y))
              e[t].unwritten = true;
            else
              diff = fmax(diff, fabs(y - r));
            mx = fmax(mx, fabs(r));
          }
    err_add(&e[t], diff, mx, F[t]);
  }
  double mx = 0, diff = 0;
  e[3] = (Err){0};
  for (int64_t r = 0; r < c->nrows; r++) {
    if (isnan(c->delta[r]))
      e[3].unwritten = true;
    else
      diff = fmax(diff, fabs(c->delta[r] - c->ref.delta[r]));
    mx = fmax(mx, fabs(c->ref.delta[r]));
  }
  err_add(&e[3], diff, mx, F[3]);
  for (int t = 0; t < 4; t++)
    if (!e[t].unwritten) {
      if (e[t].rel < TOL)
        worst_rel = fmax(worst_rel, e[t].rel);
      worst_term = fmax(worst_term, e[t].term);
    }
  if (getenv("CRISP_TEST_VERBOSE"))
    printf("N=%d L0=%d s=%g p=%g sel=%d causal=%d D=%d: rel %.2g %.2g %.2g %.2g  term %.2g %.2g %.2g %.2g\n",
           l->N, c->lengths[0], c->sparsity, c->dp.p, c->spec.select, c->spec.causal, D, e[0].rel,
           e[1].rel, e[2].rel, e[3].rel, e[0].term, e[1].term, e[2].term, e[3].term);
}

void report(const Case *c, const char *what, Err e[4]) {
  static const char *const names[] = {"dq", "dk", "dv", "delta"};
  for (int t = 0; t < 4; t++)
    CHECK(err_ok(e[t]),
          "%s: %s: B=%d H=%d N=%d D=%d lengths[0]=%d s=%g p=%g select=%s causal=%d "
          "keep_min=%d: rel err %.3g, vs terms %.3g%s",
          what, names[t], c->l.B, c->l.H, c->l.N, c->spec.head_dim, c->lengths[0],
          c->sparsity, c->dp.p, select_name(c->spec.select), c->spec.causal,
          c->spec.keep_min, e[t].rel, e[t].term, e[t].unwritten ? ", UNWRITTEN outputs" : "");
}
