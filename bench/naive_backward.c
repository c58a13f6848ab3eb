/* See naive_backward.h. */
#include "naive_backward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../templates/dropout.h"

static int cmp_desc(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x < y) - (x > y);
}

static float dotf(const float *x, const float *y, int n) {
  float s = 0;
  for (int d = 0; d < n; d++)
    s += x[d] * y[d];
  return s;
}

/* One (b, h): P (scores, then kept probabilities) and Z (dropout scale) in L x L
 * scratch, tmp L x L for sorting. */
static void head(const NaiveAttn *a, int b, int h, float *P, float *Z, float *tmp) {
  int D = a->D, L = a->lengths[b];
  float scale = 1.0f / sqrtf((float)D), inv = 1.0f / (1.0f - a->dropout);
  uint32_t thr = dropout_threshold(a->dropout);
  const float *q = a->q + b * a->sb + h * a->sh, *k = a->k + b * a->sb + h * a->sh;
  const float *v = a->v + b * a->sb + h * a->sh;
  float *dq = a->dq + b * a->sb + h * a->sh, *dk = a->dk + b * a->sb + h * a->sh;
  float *dv = a->dv + b * a->sb + h * a->sh;
  for (int i = 0; i < a->N; i++) {
    memset(dq + i * a->sn, 0, (size_t)D * sizeof(float));
    memset(dk + i * a->sn, 0, (size_t)D * sizeof(float));
    memset(dv + i * a->sn, 0, (size_t)D * sizeof(float));
    if (i >= L)
      memset(a->o + b * a->osb + i * a->osn + h * a->osh, 0, (size_t)D * sizeof(float));
  }
  /* forward: scores, threshold, softmax over the kept scores, P V */
  for (int i = 0; i < L; i++)
    for (int j = 0; j < L; j++)
      P[(int64_t)i * L + j] = dotf(q + i * a->sn, k + j * a->sn, D) * scale;
  float tau_head = -INFINITY;
  if (a->mode == 2) {   /* head_quantile: the keep-th largest of all L^2 scores */
    int64_t m = (int64_t)L * L, keep = (int64_t)ceil((1.0 - a->sparsity) * (double)m - 1e-6);
    keep = keep < 1 ? 1 : keep > m ? m : keep;
    memcpy(tmp, P, (size_t)m * sizeof *P);
    qsort(tmp, (size_t)m, sizeof *tmp, cmp_desc);
    tau_head = tmp[keep - 1];
  }
  for (int i = 0; i < L; i++) {
    float *p = P + (int64_t)i * L, *z = Z + (int64_t)i * L;
    float mx = -INFINITY, sum = 0, tau = -INFINITY;
    for (int j = 0; j < L; j++)
      mx = p[j] > mx ? p[j] : mx;
    int keep = (int)ceil((1.0 - a->sparsity) * L - 1e-6);
    keep = keep < 1 ? 1 : keep > L ? L : keep;
    if (a->mode == 1 && keep < L) {
      memcpy(tmp, p, (size_t)L * sizeof *p);
      qsort(tmp, (size_t)L, sizeof *tmp, cmp_desc);
      tau = tmp[keep - 1];
    } else if (a->mode == 2) {
      tau = tau_head < mx ? tau_head : mx;   /* keep_min = 1: the row's max stays */
    }
    for (int j = 0; j < L; j++) {
      p[j] = p[j] >= tau ? expf(p[j] - mx) : 0;
      sum += p[j];
    }
    uint32_t rh = dropout_row_hash(a->seed, a->step, a->layer, (uint32_t)b, (uint32_t)h,
                                   (uint32_t)i);
    float *o = a->o + b * a->osb + i * a->osn + h * a->osh;
    memset(o, 0, (size_t)D * sizeof *o);
    for (int j = 0; j < L; j++) {
      p[j] /= sum;
      z[j] = dropout_keep(rh, (uint32_t)j, thr) ? inv : 0;
      if (p[j] == 0)
        continue;
      float pt = p[j] * z[j];
      for (int d = 0; d < D; d++)
        o[d] += pt * v[j * a->sn + d];
    }
  }
  /* backward */
  for (int i = 0; i < L; i++) {
    const float *g = a->dout + b * a->osb + i * a->osn + h * a->osh;
    float delta = dotf(g, a->o + b * a->osb + i * a->osn + h * a->osh, D);
    const float *p = P + (int64_t)i * L, *z = Z + (int64_t)i * L;
    for (int j = 0; j < L; j++) {
      if (p[j] == 0)
        continue;
      float ds = p[j] * (z[j] * dotf(g, v + j * a->sn, D) - delta) * scale, pt = p[j] * z[j];
      for (int d = 0; d < D; d++) {
        dq[i * a->sn + d] += ds * k[j * a->sn + d];
        dk[j * a->sn + d] += ds * q[i * a->sn + d];
        dv[j * a->sn + d] += pt * g[d];
      }
    }
  }
}

void naive_attention_fwd_bwd(const NaiveAttn *a, int b_first, int b_last) {
  size_t n = (size_t)a->N;
  float *P = malloc(3 * n * n * sizeof *P);
  if (!P)
    abort();
  for (int b = b_first; b < b_last; b++)
    for (int h = 0; h < a->H; h++)
      head(a, b, h, P, P + n * n, P + 2 * n * n);
  free(P);
}
