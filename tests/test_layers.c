/* test_layers.c: every layer's _backward against finite differences, the float
 * attention reference against the double-precision references of templates/, and a
 * whole-model gradient check on a tiny DistilBERT and BERT (DESIGN §8).
 *
 * Finite differences on float layers. The scalar probed is L = sum_k w_k out_k with
 * fixed random weights w (summed in double), so dL/dout = w (for the model: the mean
 * cross-entropy, in double from the float logits). Inputs and parameters are
 * multiples of 2^-12 and the step h is 2^-6, so x +- h and x +- 2h are exact floats:
 * the only error sources are then
 *   - truncation of the 5-point stencil (-f(2h) + 8 f(h) - 8 f(-h) + f(-2h)) / 12h:
 *     h^4 f^(5) / 30, below 1e-7 for a single layer;
 *   - float rounding of the forward, ~6e-8 |L| per evaluation, amplified by 1.5 / h:
 *     ~1e-5 |L|.
 * Errors are measured norm-wise per tensor, max_i |g_i - fd_i| / max_i |g_i| (as in
 * test_parity). Single layers land at 1e-8..2e-5; tolerance 1e-3. For the tiny
 * random model (weights ~0.5, so strongly curved) the worst tensor's error against h
 * is a V: 2.3e-2 / 6.8e-3 / 6.5e-4 / 1.1e-4 / 3.6e-4 / 5.6e-4 at h = 2^-3 .. 2^-8
 * (truncation falling as h^4, then rounding growing as 1 / h), so h = 2^-6 sits at
 * the bottom (~1e-4..3e-4 over the four model variants); tolerance 2e-3. A real
 * mistake (a missing term, a wrong index or scale) is an O(1) error. Kinks (ReLU, the attention
 * threshold) are kept away from the probes: ReLU inputs avoid [-0.1, 0.1], and the
 * sparse attention modes are checked against the double-precision reference
 * (templates/reference_bwd.h, mask held fixed, as DESIGN §4 defines the gradient)
 * rather than by finite differences. Prints "N passed, M failed". */
#include "attn_ref.h"
#include "check.h"
#include "compile.h"
#include "layers.h"
#include "model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../templates/dropout.h"
#include "../templates/reference_bwd.h"

static const double TOL_LAYER = 1e-3, TOL_MODEL = 2e-3;
static const float FD_H = 0x1p-6f;   /* the whole model's step (see above) */

/* ---- random numbers -------------------------------------------------------------- */

static uint64_t rng_state = 0x5eed;
static uint64_t rnd(void) {
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static double unif(void) { return (double)(rnd() >> 11) * 0x1p-53; }
/* uniform in [-a, a], a multiple of 2^-12 */
static float qrand(double a) { return (float)(round((2 * unif() - 1) * a * 4096) / 4096); }
static void fill(float *x, size_t n, double a) {
  for (size_t i = 0; i < n; i++)
    x[i] = qrand(a);
}
/* like fill, but |x| >= 0.1 (away from the ReLU kink) */
static void fill_away(float *x, size_t n, double a) {
  for (size_t i = 0; i < n; i++) {
    float v = qrand(a);
    x[i] = fabsf(v) < 0.1f ? (v < 0 ? v - 0.1f : v + 0.1f) : v;
  }
}
static float *fnew(size_t n) {
  float *p = calloc(n ? n : 1, sizeof *p);
  if (!p)
    abort();
  return p;
}

static double dot_w(const float *out, const float *w, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++)
    s += (double)out[i] * w[i];
  return s;
}

/* ---- finite differences ------------------------------------------------------- */

typedef double (*LossFn)(void *ctx);

/* 5-point derivative of f along direction v (NULL: the unit vector of element i). */
static double fd(LossFn f, void *ctx, float *x, size_t n, const float *v, size_t i, float h) {
  static const int k[4] = {-2, -1, 1, 2};
  static const double c[4] = {1, -8, 8, -1};
  float *save = fnew(n);
  memcpy(save, x, n * sizeof *x);
  double acc = 0;
  for (int s = 0; s < 4; s++) {
    if (v)
      for (size_t j = 0; j < n; j++)
        x[j] = save[j] + (float)k[s] * h * v[j];
    else
      x[i] = save[i] + (float)k[s] * h;
    acc += c[s] * f(ctx);
    memcpy(x, save, n * sizeof *x);
  }
  free(save);
  return acc / (12.0 * h);
}

/* Element-wise check of g = dL/dx for every element (or `samples` random ones). */
static double fd_err(LossFn f, void *ctx, float *x, const float *g, size_t n, float h,
                     size_t samples) {
  double gmax = 0, emax = 0;
  for (size_t i = 0; i < n; i++)
    gmax = fabs(g[i]) > gmax ? fabs(g[i]) : gmax;
  size_t m = samples && samples < n ? samples : n;
  for (size_t s = 0; s < m; s++) {
    size_t i = m == n ? s : (size_t)(rnd() % n);
    double e = fabs(fd(f, ctx, x, n, NULL, i, h) - g[i]);
    emax = e > emax || isnan(e) ? e : emax;
  }
  return gmax > 0 ? emax / gmax : emax;
}

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

static void test_linear(Backend *be) {
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

static void test_layernorm(void) {
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

static void test_activations(void) {
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

static void test_dropout(void) {
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

static void test_embedding(void) {
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

static void test_crossentropy(void) {
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

/* ---- attention: float reference vs the double references of templates/ ----------- */

typedef struct AttnCase {
  int B, H, N, D;
  SelectKind sel;
  double s;
  int keep_min;
  float p;
  bool quantized;   /* q, k multiples of 1/4: exact scores, so exact kept sets (and ties) */
} AttnCase;

static AttnLayout fused_layout(int B, int H, int N, int D) {
  int64_t C = (int64_t)H * D;
  return (AttnLayout){B, H, N, N * 3 * C, 3 * C, D, N * C, C, D};
}

/* max |x - ref| / max |ref| over the valid rows of a qkv- or o-strided tensor */
static double cmp_rows(const float *x, const double *ref, const AttnLayout *l, int D,
                       const int32_t *len, bool o_layout, bool all_rows) {
  double num = 0, den = 0;
  for (int b = 0; b < l->B; b++)
    for (int n = 0; n < l->N; n++) {
      if (!all_rows && n >= len[b])
        continue;
      for (int h = 0; h < l->H; h++)
        for (int d = 0; d < D; d++) {
          int64_t at = o_layout ? b * l->o_sb + n * l->o_sn + h * l->o_sh + d
                                : b * l->qkv_sb + n * l->qkv_sn + h * l->qkv_sh + d;
          num = fmax(num, fabs(x[at] - ref[at]));
          den = fmax(den, fabs(ref[at]));
        }
    }
  /* a gradient that is zero in exact arithmetic (one key: dS = P (dP - Delta) = 0)
   * is rounding noise on both sides: compare it absolutely, against 1e-3 */
  return num / fmax(den, 1e-3);
}

static void attn_case(const AttnCase *t, int *fails) {
  int B = t->B, H = t->H, N = t->N, D = t->D, C = H * D;
  AttnLayout l = fused_layout(B, H, N, D);
  size_t nq = (size_t)B * N * 3 * C, no = (size_t)B * N * C, nr = (size_t)B * H * N;
  float *qkv = fnew(nq), *o = fnew(no), *dout = fnew(no), *dqkv = fnew(nq);
  float *lse = fnew(nr), *tau = fnew(nr), *ent = fnew(nr), *dent = fnew(nr), *delta = fnew(nr);
  int32_t *kept = calloc(nr, sizeof *kept), *rkept = calloc(nr, sizeof *rkept);
  int32_t len[8];
  for (int b = 0; b < B; b++)
    len[b] = b == 0 ? N : b == 1 ? 1 : 1 + (int)(rnd() % (uint64_t)N);
  for (size_t i = 0; i < nq; i++)
    qkv[i] = t->quantized && (i % (3 * (size_t)C)) < 2 * (size_t)C
                 ? (float)((int)(rnd() % 9) - 4) / 4.0f
                 : qrand(1.5);
  fill(dout, no, 1);
  AttnRefArgs a = {t->sel, t->s, t->keep_min, t->p, 3, 5, 1};
  void *ws = malloc(attn_ref_workspace_bytes(N, D));
  attn_ref_forward(&l, D, &a, qkv, qkv + C, qkv + 2 * C, len, o, lse, tau, kept, ent, dent, ws);
  attn_ref_backward(&l, D, &a, qkv, qkv + C, qkv + 2 * C, o, dout, len, lse, tau, dqkv,
                    dqkv + C, dqkv + 2 * C, delta, ws);
  Spec sp;
  spec_defaults(&sp);
  sp.head_dim = D, sp.max_seq = N, sp.select = t->sel, sp.keep_min = t->keep_min;
  double *ro = calloc(no, sizeof *ro), *rlse = calloc(nr, sizeof *rlse),
         *rtau = calloc(nr, sizeof *rtau), *rent = calloc(nr, sizeof *rent),
         *rdent = calloc(nr, sizeof *rdent);
  AttnFwdArgs fa = {.sparsity = t->s, .dropout = t->p, .seed = 3, .step = 5, .layer = 1};
  AttnFwdOut fo = {.o = ro, .lse = rlse, .tau = rtau, .entropy = rent, .dense_entropy = rdent,
                   .kept = rkept};
  attention_fwd_full_ref(&sp, &l, qkv, qkv + C, qkv + 2 * C, len, &fa, &fo);
  double *rq = calloc(nq, sizeof *rq), *rdelta = calloc(nr, sizeof *rdelta);
  AttnDropout dp = {t->p, 3, 5, 1};
  AttnBwdRef br = {.delta = rdelta, .dq = rq, .dk = rq + C, .dv = rq + 2 * C};
  attention_bwd_ref(&sp, &l, qkv, qkv + C, qkv + 2 * C, dout, len, t->s, &dp, &br);
  /* per-row outputs */
  size_t kept_bad = 0, tau_bad = 0;
  double lse_e = 0, ent_e = 0, dent_e = 0, delta_e = 0;
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++)
      for (int i = 0; i < N; i++) {
        size_t r = ((size_t)b * H + h) * N + i;
        kept_bad += kept[r] != rkept[r];
        /* the kernels' score is f32(dot) * f32(1/sqrt(D)), the double reference's
         * dot / sqrt(D): the same order, values within an ulp or two */
        tau_bad += !(tau[r] == rtau[r] || fabs(tau[r] - rtau[r]) <= 1e-6 * fabs(rtau[r]));
        lse_e = fmax(lse_e, fabs(lse[r] - rlse[r]) / fmax(1, fabs(rlse[r])));
        ent_e = fmax(ent_e, fabs(ent[r] - rent[r]));
        dent_e = fmax(dent_e, fabs(dent[r] - rdent[r]));
        delta_e = fmax(delta_e, fabs(delta[r] - rdelta[r]) / fmax(1, fabs(rdelta[r])));
      }
  double eo = cmp_rows(o, ro, &l, D, len, true, true);
  double eq = cmp_rows(dqkv, rq, &l, D, len, false, true);
  double ek = cmp_rows(dqkv + C, rq + C, &l, D, len, false, true);
  double ev = cmp_rows(dqkv + 2 * C, rq + 2 * C, &l, D, len, false, true);
  bool good = kept_bad == 0 && (!t->quantized || tau_bad == 0) && lse_e < 1e-5 &&
              ent_e < 1e-5 && dent_e < 1e-5 && delta_e < 1e-5 && eo < 1e-5 && eq < 1e-5 && ek < 1e-5 &&
              ev < 1e-5;
  if (!good || getenv("CRISP_VERBOSE"))
    printf("attention %-14s s %.2f keep_min %d p %.1f B %d H %d N %2d D %2d%s: o %.1e dq %.1e "
           "dk %.1e dv %.1e lse %.1e entropy %.1e dense %.1e delta %.1e, kept/tau mismatches "
           "%zu/%zu\n", select_name(t->sel), t->s, t->keep_min, (double)t->p, B, H, N, D,
           t->quantized ? " (ties)" : "", eo, eq, ek, ev, lse_e, ent_e, dent_e, delta_e,
           kept_bad, tau_bad);
  CHECK(good, "attention reference vs templates' double reference (%s, s %.2f)",
        select_name(t->sel), t->s);
  *fails += !good;
  /* padding invariance: the same valid data at N + 3 gives the same numbers */
  int N2 = N + 3;
  AttnLayout l2 = fused_layout(B, H, N2, D);
  float *qkv2 = fnew((size_t)B * N2 * 3 * C), *o2 = fnew((size_t)B * N2 * C);
  float *lse2 = fnew((size_t)B * H * N2), *tau2 = fnew((size_t)B * H * N2);
  for (int b = 0; b < B; b++)
    memcpy(qkv2 + (size_t)b * N2 * 3 * C, qkv + (size_t)b * N * 3 * C, (size_t)N * 3 * C * 4);
  void *ws2 = malloc(attn_ref_workspace_bytes(N2, D));
  attn_ref_forward(&l2, D, &a, qkv2, qkv2 + C, qkv2 + 2 * C, len, o2, lse2, tau2, NULL, NULL,
                   NULL, ws2);
  size_t pad_diff = 0;
  for (int b = 0; b < B; b++)
    pad_diff += memcmp(o2 + (size_t)b * N2 * C, o + (size_t)b * N * C, (size_t)N * C * 4) != 0;
  CHECK(pad_diff == 0, "attention: output depends on the padded length (%s)", select_name(t->sel));
  free(qkv2), free(o2), free(lse2), free(tau2), free(ws2);
  free(qkv), free(o), free(dout), free(dqkv), free(lse), free(tau), free(ent), free(dent), free(delta);
  free(kept), free(rkept), free(ws), free(ro), free(rlse), free(rtau), free(rent), free(rdent), free(rq);
  free(rdelta);
}

typedef struct AttnFdCtx {
  AttnLayout l;
  int D, C;
  AttnRefArgs a;
  float *qkv, *o, *lse, *tau, *w;
  int32_t *len;
  void *ws;
} AttnFdCtx;

static double attn_loss(void *p) {
  AttnFdCtx *c = p;
  attn_ref_forward(&c->l, c->D, &c->a, c->qkv, c->qkv + c->C, c->qkv + 2 * c->C, c->len, c->o,
                   c->lse, c->tau, NULL, NULL, NULL, c->ws);
  return dot_w(c->o, c->w, (size_t)c->l.B * c->l.N * c->C);
}

/* Dense attention (with and without dropout) against finite differences. */
static void test_attention_fd(void) {
  for (int drop = 0; drop < 2; drop++) {
    int B = 2, H = 2, N = 5, D = 4, C = H * D;
    AttnFdCtx c = {fused_layout(B, H, N, D), D, C, {SEL_NONE, 0, 1, drop ? 0.25f : 0, 9, 2, 0},
                   NULL, NULL, NULL, NULL, NULL, (int32_t[]){5, 3}, NULL};
    size_t nq = (size_t)B * N * 3 * C, no = (size_t)B * N * C, nr = (size_t)B * H * N;
    c.qkv = fnew(nq), c.o = fnew(no), c.lse = fnew(nr), c.tau = fnew(nr), c.w = fnew(no);
    c.ws = malloc(attn_ref_workspace_bytes(N, D));
    fill(c.qkv, nq, 1.5), fill(c.w, no, 1);
    attn_loss(&c);
    float *dqkv = fnew(nq), *delta = fnew(nr);
    attn_ref_backward(&c.l, D, &c.a, c.qkv, c.qkv + C, c.qkv + 2 * C, c.o, c.w, c.len, c.lse,
                      c.tau, dqkv, dqkv + C, dqkv + 2 * C, delta, c.ws);
    double e = fd_err(attn_loss, &c, c.qkv, dqkv, nq, 0x1p-6f, 0);
    printf("attention (dense%s): dqkv vs FD %.2e\n", drop ? ", dropout 0.25" : "", e);
    CHECK(e < TOL_LAYER, "attention backward vs FD: %.3e", e);
    free(c.qkv), free(c.o), free(c.lse), free(c.tau), free(c.w), free(c.ws), free(dqkv),
        free(delta);
  }
}

static void test_attention_ref(void) {
  SelectKind sels[] = {SEL_NONE, SEL_ROW_TOPK, SEL_HEAD_QUANTILE, SEL_LAYER_QUANTILE};
  double ss[] = {0.0, 0.5, 0.8, 0.97};
  int fails = 0, cases = 0;
  for (int si = 0; si < 4; si++)
    for (int k = 0; k < 4; k++)
      for (int q = 0; q < 2; q++) {
        AttnCase t = {3, 2, k == 3 ? 1 : 5 + 4 * k, k == 2 ? 16 : 8, sels[si], ss[k],
                      k == 1 ? 3 : 1, q ? 0.0f : 0.2f, q == 1};
        attn_case(&t, &fails);
        cases++;
      }
  printf("attention reference vs templates/ (double): %d cases, %d bad\n", cases, fails);
  /* the k-th largest with repeats */
  float x[] = {3, 1, 3, 2, 3, -1, 2}, tmp[7];
  CHECK(attn_ref_kth_largest(x, 7, 1, tmp) == 3 && attn_ref_kth_largest(x, 7, 3, tmp) == 3 &&
        attn_ref_kth_largest(x, 7, 4, tmp) == 2 && attn_ref_kth_largest(x, 7, 6, tmp) == 1 &&
        attn_ref_kth_largest(x, 7, 7, tmp) == -1, "kth_largest with repeats");
}

/* ---- the whole model ---------------------------------------------------------------- */

typedef struct ModelCtx {
  Model *m;
  const int32_t *ids, *len, *labels;
  int B, N;
  ModelRun run;
  uint64_t relu_sig;   /* the head's ReLU pattern at the last evaluation */
} ModelCtx;

static double model_loss(void *p) {
  ModelCtx *c = p;
  if (model_forward(c->m, c->ids, c->len, c->B, c->N, c->labels, &c->run)) {
    fprintf(stderr, "%s\n", c->m->err);
    abort();
  }
  uint64_t sig = 1469598103934665603ull;
  for (int i = 0; c->m->cfg.type == MODEL_DISTILBERT && i < c->B * c->m->cfg.hidden; i++)
    sig = (sig ^ (uint64_t)(c->m->a.pre[i] > 0)) * 1099511628211ull;
  c->relu_sig = sig;
  /* the loss in double from the float logits (less rounding than run.loss) */
  double L = 0;
  int K = c->m->cfg.num_labels;
  for (int b = 0; b < c->B; b++) {
    const float *z = c->run.logits + (size_t)b * K;
    double mx = z[0], s = 0;
    for (int k = 1; k < K; k++)
      mx = fmax(mx, z[k]);
    for (int k = 0; k < K; k++)
      s += exp(z[k] - mx);
    L += log(s) + mx - z[c->labels[b]];
  }
  return L / c->B;
}

static ModelConfig tiny_config(ModelType type) {
  ModelConfig c;
  hf_config_default(&c, type);
  c.vocab_size = 23, c.hidden = 16, c.layers = 2, c.heads = 2, c.intermediate = 24;
  c.max_position = 12, c.num_labels = 3, c.type_vocab_size = 2;
  for (int i = 0; i < 3; i++)
    snprintf(c.id2label[i], sizeof c.id2label[i], "LABEL_%d", i);
  return c;
}

static void randomize(Model *m) {
  for (int i = 0; i < m->n_params; i++) {
    const HfParam *p = &m->info[i];
    if (p->init == HF_INIT_ONES)
      for (size_t k = 0; k < p->numel; k++)
        m->param[i][k] = 1 + qrand(0.3);
    else
      fill(m->param[i], p->numel, p->init == HF_INIT_ZEROS ? 0.2 : 0.5);
  }
}

/* Moves each column of the head's pre-activations (DistilBERT's ReLU input) away
 * from 0 through its bias: 0 goes to the middle of the widest gap between the rows'
 * values when that leaves 0.5 on each side, else every value goes beyond +-1. */
static void shape_head(Model *m, int B) {
  int C = m->cfg.hidden;
  for (int c = 0; c < C; c++) {
    float v[8];
    for (int b = 0; b < B; b++)
      v[b] = m->a.pre[b * C + c];
    for (int i = 1; i < B; i++)
      for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
        float t = v[j];
        v[j] = v[j - 1], v[j - 1] = t;
      }
    double shift = (c & 1) ? 1 - v[0] : -1 - v[B - 1], best = 0;
    for (int i = 0; i + 1 < B; i++)
      if (v[i + 1] - v[i] > fmax(best, 1.0))
        best = v[i + 1] - v[i], shift = -(v[i] + v[i + 1]) / 2;
    m->w.pre_b[c] += (float)(round(shift * 4096) / 4096);
  }
}

/* The key projection's bias has an exactly zero gradient (softmax shift invariance;
 * see test_parity.c): judged against the scale of its weight's gradient. */
static bool zero_gradient(const char *name) {
  size_t n = strlen(name);
  const char *ends[] = {"attention.k_lin.bias", "attention.self.key.bias"};
  for (int i = 0; i < 2; i++)
    if (n >= strlen(ends[i]) && !strcmp(name + n - strlen(ends[i]), ends[i]))
      return true;
  return false;
}

static void test_model(Backend *be, ModelType type, bool train, SelectKind sel) {
  const char *name = type == MODEL_BERT ? "bert" : "distilbert";
  ModelConfig cfg = tiny_config(type);
  ModelOptions opt = {.max_batch = 3, .max_len = 9};
  char err[512];
  Model *m = model_create(be, &cfg, &opt, err, sizeof err);
  CHECK(m != NULL, "%s", err);
  if (!m)
    return;
  randomize(m);
  m->attn.select = sel;
  for (int l = 0; l < cfg.layers; l++)
    m->attn.sparsity[l] = sel == SEL_NONE ? 0.0f : 0.5f;
  int B = 3, N = 6;
  int32_t ids[3 * 9], len[] = {6, 3, 1}, labels[] = {2, 0, 1};
  for (int i = 0; i < B * N; i++)
    ids[i] = 1 + (int32_t)(rnd() % 22);
  for (int b = 0; b < B; b++)
    for (int n = len[b]; n < N; n++)
      ids[b * N + n] = 0;
  ModelCtx c = {m, ids, len, labels, B, N, {.train = train, .seed = 42, .step = 7}, 0};
  if (type == MODEL_DISTILBERT) {
    model_loss(&c);
    shape_head(m, B);
  }
  model_zero_grad(m);
  double L0 = model_loss(&c);
  CHECK(fabs(L0 - c.run.loss) < 1e-5 * fabs(L0), "%s: loss %.8f vs %.8f", name, L0, c.run.loss);
  CHECK(model_backward(m) == 0, "%s: backward: %s", name, m->err);
  uint64_t sig0 = c.relu_sig;

  if (sel == SEL_NONE) {
    /* finite differences, per tensor: 6 random elements + one random direction */
    double worst = 0;
    const char *worst_name = "";
    int skipped = 0;
    for (int i = 0; i < m->n_params; i++) {
      size_t n = m->info[i].numel;
      float *g = m->grad[i], *x = m->param[i];
      double gmax = 0, emax = 0;
      for (size_t k = 0; k < n; k++)
        gmax = fmax(gmax, fabs(g[k]));
      if (zero_gradient(m->info[i].name)) {
        double wmax = 0;
        for (size_t k = 0; k < m->info[i - 1].numel; k++)
          wmax = fmax(wmax, fabs(m->grad[i - 1][k]));
        CHECK(gmax <= 1e-5 * wmax, "%s: %s gradient %.3e is not ~0 (weight's %.3e)", name,
              m->info[i].name, gmax, wmax);
        gmax = fmax(gmax, wmax);
      }
      for (int s = 0; s < 6; s++) {
        size_t k = (size_t)(rnd() % n);
        double d = fd(model_loss, &c, x, n, NULL, k, FD_H);
        /* the stencil crossed the head's ReLU kink: no derivative to compare */
        bool kink = false;
        for (int t = -2; t <= 2 && !kink; t += 1) {
          float save = x[k];
          x[k] = save + (float)t * FD_H;
          model_loss(&c);
          kink = c.relu_sig != sig0;
          x[k] = save;
        }
        if (kink) {
          skipped++;
          continue;
        }
        emax = fmax(emax, fabs(d - g[k]));
      }
      /* direction: sum_k g_k v_k vs the derivative along v, relative to |g| |v| */
      float *v = fnew(n);
      double gv = 0, gn = 0;
      for (size_t k = 0; k < n; k++) {
        v[k] = (rnd() & 1) ? 1.0f : -1.0f;
        gv += (double)g[k] * v[k], gn += (double)g[k] * g[k];
      }
      double dv = fd(model_loss, &c, x, n, v, 0, FD_H);
      model_loss(&c);
      bool kink = c.relu_sig != sig0;
      if (zero_gradient(m->info[i].name))
        gn = gmax * gmax * (double)n;
      double e_dir = kink ? 0 : fabs(dv - gv) / (sqrt(gn) * sqrt((double)n) + 1e-30);
      free(v);
      double e = fmax(gmax > 0 ? emax / gmax : emax, e_dir);
      if (e > worst) {
        worst = e;
        worst_name = m->info[i].name;
      }
    }
    model_loss(&c);
    printf("model %s%s: %d tensors vs FD, worst %.2e (%s), %d kink probes skipped\n", name,
           train ? " (dropout on)" : "", m->n_params, worst, worst_name, skipped);
    CHECK(worst < TOL_MODEL, "%s: gradient of %s vs FD: %.3e", name, worst_name, worst);
  }

  /* gradients accumulate: a second backward doubles them */
  float *g1 = fnew(m->n_param_floats);
  memcpy(g1, m->grads_mem, m->n_param_floats * sizeof *g1);
  model_loss(&c);
  model_backward(m);
  double acc = 0;
  for (size_t k = 0; k < m->n_param_floats; k++)
    acc = fmax(acc, fabs(m->grads_mem[k] - 2 * g1[k]));
  CHECK(acc < 1e-5, "%s: accumulation error %.3e", name, acc);

  /* dynamic padding: the same batch padded to 9 gives the same loss and gradients */
  int N2 = 9;
  int32_t ids2[3 * 9];
  for (int b = 0; b < B; b++)
    for (int n = 0; n < N2; n++)
      ids2[b * N2 + n] = n < N ? ids[b * N + n] : 0;
  ModelCtx c2 = c;
  c2.ids = ids2, c2.N = N2;
  model_zero_grad(m);
  double L2 = model_loss(&c2);
  model_backward(m);
  double pad = 0, gmax = 0;
  for (size_t k = 0; k < m->n_param_floats; k++) {
    pad = fmax(pad, fabs(m->grads_mem[k] - g1[k]));
    gmax = fmax(gmax, fabs(g1[k]));
  }
  CHECK(fabs(L2 - L0) <= 1e-6 * fabs(L0) && pad <= 1e-5 * gmax,
        "%s: padding changes the loss (%.3e) or gradients (%.3e)", name, fabs(L2 - L0), pad / gmax);

  /* dropout: the same counters give the same loss, another step another one; eval ignores */
  if (train) {
    double again = model_loss(&c);
    c.run.step++;
    double other = model_loss(&c);
    c.run.step--;
    c.run.train = false;
    double eval = model_loss(&c);
    c.run.train = true;
    CHECK(again == L0 && other != L0 && eval != L0, "%s: dropout counters (%.6f %.6f %.6f %.6f)",
          name, L0, again, other, eval);
  }

  /* statistics */
  c.run.stats = true;
  model_loss(&c);
  c.run.stats = false;
  if (sel == SEL_NONE)
    CHECK(m->stat_kept[0] == 1.0 && m->stat_kept[1] == 1.0, "%s: dense keeps %.3f", name,
          m->stat_kept[0]);
  else
    CHECK(m->stat_kept[0] > 0.3 && m->stat_kept[0] < 0.8, "%s: %s at 0.5 keeps %.3f", name,
          select_name(sel), m->stat_kept[0]);
  CHECK(m->stat_entropy[0] > 0 && m->stat_entropy_norm[0] > 0 && m->stat_entropy_norm[0] <= 1,
        "%s: entropy stats %.3f %.3f", name, m->stat_entropy[0], m->stat_entropy_norm[0]);
  free(g1);
  model_free(m);
}

static void test_model_errors(Backend *be) {
  ModelConfig cfg = tiny_config(MODEL_DISTILBERT);
  char err[512];
  ModelOptions bad = {.max_batch = 2, .max_len = 13};
  CHECK(model_create(be, &cfg, &bad, err, sizeof err) == NULL && strstr(err, "max_len"),
        "max_len beyond max_position accepted: %s", err);
  ModelOptions opt = {.max_batch = 2, .max_len = 4};
  Model *m = model_create(be, &cfg, &opt, err, sizeof err);
  if (!m)
    return;
  model_init_params(m, 1);
  int32_t ids[] = {1, 2, 3, 0, 1, 2, 0, 0}, len[] = {3, 2}, labels[] = {0, 1};
  ModelRun run = {0};
  CHECK(model_forward(m, ids, len, 2, 4, labels, &run) == 0 && isfinite(run.loss), "forward");
  int32_t bad_len[] = {3, 0}, bad_ids[] = {1, 2, 99, 0, 1, 2, 0, 0}, bad_lab[] = {0, 3};
  CHECK(model_forward(m, ids, bad_len, 2, 4, labels, &run) && strstr(m->err, "lengths[1]"),
        "zero length accepted: %s", m->err);
  CHECK(model_forward(m, bad_ids, len, 2, 4, labels, &run) && strstr(m->err, "ids[0][2]"),
        "bad id accepted: %s", m->err);
  CHECK(model_forward(m, ids, len, 2, 4, bad_lab, &run) && strstr(m->err, "labels[1]"),
        "bad label accepted: %s", m->err);
  CHECK(model_forward(m, ids, len, 3, 4, labels, &run) && strstr(m->err, "planned"),
        "batch beyond the plan accepted: %s", m->err);
  CHECK(model_forward(m, ids, len, 2, 4, NULL, &run) == 0 && isnan(run.loss) &&
        model_backward(m) != 0, "backward without labels must fail");
  m->attn.sparsity[1] = 1.0f;
  CHECK(model_forward(m, ids, len, 2, 4, labels, &run) && strstr(m->err, "sparsity"),
        "sparsity 1 accepted: %s", m->err);
  model_free(m);
  m = model_create(be, &cfg, &opt, err, sizeof err);
  if (!m)
    return;
  m->attn.impl = ATTN_IMPL_CRISP;
  CHECK(model_forward(m, ids, len, 2, 4, labels, &run) && strstr(m->err, "no crisp kernels"),
        "crisp attention without kernels accepted: %s", m->err);
  model_free(m);
}

/* ---- the crisp kernels in the model ------------------------------------------------ */

/* The same tiny model with attention through the JIT'd crisp kernels (host target,
 * thread pool) and through the C reference: logits, loss, every gradient and the
 * kept counts agree, in every selection mode, with dropout on; so do the per-row
 * entropies of the kept and of the dense distribution (stats, dense_stats), the
 * dense one equal to the kept one where nothing is pruned and not where it is. */
static void test_crisp_path(Backend *be) {
  SelectKind sels[] = {SEL_NONE, SEL_ROW_TOPK, SEL_HEAD_QUANTILE, SEL_LAYER_QUANTILE};
  for (int t = 0; t < 2; t++) {
    ModelType type = t ? MODEL_BERT : MODEL_DISTILBERT;
    ModelConfig cfg = tiny_config(type);
    ModelOptions opt = {.max_batch = 3, .max_len = 9};
    char err[2048];
    Model *ref = model_create(be, &cfg, &opt, err, sizeof err);
    Model *cr = model_create(be, &cfg, &opt, err, sizeof err);
    CHECK(ref && cr, "%s", err);
    if (!ref || !cr) {
      model_free(ref), model_free(cr);
      return;
    }
    randomize(ref);
    memcpy(cr->params_mem, ref->params_mem, ref->n_param_floats * sizeof(float));
    RtModule *mods[4] = {NULL};
    for (int k = 0; k < 4; k++) {
      Spec s;
      spec_defaults(&s);
      snprintf(s.name, sizeof s.name, "model_%s", select_name(sels[k]));
      s.head_dim = cfg.hidden / cfg.heads, s.max_seq = 16, s.select = sels[k], s.keep_min = 1;
      s.dropout = 0.1, s.backward = true;
      TileConfig tile = tile_resolve(&s, TUNE_CPU);
      int rc = rt_compile_load(be, &s, &tile, NULL, &mods[k], err, sizeof err);
      CHECK(rc == 0, "compile %s: %s", s.name, err);
      if (rc == 0)
        CHECK(model_add_crisp(cr, mods[k]) == 0, "%s", cr->err);
    }
    int32_t ids[3 * 7], len[] = {7, 4, 1}, labels[] = {1, 2, 0};
    for (int i = 0; i < 21; i++)
      ids[i] = 1 + (int32_t)(rnd() % 22);
    for (int k = 0; k < 4; k++) {
      if (!mods[k])
        continue;
      Model *ms[2] = {ref, cr};
      ModelRun run[2];
      for (int w = 0; w < 2; w++) {
        ms[w]->attn.impl = w ? ATTN_IMPL_CRISP : ATTN_IMPL_REF;
        ms[w]->attn.select = sels[k];
        for (int l = 0; l < cfg.layers; l++)
          ms[w]->attn.sparsity[l] = k ? 0.6f : 0.0f;
        run[w] = (ModelRun){.train = true, .seed = 5, .step = 9, .stats = true,
                            .dense_stats = true};
        model_zero_grad(ms[w]);
        CHECK(model_forward(ms[w], ids, len, 3, 7, labels, &run[w]) == 0 &&
              model_backward(ms[w]) == 0, "%s", ms[w]->err);
      }
      double el = 0, ml = 0, eg = 0, mg = 0;
      for (int i = 0; i < 3 * cfg.num_labels; i++)
        el = fmax(el, fabs(run[0].logits[i] - run[1].logits[i])), ml = fmax(ml, fabs(run[0].logits[i]));
      for (size_t i = 0; i < ref->n_param_floats; i++)
        eg = fmax(eg, fabs(ref->grads_mem[i] - cr->grads_mem[i])), mg = fmax(mg, fabs(ref->grads_mem[i]));
      bool kept_same = true;
      double ee = 0, ed = 0, kd = 0;   /* kernel vs reference; dense vs kept */
      for (int l = 0; l < cfg.layers; l++) {
        kept_same &= ref->stat_kept[l] == cr->stat_kept[l];
        const AttnRows *a = &ref->a.layer[l].rows, *b = &cr->a.layer[l].rows;
        for (int i = 0; i < 3 * cfg.heads * 7; i++) {
          ee = fmax(ee, fabs(a->entropy[i] - b->entropy[i]));
          ed = fmax(ed, fabs(a->dense_entropy[i] - b->dense_entropy[i]));
          kd = fmax(kd, fabs(b->dense_entropy[i] - b->entropy[i]));
        }
      }
      CHECK(ee < 1e-5 && ed < 1e-5, "crisp vs ref entropies (%s): kept %.1e dense %.1e",
            select_name(sels[k]), ee, ed);
      CHECK(k ? kd > 1e-2 : kd < 1e-5, "dense vs kept entropy (%s): %.1e", select_name(sels[k]),
            kd);
      printf("crisp vs ref, %s %s (dropout on): logits %.2e  loss %.2e  grads %.2e  kept %s "
             "(%.3f)\n", type == MODEL_BERT ? "bert" : "distilbert", select_name(sels[k]), el / ml,
             fabs(run[0].loss - run[1].loss) / fabs(run[0].loss), eg / mg,
             kept_same ? "same" : "DIFFERENT", cr->stat_kept[0]);
      CHECK(el <= 1e-5 * ml && eg <= 1e-5 * mg && kept_same, "crisp vs ref (%s)",
            select_name(sels[k]));
    }
    model_free(ref);
    model_free(cr);
    for (int k = 0; k < 4; k++)
      if (mods[k])
        rt_module_unload(be, mods[k]);
  }
}

int main(void) {
  char err[512];
  BackendOptions bo = {.threads = 1, .quiet = true};
  Backend *be = backend_open("cpu", &bo, err, sizeof err);
  CHECK(be != NULL, "%s", err);
  if (!be)
    return check_summary();
  test_linear(be);
  test_layernorm();
  test_activations();
  test_dropout();
  test_embedding();
  test_crossentropy();
  test_attention_fd();
  test_attention_ref();
  for (int t = 0; t < 2; t++) {
    ModelType type = t ? MODEL_BERT : MODEL_DISTILBERT;
    test_model(be, type, false, SEL_NONE);
    test_model(be, type, true, SEL_NONE);
    test_model(be, type, true, SEL_ROW_TOPK);
    test_model(be, type, false, SEL_HEAD_QUANTILE);
    test_model(be, type, false, SEL_LAYER_QUANTILE);
  }
  test_model_errors(be);
  test_crisp_path(be);
  backend_close(be);
  return check_summary();
}
