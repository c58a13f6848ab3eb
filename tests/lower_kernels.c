/* lower_kernels.c: the small kernels test_lower takes through lowering.
 *
 * Each builder makes one unmapped kernel with the IR builder, small enough to
 * check by hand yet together covering what the lowering must handle: lane and
 * block reductions, 64-bit shuffles, shared memory and barriers, every cast,
 * 3-d grids, compares and atomics. Kept apart from the runs (lower_cases.c) so
 * that the IR each test feeds in can be read on its own. */
#include <stdint.h>

#include "lower_test.h"

/* c[i] = a[i] + b[i], 256 elements per block */
Kernel *k_vadd(void) {
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
Kernel *k_rowsum(void) {
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
Kernel *k_lane64(void) {
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
Kernel *k_blockmax(void) {
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
Kernel *k_dot(void) {
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
Kernel *k_exp(void) {
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
Kernel *k_math(void) {
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

/* bit tricks of radix select: order-preserving keys, unsigned compares, shifts; and
 * ctz (tile_for_bits' bit index) of the f32 and f64 bits */
Kernel *k_bits(void) {
  Kernel *k = ir_kernel_new("bits", 2);
  Buf *x = ir_param_buf(k, "x", TY_F32, ROLE_IN), *y = ir_param_buf(k, "y", TY_I32, ROLE_OUT);
  Buf *z = ir_param_buf(k, "z", TY_F32, ROLE_OUT), *w = ir_param_buf(k, "w", TY_I64, ROLE_OUT);
  Buf *c = ir_param_buf(k, "c", TY_I32, ROLE_OUT);
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
  Op *cd = ir_cast(&b, TY_I32, ir_un(&b, OP_CTZ, d));
  ir_store(&b, c, i, ir_bin(&b, OP_OR, ir_un(&b, OP_CTZ, u), ir_bin(&b, OP_SHL, cd, ir_const_i32(&b, 8))));
  return k;
}

/* 32x32 tiles through shared memory with a barrier between the phases */
Kernel *k_transpose(void) {
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
Kernel *k_misc(void) {
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
Kernel *k_grid3(void) {
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
Kernel *k_cmps(void) {
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
Kernel *k_hist(void) {
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

/* transpose16 as the tile schedule packs K^T: tiles of 16 keys x 16 d, the last
 * ones partial or empty (rows <= 0), mixed i32/i64 operands, and a prefetch:
 * dst[d*TILE16_LD + j] = j < nk ? src[j*ss + d] : 0, d < TILE16_D, j < TILE16_LD */
Kernel *k_tile16(void) {
  Kernel *k = ir_kernel_new("tile16", 1);
  Buf *src = ir_param_buf(k, "src", TY_F32, ROLE_IN), *dst = ir_param_buf(k, "dst", TY_F32, ROLE_OUT);
  Op *nk = ir_param_scalar(k, "nk", TY_I32), *ss = ir_param_scalar(k, "ss", TY_I32);
  Builder B = ir_builder(k), wb, tl, dl;
  ir_pfor(&B, AXIS_WARP, ir_const_i32(&B, 1), "w", &wb);
  Op *t = ir_for(&wb, ir_const_i64(&wb, 0), ir_const_i64(&wb, TILE16_LD / 16), 1, "t", &tl)->index;
  Op *j0 = ir_bin(&tl, OP_MUL, t, ir_const_i64(&tl, 16));
  Op *rows = ir_bin(&tl, OP_SUB, ir_cast(&tl, TY_I64, nk), j0);
  Op *d0 = ir_for(&tl, ir_const_i32(&tl, 0), ir_const_i32(&tl, TILE16_D), 16, "d0", &dl)->index;
  Op *di = ir_bin(&dl, OP_ADD, ir_bin(&dl, OP_MUL, ir_cast(&dl, TY_I64, d0),
                                      ir_const_i64(&dl, TILE16_LD)), j0);
  Op *si = ir_bin(&dl, OP_ADD, ir_bin(&dl, OP_MUL, ir_cast(&dl, TY_I32, j0), ss), d0);
  ir_transpose(&dl, dst, di, TILE16_LD, src, si, ss, rows);
  /* a hint never faults: the next tile's rows, past the end of src for the last ones */
  ir_prefetch(&dl, src, ir_bin(&dl, OP_ADD, si, ir_bin(&dl, OP_MUL, ss, ir_const_i32(&dl, 16))));
  return k;
}
