/* The tile backward's products for one block of TILE_KR query rows
 * (attention_bwd_tile.c builds the rest): from the block's slots (dS and P z/(1-p)),
 * dk_j += sum_r dS_rj Q_r, dv_j += sum_r Pz_rj dO_r and dQ_r += sum_j dS_rj K_j, then
 * the block's dq = dQ / sqrt(d). Two ways, chosen per block at run time:
 *   the walk (key_updates): per pair of keys, over the rows that weight either (their
 *     row masks, row_bits), so at s = 0.8 it visits 36% of the rows for random kept
 *     sets;
 *   the GEMMs (dense_block): register-tiled products over every row and key, for a
 *     block whose every row keeps every key (block_dense) or whose masks would make
 *     the walk cost more (walk_loses).
 * Both run each sum over its i (dK, dV) or j (dQ) in order, so they give the same
 * bits: a skipped pair would add an exact zero. */
#include <math.h>

#include "attention_bwd_tile_impl.h"
#include "attention_tile_gemm.h"

/* Per key j < mb of the block: bit r of rbits[j] set where slot row r has a nonzero
 * dS or P z/(1-p) at j (rows past lim hold zeros, so never set). Lanes over keys, the
 * block's rows unrolled: two loads and compares per pair, vectorised. */
static void row_bits(BwdTile *c, Builder *b, Op *mb) {
  Builder lane;
  Op *j = ir_pfor(b, AXIS_LANE, mb, "j", &lane)->index;
  Op *bits = i32(&lane, 0);
  for (int r = 0; r < TILE_KR; r++) {
    Op *at = slot(c, &lane, i32(&lane, 0), r, j);
    Op *nz = ir_bin(&lane, OP_OR, attn_nonzero(&lane, ir_load(&lane, c->s1, at)),
                    attn_nonzero(&lane, ir_load(&lane, c->s2, at)));
    bits = ir_bin(&lane, OP_OR, bits,
                  ir_select(&lane, nz, i32(&lane, (int32_t)(1u << r)), i32(&lane, 0)));
  }
  ir_store(&lane, c->rbits, j, bits);
}

/* Keys j0 .. j0 + kb - 1: dk_j += sum_r dS_rj Q_r and dv_j += sum_r Pz_rj dO_r over
 * the block's rows r that have a nonzero weight for one of these keys (the set bits
 * of their rbits, lowest first, so each sum runs over i = 0, 1, ... in order as the
 * split kernels' did; a skipped row would add exact zeros). dK and dV in one loop:
 * the union of two keys' rows is 36% of the rows at s = 0.8 for random kept sets,
 * of four keys (a 4-key tile per sum) 59%; one key at a time (20%) measured slower
 * at s = 0 and no faster at s = 0.8. The 2 kb x D sums are tile_axpy's accumulators
 * in place in dk, dv, which LLVM keeps in registers over the loop (loaded before,
 * stored after; copying them through acc cost two more copies per tile), not
 * touched when no row uses the keys. dk, dv are block-local with rows of D: summing
 * into the outputs in place measured slower than the split kernels (their rows are
 * 3 H D floats apart in a fused gradient, a stride that maps the head's 2 x 512 rows
 * onto a few cache sets). In the same loop dQ_r += dS_rj K_j, into row r of the
 * block's dQ sums (qacc, L1; the key's K rows stay in registers): for each r the
 * keys come in order, and dQ runs over the same 36% (in its own loop over the keys
 * of its group of 4 rows it ran over 59%: backward 174-181 vs 163-170 ms of CPU at
 * n = 512, s = 0.8, 224-232 vs 218-225 at s = 0). */
static void key_tile(BwdTile *c, Builder *b, Op *j0, int kb) {
  int D = c->spec->head_dim;
  Builder hit, loop;
  Op *j[KEY_TILE], *w[2 * KEY_TILE];
  Op *mask = i32(b, 0);
  for (int k = 0; k < kb; k++) {
    j[k] = add(b, j0, i32(b, k));
    mask = ir_bin(b, OP_OR, mask, ir_load(b, c->rbits, j[k]));
  }
  ir_if(b, ir_cmp(b, CMP_NE, mask, i32(b, 0)), &hit, NULL);
  Op *r = tile_for_bits(&hit, mask, "r", &loop);
  Op *base = mul(&loop, r, i32(&loop, (int)c->lds));
  for (int k = 0; k < kb; k++) {
    w[k] = ir_load(&loop, c->s1, add(&loop, base, j[k]));
    w[kb + k] = ir_load(&loop, c->s2, add(&loop, base, j[k]));
  }
  Op *xrow = mul(&loop, r, i32(&loop, 2 * D)), *at = mul(&loop, j0, i32(&loop, D));
  tile_axpy_at(&loop, c->dk, at, w, kb, c->xb, xrow, D);
  tile_axpy_at(&loop, c->dv, at, w + kb, kb, c->xb, add(&loop, xrow, i32(&loop, D)), D);
  Op *qrow = mul(&loop, r, i32(&loop, D));
  for (int k = 0; k < kb; k++)
    tile_axpy_at(&loop, c->qacc, qrow, &w[k], 1, c->buf[ATTN_BWD_K],
                 row_off(c, &loop, ATTN_BWD_QKV_SB, j[k]), D);
}

/* Row r of xb: Q and then dO of row b0 + r (clamped to a valid row), contiguous.
 * Read in place, the rows are 3 H D (Q of a fused QKV) or H D floats apart, strides
 * that put the block's 2 x 32 rows in a few L1 sets; once copied they stay in L1. */
static void pack_rows(BwdTile *c, Builder *b, Op *b0) {
  int D = c->spec->head_dim;
  Builder loop, lane;
  Op *r = ir_for(b, i32(b, 0), i32(b, TILE_KR), 1, "r", &loop)->index;
  Op *i = ir_bin(&loop, OP_MIN, add(&loop, b0, r), sub(&loop, c->lim, i32(&loop, 1)));
  Op *qo = row_off(c, &loop, ATTN_BWD_QKV_SB, i), *go = row_off(c, &loop, ATTN_BWD_O_SB, i);
  Op *at = mul(&loop, r, i32(&loop, 2 * D));
  Op *d = ir_pfor(&loop, AXIS_LANE, i32(&loop, D), "d", &lane)->index;
  Op *x = add(&lane, at, d);
  ir_store(&lane, c->xb, x, ir_load(&lane, c->buf[ATTN_BWD_Q], add(&lane, qo, d)));
  ir_store(&lane, c->xb, add(&lane, x, i32(&lane, D)),
           ir_load(&lane, c->buf[ATTN_BWD_DOUT], add(&lane, go, d)));
}

/* key_tile over the block's keys j < mb, KEY_TILE at a time, then one by one. */
static void key_updates(BwdTile *c, Builder *b, Op *mb) {
  Builder tiles, rest;
  Op *full = mul(b, ir_bin(b, OP_DIV, mb, i32(b, KEY_TILE)), i32(b, KEY_TILE));
  Op *e = ir_for(b, i32(b, 0), full, KEY_TILE, "j0", &tiles)->index;
  key_tile(c, &tiles, e, KEY_TILE);
  e = ir_for(b, full, mb, 1, "j0", &rest)->index;
  key_tile(c, &rest, e, 1);
}

/* dq = dQ / sqrt(d) for slot row r of the block (row b0 + r) when it is valid. */
static void write_dq(BwdTile *c, Builder *b, Op *b0, Op *r) {
  Builder in;
  Op *i = add(b, b0, r);
  ir_if(b, ir_cmp(b, CMP_LT, i, c->lim), &in, NULL);
  write_row(c, &in, c->buf[ATTN_BWD_DQ], row_off(c, &in, ATTN_BWD_DQKV_SB, i), c->qacc,
            mul(&in, r, i32(&in, c->spec->head_dim)), c->scale);
}

/* ---- a dense block: every mask full ---- */

/* The block's dK, dV and dQ as GEMMs (rows r < nr, keys j < mb; K rows from kc,
 * copied at the head's first dense block), for a block whose every weight may be
 * nonzero (s = 0): dk_j += sum_r dS_rj Q_r and dv_j += sum_r Pz_rj dO_r as 4-key x D
 * register tiles over r, dQ_r += sum_j dS_rj K_j as 4-row x D tiles over j, each sum
 * in key_tile's order (so the same bits), without its per-row mask walk: 16 FMAs per
 * 4 broadcasts and 4 loads, where the fused loop had 24 per 16 loads and 4 stores. */
static void dense_block(BwdTile *c, Builder *b, Op *b0, Op *mb, Op *nr) {
  int D = c->spec->head_dim, ld = (int)c->lds;
  Builder once, tiles, rest, rows;
  if (c->kc) {
    ir_if(b, ir_cmp(b, CMP_EQ, ir_get(b, c->copied), i32(b, 0)), &once, NULL);
    /* read in place, the K rows are 3 H D floats apart (a fused QKV), so a head's 64
     * rows fall in 16 L1 sets and the dense dQ's sweeps over them missed L1 */
    Op *k0 = row_off(c, &once, ATTN_BWD_QKV_SB, i32(&once, 0));
    tile_copy_rows(&once, c->kc, c->buf[ATTN_BWD_K], k0, c->p[ATTN_BWD_QKV_SN], c->lim, D);
    ir_set(&once, c->copied, i32(&once, 1));
  }
  Op *full = mul(b, ir_bin(b, OP_DIV, mb, i32(b, TILE_RT)), i32(b, TILE_RT));
  Op *j0 = ir_for(b, i32(b, 0), full, TILE_RT, "j0", &tiles)->index;
  Op *j1 = ir_for(b, full, mb, 1, "j0", &rest)->index;
  Builder *at[2] = {&tiles, &rest};
  Op *js[2] = {j0, j1};
  for (int k = 0; k < 2; k++) {   /* keys in fours, then one by one */
    Builder *t = at[k];
    Op *aoff = mul(t, js[k], i32(t, D));
    Op *xs = i32(t, 2 * D);
    tile_gemm_acc(t, c->dk, aoff, k ? 1 : 4, c->s1, js[k], 1, ld, c->xb, i32(t, 0), xs, nr, D);
    tile_gemm_acc(t, c->dv, aoff, k ? 1 : 4, c->s2, js[k], 1, ld, c->xb, i32(t, D), xs, nr, D);
  }
  Op *r0 = ir_for(b, i32(b, 0), nr, TILE_RT, "r0", &rows)->index;
  Buf *kb = c->kc ? c->kc : c->buf[ATTN_BWD_K];
  Op *k0 = c->kc ? i32(&rows, 0) : row_off(c, &rows, ATTN_BWD_QKV_SB, i32(&rows, 0));
  Op *ks = c->kc ? i32(&rows, D) : c->p[ATTN_BWD_QKV_SN];
  tile_gemm_acc(&rows, c->qacc, mul(&rows, r0, i32(&rows, D)), TILE_RT, c->s1,
                mul(&rows, r0, i32(&rows, ld)), ld, 1, kb, k0, ks, mb, D);
  /* the tile's rows are final: written out as the next tile computes, where a pass
   * after the block waited on the outputs' cache misses alone */
  for (int r = 0; r < TILE_RT; r++)
    write_dq(c, &rows, b0, add(&rows, r0, i32(&rows, r)));
}

/* Whether the block's rows r < nr (rows b0 + r) keep every key: tau = -inf (or no
 * selection), not causal. Then every weight may be nonzero and dense_block does the
 * products; it would also be exact where some are 0 (P underflowing, dS = 0): a zero
 * weight adds an exact zero. */
static Op *block_dense(BwdTile *c, Builder *b, Op *b0, Op *nr) {
  if (c->spec->causal)
    return ir_const_bool(b, false);
  if (c->spec->select == SEL_NONE)
    return ir_const_bool(b, true);
  Builder lane;
  Op *red = ir_reduce(b, AXIS_LANE, RED_ADD, TY_I32, nr, "r", &lane);
  Op *tau = row_tau(c, &lane, add(&lane, b0, red->index));
  Op *sel = ir_cmp(&lane, CMP_GT, tau, f32(&lane, -INFINITY));
  ir_yield(&lane, ir_select(&lane, sel, i32(&lane, 1), i32(&lane, 0)));
  return ir_cmp(b, CMP_EQ, red, i32(b, 0));
}

/* 1 (i32) where the masked block's products are cheaper as dense_block's GEMMs than
 * as key_updates' walk: its steps (rows set in a pair's masks) at least
 * WALK_PER_MILLE / 1000 of the GEMMs' rows x pairs. Near s = 0 the walk costs more
 * than the GEMMs (a step per row of every pair, plus the pair's loop exit) and made
 * the backward at s = 0.2 1.17x its s = 0 time (n = 512). The walk measured cheaper
 * at s = 0.6 (~64% of the steps for random kept sets) and the GEMMs at s = 0.4 (84%);
 * break-even from those runs ~72-75% (kernels-backward.md). */
enum { WALK_PER_MILLE = 720 };

static Op *walk_loses(BwdTile *c, Builder *b, Op *mb, Op *nr) {
  Op *steps = tile_bits_steps(b, c->rbits, mb, KEY_TILE);
  Op *pairs = ir_bin(b, OP_DIV, add(b, mb, i32(b, KEY_TILE - 1)), i32(b, KEY_TILE));
  Op *walk = mul(b, steps, i32(b, 1000));
  Op *gemms = mul(b, mul(b, nr, pairs), i32(b, WALK_PER_MILLE));
  return ir_select(b, ir_cmp(b, CMP_GE, walk, gemms), i32(b, 1), i32(b, 0));
}

void bwd_tile_products(BwdTile *c, Builder *b, Op *b0, Op *mb) {
  Builder masked, dense, sparse, dq;
  tile_zero(b, c->qacc, TILE_KR, c->spec->head_dim);
  Op *nr = ir_bin(b, OP_MIN, sub(b, c->lim, b0), i32(b, TILE_KR));
  Op *gemm = ir_var(b, ir_select(b, block_dense(c, b, b0, nr), i32(b, 1), i32(b, 0)), "gemm");
  ir_if(b, ir_cmp(b, CMP_EQ, ir_get(b, gemm), i32(b, 0)), &masked, NULL);
  row_bits(c, &masked, mb);
  ir_set(&masked, gemm, walk_loses(c, &masked, mb, nr));
  pack_rows(c, b, b0);   /* after row_bits: at n = 512 its 128 KiB of slots evict xb */
  ir_if(b, ir_cmp(b, CMP_NE, ir_get(b, gemm), i32(b, 0)), &dense, &sparse);
  dense_block(c, &dense, b0, mb, nr);
  key_updates(c, &sparse, mb);
  Op *r = ir_for(&sparse, i32(&sparse, 0), i32(&sparse, TILE_KR), 1, "r", &dq)->index;
  write_dq(c, &dq, b0, r);
}
