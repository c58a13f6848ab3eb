/* Tests of the IR core: the verifier accepts well-formed kernels (before and after
 * mapping) and rejects malformed ones with the expected message; ir_simplify folds
 * constants and deletes dead pure ops; ir_print produces the exact golden text.
 * Prints "N passed, M failed" and exits non-zero on failure.
 *
 * The malformed kernels, one per verifier rule, are in ir_rejects.c (see ir_test.h).
 */
#include "ir.h"
#include "ir_test.h"
#include "passes.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* ---- well-formed kernels ---- */

/* c[j] = a[j] + b[j] for j = block*256 + i < n */
static Kernel *vadd_kernel(void) {
  Kernel *k = ir_kernel_new("vadd", 4);
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

/* Per row: max by a lane reduce, a shared stage, a block sum, a serial reduce and
 * a var: exercises every parallel construct. */
static Kernel *mixed_kernel(void) {
  Kernel *k = ir_kernel_new("mixed", 2);
  Buf *x = ir_param_buf(k, "x", TY_F32, ROLE_IN);
  Buf *y = ir_param_buf(k, "y", TY_F32, ROLE_OUT);
  Buf *s = ir_shared(k, "s", TY_F32, 64);
  Op *cols = ir_param_scalar(k, "cols", TY_I32);
  Builder bb = ir_builder(k), wb, rb, lb, pb, bl, sr, vb;
  Op *w = ir_pfor(&bb, AXIS_WARP, ir_const_i32(&bb, 2), "w", &wb)->index;
  Op *m = ir_reduce(&wb, AXIS_LANE, RED_MAX, TY_F32, cols, "j", &rb);
  ir_yield(&rb, ir_load(&rb, x, m->index));
  Op *l = ir_pfor(&wb, AXIS_LANE, ir_const_i32(&wb, 32), "l", &lb)->index;
  ir_store(&lb, s, ir_bin(&lb, OP_ADD, ir_bin(&lb, OP_MUL, w, ir_const_i32(&lb, 32)), l), m);
  ir_barrier(&bb);
  Op *sum = ir_reduce(&bb, AXIS_BLOCK, RED_ADD, TY_F32, ir_const_i32(&bb, 64), "i", &bl);
  ir_yield(&bl, ir_load(&bl, s, sum->index));
  Op *i = ir_pfor(&bb, AXIS_BLOCK, cols, "i", &pb)->index;
  Op *acc = ir_var(&pb, ir_const_f32(&pb, 0), "acc");
  Op *t = ir_reduce(&pb, AXIS_SERIAL, RED_ADD, TY_F32, ir_const_i32(&pb, 4), "t", &sr);
  ir_set(&sr, acc, ir_bin(&sr, OP_ADD, ir_get(&sr, acc), ir_const_f32(&sr, 1)));
  ir_yield(&sr, ir_cast(&sr, TY_F32, t->index));
  ir_if(&pb, ir_cmp(&pb, CMP_GT, t, ir_const_f32(&pb, 0)), &vb, NULL);
  ir_store(&vb, y, i, ir_fma(&vb, t, ir_get(&vb, acc), sum));
  return k;
}

/* A per-block histogram in shared memory, added into a global one: atomics at
 * lane and block-thread level, on both spaces, i32 and f32. */
static Kernel *hist_kernel(void) {
  Kernel *k = ir_kernel_new("hist", 2);
  Buf *x = ir_param_buf(k, "x", TY_I32, ROLE_IN);
  Buf *h = ir_param_buf(k, "h", TY_I32, ROLE_INOUT);
  Buf *fs = ir_param_buf(k, "fs", TY_F32, ROLE_INOUT);
  Buf *s = ir_shared(k, "s", TY_I32, 16);
  Op *n = ir_param_scalar(k, "n", TY_I32);
  Builder bb = ir_builder(k), zb, wb, lb, pb, nz;
  Op *i = ir_pfor(&bb, AXIS_BLOCK, ir_const_i32(&bb, 16), "i", &zb)->index;
  ir_store(&zb, s, i, ir_const_i32(&zb, 0));
  ir_barrier(&bb);
  ir_pfor(&bb, AXIS_WARP, ir_const_i32(&bb, 2), "w", &wb);
  Op *j = ir_pfor(&wb, AXIS_LANE, n, "j", &lb)->index;
  Op *bin = ir_bin(&lb, OP_AND, ir_load(&lb, x, j), ir_const_i32(&lb, 15));
  ir_atomic_add(&lb, s, bin, ir_const_i32(&lb, 1));   /* old value unused */
  ir_barrier(&bb);
  i = ir_pfor(&bb, AXIS_BLOCK, ir_const_i32(&bb, 16), "i", &pb)->index;
  Op *c = ir_load(&pb, s, i);
  ir_if(&pb, ir_cmp(&pb, CMP_NE, c, ir_const_i32(&pb, 0)), &nz, NULL);
  Op *old = ir_atomic_add(&nz, h, i, c);
  ir_atomic_add(&nz, fs, i, ir_cast(&nz, TY_F32, old));
  return k;
}

/* Accepted as built, and after simplify + map + simplify for each target. */
static void expect_valid(const char *name, Kernel *(*build)(void)) {
  char err[512];
  Kernel *k = build();
  int rc = ir_verify(k, err, sizeof err);
  expect(rc == 0, "%s: rejected: %s", name, err);
  ir_kernel_free(k);
  for (int target = MAP_GPU; target <= MAP_CPU; target++) {
    k = build();
    rc = ir_simplify(k, err, sizeof err) || ir_map(k, (MapTarget)target, err, sizeof err) ||
         ir_simplify(k, err, sizeof err) || ir_verify(k, err, sizeof err);
    expect(rc == 0, "%s mapped for %s: rejected: %s", name, target == MAP_GPU ? "gpu" : "cpu",
           err);
    ir_kernel_free(k);
  }
}

/* ---- simplify ---- */

static int count_ops(const Block *blk) {
  int n = blk->n;
  for (int i = 0; i < blk->n; i++)
    n += count_ops(&blk->ops[i]->body) + count_ops(&blk->ops[i]->els);
  return n;
}

static void test_simplify(void) {
  Kernel *k = ir_kernel_new("fold", 1);
  Buf *o = ir_param_buf(k, "o", TY_I32, ROLE_OUT);
  Builder bb = ir_builder(k), p;
  Op *i = ir_pfor(&bb, AXIS_BLOCK, ir_const_i32(&bb, 4), "i", &p)->index;
  Op *five = ir_bin(&p, OP_ADD, ir_const_i32(&p, 2), ir_const_i32(&p, 3));
  ir_bin(&p, OP_MUL, i, ir_const_i32(&p, 7));   /* dead */
  ir_store(&p, o, i, five);
  int before = count_ops(&k->body);
  char err[256];
  expect(ir_simplify(k, err, sizeof err) == 0, "simplify failed: %s", err);
  int after = count_ops(&k->body);
  Op *store = k->body.ops[1]->body.ops[k->body.ops[1]->body.n - 1];
  Op *v = store->a[1];
  expect(v->kind == OP_CONST && v->ival == 5 && v->type == TY_I32,
         "simplify: add(2, 3) not folded to const 5 (kind %s)", ir_op_name(v->kind));
  expect(before == 8 && after == 4, "simplify: %d ops -> %d, want 8 -> 4", before, after);
  expect(ir_verify(k, err, sizeof err) == 0, "simplified kernel rejected: %s", err);
  ir_kernel_free(k);
  /* an atomic add whose old value nobody uses is not dead */
  k = hist_kernel();
  int atomics = 0;
  expect(ir_simplify(k, err, sizeof err) == 0, "simplify hist: %s", err);
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  ir_print(out, k);
  fclose(out);
  for (const char *p = text; (p = strstr(p, "atomic_add")); p++)
    atomics++;
  expect(atomics == 3, "simplify hist: %d atomic_adds left, want 3:\n%s", atomics, text);
  expect(text && strstr(text, "= atomic_add s[%") && strstr(text, "= atomic_add fs[%"),
         "atomic_add print format:\n%s", text);
  free(text);
  ir_kernel_free(k);
}

/* ---- golden print ---- */

static const char golden[] =
    "kernel scale(x: f32* in, y: f32* out, n: i32, a: f32) warps=2 grid=(ceil(n/64), 1, 1) {\n"
    "  shared t: f32[64]\n"
    "  %0 = param n : i32\n"
    "  %1 = param a : f32\n"
    "  %2 = const 64 : i32\n"
    "  %3 = block_id x : i32\n"
    "  %4 = mul %3, %2 : i32\n"
    "  pfor.block %5 < %2 {  ; i\n"
    "    %6 = add %4, %5 : i32\n"
    "    %7 = cmp.lt %6, %0 : bool\n"
    "    if %7 {\n"
    "      %8 = load x[%6] : f32\n"
    "      %9 = mul %8, %1 : f32\n"
    "      store t[%5] = %9\n"
    "    }\n"
    "  }\n"
    "  barrier\n"
    "  pfor.warp %10 < %2 {  ; w\n"
    "    %12 = reduce.lane.max %11 < %2 : f32 {  ; j\n"
    "      %13 = load t[%11] : f32\n"
    "      yield %13\n"
    "    }\n"
    "    pfor.lane %14 < %2 {  ; l\n"
    "      %15 = var %12 : f32  ; m\n"
    "      %16 = get %15 : f32\n"
    "      store y[%14] = %16\n"
    "    }\n"
    "  }\n"
    "}\n";

static void test_print(void) {
  Kernel *k = ir_kernel_new("scale", 2);
  Buf *x = ir_param_buf(k, "x", TY_F32, ROLE_IN);
  Buf *y = ir_param_buf(k, "y", TY_F32, ROLE_OUT);
  Buf *t = ir_shared(k, "t", TY_F32, 64);
  Op *n = ir_param_scalar(k, "n", TY_I32);
  Op *a = ir_param_scalar(k, "a", TY_F32);
  ir_set_grid(k, 0, 2, -1, 64);
  Builder bb = ir_builder(k), pb, then, wb, rb, lb;
  Op *c64 = ir_const_i32(&bb, 64);
  Op *base = ir_bin(&bb, OP_MUL, ir_block_id(&bb, 0), c64);
  Op *i = ir_pfor(&bb, AXIS_BLOCK, c64, "i", &pb)->index;
  Op *j = ir_bin(&pb, OP_ADD, base, i);
  ir_if(&pb, ir_cmp(&pb, CMP_LT, j, n), &then, NULL);
  ir_store(&then, t, i, ir_bin(&then, OP_MUL, ir_load(&then, x, j), a));
  ir_barrier(&bb);
  ir_pfor(&bb, AXIS_WARP, c64, "w", &wb);
  Op *m = ir_reduce(&wb, AXIS_LANE, RED_MAX, TY_F32, c64, "j", &rb);
  ir_yield(&rb, ir_load(&rb, t, m->index));
  Op *l = ir_pfor(&wb, AXIS_LANE, c64, "l", &lb)->index;
  ir_store(&lb, y, l, ir_get(&lb, ir_var(&lb, m, "m")));
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  ir_print(out, k);
  fclose(out);
  bool same = text && !strcmp(text, golden);
  expect(same, "golden print differs; got:\n%s", text ? text : "(null)");
  char err[256];
  expect(ir_verify(k, err, sizeof err) == 0, "golden kernel rejected: %s", err);
  free(text);
  ir_kernel_free(k);
}

int main(void) {
  expect_valid("vadd", vadd_kernel);
  expect_valid("mixed", mixed_kernel);
  expect_valid("hist", hist_kernel);
  test_rejects();
  test_simplify();
  test_print();
  return expect_summary();
}
