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

/* Keys of row i in the staged tile at t0 of nk keys: j < L, and j <= i when causal. */
static Op *row_keys(Ctx *c, Builder *b, Op *i, Op *t0, Op *nk) {
  if (!c->spec->causal)
    return nk;
  Op *m = min_(b, nk, sub(b, add(b, i, i32(b, 1)), t0));
  return ir_bin(b, OP_MAX, m, i32(b, 0));
}

/* The rows r_t = r0 + warps t (t < R) of warp w, block rows all owned by w, against the
 * staged keys t0 .. t0 + nk - 1: steps 1-3. A row past the block or past L has no keys
 * (m_t = 0) and reads row r0's values in their place; r0 itself is below the block's
 * rows, and below L wherever any row of the set has keys. */
static void dq_tile_set(Ctx *c, Builder *b, Op *w, Op *r0, Op *t0, Op *nk) {
  int D = c->spec->head_dim, ld = c->ld, R = c->R;
  Op *r[ATTN_ROWS_MAX], *i[ATTN_ROWS_MAX], *at[ATTN_ROWS_MAX], *valid[ATTN_ROWS_MAX];
  Op *m[ATTN_ROWS_MAX], *mx = NULL;
  bwd_set_rows(c, b, r0, valid, at, r, i);
  for (int t = 0; t < R; t++) {
    m[t] = ir_select(b, valid[t], row_keys(c, b, at[t], t0, nk), i32(b, 0));
    mx = mx ? ir_bin(b, OP_MAX, mx, m[t]) : m[t];
  }
  Builder some;
  ir_if(b, ir_cmp(b, CMP_GT, mx, i32(b, 0)), &some, NULL);
  b = &some;

  /* 1. S of every row into its slot */
  AttnRow rows[ATTN_ROWS_MAX];
  Op *qoff[ATTN_ROWS_MAX], *goff[ATTN_ROWS_MAX], *sl[ATTN_ROWS_MAX];
  Buf *q = NULL, *dout = NULL;
  for (int t = 0; t < R; t++) {
    sl[t] = mul(b, add(b, mul(b, w, i32(b, R)), i32(b, t)), i32(b, c->kt));
    rows[t] = (AttnRow){c->slot, sl[t], m[t]};
    q = bwd_own_row(c, b, 0, ATTN_BWD_Q, ATTN_BWD_QKV_SB, i[t], r[t], &qoff[t]);
    dout = bwd_own_row(c, b, 1, ATTN_BWD_DOUT, ATTN_BWD_O_SB, i[t], r[t], &goff[t]);
  }
  if (R == 1)
    attn_row_scores(b, &rows[0], q, c->ta, qoff[0], i32(b, 0), i32(b, ld), D, c->host);
  else
    attn_rows_scores(b, R, rows, q, qoff, c->ta, i32(b, 0), i32(b, ld), D);
  Op *lse[ATTN_ROWS_MAX], *delta[ATTN_ROWS_MAX], *tau[ATTN_ROWS_MAX], *rh[ATTN_ROWS_MAX];
  for (int t = 0; t < R; t++) {
    Op *at = bwd_row_stat(c, b, i[t]);
    lse[t] = ir_load(b, c->buf[ATTN_BWD_LSE], at);
    delta[t] = ir_load(b, c->stat, r[t]);
    tau[t] = c->spec->select != SEL_NONE ? ir_load(b, c->buf[ATTN_BWD_TAU], at) : NULL;
    rh[t] = bwd_row_hash(c, b, i[t]);
  }

  /* 2. each slot's S -> dS (kept) or 0, padded with zeros to a whole group. One row:
   * dP only for kept keys. Several: the lane's dP for all of them at once (each dO_t
   * element loaded once per d for all lanes, V_j once for all rows), then the rows. */
  Op *mp = bwd_round_up(b, mx, c->group);
  Builder lane, in, pad, yes, no;
  Op *e = ir_pfor(b, AXIS_LANE, mp, "j", &lane)->index;
  Op *voff = mul(&lane, e, i32(&lane, ld)), *dp[ATTN_ROWS_MAX];
  if (R > 1)
    bwd_dots(&lane, lt(&lane, e, mx), R, dout, goff, c->tb, voff, D, dp);
  for (int t = 0; t < R; t++) {
    Op *se = add(&lane, sl[t], e);
    ir_if(&lane, lt(&lane, e, m[t]), &in, &pad);
    ir_store(&pad, c->slot, se, f32(&pad, 0));
    Op *s = ir_load(&in, c->slot, se);
    ir_if(&in, tau[t] ? ir_cmp(&in, CMP_GE, s, tau[t]) : ir_const_bool(&in, true), &yes, &no);
    Op *pr = ir_un(&yes, OP_EXP, sub(&yes, s, lse[t]));
    Op *z = dropout_keep_ir(&yes, rh[t], add(&yes, t0, e), c->thresh);
    Op *zs = ir_select(&yes, z, c->inv_keep, f32(&yes, 0));
    Op *g = R > 1 ? ir_get(&yes, dp[t]) : bwd_dot_serial(&yes, dout, goff[t], c->tb, voff, D);
    ir_store(&yes, c->slot, se, mul(&yes, pr, sub(&yes, mul(&yes, g, zs), delta[t])));
    ir_store(&no, c->slot, se, f32(&no, 0));
  }

  /* 3. dQ_i += dS_ij K_j over the tile's keys, for every row of the set */
  BwdSum sums[ATTN_ROWS_MAX];
  for (int t = 0; t < R; t++)
    sums[t] = (BwdSum){sl[t], c->ta, mul(b, r[t], i32(b, D)), t ? valid[t] : NULL};
  bwd_add_rows(c, b, i32(b, 0), mp, R, sums);
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
  Builder tile;
  Op *nk, *t0 = bwd_tile_loop(c, b, i32(b, 0), hi, &tile, &nk);
  Op *k0 = bwd_row_offset(c, &tile, ATTN_BWD_QKV_SB, t0), *sn = c->p[ATTN_BWD_QKV_SN];
  attn_stage_rows(&tile, c->ta, c->ld, c->buf[ATTN_BWD_K], k0, sn, nk, D);
  attn_stage_rows(&tile, c->tb, c->ld, c->buf[ATTN_BWD_V], k0, sn, nk, D);
  bwd_zero_tail(c, &tile, c->ta, nk);
  ir_barrier(&tile);
  Builder set;
  Op *r0 = bwd_row_sets(c, &tile, &w, &set);
  dq_tile_set(c, &set, w, r0, t0, nk);

  bwd_block_rows(c, b, c->len, &in, &w, &r, &i);
  bwd_write_vec(c, &in, c->buf[ATTN_BWD_DQ], bwd_row_offset(c, &in, ATTN_BWD_DQKV_SB, i), c->acc,
            mul(&in, r, i32(&in, D)), c->scale);
}

