/* IR helpers shared by the attention templates (see attention_common.h). */
#include "attention_common.h"

#include <math.h>

Op *attn_i32(Builder *b, int64_t v) { return ir_const_i32(b, v); }
Op *attn_add(Builder *b, Op *x, Op *y) { return ir_bin(b, OP_ADD, x, y); }
Op *attn_mul(Builder *b, Op *x, Op *y) { return ir_bin(b, OP_MUL, x, y); }

/* Negative floats flip every bit, the others only the sign bit. */
Op *attn_order_key(Builder *b, Op *x) {
  Op *bits = ir_bitcast(b, TY_I32, x);
  Op *neg = ir_cmp(b, CMP_LT, bits, attn_i32(b, 0));
  return ir_select(b, neg, ir_bin(b, OP_XOR, bits, attn_i32(b, -1)),
                   ir_bin(b, OP_XOR, bits, attn_i32(b, INT32_MIN)));
}

Op *attn_from_order_key(Builder *b, Op *key) {
  Op *pos = ir_cmp(b, CMP_UGE, key, attn_i32(b, INT32_MIN));
  Op *bits = ir_select(b, pos, ir_bin(b, OP_XOR, key, attn_i32(b, INT32_MIN)),
                       ir_bin(b, OP_XOR, key, attn_i32(b, -1)));
  return ir_bitcast(b, TY_F32, bits);
}

/* The order key with its top bit flipped: negative floats flip their 31 low bits. */
Op *attn_signed_key(Builder *b, Op *x) {
  Op *bits = ir_bitcast(b, TY_I32, x);
  Op *neg = ir_cmp(b, CMP_LT, bits, attn_i32(b, 0));
  return ir_select(b, neg, ir_bin(b, OP_XOR, bits, attn_i32(b, INT32_MAX)), bits);
}

Op *attn_nonzero(Builder *b, Op *x) {
  Op *number = ir_cmp(b, CMP_EQ, x, x);
  return ir_select(b, number, ir_cmp(b, CMP_NE, x, ir_const_f32(b, 0)), ir_const_bool(b, true));
}

Op *attn_from_signed_key(Builder *b, Op *key) {   /* an involution */
  Op *neg = ir_cmp(b, CMP_LT, key, attn_i32(b, 0));
  Op *bits = ir_select(b, neg, ir_bin(b, OP_XOR, key, attn_i32(b, INT32_MAX)), key);
  return ir_bitcast(b, TY_F32, bits);
}

Op *attn_keep_count(Builder *b, Op *sparsity, Op *m, int keep_min) {
  Op *x = ir_bin(b, OP_SUB, ir_const_f64(b, 1.0), sparsity);
  x = ir_bin(b, OP_SUB, attn_mul(b, x, ir_cast(b, TY_F64, m)), ir_const_f64(b, 1e-6));
  Op *t = ir_cast(b, TY_I32, ir_bin(b, OP_MAX, x, ir_const_f64(b, -1.0)));
  Op *up = ir_cmp(b, CMP_LT, ir_cast(b, TY_F64, t), x);   /* trunc -> ceil */
  Op *ceil = attn_add(b, t, ir_select(b, up, attn_i32(b, 1), attn_i32(b, 0)));
  Op *keep = ir_bin(b, OP_MAX, ceil, attn_i32(b, keep_min));
  return ir_bin(b, OP_MIN, keep, m);
}

void attn_next_head(Builder *b, Op *batch, Op *head, Op *H, Op **nb, Op **nh) {
  Op *h1 = attn_add(b, head, attn_i32(b, 1));
  Op *wrap = ir_cmp(b, CMP_GE, h1, H);
  *nb = attn_add(b, batch, ir_select(b, wrap, attn_i32(b, 1), attn_i32(b, 0)));
  *nh = ir_select(b, wrap, attn_i32(b, 0), h1);
}

void attn_prefetch_row(Builder *b, Buf *buf, Op *row, int D) {
  for (int d = 0; d < D; d += 16)
    ir_prefetch(b, buf, attn_add(b, row, ir_const_i64(b, d)));
}

Op *attn_offset(Builder *b, Op *batch, Op *i, Op *head, Op *sb, Op *sn, Op *sh) {
  return attn_add(b, attn_add(b, attn_mul(b, batch, sb), attn_mul(b, i, sn)),
                  attn_mul(b, head, sh));
}

void attn_stage_rows(Builder *b, Buf *dst, int64_t ld, Buf *src, Op *off0, Op *stride,
                     Op *nrows, int D) {
  Builder warp, lane;
  Op *r = ir_pfor(b, AXIS_WARP, nrows, "r", &warp)->index;
  Op *from = attn_add(&warp, off0, attn_mul(&warp, r, stride));
  Op *to = attn_mul(&warp, r, attn_i32(&warp, (int)ld));
  Op *d = ir_pfor(&warp, AXIS_LANE, attn_i32(&warp, D), "d", &lane)->index;
  ir_store(&lane, dst, attn_add(&lane, to, d), ir_load(&lane, src, attn_add(&lane, from, d)));
}

Builder *attn_where(Builder *b, Op *a, Op *c, Builder *then) {
  Op *cond = a && c ? ir_bin(b, OP_AND, a, c) : a ? a : c;
  if (!cond)
    return b;
  ir_if(b, cond, then, NULL);
  return then;
}

static Op *row_at(Builder *b, const AttnRow *r, Op *j) {
  return ir_load(b, r->buf, attn_add(b, r->base, j));
}

void attn_rows_scores(Builder *b, int R, const AttnRow rows[], Buf *q, Op *const qoff[],
                      Buf *k, Op *k0, Op *kstride, int D) {
  Builder lane, dot, put;
  Op *m = rows[0].m;
  for (int t = 1; t < R; t++)
    m = ir_bin(b, OP_MAX, m, rows[t].m);
  Op *j = ir_pfor(b, AXIS_LANE, m, "j", &lane)->index;
  Op *koff = ir_cast(&lane, TY_I64, attn_add(&lane, k0, attn_mul(&lane, j, kstride)));
  Op *qoff64[ATTN_ROWS_MAX], *s[ATTN_ROWS_MAX];
  for (int t = 0; t < R; t++) {
    qoff64[t] = ir_cast(&lane, TY_I64, qoff[t]);
    s[t] = ir_var(&lane, ir_const_f32(&lane, 0), "s");
  }
  Op *d = ir_for(&lane, ir_const_i64(&lane, 0), ir_const_i64(&lane, D), 1, "d", &dot)->index;
  Op *kd = ir_load(&dot, k, attn_add(&dot, koff, d));
  for (int t = 0; t < R; t++) {
    Op *qd = ir_load(&dot, q, attn_add(&dot, qoff64[t], d));
    ir_set(&dot, s[t], attn_add(&dot, ir_get(&dot, s[t]), attn_mul(&dot, qd, kd)));
  }
  Op *scale = ir_const_f32(&lane, 1.0 / sqrt((double)D));
  for (int t = 0; t < R; t++) {
    Builder *at = &lane;
    if (R > 1) {
      ir_if(&lane, ir_cmp(&lane, CMP_LT, j, rows[t].m), &put, NULL);
      at = &put;
    }
    ir_store(at, rows[t].buf, attn_add(at, rows[t].base, j), attn_mul(at, ir_get(at, s[t]), scale));
  }
}

void attn_row_scores(Builder *b, const AttnRow *r, Buf *q, Buf *k, Op *qoff, Op *k0,
                     Op *kstride, int D, bool host) {
  if (!host) {
    attn_rows_scores(b, 1, r, q, &qoff, k, k0, kstride, D);
    return;
  }
  Builder lane, dot;
  Op *j = ir_pfor(b, AXIS_LANE, r->m, "j", &lane)->index;
  /* i64 offsets: consecutive d then share one base address (an i32 sum would be
   * sign-extended per element), which keeps the unrolled dot light on registers */
  Op *koff = ir_cast(&lane, TY_I64, attn_add(&lane, k0, attn_mul(&lane, j, kstride)));
  Op *qoff64 = ir_cast(&lane, TY_I64, qoff);
  Op *red = ir_reduce(&lane, AXIS_SERIAL, RED_ADD, TY_F32, ir_const_i64(&lane, D), "d", &dot);
  Op *d = red->index;
  Op *qd = ir_load(&dot, q, attn_add(&dot, qoff64, d));
  Op *kd = ir_load(&dot, k, attn_add(&dot, koff, d));
  ir_yield(&dot, attn_mul(&dot, qd, kd));
  Op *scale = ir_const_f32(&lane, 1.0 / sqrt((double)D));
  ir_store(&lane, r->buf, attn_add(&lane, r->base, j), attn_mul(&lane, red, scale));
}

Op *attn_row_max(Builder *b, const AttnRow *r) {
  Builder body;
  Op *red = ir_reduce(b, AXIS_LANE, RED_MAX, TY_I32, r->m, "j", &body);
  Op *x = row_at(&body, r, red->index);
  Op *number = ir_cmp(&body, CMP_EQ, x, x);
  ir_yield(&body, ir_select(&body, number, attn_signed_key(&body, x),
                            attn_i32(&body, INT32_MAX)));
  return attn_from_signed_key(b, red);
}

Op *attn_row_count_ge(Builder *b, const AttnRow *r, Op *tau) {
  Builder body;
  Op *red = ir_reduce(b, AXIS_LANE, RED_ADD, TY_I32, r->m, "j", &body);
  Op *ge = ir_cmp(&body, CMP_GE, row_at(&body, r, red->index), tau);
  ir_yield(&body, ir_select(&body, ge, attn_i32(&body, 1), attn_i32(&body, 0)));
  return red;
}
