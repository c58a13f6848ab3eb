/* test_kth: the exact k-th largest search of templates/attention_kth.c on rows the
 * attention tests cannot make: +-inf (whose +inf max puts the search's upper end at a
 * NaN), -0 next to +0 and alone, subnormals, huge magnitudes, heavy ties, all-equal
 * rows, outliers; k from 1 (the max) to m (no search). kth_kernel.c's kernel copies
 * each row into shared memory and runs the search, one row per warp
 * (attn_row_kth_count) or four interleaved (attn_rows_kth_count, the CPU tile's way),
 * on the host JIT and in the interpreter (the GPU mapping); tau must match a sort bit
 * for bit (-0 as +0, -inf when k >= m) and the count must be #{x >= tau}. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "interp.h"
#include "jit.h"
#include "kth_kernel.h"
#include "passes.h"

enum { COLS = KTH_COLS, GROUP = KTH_GROUP_MAX, MAXROWS = 4096 };

static uint64_t rng = 12345;
static double uni(void) {
  rng = rng * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(rng >> 11) * (1.0 / 9007199254740992.0);
}

/* One value of a row of the given kind. */
static float draw(int kind) {
  double u = uni();
  switch (kind) {
  case 0: return (float)(uni() + uni() + uni() - 1.5);                  /* bell-shaped */
  case 1: return (float)floor(u * 7) * 0.25f;                           /* heavy ties */
  case 2: return u < 0.3 ? -0.0f : u < 0.6 ? 0.0f : (float)floor(u * 4 - 2); /* +-0 */
  case 3: return u < 0.15 ? INFINITY : u < 0.3 ? -INFINITY : (float)(u * 10 - 5);
  case 4: return 1.5f;                                                  /* all equal */
  case 5: return u < 0.03 ? 1e30f : (float)(uni() - 0.5);              /* outliers */
  case 6: return u < 0.4 ? -0.0f : u < 0.7 ? -1.0f : (float)(1 + floor(u * 3)); /* -0, no +0 */
  default: return (float)((u < 0.5 ? -1 : 1) * (uni() < 0.5 ? 1e-40 * uni() : 3e38 * uni()));
  }
}
enum { KINDS = 8 };

static int desc(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x < y) - (x > y);
}

static void reference(const float *x, int m, int k, float *tau, int *cnt) {
  float v[COLS];
  memcpy(v, x, (size_t)m * sizeof(float));
  qsort(v, (size_t)m, sizeof(float), desc);
  *tau = k < m ? v[k - 1] + 0.0f : -INFINITY;
  *cnt = 0;
  for (int j = 0; j < m; j++)
    *cnt += x[j] >= *tau;
}

typedef struct {
  int rows;
  float *x, *tau, *want_tau;
  int32_t *meta, *cnt, *want_cnt;
} Rows;

/* Row n's k out of m: any, m - 1, near m (m: no search) or 1 to 3 (the max). */
static int pick_k(int n, int m) {
  int k = n % 3 == 0 ? 1 + (int)(uni() * m) : n % 3 == 1 ? m - 1 : m - (int)(uni() * 4);
  if (n % 5 == 4)
    k = 1 + (int)(uni() * 3);
  return k < 1 ? 1 : k;
}

static void make_rows(Rows *s) {
  s->rows = 0;
  for (int kind = 0; kind < KINDS; kind++)
    for (int n = 0; n < 400; n++) {
      int r = s->rows++;
      int m = n < 40 ? 1 + n % 20 : 1 + (int)(uni() * COLS);
      int k = pick_k(n, m);
      s->meta[2 * r] = m, s->meta[2 * r + 1] = k;
      for (int j = 0; j < m; j++)
        s->x[(size_t)r * COLS + j] = draw(kind);
      reference(s->x + (size_t)r * COLS, m, k, &s->want_tau[r], &s->want_cnt[r]);
    }
}

static void poison(Rows *s) {
  for (int r = 0; r < s->rows; r++)
    s->tau[r] = NAN, s->cnt[r] = -7;
}

static void compare(const Rows *s, const char *how) {
  int bad = -1, nbad = 0;
  for (int r = 0; r < s->rows; r++)
    if (memcmp(&s->tau[r], &s->want_tau[r], 4) || s->cnt[r] != s->want_cnt[r])
      nbad++, bad = bad < 0 ? r : bad;
  CHECK(nbad == 0, "%s: %d rows wrong, first row %d (kind %d, m %d, k %d): tau %a count %d, "
        "want %a count %d", how, nbad, bad, bad < 0 ? 0 : bad / 400, bad < 0 ? 0 : s->meta[2 * bad],
        bad < 0 ? 0 : s->meta[2 * bad + 1], bad < 0 ? 0.0 : s->tau[bad], bad < 0 ? 0 : s->cnt[bad],
        bad < 0 ? 0.0 : s->want_tau[bad], bad < 0 ? 0 : s->want_cnt[bad]);
}

static void run_host(Rows *s, int group) {
  char err[512];
  Module m = {0};
  m.kernels[m.n++] = kth_kernel("kth", group);
  CHECK(!ir_run_passes(m.kernels[0], MAP_CPU, err, sizeof err), "host prepare: %s", err);
  Jit *j = jit_compile(&m, err, sizeof err);
  CHECK(j != NULL, "jit_compile: %s", err);
  CpuKernelFn fn = j ? jit_lookup(j, "kth") : NULL;
  if (fn) {
    poison(s);
    void *args[] = {&s->x, &s->meta, &s->tau, &s->cnt, &s->rows};
    int32_t grid[3];
    ir_grid(m.kernels[0], args, grid);
    fn(args, grid, 0, (int64_t)grid[0] * grid[1] * grid[2]);
    compare(s, group == 1 ? "host, one row per warp" : "host, four rows interleaved");
  }
  if (j)
    jit_free(j);
  ir_module_free(&m);
}

static void run_interp(Rows *s, int group) {
  char err[512];
  Kernel *k = kth_kernel("kth", group);
  CHECK(!ir_run_passes(k, MAP_NONE, err, sizeof err), "interp prepare: %s", err);
  poison(s);
  void *args[] = {&s->x, &s->meta, &s->tau, &s->cnt, &s->rows};
  int64_t counts[] = {(int64_t)s->rows * COLS, 2 * s->rows, s->rows, s->rows, 0};
  int32_t grid[3];
  ir_grid(k, args, grid);
  int rc = interp_run(k, args, counts, grid, NULL, err, sizeof err);
  CHECK(rc == 0, "interp_run: %s", err);
  if (rc == 0)
    compare(s, group == 1 ? "interpreter, one row per warp" : "interpreter, four rows interleaved");
  ir_kernel_free(k);
}

int main(void) {
  Rows s;
  s.x = calloc((size_t)MAXROWS * COLS, sizeof(float));
  s.meta = calloc(2 * MAXROWS, sizeof(int32_t));
  s.tau = calloc(MAXROWS, sizeof(float)), s.want_tau = calloc(MAXROWS, sizeof(float));
  s.cnt = calloc(MAXROWS, sizeof(int32_t)), s.want_cnt = calloc(MAXROWS, sizeof(int32_t));
  make_rows(&s);
  for (int group = 1; group <= GROUP; group += GROUP - 1) {
    run_host(&s, group);
    run_interp(&s, group);
  }
  free(s.x), free(s.meta), free(s.tau), free(s.want_tau), free(s.cnt), free(s.want_cnt);
  return check_summary();
}
