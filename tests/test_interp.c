/* Tests of the IR interpreter (ir/interp.c): kernels built with the IR builder run
 * in interpreter mode and are compared with plain C; reductions are checked bit for
 * bit against hand-written GPU combination orders (butterfly, warps in order); and
 * every class of error (bounds, races, uninitialised reads, division by zero,
 * refused kernels) must be reported with the expected message.
 * Prints "N passed, M failed" and exits non-zero on failure.
 *
 * This file holds the harness, the refused kernels, the speed check and main();
 * the rest is in interp_results.c, interp_errors.c, interp_atomics.c and
 * interp_traffic.c (shared
 * through interp_test.h). */
#include "interp.h"
#include "interp_test.h"
#include "passes.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


int run(Kernel *k, void **args, const int64_t *counts, const int32_t *grid, char *err,
               const InterpOptions *opt) {
  int32_t g[3];
  if (grid)
    memcpy(g, grid, sizeof g);
  else
    ir_grid(k, args, g);
  return interp_run(k, args, counts, g, opt, err, 512);
}

void expect_ok(const char *name, Kernel *k, void **args, const int64_t *counts,
                      const int32_t *grid) {
  char err[512];
  int rc = run(k, args, counts, grid, err, NULL);
  expect(rc == 0, "%s: interp_run failed: %s", name, err);
}

void expect_error(const char *name, Kernel *k, void **args, const int64_t *counts,
                         const int32_t *grid, const char *substr) {
  char err[512];
  int rc = run(k, args, counts, grid, err, NULL);
  bool ok = rc == -1 && strstr(err, substr);
  expect(ok, "%s: expected error containing \"%s\", got rc=%d \"%s\"", name, substr, rc, err);
  if (ok)
    printf("  ok %-22s %s\n", name, err);
}

const int32_t ONE_BLOCK[3] = {1, 1, 1};

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
  test_traffic();
  test_speed();
  return expect_summary();
}
