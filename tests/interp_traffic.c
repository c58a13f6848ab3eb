/* The interpreter's traffic model (ir/interp_traffic.c): warp requests, global
 * sectors and shared-memory wavefronts of small kernels whose counts are known by
 * hand: a coalesced copy, lanes on rows 256 bytes apart, a lane loop that wraps,
 * block-level threads over two warps, a warp-uniform load, and shared stores with
 * the strides that do and do not conflict. */
#include "interp_test.h"

#include <stdio.h>
#include <string.h>

enum { ELEMS = 64 * 64 };

typedef struct {
  Kernel *k;
  Buf *in, *out;
  Builder b;
} Tk;

static Tk tk_new(const char *name, int warps) {
  Tk t;
  t.k = ir_kernel_new(name, warps);
  t.in = ir_param_buf(t.k, "in", TY_F32, ROLE_IN);
  t.out = ir_param_buf(t.k, "out", TY_F32, ROLE_OUT);
  t.b = ir_builder(t.k);
  return t;
}

static Op *c32(Builder *b, int64_t v) { return ir_const_i32(b, v); }
static Op *mul(Builder *b, Op *x, int64_t v) { return ir_bin(b, OP_MUL, x, c32(b, v)); }

/* Runs t.k on one block and returns its traffic (all fields -1 on failure). */
static InterpTraffic measure(Tk *t) {
  static float in[ELEMS], out[ELEMS];
  float *pin = in, *pout = out;
  void *args[] = {&pin, &pout};
  int64_t counts[] = {ELEMS, ELEMS};
  InterpTraffic tr;
  memset(&tr, 0, sizeof tr);
  char err[512];
  if (interp_run_traffic(t->k, args, counts, ONE_BLOCK, NULL, &tr, err, sizeof err)) {
    expect(0, "%s: %s", t->k->name, err);
    memset(&tr, 0xff, sizeof tr);
  }
  ir_kernel_free(t->k);
  return tr;
}

static void expect_global(const char *what, InterpTraffic tr, int64_t lreq, int64_t lsec,
                          int64_t sreq, int64_t ssec) {
  expect(tr.load_requests == lreq && tr.load_sectors == lsec && tr.store_requests == sreq &&
             tr.store_sectors == ssec,
         "%s: loads %lld requests / %lld sectors, stores %lld / %lld; expected %lld / %lld, "
         "%lld / %lld", what, (long long)tr.load_requests, (long long)tr.load_sectors,
         (long long)tr.store_requests, (long long)tr.store_sectors, (long long)lreq,
         (long long)lsec, (long long)sreq, (long long)ssec);
}

/* out[j] = in[j * stride] over n lanes of one warp */
static InterpTraffic lane_copy(int n, int stride) {
  Tk t = tk_new("lane_copy", 1);
  Builder w, l;
  ir_pfor(&t.b, AXIS_WARP, c32(&t.b, 1), "w", &w);
  Op *j = ir_pfor(&w, AXIS_LANE, c32(&w, n), "j", &l)->index;
  ir_store(&l, t.out, j, ir_load(&l, t.in, mul(&l, j, stride)));
  return measure(&t);
}

/* out[j] = sum_d in[j*64 + d], d < 8 serially per lane: 8 loads per lane */
static InterpTraffic row_dots(void) {
  Tk t = tk_new("row_dots", 1);
  Builder w, l, body;
  ir_pfor(&t.b, AXIS_WARP, c32(&t.b, 1), "w", &w);
  Op *j = ir_pfor(&w, AXIS_LANE, c32(&w, 32), "j", &l)->index;
  Op *red = ir_reduce(&l, AXIS_SERIAL, RED_ADD, TY_F32, c32(&l, 8), "d", &body);
  ir_yield(&body, ir_load(&body, t.in, ir_bin(&body, OP_ADD, mul(&body, j, 64), red->index)));
  ir_store(&l, t.out, j, red);
  return measure(&t);
}

/* two warps, pfor.block over 64 elements; then a warp-uniform load in each warp */
static InterpTraffic block_copy_and_uniform(void) {
  Tk t = tk_new("block_copy", 2);
  Builder blk, w, l;
  Op *i = ir_pfor(&t.b, AXIS_BLOCK, c32(&t.b, 64), "i", &blk)->index;
  ir_store(&blk, t.out, i, ir_load(&blk, t.in, i));
  ir_barrier(&t.b);
  Op *wi = ir_pfor(&t.b, AXIS_WARP, c32(&t.b, 2), "w", &w)->index;
  Op *x = ir_load(&w, t.in, c32(&w, 7));
  Op *j = ir_pfor(&w, AXIS_LANE, c32(&w, 1), "one", &l)->index;
  ir_store(&l, t.out, ir_bin(&l, OP_ADD, c32(&l, 100), ir_bin(&l, OP_ADD, wi, j)), x);
  return measure(&t);
}

/* sh[j * stride] = in[j]; out[j] = sh[j * stride] (or sh[0] for every lane: stride 0) */
static InterpTraffic shared_stride(int stride) {
  Tk t = tk_new("shared_stride", 1);
  Buf *sh = ir_shared(t.k, "sh", TY_F32, 32 * 65);
  Builder w, l, l2;
  ir_pfor(&t.b, AXIS_WARP, c32(&t.b, 1), "w", &w);
  Op *j = ir_pfor(&w, AXIS_LANE, c32(&w, 32), "j", &l)->index;
  ir_store(&l, sh, mul(&l, j, stride ? stride : 1), ir_load(&l, t.in, j));
  j = ir_pfor(&w, AXIS_LANE, c32(&w, 32), "j", &l2)->index;
  ir_store(&l2, t.out, j, ir_load(&l2, sh, mul(&l2, j, stride)));
  return measure(&t);
}

void test_traffic(void) {
  InterpTraffic tr;
  expect_global("coalesced lanes", lane_copy(32, 1), 1, 4, 1, 4);
  expect_global("lanes 64 over 32", lane_copy(64, 1), 2, 8, 2, 8);
  expect_global("lanes 2 apart", lane_copy(32, 2), 1, 8, 1, 4);
  tr = lane_copy(32, 64);
  expect_global("lanes on 32 rows", tr, 1, 32, 1, 4);
  expect(tr.load_unique_sectors == 32, "lanes on 32 rows: %lld unique sectors",
         (long long)tr.load_unique_sectors);
  tr = row_dots();
  expect_global("serial dot per lane", tr, 8, 8 * 32, 1, 4);
  /* 8 floats of each row are one sector, asked for 8 times */
  expect(tr.load_unique_sectors == 32, "serial dot: %lld unique sectors",
         (long long)tr.load_unique_sectors);
  expect(tr.load_bytes == 8 * 32 * 4, "serial dot: %lld bytes", (long long)tr.load_bytes);
  /* 64 threads = 2 warps: 2 coalesced requests each way; then per warp one uniform
   * load (1 sector) and one single-lane store */
  expect_global("block threads + uniform", block_copy_and_uniform(), 2 + 2, 8 + 2, 2 + 2,
                8 + 2);
  static const struct { int stride; int64_t wavefronts; } sh[] = {
      {1, 2}, {65, 2}, {64, 32 + 32}, {2, 2 + 2}, {0, 1 + 1}};
  for (int i = 0; i < 5; i++) {
    tr = shared_stride(sh[i].stride);
    expect(tr.shared_requests == 2 && tr.shared_wavefronts == sh[i].wavefronts,
           "shared stride %d: %lld requests, %lld wavefronts; expected 2, %lld", sh[i].stride,
           (long long)tr.shared_requests, (long long)tr.shared_wavefronts,
           (long long)sh[i].wavefronts);
  }
  printf("  ok traffic model (requests, sectors, wavefronts of 10 kernels)\n");
}
