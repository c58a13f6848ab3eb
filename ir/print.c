/* The IR printer: one uniform text format for `crispc --emit ir` and `-d PASS`.
 *
 *   kernel NAME(params) warps=W grid=(...) {
 *     shared S: f32[1024]
 *     %3 = add %1, %2 : i32
 *     %5 = atomic_add hist[%4], %3 : i32
 *     for %4 = %0 to %3 step 1 {
 *     pfor.lane %7 < %6 {
 *     %9 = reduce.lane.max %10 < %6 : f32 {   ...   yield %12 }
 *   }
 */
#include "ir.h"

#include <inttypes.h>

static void indent(FILE *out, int depth) {
  for (int i = 0; i < depth; i++)
    fputs("  ", out);
}

static void ref(FILE *out, const Op *v) {
  if (!v) {
    fputs("<null>", out);
    return;
  }
  fprintf(out, "%%%d", v->id);
}

static void print_const(FILE *out, const Op *op) {
  if (ir_type_is_float(op->type))
    fprintf(out, "%.9g", op->fval);
  else if (op->type == TY_BOOL)
    fputs(op->ival ? "true" : "false", out);
  else
    fprintf(out, "%" PRId64, op->ival);
}

static void print_block(FILE *out, const Kernel *k, const Block *blk, int depth);

static void print_operands(FILE *out, const Op *op) {
  int n = ir_op_arity(op);
  for (int i = 0; i < n; i++) {
    fputs(i ? ", " : " ", out);
    ref(out, op->a[i]);
  }
}

static void print_structured(FILE *out, const Kernel *k, const Op *op, int depth) {
  switch (op->kind) {
  case OP_FOR:
    fputs("for ", out);
    ref(out, op->index);
    fputs(" = ", out);
    ref(out, op->a[0]);
    fputs(" to ", out);
    ref(out, op->a[1]);
    fprintf(out, " step %" PRId64 "%s {", op->ival, op->vectorize ? " vectorize" : "");
    break;
  case OP_IF:
    fputs("if ", out);
    ref(out, op->a[0]);
    fputs(" {", out);
    break;
  case OP_PFOR:
    fprintf(out, "pfor.%s ", ir_axis_name(op->axis));
    ref(out, op->index);
    fputs(" < ", out);
    ref(out, op->a[0]);
    fputs(" {", out);
    break;
  default: /* OP_REDUCE */
    fprintf(out, "%%%d = reduce.%s.%s ", op->id, ir_axis_name(op->axis), ir_red_name(op->red));
    ref(out, op->index);
    fputs(" < ", out);
    ref(out, op->a[0]);
    fprintf(out, " : %s {", ir_type_name(op->type));
    break;
  }
  if (op->index && op->index->hint)
    fprintf(out, "  ; %s", op->index->hint);
  fputc('\n', out);
  print_block(out, k, &op->body, depth + 1);
  if (op->kind == OP_IF && op->els.n) {
    indent(out, depth);
    fputs("} else {\n", out);
    print_block(out, k, &op->els, depth + 1);
  }
  indent(out, depth);
  fputs("}\n", out);
}

static void print_op(FILE *out, const Kernel *k, const Op *op, int depth) {
  indent(out, depth);
  switch (op->kind) {
  case OP_FOR: case OP_IF: case OP_PFOR: case OP_REDUCE:
    print_structured(out, k, op, depth);
    return;
  default:
    break;
  }
  if (ir_op_has_result(op))
    fprintf(out, "%%%d = ", op->id);
  fputs(ir_op_name(op->kind), out);
  switch (op->kind) {
  case OP_CONST:
    fputc(' ', out);
    print_const(out, op);
    break;
  case OP_PARAM:
    fprintf(out, " %s", k->params[op->ival].name);
    break;
  case OP_BLOCK_ID:
    fprintf(out, " %c", "xyz"[op->ival]);
    break;
  case OP_CMP:
    fprintf(out, ".%s", ir_pred_name(op->pred));
    print_operands(out, op);
    break;
  case OP_WARP_REDUCE:
    fprintf(out, ".%s", ir_red_name(op->red));
    print_operands(out, op);
    break;
  case OP_LOAD: case OP_PREFETCH:
    fprintf(out, " %s[", op->buf->name);
    ref(out, op->a[0]);
    fputc(']', out);
    break;
  case OP_STORE:
    fprintf(out, " %s[", op->buf->name);
    ref(out, op->a[0]);
    fputs("] = ", out);
    ref(out, op->a[1]);
    break;
  case OP_TRANSPOSE:   /* transpose16 dst[%0 + c*LD + r] = src[%1 + r*%2 + c], rows %3 */
    fprintf(out, " %s[", op->buf->name);
    ref(out, op->a[0]);
    fprintf(out, " + c*%" PRId64 " + r] = %s[", op->ival, op->src->name);
    ref(out, op->a[1]);
    fputs(" + r*", out);
    ref(out, op->a[2]);
    fputs(" + c], rows ", out);
    ref(out, op->a[3]);
    break;
  case OP_ATOMIC_ADD:
    fprintf(out, " %s[", op->buf->name);
    ref(out, op->a[0]);
    fputs("], ", out);
    ref(out, op->a[1]);
    break;
  case OP_GET:
    fputc(' ', out);
    ref(out, op->var);
    break;
  case OP_SET:
    fputc(' ', out);
    ref(out, op->var);
    fputs(" = ", out);
    ref(out, op->a[0]);
    break;
  default:
    print_operands(out, op);
    break;
  }
  if (ir_op_has_result(op))
    fprintf(out, " : %s", ir_type_name(op->type));
  if (op->hint && op->kind != OP_PARAM)
    fprintf(out, "  ; %s", op->hint);
  fputc('\n', out);
}

static void print_block(FILE *out, const Kernel *k, const Block *blk, int depth) {
  for (int i = 0; i < blk->n; i++)
    print_op(out, k, blk->ops[i], depth);
}

static const char *const space_names[] = {"global", "shared", "local"};
static const char *const role_names[] = {"in", "out", "inout", "scalar"};

static void print_header(FILE *out, const Kernel *k) {
  fprintf(out, "kernel %s(", k->name);
  for (int i = 0; i < k->nparams; i++) {
    const Param *p = &k->params[i];
    if (i)
      fputs(", ", out);
    if (p->buf)
      fprintf(out, "%s: %s* %s", p->name, ir_type_name(p->buf->elem), role_names[p->buf->role]);
    else
      fprintf(out, "%s: %s", p->name, ir_type_name(p->type));
  }
  fprintf(out, ") warps=%d grid=(", k->warps);
  for (int d = 0; d < 3; d++) {
    const GridDim *g = &k->grid[d];
    if (d)
      fputs(", ", out);
    if (g->params[0] < 0) {
      fputc('1', out);
      continue;
    }
    fputs(g->div > 1 ? "ceil(" : "", out);
    for (int j = 0; j < 2 && g->params[j] >= 0; j++)
      fprintf(out, "%s%s", j ? "*" : "", k->params[g->params[j]].name);
    if (g->div > 1)
      fprintf(out, "/%d)", g->div);
  }
  fprintf(out, ")%s {\n", k->mapped ? " mapped" : "");
  for (int i = 0; i < k->nbufs; i++) {
    const Buf *b = k->bufs[i];
    if (b->space != SPACE_GLOBAL)
      fprintf(out, "  %s %s: %s[%" PRId64 "]\n", space_names[b->space], b->name,
              ir_type_name(b->elem), b->size);
  }
}

void ir_print(FILE *out, Kernel *k) {
  ir_number(k);
  print_header(out, k);
  print_block(out, k, &k->body, 1);
  fputs("}\n", out);
}
