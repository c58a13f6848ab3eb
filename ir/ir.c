/* IR construction: kernels, buffers, the builder, and small type/op utilities.
 * Every Op and Buf of a kernel is allocated in the kernel's arena, so a kernel
 * (with everything any pass hung off it) is freed in one call. */
#include "ir.h"

#include <stdlib.h>
#include <string.h>

static void *must(void *p) {
  if (!p) {
    fputs("crisp: out of memory\n", stderr);
    abort();
  }
  return p;
}

static void *arena_alloc(Kernel *k, size_t size) {
  if (k->narena == k->carena) {
    k->carena = k->carena ? 2 * k->carena : 64;
    k->arena = must(realloc(k->arena, (size_t)k->carena * sizeof(void *)));
  }
  void *p = must(calloc(1, size));
  k->arena[k->narena++] = p;
  return p;
}

Kernel *ir_kernel_new(const char *name, int warps) {
  Kernel *k = must(calloc(1, sizeof *k));
  snprintf(k->name, sizeof k->name, "%s", name);
  k->warps = warps;
  for (int i = 0; i < 3; i++)
    k->grid[i] = (GridDim){{-1, -1}, 1};
  return k;
}

void ir_kernel_free(Kernel *k) {
  if (!k)
    return;
  for (int i = 0; i < k->narena; i++)
    free(k->arena[i]);
  free(k->arena);
  free(k);
}

void ir_module_free(Module *m) {
  for (int i = 0; i < m->n; i++)
    ir_kernel_free(m->kernels[i]);
  m->n = 0;
}

/* Block arrays come from the arena as well; a grown array leaves the old one
 * there until the kernel is freed (kernels are small). */
void ir_block_push(Kernel *k, Block *blk, Op *op) {
  if (blk->n == blk->cap) {
    int cap = blk->cap ? 2 * blk->cap : 8;
    Op **ops = arena_alloc(k, (size_t)cap * sizeof(Op *));
    if (blk->n)
      memcpy(ops, blk->ops, (size_t)blk->n * sizeof(Op *));
    blk->ops = ops;
    blk->cap = cap;
  }
  blk->ops[blk->n++] = op;
}

static Buf *buf_new(Kernel *k, const char *name, Type elem, Space space, int64_t size) {
  if (k->nbufs == (int)(sizeof k->bufs / sizeof k->bufs[0])) {
    fprintf(stderr, "crisp: kernel %s: too many buffers\n", k->name);
    abort();
  }
  Buf *b = arena_alloc(k, sizeof *b);
  b->id = k->nbufs;
  snprintf(b->name, sizeof b->name, "%s", name);
  b->elem = elem;
  b->space = space;
  b->size = size;
  b->param = -1;
  k->bufs[k->nbufs++] = b;
  return b;
}

static int param_new(Kernel *k, const char *name, Type t, Buf *buf) {
  if (k->nparams == (int)(sizeof k->params / sizeof k->params[0])) {
    fprintf(stderr, "crisp: kernel %s: too many parameters\n", k->name);
    abort();
  }
  Param *p = &k->params[k->nparams];
  snprintf(p->name, sizeof p->name, "%s", name);
  p->type = t;
  p->buf = buf;
  return k->nparams++;
}

Buf *ir_param_buf(Kernel *k, const char *name, Type elem, Role role) {
  Buf *b = buf_new(k, name, elem, SPACE_GLOBAL, 0);
  b->role = role;
  b->param = param_new(k, name, TY_VOID, b);
  return b;
}

Op *ir_param_scalar(Kernel *k, const char *name, Type t) {
  int idx = param_new(k, name, t, NULL);
  Builder b = ir_builder(k);
  Op *op = ir_append(&b, OP_PARAM, t);
  op->ival = idx;
  op->hint = k->params[idx].name;
  return op;
}

Buf *ir_shared(Kernel *k, const char *name, Type elem, int64_t size) {
  Buf *b = buf_new(k, name, elem, SPACE_SHARED, size);
  b->role = ROLE_INOUT;
  return b;
}

Buf *ir_local(Kernel *k, const char *name, Type elem, int64_t size) {
  Buf *b = buf_new(k, name, elem, SPACE_LOCAL, size);
  b->role = ROLE_INOUT;
  return b;
}

void ir_set_grid(Kernel *k, int dim, int param0, int param1, int div) {
  k->grid[dim] = (GridDim){{param0, param1}, div > 0 ? div : 1};
}

int ir_param_index(const Kernel *k, const char *name) {
  for (int i = 0; i < k->nparams; i++)
    if (!strcmp(k->params[i].name, name))
      return i;
  return -1;
}

static int64_t scalar_int(const Kernel *k, void *const *args, int p) {
  return k->params[p].type == TY_I64 ? *(const int64_t *)args[p] : *(const int32_t *)args[p];
}

void ir_grid(const Kernel *k, void *const *args, int32_t grid[3]) {
  for (int d = 0; d < 3; d++) {
    const GridDim *g = &k->grid[d];
    int64_t n = 1;
    for (int j = 0; j < 2; j++)
      if (g->params[j] >= 0)
        n *= scalar_int(k, args, g->params[j]);
    grid[d] = (int32_t)((n + g->div - 1) / g->div);
  }
}

/* ---- builder ---- */

Builder ir_builder(Kernel *k) { return (Builder){k, &k->body}; }

Op *ir_op_new(Kernel *k, OpKind kind, Type t) {
  Op *op = arena_alloc(k, sizeof *op);
  op->kind = kind;
  op->type = t;
  op->id = -1;
  return op;
}

Op *ir_append(Builder *b, OpKind kind, Type t) {
  Op *op = ir_op_new(b->k, kind, t);
  ir_block_push(b->k, b->blk, op);
  return op;
}

static Op *constant(Builder *b, Type t, int64_t iv, double fv) {
  Op *op = ir_append(b, OP_CONST, t);
  op->ival = iv;
  op->fval = fv;
  return op;
}

Op *ir_const_i32(Builder *b, int64_t v) { return constant(b, TY_I32, (int32_t)v, 0); }
Op *ir_const_i64(Builder *b, int64_t v) { return constant(b, TY_I64, v, 0); }
Op *ir_const_f32(Builder *b, double v) { return constant(b, TY_F32, 0, (float)v); }
Op *ir_const_f64(Builder *b, double v) { return constant(b, TY_F64, 0, v); }
Op *ir_const_bool(Builder *b, bool v) { return constant(b, TY_BOOL, v, 0); }

Op *ir_block_id(Builder *b, int dim) {
  Op *op = ir_append(b, OP_BLOCK_ID, TY_I32);
  op->ival = dim;
  return op;
}

Op *ir_bin(Builder *b, OpKind kind, Op *x, Op *y) {
  Op *op = ir_append(b, kind, x->type);
  op->a[0] = x;
  op->a[1] = y;
  return op;
}

Op *ir_un(Builder *b, OpKind kind, Op *x) {
  Op *op = ir_append(b, kind, x->type);
  op->a[0] = x;
  return op;
}

Op *ir_fma(Builder *b, Op *x, Op *y, Op *z) {
  Op *op = ir_append(b, OP_FMA, x->type);
  op->a[0] = x;
  op->a[1] = y;
  op->a[2] = z;
  return op;
}

Op *ir_cmp(Builder *b, CmpPred p, Op *x, Op *y) {
  Op *op = ir_append(b, OP_CMP, TY_BOOL);
  op->pred = p;
  op->a[0] = x;
  op->a[1] = y;
  return op;
}

Op *ir_select(Builder *b, Op *c, Op *x, Op *y) {
  Op *op = ir_append(b, OP_SELECT, x->type);
  op->a[0] = c;
  op->a[1] = x;
  op->a[2] = y;
  return op;
}

Op *ir_cast(Builder *b, Type t, Op *x) {
  Op *op = ir_append(b, OP_CAST, t);
  op->a[0] = x;
  return op;
}

Op *ir_bitcast(Builder *b, Type t, Op *x) {
  Op *op = ir_append(b, OP_BITCAST, t);
  op->a[0] = x;
  return op;
}

Op *ir_load(Builder *b, Buf *buf, Op *idx) {
  Op *op = ir_append(b, OP_LOAD, buf->elem);
  op->buf = buf;
  op->a[0] = idx;
  return op;
}

void ir_store(Builder *b, Buf *buf, Op *idx, Op *val) {
  Op *op = ir_append(b, OP_STORE, TY_VOID);
  op->buf = buf;
  op->a[0] = idx;
  op->a[1] = val;
}

Op *ir_atomic_add(Builder *b, Buf *buf, Op *idx, Op *val) {
  Op *op = ir_append(b, OP_ATOMIC_ADD, buf->elem);
  op->buf = buf;
  op->a[0] = idx;
  op->a[1] = val;
  return op;
}

void ir_transpose(Builder *b, Buf *dst, Op *di, int64_t ld, Buf *src, Op *si, Op *ss, Op *rows) {
  Op *op = ir_append(b, OP_TRANSPOSE, TY_VOID);
  op->buf = dst;
  op->src = src;
  op->ival = ld;
  op->a[0] = di;
  op->a[1] = si;
  op->a[2] = ss;
  op->a[3] = rows;
}

void ir_prefetch(Builder *b, Buf *buf, Op *idx) {
  Op *op = ir_append(b, OP_PREFETCH, TY_VOID);
  op->buf = buf;
  op->a[0] = idx;
}

Op *ir_var(Builder *b, Op *init, const char *hint) {
  Op *op = ir_append(b, OP_VAR, init->type);
  op->a[0] = init;
  op->hint = hint;
  return op;
}

Op *ir_get(Builder *b, Op *var) {
  Op *op = ir_append(b, OP_GET, var->type);
  op->var = var;
  return op;
}

void ir_set(Builder *b, Op *var, Op *val) {
  Op *op = ir_append(b, OP_SET, TY_VOID);
  op->var = var;
  op->a[0] = val;
}

void ir_barrier(Builder *b) { ir_append(b, OP_BARRIER, TY_VOID); }

static Op *index_of(Builder *b, Type t, const char *hint) {
  Op *ix = ir_op_new(b->k, OP_INDEX, t);
  ix->hint = hint;
  return ix;
}

Op *ir_for(Builder *b, Op *lo, Op *hi, int64_t step, const char *hint, Builder *body) {
  Op *op = ir_append(b, OP_FOR, TY_VOID);
  op->a[0] = lo;
  op->a[1] = hi;
  op->ival = step;
  op->index = index_of(b, lo->type, hint);
  *body = (Builder){b->k, &op->body};
  return op;
}

Op *ir_if(Builder *b, Op *cond, Builder *then, Builder *els) {
  Op *op = ir_append(b, OP_IF, TY_VOID);
  op->a[0] = cond;
  *then = (Builder){b->k, &op->body};
  if (els)
    *els = (Builder){b->k, &op->els};
  return op;
}

Op *ir_pfor(Builder *b, Axis axis, Op *extent, const char *hint, Builder *body) {
  Op *op = ir_append(b, OP_PFOR, TY_VOID);
  op->axis = axis;
  op->a[0] = extent;
  op->index = index_of(b, extent->type, hint);
  *body = (Builder){b->k, &op->body};
  return op;
}

Op *ir_reduce(Builder *b, Axis axis, RedKind red, Type t, Op *extent, const char *hint,
              Builder *body) {
  Op *op = ir_append(b, OP_REDUCE, t);
  op->axis = axis;
  op->red = red;
  op->a[0] = extent;
  op->index = index_of(b, extent->type, hint);
  *body = (Builder){b->k, &op->body};
  return op;
}

void ir_yield(Builder *b, Op *v) {
  Op *op = ir_append(b, OP_YIELD, TY_VOID);
  op->a[0] = v;
}

/* ---- utilities ---- */

static const char *const type_names[] = {"void", "bool", "i32", "i64", "f32", "f64"};
const char *ir_type_name(Type t) { return type_names[t]; }

static const char *const op_names[OP__COUNT] = {
    [OP_CONST] = "const",   [OP_PARAM] = "param",       [OP_BLOCK_ID] = "block_id",
    [OP_INDEX] = "index",   [OP_ADD] = "add",           [OP_SUB] = "sub",
    [OP_MUL] = "mul",       [OP_DIV] = "div",           [OP_REM] = "rem",
    [OP_MIN] = "min",       [OP_MAX] = "max",           [OP_FMA] = "fma",
    [OP_NEG] = "neg",       [OP_AND] = "and",           [OP_OR] = "or",
    [OP_XOR] = "xor",       [OP_SHL] = "shl",           [OP_SHR] = "shr",
    [OP_CTZ] = "ctz",    [OP_EXP] = "exp",       [OP_LOG] = "log",           [OP_SQRT] = "sqrt",
    [OP_ABS] = "abs",       [OP_CMP] = "cmp",           [OP_SELECT] = "select",
    [OP_CAST] = "cast",     [OP_BITCAST] = "bitcast",   [OP_LOAD] = "load",
    [OP_STORE] = "store",   [OP_VAR] = "var",           [OP_GET] = "get",
    [OP_SET] = "set",       [OP_FOR] = "for",           [OP_IF] = "if",
    [OP_PFOR] = "pfor",     [OP_REDUCE] = "reduce",     [OP_YIELD] = "yield",
    [OP_BARRIER] = "barrier", [OP_THREAD_ID] = "thread_id", [OP_WARP_REDUCE] = "warp_reduce",
    [OP_WARPSYNC] = "warpsync", [OP_ATOMIC_ADD] = "atomic_add", [OP_TRANSPOSE] = "transpose16",
    [OP_PREFETCH] = "prefetch",
};
const char *ir_op_name(OpKind k) { return op_names[k]; }

static const char *const axis_names[] = {"block", "warp", "lane", "serial"};
const char *ir_axis_name(Axis a) { return axis_names[a]; }

static const char *const red_names[] = {"add", "max", "min"};
const char *ir_red_name(RedKind r) { return red_names[r]; }

static const char *const pred_names[] = {"eq", "ne", "lt", "le", "gt", "ge", "ult", "uge"};
const char *ir_pred_name(CmpPred p) { return pred_names[p]; }

bool ir_type_is_float(Type t) { return t == TY_F32 || t == TY_F64; }
bool ir_type_is_int(Type t) { return t == TY_I32 || t == TY_I64; }

int ir_type_bits(Type t) {
  switch (t) {
  case TY_BOOL: return 1;
  case TY_I32: case TY_F32: return 32;
  case TY_I64: case TY_F64: return 64;
  default: return 0;
  }
}

int ir_op_arity(const Op *op) {
  switch (op->kind) {
  case OP_CONST: case OP_PARAM: case OP_BLOCK_ID: case OP_INDEX: case OP_GET:
  case OP_BARRIER: case OP_THREAD_ID: case OP_WARPSYNC:
    return 0;
  case OP_NEG: case OP_CTZ: case OP_EXP: case OP_LOG: case OP_SQRT: case OP_ABS: case OP_CAST:
  case OP_BITCAST: case OP_LOAD: case OP_PREFETCH: case OP_VAR: case OP_SET: case OP_IF: case OP_PFOR:
  case OP_REDUCE: case OP_YIELD: case OP_WARP_REDUCE:
    return 1;
  case OP_FMA: case OP_SELECT:
    return 3;
  case OP_TRANSPOSE:
    return 4;
  default:
    return 2;   /* binary arithmetic, cmp, store, atomic_add, for (lo, hi) */
  }
}

bool ir_op_has_result(const Op *op) { return op->type != TY_VOID; }

static void number_block(Kernel *k, Block *blk) {
  for (int i = 0; i < blk->n; i++) {
    Op *op = blk->ops[i];
    if (op->index)
      op->index->id = k->next_id++;
    if (ir_op_has_result(op))
      op->id = k->next_id++;
    number_block(k, &op->body);
    number_block(k, &op->els);
  }
}

void ir_number(Kernel *k) {
  k->next_id = 0;
  number_block(k, &k->body);
}
