/* test_layers_par.c: the threaded layers (model/layers.h "Threaded versions",
 * model/optim.h's _par functions) against their plain single-threaded loops, which
 * stay the references. Every comparison is bitwise (memcmp), for no pool and pools of
 * 1, 2 and 3 threads, on shapes chosen so every loop has several chunks with a short
 * last one (odd row counts, a hidden size of 131 = two full column strips and a
 * partial one), accumulating gradients starting from non-zero values, ids with many
 * repeats and padding ids (the embedding scatter-add), dropout on and off, in place
 * and not. Also: the chunked gradient norm against a long-double sum. */
#include "check.h"
#include "layers.h"
#include "optim.h"
#include "dropout_row.h"

#include "../templates/dropout.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x9a11e1;
static uint64_t rnd(void) {
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static float frand(double a) { return (float)((2.0 * (double)(rnd() >> 11) * 0x1p-53 - 1) * a); }
static float *fnew(size_t n, double a) {
  float *p = malloc((n ? n : 1) * sizeof *p);
  if (!p)
    abort();
  for (size_t i = 0; i < n; i++)
    p[i] = frand(a);
  return p;
}
static float *fcopy(const float *x, size_t n) {
  float *p = fnew(n, 0);
  memcpy(p, x, n * sizeof *p);
  return p;
}
static bool same(const float *a, const float *b, size_t n) {
  return !memcmp(a, b, n * sizeof *a);
}

/* B x N rows of width C (and I for the FFN): several chunks per loop, short ends */
enum { B = 5, N = 97, R = B * N, C = 131, I = 67, V = 11 };

#define NPOOLS 4
static RtPool *pools[NPOOLS];   /* NULL, 1, 2, 3 threads */
static int pool_threads(int k) { return k ? rt_pool_threads(pools[k]) : 0; }

static void test_embedding(void) {
  int32_t ids[R], lengths[B];
  for (int i = 0; i < R; i++)
    ids[i] = (int32_t)(rnd() % V);   /* many repeats; id 0 is the padding id */
  for (int b = 0; b < B; b++)
    lengths[b] = 1 + (int32_t)(rnd() % N);
  lengths[0] = N;
  float *wte = fnew(V * C, 1), *wpe = fnew(N * C, 1), *wtt = fnew(C, 1);
  float *dout = fnew((size_t)R * C, 1), *ref = fnew((size_t)R * C, 0);
  for (int bert = 0; bert < 2; bert++) {
    const float *tt = bert ? wtt : NULL;
    embedding_forward(ref, ids, wte, wpe, tt, B, N, C);
    float *g0[3] = {fnew(V * C, 1), fnew(N * C, 1), fnew(C, 1)};
    float *gr[3] = {fcopy(g0[0], V * C), fcopy(g0[1], N * C), fcopy(g0[2], C)};
    embedding_backward(gr[0], gr[1], bert ? gr[2] : NULL, dout, ids, lengths, B, N, C, 0);
    for (int k = 0; k < NPOOLS; k++) {
      float *out = fnew((size_t)R * C, 0);
      embedding_forward_par(pools[k], out, ids, wte, wpe, tt, B, N, C);
      CHECK(same(out, ref, (size_t)R * C), "embedding_forward_par (bert %d, %d threads)", bert,
            pool_threads(k));
      float *gp[3] = {fcopy(g0[0], V * C), fcopy(g0[1], N * C), fcopy(g0[2], C)};
      embedding_backward_par(pools[k], gp[0], gp[1], bert ? gp[2] : NULL, dout, ids, lengths, B,
                             N, C, 0);
      CHECK(same(gp[0], gr[0], V * C) && same(gp[1], gr[1], N * C) && same(gp[2], gr[2], C),
            "embedding_backward_par (bert %d, %d threads)", bert, pool_threads(k));
      for (int j = 0; j < 3; j++)
        free(gp[j]);
      free(out);
    }
    /* the comparison can fail: the padding id's row gets nothing */
    CHECK(same(gr[0], g0[0], C) && !same(gr[0] + C, g0[0] + C, C), "padding row untouched");
    for (int j = 0; j < 3; j++)
      free(g0[j]), free(gr[j]);
  }
  free(wte), free(wpe), free(wtt), free(dout), free(ref);
}

static void test_layernorm(void) {
  float *x = fnew((size_t)R * C, 2), *w = fnew(C, 1), *b = fnew(C, 1);
  float *out = fnew((size_t)R * C, 0), *mean = fnew(R, 0), *rstd = fnew(R, 0);
  layernorm_forward(out, mean, rstd, x, w, b, R, C, 1e-12f);
  float *dy = fnew((size_t)R * C, 1), *dx = fnew((size_t)R * C, 0);
  float *dw0 = fnew(C, 1), *db0 = fnew(C, 1), *dw = fcopy(dw0, C), *db = fcopy(db0, C);
  layernorm_backward(dx, dw, db, dy, x, w, mean, rstd, R, C);
  for (int k = 0; k < NPOOLS; k++) {
    float *o = fnew((size_t)R * C, 0), *m = fnew(R, 0), *s = fnew(R, 0);
    layernorm_forward_par(pools[k], o, m, s, x, w, b, R, C, 1e-12f);
    CHECK(same(o, out, (size_t)R * C) && same(m, mean, R) && same(s, rstd, R),
          "layernorm_forward_par (%d threads)", pool_threads(k));
    float *px = fnew((size_t)R * C, 0), *pw = fcopy(dw0, C), *pb = fcopy(db0, C);
    layernorm_backward_par(pools[k], px, pw, pb, dy, x, w, mean, rstd, R, C);
    CHECK(same(px, dx, (size_t)R * C) && same(pw, dw, C) && same(pb, db, C),
          "layernorm_backward_par (%d threads)", pool_threads(k));
    free(o), free(m), free(s), free(px), free(pw), free(pb);
  }
  free(x), free(w), free(b), free(out), free(mean), free(rstd), free(dy), free(dx);
  free(dw0), free(db0), free(dw), free(db);
}

static void test_elementwise(void) {
  size_t n = (size_t)R * I;
  float *x = fnew(n, 4), *dy = fnew(n, 1), *ref = fnew(n, 0), *dref = fnew(n, 0);
  gelu_forward(ref, x, n);
  gelu_backward(dref, x, dy, n);
  float *base = fnew((size_t)R * C, 1), *add = fnew((size_t)R * C, 1);
  float *rres = fcopy(base, (size_t)R * C);
  residual_forward(rres, add, (size_t)R * C);
  for (int k = 0; k < NPOOLS; k++) {
    float *o = fnew(n, 0), *d = fcopy(dy, n);
    gelu_forward_par(pools[k], o, x, n);
    gelu_backward_par(pools[k], d, x, d, n);   /* in place, as the model */
    CHECK(same(o, ref, n) && same(d, dref, n), "gelu_*_par (%d threads)", pool_threads(k));
    float *r = fcopy(base, (size_t)R * C);
    residual_forward_par(pools[k], r, add, (size_t)R * C);
    CHECK(same(r, rres, (size_t)R * C), "residual_forward_par (%d threads)", pool_threads(k));
    free(o), free(d), free(r);
  }
  free(x), free(dy), free(ref), free(dref), free(base), free(add), free(rres);
}

static void test_dropout(void) {
  /* the fast path's inline hash is templates/dropout.h's generator */
  size_t bad = 0;
  for (int i = 0; i < 1000000; i++) {
    uint32_t row = (uint32_t)rnd(), c = (uint32_t)(rnd() % 100000), thr = (uint32_t)rnd();
    bad += dropout_keep(row, c, thr) != (dropout_row_bits(row, c) >= thr);
  }
  CHECK(bad == 0, "dropout_row_bits differs from dropout_keep in %zu of 10^6", bad);
  size_t n = (size_t)R * C;
  float *x = fnew(n, 1);
  for (int pk = 0; pk < 2; pk++) {
    DropoutSite d = {pk ? 0.1f : 0.0f, 42, 7, (1u << 30) | 3, 1};
    float *ref = fnew(n, 0), *bref = fnew(n, 0);
    dropout_forward(ref, x, &d, B, N, C);
    dropout_backward(bref, x, &d, B, N, C);
    CHECK(pk == 0 ? same(ref, x, n) : !same(ref, x, n), "dropout p %g: reference", (double)d.p);
    for (int k = 0; k < NPOOLS; k++) {
      float *o = fnew(n, 0), *ip = fcopy(x, n);
      dropout_forward_par(pools[k], o, x, &d, B, N, C);
      dropout_backward_par(pools[k], ip, ip, &d, B, N, C);
      CHECK(same(o, ref, n) && same(ip, bref, n), "dropout_*_par p %g (%d threads)",
            (double)d.p, pool_threads(k));
      free(o), free(ip);
    }
    free(ref), free(bref);
  }
  free(x);
}

static void test_bias(void) {
  int ld = 3 * C;   /* a third of a fused QKV row, as the model writes */
  float *dout = fnew((size_t)R * ld, 1), *g0 = fnew(C, 1), *gref = fcopy(g0, C);
  float *bias = fnew(C, 1), *fref = fnew((size_t)R * ld, 1), *fill0 = fcopy(fref, (size_t)R * ld);
  bias_grad(gref, dout + C, ld, R, C);
  bias_fill(fref, ld, bias, R, C);
  for (int k = 0; k < NPOOLS; k++) {
    float *g = fcopy(g0, C), *f = fcopy(fill0, (size_t)R * ld);
    bias_grad_par(pools[k], g, dout + C, ld, R, C);
    bias_fill_par(pools[k], f, ld, bias, R, C);
    CHECK(same(g, gref, C), "bias_grad_par (%d threads)", pool_threads(k));
    CHECK(same(f, fref, (size_t)R * ld), "bias_fill_par (%d threads)", pool_threads(k));
    free(g), free(f);
  }
  free(dout), free(g0), free(gref), free(bias), free(fref), free(fill0);
}

static void test_optimizer(void) {
  size_t n = 200003;   /* four chunks of the norm, a dozen of AdamW, short ends */
  float *g = fnew(n, 1), *p0 = fnew(n, 1);
  long double direct = 0;
  for (size_t i = 0; i < n; i++)
    direct += (long double)g[i] * g[i];
  double ss = grad_sumsq(g, n);
  CHECK(fabsl(ss - direct) <= 1e-12L * direct, "grad_sumsq %.17g vs %.17Lg", ss, direct);
  CHECK(fabsl(grad_sumsq(g, n - 1) - direct) > 0, "grad_sumsq sees the last element");
  AdamWConfig cfg = {0.9, 0.999, 1e-8, 0.01};
  AdamW ref;
  CHECK(adamw_init(&ref, n, &cfg) == 0, "adamw_init");
  float *pref = fcopy(p0, n);
  for (int t = 0; t < 2; t++) {
    adamw_begin(&ref);
    adamw_update(&ref, pref, g, 0, n, t == 0, 1e-3, 0.5f);
  }
  for (int k = 0; k < NPOOLS; k++) {
    CHECK(grad_sumsq_par(pools[k], g, n) == ss, "grad_sumsq_par (%d threads)", pool_threads(k));
    AdamW o;
    CHECK(adamw_init(&o, n, &cfg) == 0, "adamw_init");
    float *p = fcopy(p0, n), *gg = fcopy(g, n);
    adamw_begin(&o);
    adamw_update_par(pools[k], &o, p, gg, 0, n, true, 1e-3, 0.5f, false);
    CHECK(same(gg, g, n), "adamw_update_par leaves the gradient without zero_grads");
    adamw_begin(&o);
    adamw_update_par(pools[k], &o, p, gg, 0, n, false, 1e-3, 0.5f, true);
    bool zero = true;
    for (size_t i = 0; i < n; i++)
      zero &= gg[i] == 0.0f;
    CHECK(same(p, pref, n) && same(o.m, ref.m, n) && same(o.v, ref.v, n),
          "adamw_update_par (%d threads)", pool_threads(k));
    CHECK(zero, "adamw_update_par zeroes the gradient (%d threads)", pool_threads(k));
    adamw_free(&o);
    free(p), free(gg);
  }
  adamw_free(&ref);
  free(g), free(p0), free(pref);
}

int main(void) {
  for (int k = 1; k < NPOOLS; k++)
    if (!(pools[k] = rt_pool_new(k))) {
      fprintf(stderr, "test_layers_par: cannot start a pool of %d threads\n", k);
      return 1;
    }
  test_embedding();
  test_layernorm();
  test_elementwise();
  test_dropout();
  test_bias();
  test_optimizer();
  for (int k = 1; k < NPOOLS; k++)
    rt_pool_free(pools[k]);
  return check_summary();
}
