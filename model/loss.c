/* Softmax cross-entropy over the classes: see layers.h. */
#include "layers.h"

#include <math.h>

float crossentropy_forward(float *probs, const float *logits, const int32_t *labels, int B,
                           int K) {
  double total = 0;
  for (int b = 0; b < B; b++) {
    const float *z = logits + (size_t)b * K;
    float *p = probs + (size_t)b * K;
    double mx = z[0];
    for (int k = 1; k < K; k++)
      mx = z[k] > mx ? z[k] : mx;
    double sum = 0;
    for (int k = 0; k < K; k++)
      sum += exp(z[k] - mx);
    for (int k = 0; k < K; k++)
      p[k] = (float)(exp(z[k] - mx) / sum);
    if (labels)
      total += log(sum) + mx - z[labels[b]];
  }
  return labels && B > 0 ? (float)(total / B) : NAN;
}

void crossentropy_backward(float *dlogits, const float *probs, const int32_t *labels, int B,
                           int K, float scale) {
  for (int b = 0; b < B; b++)
    for (int k = 0; k < K; k++)
      dlogits[(size_t)b * K + k] =
          scale * (probs[(size_t)b * K + k] - (k == labels[b] ? 1.0f : 0.0f));
}
