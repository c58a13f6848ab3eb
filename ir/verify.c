/* The IR verifier: scoping, types, and the rules of the parallel model (see ir.h).
 *
 * Parallel context: code starts at block level; pfor.block and pfor.lane enter a
 * single-thread context, pfor.warp a warp context. Barriers and block reductions
 * belong at block level, lane pfors and lane reductions at warp level, stores and
 * atomic adds in a single-thread context, and a var is assigned only in the context
 * that declared it. */
#include "ir.h"
#include "passes.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef enum { CTX_BLOCK, CTX_WARP, CTX_THREAD } Ctx;

typedef struct {
  Kernel *k;
  char *err;
  size_t cap;
  bool failed;
  Op **scope;          /* values visible at this point, innermost last */
  int nscope, cscope;
  int *var_depth;      /* by op id: pfor depth at which a var was declared */
  int depth;           /* pfor nesting depth */
} Verifier;

static void fail(Verifier *v, const Op *op, const char *fmt, ...) {
  if (v->failed)
    return;
  v->failed = true;
  int n = snprintf(v->err, v->cap, "kernel %s: ", v->k->name);
  if (op && n >= 0 && (size_t)n < v->cap && op->id >= 0)
    n += snprintf(v->err + n, v->cap - (size_t)n, "%%%d (%s): ", op->id, ir_op_name(op->kind));
  else if (op && n >= 0 && (size_t)n < v->cap)   /* ids number values only */
    n += snprintf(v->err + n, v->cap - (size_t)n, "%s: ", ir_op_name(op->kind));
  if (n >= 0 && (size_t)n < v->cap) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->err + n, v->cap - (size_t)n, fmt, ap);
    va_end(ap);
  }
}

static void define(Verifier *v, Op *op) {
  if (v->nscope == v->cscope) {
    v->cscope = v->cscope ? 2 * v->cscope : 64;
    v->scope = realloc(v->scope, (size_t)v->cscope * sizeof(Op *));
    if (!v->scope)
      abort();
  }
  v->scope[v->nscope++] = op;
}

static bool visible(const Verifier *v, const Op *x) {
  for (int i = v->nscope - 1; i >= 0; i--)
    if (v->scope[i] == x)
      return true;
  return false;
}

static bool owns_buf(const Kernel *k, const Buf *b) {
  for (int i = 0; i < k->nbufs; i++)
    if (k->bufs[i] == b)
      return true;
  return false;
}

static void check_operands(Verifier *v, Op *op) {
  for (int i = 0; i < ir_op_arity(op); i++) {
    if (!op->a[i])
      fail(v, op, "operand %d is missing", i);
    else if (!visible(v, op->a[i]))
      fail(v, op, "operand %%%d is not defined before this use in an enclosing block",
           op->a[i]->id);
    else if (!ir_op_has_result(op->a[i]))
      fail(v, op, "operand %d has no value", i);
  }
}

static void check_types(Verifier *v, Op *op) {
  Op **a = op->a;
  switch (op->kind) {
  case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV: case OP_REM: case OP_MIN: case OP_MAX:
    if (a[0]->type != op->type || a[1]->type != op->type || !(ir_type_is_int(op->type) ||
                                                            ir_type_is_float(op->type)))
      fail(v, op, "operands must be numbers of the result type %s", ir_type_name(op->type));
    break;
  case OP_AND: case OP_OR: case OP_XOR: case OP_SHL: case OP_SHR:
    if (a[0]->type != op->type || a[1]->type != op->type || ir_type_is_float(op->type))
      fail(v, op, "bitwise operands must be integers (or bools) of one type");
    break;
  case OP_FMA:
    if (!ir_type_is_float(op->type) || a[0]->type != op->type || a[1]->type != op->type ||
        a[2]->type != op->type)
      fail(v, op, "fma takes three floats of one type");
    break;
  case OP_NEG:
    if (a[0]->type != op->type)
      fail(v, op, "operand type differs from result");
    break;
  case OP_CTZ:
    if (a[0]->type != op->type || !ir_type_is_int(op->type))
      fail(v, op, "ctz takes and returns an i32 or i64");
    break;
  case OP_EXP: case OP_LOG: case OP_SQRT: case OP_ABS:
    if (!ir_type_is_float(op->type) || a[0]->type != op->type)
      fail(v, op, "math ops take and return a float");
    break;
  case OP_CMP:
    if (a[0]->type != a[1]->type || op->type != TY_BOOL)
      fail(v, op, "compare operands differ in type (%s vs %s)", ir_type_name(a[0]->type),
           ir_type_name(a[1]->type));
    else if ((op->pred == CMP_ULT || op->pred == CMP_UGE) && !ir_type_is_int(a[0]->type))
      fail(v, op, "unsigned compare needs integers");
    break;
  case OP_SELECT:
    if (a[0]->type != TY_BOOL || a[1]->type != op->type || a[2]->type != op->type)
      fail(v, op, "select needs a bool condition and two values of the result type");
    break;
  case OP_CAST:
    if (op->type == TY_VOID || op->type == TY_BOOL || a[0]->type == TY_VOID)
      fail(v, op, "cast to or from %s", ir_type_name(op->type));
    break;
  case OP_BITCAST:
    if (ir_type_bits(op->type) != ir_type_bits(a[0]->type) || op->type == TY_BOOL)
      fail(v, op, "bitcast changes width (%s to %s)", ir_type_name(a[0]->type),
           ir_type_name(op->type));
    break;
  case OP_WARP_REDUCE:
    if (a[0]->type != op->type)
      fail(v, op, "operand type differs from result");
    break;
  default:
    break;
  }
}

/* An atomic add reads and writes one element, like a store done by one thread. */
static void check_atomic(Verifier *v, Op *op, Ctx ctx) {
  Buf *b = op->buf;
  if (b->space == SPACE_LOCAL)
    fail(v, op, "atomic_add on local array %s (atomics are for shared or global memory)",
         b->name);
  else if (b->role != ROLE_INOUT)
    fail(v, op, "atomic_add on %s buffer %s (it reads and writes: the buffer must be inout)",
         b->role == ROLE_IN ? "input" : "output-only", b->name);
  if (b->elem != TY_I32 && b->elem != TY_F32)
    fail(v, op, "atomic_add on %s buffer %s (i32 or f32 only)", ir_type_name(b->elem), b->name);
  else if (op->a[1]->type != b->elem || op->type != b->elem)
    fail(v, op, "adds %s to %s buffer %s", ir_type_name(op->a[1]->type), ir_type_name(b->elem),
         b->name);
  if (ctx != CTX_THREAD && !v->k->mapped)
    fail(v, op, "atomic_add outside a single-thread context (wrap it in pfor.block or "
         "pfor.lane)");
}

static void check_memory(Verifier *v, Op *op, Ctx ctx) {
  if (!op->buf || !owns_buf(v->k, op->buf)) {
    fail(v, op, "buffer does not belong to this kernel");
    return;
  }
  if (!ir_type_is_int(op->a[0]->type))
    fail(v, op, "index of %s must be an integer", op->buf->name);
  if (op->kind == OP_LOAD && op->buf->role == ROLE_OUT)
    fail(v, op, "load from output-only buffer %s", op->buf->name);
  if (op->kind == OP_ATOMIC_ADD) {
    check_atomic(v, op, ctx);
    return;
  }
  if (op->kind != OP_STORE)
    return;
  if (op->a[1]->type != op->buf->elem)
    fail(v, op, "stores %s into %s buffer %s", ir_type_name(op->a[1]->type),
         ir_type_name(op->buf->elem), op->buf->name);
  if (op->buf->role == ROLE_IN)
    fail(v, op, "store to input buffer %s", op->buf->name);
  if (ctx != CTX_THREAD && !v->k->mapped)
    fail(v, op, "store outside a single-thread context (wrap it in pfor.block or pfor.lane)");
}

/* A warp collective (like pfor.lane): both tiles are f32, every index an integer. */
static void check_transpose(Verifier *v, Op *op, Ctx ctx) {
  Buf *dst = op->buf, *src = op->src;
  if (!dst || !src || !owns_buf(v->k, dst) || !owns_buf(v->k, src)) {
    fail(v, op, "buffer does not belong to this kernel");
    return;
  }
  for (int i = 0; i < 4; i++)
    if (!ir_type_is_int(op->a[i]->type))
      fail(v, op, "operand %d must be an integer", i);
  if (dst->elem != TY_F32 || src->elem != TY_F32)
    fail(v, op, "transposes f32 tiles only (%s from %s)", dst->name, src->name);
  if (dst->role == ROLE_IN)
    fail(v, op, "store to input buffer %s", dst->name);
  if (src->role == ROLE_OUT)
    fail(v, op, "load from output-only buffer %s", src->name);
  if (op->ival <= 0)
    fail(v, op, "destination row stride %lld (must be positive)", (long long)op->ival);
  if (v->k->mapped && v->k->target != MAP_CPU)
    fail(v, op, "transpose16 left in a GPU-mapped kernel (the map expands it)");
  if (!v->k->mapped && ctx != CTX_WARP)
    fail(v, op, "transpose16 must be in warp-level code (directly inside a pfor.warp)");
}

static void check_var(Verifier *v, Op *op) {
  Op *var = op->var;
  if (!var || var->kind != OP_VAR || !visible(v, var)) {
    fail(v, op, "not a var visible here");
    return;
  }
  if (op->kind == OP_SET) {
    if (op->a[0]->type != var->type)
      fail(v, op, "assigns %s to %s var %%%d", ir_type_name(op->a[0]->type),
           ir_type_name(var->type), var->id);
    if (!v->k->mapped && v->var_depth[var->id] != v->depth)
      fail(v, op, "var %%%d is assigned inside a nested parallel region", var->id);
  }
}

static void verify_block(Verifier *v, Block *blk, Ctx ctx, bool in_reduce);

static void verify_body(Verifier *v, Op *op, Block *blk, Ctx ctx, bool in_reduce) {
  int mark = v->nscope;
  if (op->index) {
    if (!ir_type_is_int(op->index->type))
      fail(v, op, "index must be an integer");
    define(v, op->index);
  }
  verify_block(v, blk, ctx, in_reduce);
  v->nscope = mark;
}

static void verify_parallel(Verifier *v, Op *op, Ctx ctx) {
  bool mapped = v->k->mapped;
  if (!ir_type_is_int(op->a[0]->type))
    fail(v, op, "extent must be an integer");
  if (mapped && !(op->kind == OP_REDUCE && op->axis == AXIS_SERIAL))
    fail(v, op, "parallel op left in a mapped kernel");
  if (op->kind == OP_PFOR) {
    if (op->axis == AXIS_SERIAL)
      fail(v, op, "pfor needs a parallel axis");
    else if (op->axis == AXIS_LANE && ctx != CTX_WARP)
      fail(v, op, "pfor.lane must be directly inside a pfor.warp");
    else if (op->axis != AXIS_LANE && ctx != CTX_BLOCK)
      fail(v, op, "pfor.%s must be in block-level code", ir_axis_name(op->axis));
    v->depth++;
    verify_body(v, op, &op->body, op->axis == AXIS_WARP ? CTX_WARP : CTX_THREAD, false);
    v->depth--;
    return;
  }
  if (op->axis == AXIS_LANE && ctx != CTX_WARP)
    fail(v, op, "reduce.lane must be in warp-level code");
  if (op->axis == AXIS_BLOCK && ctx != CTX_BLOCK)
    fail(v, op, "reduce.block must be in block-level code");
  if (op->axis == AXIS_WARP)
    fail(v, op, "reduce over warps is not supported; use reduce.block");
  Block *body = &op->body;
  Op *last = body->n ? body->ops[body->n - 1] : NULL;
  if (!last || last->kind != OP_YIELD)
    fail(v, op, "reduce body must end in yield");
  v->depth += op->axis != AXIS_SERIAL;
  verify_body(v, op, body, op->axis == AXIS_SERIAL ? ctx : CTX_THREAD, true);
  v->depth -= op->axis != AXIS_SERIAL;
  if (!v->failed && last->a[0]->type != op->type)
    fail(v, op, "yields %s from a %s reduce", ir_type_name(last->a[0]->type),
         ir_type_name(op->type));
}

static void verify_op(Verifier *v, Op *op, Ctx ctx, bool last_in_reduce) {
  check_operands(v, op);
  if (v->failed)
    return;
  check_types(v, op);
  switch (op->kind) {
  case OP_PARAM:
    if (op->ival < 0 || op->ival >= v->k->nparams || v->k->params[op->ival].buf)
      fail(v, op, "not a scalar parameter");
    break;
  case OP_BLOCK_ID:
    if (op->ival < 0 || op->ival > 2)
      fail(v, op, "grid dimension %d", (int)op->ival);
    break;
  case OP_LOAD: case OP_STORE: case OP_ATOMIC_ADD: case OP_PREFETCH:
    check_memory(v, op, ctx);
    break;
  case OP_TRANSPOSE:
    check_transpose(v, op, ctx);
    break;
  case OP_VAR:
    v->var_depth[op->id] = v->depth;
    break;
  case OP_GET: case OP_SET:
    check_var(v, op);
    break;
  case OP_FOR:
    if (op->a[0]->type != op->a[1]->type || !ir_type_is_int(op->a[0]->type) || op->ival <= 0)
      fail(v, op, "for needs integer bounds of one type and a positive step");
    verify_body(v, op, &op->body, ctx, false);
    break;
  case OP_IF:
    if (op->a[0]->type != TY_BOOL)
      fail(v, op, "if needs a bool condition");
    verify_body(v, op, &op->body, ctx, false);
    verify_body(v, op, &op->els, ctx, false);
    break;
  case OP_PFOR: case OP_REDUCE:
    verify_parallel(v, op, ctx);
    break;
  case OP_YIELD:
    if (!last_in_reduce)
      fail(v, op, "yield outside the end of a reduce body");
    break;
  case OP_BARRIER:
    if (ctx != CTX_BLOCK && !v->k->mapped)
      fail(v, op, "barrier inside a parallel region (threads would diverge)");
    break;
  case OP_THREAD_ID: case OP_WARP_REDUCE: case OP_WARPSYNC:
    if (!v->k->mapped)
      fail(v, op, "%s is a mapped-only op", ir_op_name(op->kind));
    break;
  case OP_INDEX:
    fail(v, op, "an index value placed in a block");
    break;
  default:
    break;
  }
  if (ir_op_has_result(op))
    define(v, op);
}

static void verify_block(Verifier *v, Block *blk, Ctx ctx, bool in_reduce) {
  for (int i = 0; i < blk->n && !v->failed; i++) {
    if (!blk->ops[i]) {
      fail(v, NULL, "null op in a block");
      return;
    }
    verify_op(v, blk->ops[i], ctx, in_reduce && i == blk->n - 1);
  }
}

static void verify_signature(Verifier *v) {
  Kernel *k = v->k;
  if (k->warps < 1 || k->warps > 32)
    fail(v, NULL, "warps must be 1..32, got %d", k->warps);
  for (int d = 0; d < 3; d++)
    for (int j = 0; j < 2; j++) {
      int p = k->grid[d].params[j];
      if (p >= k->nparams || (p >= 0 && (k->params[p].buf || !ir_type_is_int(k->params[p].type))))
        fail(v, NULL, "grid dim %d refers to a non-integer parameter", d);
    }
  for (int i = 0; i < k->nbufs; i++) {
    Buf *b = k->bufs[i];
    if (b->space != SPACE_GLOBAL && b->size <= 0)
      fail(v, NULL, "%s array %s has no size", b->space == SPACE_SHARED ? "shared" : "local",
           b->name);
  }
}

int ir_verify(Kernel *k, char *err, size_t cap) {
  ir_number(k);
  Verifier v = {.k = k, .err = err, .cap = cap};
  v.var_depth = calloc((size_t)k->next_id + 1, sizeof(int));
  if (!v.var_depth)
    abort();
  if (cap)
    err[0] = 0;
  verify_signature(&v);
  if (!v.failed)
    verify_block(&v, &k->body, CTX_BLOCK, false);
  free(v.scope);
  free(v.var_depth);
  return v.failed ? -1 : 0;
}
