/* Tests of the IR interpreter (ir/interp.c): kernels built with the IR builder run
 * in interpreter mode and are compared with plain C; reductions are checked bit for
 * bit against hand-written GPU combination orders (butterfly, warps in order); and
 * every class of error (bounds, races, uninitialised reads, division by zero,
 * refused kernels) must be reported with the expected message.
 * Prints "N passed, M failed" and exits non-zero on failure. */
#include "interp.h"
#include "passes.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int passed, failed;

static void expect(bool ok, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (ok) {
    passed++;
  } else {
    failed++;
    fputs("FAIL: ", stdout);
    vprintf(fmt, ap);
    fputc('\n', stdout);
  }
  va_end(ap);
}

static int run(Kernel *k, void **args, const int64_t *counts, const int32_t *grid, char *err,
               const InterpOptions *opt) {
  int32_t g[3];
  if (grid)
    memcpy(g, grid, sizeof g);
  else
    ir_grid(k, args, g);
  return interp_run(k, args, counts, g, opt, err, 512);
}

static void expect_ok(const char *name, Kernel *k, void **args, const int64_t *counts,
                      const int32_t *grid) {
  char err[512];
  int rc = run(k, args, counts, grid, err, NULL);
  expect(rc == 0, "%s: interp_run failed: %s", name, err);
}

static void expect_error(const char *name, Kernel *k, void **args, const int64_t *counts,
                         const int32_t *grid, const char *substr) {
  char err[512];
  int rc = run(k, args, counts, grid, err, NULL);
  bool ok = rc == -1 && strstr(err, substr);
  expect(ok, "%s: expected error containing \"%s\", got rc=%d \"%s\"", name, substr, rc, err);
  if (ok)
    printf("  ok %-22s %s\n", name, err);
}

static const int32_t ONE_BLOCK[3] = {1, 1, 1};

/* ---- reference reductions in the GPU's order ---- */

static float bfly_sum(const float *lanes) {
  float v[32], nv[32];
  memcpy(v, lanes, sizeof v);
  for (int off = 16; off > 0; off /= 2) {
    for (int x = 0; x < 32; x++)
      nv[x] = v[x] + v[x ^ off];
    memcpy(v, nv, sizeof v);
  }
  return v[0];
}

/* reduce.block.add over x[0..n) with T threads: strided partials, warp butterflies,
 * warps combined in order starting from 0. */
static float block_sum_ref(const float *x, int n, int warps) {
  int T = 32 * warps;
  float acc = 0;
  for (int w = 0; w < warps; w++) {
    float lanes[32];
    for (int l = 0; l < 32; l++) {
      lanes[l] = 0;
      for (int i = 32 * w + l; i < n; i += T)
        lanes[l] += x[i];
    }
    acc += bfly_sum(lanes);
  }
  return acc;
}

/* ---- (1) results vs plain C ---- */

static Kernel *vadd_kernel(int warps) {
  Kernel *k = ir_kernel_new("vadd", warps);
  Buf *a = ir_param_buf(k, "a", TY_F32, ROLE_IN);
  Buf *b = ir_param_buf(k, "b", TY_F32, ROLE_IN);
  Buf *c = ir_param_buf(k, "c", TY_F32, ROLE_OUT);
  Op *n = ir_param_scalar(k, "n", TY_I32);
  ir_set_grid(k, 0, 3, -1, 256);
  Builder bb = ir_builder(k), body, then;
  Op *base = ir_bin(&bb, OP_MUL, ir_block_id(&bb, 0), ir_const_i32(&bb, 256));
  Op *i = ir_pfor(&bb, AXIS_BLOCK, ir_const_i32(&bb, 256), "i", &body)->index;
  Op *j = ir_bin(&body, OP_ADD, base, i);
  ir_if(&body, ir_cmp(&body, CMP_LT, j, n), &then, NULL);
  ir_store(&then, c, j, ir_bin(&then, OP_ADD, ir_load(&then, a, j), ir_load(&then, b, j)));
  return k;
}

static void test_vadd(void) {
  enum { N = 1000 };
  static float a[N], b[N], c[N];
  for (int i = 0; i < N; i++) {
    a[i] = 0.5f * (float)i;
    b[i] = 1.0f / (float)(i + 1);
  }
  for (int warps = 1; warps <= 8; warps *= 2) {
    Kernel *k = vadd_kernel(warps);
    float *pa = a, *pb = b, *pc = c;
    int n = N;
    void *args[] = {&pa, &pb, &pc, &n};
    int64_t counts[] = {N, N, N, 0};
    memset(c, 0, sizeof c);
    expect_ok("vadd", k, args, counts, NULL);
    int bad = 0;
    for (int i = 0; i < N; i++)
      bad += c[i] != a[i] + b[i];
    expect(bad == 0, "vadd warps=%d: %d wrong elements", warps, bad);
    ir_kernel_free(k);
  }
}

/* One row per warp: max and sum by lane reductions, then a pfor.lane writes. */
static Kernel *softmax_kernel(int warps) {
  Kernel *k = ir_kernel_new("softmax", warps);
  Buf *x = ir_param_buf(k, "x", TY_F32, ROLE_IN);
  Buf *y = ir_param_buf(k, "y", TY_F32, ROLE_OUT);
  Op *rows = ir_param_scalar(k, "rows", TY_I32);
  Op *cols = ir_param_scalar(k, "cols", TY_I32);
  ir_set_grid(k, 0, 2, -1, warps);
  Builder bb = ir_builder(k), wb, then, mb, sb, lb;
  Op *row0 = ir_bin(&bb, OP_MUL, ir_block_id(&bb, 0), ir_const_i32(&bb, warps));
  Op *r = ir_pfor(&bb, AXIS_WARP, ir_const_i32(&bb, warps), "r", &wb)->index;
  Op *row = ir_bin(&wb, OP_ADD, row0, r);
  ir_if(&wb, ir_cmp(&wb, CMP_LT, row, rows), &then, NULL);
  Op *base = ir_bin(&then, OP_MUL, row, cols);
  Op *m = ir_reduce(&then, AXIS_LANE, RED_MAX, TY_F32, cols, "j", &mb);
  ir_yield(&mb, ir_load(&mb, x, ir_bin(&mb, OP_ADD, base, m->index)));
  Op *s = ir_reduce(&then, AXIS_LANE, RED_ADD, TY_F32, cols, "j", &sb);
  Op *xv = ir_load(&sb, x, ir_bin(&sb, OP_ADD, base, s->index));
  ir_yield(&sb, ir_un(&sb, OP_EXP, ir_bin(&sb, OP_SUB, xv, m)));
  Op *j = ir_pfor(&then, AXIS_LANE, cols, "j", &lb)->index;
  Op *at = ir_bin(&lb, OP_ADD, base, j);
  Op *e = ir_un(&lb, OP_EXP, ir_bin(&lb, OP_SUB, ir_load(&lb, x, at), m));
  ir_store(&lb, y, at, ir_bin(&lb, OP_DIV, e, s));
  return k;
}

static void test_softmax(void) {
  enum { ROWS = 10, COLS = 100 };
  static float x[ROWS * COLS], y[ROWS * COLS];
  for (int i = 0; i < ROWS * COLS; i++)
    x[i] = sinf((float)i * 0.37f) * 4.0f;
  Kernel *k = softmax_kernel(4);
  float *px = x, *py = y;
  int rows = ROWS, cols = COLS;
  void *args[] = {&px, &py, &rows, &cols};
  int64_t counts[] = {ROWS * COLS, ROWS * COLS, 0, 0};
  expect_ok("softmax", k, args, counts, NULL);
  double worst = 0;
  for (int r = 0; r < ROWS; r++) {
    double m = -INFINITY, s = 0;
    for (int c = 0; c < COLS; c++)
      m = fmax(m, x[r * COLS + c]);
    for (int c = 0; c < COLS; c++)
      s += exp(x[r * COLS + c] - m);
    for (int c = 0; c < COLS; c++)
      worst = fmax(worst, fabs(y[r * COLS + c] - exp(x[r * COLS + c] - m) / s));
  }
  expect(worst < 1e-6, "softmax: max abs error %g", worst);
  ir_kernel_free(k);
}

/* out[b] = sum (or max) of x[b*n .. b*n+n) by a block reduction. */
static Kernel *block_reduce_kernel(Type t, RedKind red, int warps) {
  Kernel *k = ir_kernel_new("blockred", warps);
  Buf *x = ir_param_buf(k, "x", t, ROLE_IN);
  Buf *out = ir_param_buf(k, "out", t, ROLE_OUT);
  Op *n = ir_param_scalar(k, "n", TY_I32);
  ir_param_scalar(k, "rows", TY_I32);
  ir_set_grid(k, 0, 3, -1, 1);
  Builder bb = ir_builder(k), rb, pb;
  Op *bid = ir_block_id(&bb, 0);
  Op *base = ir_bin(&bb, OP_MUL, bid, n);
  Op *r = ir_reduce(&bb, AXIS_BLOCK, red, t, n, "i", &rb);
  ir_yield(&rb, ir_load(&rb, x, ir_bin(&rb, OP_ADD, base, r->index)));
  ir_pfor(&bb, AXIS_BLOCK, ir_const_i32(&bb, 1), "t", &pb);
  ir_store(&pb, out, bid, r);
  return k;
}

static void test_block_reduce(void) {
  enum { N = 1000, ROWS = 3, WARPS = 4 };
  static float x[N * ROWS], out[ROWS];
  static int32_t xi[N * ROWS], outi[ROWS];
  for (int i = 0; i < N * ROWS; i++) {
    x[i] = (i % 3 == 0 ? 1e4f : 1.0f) / (float)(i % 17 + 1);
    xi[i] = (i * 7919) % 100003 - 50000;
  }
  int n = N, rows = ROWS;
  Kernel *k = block_reduce_kernel(TY_F32, RED_ADD, WARPS);
  float *px = x, *po = out;
  void *args[] = {&px, &po, &n, &rows};
  int64_t counts[] = {N * ROWS, ROWS, 0, 0};
  expect_ok("block reduce add", k, args, counts, NULL);
  for (int b = 0; b < ROWS; b++) {
    float ref = block_sum_ref(x + b * N, N, WARPS);
    expect(out[b] == ref, "block reduce add row %d: %.9g vs GPU-order %.9g", b, out[b], ref);
  }
  ir_kernel_free(k);
  k = block_reduce_kernel(TY_I32, RED_MAX, WARPS);
  int32_t *pxi = xi, *poi = outi;
  void *iargs[] = {&pxi, &poi, &n, &rows};
  expect_ok("block reduce max", k, iargs, counts, NULL);
  for (int b = 0; b < ROWS; b++) {
    int32_t ref = INT32_MIN;
    for (int i = 0; i < N; i++)
      ref = xi[b * N + i] > ref ? xi[b * N + i] : ref;
    expect(outi[b] == ref, "block reduce max row %d: %d vs %d", b, outi[b], ref);
  }
  ir_kernel_free(k);
}

/* out[i] = sum_j x[i*m + j], one thread per row, by a serial reduction. */
static void test_serial_reduce(void) {
  enum { ROWS = 40, M = 37 };
  static float x[ROWS * M], out[ROWS];
  for (int i = 0; i < ROWS * M; i++)
    x[i] = 1.0f / (float)(i + 3) + (i % 5 == 0 ? 1000.0f : 0.0f);
  Kernel *k = ir_kernel_new("rowsum", 1);
  Buf *bx = ir_param_buf(k, "x", TY_F32, ROLE_IN);
  Buf *bo = ir_param_buf(k, "out", TY_F32, ROLE_OUT);
  Builder bb = ir_builder(k), pb, rb;
  Op *m = ir_const_i32(&bb, M);
  Op *i = ir_pfor(&bb, AXIS_BLOCK, ir_const_i32(&bb, ROWS), "i", &pb)->index;
  Op *base = ir_bin(&pb, OP_MUL, i, m);
  Op *r = ir_reduce(&pb, AXIS_SERIAL, RED_ADD, TY_F32, m, "j", &rb);
  ir_yield(&rb, ir_load(&rb, bx, ir_bin(&rb, OP_ADD, base, r->index)));
  ir_store(&pb, bo, i, r);
  float *px = x, *po = out;
  void *args[] = {&px, &po};
  int64_t counts[] = {ROWS * M, ROWS};
  expect_ok("serial reduce", k, args, counts, ONE_BLOCK);
  int bad = 0;
  for (int row = 0; row < ROWS; row++) {
    float s = 0;
    for (int j = 0; j < M; j++)
      s += x[row * M + j];
    bad += out[row] != s;
  }
  expect(bad == 0, "serial reduce: %d rows differ from the sequential float sum", bad);
  ir_kernel_free(k);
}

/* y[b*256 + i] = x[b*256 + 255 - i] through a shared stage; barrier optional. */
static Kernel *reverse_kernel(bool barrier, int shift) {
  Kernel *k = ir_kernel_new("reverse", 2);
  Buf *x = ir_param_buf(k, "x", TY_F32, ROLE_IN);
  Buf *y = ir_param_buf(k, "y", TY_F32, ROLE_OUT);
  Buf *s = ir_shared(k, "s", TY_F32, 256);
  Builder bb = ir_builder(k), p1, p2;
  Op *base = ir_bin(&bb, OP_MUL, ir_block_id(&bb, 0), ir_const_i32(&bb, 256));
  Op *n = ir_const_i32(&bb, 256);
  Op *i = ir_pfor(&bb, AXIS_BLOCK, n, "i", &p1)->index;
  ir_store(&p1, s, i, ir_load(&p1, x, ir_bin(&p1, OP_ADD, base, i)));
  if (barrier)
    ir_barrier(&bb);
  Op *j = ir_pfor(&bb, AXIS_BLOCK, n, "j", &p2)->index;
  Op *from = ir_bin(&p2, OP_SUB, ir_const_i32(&p2, 255 - shift), j);
  ir_store(&p2, y, ir_bin(&p2, OP_ADD, base, j), ir_load(&p2, s, from));
  return k;
}

static void test_shared_stage(void) {
  enum { N = 768 };
  static float x[N], y[N];
  for (int i = 0; i < N; i++)
    x[i] = (float)i * 1.5f;
  Kernel *k = reverse_kernel(true, 0);
  float *px = x, *py = y;
  void *args[] = {&px, &py};
  int64_t counts[] = {N, N};
  int32_t grid[3] = {3, 1, 1};
  expect_ok("shared stage", k, args, counts, grid);
  int bad = 0;
  for (int i = 0; i < N; i++)
    bad += y[i] != x[(i / 256) * 256 + 255 - i % 256];
  expect(bad == 0, "shared stage: %d wrong elements", bad);
  ir_kernel_free(k);
}

/* Scalar semantics the LLVM lowering must match: wrap-around, logical shift right,
 * ordered float compares (NE included), truncating casts, f32 rounding in float,
 * NaN-ignoring min, fused fma, bool -> int = 1. */
static void test_scalar_semantics(void) {
  Kernel *k = ir_kernel_new("scalars", 1);
  Buf *o = ir_param_buf(k, "o", TY_I32, ROLE_OUT);
  Builder bb = ir_builder(k), p;
  ir_pfor(&bb, AXIS_BLOCK, ir_const_i32(&bb, 1), "i", &p);
  Op *nan = ir_const_f32(&p, NAN), *one = ir_const_f32(&p, 1);
  Op *big = ir_const_f32(&p, 1e8), *e = ir_const_f32(&p, 1.0 + 1.0 / 4096);
  Op *prod = ir_bin(&p, OP_MUL, e, e);
  Op *v[] = {
      ir_bin(&p, OP_ADD, ir_const_i32(&p, INT32_MAX), ir_const_i32(&p, 1)),
      ir_bin(&p, OP_SHR, ir_const_i32(&p, -8), ir_const_i32(&p, 28)),
      ir_cast(&p, TY_I32, ir_cmp(&p, CMP_NE, nan, one)),
      ir_cast(&p, TY_I32, ir_cmp(&p, CMP_EQ, nan, nan)),
      ir_cast(&p, TY_I32, ir_const_f32(&p, -2.7)),
      ir_bitcast(&p, TY_I32, one),
      ir_bin(&p, OP_REM, ir_const_i32(&p, -7), ir_const_i32(&p, 2)),
      ir_cast(&p, TY_I32, ir_cmp(&p, CMP_EQ, ir_bin(&p, OP_ADD, big, one), big)),
      ir_cast(&p, TY_I32, ir_bin(&p, OP_MIN, nan, ir_const_f32(&p, 3))),
      ir_cast(&p, TY_I32, ir_cmp(&p, CMP_ULT, ir_const_i32(&p, -1), ir_const_i32(&p, 1))),
      ir_cast(&p, TY_I32, ir_const_i64(&p, INT64_C(0x100000005))),
      ir_cast(&p, TY_I32, ir_cmp(&p, CMP_NE, ir_fma(&p, e, e, ir_un(&p, OP_NEG, prod)),
                                 ir_const_f32(&p, 0))),
      ir_cast(&p, TY_I32, ir_const_bool(&p, true)),
  };
  enum { NV = sizeof v / sizeof v[0] };
  for (int j = 0; j < NV; j++)
    ir_store(&p, o, ir_const_i32(&p, j), v[j]);
  static const int32_t want[NV] = {INT32_MIN, 15, 0, 0, -2, 0x3f800000, -1, 1, 3, 0, 5, 1, 1};
  int32_t data[NV];
  int32_t *pd = data;
  void *args[] = {&pd};
  int64_t counts[] = {NV};
  expect_ok("scalar semantics", k, args, counts, ONE_BLOCK);
  for (int j = 0; j < NV; j++)
    expect(data[j] == want[j], "scalar semantics: o[%d] = %d, want %d", j, data[j], want[j]);
  ir_kernel_free(k);
}

/* ---- (2) lane-reduce rounding = the hand-written butterfly ---- */

static void test_lane_rounding(void) {
  enum { N = 100 };
  static float x[N];
  float out = 0;
  for (int i = 0; i < N; i++)
    x[i] = i % 7 == 0 ? 3e7f : 0.1f * (float)(i + 1);
  Kernel *k = ir_kernel_new("lanesum", 1);
  Buf *bx = ir_param_buf(k, "x", TY_F32, ROLE_IN);
  Buf *bo = ir_param_buf(k, "out", TY_F32, ROLE_OUT);
  Builder bb = ir_builder(k), wb, rb, lb;
  ir_pfor(&bb, AXIS_WARP, ir_const_i32(&bb, 1), "w", &wb);
  Op *r = ir_reduce(&wb, AXIS_LANE, RED_ADD, TY_F32, ir_const_i32(&wb, N), "j", &rb);
  ir_yield(&rb, ir_load(&rb, bx, r->index));
  ir_pfor(&wb, AXIS_LANE, ir_const_i32(&wb, 1), "l", &lb);
  ir_store(&lb, bo, ir_const_i32(&lb, 0), r);
  float *px = x, *po = &out;
  void *args[] = {&px, &po};
  int64_t counts[] = {N, 1};
  expect_ok("lane rounding", k, args, counts, ONE_BLOCK);
  float lanes[32], seq = 0;
  for (int l = 0; l < 32; l++) {
    lanes[l] = 0;
    for (int i = l; i < N; i += 32)
      lanes[l] += x[i];
  }
  for (int i = 0; i < N; i++)
    seq += x[i];
  float ref = bfly_sum(lanes);
  expect(out == ref, "lane rounding: %.9g vs butterfly %.9g", out, ref);
  expect(ref != seq, "lane rounding: data does not tell butterfly (%.9g) from sequential (%.9g)",
         ref, seq);
  ir_kernel_free(k);
}

/* ---- (3) errors ---- */

static void test_oob_global(void) {
  Kernel *k = ir_kernel_new("oob", 4);
  Buf *o = ir_param_buf(k, "o", TY_F32, ROLE_OUT);
  Builder bb = ir_builder(k), pb;
  Op *i = ir_pfor(&bb, AXIS_BLOCK, ir_const_i32(&bb, 65), "i", &pb)->index;
  ir_store(&pb, o, i, ir_const_f32(&pb, 1));
  float data[64];
  float *p = data;
  void *args[] = {&p};
  int64_t counts[] = {64};
  expect_error("oob global store", k, args, counts, ONE_BLOCK,
               "block (0,0,0) thread 64 (warp 2 lane 0): store o[%1]: index 64 out of bounds of "
               "o[64]");
  ir_kernel_free(k);
}

static Kernel *shared_read_kernel(int written, int offset, bool barrier) {
  Kernel *k = ir_kernel_new("shread", 2);
  Buf *o = ir_param_buf(k, "o", TY_F32, ROLE_OUT);
  Buf *s = ir_shared(k, "s", TY_F32, 64);
  Builder bb = ir_builder(k), p1, p2;
  Op *i = ir_pfor(&bb, AXIS_BLOCK, ir_const_i32(&bb, written), "i", &p1)->index;
  ir_store(&p1, s, i, ir_cast(&p1, TY_F32, i));
  if (barrier)
    ir_barrier(&bb);
  Op *j = ir_pfor(&bb, AXIS_BLOCK, ir_const_i32(&bb, 64), "j", &p2)->index;
  Op *at = ir_bin(&p2, OP_ADD, j, ir_const_i32(&p2, offset));
  if (offset == 1)   /* the neighbour, wrapping around */
    at = ir_bin(&p2, OP_AND, at, ir_const_i32(&p2, 63));
  ir_store(&p2, o, j, ir_load(&p2, s, at));
  return k;
}

static void test_shared_errors(void) {
  float data[64];
  float *p = data;
  void *args[] = {&p};
  int64_t counts[] = {64};
  Kernel *k = shared_read_kernel(64, 2, true);
  expect_error("oob shared load", k, args, counts, ONE_BLOCK,
               "thread 62 (warp 1 lane 30): %7 (load): index 64 out of bounds of s[64]");
  ir_kernel_free(k);
  k = shared_read_kernel(64, 1, false);
  expect_error("race on shared", k, args, counts, ONE_BLOCK,
               "race on shared s[1]: written by thread 1, read by thread 0 with no barrier or "
               "warp sync between");
  ir_kernel_free(k);
  k = shared_read_kernel(64, 1, true);
  expect_ok("race fixed by barrier", k, args, counts, ONE_BLOCK);
  int bad = 0;
  for (int j = 0; j < 64; j++)
    bad += data[j] != (float)((j + 1) & 63);
  expect(bad == 0, "race fixed by barrier: %d wrong elements", bad);
  ir_kernel_free(k);
  k = shared_read_kernel(32, 0, true);
  expect_error("uninitialised shared", k, args, counts, ONE_BLOCK,
               "thread 32 (warp 1 lane 0): %7 (load): read of shared s[32] before any thread "
               "wrote it");
  InterpOptions off = {true, false};
  char err[512];
  expect(run(k, args, counts, ONE_BLOCK, err, &off) == 0, "uninit check off: %s", err);
  ir_kernel_free(k);
}

/* Lanes pass values through shared memory: to a neighbour lane of the same warp
 * (ordered by the pfor.lane warp sync) or to the other warp (a race: warp 0 reads
 * s[32] before warp 1 overwrites it, with no barrier between). A first pfor.block
 * and barrier initialise s so that the early read is not an uninitialised one. */
static Kernel *lanes_kernel(bool other) {
  Kernel *k = ir_kernel_new("warps", 2);
  Buf *o = ir_param_buf(k, "o", TY_I32, ROLE_OUT);
  Buf *s = ir_shared(k, "s", TY_I32, 64);
  Builder bb = ir_builder(k), ib, wb, l1, l2;
  Op *i = ir_pfor(&bb, AXIS_BLOCK, ir_const_i32(&bb, 64), "i", &ib)->index;
  ir_store(&ib, s, i, ir_const_i32(&ib, -1));
  ir_barrier(&bb);
  Op *w = ir_pfor(&bb, AXIS_WARP, ir_const_i32(&bb, 2), "w", &wb)->index;
  Op *base = ir_bin(&wb, OP_MUL, w, ir_const_i32(&wb, 32));
  Op *l = ir_pfor(&wb, AXIS_LANE, ir_const_i32(&wb, 32), "l", &l1)->index;
  ir_store(&l1, s, ir_bin(&l1, OP_ADD, base, l), l);
  Op *m = ir_pfor(&wb, AXIS_LANE, ir_const_i32(&wb, 32), "l", &l2)->index;
  Op *me = ir_bin(&l2, OP_ADD, base, m);
  Op *nb = ir_bin(&l2, OP_AND, ir_bin(&l2, OP_ADD, m, ir_const_i32(&l2, 1)),
                  ir_const_i32(&l2, 31));
  Op *from = other ? ir_bin(&l2, OP_XOR, me, ir_const_i32(&l2, 32))
                   : ir_bin(&l2, OP_ADD, base, nb);
  ir_store(&l2, o, me, ir_load(&l2, s, from));
  return k;
}

static void test_warp_races(void) {
  int32_t data[64];
  int32_t *p = data;
  void *args[] = {&p};
  int64_t counts[] = {64};
  Kernel *k = lanes_kernel(false);
  expect_ok("lanes after warp sync", k, args, counts, ONE_BLOCK);
  expect(data[33] == 2 && data[31] == 0, "lanes after warp sync: wrong values");
  ir_kernel_free(k);
  k = lanes_kernel(true);
  expect_error("race between warps", k, args, counts, ONE_BLOCK,
               "store s[%9]: race on shared s[32]: read by thread 0, written by thread 32 with "
               "no barrier between");
  ir_kernel_free(k);
}

/* Block-level code reads what one thread wrote: every thread reads it. */
static void test_block_level_read(void) {
  for (int barrier = 0; barrier < 2; barrier++) {
    Kernel *k = ir_kernel_new("bcast", 1);
    Buf *o = ir_param_buf(k, "o", TY_I32, ROLE_OUT);
    Buf *s = ir_shared(k, "s", TY_I32, 1);
    Builder bb = ir_builder(k), p1, p2;
    ir_pfor(&bb, AXIS_BLOCK, ir_const_i32(&bb, 1), "i", &p1);
    ir_store(&p1, s, ir_const_i32(&p1, 0), ir_const_i32(&p1, 42));
    if (barrier)
      ir_barrier(&bb);
    Op *v = ir_load(&bb, s, ir_const_i32(&bb, 0));
    Op *i = ir_pfor(&bb, AXIS_BLOCK, ir_const_i32(&bb, 32), "i", &p2)->index;
    ir_store(&p2, o, i, v);
    int32_t data[32];
    int32_t *p = data;
    void *args[] = {&p};
    int64_t counts[] = {32};
    if (barrier) {
      expect_ok("block-level read", k, args, counts, ONE_BLOCK);
      expect(data[31] == 42, "block-level read: wrong value %d", data[31]);
    } else {
      expect_error("block-level read race", k, args, counts, ONE_BLOCK,
                   "race on shared s[0]: written by thread 0, read by block-level code");
    }
    ir_kernel_free(k);
  }
}

/* s written by pfor.block, summed by reduce.block, overwritten by pfor.block: the
 * reduce's own barriers order the overwrite; a barrier before it is needed. */
static void test_block_reduce_sync(void) {
  for (int barrier = 0; barrier < 2; barrier++) {
    Kernel *k = ir_kernel_new("redsync", 2);
    Buf *o = ir_param_buf(k, "o", TY_I32, ROLE_OUT);
    Buf *s = ir_shared(k, "s", TY_I32, 64);
    Builder bb = ir_builder(k), p1, rb, p2;
    Op *n = ir_const_i32(&bb, 64);
    Op *i = ir_pfor(&bb, AXIS_BLOCK, n, "i", &p1)->index;
    ir_store(&p1, s, i, i);
    if (barrier)
      ir_barrier(&bb);
    Op *r = ir_reduce(&bb, AXIS_BLOCK, RED_ADD, TY_I32, n, "j", &rb);
    ir_yield(&rb, ir_load(&rb, s, ir_bin(&rb, OP_XOR, r->index, ir_const_i32(&rb, 1))));
    Op *t = ir_pfor(&bb, AXIS_BLOCK, n, "t", &p2)->index;
    ir_store(&p2, s, t, r);
    ir_store(&p2, o, t, ir_load(&p2, s, t));
    int32_t data[64];
    int32_t *pd = data;
    void *args[] = {&pd};
    int64_t counts[] = {64};
    if (barrier) {
      expect_ok("block reduce syncs", k, args, counts, ONE_BLOCK);
      expect(data[63] == 64 * 63 / 2, "block reduce syncs: %d", data[63]);
    } else {
      expect_error("race into block reduce", k, args, counts, ONE_BLOCK,
                   "race on shared s[1]: written by thread 1, read by thread 0");
    }
    ir_kernel_free(k);
  }
}

static void test_cross_block(void) {
  Kernel *k = ir_kernel_new("ww", 1);
  Buf *o = ir_param_buf(k, "o", TY_F32, ROLE_OUT);
  Builder bb = ir_builder(k), pb;
  Op *i = ir_pfor(&bb, AXIS_BLOCK, ir_const_i32(&bb, 32), "i", &pb)->index;
  ir_store(&pb, o, i, ir_const_f32(&pb, 1));
  float data[32];
  float *p = data;
  void *args[] = {&p};
  int64_t counts[] = {32};
  int32_t grid[3] = {2, 1, 1};
  expect_error("write-write across blocks", k, args, counts, grid,
               "race on global o[0]: written by block (0,0,0) thread 0, written by block (1,0,0) "
               "thread 0");
  InterpOptions off = {false, true};
  char err[512];
  expect(run(k, args, counts, grid, err, &off) == 0, "race check off: %s", err);
  ir_kernel_free(k);
}

/* ---- atomics ---- */

/* Per block: a shared histogram of x[i] & 63 built with atomic adds (lanes of every
 * warp at once), then added bin by bin into the global one; every element also
 * takes a ticket, the old value of a global counter. */
static Kernel *hist_kernel(int warps) {
  Kernel *k = ir_kernel_new("hist", warps);
  Buf *x = ir_param_buf(k, "x", TY_I32, ROLE_IN);
  Buf *h = ir_param_buf(k, "h", TY_I32, ROLE_INOUT);
  Buf *ctr = ir_param_buf(k, "ctr", TY_I32, ROLE_INOUT);
  Buf *ticket = ir_param_buf(k, "ticket", TY_I32, ROLE_OUT);
  Buf *fs = ir_param_buf(k, "fs", TY_F32, ROLE_INOUT);
  Op *n = ir_param_scalar(k, "n", TY_I32);
  Buf *s = ir_shared(k, "s", TY_I32, 64);
  ir_set_grid(k, 0, 5, -1, 100);
  Builder bb = ir_builder(k), zb, wb, lb, in, pb, nz;
  Op *i = ir_pfor(&bb, AXIS_BLOCK, ir_const_i32(&bb, 64), "i", &zb)->index;
  ir_store(&zb, s, i, ir_const_i32(&zb, 0));
  ir_barrier(&bb);
  Op *base = ir_bin(&bb, OP_MUL, ir_block_id(&bb, 0), ir_const_i32(&bb, 100));
  Op *w = ir_pfor(&bb, AXIS_WARP, ir_const_i32(&bb, 4), "w", &wb)->index;
  Op *l = ir_pfor(&wb, AXIS_LANE, ir_const_i32(&wb, 25), "l", &lb)->index;
  Op *wl = ir_bin(&lb, OP_ADD, ir_bin(&lb, OP_MUL, w, ir_const_i32(&lb, 25)), l);
  Op *j = ir_bin(&lb, OP_ADD, base, wl);
  ir_if(&lb, ir_cmp(&lb, CMP_LT, j, n), &in, NULL);
  Op *bin = ir_bin(&in, OP_AND, ir_load(&in, x, j), ir_const_i32(&in, 63));
  ir_atomic_add(&in, s, bin, ir_const_i32(&in, 1));
  ir_store(&in, ticket, j, ir_atomic_add(&in, ctr, ir_const_i32(&in, 0), ir_const_i32(&in, 1)));
  ir_atomic_add(&in, fs, ir_const_i32(&in, 0), ir_const_f32(&in, 0.5));
  ir_barrier(&bb);
  i = ir_pfor(&bb, AXIS_BLOCK, ir_const_i32(&bb, 64), "i", &pb)->index;
  Op *c = ir_load(&pb, s, i);
  ir_if(&pb, ir_cmp(&pb, CMP_NE, c, ir_const_i32(&pb, 0)), &nz, NULL);
  ir_atomic_add(&nz, h, i, c);
  return k;
}

static void test_atomic_hist(void) {
  enum { N = 1234 };
  static int32_t x[N], ticket[N];
  int32_t h[64], want[64] = {0}, ctr;
  float fs;
  for (int i = 0; i < N; i++) {
    x[i] = (i * 7919) ^ (i >> 3);
    want[x[i] & 63]++;
  }
  for (int warps = 1; warps <= 4; warps *= 4) {
    Kernel *k = hist_kernel(warps);
    memset(h, 0, sizeof h);
    ctr = 0, fs = 0;
    int32_t *px = x, *ph = h, *pc = &ctr, *pt = ticket;
    float *pf = &fs;
    int n = N;
    void *args[] = {&px, &ph, &pc, &pt, &pf, &n};
    int64_t counts[] = {N, 64, 1, N, 1, 0};
    expect_ok("atomic histogram", k, args, counts, NULL);
    static uint8_t seen[N];
    memset(seen, 0, sizeof seen);
    int bad = 0;
    for (int i = 0; i < N; i++) {
      bad += ticket[i] < 0 || ticket[i] >= N || seen[ticket[i]];
      if (ticket[i] >= 0 && ticket[i] < N)
        seen[ticket[i]] = 1;
    }
    expect(!memcmp(h, want, sizeof h) && ctr == N && bad == 0 && fs == 0.5f * N,
           "atomic histogram warps=%d: bins %s, counter %d, %d bad tickets, f32 sum %g", warps,
           memcmp(h, want, sizeof h) ? "WRONG" : "ok", ctr, bad, fs);
    ir_kernel_free(k);
  }
}

/* 32 threads add t to s[0]; a plain access by one thread or all, with or without
 * a barrier between. mode 0: thread 0 stores to s[0] after the atomics; 1: every
 * thread loads s[0] after them; 2: thread 0 stores s[0] = 5 before them. */
static Kernel *atomic_race_kernel(int mode, bool barrier) {
  Kernel *k = ir_kernel_new("arace", 1);
  Buf *o = ir_param_buf(k, "o", TY_I32, ROLE_OUT);
  Buf *s = ir_shared(k, "s", TY_I32, 4);
  Builder bb = ir_builder(k), p0, p1, p2, p3;
  Op *i = ir_pfor(&bb, AXIS_BLOCK, ir_const_i32(&bb, 4), "i", &p0)->index;
  ir_store(&p0, s, i, ir_const_i32(&p0, 0));
  ir_barrier(&bb);
  Op *zero = ir_const_i32(&bb, 0);
  if (mode == 2) {
    ir_pfor(&bb, AXIS_BLOCK, ir_const_i32(&bb, 1), "t", &p3);
    ir_store(&p3, s, zero, ir_const_i32(&p3, 5));
    if (barrier)
      ir_barrier(&bb);
  }
  Op *t = ir_pfor(&bb, AXIS_BLOCK, ir_const_i32(&bb, 32), "t", &p1)->index;
  ir_atomic_add(&p1, s, zero, t);
  if (barrier || mode == 2)
    ir_barrier(&bb);
  if (mode == 0) {
    ir_pfor(&bb, AXIS_BLOCK, ir_const_i32(&bb, 1), "t", &p3);
    ir_store(&p3, s, zero, ir_const_i32(&p3, 99));
    ir_barrier(&bb);
  }
  t = ir_pfor(&bb, AXIS_BLOCK, ir_const_i32(&bb, 32), "t", &p2)->index;
  ir_store(&p2, o, t, ir_load(&p2, s, zero));
  return k;
}

static void test_atomic_races(void) {
  int32_t data[32];
  int32_t *p = data;
  void *args[] = {&p};
  int64_t counts[] = {32};
  static const char *const want[] = {
      "race on shared s[0]: atomic add by thread 1, written by thread 0 with no barrier or warp "
      "sync between",
      "race on shared s[0]: atomic add by thread 1, read by thread 0 with no barrier or warp "
      "sync between",
      "race on shared s[0]: written by thread 0, atomic add by thread 1 with no barrier or warp "
      "sync between"};
  for (int mode = 0; mode < 3; mode++) {
    Kernel *k = atomic_race_kernel(mode, false);
    expect_error(mode == 0 ? "atomic vs store" : mode == 1 ? "atomic vs load" : "store vs atomic",
                 k, args, counts, ONE_BLOCK, want[mode]);
    ir_kernel_free(k);
    k = atomic_race_kernel(mode, true);
    expect_ok("atomics behind a barrier", k, args, counts, ONE_BLOCK);
    int sum = 32 * 31 / 2 + (mode == 2 ? 5 : 0);
    expect(data[31] == (mode == 0 ? 99 : sum), "atomics behind a barrier (mode %d): %d", mode,
           data[31]);
    ir_kernel_free(k);
  }
  /* across blocks: block 0 adds to g[0], block 1 reads it */
  Kernel *k = ir_kernel_new("xadd", 1);
  Buf *g = ir_param_buf(k, "g", TY_I32, ROLE_INOUT);
  Builder bb = ir_builder(k), pb, b0, b1;
  ir_pfor(&bb, AXIS_BLOCK, ir_const_i32(&bb, 1), "t", &pb);
  Op *first = ir_cmp(&pb, CMP_EQ, ir_block_id(&pb, 0), ir_const_i32(&pb, 0));
  ir_if(&pb, first, &b0, &b1);
  ir_atomic_add(&b0, g, ir_const_i32(&b0, 0), ir_const_i32(&b0, 1));
  ir_store(&b1, g, ir_const_i32(&b1, 1), ir_load(&b1, g, ir_const_i32(&b1, 0)));
  int32_t gv[2] = {0, 0};
  int32_t *pg = gv;
  void *gargs[] = {&pg};
  int64_t gcounts[] = {2};
  int32_t grid[3] = {2, 1, 1};
  expect_error("atomic across blocks", k, gargs, gcounts, grid,
               "race on global g[0]: atomic add by block (0,0,0), read by block (1,0,0)");
  ir_kernel_free(k);
  /* an atomic add reads: on a shared element nobody wrote it is an uninitialised read */
  k = ir_kernel_new("auninit", 1);
  Buf *s = ir_shared(k, "s", TY_I32, 4);
  bb = ir_builder(k);
  ir_pfor(&bb, AXIS_BLOCK, ir_const_i32(&bb, 1), "t", &pb);
  ir_atomic_add(&pb, s, ir_const_i32(&pb, 2), ir_const_i32(&pb, 1));
  expect_error("atomic on unwritten shared", k, NULL, NULL, ONE_BLOCK,
               "thread 0 (warp 0 lane 0): %4 (atomic_add): atomic add on shared s[2] before any "
               "thread wrote it");
  ir_kernel_free(k);
}

/* o[i] = c / i for i < 4 (ints); and bad shift / cast variants. */
static void test_arith_errors(void) {
  for (int which = 0; which < 3; which++) {
    Kernel *k = ir_kernel_new("arith", 1);
    Buf *o = ir_param_buf(k, "o", TY_I32, ROLE_OUT);
    Builder bb = ir_builder(k), pb;
    Op *i = ir_pfor(&bb, AXIS_BLOCK, ir_const_i32(&bb, 4), "i", &pb)->index;
    Op *v;
    if (which == 0)
      v = ir_bin(&pb, OP_DIV, ir_const_i32(&pb, 10), i);
    else if (which == 1)
      v = ir_bin(&pb, OP_SHL, ir_const_i32(&pb, 1), ir_bin(&pb, OP_MUL, i, ir_const_i32(&pb, 16)));
    else
      v = ir_cast(&pb, TY_I32, ir_bin(&pb, OP_MUL, ir_cast(&pb, TY_F32, i), ir_const_f32(&pb, 1e9)));
    ir_store(&pb, o, i, v);
    int32_t data[4];
    int32_t *p = data;
    void *args[] = {&p};
    int64_t counts[] = {4};
    static const char *const want[] = {
        "thread 0 (warp 0 lane 0): %3 (div): division by zero",
        "thread 2 (warp 0 lane 2): %5 (shl): shift amount 32 out of range for i32",
        "thread 3 (warp 0 lane 3): %5 (cast): cast of 3e+09 to i32 out of range"};
    static const char *const names[] = {"division by zero", "shift out of range",
                                        "cast out of range"};
    expect_error(names[which], k, args, counts, ONE_BLOCK, want[which]);
    ir_kernel_free(k);
  }
}

/* ---- local arrays: one copy per thread ---- */

static void test_local(void) {
  for (int early = 0; early < 2; early++) {
    Kernel *k = ir_kernel_new("local", 1);
    Buf *o = ir_param_buf(k, "o", TY_I32, ROLE_OUT);
    Buf *l = ir_local(k, "l", TY_I32, 2);
    Builder bb = ir_builder(k), p1, p2;
    Op *i = ir_pfor(&bb, AXIS_BLOCK, ir_const_i32(&bb, 32), "i", &p1)->index;
    ir_store(&p1, l, ir_const_i32(&p1, early), ir_bin(&p1, OP_MUL, i, i));
    Op *j = ir_pfor(&bb, AXIS_BLOCK, ir_const_i32(&bb, 32), "j", &p2)->index;
    ir_store(&p2, o, j, ir_load(&p2, l, ir_const_i32(&p2, 0)));
    int32_t data[32];
    int32_t *p = data;
    void *args[] = {&p};
    int64_t counts[] = {32};
    if (!early) {
      expect_ok("local per thread", k, args, counts, ONE_BLOCK);
      expect(data[5] == 25 && data[31] == 961, "local per thread: wrong values");
    } else {
      expect_error("uninitialised local", k, args, counts, ONE_BLOCK,
                   "read of local l[0] before thread 0 wrote it");
    }
    ir_kernel_free(k);
  }
}

/* ---- (4) refused kernels ---- */

static void test_refusals(void) {
  Kernel *k = vadd_kernel(1);
  char err[512];
  float *p = NULL;
  int n = 0;
  void *args[] = {&p, &p, &p, &n};
  int64_t counts[] = {0, 0, 0, 0};
  ir_map(k, MAP_GPU, err, sizeof err);
  int rc = run(k, args, counts, ONE_BLOCK, err, NULL);
  expect(rc == -1 && strstr(err, "unmapped kernels only"), "mapped kernel not refused: %s", err);
  printf("  ok %-22s %s\n", "mapped refused", err);
  ir_kernel_free(k);
  k = ir_kernel_new("bad", 1);
  Builder bb = ir_builder(k);
  ir_barrier(&bb);
  Builder pb;
  ir_pfor(&bb, AXIS_BLOCK, ir_const_i32(&bb, 1), "i", &pb);
  ir_barrier(&pb);
  rc = interp_run(k, NULL, NULL, ONE_BLOCK, NULL, err, sizeof err);
  expect(rc == -1 && strstr(err, "fails verification: barrier: barrier inside a parallel region"), "invalid kernel: %s", err);
  printf("  ok %-22s %s\n", "invalid refused", err);
  ir_kernel_free(k);
}

/* ---- performance: ~10^7 executed ops ---- */

static void test_speed(void) {
  enum { ROWS = 1024, M = 1000 };
  Kernel *k = ir_kernel_new("dots", 4);
  Buf *x = ir_param_buf(k, "x", TY_F32, ROLE_IN);
  Buf *o = ir_param_buf(k, "o", TY_F32, ROLE_OUT);
  Builder bb = ir_builder(k), pb, fb;
  Op *m = ir_const_i32(&bb, M);
  Op *i = ir_pfor(&bb, AXIS_BLOCK, ir_const_i32(&bb, ROWS), "i", &pb)->index;
  Op *acc = ir_var(&pb, ir_const_f32(&pb, 0), "acc");
  Op *j = ir_for(&pb, ir_const_i32(&pb, 0), m, 1, "j", &fb)->index;
  Op *xv = ir_load(&fb, x, j);
  ir_set(&fb, acc, ir_fma(&fb, xv, ir_cast(&fb, TY_F32, i), ir_get(&fb, acc)));
  ir_store(&pb, o, i, ir_get(&pb, acc));
  static float xs[M], out[ROWS];
  for (int t = 0; t < M; t++)
    xs[t] = 1.0f / (float)(t + 1);
  float *px = xs, *po = out;
  void *args[] = {&px, &po};
  int64_t counts[] = {M, ROWS};
  clock_t t0 = clock();
  expect_ok("speed", k, args, counts, ONE_BLOCK);
  double s = (double)(clock() - t0) / CLOCKS_PER_SEC;
  printf("  speed: %d x %d loop iterations (~%.1fM ops) in %.2f s\n", ROWS, M,
         ROWS * (double)M * 6 / 1e6, s);
  ir_kernel_free(k);
}

int main(void) {
  test_vadd();
  test_softmax();
  test_block_reduce();
  test_serial_reduce();
  test_shared_stage();
  test_scalar_semantics();
  test_lane_rounding();
  test_oob_global();
  test_shared_errors();
  test_warp_races();
  test_block_level_read();
  test_block_reduce_sync();
  test_cross_block();
  test_arith_errors();
  test_atomic_hist();
  test_atomic_races();
  test_local();
  test_refusals();
  test_speed();
  printf("%d passed, %d failed\n", passed, failed);
  return failed != 0;
}
