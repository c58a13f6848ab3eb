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
 * rather than by finite differences. Prints "N passed, M failed".
 *
 * This file holds the shared random stream, the finite differences and main();
 * the checks are in layers_each.c, layers_attn.c and layers_model.c (shared
 * through layers_test.h). */
#define CHECK_OWNER
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

const double TOL_LAYER = 1e-3, TOL_MODEL = 2e-3;
const float FD_H = 0x1p-6f;   /* the whole model's step (see above) */

/* ---- random numbers -------------------------------------------------------------- */

static uint64_t rng_state = 0x5eed;
uint64_t rnd(void) {
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
double unif(void) { return (double)(rnd() >> 11) * 0x1p-53; }
/* uniform in [-a, a], a multiple of 2^-12 */
float qrand(double a) { return (float)(round((2 * unif() - 1) * a * 4096) / 4096); }
void fill(float *x, size_t n, double a) {
  for (size_t i = 0; i < n; i++)
    x[i] = qrand(a);
}
/* like fill, but |x| >= 0.1 (away from the ReLU kink) */
void fill_away(float *x, size_t n, double a) {
  for (size_t i = 0; i < n; i++) {
    float v = qrand(a);
    x[i] = fabsf(v) < 0.1f ? (v < 0 ? v - 0.1f : v + 0.1f) : v;
  }
}
float *fnew(size_t n) {
  float *p = calloc(n ? n : 1, sizeof *p);
  if (!p)
    abort();
  return p;
}

double dot_w(const float *out, const float *w, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++)
    s += (double)out[i] * w[i];
  return s;
}

/* ---- finite differences ------------------------------------------------------- */


/* 5-point derivative of f along direction v (NULL: the unit vector of element i). */
double fd(LossFn f, void *ctx, float *x, size_t n, const float *v, size_t i, float h) {
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
double fd_err(LossFn f, void *ctx, float *x, const float *g, size_t n, float h,
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
