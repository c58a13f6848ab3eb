/* Double-precision reference backward (see reference_bwd.h). */
#include "reference_bwd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dropout.h"

static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size);
  if (!p)
    abort();
  return p;
}

int64_t attention_qkv_extent(const AttnLayout *l, int head_dim) {
  return (l->B - 1) * l->qkv_sb + (l->N - 1) * l->qkv_sn + (l->H - 1) * l->qkv_sh + head_dim;
}

int64_t attention_o_extent(const AttnLayout *l, int head_dim) {
  return (l->B - 1) * l->o_sb + (l->N - 1) * l->o_sn + (l->H - 1) * l->o_sh + head_dim;
}

static int64_t qkv_at(const AttnLayout *l, int b, int i, int h) {
  return b * l->qkv_sb + i * l->qkv_sn + h * l->qkv_sh;
}

static int64_t o_at(const AttnLayout *l, int b, int i, int h) {
  return b * l->o_sb + i * l->o_sn + h * l->o_sh;
}

static int64_t row_at(const AttnLayout *l, int b, int h, int i) {
  return ((int64_t)b * l->H + h) * l->N + i;
}

void attention_mask_ref(const Spec *sp, const AttnLayout *l, const float *q, const float *k,
                        const int32_t *lengths, double sparsity, uint8_t *mask, double *tau) {
  double *s = xcalloc((size_t)l->N, sizeof *s);
  double *tau_group = xcalloc((size_t)l->B * l->H, sizeof *tau_group);
  bool per_head = sp->select == SEL_HEAD_QUANTILE;
  attention_group_tau_ref(sp, l, q, k, lengths, sparsity, tau_group);
  for (int b = 0; b < l->B; b++)
    for (int h = 0; h < l->H; h++)
      for (int i = 0; i < l->N; i++) {
        int64_t r = row_at(l, b, h, i);
        uint8_t *mrow = mask + r * l->N;
        memset(mrow, 0, (size_t)l->N);
        int m = attention_valid_keys(sp, i, lengths[b]);
        if (!m) {
          tau[r] = INFINITY;
          continue;
        }
        attention_scores_ref(sp, l, q, k, b, h, i, m, s);
        double tg = tau_group[per_head ? b * l->H + h : 0];
        tau[r] = attention_row_tau_ref(sp, s, m, sparsity, tg);
        for (int j = 0; j < m; j++)
          mrow[j] = s[j] >= tau[r];
      }
  free(s);
  free(tau_group);
}

/* z_ij / (1 - p) */
static double drop_scale(const AttnDropout *dp, int b, int h, int i, int j) {
  if (!dp || dp->p <= 0)
    return 1.0;
  uint32_t rh = dropout_row_hash(dp->seed, dp->step, dp->layer, (uint32_t)b, (uint32_t)h,
                                 (uint32_t)i);
  return dropout_keep(rh, (uint32_t)j, dropout_threshold(dp->p)) ? 1.0 / (1.0 - dp->p) : 0.0;
}

static double dot(const double *x, const double *y, int n) {
  double s = 0;
  for (int d = 0; d < n; d++)
    s += x[d] * y[d];
  return s;
}

/* P of row (b, h, i) into p[0..N): exp(S - lse) on kept keys, else 0; returns lse. */
static double row_probs(const Spec *sp, const AttnLayout *l, const double *q, const double *k,
                        const uint8_t *mrow, int b, int h, int i, double *p) {
  int D = sp->head_dim;
  double mx = -INFINITY, sum = 0, scale = 1.0 / sqrt((double)D);
  const double *qi = q + qkv_at(l, b, i, h);
  for (int j = 0; j < l->N; j++) {
    p[j] = mrow[j] ? dot(qi, k + qkv_at(l, b, j, h), D) * scale : -INFINITY;
    mx = p[j] > mx ? p[j] : mx;
  }
  if (mx == -INFINITY) {
    memset(p, 0, (size_t)l->N * sizeof *p);
    return 0;
  }
  for (int j = 0; j < l->N; j++)
    sum += mrow[j] ? exp(p[j] - mx) : 0;
  double lse = mx + log(sum);
  for (int j = 0; j < l->N; j++)
    p[j] = mrow[j] ? exp(p[j] - lse) : 0;
  return lse;
}

void attention_fwd_masked_ref(const Spec *sp, const AttnLayout *l, const double *q,
                              const double *k, const double *v, const int32_t *lengths,
                              const uint8_t *mask, const AttnDropout *dp, double *o,
                              double *lse) {
  int D = sp->head_dim;
  double *p = xcalloc((size_t)l->N, sizeof *p);
  for (int b = 0; b < l->B; b++)
    for (int h = 0; h < l->H; h++)
      for (int i = 0; i < l->N; i++) {
        int64_t r = row_at(l, b, h, i);
        double *oi = o + o_at(l, b, i, h);
        memset(oi, 0, (size_t)D * sizeof *oi);
        double ls = i < lengths[b] ? row_probs(sp, l, q, k, mask + r * l->N, b, h, i, p) : 0;
        if (lse)
          lse[r] = ls;
        if (i >= lengths[b])
          continue;
        for (int j = 0; j < l->N; j++) {
          if (!p[j])
            continue;
          double pt = p[j] * drop_scale(dp, b, h, i, j);
          const double *vj = v + qkv_at(l, b, j, h);
          for (int d = 0; d < D; d++)
            oi[d] += pt * vj[d];
        }
      }
  free(p);
}

static void zero_rows(const AttnLayout *l, int D, double *x) {
  for (int b = 0; b < l->B; b++)
    for (int i = 0; i < l->N; i++)
      for (int h = 0; h < l->H; h++)
        memset(x + qkv_at(l, b, i, h), 0, (size_t)D * sizeof *x);
}

void attention_bwd_masked_ref(const Spec *sp, const AttnLayout *l, const double *q,
                              const double *k, const double *v, const double *o,
                              const double *dout, const int32_t *lengths, const uint8_t *mask,
                              const AttnDropout *dp, double *dq, double *dk, double *dv,
                              double *delta) {
  int D = sp->head_dim;
  double scale = 1.0 / sqrt((double)D);
  double *p = xcalloc((size_t)l->N, sizeof *p);
  zero_rows(l, D, dq);
  zero_rows(l, D, dk);
  zero_rows(l, D, dv);
  for (int b = 0; b < l->B; b++)
    for (int h = 0; h < l->H; h++)
      for (int i = 0; i < l->N; i++) {
        int64_t r = row_at(l, b, h, i);
        const double *gi = dout + o_at(l, b, i, h);
        double dl = i < lengths[b] ? dot(gi, o + o_at(l, b, i, h), D) : 0;
        if (delta)
          delta[r] = dl;
        if (i >= lengths[b])
          continue;
        row_probs(sp, l, q, k, mask + r * l->N, b, h, i, p);
        const double *qi = q + qkv_at(l, b, i, h);
        double *dqi = dq + qkv_at(l, b, i, h);
        for (int j = 0; j < l->N; j++) {
          if (!p[j])
            continue;
          double zs = drop_scale(dp, b, h, i, j);
          int64_t kj = qkv_at(l, b, j, h);
          double ds = p[j] * (zs * dot(gi, v + kj, D) - dl);
          for (int d = 0; d < D; d++) {
            dqi[d] += ds * k[kj + d] * scale;
            dk[kj + d] += ds * qi[d] * scale;
            dv[kj + d] += p[j] * zs * gi[d];
          }
        }
      }
  free(p);
}

static double *widen(const float *x, int64_t n) {
  double *y = xcalloc((size_t)n, sizeof *y);
  for (int64_t i = 0; i < n; i++)
    y[i] = x[i];
  return y;
}

void attention_bwd_ref(const Spec *sp, const AttnLayout *l, const float *q, const float *k,
                       const float *v, const float *dout, const int32_t *lengths,
                       double sparsity, const AttnDropout *dp, AttnBwdRef *out) {
  int D = sp->head_dim;
  int64_t nq = attention_qkv_extent(l, D), no = attention_o_extent(l, D);
  int64_t rows = (int64_t)l->B * l->H * l->N;
  uint8_t *mask = xcalloc((size_t)(rows * l->N), 1);
  double *tau = out->tau ? out->tau : xcalloc((size_t)rows, sizeof *tau);
  attention_mask_ref(sp, l, q, k, lengths, sparsity, mask, tau);
  double *qd = widen(q, nq), *kd = widen(k, nq), *vd = widen(v, nq), *gd = widen(dout, no);
  double *o = out->o ? out->o : xcalloc((size_t)no, sizeof *o);
  attention_fwd_masked_ref(sp, l, qd, kd, vd, lengths, mask, dp, o, out->lse);
  double *g[3] = {out->dq, out->dk, out->dv};
  double *tmp[3] = {0};
  for (int t = 0; t < 3; t++)
    if (!g[t])
      g[t] = tmp[t] = xcalloc((size_t)nq, sizeof(double));
  attention_bwd_masked_ref(sp, l, qd, kd, vd, o, gd, lengths, mask, dp, g[0], g[1], g[2],
                           out->delta);
  for (int t = 0; t < 3; t++)
    free(tmp[t]);
  if (!out->o)
    free(o);
  if (!out->tau)
    free(tau);
  free(mask);
  free(qd);
  free(kd);
  free(vd);
  free(gd);
}
