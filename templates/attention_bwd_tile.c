/* The backward template's tile schedule (SCHED_TILE, the CPU's): the contract of
 * attention_bwd.h in ONE kernel, NAME_attn_bwd, a block per (b, h), one warp, with the
 * micro-kernels of attention_tile.h.
 *
 * K^T and V^T of the head's keys are packed once; the head's dK and dV sums are zeroed
 * and then accumulated; per block of TILE_KR query rows: S = Q K^T / sqrt(d) and
 *   dP' = dO V^T as register tiles of SCORE_ROWS rows (S: the forward's in-order fma
 *   chain, so the same bits and the same kept set) into the block's slot rows;
 * then per group of TILE_RT rows:
 *   per valid row Delta_i and, lanes over keys, dS_ij = P_ij (dP'_ij z_ij / (1 - p) -
 *   Delta_i) over S's slot and P_ij z_ij / (1 - p) over dP''s, for kept pairs (0
 *   elsewhere);
 * then for the block, a mask per key of its rows with a nonzero weight there
 *   (row_bits), and (unless those masks would make this walk cost more than
 *   dense_block's GEMMs over every row and key: walk_loses) per KEY_TILE keys j, over
 *   the rows r set in one of their masks, lowest first: dk_j += dS_rj Q_r and
 *   dv_j += Pz_rj dO_r into a 2 KEY_TILE x D register tile loaded and stored once
 *   per block (per group it was an L2-bound rank-4 update of the head's dK and dV),
 *   and dQ_r += dS_rj K_j into the block's dQ rows (L1). Each sum runs over its i
 *   (dK, dV) or j (dQ) in order, as the split kernels' did; skipped rows would add
 *   exact zeros.
 * Finally dq = dQ / sqrt(d) per block (a dense block's per dQ tile, as it ends), dk =
 * dK / sqrt(d), dv = dV. Against the GPU's
 * two kernels (dq with a warp per row, dkdv with a warp per key) this computes S, dP'
 * and P once instead of twice: 10 n^2 d flops per head instead of 14. The GPU cannot
 * do the same without atomics on dk, dv (many blocks per head); a host block owns its
 * head's dk and dv.
 * Where sparsity pays here: S and dP' are dense (the kept test needs every score);
 * the products (6 of the 10) run over the rows some key of a pair uses, 36% of the
 * block's rows at s = 0.8 for random kept sets (1 - s^2). */
#include <math.h>
#include <stdio.h>

#include "attention_bwd_impl.h"
#include "attention_common.h"
#include "attention_tile.h"
#include "attention_tile_gemm.h"
#include "dropout.h"

#define i32 attn_i32
#define add attn_add
#define mul attn_mul

/* Rows per score tile (pair_scores): two groups; divides TILE_KR. */
enum { SCORE_ROWS = 2 * TILE_RT };

typedef struct {
  const Spec *spec;
  Buf *buf[ATTN_BWD_NPARAMS];
  Op *p[ATTN_BWD_NPARAMS];
  Buf *ta, *tb;            /* packed transposes K^T, V^T */
  Buf *s1, *s2;            /* TILE_KR slots of ld: S then dS; dP' then P z/(1-p) */
  Buf *sacc;               /* score micro-tile */
  Buf *dk, *dv;            /* the head's dK, dV sums, max_seq x D, contiguous rows */
  Buf *rbits;              /* per key of a block: its rows with nonzero weights (row_bits) */
  Buf *qacc;               /* the block's dQ sums, TILE_KR x D */
  Buf *xb;                 /* the block's Q and dO rows, contiguous (pack_rows) */
  Buf *kc;                 /* the head's K rows, contiguous (dense_block) */
  Op *copied;              /* i32 var: kc holds the head's K rows (dense_block copies once) */
  Buf *deltas;             /* the block's Delta_i (block_deltas) */
  int64_t ld;              /* keys per row mask array: max_seq rounded up to TILE_JT */
  int64_t lds;             /* slot and packed-row stride (tile_ld) */
  Op *batch, *head, *len, *lim, *scale, *thresh, *inv_keep;
} Ctx;

static Op *f32(Builder *b, double v) { return ir_const_f32(b, v); }
static Op *sub(Builder *b, Op *x, Op *y) { return ir_bin(b, OP_SUB, x, y); }

/* Offset of row `row` of (batch, head) with strides p[sb], p[sb + 1], p[sb + 2]. */
static Op *row_off(Ctx *c, Builder *b, int sb, Op *row) {
  return attn_offset(b, c->batch, row, c->head, c->p[sb], c->p[sb + 1], c->p[sb + 2]);
}

/* Index of (batch, head, row) in a [B, H, N] per-row array. */
static Op *row_stat(Ctx *c, Builder *b, Op *row) {
  return add(b, mul(b, add(b, mul(b, c->batch, c->p[ATTN_BWD_H]), c->head), c->p[ATTN_BWD_N]),
             row);
}

/* Slot row g + r, key e (g: an i32 row index). */
static Op *slot(Ctx *c, Builder *b, Op *g, int r, Op *e) {
  return add(b, mul(b, add(b, g, i32(b, r)), i32(b, (int)c->lds)), e);
}

/* lanes over d: dst[off + d] = 0 */
static void zero_row(Ctx *c, Builder *b, Buf *dst, Op *off) {
  Builder lane;
  Op *d = ir_pfor(b, AXIS_LANE, i32(b, c->spec->head_dim), "d", &lane)->index;
  ir_store(&lane, dst, add(&lane, off, d), f32(&lane, 0));
}

/* lanes over d: dst[off + d] = acc[aoff + d] * factor */
static void write_row(Ctx *c, Builder *b, Buf *dst, Op *off, Buf *acc, Op *aoff, Op *factor) {
  Builder lane;
  Op *d = ir_pfor(b, AXIS_LANE, i32(b, c->spec->head_dim), "d", &lane)->index;
  ir_store(&lane, dst, add(&lane, off, d),
           mul(&lane, ir_load(&lane, acc, add(&lane, aoff, d)), factor));
}

/* Kept pair (i, j) whose S is x and dP' (= dO_i . V_j) is g, row i's lse:
 * *ds = P (g z/(1-p) - Delta), *pz = P z/(1-p), as in attention_bwd.c. rh NULL: no
 * dropout (p = 0), z/(1-p) = 1, so P and g stand unmultiplied: x * 1 = x, the same
 * bits, without the mask's hash per pair. */
static Op *grad_pair(Ctx *c, Builder *b, Op *x, Op *g, Op *lse, Op *j, Op *rh, Op *delta,
                     Op **pz) {
  Op *pr = ir_un(b, OP_EXP, sub(b, x, lse));
  if (!rh) {
    *pz = pr;
    return mul(b, pr, sub(b, g, delta));
  }
  Op *zs = ir_select(b, dropout_keep_ir(b, rh, j, c->thresh), c->inv_keep, f32(b, 0));
  *pz = mul(b, pr, zs);
  return mul(b, pr, sub(b, mul(b, g, zs), delta));
}

/* Row i's tau, or NULL where the spec never selects (every valid pair kept). */
static Op *row_tau(Ctx *c, Builder *b, Op *i) {
  if (c->spec->select == SEL_NONE)
    return NULL;
  return ir_load(b, c->buf[ATTN_BWD_TAU], row_stat(c, b, i));
}

static Op *kept_pair(Builder *b, Op *x, Op *tau) {
  return tau ? ir_cmp(b, CMP_GE, x, tau) : ir_const_bool(b, true);
}

static Op *hash(Ctx *c, Builder *b, Op *i) {
  Op **p = c->p;
  return dropout_row_hash_ir(b, p[ATTN_BWD_SEED], p[ATTN_BWD_STEP], p[ATTN_BWD_LAYER], c->batch,
                             c->head, i);
}

/* Per key j < mb of the block: bit r of rbits[j] set where slot row r has a nonzero
 * dS or P z/(1-p) at j (rows past lim hold zeros, so never set). Lanes over keys, the
 * block's rows unrolled: two loads and compares per pair, vectorised. */
static void row_bits(Ctx *c, Builder *b, Op *mb) {
  Builder lane;
  Op *j = ir_pfor(b, AXIS_LANE, mb, "j", &lane)->index;
  Op *bits = i32(&lane, 0);
  for (int r = 0; r < TILE_KR; r++) {
    Op *at = slot(c, &lane, i32(&lane, 0), r, j);
    Op *nz = ir_bin(&lane, OP_OR, ir_cmp(&lane, CMP_NE, ir_load(&lane, c->s1, at), f32(&lane, 0)),
                    ir_cmp(&lane, CMP_NE, ir_load(&lane, c->s2, at), f32(&lane, 0)));
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
static void key_tile(Ctx *c, Builder *b, Op *j0, int kb) {
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
static void pack_rows(Ctx *c, Builder *b, Op *b0) {
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
static void key_updates(Ctx *c, Builder *b, Op *mb) {
  Builder tiles, rest;
  Op *full = mul(b, ir_bin(b, OP_DIV, mb, i32(b, KEY_TILE)), i32(b, KEY_TILE));
  Op *e = ir_for(b, i32(b, 0), full, KEY_TILE, "j0", &tiles)->index;
  key_tile(c, &tiles, e, KEY_TILE);
  e = ir_for(b, full, mb, 1, "j0", &rest)->index;
  key_tile(c, &rest, e, 1);
}

/* dq = dQ / sqrt(d) for slot row r of the block (row b0 + r) when it is valid. */
static void write_dq(Ctx *c, Builder *b, Op *b0, Op *r) {
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
static void dense_block(Ctx *c, Builder *b, Op *b0, Op *mb, Op *nr) {
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
static Op *block_dense(Ctx *c, Builder *b, Op *b0, Op *nr) {
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

static Op *walk_loses(Ctx *c, Builder *b, Op *mb, Op *nr) {
  Op *steps = tile_bits_steps(b, c->rbits, mb, KEY_TILE);
  Op *pairs = ir_bin(b, OP_DIV, add(b, mb, i32(b, KEY_TILE - 1)), i32(b, KEY_TILE));
  Op *walk = mul(b, steps, i32(b, 1000));
  Op *gemms = mul(b, mul(b, nr, pairs), i32(b, WALK_PER_MILLE));
  return ir_select(b, ir_cmp(b, CMP_GE, walk, gemms), i32(b, 1), i32(b, 0));
}

/* ---- one group of rows ---- */

static Op *row_keys(Ctx *c, Builder *b, Op *i) {
  return c->spec->causal ? ir_bin(b, OP_MIN, add(b, i, i32(b, 1)), c->len) : c->len;
}

/* Delta_i = dO_i . O_i for the block's valid rows, into delta. All rows first, in
 * one loop: the O rows are read nowhere else, so each is a cache miss, and computed
 * per row beside its dS pass (the earlier order) the misses came one at a time. */
static void block_deltas(Ctx *c, Builder *b, Op *b0) {
  int D = c->spec->head_dim;
  Builder loop, valid, dot, one;
  Op *r = ir_for(b, i32(b, 0), i32(b, TILE_KR), 1, "r", &loop)->index;
  Op *i = add(&loop, b0, r);
  ir_if(&loop, ir_cmp(&loop, CMP_LT, i, c->lim), &valid, NULL);
  Op *go = row_off(c, &valid, ATTN_BWD_O_SB, i);
  Op *red = ir_reduce(&valid, AXIS_LANE, RED_ADD, TY_F32, i32(&valid, D), "d", &dot);
  Op *at = add(&dot, go, red->index);
  ir_yield(&dot, mul(&dot, ir_load(&dot, c->buf[ATTN_BWD_DOUT], at),
                     ir_load(&dot, c->buf[ATTN_BWD_O], at)));
  ir_pfor(&valid, AXIS_LANE, i32(&valid, 1), "one", &one);
  ir_store(&one, c->buf[ATTN_BWD_DELTA], row_stat(c, &one, i), red);
  ir_store(&one, c->deltas, r, red);
}

/* dS and P z/(1-p) over row i's two slots (kept pairs; 0 elsewhere), with its Delta
 * from block_deltas (slot row g + r). The row's lse and tau are loaded before the
 * lanes: lse read under the kept test became a masked gather per 16 keys. */
static void dq_row(Ctx *c, Builder *b, Op *g, int r, Op *i, Op *m) {
  Builder on, off;
  Op *delta = ir_load(b, c->deltas, add(b, g, i32(b, r)));
  Op *lse = ir_load(b, c->buf[ATTN_BWD_LSE], row_stat(c, b, i)), *tau = row_tau(c, b, i);
  /* p = 0 (no dropout, as inference-style runs and bench_vs_torch have it): lanes
   * without the mask's hash, three multiplies per pair that only ever gave 1 */
  ir_if(b, ir_cmp(b, CMP_GT, c->p[ATTN_BWD_DROPOUT], f32(b, 0)), &on, &off);
  for (int drop = 0; drop < 2; drop++) {
    Builder *at = drop ? &on : &off, lane, yes, no;
    Op *rh = drop ? hash(c, at, i) : NULL;
    Op *j = ir_pfor(at, AXIS_LANE, m, "j", &lane)->index;
    Op *sj = slot(c, &lane, g, r, j);
    Op *x = ir_load(&lane, c->s1, sj);
    ir_if(&lane, kept_pair(&lane, x, tau), &yes, &no);
    Op *pz;
    ir_store(&yes, c->s1, sj,
             grad_pair(c, &yes, x, ir_load(&yes, c->s2, sj), lse, j, rh, delta, &pz));
    ir_store(&yes, c->s2, sj, pz);
    ir_store(&no, c->s1, sj, f32(&no, 0));
    ir_store(&no, c->s2, sj, f32(&no, 0));
  }
}

/* Slot rows g + r0 .. g + r0 + n - 1 set to 0 for j < mb: rows past lim, which the
 * products read as weights (0 instead of a select per weight). */
static void zero_rows(Ctx *c, Builder *b, Op *g, int r0, int n, Op *mb) {
  Builder lane;
  for (int r = r0; r < r0 + n; r++) {
    Op *j = ir_pfor(b, AXIS_LANE, mb, "j", &lane)->index;
    Op *at = slot(c, &lane, g, r, j);
    ir_store(&lane, c->s1, at, f32(&lane, 0));
    ir_store(&lane, c->s2, at, f32(&lane, 0));
  }
}

/* S and dP' of rows i0 .. i0 + SCORE_ROWS - 1 (i0 < lim) into slot rows g .., as
 * SCORE_ROWS x 32 register tiles (each packed key vector loaded once per 8 rows;
 * 4 x 64 tiles loaded it per 4, and the packs, 2 x 128 KiB at n = 512, come from L2).
 * Rows past lim are scored from the last valid row. */
static void pair_scores(Ctx *c, Builder *b, Op *i0, Op *g) {
  int D = c->spec->head_dim;
  Op *mg = row_keys(c, b, add(b, i0, i32(b, SCORE_ROWS - 1)));
  Op *last = sub(b, c->lim, i32(b, 1)), *qrow[SCORE_ROWS], *grow[SCORE_ROWS];
  for (int r = 0; r < SCORE_ROWS; r++) {
    Op *ic = ir_bin(b, OP_MIN, add(b, i0, i32(b, r)), last);
    qrow[r] = row_off(c, b, ATTN_BWD_QKV_SB, ic);
    grow[r] = row_off(c, b, ATTN_BWD_O_SB, ic);
  }
  Op *obase = mul(b, g, i32(b, (int)c->lds));
  tile_scores_rows(b, c->s1, obase, c->lds, c->buf[ATTN_BWD_Q], qrow, SCORE_ROWS, c->ta, c->lds,
                   mg, D, c->sacc, c->scale);
  tile_scores_rows(b, c->s2, obase, c->lds, c->buf[ATTN_BWD_DOUT], grow, SCORE_ROWS, c->tb,
                   c->lds, mg, D, c->sacc, NULL);
}

/* Rows i0 .. i0 + TILE_RT - 1 (i0 < lim), slot rows g .. (S and dP' there): dS and
 * P z/(1-p) into the slots (0 past lim, and, causal, past a row's keys up to the
 * block's last); mb: keys of the block. */
static void group_grads(Ctx *c, Builder *b, Op *i0, Op *g, Op *mb) {
  Builder row, past;
  for (int r = 0; r < TILE_RT; r++) {
    Op *i = add(b, i0, i32(b, r));
    Op *valid = ir_cmp(b, CMP_LT, i, c->lim);
    ir_if(b, valid, &row, &past);
    dq_row(c, &row, g, r, i, row_keys(c, &row, i));
    zero_rows(c, &past, g, r, 1, mb);
    if (c->spec->causal) {   /* keys j > i of row i, up to the block's last: weight 0 */
      Builder loop;
      Op *m = row_keys(c, &row, i);
      Op *j = ir_pfor(&row, AXIS_LANE, sub(&row, mb, m), "j", &loop)->index;
      Op *at = slot(c, &loop, g, r, add(&loop, m, j));
      ir_store(&loop, c->s1, at, f32(&loop, 0));
      ir_store(&loop, c->s2, at, f32(&loop, 0));
    }
  }
}

/* Rows b0 .. b0 + TILE_KR - 1 (b0 < lim): per pair of groups the scores, per group
 * dS and P z/(1-p); then the per-key row masks, dK, dV and dQ, and dq. */
static void emit_block(Ctx *c, Builder *b, Op *b0) {
  Op *mb = row_keys(c, b, add(b, b0, i32(b, TILE_KR - 1)));
  Builder pairs, inside, past, groups, ginside, gpast, dq;
  block_deltas(c, b, b0);
  Op *g2 = ir_for(b, i32(b, 0), i32(b, TILE_KR), SCORE_ROWS, "g2", &pairs)->index;
  Op *i2 = add(&pairs, b0, g2);
  ir_if(&pairs, ir_cmp(&pairs, CMP_LT, i2, c->lim), &inside, &past);
  pair_scores(c, &inside, i2, g2);
  Op *g = ir_for(&inside, g2, add(&inside, g2, i32(&inside, SCORE_ROWS)), TILE_RT, "g",
                 &groups)->index;
  Op *i0 = add(&groups, b0, g);
  ir_if(&groups, ir_cmp(&groups, CMP_LT, i0, c->lim), &ginside, &gpast);
  group_grads(c, &ginside, i0, g, mb);
  zero_rows(c, &gpast, g, 0, TILE_RT, mb);
  zero_rows(c, &past, g2, 0, SCORE_ROWS, mb);
  tile_zero(b, c->qacc, TILE_KR, c->spec->head_dim);
  Builder masked, dense, sparse;
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

/* ---- the kernel ---- */

/* Rows L <= i < N of the head (and i < rows): dq, dk, dv zero and delta 0. The loop
 * runs over those rows only: over all `rows` with a test per row it was ~1% of the
 * backward's samples at n = 64 (512 empty iterations per head at max_seq 512). */
static void padded(Ctx *c, Builder *b, int rows) {
  Builder pad, one;
  Op *hi = ir_bin(b, OP_MIN, c->p[ATTN_BWD_N], i32(b, rows));
  Op *i = ir_for(b, c->len, hi, 1, "i", &pad)->index;
  Op *off = row_off(c, &pad, ATTN_BWD_DQKV_SB, i);
  for (int g = ATTN_BWD_DQ; g <= ATTN_BWD_DV; g++)
    zero_row(c, &pad, c->buf[g], off);
  ir_pfor(&pad, AXIS_LANE, i32(&pad, 1), "one", &one);
  ir_store(&one, c->buf[ATTN_BWD_DELTA], row_stat(c, &one, i), f32(&one, 0));
}

/* The sums of keys j < L set to 0, or written out: dk = sum / sqrt(d), dv = sum. */
static void keys_pass(Ctx *c, Builder *b, bool zero) {
  Builder loop, lane;
  int D = c->spec->head_dim;
  Op *j = ir_for(b, i32(b, 0), c->lim, 1, "j", &loop)->index;
  Op *off = row_off(c, &loop, ATTN_BWD_DQKV_SB, j), *lo = mul(&loop, j, i32(&loop, D));
  Op *d = ir_pfor(&loop, AXIS_LANE, i32(&loop, D), "d", &lane)->index;
  Op *at = add(&lane, off, d), *lat = add(&lane, lo, d);
  if (zero) {
    ir_store(&lane, c->dk, lat, f32(&lane, 0));
    ir_store(&lane, c->dv, lat, f32(&lane, 0));
    return;
  }
  ir_store(&lane, c->buf[ATTN_BWD_DK], at, mul(&lane, ir_load(&lane, c->dk, lat), c->scale));
  ir_store(&lane, c->buf[ATTN_BWD_DV], at, ir_load(&lane, c->dv, lat));
}

static void emit_head(Ctx *c, Builder *b, int rows) {
  int D = c->spec->head_dim;
  Op **p = c->p;
  padded(c, b, rows);
  Builder work, groups, inside;
  ir_if(b, ir_cmp(b, CMP_GT, c->lim, i32(b, 0)), &work, NULL);
  Op *k0 = row_off(c, &work, ATTN_BWD_QKV_SB, i32(&work, 0));
  tile_pack_t(&work, c->ta, c->lds, c->buf[ATTN_BWD_K], k0, p[ATTN_BWD_QKV_SN], c->lim, D);
  tile_pack_t(&work, c->tb, c->lds, c->buf[ATTN_BWD_V], k0, p[ATTN_BWD_QKV_SN], c->lim, D);
  keys_pass(c, &work, true);
  c->copied = ir_var(&work, i32(&work, 0), "copied");
  Op *b0 = ir_for(&work, i32(&work, 0), i32(&work, rows), TILE_KR, "blk", &groups)->index;
  ir_if(&groups, ir_cmp(&groups, CMP_LT, b0, c->lim), &inside, NULL);
  emit_block(c, &inside, b0);
  keys_pass(c, &work, false);
}

Kernel *attention_bwd_tile_build(const Spec *s, const TileConfig *t) {
  (void)t;   /* a block is a whole head, whatever the tile's rows */
  char name[96];
  snprintf(name, sizeof name, "%s_attn_bwd", s->name);
  Kernel *k = ir_kernel_new(name, 1);
  Builder b = ir_builder(k);
  Ctx c = {.spec = s, .ld = (s->max_seq + TILE_JT - 1) / TILE_JT * TILE_JT};
  c.lds = tile_ld(s->max_seq);
  bwd_declare_params(k, ATTN_BWD_FUSED, c.buf, c.p);
  int D = s->head_dim;
  int rows = (s->max_seq + TILE_KR - 1) / TILE_KR * TILE_KR;
  c.ta = ir_shared(k, "ta", TY_F32, D * c.lds);
  c.tb = ir_shared(k, "tb", TY_F32, D * c.lds);
  c.s1 = ir_shared(k, "s1", TY_F32, TILE_KR * c.lds);
  c.s2 = ir_shared(k, "s2", TY_F32, TILE_KR * c.lds);
  c.sacc = ir_shared(k, "sacc", TY_F32, TILE_RT * TILE_JT);
  c.dk = ir_shared(k, "dk", TY_F32, (int64_t)s->max_seq * D);
  c.dv = ir_shared(k, "dv", TY_F32, (int64_t)s->max_seq * D);
  c.rbits = ir_shared(k, "rbits", TY_I32, c.ld);
  c.qacc = ir_shared(k, "qacc", TY_F32, (int64_t)TILE_KR * D);
  c.xb = ir_shared(k, "xb", TY_F32, (int64_t)TILE_KR * 2 * D);
  if (tile_frame_kc_bytes(s))
    c.kc = ir_shared(k, "kc", TY_F32, (int64_t)s->max_seq * D);
  c.deltas = ir_shared(k, "deltas", TY_F32, TILE_KR);
  ir_set_grid(k, 0, ATTN_BWD_N, -1, rows);
  ir_set_grid(k, 1, ATTN_BWD_H, -1, 1);
  ir_set_grid(k, 2, ATTN_BWD_B, -1, 1);

  c.head = ir_block_id(&b, 1);
  c.batch = ir_block_id(&b, 2);
  /* lengths past max_seq would overflow the slots: clamp (callers refuse them) */
  c.len = ir_bin(&b, OP_MIN, ir_load(&b, c.buf[ATTN_BWD_LENGTHS], c.batch), i32(&b, s->max_seq));
  c.lim = ir_bin(&b, OP_MIN, c.p[ATTN_BWD_N], c.len);
  c.scale = f32(&b, 1.0 / sqrt((double)D));
  Op *p = c.p[ATTN_BWD_DROPOUT];
  c.thresh = dropout_threshold_ir(&b, p);
  c.inv_keep = ir_bin(&b, OP_DIV, f32(&b, 1.0), sub(&b, f32(&b, 1.0), p));
  Builder warp;
  ir_pfor(&b, AXIS_WARP, i32(&b, 1), "w", &warp);
  emit_head(&c, &warp, rows);
  return k;
}

