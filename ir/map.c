/* The map pass: parallel axes -> a target's primitive ops.
 *
 * GPU (T = 32*warps threads, W = warps): every thread runs the whole kernel.
 *   pfor.block i < n   ->  for i = tid  to n step T
 *   pfor.warp  i < n   ->  for i = warp to n step W
 *   pfor.lane  i < n   ->  for i = lane to n step 32 ; warpsync
 *   reduce.lane        ->  per-lane partial over a strided loop, then warp_reduce
 *   reduce.block       ->  warp_reduce, lane 0 stores to shared scratch, barrier,
 *                          every thread combines the W partials, barrier
 * CPU (one thread runs a block): every pfor is a plain loop marked vectorisable,
 *   barriers vanish, every reduce is a loop over a var.
 * On both, reduce.serial becomes a vectorisable loop over a var. */
#include "passes.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

typedef struct {
  Kernel *k;
  MapTarget target;
  Op *tid, *warp, *lane;   /* GPU only, defined at the top of the body */
  int nscratch;
} Mapper;

static void map_block(Mapper *m, Block *blk);

static Op *identity(Builder *b, RedKind red, Type t) {
  bool f = ir_type_is_float(t);
  switch (red) {
  case RED_ADD:
    break;
  case RED_MAX:
    if (f)
      return t == TY_F32 ? ir_const_f32(b, -INFINITY) : ir_const_f64(b, -INFINITY);
    return t == TY_I32 ? ir_const_i32(b, INT32_MIN) : ir_const_i64(b, INT64_MIN);
  case RED_MIN:
    if (f)
      return t == TY_F32 ? ir_const_f32(b, INFINITY) : ir_const_f64(b, INFINITY);
    return t == TY_I32 ? ir_const_i32(b, INT32_MAX) : ir_const_i64(b, INT64_MAX);
  }
  switch (t) {
  case TY_F32: return ir_const_f32(b, 0);
  case TY_F64: return ir_const_f64(b, 0);
  case TY_I64: return ir_const_i64(b, 0);
  default: return ir_const_i32(b, 0);
  }
}

static Op *combine(Builder *b, RedKind red, Op *x, Op *y) {
  static const OpKind kinds[] = {[RED_ADD] = OP_ADD, [RED_MAX] = OP_MAX, [RED_MIN] = OP_MIN};
  return ir_bin(b, kinds[red], x, y);
}

/* An i32 thread value as the type of a loop bound. */
static Op *as_type(Builder *b, Op *v, Type t) { return v->type == t ? v : ir_cast(b, t, v); }

static Op *const_of(Builder *b, Type t, int64_t v) {
  return t == TY_I64 ? ir_const_i64(b, v) : ir_const_i32(b, v);
}

/* for index = start to extent step `step`, taking over the body of a pfor/reduce. */
static Op *strided_for(Builder *b, Op *par, Op *start, int64_t step) {
  Op *extent = par->a[0];
  Op *lo = start ? as_type(b, start, extent->type) : const_of(b, extent->type, 0);
  Op *f = ir_append(b, OP_FOR, TY_VOID);
  f->a[0] = lo;
  f->a[1] = extent;
  f->ival = step;
  f->index = par->index;
  f->body = par->body;
  f->vectorize = step == 1 && (par->kind == OP_REDUCE || par->axis != AXIS_WARP);
  return f;
}

static void map_pfor(Mapper *m, Builder *b, Op *op) {
  if (m->target == MAP_CPU) {
    strided_for(b, op, NULL, 1);
    return;
  }
  int T = IR_WARP_SIZE * m->k->warps;
  switch (op->axis) {
  case AXIS_BLOCK: strided_for(b, op, m->tid, T); break;
  case AXIS_WARP: strided_for(b, op, m->warp, m->k->warps); break;
  default:
    strided_for(b, op, m->lane, IR_WARP_SIZE);
    ir_append(b, OP_WARPSYNC, TY_VOID);
    break;
  }
}

/* Per-thread partial of a reduce: a var folded over a strided loop. */
static Op *partial(Builder *b, Op *op, Op *start, int64_t step) {
  Op *acc = ir_var(b, identity(b, op->red, op->type), "acc");
  Op *f = strided_for(b, op, start, step);
  Block *body = &f->body;
  Op *yield = body->ops[--body->n];
  Builder inner = {b->k, body};
  ir_set(&inner, acc, combine(&inner, op->red, ir_get(&inner, acc), yield->a[0]));
  return ir_get(b, acc);
}

static Op *warp_reduce(Builder *b, RedKind red, Op *v) {
  Op *r = ir_append(b, OP_WARP_REDUCE, v->type);
  r->red = red;
  r->a[0] = v;
  return r;
}

static Op *block_reduce(Mapper *m, Builder *b, Op *op) {
  char name[32];
  snprintf(name, sizeof name, "red%d", m->nscratch++);
  Buf *scratch = ir_shared(m->k, name, op->type, m->k->warps);
  Op *w = warp_reduce(b, op->red, partial(b, op, m->tid, IR_WARP_SIZE * m->k->warps));
  Builder then;
  ir_if(b, ir_cmp(b, CMP_EQ, m->lane, ir_const_i32(b, 0)), &then, NULL);
  ir_store(&then, scratch, m->warp, w);
  ir_barrier(b);
  Op *acc = ir_var(b, identity(b, op->red, op->type), "acc");
  Builder loop;
  Op *j = ir_for(b, ir_const_i32(b, 0), ir_const_i32(b, m->k->warps), 1, "w", &loop)->index;
  ir_set(&loop, acc, combine(&loop, op->red, ir_get(&loop, acc), ir_load(&loop, scratch, j)));
  Op *r = ir_get(b, acc);
  ir_barrier(b);   /* the scratch may be reused by the next reduction */
  return r;
}

static void map_reduce(Mapper *m, Builder *b, Op *op) {
  Op *r;
  if (m->target == MAP_CPU || op->axis == AXIS_SERIAL)
    r = partial(b, op, NULL, 1);
  else if (op->axis == AXIS_LANE)
    r = warp_reduce(b, op->red, partial(b, op, m->lane, IR_WARP_SIZE));
  else
    r = block_reduce(m, b, op);
  ir_replace_uses(m->k, op, r);
}

static Op *as_i64(Builder *b, Op *v) { return as_type(b, v, TY_I64); }

/* transpose16 on the GPU: its 256 elements over the lanes, as a pfor.lane would
 * (element e: row r = e / 16, column c = e % 16, so a row's 16 reads are adjacent). */
static void map_transpose(Mapper *m, Builder *b, Op *op) {
  const int n = IR_TRANSPOSE_N;
  Builder body, then, els;
  Op *di = as_i64(b, op->a[0]), *si = as_i64(b, op->a[1]), *ss = as_i64(b, op->a[2]);
  Op *rows = as_i64(b, op->a[3]);
  Op *pfor = ir_pfor(b, AXIS_LANE, ir_const_i64(b, n * n), "e", &body);
  Op *r = ir_bin(&body, OP_DIV, pfor->index, ir_const_i64(&body, n));
  Op *c = ir_bin(&body, OP_REM, pfor->index, ir_const_i64(&body, n));
  Op *at = ir_bin(&body, OP_ADD, di,
                  ir_bin(&body, OP_ADD, ir_bin(&body, OP_MUL, c, ir_const_i64(&body, op->ival)), r));
  ir_if(&body, ir_cmp(&body, CMP_LT, r, rows), &then, &els);
  Op *from = ir_bin(&then, OP_ADD, si, ir_bin(&then, OP_ADD, ir_bin(&then, OP_MUL, r, ss), c));
  ir_store(&then, op->buf, at, ir_load(&then, op->src, from));
  ir_store(&els, op->buf, at, ir_const_f32(&els, 0));
  b->blk->n--;   /* the pfor is mapped in its place below */
  map_pfor(m, b, pfor);
}

static void map_block(Mapper *m, Block *blk) {
  Block out = {0};
  Builder b = {m->k, &out};
  for (int i = 0; i < blk->n; i++) {
    Op *op = blk->ops[i];
    map_block(m, &op->body);
    map_block(m, &op->els);
    if (op->kind == OP_PFOR)
      map_pfor(m, &b, op);
    else if (op->kind == OP_REDUCE)
      map_reduce(m, &b, op);
    else if (op->kind == OP_TRANSPOSE && m->target == MAP_GPU)
      map_transpose(m, &b, op);
    else if (op->kind == OP_BARRIER && m->target == MAP_CPU)
      continue;
    else
      ir_block_push(m->k, &out, op);
  }
  *blk = out;
}

/* tid, warp = tid / 32 and lane = tid % 32 at the top of the body. */
static void define_thread_ids(Mapper *m) {
  Block ids = {0};
  Builder b = {m->k, &ids};
  m->tid = ir_append(&b, OP_THREAD_ID, TY_I32);
  m->warp = ir_bin(&b, OP_SHR, m->tid, ir_const_i32(&b, 5));
  m->lane = ir_bin(&b, OP_AND, m->tid, ir_const_i32(&b, IR_WARP_SIZE - 1));
  m->tid->hint = "tid";
  m->warp->hint = "warp";
  m->lane->hint = "lane";
  for (int i = 0; i < m->k->body.n; i++)
    ir_block_push(m->k, &ids, m->k->body.ops[i]);
  m->k->body = ids;
}

int ir_map(Kernel *k, MapTarget target, char *err, size_t cap) {
  if (k->mapped) {
    snprintf(err, cap, "kernel %s: already mapped", k->name);
    return -1;
  }
  Mapper m = {.k = k, .target = target};
  if (target == MAP_GPU)
    define_thread_ids(&m);
  map_block(&m, &k->body);
  k->mapped = true;
  k->target = target;
  return 0;
}

static void replace_in_block(Block *blk, Op *from, Op *to) {
  for (int i = 0; i < blk->n; i++) {
    Op *op = blk->ops[i];
    for (int j = 0; j < IR_MAX_OPERANDS; j++)
      if (op->a[j] == from)
        op->a[j] = to;
    replace_in_block(&op->body, from, to);
    replace_in_block(&op->els, from, to);
  }
}

void ir_replace_uses(Kernel *k, Op *from, Op *to) { replace_in_block(&k->body, from, to); }
