/* Linear layers through the backend's GEMM: see layers.h. */
#include "layers.h"

static DevPtr dp(const float *p) { return (DevPtr)(uintptr_t)p; }

int linear_forward(Backend *be, float *out, int ld_out, const float *inp, int ld_inp,
                   const float *w, const float *bias, int rows, int in_f, int out_f) {
  if (rows <= 0)
    return 0;
  /* the bias first, then out += inp w^T (one pass less than adding it afterwards) */
  if (bias)
    bias_fill_par(rt_host_pool(be), out, ld_out, bias, rows, out_f);
  RtGemm g = {.ta = RT_NOTRANS, .tb = RT_TRANS, .m = rows, .n = out_f, .k = in_f,
              .alpha = 1.0f, .beta = bias ? 1.0f : 0.0f,
              .a = dp(inp), .lda = ld_inp, .b = dp(w), .ldb = in_f, .c = dp(out), .ldc = ld_out};
  return rt_gemm(be, &g);
}

int linear_backward(Backend *be, float *dinp, int ld_dinp, float beta, float *dw, float *dbias,
                    const float *dout, int ld_dout, const float *inp, int ld_inp,
                    const float *w, int rows, int in_f, int out_f) {
  if (rows <= 0)
    return 0;
  if (dinp) {
    /* dinp [rows, in] = dout [rows, out] . w [out, in] */
    RtGemm g = {.ta = RT_NOTRANS, .tb = RT_NOTRANS, .m = rows, .n = in_f, .k = out_f,
                .alpha = 1.0f, .beta = beta, .a = dp(dout), .lda = ld_dout, .b = dp(w),
                .ldb = in_f, .c = dp(dinp), .ldc = ld_dinp};
    if (rt_gemm(be, &g))
      return -1;
  }
  /* dw [out, in] += dout^T [out, rows] . inp [rows, in] */
  RtGemm g = {.ta = RT_TRANS, .tb = RT_NOTRANS, .m = out_f, .n = in_f, .k = rows,
              .alpha = 1.0f, .beta = 1.0f, .a = dp(dout), .lda = ld_dout, .b = dp(inp),
              .ldb = ld_inp, .c = dp(dw), .ldc = in_f};
  if (rt_gemm(be, &g))
    return -1;
  if (dbias)
    bias_grad_par(rt_host_pool(be), dbias, dout, ld_dout, rows, out_f);
  return 0;
}

void bias_fill(float *out, int ld, const float *bias, int rows, int n) {
  for (int r = 0; r < rows; r++) {
    float *o = out + (size_t)r * ld;
    for (int j = 0; j < n; j++)
      o[j] = bias[j];
  }
}

void bias_grad(float *dbias, const float *dout, int ld, int rows, int n) {
  for (int j = 0; j < n; j++) {
    double s = 0;
    for (int r = 0; r < rows; r++)
      s += dout[(size_t)r * ld + j];
    dbias[j] += (float)s;
  }
}
