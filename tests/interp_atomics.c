/* interp_atomics.c: atomics in the interpreter, their results and their races.
 *
 * A shared-then-global histogram with tickets must give exact counts and unique
 * tickets; mixing atomic and plain accesses to one location, with and without a
 * barrier between them, must be reported as a race (or not). Separate because
 * atomics are the one place where the interpreter lets threads write the same
 * location. */
#include "interp.h"
#include "interp_test.h"
#include "passes.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void test_atomic_hist(void) {
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

void test_atomic_races(void) {
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

