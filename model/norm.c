/* LayerNorm over the hidden dimension: see layers.h. */
#include "layers.h"

#include <math.h>

void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                       const float *b, int rows, int C, float eps) {
  for (int r = 0; r < rows; r++) {
    const float *x = inp + (size_t)r * C;
    float *o = out + (size_t)r * C;
    double m = 0;
    for (int c = 0; c < C; c++)
      m += x[c];
    m /= C;
    double v = 0;
    for (int c = 0; c < C; c++)
      v += (x[c] - m) * (x[c] - m);
    v /= C;
    double s = 1.0 / sqrt(v + (double)eps);
    for (int c = 0; c < C; c++)
      o[c] = (float)((x[c] - m) * s) * w[c] + b[c];
    mean[r] = (float)m;
    rstd[r] = (float)s;
  }
}

void layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, const float *mean, const float *rstd, int rows, int C) {
  for (int r = 0; r < rows; r++) {
    const float *x = inp + (size_t)r * C, *dy = dout + (size_t)r * C;
    float *dx = dinp + (size_t)r * C;
    double m = mean[r], s = rstd[r];
    double gsum = 0, gxsum = 0;
    for (int c = 0; c < C; c++) {
      double xhat = (x[c] - m) * s, g = (double)dy[c] * w[c];
      gsum += g;
      gxsum += g * xhat;
      dw[c] += (float)(dy[c] * xhat);
      db[c] += dy[c];
    }
    gsum /= C;
    gxsum /= C;
    for (int c = 0; c < C; c++) {
      double xhat = (x[c] - m) * s, g = (double)dy[c] * w[c];
      dx[c] = (float)(s * (g - gsum - xhat * gxsum));
    }
  }
}
