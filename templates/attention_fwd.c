/* The crisp attention forward template (DESIGN §4), for select = none | row_topk.
 *
 * Schedule: a block takes `rows` query rows of one (b, h); each of its warps owns
 * one row at a time and keeps that row's scores in a shared slot (no n x n matrix
 * in global memory). Per row:
 *   1. scores S_j = q_i . k_j / sqrt(d) for the M valid keys (lanes over keys),
 *   2. keep = max(keep_min, ceil((1 - s) * M - 1e-6)) in f64, clamped to M,
 *   3. tau = the keep-th largest score, found exactly by bisection on the bits of
 *      an order-preserving integer key (32 counting passes, no sort),
 *   4. softmax over the kept scores (S >= tau, so ties at tau are kept),
 *   5. O_i = sum_j p_j v_j over kept j only, accumulated in shared memory with
 *      lanes over d; padded query rows (i >= L) are written as zeros. */
#include "templates.h"

#include <math.h>
#include <stdio.h>

typedef struct {
  Builder *b;
  Kernel *k;
  const Spec *spec;
  Buf *q, *kk, *v, *o, *lengths, *kept, *scores, *acc;
  Op *p[ATTN_NPARAMS];     /* scalar parameter values */
  Op *batch, *head, *len;  /* b, h, L for this block */
} Ctx;

/* shorthands over the builder */
static Op *add(Builder *b, Op *x, Op *y) { return ir_bin(b, OP_ADD, x, y); }
static Op *mul(Builder *b, Op *x, Op *y) { return ir_bin(b, OP_MUL, x, y); }
static Op *i32(Builder *b, int64_t v) { return ir_const_i32(b, v); }

/* Order-preserving map f32 -> u32: negative floats flip all bits, others the sign. */
static Op *order_key(Builder *b, Op *x) {
  Op *bits = ir_bitcast(b, TY_I32, x);
  Op *neg = ir_cmp(b, CMP_LT, bits, i32(b, 0));
  return ir_select(b, neg, ir_bin(b, OP_XOR, bits, i32(b, -1)),
                   ir_bin(b, OP_XOR, bits, i32(b, INT32_MIN)));
}

static Op *from_order_key(Builder *b, Op *key) {
  Op *pos = ir_cmp(b, CMP_UGE, key, i32(b, INT32_MIN));
  Op *bits = ir_select(b, pos, ir_bin(b, OP_XOR, key, i32(b, INT32_MIN)),
                       ir_bin(b, OP_XOR, key, i32(b, -1)));
  return ir_bitcast(b, TY_F32, bits);
}

/* keep = clamp(max(keep_min, ceil((1 - s) * M - 1e-6)), .., M), in double. */
static Op *keep_count(Ctx *c, Builder *b, Op *m) {
  Op *x = ir_bin(b, OP_SUB, ir_const_f64(b, 1.0), c->p[ATTN_SPARSITY]);
  x = ir_bin(b, OP_SUB, mul(b, x, ir_cast(b, TY_F64, m)), ir_const_f64(b, 1e-6));
  Op *t = ir_cast(b, TY_I32, ir_bin(b, OP_MAX, x, ir_const_f64(b, -1.0)));
  Op *up = ir_cmp(b, CMP_LT, ir_cast(b, TY_F64, t), x);     /* trunc -> ceil */
  Op *ceil = add(b, t, ir_select(b, up, i32(b, 1), i32(b, 0)));
  Op *keep = ir_bin(b, OP_MAX, ceil, i32(b, c->spec->keep_min));
  return ir_bin(b, OP_MIN, keep, m);
}

static Op *slot_index(Builder *b, Op *base, Op *j) { return add(b, base, j); }

/* 1. scores of row i into the warp's slot; lanes over keys, serial dot over d. */
static void emit_scores(Ctx *c, Builder *b, Op *qoff, Op *slot, Op *m) {
  Builder lane, dot;
  Op *j = ir_pfor(b, AXIS_LANE, m, "j", &lane)->index;
  Op *koff = add(&lane, add(&lane, mul(&lane, c->batch, c->p[ATTN_QKV_SB]),
                        mul(&lane, j, c->p[ATTN_QKV_SN])),
             mul(&lane, c->head, c->p[ATTN_QKV_SH]));
  Op *red = ir_reduce(&lane, AXIS_SERIAL, RED_ADD, TY_F32, i32(&lane, c->spec->head_dim), "d",
                      &dot);
  Op *d = red->index;
  Op *qd = ir_load(&dot, c->q, add(&dot, qoff, d));
  Op *kd = ir_load(&dot, c->kk, add(&dot, koff, d));
  ir_yield(&dot, mul(&dot, qd, kd));
  Op *scale = ir_const_f32(&lane, 1.0 / sqrt((double)c->spec->head_dim));
  ir_store(&lane, c->scores, slot_index(&lane, slot, j), mul(&lane, red, scale));
}

/* count of j < m with key(S_j) >= cand (unsigned) */
static Op *count_at_least(Ctx *c, Builder *b, Op *slot, Op *m, Op *cand) {
  Builder body;
  Op *red = ir_reduce(b, AXIS_LANE, RED_ADD, TY_I32, m, "j", &body);
  Op *key = order_key(&body, ir_load(&body, c->scores, slot_index(&body, slot, red->index)));
  ir_yield(&body, ir_select(&body, ir_cmp(&body, CMP_UGE, key, cand), i32(&body, 1), i32(&body, 0)));
  return red;
}

/* 3. tau = keep-th largest score: build the key's bits from the top, keeping a bit
 * whenever at least `keep` scores are >= the candidate. -inf when all are kept. */
static Op *emit_threshold(Ctx *c, Builder *b, Op *slot, Op *m, Op *keep) {
  Op *tau = ir_var(b, ir_const_f32(b, -INFINITY), "tau");
  Builder sel, loop, take;
  ir_if(b, ir_cmp(b, CMP_LT, keep, m), &sel, NULL);
  Op *prefix = ir_var(&sel, i32(&sel, 0), "prefix");
  Op *bit = ir_for(&sel, i32(&sel, 0), i32(&sel, 32), 1, "bit", &loop)->index;
  Op *mask = ir_bin(&loop, OP_SHL, i32(&loop, 1), ir_bin(&loop, OP_SUB, i32(&loop, 31), bit));
  Op *cand = ir_bin(&loop, OP_OR, ir_get(&loop, prefix), mask);
  Op *cnt = count_at_least(c, &loop, slot, m, cand);
  ir_if(&loop, ir_cmp(&loop, CMP_GE, cnt, keep), &take, NULL);
  ir_set(&take, prefix, cand);
  ir_set(&sel, tau, from_order_key(&sel, ir_get(&sel, prefix)));
  return ir_get(b, tau);
}

static Op *row_reduce(Ctx *c, Builder *b, RedKind red, Type t, Op *slot, Op *m, Op *tau,
                      Op **e_out, Builder *body) {
  Op *r = ir_reduce(b, AXIS_LANE, red, t, m, "j", body);
  Op *s = ir_load(body, c->scores, slot_index(body, slot, r->index));
  *e_out = ir_cmp(body, CMP_GE, s, tau);
  return r;
}

/* 4-5. softmax over kept scores and O_i = sum_j p_j v_j; kept count per row. */
static void emit_softmax_pv(Ctx *c, Builder *b, Op *slot, Op *m, Op *tau, Op *ooff,
                            Op *acc_base, Op *row_stat) {
  Builder body;
  Op *kept_j;
  Op *mx = row_reduce(c, b, RED_MAX, TY_F32, slot, m, tau, &kept_j, &body);
  ir_yield(&body, ir_load(&body, c->scores, slot_index(&body, slot, mx->index)));
  Op *cnt = row_reduce(c, b, RED_ADD, TY_I32, slot, m, tau, &kept_j, &body);
  ir_yield(&body, ir_select(&body, kept_j, i32(&body, 1), i32(&body, 0)));
  /* e_j = exp(S_j - max) for kept j, else 0; written back over the scores */
  Op *sum = row_reduce(c, b, RED_ADD, TY_F32, slot, m, tau, &kept_j, &body);
  Op *sj = ir_load(&body, c->scores, slot_index(&body, slot, sum->index));
  Op *e = ir_select(&body, kept_j, ir_un(&body, OP_EXP, ir_bin(&body, OP_SUB, sj, mx)),
                    ir_const_f32(&body, 0));
  ir_store(&body, c->scores, slot_index(&body, slot, sum->index), e);
  ir_yield(&body, e);

  int D = c->spec->head_dim;
  Builder lane, loop, hit;
  Op *d = ir_pfor(b, AXIS_LANE, i32(b, D), "d", &lane)->index;
  ir_store(&lane, c->acc, add(&lane, acc_base, d), ir_const_f32(&lane, 0));
  Op *j = ir_for(b, i32(b, 0), m, 1, "j", &loop)->index;
  Op *ej = ir_load(&loop, c->scores, slot_index(&loop, slot, j));
  ir_if(&loop, ir_cmp(&loop, CMP_NE, ej, ir_const_f32(&loop, 0)), &hit, NULL);
  Op *voff = add(&hit, add(&hit, mul(&hit, c->batch, c->p[ATTN_QKV_SB]),
                           mul(&hit, j, c->p[ATTN_QKV_SN])),
                 mul(&hit, c->head, c->p[ATTN_QKV_SH]));
  d = ir_pfor(&hit, AXIS_LANE, i32(&hit, D), "d", &lane)->index;
  Op *ai = add(&lane, acc_base, d);
  Op *vd = ir_load(&lane, c->v, add(&lane, voff, d));
  ir_store(&lane, c->acc, ai, ir_fma(&lane, ej, vd, ir_load(&lane, c->acc, ai)));
  Op *inv = ir_bin(b, OP_DIV, ir_const_f32(b, 1.0), sum);
  d = ir_pfor(b, AXIS_LANE, i32(b, D), "d", &lane)->index;
  ir_store(&lane, c->o, add(&lane, ooff, d),
           mul(&lane, ir_load(&lane, c->acc, add(&lane, acc_base, d)), inv));
  ir_pfor(b, AXIS_LANE, i32(b, 1), "one", &lane);
  ir_store(&lane, c->kept, row_stat, cnt);
}

static void emit_padded_row(Ctx *c, Builder *b, Op *ooff, Op *row_stat) {
  Builder lane;
  Op *d = ir_pfor(b, AXIS_LANE, i32(b, c->spec->head_dim), "d", &lane)->index;
  ir_store(&lane, c->o, add(&lane, ooff, d), ir_const_f32(&lane, 0));
  ir_pfor(b, AXIS_LANE, i32(b, 1), "one", &lane);
  ir_store(&lane, c->kept, row_stat, i32(&lane, 0));
}

/* Everything one warp does for query row i. */
static void emit_row(Ctx *c, Builder *b, Op *i, Op *w) {
  Op **p = c->p;
  Op *qoff = add(b, add(b, mul(b, c->batch, p[ATTN_QKV_SB]), mul(b, i, p[ATTN_QKV_SN])),
                 mul(b, c->head, p[ATTN_QKV_SH]));
  Op *ooff = add(b, add(b, mul(b, c->batch, p[ATTN_O_SB]), mul(b, i, p[ATTN_O_SN])),
                 mul(b, c->head, p[ATTN_O_SH]));
  Op *row_stat = add(b, mul(b, add(b, mul(b, c->batch, p[ATTN_H]), c->head), p[ATTN_N]), i);
  Op *slot = mul(b, w, i32(b, c->spec->max_seq));
  Op *acc_base = mul(b, w, i32(b, c->spec->head_dim));
  Builder valid, padded;
  ir_if(b, ir_cmp(b, CMP_LT, i, c->len), &valid, &padded);
  Op *m = c->len;
  if (c->spec->causal)
    m = ir_bin(&valid, OP_MIN, add(&valid, i, i32(&valid, 1)), c->len);
  emit_scores(c, &valid, qoff, slot, m);
  Op *tau = ir_const_f32(&valid, -INFINITY);
  if (c->spec->select == SEL_ROW_TOPK)
    tau = emit_threshold(c, &valid, slot, m, keep_count(c, &valid, m));
  emit_softmax_pv(c, &valid, slot, m, tau, ooff, acc_base, row_stat);
  emit_padded_row(c, &padded, ooff, row_stat);
}

static void declare_params(Ctx *c) {
  static const char *const scalars[] = {"B", "H", "N", "qkv_sb", "qkv_sn", "qkv_sh",
                                        "o_sb", "o_sn", "o_sh"};
  Kernel *k = c->k;
  c->q = ir_param_buf(k, "q", TY_F32, ROLE_IN);
  c->kk = ir_param_buf(k, "k", TY_F32, ROLE_IN);
  c->v = ir_param_buf(k, "v", TY_F32, ROLE_IN);
  c->o = ir_param_buf(k, "o", TY_F32, ROLE_OUT);
  c->lengths = ir_param_buf(k, "lengths", TY_I32, ROLE_IN);
  c->kept = ir_param_buf(k, "kept", TY_I32, ROLE_OUT);
  for (int i = 0; i < 9; i++)
    c->p[ATTN_B + i] = ir_param_scalar(k, scalars[i], TY_I32);
  c->p[ATTN_SPARSITY] = ir_param_scalar(k, "sparsity", TY_F64);
}

Kernel *attention_fwd_build(const Spec *s, const TileConfig *t) {
  char name[96];
  snprintf(name, sizeof name, "%s_attn_fwd", s->name);
  Kernel *k = ir_kernel_new(name, t->warps);
  Builder b = ir_builder(k);
  Ctx c = {.b = &b, .k = k, .spec = s};
  declare_params(&c);
  c.scores = ir_shared(k, "scores", TY_F32, (int64_t)t->warps * s->max_seq);
  c.acc = ir_shared(k, "acc", TY_F32, (int64_t)t->warps * s->head_dim);
  ir_set_grid(k, 0, ATTN_N, -1, t->rows);
  ir_set_grid(k, 1, ATTN_H, -1, 1);
  ir_set_grid(k, 2, ATTN_B, -1, 1);

  Op *row0 = mul(&b, ir_block_id(&b, 0), i32(&b, t->rows));
  c.head = ir_block_id(&b, 1);
  c.batch = ir_block_id(&b, 2);
  c.len = ir_load(&b, c.lengths, c.batch);
  Builder warp, rows, inside;
  Op *w = ir_pfor(&b, AXIS_WARP, i32(&b, t->warps), "w", &warp)->index;
  Op *r = ir_for(&warp, w, i32(&warp, t->rows), t->warps, "r", &rows)->index;
  Op *i = add(&rows, row0, r);
  ir_if(&rows, ir_cmp(&rows, CMP_LT, i, c.p[ATTN_N]), &inside, NULL);
  emit_row(&c, &inside, i, w);
  return k;
}
