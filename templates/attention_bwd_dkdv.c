/* The backward's dkdv kernel (warp schedule, attention_bwd_warp.h): a block takes
 * `rows` keys j of one (b, h), a warp per key at a time:
 *   0. per key j < L: dK_j = dV_j = 0 in shared; padded keys write zeros (dk, dv);
 *   per tile of KT query rows (rows in [lo, L), lo = the block's first key when
 *   causal, else 0): barrier; Q and dO tiles staged, and the tile rows' lse, tau,
 *   Delta and dropout row hashes; barrier; then per key of the block:
 *   1. S_ij = k_j . q_i for the tile's rows i (i >= j when causal) by attn_row_scores
 *      with the roles of q and k swapped, as before staging (the same products
 *      summed in the same order);
 *   2. lanes over the rows: for kept i, P, z, dP = z/(1-p) dO_i . V_j (V_j read from
 *      global memory, one address per load: a broadcast), and the warp's two slots
 *      hold dS = P (dP - Delta_i) and P z/(1-p); zeros if not kept;
 *   3. dK_j += dS_ij Q_i, dV_j += P z/(1-p) dO_i serially over the tile's rows from
 *      shared, in groups of 4 rows as in the dq kernel;
 *   4. after the last tile: dk_j = dK_j / sqrt(d), dv_j = dV_j.
 * Per tile, the block's keys are independent: a warp owns the same keys in every loop,
 * so its slots and sums need no barrier. */
#include "attention_bwd_warp.h"

#include "dropout.h"

/* dK_j = dV_j = 0; a padded key writes zeros. */
static void dkdv_begin(Ctx *c, Builder *b, Op *j, Op *r) {
  int D = c->spec->head_dim;
  Builder valid, padded;
  ir_if(b, lt(b, j, c->len), &valid, &padded);
  bwd_zero_vec(c, &valid, mul(&valid, r, i32(&valid, 2 * D)));
  bwd_zero_vec(c, &valid, add(&valid, mul(&valid, r, i32(&valid, 2 * D)), i32(&valid, D)));
  Op *goff = bwd_row_offset(c, &padded, ATTN_BWD_DQKV_SB, j);
  bwd_write_vec(c, &padded, c->buf[ATTN_BWD_DK], goff, NULL, NULL, NULL);
  bwd_write_vec(c, &padded, c->buf[ATTN_BWD_DV], goff, NULL, NULL, NULL);
}

/* Block-level: the tile rows' lse, tau, Delta (stat rows of kt) and dropout hashes. */
static void dkdv_stage_stats(Ctx *c, Builder *b, Op *t0, Op *n) {
  Builder body;
  Op *e = ir_pfor(b, AXIS_BLOCK, n, "e", &body)->index;
  Op *i = add(&body, t0, e), *at = bwd_row_stat(c, &body, i);
  static const int from[3] = {ATTN_BWD_LSE, ATTN_BWD_TAU, ATTN_BWD_DELTA};
  for (int s = 0; s < 3; s++)
    ir_store(&body, c->stat, add(&body, e, i32(&body, s * c->kt)),
             ir_load(&body, c->buf[from[s]], at));
  ir_store(&body, c->hash, e, bwd_row_hash(c, &body, i));
}

/* The keys r_t = r0 + warps t (t < R) of warp w, block keys all owned by w, against
 * the staged query rows of the tile at t0 (nq rows): steps 1-3. Key t sees tile rows
 * e0_t .. nq - 1 (e0_t = max(j_t - t0, 0) when causal, else 0); e0_0 is the least, so
 * the set scores rows e0_0 .. nq - 1 for all its keys, and step 2 zeroes each key's
 * rows below its own e0_t. A key past the block or past L has no rows and reads key
 * r0's values in their place. */
static void dkdv_tile_set(Ctx *c, Builder *b, Op *w, Op *r0, Op *t0, Op *nq) {
  int D = c->spec->head_dim, ld = c->ld, kt = c->kt, R = c->R;
  Op *r[ATTN_ROWS_MAX], *j[ATTN_ROWS_MAX], *at[ATTN_ROWS_MAX], *valid[ATTN_ROWS_MAX];
  Op *e0[ATTN_ROWS_MAX] = {0};
  bwd_set_rows(c, b, r0, valid, at, r, j);
  for (int t = 0; t < R; t++) {
    Op *first = c->spec->causal ? ir_bin(b, OP_MAX, sub(b, at[t], t0), i32(b, 0)) : i32(b, 0);
    e0[t] = ir_select(b, valid[t], first, nq);
  }
  Builder some;
  ir_if(b, lt(b, e0[0], nq), &some, NULL);
  b = &some;

  /* 1. S_ij = k_j . q_i into each key's slot, rows e0_0 .. nq - 1 */
  AttnRow rows[ATTN_ROWS_MAX];
  Op *koff[ATTN_ROWS_MAX], *voff[ATTN_ROWS_MAX], *sl[ATTN_ROWS_MAX];
  Buf *kb = NULL, *vb = NULL;
  for (int t = 0; t < R; t++) {
    sl[t] = mul(b, add(b, mul(b, w, i32(b, R)), i32(b, t)), i32(b, 2 * kt));
    rows[t] = (AttnRow){c->slot, add(b, sl[t], e0[0]),
                        ir_select(b, valid[t], sub(b, nq, e0[0]), i32(b, 0))};
    kb = bwd_own_row(c, b, 0, ATTN_BWD_K, ATTN_BWD_QKV_SB, j[t], r[t], &koff[t]);
    vb = bwd_own_row(c, b, 1, ATTN_BWD_V, ATTN_BWD_QKV_SB, j[t], r[t], &voff[t]);
  }
  Op *k0 = mul(b, e0[0], i32(b, ld));
  if (R == 1)
    attn_row_scores(b, &rows[0], kb, c->ta, koff[0], k0, i32(b, ld), D, c->host);
  else
    attn_rows_scores(b, R, rows, kb, koff, c->ta, k0, i32(b, ld), D);

  /* 2. each slot's S -> dS and P z/(1-p) (kept), or zeros, over whole groups of rows;
   * several keys: the lane's dP for all of them at once, as in the dq kernel */
  Op *lo = mul(b, ir_bin(b, OP_DIV, e0[0], i32(b, c->group)), i32(b, c->group));
  Op *hi = bwd_round_up(b, nq, c->group);
  Builder lane, in, pad, yes, no;
  Op *e = ir_pfor(b, AXIS_LANE, sub(b, hi, lo), "ii", &lane)->index, *ii = add(&lane, lo, e);
  Op *dooff = mul(&lane, ii, i32(&lane, ld)), *dp[ATTN_ROWS_MAX];
  if (R > 1)
    bwd_dots(&lane, ir_bin(&lane, OP_AND, ir_cmp(&lane, CMP_GE, ii, e0[0]), lt(&lane, ii, nq)),
             R, vb, voff, c->tb, dooff, D, dp);
  for (int t = 0; t < R; t++) {
    Op *se = add(&lane, sl[t], ii), *pe = add(&lane, se, i32(&lane, kt));
    ir_if(&lane, ir_bin(&lane, OP_AND, ir_cmp(&lane, CMP_GE, ii, e0[t]), lt(&lane, ii, nq)),
          &in, &pad);
    Op *s = ir_load(&in, c->slot, se);
    Op *kept = ir_const_bool(&in, true);
    if (c->spec->select != SEL_NONE)
      kept = ir_cmp(&in, CMP_GE, s, ir_load(&in, c->stat, add(&in, ii, i32(&in, kt))));
    ir_if(&in, kept, &yes, &no);
    Op *pr = ir_un(&yes, OP_EXP, sub(&yes, s, ir_load(&yes, c->stat, ii)));
    Op *z = dropout_keep_ir(&yes, ir_load(&yes, c->hash, ii), j[t], c->thresh);
    Op *zs = ir_select(&yes, z, c->inv_keep, f32(&yes, 0));
    Op *g = R > 1 ? ir_get(&yes, dp[t]) : bwd_dot_serial(&yes, c->tb, dooff, vb, voff[t], D);
    Op *delta = ir_load(&yes, c->stat, add(&yes, ii, i32(&yes, 2 * kt)));
    ir_store(&yes, c->slot, se, mul(&yes, pr, sub(&yes, mul(&yes, g, zs), delta)));
    ir_store(&yes, c->slot, pe, mul(&yes, pr, zs));
    Builder *zero[2] = {&no, &pad};
    for (int k = 0; k < 2; k++) {
      ir_store(zero[k], c->slot, se, f32(zero[k], 0));
      ir_store(zero[k], c->slot, pe, f32(zero[k], 0));
    }
  }

  /* 3. dK_j += dS_ij Q_i, dV_j += P z/(1-p) dO_i over the tile's rows: the dK sums
   * first, then the dV sums, so that sums over one tile share its loads */
  BwdSum sums[2 * ATTN_ROWS_MAX];
  for (int t = 0; t < R; t++) {
    Op *base = mul(b, r[t], i32(b, 2 * D)), *ok = t ? valid[t] : NULL;
    sums[t] = (BwdSum){sl[t], c->ta, base, ok};
    sums[R + t] = (BwdSum){add(b, sl[t], i32(b, kt)), c->tb, add(b, base, i32(b, D)), ok};
  }
  bwd_add_rows(c, b, lo, hi, 2 * R, sums);
}

void bwd_dkdv_body(Ctx *c, Builder *b) {
  int D = c->spec->head_dim;
  Op *w, *r, *j;
  Builder in;
  bwd_block_rows(c, b, c->p[ATTN_BWD_N], &in, &w, &r, &j);
  dkdv_begin(c, &in, j, r);

  /* query rows that see the block's keys: i < L, and i >= its first key when causal */
  Op *lo = c->spec->causal ? c->first : i32(b, 0);
  Op *hi = ir_select(b, lt(b, c->first, c->len), c->len, i32(b, 0));
  bwd_stage_own(c, b, ATTN_BWD_QKV_SB, ATTN_BWD_K, ATTN_BWD_QKV_SB, ATTN_BWD_V);
  Builder tile;
  Op *nq, *t0 = bwd_tile_loop(c, b, lo, hi, &tile, &nq);
  attn_stage_rows(&tile, c->ta, c->ld, c->buf[ATTN_BWD_Q],
                  bwd_row_offset(c, &tile, ATTN_BWD_QKV_SB, t0), c->p[ATTN_BWD_QKV_SN], nq, D);
  attn_stage_rows(&tile, c->tb, c->ld, c->buf[ATTN_BWD_DOUT],
                  bwd_row_offset(c, &tile, ATTN_BWD_O_SB, t0), c->p[ATTN_BWD_O_SN], nq, D);
  bwd_zero_tail(c, &tile, c->ta, nq);
  bwd_zero_tail(c, &tile, c->tb, nq);
  dkdv_stage_stats(c, &tile, t0, nq);
  ir_barrier(&tile);
  Builder set;
  Op *r0 = bwd_row_sets(c, &tile, &w, &set);
  dkdv_tile_set(c, &set, w, r0, t0, nq);

  bwd_block_rows(c, b, c->len, &in, &w, &r, &j);
  Op *goff = bwd_row_offset(c, &in, ATTN_BWD_DQKV_SB, j), *base = mul(&in, r, i32(&in, 2 * D));
  bwd_write_vec(c, &in, c->buf[ATTN_BWD_DK], goff, c->acc, base, c->scale);
  bwd_write_vec(c, &in, c->buf[ATTN_BWD_DV], goff, c->acc, add(&in, base, i32(&in, D)), NULL);
}

