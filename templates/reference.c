/* Double-precision references (see reference.h). */
#include "reference.h"

#include <math.h>
#include <stdlib.h>

#include "dropout.h"

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p)
    abort();
  return p;
}

int64_t attention_keep_count(double sparsity, int keep_min, int64_t m) {
  double x = ceil((1.0 - sparsity) * (double)m - 1e-6);
  int64_t keep = x < keep_min ? keep_min : (int64_t)x;
  return keep < m ? keep : m;
}

int attention_valid_keys(const Spec *s, int i, int L) {
  if (i >= L)
    return 0;
  return s->causal && i + 1 < L ? i + 1 : L;
}

void attention_scores_ref(const Spec *sp, const AttnLayout *l, const float *q, const float *k,
                          int b, int h, int i, int m, double *s) {
  const float *qi = q + b * l->qkv_sb + i * l->qkv_sn + h * l->qkv_sh;
  for (int j = 0; j < m; j++) {
    const float *kj = k + b * l->qkv_sb + j * l->qkv_sn + h * l->qkv_sh;
    double dot = 0;
    for (int d = 0; d < sp->head_dim; d++)
      dot += (double)qi[d] * kj[d];
    s[j] = dot / sqrt((double)sp->head_dim);
  }
}

static int cmp_desc(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x < y) - (x > y);
}

double kth_largest_ref(const double *s, int64_t m, int64_t keep) {
  double *sorted = xmalloc((size_t)m * sizeof *sorted);
  for (int64_t j = 0; j < m; j++)
    sorted[j] = s[j];
  qsort(sorted, (size_t)m, sizeof *sorted, cmp_desc);
  double tau = sorted[keep - 1];
  free(sorted);
  return tau;
}

double attention_group_tau_of_ref(const double *s, int64_t m, double sparsity, int keep_min) {
  if (m == 0)
    return INFINITY;
  int64_t keep = attention_keep_count(sparsity, keep_min, m);
  return keep == m ? -INFINITY : kth_largest_ref(s, m, keep);
}

/* Appends every valid score of (b, h) to all[*n]. */
static void gather_head(const Spec *sp, const AttnLayout *l, const float *q, const float *k,
                        int b, int h, int L, double *all, int64_t *n) {
  for (int i = 0; i < L; i++) {
    int m = attention_valid_keys(sp, i, L);
    attention_scores_ref(sp, l, q, k, b, h, i, m, all + *n);
    *n += m;
  }
}

int attention_group_tau_ref(const Spec *sp, const AttnLayout *l, const float *q, const float *k,
                            const int32_t *lengths, double sparsity, double *tau_group) {
  if (sp->select != SEL_HEAD_QUANTILE && sp->select != SEL_LAYER_QUANTILE)
    return 0;
  bool per_head = sp->select == SEL_HEAD_QUANTILE;
  double *all = xmalloc((size_t)l->B * l->H * l->N * l->N * sizeof *all);
  int64_t n = 0;
  int g = 0;
  for (int b = 0; b < l->B; b++)
    for (int h = 0; h < l->H; h++) {
      gather_head(sp, l, q, k, b, h, lengths[b], all, &n);
      if (per_head) {
        tau_group[g++] = attention_group_tau_of_ref(all, n, sparsity, sp->keep_min);
        n = 0;
      }
    }
  if (!per_head)
    tau_group[g++] = attention_group_tau_of_ref(all, n, sparsity, sp->keep_min);
  free(all);
  return g;
}

double attention_row_tau_ref(const Spec *sp, const double *s, int m, double sparsity,
                             double tau_group) {
  switch (sp->select) {
  case SEL_ROW_TOPK:
    return kth_largest_ref(s, m, attention_keep_count(sparsity, sp->keep_min, m));
  case SEL_HEAD_QUANTILE: case SEL_LAYER_QUANTILE: {
    double floor_tau = kth_largest_ref(s, m, sp->keep_min < m ? sp->keep_min : m);
    return tau_group < floor_tau ? tau_group : floor_tau;
  }
  default:
    return -INFINITY;
  }
}

/* One valid row: scores s[0..m), threshold tau; writes element `at` of the per-row
 * outputs and the D values at out (when o is asked). */
static void row_ref(const Spec *sp, const AttnLayout *l, const float *v, const AttnFwdArgs *a,
                    int b, int h, int i, const double *s, int m, double tau, double *out,
                    const AttnFwdOut *res, int64_t at) {
  int D = sp->head_dim;
  double mx = -INFINITY, sum = 0, et = 0, dsum = 0, det = 0;
  for (int j = 0; j < m; j++)
    mx = s[j] > mx ? s[j] : mx;
  int n = 0;
  for (int j = 0; j < m; j++) {
    double t = s[j] - mx, e = exp(t);
    dsum += e, det += e * t;
    if (s[j] >= tau)
      sum += e, et += e * t, n++;
  }
  uint32_t thr = dropout_threshold(a->dropout);
  uint32_t rh = dropout_row_hash(a->seed, a->step, a->layer, (uint32_t)b, (uint32_t)h,
                                 (uint32_t)i);
  int dropped = 0;
  for (int d = 0; d < D && out; d++)
    out[d] = 0;
  for (int j = 0; j < m; j++) {
    if (s[j] < tau)
      continue;
    if (!dropout_keep(rh, (uint32_t)j, thr)) {
      dropped++;
      continue;
    }
    double p = exp(s[j] - mx) / sum / (1.0 - (double)a->dropout);
    const float *vj = v + b * l->qkv_sb + j * l->qkv_sn + h * l->qkv_sh;
    for (int d = 0; d < D && out; d++)
      out[d] += p * vj[d];
  }
  if (res->kept) res->kept[at] = n;
  if (res->dropped) res->dropped[at] = dropped;
  if (res->lse) res->lse[at] = mx + log(sum);
  if (res->tau) res->tau[at] = n == m ? -INFINITY : tau;
  if (res->entropy) res->entropy[at] = log(sum) - et / sum;
  if (res->dense_entropy) res->dense_entropy[at] = log(dsum) - det / dsum;
}

static void padded_row_ref(const Spec *sp, double *out, const AttnFwdOut *res, int64_t at) {
  for (int d = 0; d < sp->head_dim && out; d++)
    out[d] = 0;
  double *zero[] = {res->lse, res->entropy, res->dense_entropy};
  for (int z = 0; z < 3; z++)
    if (zero[z])
      zero[z][at] = 0;
  if (res->kept) res->kept[at] = 0;
  if (res->dropped) res->dropped[at] = 0;
  if (res->tau) res->tau[at] = INFINITY;
}

void attention_fwd_full_ref(const Spec *sp, const AttnLayout *l, const float *q,
                            const float *k, const float *v, const int32_t *lengths,
                            const AttnFwdArgs *a, const AttnFwdOut *res) {
  double *s = xmalloc((size_t)l->N * sizeof *s);
  double *groups = xmalloc((size_t)l->B * l->H * sizeof *groups);
  const double *tau_group = a->tau_group;
  if (!tau_group) {
    attention_group_tau_ref(sp, l, q, k, lengths, a->sparsity, groups);
    tau_group = groups;
  }
  bool per_head = sp->select == SEL_HEAD_QUANTILE;
  for (int b = 0; b < l->B; b++)
    for (int h = 0; h < l->H; h++)
      for (int i = 0; i < l->N; i++) {
        double *out = res->o ? res->o + b * l->o_sb + i * l->o_sn + h * l->o_sh : NULL;
        int64_t at = ((int64_t)b * l->H + h) * l->N + i;
        int m = attention_valid_keys(sp, i, lengths[b]);
        if (!m) {
          padded_row_ref(sp, out, res, at);
          continue;
        }
        attention_scores_ref(sp, l, q, k, b, h, i, m, s);
        double tg = tau_group[per_head ? b * l->H + h : 0];
        double tau = attention_row_tau_ref(sp, s, m, a->sparsity, tg);
        row_ref(sp, l, v, a, b, h, i, s, m, tau, out, res, at);
      }
  free(s);
  free(groups);
}

void attention_fwd_ref(const Spec *sp, const AttnLayout *l, const float *q, const float *k,
                       const float *v, const int32_t *lengths, double sparsity, double *o,
                       int32_t *kept) {
  AttnFwdArgs a = {.sparsity = sparsity};
  AttnFwdOut res = {.o = o, .kept = kept};
  attention_fwd_full_ref(sp, l, q, k, v, lengths, &a, &res);
}
