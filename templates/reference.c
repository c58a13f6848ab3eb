/* Double-precision references (see reference.h). */
#include "reference.h"

#include <math.h>
#include <stdlib.h>

int attention_keep_count(double sparsity, int keep_min, int m) {
  double x = ceil((1.0 - sparsity) * m - 1e-6);
  int keep = x < keep_min ? keep_min : (int)x;
  return keep < m ? keep : m;
}

static int cmp_desc(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x < y) - (x > y);
}

/* The keep-th largest of s[0..m), counting repeats. */
static double kth_largest(const double *s, int m, int keep) {
  double *sorted = malloc((size_t)m * sizeof *sorted);
  if (!sorted)
    abort();
  for (int j = 0; j < m; j++)
    sorted[j] = s[j];
  qsort(sorted, (size_t)m, sizeof *sorted, cmp_desc);
  double tau = sorted[keep - 1];
  free(sorted);
  return tau;
}

static void row_ref(const Spec *sp, const AttnLayout *l, const float *q, const float *k,
                    const float *v, int b, int h, int i, int m, double sparsity, double *s,
                    double *out, int32_t *kept) {
  int D = sp->head_dim;
  const float *qi = q + b * l->qkv_sb + i * l->qkv_sn + h * l->qkv_sh;
  for (int j = 0; j < m; j++) {
    const float *kj = k + b * l->qkv_sb + j * l->qkv_sn + h * l->qkv_sh;
    double dot = 0;
    for (int d = 0; d < D; d++)
      dot += (double)qi[d] * kj[d];
    s[j] = dot / sqrt((double)D);
  }
  double tau = -INFINITY;
  if (sp->select == SEL_ROW_TOPK)
    tau = kth_largest(s, m, attention_keep_count(sparsity, sp->keep_min, m));
  double mx = -INFINITY, sum = 0;
  for (int j = 0; j < m; j++)
    mx = s[j] > mx ? s[j] : mx;
  int n = 0;
  for (int j = 0; j < m; j++)
    if (s[j] >= tau) {
      sum += exp(s[j] - mx);
      n++;
    }
  for (int d = 0; d < D; d++)
    out[d] = 0;
  for (int j = 0; j < m; j++) {
    if (s[j] < tau)
      continue;
    double p = exp(s[j] - mx) / sum;
    const float *vj = v + b * l->qkv_sb + j * l->qkv_sn + h * l->qkv_sh;
    for (int d = 0; d < D; d++)
      out[d] += p * vj[d];
  }
  *kept = n;
}

void attention_fwd_ref(const Spec *sp, const AttnLayout *l, const float *q, const float *k,
                       const float *v, const int32_t *lengths, double sparsity, double *o,
                       int32_t *kept) {
  double *s = malloc((size_t)(l->N > 0 ? l->N : 1) * sizeof *s);
  if (!s)
    abort();
  for (int b = 0; b < l->B; b++)
    for (int h = 0; h < l->H; h++)
      for (int i = 0; i < l->N; i++) {
        double *out = o + b * l->o_sb + i * l->o_sn + h * l->o_sh;
        int32_t *kp = kept + ((int64_t)b * l->H + h) * l->N + i;
        int L = lengths[b];
        if (i >= L) {
          for (int d = 0; d < sp->head_dim; d++)
            out[d] = 0;
          *kp = 0;
          continue;
        }
        int m = sp->causal ? (i + 1 < L ? i + 1 : L) : L;
        row_ref(sp, l, q, k, v, b, h, i, m, sparsity, s, out, kp);
      }
  free(s);
}
