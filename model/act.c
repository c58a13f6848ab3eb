/* Activations but GELU (gelu.c), residual additions and hidden dropout: see layers.h. */
#include "layers.h"

#include <math.h>
#include <string.h>

#include "../templates/dropout.h"

void relu_forward(float *out, const float *inp, size_t n) {
  for (size_t i = 0; i < n; i++)
    out[i] = inp[i] > 0 ? inp[i] : 0.0f;
}

void relu_backward(float *dinp, const float *out, const float *dout, size_t n) {
  for (size_t i = 0; i < n; i++)
    dinp[i] = out[i] > 0 ? dout[i] : 0.0f;
}

void tanh_forward(float *out, const float *inp, size_t n) {
  for (size_t i = 0; i < n; i++)
    out[i] = tanhf(inp[i]);
}

void tanh_backward(float *dinp, const float *out, const float *dout, size_t n) {
  for (size_t i = 0; i < n; i++)
    dinp[i] = dout[i] * (1.0f - out[i] * out[i]);
}

void residual_forward(float *out, const float *inp, size_t n) {
  for (size_t i = 0; i < n; i++)
    out[i] += inp[i];
}

bool dropout_site_keep(const DropoutSite *d, int b, int n, int c) {
  uint32_t row = dropout_row_hash(d->seed, d->step, d->layer, (uint32_t)b, d->site, (uint32_t)n);
  return dropout_keep(row, (uint32_t)c, dropout_threshold(d->p));
}

/* out = inp * mask / (1 - p); forward and backward are the same map. */
static void dropout_apply(float *out, const float *inp, const DropoutSite *d, int B, int N,
                          int C) {
  size_t n_all = (size_t)B * N * C;
  if (d->p <= 0.0f) {
    if (out != inp)
      memmove(out, inp, n_all * sizeof *out);
    return;
  }
  uint32_t thr = dropout_threshold(d->p);
  float scale = 1.0f / (1.0f - d->p);
  for (int b = 0; b < B; b++)
    for (int n = 0; n < N; n++) {
      uint32_t row =
          dropout_row_hash(d->seed, d->step, d->layer, (uint32_t)b, d->site, (uint32_t)n);
      size_t at = ((size_t)b * N + n) * C;
      for (int c = 0; c < C; c++)
        out[at + c] = dropout_keep(row, (uint32_t)c, thr) ? inp[at + c] * scale : 0.0f;
    }
}

void dropout_forward(float *out, const float *inp, const DropoutSite *d, int B, int N, int C) {
  dropout_apply(out, inp, d, B, N, C);
}

void dropout_backward(float *dinp, const float *dout, const DropoutSite *d, int B, int N, int C) {
  dropout_apply(dinp, dout, d, B, N, C);
}
