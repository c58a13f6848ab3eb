/* test_gelu.c: the float GELU (model/gelu.c) against the exact value in double,
 * 0.5 x erfc(-x / sqrt 2) and its derivative, at the error bounds gelu.c claims:
 * a scan of 10^7 points over [-10, 10], the tails out to +-FLT_MAX, infinities and
 * NaN, and the arithmetic's independence of how an array is split (the threaded
 * versions chunk it). The double-erf references are checked against the same
 * truth where they are accurate (their 1 + erf cancels below x = -5). */
#include "check.h"
#include "layers.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* the bounds stated in gelu.c */
#define FWD_ABS 4e-7
#define FWD_REL_5 1.5e-6    /* x >= -5 */
#define FWD_REL_10 5e-6     /* x >= -10 */
#define BWD_ABS 3e-7
#define TAIL_ABS 1e-30      /* x < -10: both are ~0 */

static double exact_phi(double x) { return 0.5 * erfc(-x * M_SQRT1_2); }
static double exact_fwd(double x) { return x * exact_phi(x); }
static double exact_bwd(double x) {
  return exact_phi(x) + x * 0.3989422804014327 * exp(-0.5 * x * x);
}

static float *fnew(size_t n) {
  float *p = malloc(n * sizeof *p);
  if (!p)
    abort();
  return p;
}

typedef struct {
  double abs, rel5, rel10, babs, at_abs, at_rel5, at_rel10, at_babs;
} Errs;

static void scan_errors(Errs *e, const float *x, const float *y, const float *d, size_t n) {
  for (size_t i = 0; i < n; i++) {
    double v = x[i], want = exact_fwd(v);
    double a = fabs(y[i] - want), r = want != 0 ? a / fabs(want) : a;
    double b = fabs(d[i] - exact_bwd(v));
    if (a > e->abs)
      e->abs = a, e->at_abs = v;
    if (v >= -5 && r > e->rel5)
      e->rel5 = r, e->at_rel5 = v;
    if (v >= -10 && r > e->rel10)
      e->rel10 = r, e->at_rel10 = v;
    if (b > e->babs)
      e->babs = b, e->at_babs = v;
  }
}

static void test_scan(void) {
  size_t n = 10000001;
  float *x = fnew(n), *y = fnew(n), *d = fnew(n);
  for (size_t i = 0; i < n; i++) {
    x[i] = (float)(-10.0 + 20.0 * (double)i / (double)(n - 1));
    d[i] = 1.0f;
  }
  gelu_forward(y, x, n);
  gelu_backward(d, x, d, n);   /* dout = 1, in place */
  Errs e = {0};
  scan_errors(&e, x, y, d, n);
  printf("forward: abs %.3e (x = %g), rel %.3e for x >= -5 (x = %g), %.3e for x >= -10 "
         "(x = %g)\nbackward: abs %.3e (x = %g)\n",
         e.abs, e.at_abs, e.rel5, e.at_rel5, e.rel10, e.at_rel10, e.babs, e.at_babs);
  CHECK(e.abs <= FWD_ABS, "forward absolute error %.3e > %.1e", e.abs, FWD_ABS);
  CHECK(e.rel5 <= FWD_REL_5, "forward relative error %.3e > %.1e", e.rel5, FWD_REL_5);
  CHECK(e.rel10 <= FWD_REL_10, "forward relative error %.3e > %.1e", e.rel10, FWD_REL_10);
  CHECK(e.babs <= BWD_ABS, "backward absolute error %.3e > %.1e", e.babs, BWD_ABS);

  /* the double references, where 1 + erf keeps its accuracy */
  size_t from = (size_t)((double)(n - 1) * 5.0 / 20.0);   /* x = -5 */
  gelu_forward_ref(y, x, n);
  for (size_t i = 0; i < n; i++)
    d[i] = 1.0f;
  gelu_backward_ref(d, x, d, n);
  Errs r = {0};
  scan_errors(&r, x + from, y + from, d + from, n - from);
  CHECK(r.rel5 <= 1e-5 && r.babs <= 1e-6, "references: rel %.3e, backward %.3e", r.rel5, r.babs);
  free(x), free(y), free(d);
}

static bool same_or_both_nan(float a, double b) { return isnan(a) ? isnan(b) : a == b; }

static void test_tails(void) {
  float xs[256];
  int n = 0;
  for (int k = 1; k <= 38; k++)
    for (int s = -1; s <= 1; s += 2)
      for (float m = 1; m < 10; m *= 3.1f)
        xs[n++] = (float)s * m * powf(10.0f, (float)k);
  float special[] = {FLT_MAX, -FLT_MAX, INFINITY, -INFINITY, NAN, 0.0f, -0.0f, FLT_MIN,
                     -FLT_MIN, 1e-40f, -1e-40f, 13.2f, -13.2f, 13.3f, -13.3f};
  for (size_t i = 0; i < sizeof special / sizeof *special; i++)
    xs[n++] = special[i];
  float y[256], d[256];
  for (int i = 0; i < n; i++)
    d[i] = 1.0f;
  gelu_forward(y, xs, (size_t)n);
  gelu_backward(d, xs, d, (size_t)n);
  for (int i = 0; i < n; i++) {
    double x = xs[i], f = exact_fwd(x), b = exact_bwd(x);
    if (!isfinite(x)) {   /* the references' IEEE results: +inf -> inf, 1; else NaN */
      CHECK(same_or_both_nan(y[i], f), "gelu(%g) = %g, want %g", x, y[i], f);
      CHECK(same_or_both_nan(d[i], b), "gelu'(%g) = %g, want %g", x, d[i], b);
    } else if (x >= 10) {
      CHECK(y[i] == xs[i] && d[i] == 1.0f, "gelu(%g) = %g, gelu' %g: want x and 1", x, y[i], d[i]);
    } else if (x < -10) {
      CHECK(fabs(y[i] - f) <= TAIL_ABS && fabs(d[i] - b) <= TAIL_ABS,
            "gelu(%g) = %g (want %g), gelu' %g (want %g)", x, y[i], f, d[i], b);
    } else {   /* around 0 and the subnormals */
      double r = f != 0 ? fabs(y[i] - f) / fabs(f) : fabs(y[i]);
      CHECK(r <= FWD_REL_5 && fabs(d[i] - b) <= BWD_ABS, "gelu(%g) = %g (want %g), gelu' %g (want %g)",
            x, y[i], f, d[i], b);
    }
  }
}

/* The vectorised body and the scalar edges of the loop must round alike: any split
 * of an array (as the threaded versions make, at any offset) gives the same bits. */
static void test_split(void) {
  size_t n = 4099;
  float *x = fnew(n), *y = fnew(n), *d = fnew(n), *y2 = fnew(n), *d2 = fnew(n);
  for (size_t i = 0; i < n; i++) {
    x[i] = (float)((double)((i * 2654435761u) % 20001) / 1000.0 - 10.0);
    d[i] = d2[i] = (float)((i * 40503u) % 101) / 50.0f - 1.0f;
  }
  gelu_forward(y, x, n);
  gelu_backward(d, x, d, n);
  for (size_t at = 0, len = 1; at < n; at += len, len = len * 3 % 37 + 1) {
    size_t m = at + len <= n ? len : n - at;
    gelu_forward(y2 + at, x + at, m);
    gelu_backward(d2 + at, x + at, d2 + at, m);
  }
  CHECK(!memcmp(y, y2, n * sizeof *y) && !memcmp(d, d2, n * sizeof *d),
        "gelu differs when the array is split");
  free(x), free(y), free(d), free(y2), free(d2);
}

int main(void) {
  test_scan();
  test_tails();
  test_split();
  return check_summary();
}
