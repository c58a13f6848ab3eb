/* Crisp attention in plain C over floats (see attn_ref.h). */
#include "attn_ref.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "../templates/dropout.h"

enum { RADIX_BINS = 1 << 16, MAX_D = 512 };

/* The workspace: two rows of N floats, a 2^16-bin histogram, and double
 * accumulators for one head's dK and dV (N x D each). */
typedef struct Ws {
  float *s, *tmp;
  uint32_t *hist;
  double *dk, *dv;
} Ws;

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

size_t attn_ref_workspace_bytes(int N, int D) {
  size_t n = N > 0 ? (size_t)N : 1, d = D > 0 ? (size_t)D : 1;
  return 2 * align64(n * sizeof(float)) + align64(RADIX_BINS * sizeof(uint32_t)) +
         2 * align64(n * d * sizeof(double));
}

static Ws ws_split(void *ws, int N, int D) {
  char *p = ws;
  size_t n = N > 0 ? (size_t)N : 1, d = D > 0 ? (size_t)D : 1;
  Ws w;
  w.s = (float *)p, p += align64(n * sizeof(float));
  w.tmp = (float *)p, p += align64(n * sizeof(float));
  w.hist = (uint32_t *)p, p += align64(RADIX_BINS * sizeof(uint32_t));
  w.dk = (double *)p, p += align64(n * d * sizeof(double));
  w.dv = (double *)p;
  return w;
}

/* Everything one call needs, resolved once. */
typedef struct Call {
  const AttnLayout *l;
  int D;
  const AttnRefArgs *a;
  const float *q, *k, *v;
  const int32_t *lengths;
  float scale;          /* f32(1 / sqrt(D)) */
  uint32_t drop_thr;
  double drop_scale;    /* 1 / (1 - p) */
} Call;

static int valid_len(const Call *c, int b) {
  int L = c->lengths[b];
  return L < 0 ? 0 : L > c->l->N ? c->l->N : L;
}

static const float *at(const float *base, const AttnLayout *l, int b, int n, int h) {
  return base + b * l->qkv_sb + n * l->qkv_sn + h * l->qkv_sh;
}

/* S_ij for j < L into s: an f32 dot in order, then the f32 scale (the kernels'
 * arithmetic; forward and backward call this same function, so kept sets agree). */
static void row_scores(const Call *c, int b, int h, int i, int L, float *s) {
  const float *qi = at(c->q, c->l, b, i, h);
  for (int j = 0; j < L; j++) {
    const float *kj = at(c->k, c->l, b, j, h);
    float dot = 0.0f;
    for (int d = 0; d < c->D; d++)
      dot += qi[d] * kj[d];
    s[j] = dot * c->scale;
  }
}

/* ---- thresholds ------------------------------------------------------------------- */

static void swapf(float *x, float *y) {
  float t = *x;
  *x = *y;
  *y = t;
}

float attn_ref_kth_largest(const float *x, int m, int keep, float *tmp) {
  memcpy(tmp, x, (size_t)m * sizeof *tmp);
  int lo = 0, hi = m, k = keep - 1; /* index in descending order */
  for (;;) {
    if (hi - lo <= 1)
      return tmp[lo];
    float a = tmp[lo], b = tmp[lo + (hi - lo) / 2], c = tmp[hi - 1];
    float pivot = a < b ? (b < c ? b : a < c ? c : a) : (a < c ? a : b < c ? c : b);
    /* three-way partition, descending: [lo, gt) > pivot, [gt, lt) == pivot, [lt, hi) < */
    int gt = lo, i = lo, lt = hi;
    while (i < lt) {
      if (tmp[i] > pivot)
        swapf(&tmp[gt++], &tmp[i++]);
      else if (tmp[i] < pivot)
        swapf(&tmp[i], &tmp[--lt]);
      else
        i++;
    }
    if (k < gt)
      hi = gt;
    else if (k < lt)
      return pivot;
    else
      lo = lt;
  }
}

/* Order-preserving keys: x < y <=> key(x) < key(y); -0 is folded into +0 first so
 * equal floats share a key. */
static uint32_t order_key(float f) {
  if (f == 0.0f)
    f = 0.0f;
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

static float from_order_key(uint32_t k) {
  uint32_t u = (k & 0x80000000u) ? (k & 0x7fffffffu) : ~k;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* Adds the group's valid scores (b0 <= b < b1, h0 <= h < h1) to the histogram: the
 * high 16 bits of their keys (pass 0), or the low 16 bits of those whose high bits
 * are `high` (pass 1). */
static void group_hist(const Call *c, Ws *w, int b0, int b1, int h0, int h1, int pass,
                       uint32_t high) {
  memset(w->hist, 0, RADIX_BINS * sizeof *w->hist);
  for (int b = b0; b < b1; b++) {
    int L = valid_len(c, b);
    for (int h = h0; h < h1; h++)
      for (int i = 0; i < L; i++) {
        row_scores(c, b, h, i, L, w->s);
        for (int j = 0; j < L; j++) {
          uint32_t key = order_key(w->s[j]);
          if (pass == 0)
            w->hist[key >> 16]++;
          else if (key >> 16 == high)
            w->hist[key & 0xffffu]++;
        }
      }
  }
}

/* The bin holding the rank-th largest (1-based) of the histogram; *rank becomes the
 * rank within that bin. */
static uint32_t pick_bin(const uint32_t *hist, int64_t *rank) {
  int64_t above = 0;
  int bin = RADIX_BINS - 1;
  for (; bin > 0; bin--) {
    if (above + hist[bin] >= *rank)
      break;
    above += hist[bin];
  }
  *rank -= above;
  return (uint32_t)bin;
}

/* tau_g: the keep(M_g)-th largest valid score of the group, by a two-pass radix
 * select over the keys (scores recomputed per pass); +inf for an empty group, -inf
 * for one that keeps every score. */
static float group_tau(const Call *c, Ws *w, int b0, int b1, int h0, int h1) {
  int64_t m = 0;
  for (int b = b0; b < b1; b++)
    m += (int64_t)valid_len(c, b) * valid_len(c, b) * (h1 - h0);
  if (m == 0)
    return INFINITY;
  int64_t rank = attention_keep_count(c->a->sparsity, c->a->keep_min, m);
  if (rank == m)   /* every score kept: no select (templates/reference.h) */
    return -INFINITY;
  group_hist(c, w, b0, b1, h0, h1, 0, 0);
  uint32_t high = pick_bin(w->hist, &rank);
  group_hist(c, w, b0, b1, h0, h1, 1, high);
  uint32_t low = pick_bin(w->hist, &rank);
  return from_order_key(high << 16 | low);
}

/* tau_i of a row whose scores are in w->s (tau_group for the quantile modes). */
static float row_tau(const Call *c, Ws *w, int L, float tau_group) {
  switch (c->a->select) {
  case SEL_ROW_TOPK: {
    int64_t keep = attention_keep_count(c->a->sparsity, c->a->keep_min, L);
    return keep >= L ? -INFINITY : attn_ref_kth_largest(w->s, L, (int)keep, w->tmp);
  }
  case SEL_HEAD_QUANTILE:
  case SEL_LAYER_QUANTILE: {
    int kmin = c->a->keep_min < L ? c->a->keep_min : L;
    float floor_tau = attn_ref_kth_largest(w->s, L, kmin, w->tmp);
    return tau_group < floor_tau ? tau_group : floor_tau;
  }
  default:
    return -INFINITY;
  }
}

/* ---- forward ---------------------------------------------------------------------- */

static int setup(Call *c, const AttnLayout *l, int D, const AttnRefArgs *a, const float *q,
                 const float *k, const float *v, const int32_t *lengths) {
  if (D < 1 || D > MAX_D || a->keep_min < 1 || !(a->sparsity >= 0 && a->sparsity < 1) ||
      !(a->dropout >= 0 && a->dropout < 1) || a->select < SEL_NONE ||
      a->select > SEL_LAYER_QUANTILE)
    return -1;
  *c = (Call){.l = l, .D = D, .a = a, .q = q, .k = k, .v = v, .lengths = lengths,
              .scale = (float)(1.0 / sqrt((double)D)),
              .drop_thr = dropout_threshold(a->dropout),
              .drop_scale = 1.0 / (1.0 - (double)a->dropout)};
  return 0;
}

static uint32_t row_hash(const Call *c, int b, int h, int i) {
  return dropout_row_hash(c->a->seed, c->a->step, c->a->layer, (uint32_t)b, (uint32_t)h,
                          (uint32_t)i);
}

int attn_ref_forward(const AttnLayout *l, int D, const AttnRefArgs *a, const float *q,
                     const float *k, const float *v, const int32_t *lengths, float *o,
                     float *lse, float *tau, int32_t *kept, float *entropy,
                     float *dense_entropy, void *ws) {
  Call c;
  if (setup(&c, l, D, a, q, k, v, lengths))
    return -1;
  Ws w = ws_split(ws, l->N, D);
  float tau_layer = a->select == SEL_LAYER_QUANTILE ? group_tau(&c, &w, 0, l->B, 0, l->H) : 0;
  double acc[MAX_D];
  for (int b = 0; b < l->B; b++) {
    int L = valid_len(&c, b);
    for (int h = 0; h < l->H; h++) {
      float tau_g = a->select == SEL_HEAD_QUANTILE ? group_tau(&c, &w, b, b + 1, h, h + 1)
                                                   : tau_layer;
      for (int i = 0; i < l->N; i++) {
        float *oi = o + b * l->o_sb + i * l->o_sn + h * l->o_sh;
        int64_t r = ((int64_t)b * l->H + h) * l->N + i;
        if (i >= L) {
          for (int d = 0; d < D; d++)
            oi[d] = 0.0f;
          lse[r] = 0.0f;
          tau[r] = INFINITY;
          if (kept) kept[r] = 0;
          if (entropy) entropy[r] = 0.0f;
          if (dense_entropy) dense_entropy[r] = 0.0f;
          continue;
        }
        row_scores(&c, b, h, i, L, w.s);
        float t = row_tau(&c, &w, L, tau_g);
        float mx = -INFINITY;
        for (int j = 0; j < L; j++)
          mx = w.s[j] > mx ? w.s[j] : mx;
        double sum = 0, et = 0, dsum = 0, det = 0;
        int n = 0;
        for (int j = 0; j < L; j++) {
          double x = (double)w.s[j] - mx, e = exp(x);
          if (w.s[j] >= t)
            sum += e, et += e * x, n++;
          dsum += e, det += e * x;   /* every valid key: the dense softmax */
        }
        for (int d = 0; d < D; d++)
          acc[d] = 0;
        uint32_t rh = row_hash(&c, b, h, i);
        for (int j = 0; j < L; j++) {
          if (w.s[j] < t || !dropout_keep(rh, (uint32_t)j, c.drop_thr))
            continue;
          double p = exp((double)w.s[j] - mx) / sum * c.drop_scale;
          const float *vj = at(v, l, b, j, h);
          for (int d = 0; d < D; d++)
            acc[d] += p * vj[d];
        }
        for (int d = 0; d < D; d++)
          oi[d] = (float)acc[d];
        lse[r] = (float)(mx + log(sum));
        tau[r] = n == L ? -INFINITY : t;
        if (kept) kept[r] = n;
        if (entropy) entropy[r] = (float)(log(sum) - et / sum);
        if (dense_entropy) dense_entropy[r] = (float)(log(dsum) - det / dsum);
      }
    }
  }
  return 0;
}

/* ---- backward --------------------------------------------------------------------- */

int attn_ref_backward(const AttnLayout *l, int D, const AttnRefArgs *a, const float *q,
                      const float *k, const float *v, const float *o, const float *dout,
                      const int32_t *lengths, const float *lse, const float *tau, float *dq,
                      float *dk, float *dv, float *delta, void *ws) {
  Call c;
  if (setup(&c, l, D, a, q, k, v, lengths))
    return -1;
  Ws w = ws_split(ws, l->N, D);
  double dq_acc[MAX_D];
  for (int b = 0; b < l->B; b++) {
    int L = valid_len(&c, b);
    for (int h = 0; h < l->H; h++) {
      memset(w.dk, 0, (size_t)L * D * sizeof *w.dk);
      memset(w.dv, 0, (size_t)L * D * sizeof *w.dv);
      for (int i = 0; i < l->N; i++) {
        int64_t r = ((int64_t)b * l->H + h) * l->N + i;
        float *dqi = dq + b * l->qkv_sb + i * l->qkv_sn + h * l->qkv_sh;
        if (i >= L) {
          for (int d = 0; d < D; d++)
            dqi[d] = 0.0f;
          delta[r] = 0.0f;
          continue;
        }
        const float *oi = o + b * l->o_sb + i * l->o_sn + h * l->o_sh;
        const float *gi = dout + b * l->o_sb + i * l->o_sn + h * l->o_sh;
        const float *qi = at(q, l, b, i, h);
        double dl = 0;
        for (int d = 0; d < D; d++)
          dl += (double)gi[d] * oi[d];
        delta[r] = (float)dl;
        row_scores(&c, b, h, i, L, w.s);
        for (int d = 0; d < D; d++)
          dq_acc[d] = 0;
        uint32_t rh = row_hash(&c, b, h, i);
        for (int j = 0; j < L; j++) {
          if (w.s[j] < tau[r])
            continue;
          double p = exp((double)w.s[j] - lse[r]);
          bool z = dropout_keep(rh, (uint32_t)j, c.drop_thr);
          const float *kj = at(k, l, b, j, h), *vj = at(v, l, b, j, h);
          double dp = 0;
          if (z) {
            for (int d = 0; d < D; d++)
              dp += (double)gi[d] * vj[d];
            dp *= c.drop_scale;
            double pz = p * c.drop_scale;
            for (int d = 0; d < D; d++)
              w.dv[(size_t)j * D + d] += pz * gi[d];
          }
          double ds = p * (dp - dl) * c.scale;
          for (int d = 0; d < D; d++) {
            dq_acc[d] += ds * kj[d];
            w.dk[(size_t)j * D + d] += ds * qi[d];
          }
        }
        for (int d = 0; d < D; d++)
          dqi[d] = (float)dq_acc[d];
      }
      for (int j = 0; j < l->N; j++) {
        float *dkj = dk + b * l->qkv_sb + j * l->qkv_sn + h * l->qkv_sh;
        float *dvj = dv + b * l->qkv_sb + j * l->qkv_sn + h * l->qkv_sh;
        for (int d = 0; d < D; d++) {
          dkj[d] = j < L ? (float)w.dk[(size_t)j * D + d] : 0.0f;
          dvj[d] = j < L ? (float)w.dv[(size_t)j * D + d] : 0.0f;
        }
      }
    }
  }
  return 0;
}
