/* lower_cases.c: each test_lower kernel run on the host against plain C.
 *
 * Outputs are poisoned first; the blocks run in two calls, as a thread pool
 * would split them; the histogram also runs on two threads at once, where only
 * real atomics give the right counts. Also how a module is prepared (verify ->
 * simplify -> map -> simplify -> verify, as the driver runs it). Separate from
 * the kernels (lower_kernels.c) and from the checks on the JIT and PTX
 * (test_lower.c). */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lower_test.h"

double rnd(uint64_t *s) {   /* xorshift64*, uniform in [0, 1) */
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return (double)((*s * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

bool close_to(double got, double want, double rel) {
  if (isnan(want))
    return isnan(got);
  if (isinf(want))
    return got == want;
  return fabs(got - want) <= rel * fmax(fabs(want), 1e-30);
}

void *xmalloc(size_t n) {
  void *p = malloc(n);
  if (!p)
    abort();
  return p;
}

float *poisoned_f32(int n) {
  float *p = xmalloc((size_t)n * sizeof *p);
  for (int i = 0; i < n; i++)
    p[i] = NAN;
  return p;
}

/* Runs all blocks, in two calls (as a thread pool would split them). */
void launch(CpuKernelFn fn, Kernel *k, void **args) {
  int32_t grid[3];
  ir_grid(k, args, grid);
  int64_t total = (int64_t)grid[0] * grid[1] * grid[2];
  fn(args, grid, 0, total / 2);
  fn(args, grid, total / 2, total);
}

static int run_vadd(CpuKernelFn fn, Kernel *k) {
  int n = 1000;   /* not a multiple of 256: the tail is masked */
  uint64_t s = 1;
  float *a = xmalloc(n * sizeof(float)), *b = xmalloc(n * sizeof(float)), *c = poisoned_f32(n);
  for (int i = 0; i < n; i++)
    a[i] = (float)rnd(&s), b[i] = (float)rnd(&s);
  void *args[] = {&a, &b, &c, &n};
  launch(fn, k, args);
  int bad = 0;
  for (int i = 0; i < n; i++)
    bad += c[i] != a[i] + b[i];
  free(a), free(b), free(c);
  return bad;
}

static int run_rowsum(CpuKernelFn fn, Kernel *k) {
  int rows = 37, cols = 77;
  uint64_t s = 2;
  float *x = xmalloc(rows * cols * sizeof(float)), *out = poisoned_f32(rows);
  for (int i = 0; i < rows * cols; i++)
    x[i] = (float)rnd(&s) - 0.25f;
  void *args[] = {&x, &out, &rows, &cols};
  launch(fn, k, args);
  int bad = 0;
  for (int r = 0; r < rows; r++) {
    double want = 0;
    for (int j = 0; j < cols; j++)
      want += x[r * cols + j];
    bad += !close_to(out[r], want, 1e-5);
  }
  free(x), free(out);
  return bad;
}

static int run_lane64(CpuKernelFn fn, Kernel *k) {
  int rows = 9, cols = 50;
  uint64_t s = 3;
  double *xd = xmalloc(rows * cols * sizeof(double)), *mn = xmalloc(rows * sizeof(double));
  int64_t *xi = xmalloc(rows * cols * sizeof(int64_t)), *mx = xmalloc(rows * sizeof(int64_t));
  for (int i = 0; i < rows * cols; i++) {
    xd[i] = rnd(&s) * 1e6 - 5e5;
    xi[i] = (int64_t)((rnd(&s) - 0.5) * 1e18);
  }
  for (int r = 0; r < rows; r++)
    mn[r] = NAN, mx[r] = 0x5a5a5a5a5a5a5a5a;
  void *args[] = {&xd, &xi, &mn, &mx, &rows, &cols};
  launch(fn, k, args);
  int bad = 0;
  for (int r = 0; r < rows; r++) {
    double wmin = INFINITY;
    int64_t wmax = INT64_MIN;
    for (int j = 0; j < cols; j++) {
      wmin = fmin(wmin, xd[r * cols + j]);
      wmax = xi[r * cols + j] > wmax ? xi[r * cols + j] : wmax;
    }
    bad += mn[r] != wmin || mx[r] != wmax;
  }
  free(xd), free(mn), free(xi), free(mx);
  return bad;
}

static int run_blockmax(CpuKernelFn fn, Kernel *k) {
  int seg = 300, nseg = 5;
  uint64_t s = 4;
  float *x = xmalloc(seg * nseg * sizeof(float)), *out = poisoned_f32(nseg);
  for (int i = 0; i < seg * nseg; i++)
    x[i] = (float)(rnd(&s) * 100 - 80);
  void *args[] = {&x, &out, &seg, &nseg};
  launch(fn, k, args);
  int bad = 0;
  for (int b = 0; b < nseg; b++) {
    float want = -INFINITY;
    for (int i = 0; i < seg; i++)
      want = fmaxf(want, x[b * seg + i]);
    bad += out[b] != want;
  }
  free(x), free(out);
  return bad;
}

static int run_dot(CpuKernelFn fn, Kernel *k) {
  int n = 10007;
  uint64_t s = 5;
  float *x = xmalloc(n * sizeof(float)), *y = xmalloc(n * sizeof(float)), *out = poisoned_f32(1);
  double want = 0;
  for (int i = 0; i < n; i++) {
    x[i] = (float)rnd(&s), y[i] = (float)rnd(&s);
    want += (double)x[i] * y[i];
  }
  void *args[] = {&x, &y, &out, &n};
  launch(fn, k, args);
  int bad = !close_to(out[0], want, 1e-5);
  free(x), free(y), free(out);
  return bad;
}

static int run_exp(CpuKernelFn fn, Kernel *k) {
  int n = 4099;
  uint64_t s = 6;
  float *x = xmalloc(n * sizeof(float)), *y = poisoned_f32(n);
  for (int i = 0; i < n; i++)
    x[i] = (float)(rnd(&s) * 180 - 90);
  x[0] = -INFINITY, x[1] = INFINITY, x[2] = NAN, x[3] = 0, x[4] = -100, x[5] = 89;
  void *args[] = {&x, &y, &n};
  launch(fn, k, args);
  int bad = 0;
  for (int i = 0; i < n; i++) {
    double want = exp((double)x[i]);
    if (x[i] < -87.33654475f)
      want = 0;   /* results below FLT_MIN flush to zero */
    else if (want > 3.4028234663852886e38)
      want = INFINITY;
    bad += !close_to(y[i], want, 3e-7);
  }
  free(x), free(y);
  return bad;
}

static int run_math(CpuKernelFn fn, Kernel *k) {
  int n = 1000;
  uint64_t s = 7;
  float *x = xmalloc(n * sizeof(float)), *y = poisoned_f32(n), *z = poisoned_f32(n);
  for (int i = 0; i < n; i++)
    x[i] = (float)exp(rnd(&s) * 40 - 20) * (i % 5 == 0 ? -1.0f : 1.0f);
  x[0] = 0, x[1] = INFINITY, x[2] = NAN, x[3] = 1, x[4] = 1e-40f, x[5] = -0.0f;
  void *args[] = {&x, &y, &z, &n};
  launch(fn, k, args);
  int bad = 0;
  for (int i = 0; i < n; i++) {
    double v = x[i];
    bad += !close_to(y[i], log(v), 3e-7) && !(log(v) == 0 && y[i] == 0);
    bad += !close_to(z[i], (float)(sqrtf(fabsf(x[i])) * -x[i]) + fmaf(x[i], x[i], 1), 1e-6);
  }
  free(x), free(y), free(z);
  return bad;
}

static int run_bits(CpuKernelFn fn, Kernel *k) {
  int n = 513;
  uint64_t s = 8;
  float *x = xmalloc(n * sizeof(float)), *z = poisoned_f32(n);
  int32_t *y = xmalloc(n * sizeof(int32_t));
  int64_t *w = xmalloc(n * sizeof(int64_t));
  int32_t *c = xmalloc(n * sizeof(int32_t));
  for (int i = 0; i < n; i++)
    x[i] = (float)((rnd(&s) - 0.5) * 1e4), y[i] = 0x5a5a5a5a, w[i] = 0, c[i] = -1;
  x[0] = -0.0f, x[1] = INFINITY, x[2] = -INFINITY, x[3] = 0.0f;   /* ctz: 31, 23, 23, 32 */
  uint32_t tiny = 1;   /* the least subnormal: ctz 0 */
  memcpy(&x[4], &tiny, 4);
  void *args[] = {&x, &y, &z, &w, &c, &n};
  launch(fn, k, args);
  int bad = 0;
  for (int i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, &x[i], 4);
    uint32_t key = u < 0x80000000u ? u | 0x80000000u : ~u;
    uint32_t want = key >= 0xC0000000u ? key >> 4 : (key << 2) & 0x0fffffffu;
    double dv = x[i];
    uint64_t dbits;
    memcpy(&dbits, &dv, 8);
    bad += (uint32_t)y[i] != want || z[i] != fabsf(x[i]) || (uint64_t)w[i] != ((dbits >> 7) ^ dbits);
    int cu = u ? __builtin_ctz(u) : 32, cdb = dbits ? __builtin_ctzll(dbits) : 64;
    bad += c[i] != (cu | cdb << 8);
  }
  free(x), free(y), free(z), free(w), free(c);
  return bad;
}

static int run_transpose(CpuKernelFn fn, Kernel *k) {
  int n = 70;
  float *in = xmalloc(n * n * sizeof(float)), *out = poisoned_f32(n * n);
  for (int i = 0; i < n * n; i++)
    in[i] = (float)i;
  void *args[] = {&in, &out, &n};
  launch(fn, k, args);
  int bad = 0;
  for (int r = 0; r < n; r++)
    for (int c = 0; c < n; c++)
      bad += out[r * n + c] != in[c * n + r];
  free(in), free(out);
  return bad;
}

static int run_misc(CpuKernelFn fn, Kernel *k) {
  int n = 301;
  double scale = 2.5;
  uint64_t s = 9;
  float *x = xmalloc(n * sizeof(float)), *og = poisoned_f32(n);
  int32_t *yi = xmalloc(n * sizeof(int32_t)), *oj = xmalloc(n * sizeof(int32_t));
  double *of = xmalloc(n * sizeof(double));
  int64_t *oi = xmalloc(n * sizeof(int64_t));
  for (int i = 0; i < n; i++) {
    x[i] = (float)((rnd(&s) - 0.5) * 2);
    yi[i] = (int32_t)((rnd(&s) - 0.5) * 2e6);
    of[i] = NAN, oi[i] = oj[i] = 0x5a5a5a5a;
  }
  void *args[] = {&x, &yi, &of, &oi, &oj, &og, &n, &scale};
  launch(fn, k, args);
  int bad = 0;
  for (int i = 0; i < n; i++) {
    float v = x[i];
    int32_t kk = yi[i], q = (int32_t)(v * 10.0f);
    int32_t m = q < 5 ? q : 5;
    m = m > -5 ? m : -5;
    double acc = v > 0 ? sqrt((double)v) : (double)-v * scale;
    float fm = fmaxf(fminf(v, 1.5f), -1.5f), lsum = v * 3.0f + v * 1.0f;
    double f = acc + (double)m + (double)(fm + lsum);
    int64_t wi = (int64_t)kk * 3000000000LL + m;
    int32_t wj = kk / 7 + (kk % 7) * 100 + ((kk & 255) << 3) + (v < 0) * 1000000;
    float g = (float)((double)v / scale) + fmodf(v, 0.75f);
    bad += !close_to(of[i], f, 1e-12) || oi[i] != wi || oj[i] != wj || !close_to(og[i], g, 1e-7);
  }
  free(x), free(og), free(yi), free(oj), free(of), free(oi);
  return bad;
}

static int run_grid3(CpuKernelFn fn, Kernel *k) {
  int gx = 3, gy = 4, gz = 5, total = 60;
  int32_t *out = xmalloc(total * sizeof(int32_t));
  for (int i = 0; i < total; i++)
    out[i] = -1;
  void *args[] = {&out, &gx, &gy, &gz};
  launch(fn, k, args);
  int bad = 0;
  for (int z = 0; z < gz; z++)
    for (int y = 0; y < gy; y++)
      for (int x = 0; x < gx; x++)
        bad += out[(z * gy + y) * gx + x] != x + 100 * y + 10000 * z;
  free(out);
  return bad;
}

static int run_cmps(CpuKernelFn fn, Kernel *k) {
  float x[] = {0.5f, NAN, -1, 0, 0.25f, 2, INFINITY, -INFINITY};
  int n = 8;
  int32_t y[8];
  float *px = x;
  int32_t *py = y;
  for (int i = 0; i < n; i++)
    y[i] = -1;
  void *args[] = {&px, &py, &n};
  launch(fn, k, args);
  int bad = 0;
  for (int i = 0; i < n; i++) {
    float v = x[i];
    int ne = v < 0.5f || v > 0.5f, self = v == v;
    int blt = -(int)(v > 0) < -(int)(v < 1);   /* signed i1: true is -1 */
    bad += y[i] != (ne | self << 1 | blt << 2);
  }
  return bad;
}

typedef struct {
  CpuKernelFn fn;
  void **args;
  const int32_t *grid;
  int64_t first, last;
} BlockRange;

static void *run_range(void *p) {
  BlockRange *r = p;
  r->fn(r->args, r->grid, r->first, r->last);
  return NULL;
}

/* The histogram with its blocks split over `threads` threads running at once
 * (1: on this thread). Returns the number of wrong outputs. */
static int hist_on_threads(CpuKernelFn fn, Kernel *k, int n, int threads) {
  int32_t *x = xmalloc(n * sizeof(int32_t)), *ticket = xmalloc(n * sizeof(int32_t));
  float *w = xmalloc(n * sizeof(float));
  int32_t h[256] = {0}, want[256] = {0}, ctr = 0;
  float ws[256] = {0}, wantw[256] = {0};
  uint64_t s = 11;
  for (int i = 0; i < n; i++) {
    x[i] = (int32_t)(rnd(&s) * 1e9);
    w[i] = 0.25f * (float)(i % 8);   /* sums stay exact in f32, in any order */
    want[x[i] & 255]++;
    wantw[x[i] & 255] += w[i];
    ticket[i] = -1;
  }
  float *pws = ws;
  int32_t *ph = h, *pc = &ctr;
  void *args[] = {&x, &w, &ph, &pws, &pc, &ticket, &n};
  int32_t grid[3];
  ir_grid(k, args, grid);
  int64_t total = (int64_t)grid[0] * grid[1] * grid[2];
  pthread_t tids[8];
  BlockRange r[8];
  for (int t = 0; t < threads; t++) {
    r[t] = (BlockRange){fn, args, grid, total * t / threads, total * (t + 1) / threads};
    if (threads > 1)
      pthread_create(&tids[t], NULL, run_range, &r[t]);
    else
      run_range(&r[t]);
  }
  for (int t = 0; t < threads && threads > 1; t++)
    pthread_join(tids[t], NULL);
  uint8_t *seen = calloc((size_t)n, 1);
  int bad = ctr != n;
  for (int b = 0; b < 256; b++)
    bad += h[b] != want[b] || ws[b] != wantw[b];
  for (int i = 0; i < n; i++) {
    bool ok = ticket[i] >= 0 && ticket[i] < n && !seen[ticket[i]];
    bad += !ok;
    if (ok)
      seen[ticket[i]] = 1;
  }
  free(seen), free(x), free(w), free(ticket);
  return bad;
}

static int run_hist(CpuKernelFn fn, Kernel *k) { return hist_on_threads(fn, k, 100000, 1); }

/* Two threads at once on disjoint block ranges: only real atomics keep the global
 * histogram, the f32 sums and the tickets right. */
void test_atomic_threads(CpuKernelFn fn, Kernel *k) {
  int bad = 0;
  for (int rep = 0; rep < 20; rep++)
    bad += hist_on_threads(fn, k, 1 << 18, 2);
  expect(bad == 0, "host hist on two threads: %d wrong outputs", bad);
}

int tile16_runs(Kernel *k, int (*run)(Kernel *, void **, const int64_t *, void *), void *ctx) {
  static const int nks[] = {37, TILE16_LD, 1, 0};
  int bad = 0, ss = TILE16_D + 3;
  uint64_t s = 21;
  for (size_t t = 0; t < sizeof nks / sizeof nks[0]; t++) {
    int nk = nks[t];
    float *src = xmalloc((size_t)(nk ? nk : 1) * ss * sizeof(float));
    float *dst = poisoned_f32(TILE16_D * TILE16_LD);
    for (int i = 0; i < nk * ss; i++)
      src[i] = (float)(rnd(&s) - 0.5);
    void *args[] = {&src, &dst, &nk, &ss};
    int64_t counts[] = {(int64_t)nk * ss, TILE16_D * TILE16_LD, 0, 0};
    if (run(k, args, counts, ctx))
      bad++;
    for (int d = 0; d < TILE16_D; d++)
      for (int j = 0; j < TILE16_LD; j++) {
        float want = j < nk ? src[j * ss + d] : 0;
        bad += memcmp(&dst[d * TILE16_LD + j], &want, sizeof want) != 0;
      }
    free(src), free(dst);
  }
  return bad;
}

static int launch_tile16(Kernel *k, void **args, const int64_t *counts, void *fn) {
  (void)counts;
  launch(*(CpuKernelFn *)fn, k, args);
  return 0;
}

static int run_tile16(CpuKernelFn fn, Kernel *k) { return tile16_runs(k, launch_tile16, &fn); }

const Case cases[NCASES] = {
    {"vadd", k_vadd, run_vadd},         {"rowsum", k_rowsum, run_rowsum},
    {"lane64", k_lane64, run_lane64},   {"blockmax", k_blockmax, run_blockmax},
    {"dot", k_dot, run_dot},            {"expk", k_exp, run_exp},
    {"mathk", k_math, run_math},        {"bits", k_bits, run_bits},
    {"transpose", k_transpose, run_transpose}, {"misc", k_misc, run_misc},
    {"grid3", k_grid3, run_grid3},       {"cmps", k_cmps, run_cmps},
    {"hist", k_hist, run_hist},          {"tile16", k_tile16, run_tile16},
};
_Static_assert(sizeof cases / sizeof cases[0] == NCASES, "NCASES counts the table");


int build_module(Module *m, MapTarget t) {
  char err[512];
  m->n = 0;
  for (int i = 0; i < NCASES; i++) {
    Kernel *k = cases[i].build();
    m->kernels[m->n++] = k;
    if (ir_run_passes(k, t, err, sizeof err)) {
      expect(0, "%s: %s", cases[i].name, err);
      return -1;
    }
  }
  return 0;
}
