/* test_lower.c: the lowering, emission and JIT, end to end.
 *
 * Small kernels are built with the IR builder, taken through
 *   verify -> simplify -> map -> simplify -> verify
 * and then (1) JIT-compiled for the host and run against plain C results (outputs
 * poisoned first), and (2) lowered for sm_90 and sm_80, emitted as PTX and checked
 * with `ptxas -v` (no spills), when ptxas is installed. Also: the host exp/log
 * accuracy over dense sweeps, vectorisation of a `vectorize` reduction, error
 * messages, and rt_write_atomic. Prints "N passed, M failed". */
#define _POSIX_C_SOURCE 200809L   /* clock_gettime, popen, mkdtemp */

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "emit.h"
#include "fsutil.h"
#include "ptxas_util.h"
#include "ir.h"
#include "jit.h"
#include "lower.h"
#include "passes.h"

static int passed, failed;

static void check(int ok, const char *fmt, ...) {
  if (ok) {
    passed++;
    return;
  }
  failed++;
  va_list ap;
  va_start(ap, fmt);
  fputs("FAIL: ", stdout);
  vprintf(fmt, ap);
  va_end(ap);
  fputc('\n', stdout);
}

static double rnd(uint64_t *s) {   /* xorshift64*, uniform in [0, 1) */
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return (double)((*s * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static bool close_to(double got, double want, double rel) {
  if (isnan(want))
    return isnan(got);
  if (isinf(want))
    return got == want;
  return fabs(got - want) <= rel * fmax(fabs(want), 1e-30);
}

static void *xmalloc(size_t n) {
  void *p = malloc(n);
  if (!p)
    abort();
  return p;
}

static float *poisoned_f32(int n) {
  float *p = xmalloc((size_t)n * sizeof *p);
  for (int i = 0; i < n; i++)
    p[i] = NAN;
  return p;
}

/* ---- kernels ---- */

/* c[i] = a[i] + b[i], 256 elements per block */
static Kernel *k_vadd(void) {
  Kernel *k = ir_kernel_new("vadd", 4);
  Buf *a = ir_param_buf(k, "a", TY_F32, ROLE_IN), *b = ir_param_buf(k, "b", TY_F32, ROLE_IN);
  Buf *c = ir_param_buf(k, "c", TY_F32, ROLE_OUT);
  Op *n = ir_param_scalar(k, "n", TY_I32);
  ir_set_grid(k, 0, 3, -1, 256);
  Builder B = ir_builder(k), body, then;
  Op *base = ir_bin(&B, OP_MUL, ir_block_id(&B, 0), ir_const_i32(&B, 256));
  Op *j = ir_pfor(&B, AXIS_BLOCK, ir_const_i32(&B, 256), "j", &body)->index;
  Op *i = ir_bin(&body, OP_ADD, base, j);
  ir_if(&body, ir_cmp(&body, CMP_LT, i, n), &then, NULL);
  ir_store(&then, c, i, ir_bin(&then, OP_ADD, ir_load(&then, a, i), ir_load(&then, b, i)));
  return k;
}

/* out[r] = sum_j x[r*cols + j]: one warp per row, a lane reduction */
static Kernel *k_rowsum(void) {
  Kernel *k = ir_kernel_new("rowsum", 4);
  Buf *x = ir_param_buf(k, "x", TY_F32, ROLE_IN), *out = ir_param_buf(k, "out", TY_F32, ROLE_OUT);
  Op *rows = ir_param_scalar(k, "rows", TY_I32), *cols = ir_param_scalar(k, "cols", TY_I32);
  ir_set_grid(k, 0, 2, -1, 4);
  Builder B = ir_builder(k), wb, then, rb, lb;
  Op *base = ir_bin(&B, OP_MUL, ir_block_id(&B, 0), ir_const_i32(&B, 4));
  Op *w = ir_pfor(&B, AXIS_WARP, ir_const_i32(&B, 4), "w", &wb)->index;
  Op *r = ir_bin(&wb, OP_ADD, base, w);
  ir_if(&wb, ir_cmp(&wb, CMP_LT, r, rows), &then, NULL);
  Op *row = ir_bin(&then, OP_MUL, r, cols);
  Op *red = ir_reduce(&then, AXIS_LANE, RED_ADD, TY_F32, cols, "j", &rb);
  ir_yield(&rb, ir_load(&rb, x, ir_bin(&rb, OP_ADD, row, red->index)));
  ir_pfor(&then, AXIS_LANE, ir_const_i32(&then, 1), "l", &lb);
  ir_store(&lb, out, r, red);
  return k;
}

/* per row: min of an f64 row and max of an i64 row (64-bit warp shuffles) */
static Kernel *k_lane64(void) {
  Kernel *k = ir_kernel_new("lane64", 2);
  Buf *xd = ir_param_buf(k, "xd", TY_F64, ROLE_IN), *xi = ir_param_buf(k, "xi", TY_I64, ROLE_IN);
  Buf *mn = ir_param_buf(k, "mn", TY_F64, ROLE_OUT), *mx = ir_param_buf(k, "mx", TY_I64, ROLE_OUT);
  Op *rows = ir_param_scalar(k, "rows", TY_I32), *cols = ir_param_scalar(k, "cols", TY_I32);
  ir_set_grid(k, 0, 4, -1, 2);
  Builder B = ir_builder(k), wb, then, rb1, rb2, lb;
  Op *base = ir_bin(&B, OP_MUL, ir_block_id(&B, 0), ir_const_i32(&B, 2));
  Op *w = ir_pfor(&B, AXIS_WARP, ir_const_i32(&B, 2), "w", &wb)->index;
  Op *r = ir_bin(&wb, OP_ADD, base, w);
  ir_if(&wb, ir_cmp(&wb, CMP_LT, r, rows), &then, NULL);
  Op *row = ir_bin(&then, OP_MUL, r, cols);
  Op *m1 = ir_reduce(&then, AXIS_LANE, RED_MIN, TY_F64, cols, "j", &rb1);
  ir_yield(&rb1, ir_load(&rb1, xd, ir_bin(&rb1, OP_ADD, row, m1->index)));
  Op *m2 = ir_reduce(&then, AXIS_LANE, RED_MAX, TY_I64, cols, "j", &rb2);
  ir_yield(&rb2, ir_load(&rb2, xi, ir_bin(&rb2, OP_ADD, row, m2->index)));
  ir_pfor(&then, AXIS_LANE, ir_const_i32(&then, 1), "l", &lb);
  ir_store(&lb, mn, r, m1);
  ir_store(&lb, mx, r, m2);
  return k;
}

/* out[b] = max of segment b of x: a block reduction */
static Kernel *k_blockmax(void) {
  Kernel *k = ir_kernel_new("blockmax", 4);
  Buf *x = ir_param_buf(k, "x", TY_F32, ROLE_IN), *out = ir_param_buf(k, "out", TY_F32, ROLE_OUT);
  Op *seg = ir_param_scalar(k, "seg", TY_I32);
  ir_param_scalar(k, "nseg", TY_I32);
  ir_set_grid(k, 0, 3, -1, 1);
  Builder B = ir_builder(k), rb, pb;
  Op *bid = ir_block_id(&B, 0);
  Op *base = ir_bin(&B, OP_MUL, bid, seg);
  Op *m = ir_reduce(&B, AXIS_BLOCK, RED_MAX, TY_F32, seg, "i", &rb);
  ir_yield(&rb, ir_load(&rb, x, ir_bin(&rb, OP_ADD, base, m->index)));
  ir_pfor(&B, AXIS_BLOCK, ir_const_i32(&B, 1), "t", &pb);
  ir_store(&pb, out, bid, m);
  return k;
}

/* out[0] = sum x[i]*y[i]: a serial reduction the CPU should vectorise */
static Kernel *k_dot(void) {
  Kernel *k = ir_kernel_new("dot", 1);
  Buf *x = ir_param_buf(k, "x", TY_F32, ROLE_IN), *y = ir_param_buf(k, "y", TY_F32, ROLE_IN);
  Buf *out = ir_param_buf(k, "out", TY_F32, ROLE_OUT);
  Op *n = ir_param_scalar(k, "n", TY_I32);
  Builder B = ir_builder(k), pb, rb;
  ir_pfor(&B, AXIS_BLOCK, ir_const_i32(&B, 1), "t", &pb);
  Op *d = ir_reduce(&pb, AXIS_SERIAL, RED_ADD, TY_F32, n, "i", &rb);
  ir_yield(&rb, ir_bin(&rb, OP_MUL, ir_load(&rb, x, d->index), ir_load(&rb, y, d->index)));
  ir_store(&pb, out, ir_const_i32(&pb, 0), d);
  return k;
}

/* y[i] = exp(x[i]), 1024 elements per block */
static Kernel *k_exp(void) {
  Kernel *k = ir_kernel_new("expk", 8);
  Buf *x = ir_param_buf(k, "x", TY_F32, ROLE_IN), *y = ir_param_buf(k, "y", TY_F32, ROLE_OUT);
  Op *n = ir_param_scalar(k, "n", TY_I32);
  ir_set_grid(k, 0, 2, -1, 1024);
  Builder B = ir_builder(k), body, then;
  Op *base = ir_bin(&B, OP_MUL, ir_block_id(&B, 0), ir_const_i32(&B, 1024));
  Op *j = ir_pfor(&B, AXIS_BLOCK, ir_const_i32(&B, 1024), "j", &body)->index;
  Op *i = ir_bin(&body, OP_ADD, base, j);
  ir_if(&body, ir_cmp(&body, CMP_LT, i, n), &then, NULL);
  ir_store(&then, y, i, ir_un(&then, OP_EXP, ir_load(&then, x, i)));
  return k;
}

/* y = log(x), z = sqrt(|x|) * -x + fma(x, x, 1), over one block's loop */
static Kernel *k_math(void) {
  Kernel *k = ir_kernel_new("mathk", 4);
  Buf *x = ir_param_buf(k, "x", TY_F32, ROLE_IN), *y = ir_param_buf(k, "y", TY_F32, ROLE_OUT);
  Buf *z = ir_param_buf(k, "z", TY_F32, ROLE_OUT);
  Op *n = ir_param_scalar(k, "n", TY_I32);
  Builder B = ir_builder(k), body;
  Op *i = ir_pfor(&B, AXIS_BLOCK, n, "i", &body)->index;
  Op *v = ir_load(&body, x, i);
  ir_store(&body, y, i, ir_un(&body, OP_LOG, v));
  Op *s = ir_bin(&body, OP_MUL, ir_un(&body, OP_SQRT, ir_un(&body, OP_ABS, v)), ir_un(&body, OP_NEG, v));
  ir_store(&body, z, i, ir_bin(&body, OP_ADD, s, ir_fma(&body, v, v, ir_const_f32(&body, 1))));
  return k;
}

/* bit tricks of radix select: order-preserving keys, unsigned compares, shifts */
static Kernel *k_bits(void) {
  Kernel *k = ir_kernel_new("bits", 2);
  Buf *x = ir_param_buf(k, "x", TY_F32, ROLE_IN), *y = ir_param_buf(k, "y", TY_I32, ROLE_OUT);
  Buf *z = ir_param_buf(k, "z", TY_F32, ROLE_OUT), *w = ir_param_buf(k, "w", TY_I64, ROLE_OUT);
  Op *n = ir_param_scalar(k, "n", TY_I32);
  Builder B = ir_builder(k), b;
  Op *i = ir_pfor(&B, AXIS_BLOCK, n, "i", &b)->index;
  Op *v = ir_load(&b, x, i);
  Op *u = ir_bitcast(&b, TY_I32, v);
  Op *pos = ir_cmp(&b, CMP_ULT, u, ir_const_i32(&b, (int32_t)0x80000000u));
  Op *key = ir_select(&b, pos, ir_bin(&b, OP_OR, u, ir_const_i32(&b, (int32_t)0x80000000u)),
                      ir_bin(&b, OP_XOR, u, ir_const_i32(&b, -1)));
  Op *hi = ir_cmp(&b, CMP_UGE, key, ir_const_i32(&b, (int32_t)0xC0000000u));
  Op *lo = ir_bin(&b, OP_AND, ir_bin(&b, OP_SHL, key, ir_const_i32(&b, 2)),
                  ir_const_i32(&b, 0x0fffffff));
  ir_store(&b, y, i, ir_select(&b, hi, ir_bin(&b, OP_SHR, key, ir_const_i32(&b, 4)), lo));
  ir_store(&b, z, i, ir_bitcast(&b, TY_F32, ir_bin(&b, OP_AND, u, ir_const_i32(&b, 0x7fffffff))));
  Op *d = ir_bitcast(&b, TY_I64, ir_cast(&b, TY_F64, v));
  ir_store(&b, w, i, ir_bin(&b, OP_XOR, ir_bin(&b, OP_SHR, d, ir_const_i64(&b, 7)), d));
  return k;
}

/* 32x32 tiles through shared memory with a barrier between the phases */
static Kernel *k_transpose(void) {
  Kernel *k = ir_kernel_new("transpose", 8);
  Buf *in = ir_param_buf(k, "in", TY_F32, ROLE_IN), *out = ir_param_buf(k, "out", TY_F32, ROLE_OUT);
  Op *n = ir_param_scalar(k, "n", TY_I32);
  Buf *tile = ir_shared(k, "tile", TY_F32, 32 * 33);
  ir_set_grid(k, 0, 2, -1, 32);
  ir_set_grid(k, 1, 2, -1, 32);
  Builder B = ir_builder(k), p1, p2, t1, t2;
  Op *bx = ir_bin(&B, OP_MUL, ir_block_id(&B, 0), ir_const_i32(&B, 32));
  Op *by = ir_bin(&B, OP_MUL, ir_block_id(&B, 1), ir_const_i32(&B, 32));
  Op *t = ir_pfor(&B, AXIS_BLOCK, ir_const_i32(&B, 1024), "t", &p1)->index;
  Op *r = ir_bin(&p1, OP_SHR, t, ir_const_i32(&p1, 5)), *c = ir_bin(&p1, OP_AND, t, ir_const_i32(&p1, 31));
  Op *gr = ir_bin(&p1, OP_ADD, by, r), *gc = ir_bin(&p1, OP_ADD, bx, c);
  ir_if(&p1, ir_bin(&p1, OP_AND, ir_cmp(&p1, CMP_LT, gr, n), ir_cmp(&p1, CMP_LT, gc, n)), &t1, NULL);
  ir_store(&t1, tile, ir_bin(&t1, OP_ADD, ir_bin(&t1, OP_MUL, r, ir_const_i32(&t1, 33)), c),
           ir_load(&t1, in, ir_bin(&t1, OP_ADD, ir_bin(&t1, OP_MUL, gr, n), gc)));
  ir_barrier(&B);
  t = ir_pfor(&B, AXIS_BLOCK, ir_const_i32(&B, 1024), "t", &p2)->index;
  r = ir_bin(&p2, OP_SHR, t, ir_const_i32(&p2, 5));
  c = ir_bin(&p2, OP_AND, t, ir_const_i32(&p2, 31));
  Op *orow = ir_bin(&p2, OP_ADD, bx, r), *ocol = ir_bin(&p2, OP_ADD, by, c);
  ir_if(&p2, ir_bin(&p2, OP_AND, ir_cmp(&p2, CMP_LT, orow, n), ir_cmp(&p2, CMP_LT, ocol, n)), &t2, NULL);
  ir_store(&t2, out, ir_bin(&t2, OP_ADD, ir_bin(&t2, OP_MUL, orow, n), ocol),
           ir_load(&t2, tile, ir_bin(&t2, OP_ADD, ir_bin(&t2, OP_MUL, c, ir_const_i32(&t2, 33)), r)));
  return k;
}

/* if/else over a var, select, int/float min/max, every cast, div/rem, a local array */
static Kernel *k_misc(void) {
  Kernel *k = ir_kernel_new("misc", 1);
  Buf *x = ir_param_buf(k, "x", TY_F32, ROLE_IN), *yi = ir_param_buf(k, "yi", TY_I32, ROLE_IN);
  Buf *of = ir_param_buf(k, "of", TY_F64, ROLE_OUT), *oi = ir_param_buf(k, "oi", TY_I64, ROLE_OUT);
  Buf *oj = ir_param_buf(k, "oj", TY_I32, ROLE_OUT), *og = ir_param_buf(k, "og", TY_F32, ROLE_OUT);
  Op *n = ir_param_scalar(k, "n", TY_I32);
  Op *scale = ir_param_scalar(k, "scale", TY_F64);
  Buf *lc = ir_local(k, "lc", TY_F32, 4);
  Builder B = ir_builder(k), b, then, els, fb;
  Op *i = ir_pfor(&B, AXIS_BLOCK, n, "i", &b)->index;
  Op *v = ir_load(&b, x, i), *kk = ir_load(&b, yi, i);
  Op *q = ir_cast(&b, TY_I32, ir_bin(&b, OP_MUL, v, ir_const_f32(&b, 10)));
  Op *m = ir_bin(&b, OP_MAX, ir_bin(&b, OP_MIN, q, ir_const_i32(&b, 5)), ir_const_i32(&b, -5));
  Op *acc = ir_var(&b, ir_const_f64(&b, 0), "acc");
  ir_if(&b, ir_cmp(&b, CMP_GT, v, ir_const_f32(&b, 0)), &then, &els);
  ir_set(&then, acc, ir_un(&then, OP_SQRT, ir_cast(&then, TY_F64, v)));
  ir_set(&els, acc, ir_bin(&els, OP_MUL, ir_cast(&els, TY_F64, ir_un(&els, OP_NEG, v)), scale));
  Op *j = ir_for(&b, ir_const_i32(&b, 0), ir_const_i32(&b, 4), 1, "j", &fb)->index;
  ir_store(&fb, lc, j, ir_bin(&fb, OP_MUL, v, ir_cast(&fb, TY_F32, j)));
  Op *lsum = ir_bin(&b, OP_ADD, ir_load(&b, lc, ir_const_i32(&b, 3)), ir_load(&b, lc, ir_const_i32(&b, 1)));
  Op *fm = ir_bin(&b, OP_MAX, ir_bin(&b, OP_MIN, v, ir_const_f32(&b, 1.5)), ir_const_f32(&b, -1.5));
  Op *f = ir_bin(&b, OP_ADD, ir_get(&b, acc), ir_cast(&b, TY_F64, m));
  f = ir_bin(&b, OP_ADD, f, ir_cast(&b, TY_F64, ir_bin(&b, OP_ADD, fm, lsum)));
  ir_store(&b, of, i, f);
  Op *big = ir_bin(&b, OP_MUL, ir_cast(&b, TY_I64, kk), ir_const_i64(&b, 3000000000LL));
  ir_store(&b, oi, i, ir_bin(&b, OP_ADD, big, ir_cast(&b, TY_I64, m)));
  Op *d = ir_bin(&b, OP_DIV, kk, ir_const_i32(&b, 7)), *r = ir_bin(&b, OP_REM, kk, ir_const_i32(&b, 7));
  Op *sh = ir_bin(&b, OP_SHL, ir_bin(&b, OP_AND, kk, ir_const_i32(&b, 255)), ir_const_i32(&b, 3));
  Op *neg = ir_cast(&b, TY_I32, ir_cmp(&b, CMP_LT, v, ir_const_f32(&b, 0)));
  Op *t = ir_bin(&b, OP_ADD, d, ir_bin(&b, OP_MUL, r, ir_const_i32(&b, 100)));
  t = ir_bin(&b, OP_ADD, t, ir_cast(&b, TY_I32, ir_cast(&b, TY_I64, sh)));
  ir_store(&b, oj, i, ir_bin(&b, OP_ADD, t, ir_bin(&b, OP_MUL, neg, ir_const_i32(&b, 1000000))));
  Op *g = ir_cast(&b, TY_F32, ir_bin(&b, OP_DIV, ir_cast(&b, TY_F64, v), scale));
  ir_store(&b, og, i, ir_bin(&b, OP_ADD, g, ir_bin(&b, OP_REM, v, ir_const_f32(&b, 0.75))));
  return k;
}

/* out[linear block] = bx + 100 by + 10000 bz over a 3-d grid */
static Kernel *k_grid3(void) {
  Kernel *k = ir_kernel_new("grid3", 1);
  Buf *out = ir_param_buf(k, "out", TY_I32, ROLE_OUT);
  Op *gx = ir_param_scalar(k, "gx", TY_I32), *gy = ir_param_scalar(k, "gy", TY_I32);
  ir_param_scalar(k, "gz", TY_I32);
  for (int d = 0; d < 3; d++)
    ir_set_grid(k, d, 1 + d, -1, 1);
  Builder B = ir_builder(k), pb;
  Op *bx = ir_block_id(&B, 0), *by = ir_block_id(&B, 1), *bz = ir_block_id(&B, 2);
  ir_pfor(&B, AXIS_BLOCK, ir_const_i32(&B, 1), "t", &pb);
  Op *idx = ir_bin(&pb, OP_ADD, ir_bin(&pb, OP_MUL, ir_bin(&pb, OP_ADD, ir_bin(&pb, OP_MUL, bz, gy), by), gx), bx);
  Op *v = ir_bin(&pb, OP_ADD, bx, ir_bin(&pb, OP_MUL, by, ir_const_i32(&pb, 100)));
  ir_store(&pb, out, idx, ir_bin(&pb, OP_ADD, v, ir_bin(&pb, OP_MUL, bz, ir_const_i32(&pb, 10000))));
  return k;
}

/* compare semantics shared with the interpreter: float != is ordered, bools are
 * signed i1 (true < false), -bool is the identity */
static Kernel *k_cmps(void) {
  Kernel *k = ir_kernel_new("cmps", 1);
  Buf *x = ir_param_buf(k, "x", TY_F32, ROLE_IN), *y = ir_param_buf(k, "y", TY_I32, ROLE_OUT);
  Op *n = ir_param_scalar(k, "n", TY_I32);
  Builder B = ir_builder(k), b;
  Op *i = ir_pfor(&B, AXIS_BLOCK, n, "i", &b)->index;
  Op *v = ir_load(&b, x, i);
  Op *ne = ir_cmp(&b, CMP_NE, v, ir_const_f32(&b, 0.5));
  Op *self = ir_cmp(&b, CMP_EQ, v, v);
  Op *pos = ir_cmp(&b, CMP_GT, v, ir_const_f32(&b, 0)), *lt1 = ir_cmp(&b, CMP_LT, v, ir_const_f32(&b, 1));
  Op *blt = ir_cmp(&b, CMP_LT, pos, ir_un(&b, OP_NEG, lt1));
  Op *r = ir_cast(&b, TY_I32, ne);
  r = ir_bin(&b, OP_OR, r, ir_bin(&b, OP_SHL, ir_cast(&b, TY_I32, self), ir_const_i32(&b, 1)));
  r = ir_bin(&b, OP_OR, r, ir_bin(&b, OP_SHL, ir_cast(&b, TY_I32, blt), ir_const_i32(&b, 2)));
  ir_store(&b, y, i, r);
  return k;
}

/* Atomics: a shared histogram of x[i] & 255 per block (512 elements), added bin by
 * bin into h; ws[bin] += w[i] (f32, global); ticket[i] = old value of ctr[0]. */
static Kernel *k_hist(void) {
  Kernel *k = ir_kernel_new("hist", 4);
  Buf *x = ir_param_buf(k, "x", TY_I32, ROLE_IN), *w = ir_param_buf(k, "w", TY_F32, ROLE_IN);
  Buf *h = ir_param_buf(k, "h", TY_I32, ROLE_INOUT);
  Buf *ws = ir_param_buf(k, "ws", TY_F32, ROLE_INOUT);
  Buf *ctr = ir_param_buf(k, "ctr", TY_I32, ROLE_INOUT);
  Buf *ticket = ir_param_buf(k, "ticket", TY_I32, ROLE_OUT);
  Op *n = ir_param_scalar(k, "n", TY_I32);
  Buf *sh = ir_shared(k, "sh", TY_I32, 256);
  ir_set_grid(k, 0, 6, -1, 512);
  Builder B = ir_builder(k), zb, pb, then, fb, nz;
  Op *bin = ir_pfor(&B, AXIS_BLOCK, ir_const_i32(&B, 256), "bin", &zb)->index;
  ir_store(&zb, sh, bin, ir_const_i32(&zb, 0));
  ir_barrier(&B);
  Op *base = ir_bin(&B, OP_MUL, ir_block_id(&B, 0), ir_const_i32(&B, 512));
  Op *j = ir_pfor(&B, AXIS_BLOCK, ir_const_i32(&B, 512), "j", &pb)->index;
  Op *i = ir_bin(&pb, OP_ADD, base, j);
  ir_if(&pb, ir_cmp(&pb, CMP_LT, i, n), &then, NULL);
  Op *b = ir_bin(&then, OP_AND, ir_load(&then, x, i), ir_const_i32(&then, 255));
  ir_atomic_add(&then, sh, b, ir_const_i32(&then, 1));
  ir_atomic_add(&then, ws, b, ir_load(&then, w, i));
  Op *old = ir_atomic_add(&then, ctr, ir_const_i32(&then, 0), ir_const_i32(&then, 1));
  ir_store(&then, ticket, i, old);
  ir_barrier(&B);
  bin = ir_pfor(&B, AXIS_BLOCK, ir_const_i32(&B, 256), "bin", &fb)->index;
  Op *c = ir_load(&fb, sh, bin);
  ir_if(&fb, ir_cmp(&fb, CMP_NE, c, ir_const_i32(&fb, 0)), &nz, NULL);
  ir_atomic_add(&nz, h, bin, c);
  return k;
}

/* ---- running a kernel on the host ---- */

/* Runs all blocks, in two calls (as a thread pool would split them). */
static void launch(CpuKernelFn fn, Kernel *k, void **args) {
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
  for (int i = 0; i < n; i++)
    x[i] = (float)((rnd(&s) - 0.5) * 1e4), y[i] = 0x5a5a5a5a, w[i] = 0;
  x[0] = -0.0f, x[1] = INFINITY, x[2] = -INFINITY;
  void *args[] = {&x, &y, &z, &w, &n};
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
  }
  free(x), free(y), free(z), free(w);
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
static void test_atomic_threads(CpuKernelFn fn, Kernel *k) {
  int bad = 0;
  for (int rep = 0; rep < 20; rep++)
    bad += hist_on_threads(fn, k, 1 << 18, 2);
  check(bad == 0, "host hist on two threads: %d wrong outputs", bad);
}

typedef struct {
  const char *name;
  Kernel *(*build)(void);
  int (*run)(CpuKernelFn, Kernel *);
} Case;

static const Case cases[] = {
    {"vadd", k_vadd, run_vadd},         {"rowsum", k_rowsum, run_rowsum},
    {"lane64", k_lane64, run_lane64},   {"blockmax", k_blockmax, run_blockmax},
    {"dot", k_dot, run_dot},            {"expk", k_exp, run_exp},
    {"mathk", k_math, run_math},        {"bits", k_bits, run_bits},
    {"transpose", k_transpose, run_transpose}, {"misc", k_misc, run_misc},
    {"grid3", k_grid3, run_grid3},       {"cmps", k_cmps, run_cmps},
    {"hist", k_hist, run_hist},
};
enum { NCASES = sizeof cases / sizeof cases[0] };

/* verify -> simplify -> map -> simplify -> verify, as the driver runs them */
static int prepare(Kernel *k, MapTarget t, char *err, size_t cap) {
  if (ir_verify(k, err, cap) || ir_simplify(k, err, cap) || ir_map(k, t, err, cap) ||
      ir_simplify(k, err, cap) || ir_verify(k, err, cap))
    return -1;
  return 0;
}

static int build_module(Module *m, MapTarget t) {
  char err[512];
  m->n = 0;
  for (int i = 0; i < NCASES; i++) {
    Kernel *k = cases[i].build();
    m->kernels[m->n++] = k;
    if (prepare(k, t, err, sizeof err)) {
      check(0, "%s: %s", cases[i].name, err);
      return -1;
    }
  }
  return 0;
}

/* ---- host ---- */

static void test_exp_sweep(CpuKernelFn fn, Kernel *k) {
  /* every 3rd float in [-87, 88]: about 700M would be slow; stride 61 gives ~36M */
  enum { CHUNK = 1 << 20 };
  float *x = xmalloc(CHUNK * sizeof(float)), *y = xmalloc(CHUNK * sizeof(float));
  double worst = 0, worst_libm = 0;
  float at = 0;
  long count = 0;
  uint32_t lo, hi;
  float flo = -87.0f, fhi = 88.0f;
  memcpy(&lo, &flo, 4);
  memcpy(&hi, &fhi, 4);
  /* negative floats: bit patterns 0x80000000..lo; positive: 0..hi */
  uint64_t spans[2][2] = {{0x80000000u, lo}, {0, hi}};
  for (int sp = 0; sp < 2; sp++)
    for (uint64_t u = spans[sp][0]; u <= spans[sp][1];) {
      int n = 0;
      for (; n < CHUNK && u <= spans[sp][1]; u += 61, n++) {
        uint32_t b = (uint32_t)u;
        memcpy(&x[n], &b, 4);
      }
      void *args[] = {&x, &y, &n};
      launch(fn, k, args);
      for (int i = 0; i < n; i++) {
        double want = exp((double)x[i]);
        double e = fabs(y[i] - want) / want, el = fabs(expf(x[i]) - want) / want;
        if (e > worst)
          worst = e, at = x[i];
        worst_libm = el > worst_libm ? el : worst_libm;
      }
      count += n;
    }
  printf("host exp f32: max rel error %.3g (at x = %.9g; libm expf %.3g) over %ld points in "
         "[-87, 88]\n", worst, at, worst_libm, count);
  check(worst <= 2e-7, "host exp max relative error %.3g > 2e-7", worst);
  free(x), free(y);
}

static void test_log_sweep(CpuKernelFn fn, Kernel *k) {
  enum { CHUNK = 1 << 20 };
  float *x = xmalloc(CHUNK * sizeof(float)), *y = xmalloc(CHUNK * sizeof(float));
  float *z = xmalloc(CHUNK * sizeof(float));
  double worst = 0;
  float at = 0;
  for (uint64_t u = 1; u < 0x7f800000u;) {   /* positive finite floats, subnormals too */
    int n = 0;
    for (; n < CHUNK && u < 0x7f800000u; u += 97, n++) {
      uint32_t b = (uint32_t)u;
      memcpy(&x[n], &b, 4);
    }
    void *args[] = {&x, &y, &z, &n};
    launch(fn, k, args);
    for (int i = 0; i < n; i++) {
      double want = log((double)x[i]);
      double e = want == 0 ? fabs(y[i]) : fabs(y[i] - want) / fabs(want);
      if (e > worst)
        worst = e, at = x[i];
    }
  }
  printf("log f32 (host and GPU expansion): max rel error %.3g (at x = %.9g)\n", worst, at);
  check(worst <= 3e-7, "log max relative error %.3g", worst);
  free(x), free(y), free(z);
}

/* The vectorize hint must make the dot reduction use vector registers. */
static void test_vectorized(Module *m) {
  char err[512];
  LLVMContextRef ctx = LLVMContextCreate();
  LLVMModuleRef mod = lower_module(ctx, m, TARGET_HOST, err, sizeof err);
  LLVMTargetMachineRef tm = emit_target_machine(TARGET_HOST, err, sizeof err);
  char *text = NULL;
  size_t len = 0;
  int ok = mod && tm && !emit_optimize(mod, tm, err, sizeof err) &&
           !emit_buffer(mod, tm, EMIT_ASM, &text, &len, err, sizeof err);
  check(ok, "host asm: %s", err);
  if (ok) {
    /* the body is inlined into the entry `dot`; look for ymm/zmm registers there */
    const char *f = strstr(text, "\ndot:");
    const char *end = f ? strstr(f, ".Lfunc_end") : NULL;
    int vec = 0;
    for (const char *p = f; end && (p = strstr(p + 1, "mm")) && p < end;)
      vec |= p[-2] == '%' && (p[-1] == 'y' || p[-1] == 'z');
    check(vec, "dot: the vectorize reduction was not vectorised");
    if (getenv("CRISP_TEST_ASM") && f && end)
      fwrite(f, 1, (size_t)(end - f), stdout);
  }
  free(text);
  if (tm)
    LLVMDisposeTargetMachine(tm);
  if (mod)
    LLVMDisposeModule(mod);
  LLVMContextDispose(ctx);
}

static void test_host(void) {
  char err[512];
  Module m = {0};
  if (build_module(&m, MAP_CPU)) {
    ir_module_free(&m);
    return;
  }
  double t0 = now();
  Jit *j = jit_compile(&m, err, sizeof err);
  double t1 = now();
  check(j != NULL, "jit_compile: %s", err);
  if (j) {
    printf("JIT: %d kernels lowered, optimised (O3) and compiled in %.1f ms\n", m.n,
           (t1 - t0) * 1e3);
    for (int i = 0; i < NCASES; i++) {
      CpuKernelFn fn = jit_lookup(j, cases[i].name);
      check(fn != NULL, "jit_lookup(%s)", cases[i].name);
      if (!fn)
        continue;
      int bad = cases[i].run(fn, m.kernels[i]);
      check(bad == 0, "host %s: %d wrong outputs", cases[i].name, bad);
    }
    check(jit_lookup(j, "no_such_kernel") == NULL, "lookup of a missing kernel");
    test_exp_sweep(jit_lookup(j, "expk"), m.kernels[5]);
    test_log_sweep(jit_lookup(j, "mathk"), m.kernels[6]);
    test_atomic_threads(jit_lookup(j, "hist"), m.kernels[NCASES - 1]);
    jit_free(j);
  }
  test_vectorized(&m);
  ir_module_free(&m);
}

/* One small kernel on its own, to time the JIT without the big ones. */
static void test_jit_time(void) {
  char err[512];
  Module m = {0};
  m.kernels[m.n++] = k_vadd();
  if (prepare(m.kernels[0], MAP_CPU, err, sizeof err)) {
    check(0, "vadd: %s", err);
    ir_module_free(&m);
    return;
  }
  double t0 = now();
  Jit *j = jit_compile(&m, err, sizeof err);
  double t1 = now();
  check(j && jit_lookup(j, "vadd"), "jit vadd: %s", err);
  printf("JIT: one small kernel (vadd) in %.1f ms\n", (t1 - t0) * 1e3);
  jit_free(j);
  ir_module_free(&m);
}

/* ---- GPU ---- */

/* ptxas -v: compiles, and reports no spills for any function. */
static void run_ptxas(const char *ptxas, Target t, const char *ptx, size_t len) {
  char err[512], path[64], cmd[1024];
  snprintf(path, sizeof path, "/tmp/crisp_test_%d_%s.ptx", (int)getpid(), target_name(t));
  if (rt_write_atomic(path, ptx, len, err, sizeof err)) {
    check(0, "%s", err);
    return;
  }
  const char *arch = t == TARGET_SM90 ? "sm_90" : "sm_80";
  snprintf(cmd, sizeof cmd, "%s -v -arch=%s %s -o /dev/null 2>&1", ptxas, arch, path);
  FILE *p = popen(cmd, "r");
  char *out = xmalloc(1 << 16);
  size_t n = p ? fread(out, 1, (1 << 16) - 1, p) : 0;
  out[n] = 0;
  int rc = p ? pclose(p) : -1;
  int spills = count(out, "spill stores"), zero = count(out, " 0 bytes spill stores");
  check(rc == 0, "ptxas -arch=%s failed:\n%s", arch, out);
  check(spills == NCASES && zero == spills, "ptxas -arch=%s: %d functions, %d spill-free:\n%s",
        arch, spills, zero, out);
  if (getenv("CRISP_TEST_VERBOSE"))
    fputs(out, stdout);
  printf("ptxas -arch=%s: %d kernels, %d without spills\n", arch, spills, zero);
  unlink(path);
  free(out);
}

static void test_gpu_target(Target t, const char *ptxas) {
  char err[512];
  Module m = {0};
  if (build_module(&m, MAP_GPU)) {
    ir_module_free(&m);
    return;
  }
  LLVMContextRef ctx = LLVMContextCreate();
  LLVMModuleRef mod = lower_module(ctx, &m, t, err, sizeof err);
  check(mod != NULL, "lower %s: %s", target_name(t), err);
  LLVMTargetMachineRef tm = mod ? emit_target_machine(t, err, sizeof err) : NULL;
  char *ll = NULL, *ptx = NULL;
  size_t lll = 0, ptxl = 0;
  if (tm && !emit_buffer(mod, NULL, EMIT_LLVM, &ll, &lll, err, sizeof err)) {
    check(strstr(ll, "!\"kernel\", i32 1") && strstr(ll, "!\"maxntidx\", i32 128") &&
              strstr(ll, "addrspace(3) global [1056 x float]") && strstr(ll, "llvm.loop"),
          "%s: LLVM module lacks kernel annotations / shared array / loop hints", target_name(t));
  }
  int ok = tm && !emit_optimize(mod, tm, err, sizeof err) &&
           !emit_buffer(mod, tm, EMIT_ASM, &ptx, &ptxl, err, sizeof err);
  check(ok, "emit PTX for %s: %s", target_name(t), err);
  if (ok) {
    check(count(ptx, ".entry ") == NCASES, "PTX has %d entries", count(ptx, ".entry "));
    check(strstr(ptx, "shfl.sync.bfly.b32") && strstr(ptx, "bar.sync") && strstr(ptx, "ex2.approx") &&
              strstr(ptx, ".shared") && strstr(ptx, "%ctaid.z") && strstr(ptx, ".maxntid 128"),
          "PTX for %s lacks an expected instruction", target_name(t));
    check(strstr(ptx, "atom.global.add.u32") && strstr(ptx, ".shared.add.u32") &&
              strstr(ptx, ".global.add.f32"),
          "PTX for %s lacks the hist kernel's global/shared atomic adds", target_name(t));
    if (getenv("CRISP_TEST_PTX"))
      fputs(ptx, stdout);
    if (ptxas)
      run_ptxas(ptxas, t, ptx, ptxl);
  }
  free(ll);
  free(ptx);
  if (tm)
    LLVMDisposeTargetMachine(tm);
  if (mod)
    LLVMDisposeModule(mod);
  LLVMContextDispose(ctx);
  ir_module_free(&m);
}

static void test_gpu(void) {
  const char *ptxas = find_ptxas();
  if (!ptxas)
    printf("ptxas not found (/usr/local/cuda/bin or PATH): PTX is emitted but not assembled\n");
  test_gpu_target(TARGET_SM90, ptxas);
  test_gpu_target(TARGET_SM80, ptxas);
}

/* ---- errors ---- */

static void expect_lower_error(Kernel *k, MapTarget map, Target t, const char *want) {
  char err[512] = "";
  Module m = {.n = 1};
  m.kernels[0] = k;
  if (map != MAP_NONE && prepare(k, map, err, sizeof err)) {
    check(0, "%s", err);
    ir_module_free(&m);
    return;
  }
  LLVMContextRef ctx = LLVMContextCreate();
  LLVMModuleRef mod = lower_module(ctx, &m, t, err, sizeof err);
  check(!mod && strstr(err, want), "expected an error containing \"%s\", got \"%s\"", want, err);
  if (mod)
    LLVMDisposeModule(mod);
  LLVMContextDispose(ctx);
  ir_module_free(&m);
}

static Kernel *k_exp64(void) {
  Kernel *k = ir_kernel_new("exp64", 1);
  Buf *x = ir_param_buf(k, "x", TY_F64, ROLE_INOUT);
  Builder B = ir_builder(k), b;
  Op *i = ir_pfor(&B, AXIS_BLOCK, ir_const_i32(&B, 8), "i", &b)->index;
  ir_store(&b, x, i, ir_un(&b, OP_EXP, ir_load(&b, x, i)));
  return k;
}

static void test_errors(void) {
  expect_lower_error(k_exp64(), MAP_GPU, TARGET_SM90, "exp on f64 is not supported on NVPTX");
  expect_lower_error(k_vadd(), MAP_NONE, TARGET_HOST, "not mapped for host");
  expect_lower_error(k_vadd(), MAP_CPU, TARGET_SM80, "not mapped for sm_80");
  /* a GPU-mapped kernel forced onto the host path must be refused, not miscompiled */
  Kernel *k = k_rowsum();
  char err[512];
  if (prepare(k, MAP_GPU, err, sizeof err) == 0)
    k->target = MAP_CPU;
  expect_lower_error(k, MAP_NONE, TARGET_HOST, "thread_id in a kernel for the host");
  /* f64 exp on the host goes to libm and works */
  Module m = {.n = 1};
  m.kernels[0] = k_exp64();
  if (!prepare(m.kernels[0], MAP_CPU, err, sizeof err)) {
    Jit *j = jit_compile(&m, err, sizeof err);
    CpuKernelFn fn = j ? jit_lookup(j, "exp64") : NULL;
    check(fn != NULL, "exp64 on host: %s", err);
    if (fn) {
      double x[8] = {0, 1, -1, 2, 0.5, -700, 700, 3};
      double want[8];
      for (int i = 0; i < 8; i++)
        want[i] = exp(x[i]);
      double *px = x;
      void *args[] = {&px};
      int32_t grid[3] = {1, 1, 1};
      fn(args, grid, 0, 1);
      int bad = 0;
      for (int i = 0; i < 8; i++)
        bad += x[i] != want[i];
      check(!bad, "exp64 on host: %d wrong", bad);
    }
    jit_free(j);
  }
  ir_module_free(&m);
}

/* ---- emit helpers ---- */

static void test_write_atomic(void) {
  char err[512], dir[] = "/tmp/crisp_atomic_XXXXXX";
  check(mkdtemp(dir) != NULL, "mkdtemp");
  char path[128];
  snprintf(path, sizeof path, "%s/out.ptx", dir);
  check(!rt_write_atomic(path, "old", 3, err, sizeof err), "%s", err);
  check(!rt_write_atomic(path, "hello\n", 6, err, sizeof err), "%s", err);
  FILE *f = fopen(path, "rb");
  char buf[16] = "";
  size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
  if (f)
    fclose(f);
  check(n == 6 && !memcmp(buf, "hello\n", 6), "rt_write_atomic content");
  char bad[160];
  snprintf(bad, sizeof bad, "%s/missing/out.ptx", dir);
  check(rt_write_atomic(bad, "x", 1, err, sizeof err) == -1 && strstr(err, "missing"),
        "write into a missing directory must fail");
  unlink(path);
  check(rmdir(dir) == 0, "leftover files in %s", dir);   /* no temp file left behind */
  Target t;
  check(!target_parse("sm_90", &t) && t == TARGET_SM90 && !strcmp(target_name(t), "sm_90") &&
            !target_parse("host", &t) && t == TARGET_HOST && target_parse("sm_75", &t) == -1,
        "target names");
}

int main(void) {
  test_write_atomic();
  test_jit_time();
  test_host();
  test_gpu();
  test_errors();
  LLVMShutdown();
  printf("%d passed, %d failed\n", passed, failed);
  return failed != 0;
}
