/* The interpreter's execution: scalar arithmetic, ops, loops, parallel contexts
 * and reductions.
 *
 * Arithmetic: IEEE in the op's type (f32 in float, never double), two's complement
 * wrap for ints, division by zero and bad shifts and casts reported; see ir.h for
 * the CMP and CAST rules. Inside a block the parallel model of ir.h runs
 * hierarchically and sequentially (see interp.c). Reductions reproduce the mapped
 * code's combination order (strided per-lane partials, the shfl.bfly butterfly,
 * warps combined in order) so float results match the GPU bit for bit.
 *
 * The arithmetic stays in this file with exec_op, its one caller: split into its
 * own file the per-op call costs the interpreter 10 % more instructions
 * (callgrind, test_interp), as the compiler can no longer inline it. Errors, the
 * grid and the entry point are in interp.c; memory and its checks in interp_mem.c. */
#include "interp_impl.h"

#include <math.h>
#include <string.h>

/* ---- scalar arithmetic ---- */

static int64_t wrap(Type t, uint64_t x) {
  if (t == TY_I32)
    return (int32_t)(uint32_t)x;
  if (t == TY_BOOL)
    return (int64_t)(x & 1);
  return (int64_t)x;
}

static int64_t int_min(Type t) { return t == TY_I32 ? INT32_MIN : INT64_MIN; }

static int64_t shift(Interp *in, const Op *op, int64_t x, int64_t y) {
  int bits = ir_type_bits(op->type);
  if (y < 0 || y >= bits)
    interp_fail(in, op, "shift amount %lld out of range for %s", (long long)y,
                ir_type_name(op->type));
  if (op->kind == OP_SHL)
    return wrap(op->type, (uint64_t)x << y);
  uint64_t ux = bits == 64 ? (uint64_t)x : (uint64_t)x & ((UINT64_C(1) << bits) - 1);
  return wrap(op->type, ux >> y);
}

static int64_t divide(Interp *in, const Op *op, int64_t x, int64_t y) {
  if (y == 0)
    interp_fail(in, op, "division by zero");
  if (y == -1 && x == int_min(op->type))
    interp_fail(in, op, "integer overflow in division (%lld / -1)", (long long)x);
  return op->kind == OP_DIV ? x / y : x % y;
}

static int64_t int_bin(Interp *in, const Op *op, int64_t x, int64_t y) {
  uint64_t ux = (uint64_t)x, uy = (uint64_t)y;
  switch (op->kind) {
  case OP_ADD: return wrap(op->type, ux + uy);
  case OP_SUB: return wrap(op->type, ux - uy);
  case OP_MUL: return wrap(op->type, ux * uy);
  case OP_DIV: case OP_REM: return divide(in, op, x, y);
  case OP_MIN: return x < y ? x : y;
  case OP_MAX: return x > y ? x : y;
  case OP_AND: return x & y;
  case OP_OR: return x | y;
  case OP_XOR: return x ^ y;
  case OP_SHL: case OP_SHR: return shift(in, op, x, y);
  default: interp_fail(in, op, "not an integer operation");
  }
}

static float f32_bin(Interp *in, const Op *op, float x, float y) {
  switch (op->kind) {
  case OP_ADD: return x + y;
  case OP_SUB: return x - y;
  case OP_MUL: return x * y;
  case OP_DIV: return x / y;
  case OP_REM: return fmodf(x, y);
  case OP_MIN: return fminf(x, y);
  case OP_MAX: return fmaxf(x, y);
  default: interp_fail(in, op, "not a float operation");
  }
}

static double f64_bin(Interp *in, const Op *op, double x, double y) {
  switch (op->kind) {
  case OP_ADD: return x + y;
  case OP_SUB: return x - y;
  case OP_MUL: return x * y;
  case OP_DIV: return x / y;
  case OP_REM: return fmod(x, y);
  case OP_MIN: return fmin(x, y);
  case OP_MAX: return fmax(x, y);
  default: interp_fail(in, op, "not a float operation");
  }
}

static Val binary(Interp *in, const Op *op, Val x, Val y) {
  Val r = {0};
  if (op->type == TY_F32)
    r.f = f32_bin(in, op, x.f, y.f);
  else if (op->type == TY_F64)
    r.d = f64_bin(in, op, x.d, y.d);
  else
    r.i = int_bin(in, op, x.i, y.i);
  return r;
}

static float f32_math(OpKind k, float x) {
  switch (k) {
  case OP_NEG: return -x;
  case OP_EXP: return expf(x);
  case OP_LOG: return logf(x);
  case OP_SQRT: return sqrtf(x);
  default: return fabsf(x);
  }
}

static double f64_math(OpKind k, double x) {
  switch (k) {
  case OP_NEG: return -x;
  case OP_EXP: return exp(x);
  case OP_LOG: return log(x);
  case OP_SQRT: return sqrt(x);
  default: return fabs(x);
  }
}

static Val unary(const Op *op, Val x) {
  Val r = {0};
  if (op->type == TY_F32)
    r.f = f32_math(op->kind, x.f);
  else if (op->type == TY_F64)
    r.d = f64_math(op->kind, x.d);
  else
    r.i = wrap(op->type, 0 - (uint64_t)x.i);   /* OP_NEG; on bool the identity */
  return r;
}

/* Trailing zero bits of x's low `bits` bits; `bits` for 0 (as llvm.cttz with
 * is_zero_poison false). */
static Val ctz(const Op *op, Val x) {
  int bits = op->type == TY_I64 ? 64 : 32;
  uint64_t u = (uint64_t)x.i;
  int n = 0;
  while (n < bits && !((u >> n) & 1))
    n++;
  return (Val){.i = n};
}

static Val fma_op(const Op *op, Val x, Val y, Val z) {
  Val r = {0};
  if (op->type == TY_F32)
    r.f = fmaf(x.f, y.f, z.f);
  else
    r.d = fma(x.d, y.d, z.d);
  return r;
}

/* Floats: every predicate is ordered (false if either side is NaN), NE too. */
static bool cmp_float(CmpPred p, double a, double b) {
  switch (p) {
  case CMP_EQ: return a == b;
  case CMP_NE: return a < b || a > b;
  case CMP_LT: return a < b;
  case CMP_LE: return a <= b;
  case CMP_GT: return a > b;
  default: return a >= b;
  }
}

/* Ints: signed, except ULT/UGE. Bools compare as signed i1 (true = -1). */
static bool cmp_int(CmpPred p, Type t, int64_t a, int64_t b) {
  uint64_t mask = t == TY_I32 ? UINT32_MAX : UINT64_MAX;
  if (t == TY_BOOL) {
    a = -a;
    b = -b;
  }
  switch (p) {
  case CMP_EQ: return a == b;
  case CMP_NE: return a != b;
  case CMP_LT: return a < b;
  case CMP_LE: return a <= b;
  case CMP_GT: return a > b;
  case CMP_GE: return a >= b;
  case CMP_ULT: return ((uint64_t)a & mask) < ((uint64_t)b & mask);
  default: return ((uint64_t)a & mask) >= ((uint64_t)b & mask);
  }
}

static Val compare(const Op *op, Val x, Val y) {
  Type t = op->a[0]->type;
  Val r = {0};
  if (t == TY_F32)
    r.i = cmp_float(op->pred, x.f, y.f);
  else if (t == TY_F64)
    r.i = cmp_float(op->pred, x.d, y.d);
  else
    r.i = cmp_int(op->pred, t, x.i, y.i);
  return r;
}

/* float -> int truncates toward zero; NaN or out of range is an error. */
static int64_t float_to_int(Interp *in, const Op *op, double d) {
  double t = trunc(d);
  bool ok = op->type == TY_I32 ? t >= -2147483648.0 && t <= 2147483647.0
                               : t >= -9223372036854775808.0 && t < 9223372036854775808.0;
  if (!ok)
    interp_fail(in, op, "cast of %g to %s out of range", d, ir_type_name(op->type));
  return (int64_t)t;
}

static Val cast(Interp *in, const Op *op, Val x) {
  Type from = op->a[0]->type, to = op->type;
  Val r = {0};
  double d = from == TY_F32 ? x.f : x.d;
  if (!ir_type_is_float(from) && !ir_type_is_float(to))
    r.i = wrap(to, (uint64_t)x.i);   /* sign-extend / truncate; bool: 0 or 1 */
  else if (!ir_type_is_float(from) && to == TY_F32)
    r.f = (float)x.i;
  else if (!ir_type_is_float(from))
    r.d = (double)x.i;
  else if (ir_type_is_int(to))
    r.i = float_to_int(in, op, d);
  else if (to == TY_F32)
    r.f = (float)d;
  else
    r.d = d;
  return r;
}

static Val bitcast(const Op *op, Val x) {
  Type from = op->a[0]->type, to = op->type;
  Val r = {0};
  if (from == to)
    return x;
  if (to == TY_F32) {
    int32_t b = (int32_t)x.i;
    memcpy(&r.f, &b, 4);
  } else if (to == TY_I32) {
    int32_t b;
    memcpy(&b, &x.f, 4);
    r.i = b;
  } else if (to == TY_F64) {
    memcpy(&r.d, &x.i, 8);
  } else {
    memcpy(&r.i, &x.d, 8);
  }
  return r;
}

static Val constant(const Op *op) {
  Val r = {0};
  if (op->type == TY_F32)
    r.f = (float)op->fval;
  else if (op->type == TY_F64)
    r.d = op->fval;
  else
    r.i = wrap(op->type, (uint64_t)op->ival);
  return r;
}

static Val eval(Interp *in, const Op *op) {
  Val *v = in->v;
  Val x = op->a[0] ? v[op->a[0]->id] : (Val){0};
  switch (op->kind) {
  case OP_NEG: case OP_EXP: case OP_LOG: case OP_SQRT: case OP_ABS:
    return unary(op, x);
  case OP_CTZ: return ctz(op, x);
  case OP_FMA: return fma_op(op, x, v[op->a[1]->id], v[op->a[2]->id]);
  case OP_CMP: return compare(op, x, v[op->a[1]->id]);
  case OP_SELECT: return x.i ? v[op->a[1]->id] : v[op->a[2]->id];
  case OP_CAST: return cast(in, op, x);
  case OP_BITCAST: return bitcast(op, x);
  default: return binary(in, op, x, v[op->a[1]->id]);
  }
}

/* ---- reductions ---- */

static Val identity(RedKind red, Type t) {
  Val r = {0};
  bool max = red == RED_MAX;
  if (red == RED_ADD)
    return r;
  if (t == TY_F32)
    r.f = max ? -INFINITY : INFINITY;
  else if (t == TY_F64)
    r.d = max ? -INFINITY : INFINITY;
  else if (t == TY_I32)
    r.i = max ? INT32_MIN : INT32_MAX;
  else
    r.i = max ? INT64_MIN : INT64_MAX;
  return r;
}

/* combine(a, b) with a the running/own value, as the mapped code computes it. */
static Val combine(RedKind red, Type t, Val a, Val b) {
  Val r = {0};
  if (t == TY_F32)
    r.f = red == RED_ADD ? a.f + b.f : red == RED_MAX ? fmaxf(a.f, b.f) : fminf(a.f, b.f);
  else if (t == TY_F64)
    r.d = red == RED_ADD ? a.d + b.d : red == RED_MAX ? fmax(a.d, b.d) : fmin(a.d, b.d);
  else if (red == RED_ADD)
    r.i = wrap(t, (uint64_t)a.i + (uint64_t)b.i);
  else
    r.i = (red == RED_MAX) == (a.i > b.i) ? a.i : b.i;
  return r;
}

/* shfl.bfly all-reduce over 32 lanes: at each offset every lane x takes
 * combine(v[x], v[x ^ off]). Returns lane 0's value (all lanes agree). */
static Val butterfly(RedKind red, Type t, const Val *lanes) {
  Val cur[IR_WARP_SIZE], next[IR_WARP_SIZE];
  memcpy(cur, lanes, sizeof cur);
  for (int off = IR_WARP_SIZE / 2; off > 0; off /= 2) {
    for (int x = 0; x < IR_WARP_SIZE; x++)
      next[x] = combine(red, t, cur[x], cur[x ^ off]);
    memcpy(cur, next, sizeof cur);
  }
  return cur[0];
}

static void enter_thread(Interp *in, int tid) {
  in->lvl = LVL_THREAD;
  in->tid = tid;
  in->warp = tid / IR_WARP_SIZE;
  traffic_thread(in);
}

/* Fold the body's yields over index = start, start+step, ... < extent. */
static Val fold(Interp *in, const Op *op, int64_t start, int64_t step) {
  int64_t n = in->v[op->a[0]->id].i;
  const Block *body = &op->body;
  int yid = body->ops[body->n - 1]->a[0]->id;
  Val acc = identity(op->red, op->type);
  for (int64_t i = start; i < n; i += step) {
    in->v[op->index->id].i = i;
    interp_exec_block(in, body);
    acc = combine(op->red, op->type, acc, in->v[yid]);
  }
  return acc;
}

/* reduce.lane: a warp collective and a warp sync point. */
static Val reduce_lane(Interp *in, const Op *op) {
  int w = in->warp;
  Val part[IR_WARP_SIZE];
  for (int l = 0; l < IR_WARP_SIZE; l++) {
    enter_thread(in, IR_WARP_SIZE * w + l);
    part[l] = fold(in, op, l, IR_WARP_SIZE);
  }
  in->lvl = LVL_WARP;
  in->warp = w;
  in->wepoch[w]++;
  traffic_flush(in);
  return butterfly(op->red, op->type, part);
}

/* reduce.block: per-warp butterflies, then warps 0..W-1 in order (map.c's
 * block_reduce). It contains barriers. */
static Val reduce_block(Interp *in, const Op *op) {
  Val part[IR_WARP_SIZE];
  Val acc = identity(op->red, op->type);
  for (int w = 0; w < in->W; w++) {
    for (int l = 0; l < IR_WARP_SIZE; l++) {
      enter_thread(in, IR_WARP_SIZE * w + l);
      part[l] = fold(in, op, IR_WARP_SIZE * w + l, in->T);
    }
    acc = combine(op->red, op->type, acc, butterfly(op->red, op->type, part));
  }
  in->lvl = LVL_BLOCK;
  in->bepoch++;
  traffic_flush(in);
  return acc;
}

static Val exec_reduce(Interp *in, const Op *op) {
  switch (op->axis) {
  case AXIS_LANE: return reduce_lane(in, op);
  case AXIS_BLOCK: return reduce_block(in, op);
  default: return fold(in, op, 0, 1);
  }
}

/* ---- loops and parallel loops ---- */

static void strided(Interp *in, const Op *op, int64_t start, int64_t end, int64_t step) {
  for (int64_t i = start; i < end; i += step) {
    in->v[op->index->id].i = i;
    interp_exec_block(in, &op->body);
  }
}

static void exec_pfor(Interp *in, const Op *op) {
  int64_t n = in->v[op->a[0]->id].i;
  if (op->axis == AXIS_BLOCK) {
    for (int t = 0; t < in->T; t++) {
      enter_thread(in, t);
      strided(in, op, t, n, in->T);
    }
    in->lvl = LVL_BLOCK;
    traffic_flush(in);
  } else if (op->axis == AXIS_WARP) {
    for (int w = 0; w < in->W; w++) {
      in->lvl = LVL_WARP;
      in->warp = w;
      strided(in, op, w, n, in->W);
    }
    in->lvl = LVL_BLOCK;
  } else {
    int w = in->warp;
    for (int l = 0; l < IR_WARP_SIZE; l++) {
      enter_thread(in, IR_WARP_SIZE * w + l);
      strided(in, op, l, n, IR_WARP_SIZE);
    }
    in->lvl = LVL_WARP;
    in->warp = w;
    in->wepoch[w]++;   /* the end of a pfor.lane is a warpsync */
    traffic_flush(in);
  }
}

/* transpose16: a warp collective split over the lanes as the GPU mapping splits it
 * (map.c), so the race checks see the threads the GPU would use. */
static void exec_transpose(Interp *in, const Op *op) {
  const int n = IR_TRANSPOSE_N;
  const Val *v = in->v;
  int64_t di = v[op->a[0]->id].i, si = v[op->a[1]->id].i, ss = v[op->a[2]->id].i;
  int64_t rows = v[op->a[3]->id].i;
  if (in->lvl != LVL_WARP)
    interp_fail(in, op, "transpose16 outside warp-level code");
  int w = in->warp;
  for (int l = 0; l < IR_WARP_SIZE; l++) {
    enter_thread(in, IR_WARP_SIZE * w + l);
    for (int e = l; e < n * n; e += IR_WARP_SIZE) {
      int64_t r = e / n, c = e % n;
      Val x = {.f = 0};
      if (r < rows)
        x = mem_load_from(in, op, op->src, si + r * ss + c);
      mem_store(in, op, di + c * op->ival + r, x);
    }
  }
  in->lvl = LVL_WARP;
  in->warp = w;
  in->wepoch[w]++;
  traffic_flush(in);
}

static void exec_op(Interp *in, const Op *op) {
  Val *v = in->v;
  switch (op->kind) {
  case OP_CONST: v[op->id] = constant(op); return;
  case OP_PARAM: v[op->id] = in->params[op->ival]; return;
  case OP_BLOCK_ID: v[op->id] = (Val){.i = in->bid[op->ival]}; return;
  case OP_LOAD: v[op->id] = mem_load(in, op, v[op->a[0]->id].i); return;
  case OP_STORE: mem_store(in, op, v[op->a[0]->id].i, v[op->a[1]->id]); return;
  case OP_ATOMIC_ADD:
    v[op->id] = mem_atomic_add(in, op, v[op->a[0]->id].i, v[op->a[1]->id]);
    return;
  case OP_VAR: v[op->id] = v[op->a[0]->id]; return;
  case OP_GET: v[op->id] = v[op->var->id]; return;
  case OP_SET: v[op->var->id] = v[op->a[0]->id]; return;
  case OP_FOR: strided(in, op, v[op->a[0]->id].i, v[op->a[1]->id].i, op->ival); return;
  case OP_IF: interp_exec_block(in, v[op->a[0]->id].i ? &op->body : &op->els); return;
  case OP_PFOR: exec_pfor(in, op); return;
  case OP_REDUCE: v[op->id] = exec_reduce(in, op); return;
  case OP_YIELD: return;   /* the enclosing reduce reads the operand */
  case OP_BARRIER: in->bepoch++; return;
  case OP_TRANSPOSE: exec_transpose(in, op); return;
  case OP_PREFETCH: return;   /* a hint: no effect, and no bounds to check */
  case OP_INDEX: case OP_THREAD_ID: case OP_WARP_REDUCE: case OP_WARPSYNC: case OP__COUNT:
    interp_fail(in, op, "cannot interpret this op");
  default: v[op->id] = eval(in, op); return;
  }
}

void interp_exec_block(Interp *in, const Block *blk) {
  for (int i = 0; i < blk->n; i++)
    exec_op(in, blk->ops[i]);
}
