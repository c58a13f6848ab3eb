/* optim.c: AdamW and the linear schedule (see optim.h). */
#include "optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "par.h"

int adamw_init(AdamW *o, size_t n, const AdamWConfig *cfg) {
  memset(o, 0, sizeof *o);
  o->cfg = *cfg;
  o->n = n;
  o->m = calloc(n ? n : 1, sizeof *o->m);
  o->v = calloc(n ? n : 1, sizeof *o->v);
  if (!o->m || !o->v) {
    adamw_free(o);
    return -1;
  }
  return 0;
}

void adamw_free(AdamW *o) {
  free(o->m);
  free(o->v);
  o->m = o->v = NULL;
}

void adamw_begin(AdamW *o) { o->t++; }

/* Compiled for AVX-512, AVX2 and baseline x86-64 (picked at load time): every loop
 * is elementwise or keeps fixed per-lane partial sums, so the result does not depend
 * on which clone runs. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

CLONES void adamw_update(AdamW *o, float *p, const float *g, size_t off, size_t n, bool decay,
                         double lr, float gscale) {
  const AdamWConfig *c = &o->cfg;
  double t = (double)o->t;
  double bc1 = 1.0 - pow(c->beta1, t), bc2 = 1.0 - pow(c->beta2, t);
  const float step = (float)(lr / bc1), rbc2 = (float)(1.0 / sqrt(bc2)), eps = (float)c->eps;
  const float b1 = (float)c->beta1, b2 = (float)c->beta2, a1 = 1.0f - b1, a2 = 1.0f - b2;
  const float keep = decay ? (float)(1.0 - lr * c->weight_decay) : 1.0f;
  float *restrict m = o->m + off, *restrict v = o->v + off;
  float *restrict pp = p;
  const float *restrict gg = g;
  for (size_t i = 0; i < n; i++) {
    float gi = gg[i] * gscale;
    float pi = pp[i] * keep;
    float mi = b1 * m[i] + a1 * gi;
    float vi = b2 * v[i] + a2 * (gi * gi);
    m[i] = mi, v[i] = vi;
    pp[i] = pi - step * (mi / (__builtin_sqrtf(vi) * rbc2 + eps));
  }
}

enum { LANES = 16 };

/* One chunk's sum of squares in 16 fixed lanes. */
CLONES static double lanes_sumsq(const float *g, size_t n) {
  double acc[LANES] = {0};
  size_t i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int j = 0; j < LANES; j++)
      acc[j] += (double)g[i + j] * (double)g[i + j];
  for (int j = 0; i < n; i++, j++)
    acc[j] += (double)g[i] * (double)g[i];
  double s = 0;
  for (int j = 0; j < LANES; j++)
    s += acc[j];
  return s;
}

/* The chunks of the norm's sum: 2^16 floats, or more for a block over 2^28 floats so
 * there are at most SUMSQ_MAX_CHUNKS; a function of n alone, never of the threads. */
enum { SUMSQ_MAX_CHUNKS = 4096 };

static size_t sumsq_chunk(size_t n) {
  size_t c = (size_t)1 << 16, need = (n + SUMSQ_MAX_CHUNKS - 1) / SUMSQ_MAX_CHUNKS;
  return need > c ? (need + LANES - 1) / LANES * LANES : c;
}

double grad_sumsq(const float *g, size_t n) {
  size_t chunk = sumsq_chunk(n);
  double s = 0;
  for (size_t i = 0; i < n; i += chunk)
    s += lanes_sumsq(g + i, n - i < chunk ? n - i : chunk);
  return s;
}

typedef struct {
  const float *g;
  size_t n, chunk;
  double *part;
} SumsqCtx;

static void sumsq_chunks(void *ctx, int64_t first, int64_t last) {
  const SumsqCtx *x = ctx;
  for (int64_t k = first; k < last; k++) {
    size_t at = (size_t)k * x->chunk;
    x->part[k] = lanes_sumsq(x->g + at, x->n - at < x->chunk ? x->n - at : x->chunk);
  }
}

double grad_sumsq_par(RtPool *pool, const float *g, size_t n) {
  double part[SUMSQ_MAX_CHUNKS];
  SumsqCtx x = {g, n, sumsq_chunk(n), part};
  int64_t nk = (int64_t)((n + x.chunk - 1) / x.chunk);
  par_for(pool, nk, 1, sumsq_chunks, &x);
  double s = 0;   /* in chunk order, as grad_sumsq */
  for (int64_t k = 0; k < nk; k++)
    s += part[k];
  return s;
}

double grad_norm_par(RtPool *pool, const float *g, size_t n) {
  return sqrt(grad_sumsq_par(pool, g, n));
}

typedef struct {
  AdamW *o;
  float *p, *g;
  size_t off;
  bool decay, zero;
  double lr;
  float gscale;
} AdamCtx;

static void adamw_chunk(void *ctx, int64_t first, int64_t last) {
  const AdamCtx *x = ctx;
  size_t n = (size_t)(last - first);
  adamw_update(x->o, x->p + first, x->g + first, x->off + (size_t)first, n, x->decay, x->lr,
               x->gscale);
  if (x->zero)   /* while the chunk is still in cache: saves model_zero_grad's pass */
    memset(x->g + first, 0, n * sizeof *x->g);
}

void adamw_update_par(RtPool *pool, AdamW *o, float *params, float *grads, size_t off, size_t n,
                      bool decay, double lr, float gscale, bool zero_grads) {
  AdamCtx x = {o, params, grads, off, decay, zero_grads, lr, gscale};
  par_for(pool, (int64_t)n, 1 << 14, adamw_chunk, &x);
}

double grad_norm(const float *g, size_t n) { return sqrt(grad_sumsq(g, n)); }

double clip_coef(double norm, double max_norm) {
  if (max_norm <= 0)
    return 1.0;
  double coef = max_norm / (norm + 1e-6);
  return coef < 1.0 ? coef : 1.0;
}

double clip_grad_norm(float *g, size_t n, double max_norm) {
  double norm = grad_norm(g, n);
  double coef = clip_coef(norm, max_norm);
  if (coef < 1.0) {
    float f = (float)coef;
    for (size_t i = 0; i < n; i++)
      g[i] *= f;
  }
  return norm;
}

double lr_linear(int64_t k, int64_t total, int64_t warmup, double base) {
  if (k < warmup)
    return base * (double)k / (double)(warmup > 0 ? warmup : 1);
  int64_t rest = total - warmup;
  if (rest <= 0)
    return 0;
  double f = (double)(total - k) / (double)rest;
  return f > 0 ? base * f : 0;
}
