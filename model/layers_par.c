/* The elementwise layers split over the cpu backend's thread pool (layers.h,
 * "Threaded versions"). Each does the arithmetic of its plain loop in the same
 * order, so the two agree bit for bit with any thread count (tests/test_layers.c
 * checks it): rows are independent, and every sum into a parameter gradient is split
 * by columns, each column summed over the rows in the plain loop's order. */
#include "layers.h"

#include <math.h>
#include <string.h>

#include "../templates/dropout.h"
#include "dropout_row.h"
#include "par.h"

/* Column strips for the parameter-gradient sums: 64 floats (four cache lines) wide,
 * so a strip's rows are whole lines and no two threads write one line. */
enum { STRIP = 64 };

static int64_t strips(int C) { return (C + STRIP - 1) / STRIP; }

/* ---- embeddings ------------------------------------------------------------------ */

typedef struct {
  float *out, *dwte, *dwpe, *dwtt;
  const float *wte, *wpe, *wtt, *dout;
  const int32_t *ids, *lengths;
  int B, N, C, pad_id;
} EmbedCtx;

static void embed_rows(void *ctx, int64_t first, int64_t last) {
  const EmbedCtx *e = ctx;
  int C = e->C;
  for (int64_t r = first; r < last; r++) {
    float *o = e->out + (size_t)r * C;
    const float *t = e->wte + (size_t)e->ids[r] * C;
    const float *p = e->wpe + (size_t)(r % e->N) * C;
    if (e->wtt) {
      for (int c = 0; c < C; c++)
        o[c] = (t[c] + e->wtt[c]) + p[c];
    } else {
      for (int c = 0; c < C; c++)
        o[c] = t[c] + p[c];
    }
  }
}

void embedding_forward_par(RtPool *pool, float *out, const int32_t *ids, const float *wte,
                           const float *wpe, const float *wtt, int B, int N, int C) {
  EmbedCtx e = {.out = out, .wte = wte, .wpe = wpe, .wtt = wtt, .ids = ids, .N = N, .C = C};
  int64_t R = (int64_t)B * N;
  par_for(pool, R, par_chunk(R, C), embed_rows, &e);
}

/* One strip [c0, c1) of every gradient row, over the positions in the plain order. */
static void embed_grad_strips(void *ctx, int64_t first, int64_t last) {
  const EmbedCtx *e = ctx;
  int C = e->C, N = e->N;
  for (int64_t s = first; s < last; s++) {
    int c0 = (int)s * STRIP, c1 = c0 + STRIP < C ? c0 + STRIP : C;
    for (int b = 0; b < e->B; b++) {
      int L = e->lengths[b] < N ? e->lengths[b] : N;
      for (int n = 0; n < L; n++) {
        const float *g = e->dout + ((size_t)b * N + n) * C;
        int32_t id = e->ids[(size_t)b * N + n];
        if (id != e->pad_id) {
          float *t = e->dwte + (size_t)id * C;
          for (int c = c0; c < c1; c++)
            t[c] += g[c];
        }
        float *p = e->dwpe + (size_t)n * C;
        for (int c = c0; c < c1; c++)
          p[c] += g[c];
        if (e->dwtt)
          for (int c = c0; c < c1; c++)
            e->dwtt[c] += g[c];
      }
    }
  }
}

void embedding_backward_par(RtPool *pool, float *dwte, float *dwpe, float *dwtt,
                            const float *dout, const int32_t *ids, const int32_t *lengths, int B,
                            int N, int C, int pad_id) {
  EmbedCtx e = {.dwte = dwte, .dwpe = dwpe, .dwtt = dwtt, .dout = dout, .ids = ids,
                .lengths = lengths, .B = B, .N = N, .C = C, .pad_id = pad_id};
  par_for(pool, strips(C), 1, embed_grad_strips, &e);
}

/* ---- LayerNorm ------------------------------------------------------------------- */

typedef struct {
  float *out, *mean, *rstd, *dinp, *dw, *db;
  const float *inp, *w, *b, *dout, *cmean, *crstd;
  int rows, C;
  float eps;
} NormCtx;

/* rows [first, last) through the reference itself: the same arithmetic by construction */
static void norm_rows(void *ctx, int64_t first, int64_t last) {
  const NormCtx *n = ctx;
  size_t off = (size_t)first * (size_t)n->C;
  layernorm_forward(n->out + off, n->mean + first, n->rstd + first, n->inp + off, n->w, n->b,
                    (int)(last - first), n->C, n->eps);
}

void layernorm_forward_par(RtPool *pool, float *out, float *mean, float *rstd, const float *inp,
                           const float *w, const float *b, int rows, int C, float eps) {
  NormCtx n = {.out = out, .mean = mean, .rstd = rstd, .inp = inp, .w = w, .b = b,
               .rows = rows, .C = C, .eps = eps};
  par_for(pool, rows, par_chunk(rows, 3 * C), norm_rows, &n);
}

/* dinp, row by row (no parameter gradients here) */
static void norm_grad_rows(void *ctx, int64_t first, int64_t last) {
  const NormCtx *n = ctx;
  int C = n->C;
  for (int64_t r = first; r < last; r++) {
    const float *x = n->inp + (size_t)r * C, *dy = n->dout + (size_t)r * C;
    float *dx = n->dinp + (size_t)r * C;
    double m = n->cmean[r], s = n->crstd[r];
    double gsum = 0, gxsum = 0;
    for (int c = 0; c < C; c++) {
      double xhat = (x[c] - m) * s, g = (double)dy[c] * n->w[c];
      gsum += g;
      gxsum += g * xhat;
    }
    gsum /= C;
    gxsum /= C;
    for (int c = 0; c < C; c++) {
      double xhat = (x[c] - m) * s, g = (double)dy[c] * n->w[c];
      dx[c] = (float)(s * (g - gsum - xhat * gxsum));
    }
  }
}

/* dw and db, strip by strip, each column over the rows in order */
static void norm_grad_strips(void *ctx, int64_t first, int64_t last) {
  const NormCtx *n = ctx;
  int C = n->C;
  for (int64_t s = first; s < last; s++) {
    int c0 = (int)s * STRIP, c1 = c0 + STRIP < C ? c0 + STRIP : C;
    for (int r = 0; r < n->rows; r++) {
      const float *x = n->inp + (size_t)r * C, *dy = n->dout + (size_t)r * C;
      double m = n->cmean[r], rs = n->crstd[r];
      for (int c = c0; c < c1; c++) {
        double xhat = (x[c] - m) * rs;
        n->dw[c] += (float)(dy[c] * xhat);
        n->db[c] += dy[c];
      }
    }
  }
}

void layernorm_backward_par(RtPool *pool, float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, const float *mean,
                            const float *rstd, int rows, int C) {
  NormCtx n = {.dinp = dinp, .dw = dw, .db = db, .dout = dout, .inp = inp, .w = w,
               .cmean = mean, .crstd = rstd, .rows = rows, .C = C};
  par_for(pool, strips(C), 1, norm_grad_strips, &n);
  par_for(pool, rows, par_chunk(rows, 4 * C), norm_grad_rows, &n);
}

/* ---- GELU, residual -------------------------------------------------------------- */

typedef struct {
  float *out;
  const float *inp, *dout;
} EltCtx;

static void gelu_chunk(void *ctx, int64_t first, int64_t last) {
  const EltCtx *e = ctx;
  gelu_forward(e->out + first, e->inp + first, (size_t)(last - first));
}

static void gelu_grad_chunk(void *ctx, int64_t first, int64_t last) {
  const EltCtx *e = ctx;
  gelu_backward(e->out + first, e->inp + first, e->dout + first, (size_t)(last - first));
}

/* ~3 ns an element (gelu.c's float erfc and exp; the double erf took ~25): chunks
 * of ~100 us as before the float version, which ran 2^12 elements a chunk */
enum { GELU_CHUNK = 1 << 15 };

void gelu_forward_par(RtPool *pool, float *out, const float *inp, size_t n) {
  EltCtx e = {out, inp, NULL};
  par_for(pool, (int64_t)n, GELU_CHUNK, gelu_chunk, &e);
}

void gelu_backward_par(RtPool *pool, float *dinp, const float *inp, const float *dout,
                       size_t n) {
  EltCtx e = {dinp, inp, dout};
  par_for(pool, (int64_t)n, GELU_CHUNK, gelu_grad_chunk, &e);
}

static void residual_chunk(void *ctx, int64_t first, int64_t last) {
  const EltCtx *e = ctx;
  for (int64_t i = first; i < last; i++)
    e->out[i] += e->inp[i];
}

void residual_forward_par(RtPool *pool, float *out, const float *inp, size_t n) {
  EltCtx e = {out, inp, NULL};
  par_for(pool, (int64_t)n, PAR_GRAIN, residual_chunk, &e);
}

/* ---- dropout --------------------------------------------------------------------- */

typedef struct {
  float *out;
  const float *inp;
  const DropoutSite *d;
  int N, C;
  bool copy;   /* p = 0 */
  uint32_t thr;
  float scale;
} DropCtx;

static void drop_rows(void *ctx, int64_t first, int64_t last) {
  const DropCtx *x = ctx;
  const DropoutSite *d = x->d;
  int C = x->C;
  for (int64_t r = first; r < last; r++) {
    uint32_t b = (uint32_t)(r / x->N), n = (uint32_t)(r % x->N);
    uint32_t row = dropout_row_hash(d->seed, d->step, d->layer, b, d->site, n);
    size_t at = (size_t)r * C;
    if (x->copy) {
      memmove(x->out + at, x->inp + at, (size_t)C * sizeof *x->out);
      continue;
    }
    dropout_row(x->out + at, x->inp + at, row, x->thr, x->scale, C);
  }
}

static void dropout_par(RtPool *pool, float *out, const float *inp, const DropoutSite *d, int B,
                        int N, int C) {
  if (d->p <= 0.0f && out == inp)
    return;
  bool copy = d->p <= 0.0f;
  DropCtx x = {out, inp, d, N, C, copy, copy ? 0 : dropout_threshold(d->p),
               copy ? 1.0f : 1.0f / (1.0f - d->p)};
  int64_t R = (int64_t)B * N;
  par_for(pool, R, par_chunk(R, 4 * C), drop_rows, &x);
}

void dropout_forward_par(RtPool *pool, float *out, const float *inp, const DropoutSite *d, int B,
                         int N, int C) {
  dropout_par(pool, out, inp, d, B, N, C);
}

void dropout_backward_par(RtPool *pool, float *dinp, const float *dout, const DropoutSite *d,
                          int B, int N, int C) {
  dropout_par(pool, dinp, dout, d, B, N, C);
}

/* ---- biases ---------------------------------------------------------------------- */

typedef struct {
  float *out;
  const float *in;
  int ld, rows, n;
} BiasCtx;

static void bias_fill_rows(void *ctx, int64_t first, int64_t last) {
  const BiasCtx *x = ctx;
  for (int64_t r = first; r < last; r++)
    memcpy(x->out + (size_t)r * x->ld, x->in, (size_t)x->n * sizeof *x->out);
}

void bias_fill_par(RtPool *pool, float *out, int ld, const float *bias, int rows, int n) {
  BiasCtx x = {out, bias, ld, rows, n};
  par_for(pool, rows, par_chunk(rows, n), bias_fill_rows, &x);
}

static void bias_grad_strips(void *ctx, int64_t first, int64_t last) {
  const BiasCtx *x = ctx;
  for (int64_t s = first; s < last; s++) {
    int c0 = (int)s * STRIP, c1 = c0 + STRIP < x->n ? c0 + STRIP : x->n;
    double acc[STRIP] = {0};
    for (int r = 0; r < x->rows; r++) {
      const float *d = x->in + (size_t)r * x->ld;
      for (int j = c0; j < c1; j++)
        acc[j - c0] += d[j];
    }
    for (int j = c0; j < c1; j++)
      x->out[j] += (float)acc[j - c0];
  }
}

void bias_grad_par(RtPool *pool, float *dbias, const float *dout, int ld, int rows, int n) {
  BiasCtx x = {dbias, dout, ld, rows, n};
  par_for(pool, strips(n), 1, bias_grad_strips, &x);
}
