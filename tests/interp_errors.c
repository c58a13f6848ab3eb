/* interp_errors.c: each class of error the interpreter must report, by message.
 *
 * Out-of-bounds global and shared accesses, races between lanes, warps and blocks,
 * a block-level read before the barrier, reductions without sync, division by
 * zero and friends, and uninitialised locals. Each kernel is wrong in one way and
 * the expected message is checked; kept apart from the results tests so the two
 * sides (must run right, must be caught) are read separately. */
#include "interp.h"
#include "interp_test.h"
#include "passes.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- (3) errors ---- */

void test_oob_global(void) {
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

void test_shared_errors(void) {
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

void test_warp_races(void) {
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
void test_block_level_read(void) {
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
void test_block_reduce_sync(void) {
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

void test_cross_block(void) {
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

/* o[i] = c / i for i < 4 (ints); and bad shift / cast variants. */
void test_arith_errors(void) {
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

void test_local(void) {
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

