/* backward_bits.c: tile_bits_steps (templates/attention_tile.h), the count by which
 * the tile backward's masked blocks choose between their mask walk and the dense
 * GEMMs. Both paths give the same gradients (a zero weight adds an exact zero), so
 * the gradient suites cannot see a wrong count; this checks it against a C popcount,
 * JIT-compiled on the host (mask arrays of exactly cnt entries, so an over-read is an
 * ASan error) and in the interpreter (bounds, GPU semantics), for keys per tile 1
 * and 2, counts around multiples of the tile, and masks with bit 31 set. */
#include <stdlib.h>
#include <string.h>

#include "../ir/interp.h"
#include "../templates/attention_tile.h"

#define CHECK_SHARED
#include "backward_test.h"
#include "check.h"

/* out[0] = tile_bits_steps(bits, cnt, per) */
static Kernel *steps_kernel(int per) {
  Kernel *k = ir_kernel_new(per == 1 ? "steps1" : "steps2", 1);
  Buf *bits = ir_param_buf(k, "bits", TY_I32, ROLE_IN);
  Buf *out = ir_param_buf(k, "out", TY_I32, ROLE_OUT);
  Op *cnt = ir_param_scalar(k, "cnt", TY_I32);
  Builder b = ir_builder(k), warp, lane;
  ir_pfor(&b, AXIS_WARP, ir_const_i32(&b, 1), "w", &warp);
  Op *steps = tile_bits_steps(&warp, bits, cnt, per);
  ir_pfor(&warp, AXIS_LANE, ir_const_i32(&warp, 1), "one", &lane);
  ir_store(&lane, out, ir_const_i32(&lane, 0), steps);
  return k;
}

static int32_t steps_ref(const uint32_t *bits, int cnt, int per) {
  int32_t n = 0;
  for (int t = 0; t < cnt; t += per) {
    uint32_t m = 0;
    for (int k = t; k < t + per && k < cnt; k++)
      m |= bits[k];
    n += __builtin_popcount(m);
  }
  return n;
}

static uint32_t draw_mask(int kind) {
  uint32_t m = 0;
  for (int r = 0; r < 32; r++)   /* sparse, half and dense rows */
    m |= (uniform() < (kind == 0 ? 0.2 : kind == 1 ? 0.5 : 0.95) ? 1u : 0u) << r;
  return m;
}

static void steps_per(int per) {
  char err[512];
  Module m = {.kernels = {steps_kernel(per)}, .n = 1};
  Kernel *ki = steps_kernel(per);
  Jit *jit = NULL;
  CpuKernelFn fn = NULL;
  if (ir_run_passes(m.kernels[0], MAP_CPU, err, sizeof err) ||
      ir_run_passes(ki, MAP_NONE, err, sizeof err) ||
      !(jit = jit_compile(&m, err, sizeof err)) || !(fn = jit_lookup(jit, m.kernels[0]->name))) {
    CHECK(0, "tile_bits_steps, %d per tile: compile: %s", per, err);
    goto done;
  }
  static const int cnts[] = {1, 2, 3, 31, 32, 33, 64, 127, 257, 512};
  for (size_t ci = 0; ci < sizeof cnts / sizeof cnts[0]; ci++)
    for (int kind = 0; kind < 4; kind++) {
      int cnt = cnts[ci];
      uint32_t *bits = xcalloc((size_t)cnt, sizeof *bits);
      for (int j = 0; j < cnt; j++)   /* kind 3: bit 31 alone, every other entry empty */
        bits[j] = kind < 3 ? draw_mask(kind) : j % 2 ? 0 : 0x80000000u;
      int32_t want = steps_ref(bits, cnt, per), got = -1, got_i = -1;
      void *args[] = {&bits, &(int32_t *){&got}, &cnt};
      int32_t grid[3] = {1, 1, 1};
      fn(args, grid, 0, 1);
      void *iargs[] = {&bits, &(int32_t *){&got_i}, &cnt};
      int64_t counts[] = {cnt, 1, 0};
      int rc = interp_run(ki, iargs, counts, grid, NULL, err, sizeof err);
      CHECK(got == want && rc == 0 && got_i == want,
            "tile_bits_steps, %d per tile, %d masks (kind %d): host %d, interpreter %d (%s), "
            "want %d", per, cnt, kind, got, got_i, rc ? err : "ok", want);
      free(bits);
    }
done:
  jit_free(jit);
  ir_module_free(&m);
  ir_kernel_free(ki);
}

void bits_suite(void) {
  steps_per(1);
  steps_per(2);
}
