/* interp_results.c: the interpreter's results against plain C and the GPU's orders.
 *
 * Kernels built with the IR builder (vector add, softmax, block and serial
 * reductions, a shared-memory stage, scalar semantics) run in the interpreter and
 * are compared with C; lane and block reductions bit for bit against hand-written
 * butterflies with warps combined in order. Apart from the error tests because
 * these kernels are correct and must give exactly the GPU's numbers. */
#include "interp.h"
#include "interp_test.h"
#include "passes.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

Kernel *vadd_kernel(int warps) {
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

void test_vadd(void) {
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

void test_softmax(void) {
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

void test_block_reduce(void) {
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
void test_serial_reduce(void) {
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

void test_shared_stage(void) {
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
 * NaN-ignoring min, fused fma, bool -> int = 1, ctz defined at 0 (the width). */
void test_scalar_semantics(void) {
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
      ir_un(&p, OP_CTZ, ir_const_i32(&p, 0)),
      ir_un(&p, OP_CTZ, ir_const_i32(&p, 1)),
      ir_un(&p, OP_CTZ, ir_const_i32(&p, INT32_MIN)),
      ir_un(&p, OP_CTZ, ir_const_i32(&p, 0x50)),
      ir_cast(&p, TY_I32, ir_un(&p, OP_CTZ, ir_const_i64(&p, 0))),
      ir_cast(&p, TY_I32, ir_un(&p, OP_CTZ, ir_const_i64(&p, INT64_C(1) << 40))),
  };
  enum { NV = sizeof v / sizeof v[0] };
  for (int j = 0; j < NV; j++)
    ir_store(&p, o, ir_const_i32(&p, j), v[j]);
  static const int32_t want[NV] = {INT32_MIN, 15, 0, 0, -2, 0x3f800000, -1, 1, 3, 0, 5, 1, 1,
                                   32, 0, 31, 4, 64, 40};
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

void test_lane_rounding(void) {
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

