/* ir_rejects.c: test_ir's malformed kernels, one per verifier rule (scopes, types,
 * levels, atomics, mapped-only ops, sizes), each refused by ir_verify with its
 * expected message. Apart because it is a long table of small builders, each
 * breaking exactly one rule, and grows with every rule the verifier gains. */
#include "ir.h"
#include "ir_test.h"

#include <stdio.h>
#include <string.h>

/* ---- malformed kernels, one per function ---- */

typedef struct {
  Kernel *k;
  Buf *in, *out, *iout;
  Op *n;
  Builder b;
} Fixture;

static Fixture fixture(void) {
  Fixture f;
  f.k = ir_kernel_new("bad", 2);
  f.in = ir_param_buf(f.k, "x", TY_F32, ROLE_IN);
  f.out = ir_param_buf(f.k, "o", TY_F32, ROLE_OUT);
  f.iout = ir_param_buf(f.k, "q", TY_I32, ROLE_OUT);
  f.n = ir_param_scalar(f.k, "n", TY_I32);
  f.b = ir_builder(f.k);
  return f;
}

static Op *pfor_block(Fixture *f, Builder *body) {
  return ir_pfor(&f->b, AXIS_BLOCK, f->n, "i", body)->index;
}

static Kernel *bad_sibling_scope(void) {
  Fixture f = fixture();
  Builder p1, p2;
  Op *i = pfor_block(&f, &p1);
  Op *v = ir_cast(&p1, TY_F32, i);
  Op *j = pfor_block(&f, &p2);
  ir_store(&p2, f.out, j, v);
  return f.k;
}

static Kernel *bad_use_before_def(void) {
  Fixture f = fixture();
  Builder p;
  Op *i = pfor_block(&f, &p);
  Op *sum = ir_bin(&p, OP_ADD, i, i);
  Op *late = ir_const_i32(&p, 7);
  sum->a[1] = late;
  ir_store(&p, f.iout, i, sum);
  return f.k;
}

static Kernel *bad_ctz_float(void) {
  Fixture f = fixture();
  ir_un(&f.b, OP_CTZ, ir_const_f32(&f.b, 2));
  return f.k;
}

static Kernel *bad_transpose_level(void) {
  Fixture f = fixture();
  Op *z = ir_const_i32(&f.b, 0);
  ir_transpose(&f.b, f.out, z, 16, f.in, z, f.n, f.n);
  return f.k;
}

/* a transpose16 in warp-level code from x into dst, `rows` rows (a float: bad) */
static Kernel *transpose_in_warp(Buf *(*dst)(Fixture *), bool float_rows) {
  Fixture f = fixture();
  Builder w;
  ir_pfor(&f.b, AXIS_WARP, f.n, "w", &w);
  Op *z = ir_const_i32(&w, 0);
  ir_transpose(&w, dst(&f), z, 16, f.in, z, f.n, float_rows ? ir_const_f32(&w, 1) : f.n);
  return f.k;
}

static Buf *int_out(Fixture *f) { return f->iout; }
static Buf *f32_out(Fixture *f) { return f->out; }
static Kernel *bad_transpose_type(void) { return transpose_in_warp(int_out, false); }
static Kernel *bad_transpose_rows(void) { return transpose_in_warp(f32_out, true); }

static Kernel *bad_add_types(void) {
  Fixture f = fixture();
  ir_bin(&f.b, OP_ADD, ir_const_i32(&f.b, 1), ir_const_f32(&f.b, 2));
  return f.k;
}

static Kernel *bad_store_type(void) {
  Fixture f = fixture();
  Builder p;
  Op *i = pfor_block(&f, &p);
  ir_store(&p, f.iout, i, ir_const_f32(&p, 1));
  return f.k;
}

static Kernel *bad_store_input(void) {
  Fixture f = fixture();
  Builder p;
  Op *i = pfor_block(&f, &p);
  ir_store(&p, f.in, i, ir_const_f32(&p, 1));
  return f.k;
}

static Kernel *bad_store_block_level(void) {
  Fixture f = fixture();
  ir_store(&f.b, f.out, ir_const_i32(&f.b, 0), ir_const_f32(&f.b, 1));
  return f.k;
}

static Kernel *bad_barrier_in_pfor(void) {
  Fixture f = fixture();
  Builder p;
  pfor_block(&f, &p);
  ir_barrier(&p);
  return f.k;
}

static Kernel *bad_lane_outside_warp(void) {
  Fixture f = fixture();
  Builder p;
  ir_pfor(&f.b, AXIS_LANE, f.n, "l", &p);
  return f.k;
}

static Kernel *bad_warp_in_block(void) {
  Fixture f = fixture();
  Builder p, w;
  pfor_block(&f, &p);
  ir_pfor(&p, AXIS_WARP, f.n, "w", &w);
  return f.k;
}

static Kernel *bad_reduce_no_yield(void) {
  Fixture f = fixture();
  Builder r;
  Op *red = ir_reduce(&f.b, AXIS_SERIAL, RED_ADD, TY_I32, f.n, "i", &r);
  ir_bin(&r, OP_ADD, red->index, red->index);
  return f.k;
}

static Kernel *bad_yield_type(void) {
  Fixture f = fixture();
  Builder r;
  Op *red = ir_reduce(&f.b, AXIS_SERIAL, RED_ADD, TY_F32, f.n, "i", &r);
  ir_yield(&r, red->index);
  return f.k;
}

static Kernel *bad_var_in_pfor(void) {
  Fixture f = fixture();
  Builder p;
  Op *v = ir_var(&f.b, ir_const_i32(&f.b, 0), "v");
  Op *i = pfor_block(&f, &p);
  ir_set(&p, v, i);
  return f.k;
}

static Kernel *bad_bitcast_width(void) {
  Fixture f = fixture();
  ir_bitcast(&f.b, TY_I64, ir_const_f32(&f.b, 1));
  return f.k;
}

static Kernel *bad_grid_buffer(void) {
  Fixture f = fixture();
  ir_set_grid(f.k, 0, 1, -1, 1);   /* param 1 is the buffer o */
  return f.k;
}

static Kernel *bad_missing_operand(void) {
  Fixture f = fixture();
  ir_bin(&f.b, OP_MUL, f.n, NULL);
  return f.k;
}

static Kernel *bad_lane_reduce_block_level(void) {
  Fixture f = fixture();
  Builder r;
  Op *red = ir_reduce(&f.b, AXIS_LANE, RED_ADD, TY_I32, f.n, "i", &r);
  ir_yield(&r, red->index);
  return f.k;
}

static Kernel *bad_load_output(void) {
  Fixture f = fixture();
  Builder p;
  Op *i = pfor_block(&f, &p);
  ir_load(&p, f.out, i);
  return f.k;
}

static Kernel *bad_mapped_only_op(void) {
  Fixture f = fixture();
  ir_append(&f.b, OP_THREAD_ID, TY_I32);
  return f.k;
}

static Kernel *bad_shared_size(void) {
  Fixture f = fixture();
  ir_shared(f.k, "s", TY_F32, 0);
  return f.k;
}

static Kernel *bad_float_index(void) {
  Fixture f = fixture();
  Builder p;
  pfor_block(&f, &p);
  ir_load(&p, f.in, ir_const_f32(&p, 0));
  return f.k;
}

static Kernel *bad_atomic_block_level(void) {
  Fixture f = fixture();
  Buf *h = ir_param_buf(f.k, "h", TY_I32, ROLE_INOUT);
  ir_atomic_add(&f.b, h, ir_const_i32(&f.b, 0), ir_const_i32(&f.b, 1));
  return f.k;
}

static Kernel *bad_atomic_input(void) {
  Fixture f = fixture();
  Builder p;
  Op *i = pfor_block(&f, &p);
  ir_atomic_add(&p, f.in, i, ir_const_f32(&p, 1));
  return f.k;
}

static Kernel *bad_atomic_output(void) {
  Fixture f = fixture();
  Builder p;
  Op *i = pfor_block(&f, &p);
  ir_atomic_add(&p, f.iout, i, i);
  return f.k;
}

static Kernel *bad_atomic_type(void) {
  Fixture f = fixture();
  Buf *h = ir_param_buf(f.k, "h", TY_I32, ROLE_INOUT);
  Builder p;
  Op *i = pfor_block(&f, &p);
  ir_atomic_add(&p, h, i, ir_const_f32(&p, 1));
  return f.k;
}

static Kernel *bad_atomic_f64(void) {
  Fixture f = fixture();
  Buf *h = ir_param_buf(f.k, "d", TY_F64, ROLE_INOUT);
  Builder p;
  Op *i = pfor_block(&f, &p);
  ir_atomic_add(&p, h, i, ir_const_f64(&p, 1));
  return f.k;
}

static Kernel *bad_atomic_local(void) {
  Fixture f = fixture();
  Buf *l = ir_local(f.k, "l", TY_I32, 4);
  Builder p;
  Op *i = pfor_block(&f, &p);
  ir_atomic_add(&p, l, i, i);
  return f.k;
}

static const struct {
  const char *name;
  Kernel *(*build)(void);
  const char *want;
} bad[] = {
    {"value from a sibling scope", bad_sibling_scope, "operand %2 is not defined before this use"},
    {"use before def", bad_use_before_def, "%2 (add): operand %3 is not defined before this use"},
    {"type mismatch in add", bad_add_types, "operands must be numbers of the result type i32"},
    {"ctz of a float", bad_ctz_float, "ctz takes and returns an i32 or i64"},
    {"transpose16 at block level", bad_transpose_level,
     "transpose16 must be in warp-level code"},
    {"transpose16 into an i32 buffer", bad_transpose_type, "transposes f32 tiles only (q from x)"},
    {"transpose16 with a float row count", bad_transpose_rows, "operand 3 must be an integer"},
    {"f32 stored into i32 buffer", bad_store_type, "stores f32 into i32 buffer q"},
    {"store to input buffer", bad_store_input, "store to input buffer x"},
    {"store at block level", bad_store_block_level, "store outside a single-thread context"},
    {"barrier inside pfor", bad_barrier_in_pfor, "barrier inside a parallel region"},
    {"pfor.lane outside pfor.warp", bad_lane_outside_warp,
     "pfor.lane must be directly inside a pfor.warp"},
    {"pfor.warp inside pfor.block", bad_warp_in_block, "pfor.warp must be in block-level code"},
    {"reduce without yield", bad_reduce_no_yield, "reduce body must end in yield"},
    {"yield type mismatch", bad_yield_type, "yields i32 from a f32 reduce"},
    {"var set in nested pfor", bad_var_in_pfor, "is assigned inside a nested parallel region"},
    {"bitcast width change", bad_bitcast_width, "bitcast changes width (f32 to i64)"},
    {"grid dim from a buffer", bad_grid_buffer, "grid dim 0 refers to a non-integer parameter"},
    {"missing operand", bad_missing_operand, "(mul): operand 1 is missing"},
    {"reduce.lane at block level", bad_lane_reduce_block_level,
     "reduce.lane must be in warp-level code"},
    {"load from output buffer", bad_load_output, "load from output-only buffer o"},
    {"mapped-only op", bad_mapped_only_op, "thread_id is a mapped-only op"},
    {"shared without size", bad_shared_size, "shared array s has no size"},
    {"float index", bad_float_index, "index of x must be an integer"},
    {"atomic at block level", bad_atomic_block_level,
     "(atomic_add): atomic_add outside a single-thread context"},
    {"atomic on input buffer", bad_atomic_input,
     "atomic_add on input buffer x (it reads and writes: the buffer must be inout)"},
    {"atomic on output buffer", bad_atomic_output, "atomic_add on output-only buffer q"},
    {"atomic adds f32 to i32", bad_atomic_type, "adds f32 to i32 buffer h"},
    {"atomic on f64", bad_atomic_f64, "atomic_add on f64 buffer d (i32 or f32 only)"},
    {"atomic on local array", bad_atomic_local, "atomic_add on local array l"},
};

void test_rejects(void) {
  for (size_t t = 0; t < sizeof bad / sizeof bad[0]; t++) {
    Kernel *k = bad[t].build();
    char err[512];
    const char *want = bad[t].want;
    int rc = ir_verify(k, err, sizeof err);
    bool ok = rc == -1 && strstr(err, want);
    expect(ok, "%s: expected \"%s\", got rc=%d \"%s\"", bad[t].name, want, rc, rc ? err : "");
    if (ok)
      printf("  ok %-28s %s\n", bad[t].name, err);
    ir_kernel_free(k);
  }
}
