/* The simplify pass: fold constants, apply exact algebraic identities, and delete
 * pure ops nobody uses. Identities are applied to integers only: float ones such
 * as x+0 -> x do not hold for every input (-0 + 0 = +0). */
#include "passes.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static bool is_const(const Op *op) { return op && op->kind == OP_CONST; }

static bool is_int_const(const Op *op, int64_t v) {
  return is_const(op) && ir_type_is_int(op->type) && op->ival == v;
}

static int64_t wrap(Type t, int64_t v) { return t == TY_I32 ? (int32_t)(uint32_t)v : v; }

/* Integer folding with two's complement wrap-around; no folding of division by
 * zero or INT_MIN / -1 (left for run time, where the target defines it). */
static bool fold_int(OpKind kind, Type t, int64_t x, int64_t y, int64_t *r) {
  uint64_t ux = (uint64_t)x, uy = (uint64_t)y;
  int bits = ir_type_bits(t);
  switch (kind) {
  case OP_ADD: *r = (int64_t)(ux + uy); break;
  case OP_SUB: *r = (int64_t)(ux - uy); break;
  case OP_MUL: *r = (int64_t)(ux * uy); break;
  case OP_DIV: case OP_REM:
    if (y == 0 || (y == -1 && (x == INT64_MIN || (bits == 32 && x == INT32_MIN))))
      return false;
    *r = kind == OP_DIV ? x / y : x % y;
    break;
  case OP_MIN: *r = x < y ? x : y; break;
  case OP_MAX: *r = x > y ? x : y; break;
  case OP_AND: *r = x & y; break;
  case OP_OR: *r = x | y; break;
  case OP_XOR: *r = x ^ y; break;
  case OP_SHL: case OP_SHR:
    if (y < 0 || y >= bits)
      return false;
    if (kind == OP_SHL)
      *r = (int64_t)(ux << y);
    else
      *r = (int64_t)((bits == 32 ? (uint64_t)(uint32_t)ux : ux) >> y);
    break;
  default:
    return false;
  }
  *r = wrap(t, *r);
  return true;
}

static bool fold_float(OpKind kind, Type t, double x, double y, double *r) {
  switch (kind) {
  case OP_ADD: *r = x + y; break;
  case OP_SUB: *r = x - y; break;
  case OP_MUL: *r = x * y; break;
  case OP_DIV: *r = x / y; break;
  default:
    return false;
  }
  if (t == TY_F32)
    *r = (float)*r;
  return true;
}

static void make_const(Op *op, int64_t iv, double fv) {
  op->kind = OP_CONST;
  op->ival = iv;
  op->fval = fv;
  memset(op->a, 0, sizeof op->a);
}

static bool fold(Kernel *k, Op *op) {
  Op *x = op->a[0], *y = op->a[1];
  switch (op->kind) {
  case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV: case OP_REM: case OP_MIN: case OP_MAX:
  case OP_AND: case OP_OR: case OP_XOR: case OP_SHL: case OP_SHR:
    break;
  case OP_CAST:
    if (!is_const(x))
      return false;
    if (ir_type_is_int(op->type) && ir_type_is_int(x->type))
      make_const(op, wrap(op->type, x->ival), 0);
    else if (ir_type_is_float(op->type) && ir_type_is_int(x->type))
      make_const(op, 0, op->type == TY_F32 ? (float)x->ival : (double)x->ival);
    else if (ir_type_is_float(op->type) && ir_type_is_float(x->type))
      make_const(op, 0, op->type == TY_F32 ? (float)x->fval : x->fval);
    else
      return false;
    return true;
  default:
    return false;
  }
  if (is_const(x) && is_const(y)) {
    int64_t ir;
    double fr;
    if (ir_type_is_int(op->type) && fold_int(op->kind, op->type, x->ival, y->ival, &ir)) {
      make_const(op, ir, 0);
      return true;
    }
    if (ir_type_is_float(op->type) && fold_float(op->kind, op->type, x->fval, y->fval, &fr)) {
      make_const(op, 0, fr);
      return true;
    }
    return false;
  }
  /* exact identities on integers */
  Op *keep = NULL;
  if ((op->kind == OP_ADD || op->kind == OP_OR || op->kind == OP_XOR) && is_int_const(y, 0))
    keep = x;
  else if ((op->kind == OP_ADD || op->kind == OP_OR) && is_int_const(x, 0))
    keep = y;
  else if ((op->kind == OP_SUB || op->kind == OP_SHL || op->kind == OP_SHR) && is_int_const(y, 0))
    keep = x;
  else if ((op->kind == OP_MUL || op->kind == OP_DIV) && is_int_const(y, 1))
    keep = x;
  else if (op->kind == OP_MUL && is_int_const(x, 1))
    keep = y;
  else if (op->kind == OP_MUL && (is_int_const(x, 0) || is_int_const(y, 0))) {
    make_const(op, 0, 0);
    return true;
  }
  if (!keep)
    return false;
  ir_replace_uses(k, op, keep);
  return true;
}

static bool fold_block(Kernel *k, Block *blk) {
  bool changed = false;
  for (int i = 0; i < blk->n; i++) {
    Op *op = blk->ops[i];
    changed |= fold_block(k, &op->body);
    changed |= fold_block(k, &op->els);
    changed |= fold(k, op);
  }
  return changed;
}

/* ---- dead code ---- */

static void count_uses(Block *blk, int *uses) {
  for (int i = 0; i < blk->n; i++) {
    Op *op = blk->ops[i];
    for (int j = 0; j < IR_MAX_OPERANDS; j++)
      if (op->a[j])
        uses[op->a[j]->id]++;
    if (op->var)
      uses[op->var->id]++;
    count_uses(&op->body, uses);
    count_uses(&op->els, uses);
  }
}

static bool is_pure(const Op *op) {
  switch (op->kind) {
  case OP_STORE: case OP_ATOMIC_ADD: case OP_TRANSPOSE: case OP_PREFETCH: case OP_SET: case OP_FOR: case OP_IF: case OP_PFOR:
  case OP_YIELD: case OP_BARRIER: case OP_WARPSYNC: case OP_PARAM: case OP_REDUCE:
  case OP_WARP_REDUCE:
    return false;   /* params define the signature; reduces and collectives stay in place */
  default:
    return true;
  }
}

static bool sweep_block(Block *blk, const int *uses) {
  bool changed = false;
  int w = 0;
  for (int i = 0; i < blk->n; i++) {
    Op *op = blk->ops[i];
    changed |= sweep_block(&op->body, uses);
    changed |= sweep_block(&op->els, uses);
    if (is_pure(op) && ir_op_has_result(op) && uses[op->id] == 0) {
      changed = true;
      continue;
    }
    blk->ops[w++] = op;
  }
  blk->n = w;
  return changed;
}

static bool dead_code(Kernel *k) {
  ir_number(k);
  int *uses = calloc((size_t)k->next_id + 1, sizeof(int));
  if (!uses)
    abort();
  count_uses(&k->body, uses);
  bool changed = sweep_block(&k->body, uses);
  free(uses);
  return changed;
}

int ir_simplify(Kernel *k, char *err, size_t cap) {
  (void)err;
  (void)cap;
  for (int round = 0; round < 16; round++) {
    bool changed = fold_block(k, &k->body);
    changed |= dead_code(k);
    if (!changed)
      break;
  }
  return 0;
}
