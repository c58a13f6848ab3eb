/* The backward's dq kernel (warp schedule, attention_bwd_warp.h): a block takes
 * `rows` query rows of one (b, h), a warp per row at a time:
 *   0. per row i < L: Delta_i = dO_i . O_i (lane reduce over d) to delta and shared,
 *      its dQ_i = 0 in shared; padded rows write zeros (dq, delta);
 *   per tile of KT keys (block-level loop over keys < L, < min(row0 + rows, L) when
 *   causal): barrier; K, V tiles staged; barrier; then per row of the block:
 *   1. S_ij for the tile's valid keys (j <= i when causal) by attn_row_scores from
 *      the staged K tile: the forward's own code, so the same bits, so the same kept
 *      set S >= tau_i;
 *   2. lanes over the tile's keys: for kept j, P = exp(S - lse_i), z from the dropout
 *      hash, dP = z/(1-p) dO_i . V_j (each lane a serial dot over d against the staged
 *      V row), and the slot entry becomes dS = P (dP - Delta_i); 0 if not kept;
 *   3. dQ_i += dS_ij K_j serially over the tile's keys, K from shared, in groups of 4
 *      keys, a group of zeros skipped (bwd_add_rows: the sums in registers over the
 *      tile, or for the host lanes over d innermost);
 *   4. after the last tile: dq_i = dQ_i / sqrt(d).
 * Per tile, the block's rows are independent: a warp owns the same rows in every loop,
 * so its slot and sums need no barrier. */
#include "attention_bwd_warp.h"

#include "dropout.h"

/* Delta_i (to delta and to the block's stat), dQ_i = 0; a padded row writes zeros. */
static void dq_begin(Ctx *c, Builder *b, Op *i, Op *r) {
  int D = c->spec->head_dim;
  Op *ooff = bwd_row_offset(c, b, ATTN_BWD_O_SB, i), *at = bwd_row_stat(c, b, i);
  Builder valid, padded, dot, one;
  ir_if(b, lt(b, i, c->len), &valid, &padded);
  Op *red = ir_reduce(&valid, AXIS_LANE, RED_ADD, TY_F32, i32(&valid, D), "d", &dot);
  Op *x = add(&dot, ooff, red->index);
  ir_yield(&dot, mul(&dot, ir_load(&dot, c->buf[ATTN_BWD_DOUT], x),
                     ir_load(&dot, c->buf[ATTN_BWD_O], x)));
  ir_pfor(&valid, AXIS_LANE, i32(&valid, 1), "one", &one);
  ir_store(&one, c->buf[ATTN_BWD_DELTA], at, red);
  ir_store(&one, c->stat, r, red);
  bwd_zero_vec(c, &valid, mul(&valid, r, i32(&valid, D)));

  bwd_write_vec(c, &padded, c->buf[ATTN_BWD_DQ], bwd_row_offset(c, &padded, ATTN_BWD_DQKV_SB, i), NULL,
            NULL, NULL);
  ir_pfor(&padded, AXIS_LANE, i32(&padded, 1), "one", &one);
  ir_store(&one, c->buf[ATTN_BWD_DELTA], at, f32(&one, 0));
}

/* Row i (block row r, warp w) against the staged keys t0 .. t0 + m - 1 (m >= 1). */
static void dq_tile_row(Ctx *c, Builder *b, Op *i, Op *r, Op *w, Op *t0, Op *m) {
  int D = c->spec->head_dim, ld = c->ld;
  Op *sl = mul(b, w, i32(b, c->kt)), *at = bwd_row_stat(c, b, i);
  AttnRow row = {c->slot, sl, m};
  Op *qoff, *goff;
  Buf *q = bwd_own_row(c, b, 0, ATTN_BWD_Q, ATTN_BWD_QKV_SB, i, r, &qoff);
  Buf *dout = bwd_own_row(c, b, 1, ATTN_BWD_DOUT, ATTN_BWD_O_SB, i, r, &goff);
  attn_row_scores(b, &row, q, c->ta, qoff, i32(b, 0), i32(b, ld), D, c->host);
  Op *lse = ir_load(b, c->buf[ATTN_BWD_LSE], at), *delta = ir_load(b, c->stat, r);
  Op *tau = c->spec->select != SEL_NONE ? ir_load(b, c->buf[ATTN_BWD_TAU], at) : NULL;
  Op *rh = bwd_row_hash(c, b, i);

  /* 2. the slot's S -> dS (kept) or 0, padded with zeros to a whole group */
  Op *mp = bwd_round_up(b, m, c->group);
  Builder lane, in, pad, yes, no;
  Op *e = ir_pfor(b, AXIS_LANE, mp, "j", &lane)->index;
  Op *se = add(&lane, sl, e);
  ir_if(&lane, lt(&lane, e, m), &in, &pad);
  ir_store(&pad, c->slot, se, f32(&pad, 0));
  Op *s = ir_load(&in, c->slot, se);
  ir_if(&in, tau ? ir_cmp(&in, CMP_GE, s, tau) : ir_const_bool(&in, true), &yes, &no);
  Op *pr = ir_un(&yes, OP_EXP, sub(&yes, s, lse));
  Op *z = dropout_keep_ir(&yes, rh, add(&yes, t0, e), c->thresh);
  Op *zs = ir_select(&yes, z, c->inv_keep, f32(&yes, 0));
  Op *dp = bwd_dot_serial(&yes, dout, goff, c->tb, mul(&yes, e, i32(&yes, ld)), D);
  ir_store(&yes, c->slot, se, mul(&yes, pr, sub(&yes, mul(&yes, dp, zs), delta)));
  ir_store(&no, c->slot, se, f32(&no, 0));

  /* 3. dQ_i += dS_ij K_j over the tile's keys */
  bwd_add_rows(c, b, sl, i32(b, 0), mp, 1, (Buf *[]){c->ta}, (Op *[]){mul(b, r, i32(b, D))});
}

void bwd_dq_body(Ctx *c, Builder *b) {
  int D = c->spec->head_dim;
  Op *N = c->p[ATTN_BWD_N], *w, *r, *i;
  Builder in;
  bwd_block_rows(c, b, N, &in, &w, &r, &i);
  dq_begin(c, &in, i, r);

  /* keys the block's rows see: none past L, none past its last row when causal */
  Op *hi = c->len;
  if (c->spec->causal)
    hi = min_(b, add(b, c->first, i32(b, c->rows)), c->len);
  hi = ir_select(b, lt(b, c->first, c->len), hi, i32(b, 0));
  bwd_stage_own(c, b, ATTN_BWD_QKV_SB, ATTN_BWD_Q, ATTN_BWD_O_SB, ATTN_BWD_DOUT);
  Builder tile, row;
  Op *nk, *t0 = bwd_tile_loop(c, b, i32(b, 0), hi, &tile, &nk);
  Op *k0 = bwd_row_offset(c, &tile, ATTN_BWD_QKV_SB, t0), *sn = c->p[ATTN_BWD_QKV_SN];
  attn_stage_rows(&tile, c->ta, c->ld, c->buf[ATTN_BWD_K], k0, sn, nk, D);
  attn_stage_rows(&tile, c->tb, c->ld, c->buf[ATTN_BWD_V], k0, sn, nk, D);
  bwd_zero_tail(c, &tile, c->ta, nk);
  ir_barrier(&tile);
  bwd_block_rows(c, &tile, c->len, &row, &w, &r, &i);
  Op *m = nk;
  if (c->spec->causal) {   /* keys j <= i: m = min(nk, i + 1 - t0), maybe <= 0 */
    Builder some;
    m = min_(&row, nk, sub(&row, add(&row, i, i32(&row, 1)), t0));
    ir_if(&row, ir_cmp(&row, CMP_GT, m, i32(&row, 0)), &some, NULL);
    row = some;
  }
  dq_tile_row(c, &row, i, r, w, t0, m);

  bwd_block_rows(c, b, c->len, &in, &w, &r, &i);
  bwd_write_vec(c, &in, c->buf[ATTN_BWD_DQ], bwd_row_offset(c, &in, ATTN_BWD_DQKV_SB, i), c->acc,
            mul(&in, r, i32(&in, D)), c->scale);
}

