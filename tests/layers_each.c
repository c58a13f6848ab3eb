/* layers_each.c: each layer's _backward on its own against finite differences.
 *
 * Linear (through the backend's gemm), LayerNorm, the activations, dropout,
 * embeddings and cross-entropy, one at a time, at the step and tolerance
 * test_layers.c explains. Apart from the attention and whole-model checks because
 * these are the building blocks: when one fails here, the model's failure later
 * is explained. */
#include "attn_ref.h"
#include "compile.h"
#include "layers.h"
#include "layers_test.h"
#include "model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../templates/dropout.h"
#include "../templates/reference_bwd.h"

/* ---- linear ---------------------------------------------------------------------- */

typedef struct LinCtx {
  Backend *be;
  int rows, in, out, ldi, ldo;
  float *x, *w, *b, *y, *wy;
} LinCtx;

static double lin_loss(void *p) {
  LinCtx *c = p;
  if (linear_forward(c->be, c->y, c->ldo, c->x, c->ldi, c->w, c->b, c->rows, c->in, c->out))
    abort();
  double s = 0;
  for (int r = 0; r < c->rows; r++)
    s += dot_w(c->y + (size_t)r * c->ldo, c->wy + (size_t)r * c->ldo, (size_t)c->out);
  return s;
}

void test_linear(Backend *be) {
  LinCtx c = {be, 5, 7, 6, 9, 8, NULL, NULL, NULL, NULL, NULL};
  c.x = fnew((size_t)c.rows * c.ldi), c.w = fnew((size_t)c.out * c.in), c.b = fnew((size_t)c.out);
  c.y = fnew((size_t)c.rows * c.ldo), c.wy = fnew((size_t)c.rows * c.ldo);
  fill(c.x, (size_t)c.rows * c.ldi, 1), fill(c.w, (size_t)c.out * c.in, 1), fill(c.b, (size_t)c.out, 1);
  fill(c.wy, (size_t)c.rows * c.ldo, 1);
  /* forward against a plain loop */
  lin_loss(&c);
  double e = 0;
  for (int r = 0; r < c.rows; r++)
    for (int o = 0; o < c.out; o++) {
      double s = c.b[o];
      for (int i = 0; i < c.in; i++)
        s += (double)c.x[r * c.ldi + i] * c.w[o * c.in + i];
      e = fmax(e, fabs(s - c.y[r * c.ldo + o]));
    }
  CHECK(e < 1e-5, "linear forward: error %.3e", e);
  /* backward: dinp with beta 0, then beta 1 on top; dw and db accumulate */
  float *dx = fnew((size_t)c.rows * c.ldi), *dw = fnew((size_t)c.out * c.in), *db = fnew((size_t)c.out);
  CHECK(linear_backward(be, dx, c.ldi, 0.0f, dw, db, c.wy, c.ldo, c.x, c.ldi, c.w, c.rows, c.in,
                        c.out) == 0, "linear backward");
  float *dx_t = fnew((size_t)c.rows * c.in);
  for (int r = 0; r < c.rows; r++)
    memcpy(dx_t + r * c.in, dx + r * c.ldi, (size_t)c.in * sizeof *dx);
  /* the probe on x sees only the in-columns of each strided row */
  double ex = 0;
  {
    double gmax = 0;
    for (int r = 0; r < c.rows; r++)
      for (int i = 0; i < c.in; i++) {
        double d = fd(lin_loss, &c, c.x, (size_t)c.rows * c.ldi, NULL, (size_t)r * c.ldi + i, 0x1p-6f);
        ex = fmax(ex, fabs(d - dx_t[r * c.in + i]));
        gmax = fmax(gmax, fabs(dx_t[r * c.in + i]));
      }
    ex /= gmax;
  }
  double ew = fd_err(lin_loss, &c, c.w, dw, (size_t)c.out * c.in, 0x1p-6f, 0);
  double eb = fd_err(lin_loss, &c, c.b, db, (size_t)c.out, 0x1p-6f, 0);
  printf("linear: dinp %.2e  dw %.2e  db %.2e\n", ex, ew, eb);
  CHECK(ex < TOL_LAYER && ew < TOL_LAYER && eb < TOL_LAYER, "linear backward vs FD");
  /* accumulation: a second backward with beta 1 doubles everything */
  float *dx2 = fnew((size_t)c.rows * c.ldi), *dw2 = fnew((size_t)c.out * c.in), *db2 = fnew((size_t)c.out);
  memcpy(dx2, dx, (size_t)c.rows * c.ldi * sizeof *dx);
  memcpy(dw2, dw, (size_t)c.out * c.in * sizeof *dw);
  memcpy(db2, db, (size_t)c.out * sizeof *db);
  linear_backward(be, dx2, c.ldi, 1.0f, dw2, db2, c.wy, c.ldo, c.x, c.ldi, c.w, c.rows, c.in, c.out);
  double ea = 0;
  for (int r = 0; r < c.rows; r++)
    for (int i = 0; i < c.in; i++)
      ea = fmax(ea, fabs(dx2[r * c.ldi + i] - 2 * dx[r * c.ldi + i]));
  for (int i = 0; i < c.out * c.in; i++)
    ea = fmax(ea, fabs(dw2[i] - 2 * dw[i]));
  for (int i = 0; i < c.out; i++)
    ea = fmax(ea, fabs(db2[i] - 2 * db[i]));
  CHECK(ea < 1e-5, "linear backward accumulation: error %.3e", ea);
  free(c.x), free(c.w), free(c.b), free(c.y), free(c.wy);
  free(dx), free(dw), free(db), free(dx_t), free(dx2), free(dw2), free(db2);
}

/* ---- LayerNorm -------------------------------------------------------------------- */

typedef struct LnCtx {
  int rows, C;
  float *x, *w, *b, *y, *mean, *rstd, *wy;
} LnCtx;

static double ln_loss(void *p) {
  LnCtx *c = p;
  layernorm_forward(c->y, c->mean, c->rstd, c->x, c->w, c->b, c->rows, c->C, 1e-12f);
  return dot_w(c->y, c->wy, (size_t)c->rows * c->C);
}

void test_layernorm(void) {
  LnCtx c = {4, 9, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
  size_t n = (size_t)c.rows * c.C;
  c.x = fnew(n), c.w = fnew((size_t)c.C), c.b = fnew((size_t)c.C), c.y = fnew(n);
  c.mean = fnew((size_t)c.rows), c.rstd = fnew((size_t)c.rows), c.wy = fnew(n);
  fill(c.x, n, 2), fill(c.w, (size_t)c.C, 1.5), fill(c.b, (size_t)c.C, 1), fill(c.wy, n, 1);
  ln_loss(&c);
  /* forward: each row has mean ~b-weighted... check the normalised values directly */
  double e = 0;
  for (int r = 0; r < c.rows; r++) {
    double m = 0, v = 0;
    for (int k = 0; k < c.C; k++)
      m += c.x[r * c.C + k];
    m /= c.C;
    for (int k = 0; k < c.C; k++)
      v += pow(c.x[r * c.C + k] - m, 2);
    v /= c.C;
    for (int k = 0; k < c.C; k++)
      e = fmax(e, fabs((c.x[r * c.C + k] - m) / sqrt(v + 1e-12) * c.w[k] + c.b[k] -
                       c.y[r * c.C + k]));
  }
  CHECK(e < 1e-5, "layernorm forward: error %.3e", e);
  float *dx = fnew(n), *dw = fnew((size_t)c.C), *db = fnew((size_t)c.C);
  layernorm_backward(dx, dw, db, c.wy, c.x, c.w, c.mean, c.rstd, c.rows, c.C);
  double ex = fd_err(ln_loss, &c, c.x, dx, n, 0x1p-6f, 0);
  double ew = fd_err(ln_loss, &c, c.w, dw, (size_t)c.C, 0x1p-6f, 0);
  double eb = fd_err(ln_loss, &c, c.b, db, (size_t)c.C, 0x1p-6f, 0);
  printf("layernorm: dinp %.2e  dw %.2e  db %.2e\n", ex, ew, eb);
  CHECK(ex < TOL_LAYER && ew < TOL_LAYER && eb < TOL_LAYER, "layernorm backward vs FD");
  free(c.x), free(c.w), free(c.b), free(c.y), free(c.mean), free(c.rstd), free(c.wy);
  free(dx), free(dw), free(db);
}

/* ---- activations ---------------------------------------------------------------- */

typedef struct ActCtx {
  int kind;   /* 0 gelu, 1 relu, 2 tanh */
  size_t n;
  float *x, *y, *wy;
} ActCtx;

static double act_loss(void *p) {
  ActCtx *c = p;
  if (c->kind == 0)
    gelu_forward(c->y, c->x, c->n);
  else if (c->kind == 1)
    relu_forward(c->y, c->x, c->n);
  else
    tanh_forward(c->y, c->x, c->n);
  return dot_w(c->y, c->wy, c->n);
}

void test_activations(void) {
  const char *names[] = {"gelu", "relu", "tanh"};
  for (int kind = 0; kind < 3; kind++) {
    ActCtx c = {kind, 40, fnew(40), fnew(40), fnew(40)};
    fill_away(c.x, c.n, 3);
    fill(c.wy, c.n, 1);
    act_loss(&c);
    double ef = 0;
    for (size_t i = 0; i < c.n; i++) {
      double x = c.x[i];
      double want = kind == 0 ? 0.5 * x * (1 + erf(x / sqrt(2.0))) : kind == 1 ? fmax(x, 0) : tanh(x);
      ef = fmax(ef, fabs(want - c.y[i]));
    }
    CHECK(ef < 1e-6, "%s forward: error %.3e", names[kind], ef);
    float *dx = fnew(c.n), *g = fnew(c.n);
    memcpy(g, c.wy, c.n * sizeof *g);
    if (kind == 0)
      gelu_backward(dx, c.x, c.wy, c.n);
    else if (kind == 1)
      relu_backward(dx, c.y, c.wy, c.n);
    else
      tanh_backward(dx, c.y, c.wy, c.n);
    double e = fd_err(act_loss, &c, c.x, dx, c.n, 0x1p-6f, 0);
    act_loss(&c); /* the probes left y of a perturbed x behind */
    /* in place (dinp == dout) gives the same */
    if (kind == 0)
      gelu_backward(g, c.x, g, c.n);
    else if (kind == 1)
      relu_backward(g, c.y, g, c.n);
    else
      tanh_backward(g, c.y, g, c.n);
    CHECK(memcmp(g, dx, c.n * sizeof *g) == 0, "%s backward in place differs", names[kind]);
    printf("%s: dinp %.2e\n", names[kind], e);
    CHECK(e < TOL_LAYER, "%s backward vs FD: %.3e", names[kind], e);
    free(c.x), free(c.y), free(c.wy), free(dx), free(g);
  }
}

/* ---- dropout ---------------------------------------------------------------------- */

void test_dropout(void) {
  int B = 3, N = 40, C = 50;
  size_t n = (size_t)B * N * C;
  float *x = fnew(n), *y = fnew(n), *g = fnew(n), *dx = fnew(n);
  fill_away(x, n, 1);
  fill(g, n, 1);
  DropoutSite d = {0.3f, 7, 11, (1u << 30) | 2, 1};
  dropout_forward(y, x, &d, B, N, C);
  dropout_backward(dx, g, &d, B, N, C);
  size_t dropped = 0, bad = 0;
  for (size_t i = 0; i < n; i++) {
    bool keep = y[i] != 0;
    dropped += !keep;
    bad += keep ? fabsf(y[i] - x[i] / 0.7f) > 1e-6f || fabsf(dx[i] - g[i] / 0.7f) > 1e-6f
                : dx[i] != 0;
  }
  double frac = (double)dropped / n;
  printf("dropout: p 0.3, dropped %.4f of %zu\n", frac, n);
  CHECK(bad == 0, "dropout: %zu elements where forward and backward masks disagree", bad);
  CHECK(fabs(frac - 0.3) < 0.02, "dropout: dropped fraction %.4f for p = 0.3", frac);
  /* the mask depends on (b, n, c), not on the padded length */
  int N2 = 25;
  float *y2 = fnew((size_t)B * N2 * C);
  float *x2 = fnew((size_t)B * N2 * C);
  for (int b = 0; b < B; b++)
    memcpy(x2 + (size_t)b * N2 * C, x + (size_t)b * N * C, (size_t)N2 * C * sizeof *x);
  dropout_forward(y2, x2, &d, B, N2, C);
  size_t diff = 0;
  for (int b = 0; b < B; b++)
    diff += memcmp(y2 + (size_t)b * N2 * C, y + (size_t)b * N * C, (size_t)N2 * C * sizeof *y) != 0;
  CHECK(diff == 0, "dropout: mask depends on the padded length");
  /* in place, and another step gives another mask; p = 0 is the identity */
  memcpy(y2, x, (size_t)B * N2 * C * sizeof *x);
  DropoutSite d2 = d;
  d2.step++;
  dropout_forward(x2, x2, &d2, B, N2, C);
  size_t same = 0;
  for (size_t i = 0; i < (size_t)B * N2 * C; i++)
    same += (x2[i] == 0) == (y[i % ((size_t)N2 * C) + (i / ((size_t)N2 * C)) * (size_t)N * C] == 0);
  CHECK(same < (size_t)B * N2 * C * 0.8, "dropout: step does not change the mask");
  DropoutSite d0 = {0, 7, 11, 3, 1};
  dropout_forward(y, x, &d0, B, N, C);
  CHECK(memcmp(x, y, n * sizeof *x) == 0, "dropout: p = 0 is not the identity");
  free(x), free(y), free(g), free(dx), free(x2), free(y2);
}

/* ---- embeddings --------------------------------------------------------------------- */

void test_embedding(void) {
  int B = 2, N = 5, C = 4, V = 7, P = 6;
  int32_t ids[] = {1, 3, 0, 3, 0, /* 0 is the pad id, also inside the first row */
                   2, 6, 0, 0, 0};
  int32_t lengths[] = {4, 2};
  float *wte = fnew((size_t)V * C), *wpe = fnew((size_t)P * C), *wtt = fnew((size_t)2 * C);
  fill(wte, (size_t)V * C, 1), fill(wpe, (size_t)P * C, 1), fill(wtt, 2 * (size_t)C, 1);
  float *out = fnew((size_t)B * N * C), *g = fnew((size_t)B * N * C);
  fill(g, (size_t)B * N * C, 1);
  embedding_forward(out, ids, wte, wpe, wtt, B, N, C);
  double e = 0;
  for (int b = 0; b < B; b++)
    for (int n = 0; n < N; n++)
      for (int c = 0; c < C; c++)
        e = fmax(e, fabs(wte[ids[b * N + n] * C + c] + wtt[c] + wpe[n * C + c] -
                         out[(b * N + n) * C + c]));
  CHECK(e < 1e-6, "embedding forward: error %.3e", e);
  float *dte = fnew((size_t)V * C), *dpe = fnew((size_t)P * C), *dtt = fnew(2 * (size_t)C);
  embedding_backward(dte, dpe, dtt, g, ids, lengths, B, N, C, 0);
  /* expected: sums over valid positions; the pad row and padded positions get none */
  double *wt = calloc((size_t)V * C, sizeof *wt), *wp = calloc((size_t)P * C, sizeof *wp),
         *tt = calloc((size_t)C, sizeof *tt);
  for (int b = 0; b < B; b++)
    for (int n = 0; n < lengths[b]; n++)
      for (int c = 0; c < C; c++) {
        double v = g[(b * N + n) * C + c];
        if (ids[b * N + n] != 0)
          wt[ids[b * N + n] * C + c] += v;
        wp[n * C + c] += v, tt[c] += v;
      }
  double eb = 0;
  for (int i = 0; i < V * C; i++)
    eb = fmax(eb, fabs(wt[i] - dte[i]));
  for (int i = 0; i < P * C; i++)
    eb = fmax(eb, fabs(wp[i] - dpe[i]));
  for (int i = 0; i < C; i++)
    eb = fmax(eb, fabs(tt[i] - dtt[i]) + fabs(dtt[C + i]));
  printf("embedding: backward %.2e\n", eb);
  CHECK(eb < 1e-5, "embedding backward: error %.3e", eb);
  free(wte), free(wpe), free(wtt), free(out), free(g), free(dte), free(dpe), free(dtt);
  free(wt), free(wp), free(tt);
}

/* ---- cross-entropy ------------------------------------------------------------------ */

typedef struct CeCtx {
  int B, K;
  float *z, *p;
  int32_t *y;
} CeCtx;

static double ce_loss(void *p) {
  CeCtx *c = p;
  return crossentropy_forward(c->p, c->z, c->y, c->B, c->K);
}

void test_crossentropy(void) {
  CeCtx c = {4, 3, fnew(12), fnew(12), (int32_t[]){0, 2, 1, 2}};
  fill(c.z, 12, 3);
  double L = ce_loss(&c), want = 0;
  for (int b = 0; b < c.B; b++) {
    double s = 0;
    for (int k = 0; k < c.K; k++)
      s += exp(c.z[b * c.K + k]);
    want += log(s) - c.z[b * c.K + c.y[b]];
  }
  want /= c.B;
  CHECK(fabs(L - want) < 1e-6 * fabs(want), "crossentropy forward %.8f vs %.8f", L, want);
  float *dz = fnew(12);
  crossentropy_backward(dz, c.p, c.y, c.B, c.K, 1.0f / c.B);
  double e = fd_err(ce_loss, &c, c.z, dz, 12, 0x1p-6f, 0);
  printf("crossentropy: dlogits %.2e\n", e);
  CHECK(e < TOL_LAYER, "crossentropy backward vs FD: %.3e", e);
  CHECK(isnan(crossentropy_forward(c.p, c.z, NULL, c.B, c.K)), "no labels: NAN");
  free(c.z), free(c.p), free(dz);
}

