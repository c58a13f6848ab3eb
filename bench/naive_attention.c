/* See naive_attention.h. */
#include "naive_attention.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_desc(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x < y) - (x > y);
}

static void row(const float *qi, const float *k, const float *v, float *out, int L, int D,
                int64_t sn, double sparsity, int topk, float *s, float *tmp, int32_t *kept) {
  float scale = 1.0f / sqrtf((float)D);
  for (int j = 0; j < L; j++) {
    float dot = 0;
    for (int d = 0; d < D; d++)
      dot += qi[d] * k[j * sn + d];
    s[j] = dot * scale;
  }
  float tau = -INFINITY;
  int keep = (int)ceil((1.0 - sparsity) * L - 1e-6);
  keep = keep < 1 ? 1 : keep > L ? L : keep;
  if (topk && keep < L) {
    memcpy(tmp, s, (size_t)L * sizeof *s);
    qsort(tmp, (size_t)L, sizeof *tmp, cmp_desc);
    tau = tmp[keep - 1];
  }
  float mx = -INFINITY, sum = 0;
  for (int j = 0; j < L; j++)
    mx = s[j] > mx ? s[j] : mx;
  int n = 0;
  for (int j = 0; j < L; j++) {
    s[j] = s[j] >= tau ? expf(s[j] - mx) : 0;
    sum += s[j];
    n += s[j] != 0;
  }
  for (int d = 0; d < D; d++)
    out[d] = 0;
  for (int j = 0; j < L; j++)
    if (s[j] != 0)
      for (int d = 0; d < D; d++)
        out[d] += s[j] * v[j * sn + d];
  for (int d = 0; d < D; d++)
    out[d] /= sum;
  *kept = n;
}

void naive_attention_fwd(const float *q, const float *k, const float *v, float *o,
                         const int32_t *lengths, int32_t *kept, int B, int H, int N, int D,
                         int64_t sb, int64_t sn, int64_t sh, double sparsity, int topk,
                         int b_first, int b_last) {
  float *s = malloc(2 * (size_t)N * sizeof *s);
  if (!s)
    abort();
  (void)B;
  for (int b = b_first; b < b_last; b++)
    for (int h = 0; h < H; h++)
      for (int i = 0; i < N; i++) {
        int64_t off = b * sb + i * sn + h * sh;
        int32_t *kp = kept + ((int64_t)b * H + h) * N + i;
        if (i >= lengths[b]) {
          memset(o + off, 0, (size_t)D * sizeof *o);
          *kp = 0;
          continue;
        }
        row(q + off, k + b * sb + h * sh, v + b * sb + h * sh, o + off, lengths[b], D, sn,
            sparsity, topk, s, s + N, kp);
      }
  free(s);
}
