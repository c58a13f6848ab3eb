/* The crisp attention backward template (see attention_bwd.h for the contract): the
 * parameters, the legality of a tile, and the warp schedule (the GPU's) — two
 * block-staged kernels. The CPU's tile schedule is attention_bwd_tile.c.
 *
 * Why staged: with a warp per row and lanes over keys, each lane read its own K (or
 * Q) row from global memory — 32 rows per load instruction, uncoalesced — and every
 * warp of every block re-read them. Now a block copies a tile of KT rows into shared
 * memory once, coalesced (attn_stage_rows, leading dimension D + 1 so that lanes
 * reading one d of 32 rows hit 32 banks), and all the block's rows use that tile:
 * per block, K and V (dq) or Q and dO (dkdv) are read from global memory once.
 * KT = attention_bwd_stage_rows(): 32 (a key per lane), less where the block's
 * sums would not fit 48 KiB of shared memory beside two tiles.
 *
 * dq kernel, block = `rows` query rows of one (b, h), a warp per row at a time:
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
 *      keys: lanes over d innermost (as the host vectorises), a group of zeros
 *      skipped, the group's sum in a register (add_rows);
 *   4. after the last tile: dq_i = dQ_i / sqrt(d).
 * dkdv kernel, block = `rows` keys j, a warp per key at a time:
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
 * The block-level loops are uniform (lengths, block ids), so every barrier is reached
 * by the whole block; a warp owns the same rows in every pfor.warp, so its sums need
 * no barrier. */
#include "attention_bwd.h"

#include <math.h>
#include <stdio.h>

#include "attention_bwd_impl.h"
#include "attention_common.h"
#include "dropout.h"

/* Staged rows per step of the sums (step 3): the sum stays in a register for a group,
 * and lanes over d are the inner loop. */
enum { ATTN_BWD_SUM_GROUP = 4 };

typedef struct {
  Kernel *k;
  const Spec *spec;
  int rows, warps, kt, ld;      /* block rows (keys), warps, staged tile rows, its ld */
  int group;                    /* rows per step of the sums (ATTN_BWD_SUM_GROUP or kt) */
  bool host;                    /* SCHED_WARP_HOST: the host's forms (templates.h) */
  Buf *buf[ATTN_BWD_NPARAMS];   /* buffer parameters by ATTN_BWD_* index */
  Op *p[ATTN_BWD_NPARAMS];      /* scalar parameter values */
  Buf *ta, *tb;   /* staged tiles, kt x ld: K, V (dq) / Q, dO (dkdv) */
  Buf *acc;       /* per block row: dQ_i (dq) / dK_j, then dV_j (dkdv) */
  Buf *slot;      /* per warp: the tile's S, then dS (dkdv: kt more for P z/(1-p)) */
  Buf *stat;      /* dq: Delta per block row; dkdv: the tile's lse, tau, Delta rows */
  Buf *hash;      /* dkdv: the tile rows' dropout row hashes */
  Buf *own[2];    /* where they fit (else NULL): the block's own rows, rows x D each,
                     staged once: q_i, dO_i (dq) / k_j, v_j (dkdv) */
  Op *batch, *head, *len, *first;   /* b, h, L of this block; its first row (key) */
  Op *scale, *thresh, *inv_keep;
} Ctx;

static Op *add(Builder *b, Op *x, Op *y) { return attn_add(b, x, y); }
static Op *sub(Builder *b, Op *x, Op *y) { return ir_bin(b, OP_SUB, x, y); }
static Op *mul(Builder *b, Op *x, Op *y) { return attn_mul(b, x, y); }
static Op *min_(Builder *b, Op *x, Op *y) { return ir_bin(b, OP_MIN, x, y); }
static Op *lt(Builder *b, Op *x, Op *y) { return ir_cmp(b, CMP_LT, x, y); }
static Op *i32(Builder *b, int64_t v) { return attn_i32(b, v); }
static Op *f32(Builder *b, double v) { return ir_const_f32(b, v); }

/* Offset of row `row` of (batch, head) with strides p[sb], p[sb + 1], p[sb + 2]. */
static Op *row_offset(Ctx *c, Builder *b, int sb, Op *row) {
  return attn_offset(b, c->batch, row, c->head, c->p[sb], c->p[sb + 1], c->p[sb + 2]);
}

/* Index of (batch, head, row) in a [B, H, N] per-row array. */
static Op *row_stat(Ctx *c, Builder *b, Op *row) {
  return add(b, mul(b, add(b, mul(b, c->batch, c->p[ATTN_BWD_H]), c->head), c->p[ATTN_BWD_N]),
             row);
}

static Op *row_hash(Ctx *c, Builder *b, Op *i) {
  return dropout_row_hash_ir(b, c->p[ATTN_BWD_SEED], c->p[ATTN_BWD_STEP], c->p[ATTN_BWD_LAYER],
                             c->batch, c->head, i);
}

/* Thread code: sum_d g[goff + d] * t[toff + d], a serial f32 dot (i64 offsets, as in
 * attn_row_scores). dP has no bit-for-bit contract, only S has. */
static Op *dot_serial(Builder *b, Buf *g, Op *goff, Buf *t, Op *toff, int D) {
  Builder dot;
  Op *g64 = ir_cast(b, TY_I64, goff), *t64 = ir_cast(b, TY_I64, toff);
  Op *red = ir_reduce(b, AXIS_SERIAL, RED_ADD, TY_F32, ir_const_i64(b, D), "d", &dot);
  Op *d = red->index;
  ir_yield(&dot, mul(&dot, ir_load(&dot, g, add(&dot, g64, d)), ir_load(&dot, t, add(&dot, t64, d))));
  return red;
}

/* lanes over d: dst[off + d] = val (a constant or acc[base + d] * factor) */
static void write_vec(Ctx *c, Builder *b, Buf *dst, Op *off, Buf *acc, Op *base, Op *factor) {
  Builder lane;
  Op *d = ir_pfor(b, AXIS_LANE, i32(b, c->spec->head_dim), "d", &lane)->index;
  Op *val = f32(&lane, 0);
  if (acc) {
    val = ir_load(&lane, acc, add(&lane, base, d));
    if (factor)
      val = mul(&lane, val, factor);
  }
  ir_store(&lane, dst, add(&lane, off, d), val);
}

/* lanes over d: acc[base + d] = 0 */
static void zero_vec(Ctx *c, Builder *b, Op *base) {
  Builder lane;
  Op *d = ir_pfor(b, AXIS_LANE, i32(b, c->spec->head_dim), "d", &lane)->index;
  ir_store(&lane, c->acc, add(&lane, base, d), f32(&lane, 0));
}

/* The block's rows (keys) as warp code: warp w takes r = w, w + warps, ..., and
 * *in runs for i = first + r < lim. The same warp owns a row in every such loop. */
static void block_rows(Ctx *c, Builder *b, Op *lim, Builder *in, Op **w, Op **r, Op **i) {
  Builder warp, rows;
  *w = ir_pfor(b, AXIS_WARP, i32(b, c->warps), "w", &warp)->index;
  *r = ir_for(&warp, *w, i32(&warp, c->rows), c->warps, "r", &rows)->index;
  *i = add(&rows, c->first, *r);
  ir_if(&rows, lt(&rows, *i, lim), in, NULL);
}

/* Block-level: a loop over tiles of kt rows t0 in [lo, hi), each staged once: a
 * barrier (the previous tile's readers are done), the copies, a barrier. Returns t0;
 * *n = the tile's row count. */
static Op *tile_loop(Ctx *c, Builder *b, Op *lo, Op *hi, Builder *body, Op **n) {
  Op *t0 = ir_for(b, lo, hi, c->kt, "t0", body)->index;
  *n = min_(body, i32(body, c->kt), sub(body, hi, t0));
  ir_barrier(body);
  return t0;
}

static Op *round_up(Builder *b, Op *n, int g) {
  return mul(b, ir_bin(b, OP_DIV, add(b, n, i32(b, g - 1)), i32(b, g)), i32(b, g));
}

/* Block-level: rows n .. round_up(n, group) - 1 of a staged tile = 0, so that a group
 * of the sums running past the tile's last row adds 0 * 0, never a stale or unwritten
 * value. */
static void zero_tail(Ctx *c, Builder *b, Buf *tile, Op *n) {
  int D = c->spec->head_dim;
  Builder body;
  Op *cnt = mul(b, sub(b, round_up(b, n, c->group), n), i32(b, D));
  Op *t = ir_pfor(b, AXIS_BLOCK, cnt, "t", &body)->index;
  Op *row = add(&body, n, ir_bin(&body, OP_DIV, t, i32(&body, D)));
  Op *d = ir_bin(&body, OP_REM, t, i32(&body, D));
  ir_store(&body, tile, add(&body, mul(&body, row, i32(&body, c->ld)), d), f32(&body, 0));
}

/* Warp code, step 3 of both kernels: for tile rows e in [lo, hi) (hi - lo a multiple of
 * the group; slot entries 0 where there is nothing to add), for h < n:
 *   acc[base[h] + d] += sum_e slot[sl + h kt + e] * tile[h][e ld + d],
 * serially over e in order, a group of `group` rows per step, a group of zeros
 * skipped (the same branch in every lane). The slot is read inside the lane loop,
 * whose end synchronises the warp before the next row overwrites it. Two forms
 * (templates.h), the same fma chain per d, so the same bits:
 *   SCHED_WARP_HOST  lanes over d inside the group loop, the sum in a register for a
 *                    group: what the host vectorises (an inner loop over e would not
 *                    be);
 *   SCHED_WARP       lane l owns d = l, l + 32, ... and keeps those sums in registers
 *                    over all of [lo, hi): per row e one shared load per FMA and one
 *                    of slot[e] per lane, the sums read and written once. */
static void add_rows_host(Ctx *c, Builder *b, Op *sl, Op *lo, Op *hi, int n, Buf *const tile[],
                          Op *const base[]) {
  enum { MAXG = ATTN_BWD_SUM_GROUP };
  int U = c->group, ld = c->ld;
  Builder loop, lane, hit;
  Op *g = ir_for(b, lo, hi, U, "g", &loop)->index;
  Op *d = ir_pfor(&loop, AXIS_LANE, i32(&loop, c->spec->head_dim), "d", &lane)->index;
  Op *x[2][MAXG], *any = NULL;
  for (int h = 0; h < n; h++)
    for (int q = 0; q < U; q++) {
      Op *at = add(&lane, add(&lane, sl, i32(&lane, h * c->kt + q)), g);
      x[h][q] = ir_load(&lane, c->slot, at);
      Op *nz = ir_cmp(&lane, CMP_NE, x[h][q], f32(&lane, 0));
      any = any ? ir_bin(&lane, OP_OR, any, nz) : nz;
    }
  ir_if(&lane, any, &hit, NULL);
  Op *row0 = add(&hit, mul(&hit, g, i32(&hit, ld)), d);
  for (int h = 0; h < n; h++) {
    Op *at = add(&hit, base[h], d), *a = ir_load(&hit, c->acc, at);
    for (int q = 0; q < U; q++)
      a = ir_fma(&hit, x[h][q], ir_load(&hit, tile[h], add(&hit, row0, i32(&hit, q * ld))), a);
    ir_store(&hit, c->acc, at, a);
  }
}

enum { MAX_SLICES = 8 };   /* d per lane: head_dim <= 256 */

static void add_rows_registers(Ctx *c, Builder *b, Op *sl, Op *lo, Op *hi, int n,
                               Buf *const tile[], Op *const base[]) {
  enum { MAXG = ATTN_BWD_SUM_GROUP };
  int U = c->group, ld = c->ld, D = c->spec->head_dim;
  int lanes = D < 32 ? D : 32, per = (D + lanes - 1) / lanes;
  Builder lane, loop, hit, in, out;
  Op *l = ir_pfor(b, AXIS_LANE, i32(b, lanes), "l", &lane)->index;
  Op *d[MAX_SLICES], *has[MAX_SLICES], *acc[2][MAX_SLICES];
  for (int u = 0; u < per; u++) {
    d[u] = add(&lane, l, i32(&lane, u * lanes));
    /* only the last slice can run past D (a multiple of 8) */
    has[u] = (u + 1) * lanes <= D ? NULL : lt(&lane, d[u], i32(&lane, D));
    for (int h = 0; h < n; h++)
      acc[h][u] = ir_var(&lane, f32(&lane, 0), "acc");
    Builder *ld_ = &lane;
    if (has[u]) {
      ir_if(&lane, has[u], &in, NULL);
      ld_ = &in;
    }
    for (int h = 0; h < n; h++)
      ir_set(ld_, acc[h][u], ir_load(ld_, c->acc, add(ld_, base[h], d[u])));
  }
  Op *g = ir_for(&lane, lo, hi, U, "g", &loop)->index;
  Op *x[2][MAXG], *any = NULL;
  for (int h = 0; h < n; h++)
    for (int q = 0; q < U; q++) {
      x[h][q] = ir_load(&loop, c->slot, add(&loop, add(&loop, sl, i32(&loop, h * c->kt + q)), g));
      Op *nz = ir_cmp(&loop, CMP_NE, x[h][q], f32(&loop, 0));
      any = any ? ir_bin(&loop, OP_OR, any, nz) : nz;
    }
  ir_if(&loop, any, &hit, NULL);
  Op *row0 = mul(&hit, g, i32(&hit, ld));
  for (int u = 0; u < per; u++) {
    /* a lane past D reads an entry of its own tile row (d = D - 1) and never stores */
    Op *du = has[u] ? min_(&hit, d[u], i32(&hit, D - 1)) : d[u];
    for (int h = 0; h < n; h++)
      for (int q = 0; q < U; q++) {
        Op *t = ir_load(&hit, tile[h], add(&hit, add(&hit, row0, du), i32(&hit, q * ld)));
        ir_set(&hit, acc[h][u], ir_fma(&hit, x[h][q], t, ir_get(&hit, acc[h][u])));
      }
  }
  for (int u = 0; u < per; u++) {
    Builder *st = &lane;
    if (has[u]) {
      ir_if(&lane, has[u], &out, NULL);
      st = &out;
    }
    for (int h = 0; h < n; h++)
      ir_store(st, c->acc, add(st, base[h], d[u]), ir_get(st, acc[h][u]));
  }
}

static void add_rows(Ctx *c, Builder *b, Op *sl, Op *lo, Op *hi, int n, Buf *const tile[],
                     Op *const base[]) {
  if (c->host)
    add_rows_host(c, b, sl, lo, hi, n, tile, base);
  else
    add_rows_registers(c, b, sl, lo, hi, n, tile, base);
}

/* Block-level, where they fit: the block's own valid rows (i < L) of a and b into
 * own[0], own[1] (D floats apart), before the first tile's barriers, which order them
 * before any read. Their readers take a row from there, else from global memory,
 * where every lane of a warp read it again for every staged tile. */
static void stage_own(Ctx *c, Builder *b, int sa, int ia, int sb, int ib) {
  if (!c->own[0])
    return;
  int D = c->spec->head_dim;
  Op *n = ir_bin(b, OP_MAX, min_(b, i32(b, c->rows), sub(b, c->len, c->first)), i32(b, 0));
  attn_stage_rows(b, c->own[0], D, c->buf[ia], row_offset(c, b, sa, c->first),
                  c->p[sa + 1], n, D);
  attn_stage_rows(b, c->own[1], D, c->buf[ib], row_offset(c, b, sb, c->first),
                  c->p[sb + 1], n, D);
}

/* Row r of the block's own rows h: the staged copy, or row i of buf in global memory. */
static Buf *own_row(Ctx *c, Builder *b, int h, int buf, int sb, Op *i, Op *r, Op **off) {
  if (c->own[h]) {
    *off = mul(b, r, i32(b, c->spec->head_dim));
    return c->own[h];
  }
  *off = row_offset(c, b, sb, i);
  return c->buf[buf];
}

/* ---- dq: a block of query rows, tiles of keys ---- */

/* Delta_i (to delta and to the block's stat), dQ_i = 0; a padded row writes zeros. */
static void dq_begin(Ctx *c, Builder *b, Op *i, Op *r) {
  int D = c->spec->head_dim;
  Op *ooff = row_offset(c, b, ATTN_BWD_O_SB, i), *at = row_stat(c, b, i);
  Builder valid, padded, dot, one;
  ir_if(b, lt(b, i, c->len), &valid, &padded);
  Op *red = ir_reduce(&valid, AXIS_LANE, RED_ADD, TY_F32, i32(&valid, D), "d", &dot);
  Op *x = add(&dot, ooff, red->index);
  ir_yield(&dot, mul(&dot, ir_load(&dot, c->buf[ATTN_BWD_DOUT], x),
                     ir_load(&dot, c->buf[ATTN_BWD_O], x)));
  ir_pfor(&valid, AXIS_LANE, i32(&valid, 1), "one", &one);
  ir_store(&one, c->buf[ATTN_BWD_DELTA], at, red);
  ir_store(&one, c->stat, r, red);
  zero_vec(c, &valid, mul(&valid, r, i32(&valid, D)));

  write_vec(c, &padded, c->buf[ATTN_BWD_DQ], row_offset(c, &padded, ATTN_BWD_DQKV_SB, i), NULL,
            NULL, NULL);
  ir_pfor(&padded, AXIS_LANE, i32(&padded, 1), "one", &one);
  ir_store(&one, c->buf[ATTN_BWD_DELTA], at, f32(&one, 0));
}

/* Row i (block row r, warp w) against the staged keys t0 .. t0 + m - 1 (m >= 1). */
static void dq_tile_row(Ctx *c, Builder *b, Op *i, Op *r, Op *w, Op *t0, Op *m) {
  int D = c->spec->head_dim, ld = c->ld;
  Op *sl = mul(b, w, i32(b, c->kt)), *at = row_stat(c, b, i);
  AttnRow row = {c->slot, sl, m};
  Op *qoff, *goff;
  Buf *q = own_row(c, b, 0, ATTN_BWD_Q, ATTN_BWD_QKV_SB, i, r, &qoff);
  Buf *dout = own_row(c, b, 1, ATTN_BWD_DOUT, ATTN_BWD_O_SB, i, r, &goff);
  attn_row_scores(b, &row, q, c->ta, qoff, i32(b, 0), i32(b, ld), D, c->host);
  Op *lse = ir_load(b, c->buf[ATTN_BWD_LSE], at), *delta = ir_load(b, c->stat, r);
  Op *tau = c->spec->select != SEL_NONE ? ir_load(b, c->buf[ATTN_BWD_TAU], at) : NULL;
  Op *rh = row_hash(c, b, i);

  /* 2. the slot's S -> dS (kept) or 0, padded with zeros to a whole group */
  Op *mp = round_up(b, m, c->group);
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
  Op *dp = dot_serial(&yes, dout, goff, c->tb, mul(&yes, e, i32(&yes, ld)), D);
  ir_store(&yes, c->slot, se, mul(&yes, pr, sub(&yes, mul(&yes, dp, zs), delta)));
  ir_store(&no, c->slot, se, f32(&no, 0));

  /* 3. dQ_i += dS_ij K_j over the tile's keys */
  add_rows(c, b, sl, i32(b, 0), mp, 1, (Buf *[]){c->ta}, (Op *[]){mul(b, r, i32(b, D))});
}

static void dq_body(Ctx *c, Builder *b) {
  int D = c->spec->head_dim;
  Op *N = c->p[ATTN_BWD_N], *w, *r, *i;
  Builder in;
  block_rows(c, b, N, &in, &w, &r, &i);
  dq_begin(c, &in, i, r);

  /* keys the block's rows see: none past L, none past its last row when causal */
  Op *hi = c->len;
  if (c->spec->causal)
    hi = min_(b, add(b, c->first, i32(b, c->rows)), c->len);
  hi = ir_select(b, lt(b, c->first, c->len), hi, i32(b, 0));
  stage_own(c, b, ATTN_BWD_QKV_SB, ATTN_BWD_Q, ATTN_BWD_O_SB, ATTN_BWD_DOUT);
  Builder tile, row;
  Op *nk, *t0 = tile_loop(c, b, i32(b, 0), hi, &tile, &nk);
  Op *k0 = row_offset(c, &tile, ATTN_BWD_QKV_SB, t0), *sn = c->p[ATTN_BWD_QKV_SN];
  attn_stage_rows(&tile, c->ta, c->ld, c->buf[ATTN_BWD_K], k0, sn, nk, D);
  attn_stage_rows(&tile, c->tb, c->ld, c->buf[ATTN_BWD_V], k0, sn, nk, D);
  zero_tail(c, &tile, c->ta, nk);
  ir_barrier(&tile);
  block_rows(c, &tile, c->len, &row, &w, &r, &i);
  Op *m = nk;
  if (c->spec->causal) {   /* keys j <= i: m = min(nk, i + 1 - t0), maybe <= 0 */
    Builder some;
    m = min_(&row, nk, sub(&row, add(&row, i, i32(&row, 1)), t0));
    ir_if(&row, ir_cmp(&row, CMP_GT, m, i32(&row, 0)), &some, NULL);
    row = some;
  }
  dq_tile_row(c, &row, i, r, w, t0, m);

  block_rows(c, b, c->len, &in, &w, &r, &i);
  write_vec(c, &in, c->buf[ATTN_BWD_DQ], row_offset(c, &in, ATTN_BWD_DQKV_SB, i), c->acc,
            mul(&in, r, i32(&in, D)), c->scale);
}

/* ---- dkdv: a block of keys, tiles of query rows ---- */

/* dK_j = dV_j = 0; a padded key writes zeros. */
static void dkdv_begin(Ctx *c, Builder *b, Op *j, Op *r) {
  int D = c->spec->head_dim;
  Builder valid, padded;
  ir_if(b, lt(b, j, c->len), &valid, &padded);
  zero_vec(c, &valid, mul(&valid, r, i32(&valid, 2 * D)));
  zero_vec(c, &valid, add(&valid, mul(&valid, r, i32(&valid, 2 * D)), i32(&valid, D)));
  Op *goff = row_offset(c, &padded, ATTN_BWD_DQKV_SB, j);
  write_vec(c, &padded, c->buf[ATTN_BWD_DK], goff, NULL, NULL, NULL);
  write_vec(c, &padded, c->buf[ATTN_BWD_DV], goff, NULL, NULL, NULL);
}

/* Block-level: the tile rows' lse, tau, Delta (stat rows of kt) and dropout hashes. */
static void dkdv_stage_stats(Ctx *c, Builder *b, Op *t0, Op *n) {
  Builder body;
  Op *e = ir_pfor(b, AXIS_BLOCK, n, "e", &body)->index;
  Op *i = add(&body, t0, e), *at = row_stat(c, &body, i);
  static const int from[3] = {ATTN_BWD_LSE, ATTN_BWD_TAU, ATTN_BWD_DELTA};
  for (int s = 0; s < 3; s++)
    ir_store(&body, c->stat, add(&body, e, i32(&body, s * c->kt)),
             ir_load(&body, c->buf[from[s]], at));
  ir_store(&body, c->hash, e, row_hash(c, &body, i));
}

/* Key j (block key r, warp w) against the staged rows e0 .. n - 1 of the tile
 * (e0 < n). The warp's slots are indexed by tile row. */
static void dkdv_tile_key(Ctx *c, Builder *b, Op *j, Op *r, Op *w, Op *e0, Op *n) {
  int D = c->spec->head_dim, ld = c->ld, kt = c->kt;
  Op *sl = mul(b, w, i32(b, 2 * kt));
  Op *koff, *voff;
  Buf *kb = own_row(c, b, 0, ATTN_BWD_K, ATTN_BWD_QKV_SB, j, r, &koff);
  Buf *vb = own_row(c, b, 1, ATTN_BWD_V, ATTN_BWD_QKV_SB, j, r, &voff);
  AttnRow row = {c->slot, add(b, sl, e0), sub(b, n, e0)};
  attn_row_scores(b, &row, kb, c->ta, koff, mul(b, e0, i32(b, ld)), i32(b, ld), D, c->host);

  /* 2. the slot's S -> dS and P z/(1-p) (kept), or zeros, over whole groups of rows */
  Op *lo = mul(b, ir_bin(b, OP_DIV, e0, i32(b, c->group)), i32(b, c->group));
  Op *hi = round_up(b, n, c->group);
  Builder lane, in, pad, yes, no;
  Op *e = ir_pfor(b, AXIS_LANE, sub(b, hi, lo), "ii", &lane)->index, *ii = add(&lane, lo, e);
  Op *se = add(&lane, sl, ii), *pe = add(&lane, se, i32(&lane, kt));
  ir_if(&lane, ir_bin(&lane, OP_AND, ir_cmp(&lane, CMP_GE, ii, e0), lt(&lane, ii, n)), &in, &pad);
  Op *s = ir_load(&in, c->slot, se);
  Op *kept = ir_const_bool(&in, true);
  if (c->spec->select != SEL_NONE)
    kept = ir_cmp(&in, CMP_GE, s, ir_load(&in, c->stat, add(&in, ii, i32(&in, kt))));
  ir_if(&in, kept, &yes, &no);
  Op *pr = ir_un(&yes, OP_EXP, sub(&yes, s, ir_load(&yes, c->stat, ii)));
  Op *z = dropout_keep_ir(&yes, ir_load(&yes, c->hash, ii), j, c->thresh);
  Op *zs = ir_select(&yes, z, c->inv_keep, f32(&yes, 0));
  Op *dp = dot_serial(&yes, c->tb, mul(&yes, ii, i32(&yes, ld)), vb, voff, D);
  Op *delta = ir_load(&yes, c->stat, add(&yes, ii, i32(&yes, 2 * kt)));
  ir_store(&yes, c->slot, se, mul(&yes, pr, sub(&yes, mul(&yes, dp, zs), delta)));
  ir_store(&yes, c->slot, pe, mul(&yes, pr, zs));
  Builder *zero[2] = {&no, &pad};
  for (int k = 0; k < 2; k++) {
    ir_store(zero[k], c->slot, se, f32(zero[k], 0));
    ir_store(zero[k], c->slot, pe, f32(zero[k], 0));
  }

  /* 3. dK_j += dS_ij Q_i, dV_j += P z/(1-p) dO_i over the tile's rows */
  Op *base = mul(b, r, i32(b, 2 * D));
  add_rows(c, b, sl, lo, hi, 2, (Buf *[]){c->ta, c->tb},
           (Op *[]){base, add(b, base, i32(b, D))});
}

static void dkdv_body(Ctx *c, Builder *b) {
  int D = c->spec->head_dim;
  Op *w, *r, *j;
  Builder in;
  block_rows(c, b, c->p[ATTN_BWD_N], &in, &w, &r, &j);
  dkdv_begin(c, &in, j, r);

  /* query rows that see the block's keys: i < L, and i >= its first key when causal */
  Op *lo = c->spec->causal ? c->first : i32(b, 0);
  Op *hi = ir_select(b, lt(b, c->first, c->len), c->len, i32(b, 0));
  stage_own(c, b, ATTN_BWD_QKV_SB, ATTN_BWD_K, ATTN_BWD_QKV_SB, ATTN_BWD_V);
  Builder tile, key;
  Op *nq, *t0 = tile_loop(c, b, lo, hi, &tile, &nq);
  attn_stage_rows(&tile, c->ta, c->ld, c->buf[ATTN_BWD_Q],
                  row_offset(c, &tile, ATTN_BWD_QKV_SB, t0), c->p[ATTN_BWD_QKV_SN], nq, D);
  attn_stage_rows(&tile, c->tb, c->ld, c->buf[ATTN_BWD_DOUT],
                  row_offset(c, &tile, ATTN_BWD_O_SB, t0), c->p[ATTN_BWD_O_SN], nq, D);
  zero_tail(c, &tile, c->ta, nq);
  zero_tail(c, &tile, c->tb, nq);
  dkdv_stage_stats(c, &tile, t0, nq);
  ir_barrier(&tile);
  block_rows(c, &tile, c->len, &key, &w, &r, &j);
  Op *e0 = i32(&key, 0);
  if (c->spec->causal) {   /* rows i >= j: from e0 = max(j - t0, 0), maybe none */
    Builder some;
    e0 = ir_bin(&key, OP_MAX, sub(&key, j, t0), i32(&key, 0));
    ir_if(&key, lt(&key, e0, nq), &some, NULL);
    key = some;
  }
  dkdv_tile_key(c, &key, j, r, w, e0, nq);

  block_rows(c, b, c->len, &in, &w, &r, &j);
  Op *goff = row_offset(c, &in, ATTN_BWD_DQKV_SB, j), *base = mul(&in, r, i32(&in, 2 * D));
  write_vec(c, &in, c->buf[ATTN_BWD_DK], goff, c->acc, base, c->scale);
  write_vec(c, &in, c->buf[ATTN_BWD_DV], goff, c->acc, add(&in, base, i32(&in, D)), NULL);
}

/* ---- kernels ---- */

void bwd_declare_params(Kernel *k, BwdPart part, Buf **buf, Op **p) {
  static const char *const bufs[] = {"q", "k", "v", "o", "dout", "lse", "tau", "lengths",
                                     "delta", "dq", "dk", "dv"};
  static const char *const scalars[] = {"B", "H", "N", "qkv_sb", "qkv_sn", "qkv_sh", "o_sb",
                                        "o_sn", "o_sh", "dqkv_sb", "dqkv_sn", "dqkv_sh"};
  for (int i = ATTN_BWD_Q; i <= ATTN_BWD_DV; i++) {
    Role role = ROLE_IN;
    if (i == ATTN_BWD_DELTA || i == ATTN_BWD_DQ)
      role = part == ATTN_BWD_DKDV_PART ? ROLE_IN : ROLE_OUT;
    else if (i == ATTN_BWD_DK || i == ATTN_BWD_DV)
      role = part == ATTN_BWD_DQ_PART ? ROLE_IN : ROLE_OUT;
    buf[i] = ir_param_buf(k, bufs[i], i == ATTN_BWD_LENGTHS ? TY_I32 : TY_F32, role);
  }
  for (int i = 0; i < 12; i++)
    p[ATTN_BWD_B + i] = ir_param_scalar(k, scalars[i], TY_I32);
  p[ATTN_BWD_DROPOUT] = ir_param_scalar(k, "dropout", TY_F32);
  p[ATTN_BWD_SEED] = ir_param_scalar(k, "seed", TY_I32);
  p[ATTN_BWD_STEP] = ir_param_scalar(k, "step", TY_I32);
  p[ATTN_BWD_LAYER] = ir_param_scalar(k, "layer", TY_I32);
}

/* Shared floats of one kernel with staged tiles of kt rows: two tiles, the block's
 * sums (D per row for dq, 2D per key for dkdv), the warps' slots, the per-row
 * values (dq: Delta per block row; dkdv: lse, tau, Delta and the hash per tile row). */
static int64_t shared_floats(const Spec *s, const TileConfig *t, bool dq, int64_t kt,
                             bool own) {
  int64_t D = s->head_dim, R = t->rows, W = t->warps, o = own ? 2 * R * D : 0;
  if (dq)
    return 2 * kt * (D + 1) + R * D + W * kt + R + o;
  return 2 * kt * (D + 1) + 2 * R * D + 2 * W * kt + 4 * kt + o;
}

int attention_bwd_stage_rows(const Spec *s, const TileConfig *t, bool dq) {
  int kt = ATTN_BWD_STAGE_ROWS;
  while (kt > 1 && 4 * shared_floats(s, t, dq, kt, false) > TILE_SHARED_LIMIT)
    kt /= 2;
  return kt;
}

bool attention_bwd_stages_own(const Spec *s, const TileConfig *t, bool dq) {
  int kt = attention_bwd_stage_rows(s, t, dq);
  return 4 * shared_floats(s, t, dq, kt, true) <= TILE_SHARED_LIMIT;
}

int64_t attention_bwd_shared_bytes(const Spec *s, const TileConfig *t) {
  int64_t dq = shared_floats(s, t, true, attention_bwd_stage_rows(s, t, true),
                             attention_bwd_stages_own(s, t, true));
  int64_t dkdv = shared_floats(s, t, false, attention_bwd_stage_rows(s, t, false),
                               attention_bwd_stages_own(s, t, false));
  return 4 * (dq > dkdv ? dq : dkdv);
}

static Kernel *build(const Spec *s, const TileConfig *t, bool dq) {
  char name[96];
  snprintf(name, sizeof name, "%s_attn_bwd_%s", s->name, dq ? "dq" : "dkdv");
  Kernel *k = ir_kernel_new(name, t->warps);
  Builder b = ir_builder(k);
  int D = s->head_dim, kt = attention_bwd_stage_rows(s, t, dq);
  Ctx c = {.k = k, .spec = s, .rows = t->rows, .warps = t->warps, .kt = kt, .ld = D + 1,
           .group = kt < ATTN_BWD_SUM_GROUP ? kt : ATTN_BWD_SUM_GROUP,
           .host = t->sched == SCHED_WARP_HOST};
  bwd_declare_params(k, dq ? ATTN_BWD_DQ_PART : ATTN_BWD_DKDV_PART, c.buf, c.p);
  c.ta = ir_shared(k, dq ? "k_tile" : "q_tile", TY_F32, (int64_t)kt * c.ld);
  c.tb = ir_shared(k, dq ? "v_tile" : "do_tile", TY_F32, (int64_t)kt * c.ld);
  c.acc = ir_shared(k, dq ? "dq_sum" : "dkdv_sum", TY_F32, (int64_t)t->rows * (dq ? D : 2 * D));
  c.slot = ir_shared(k, "slot", TY_F32, (int64_t)t->warps * (dq ? kt : 2 * kt));
  c.stat = ir_shared(k, dq ? "delta_rows" : "tile_rows", TY_F32, dq ? t->rows : 3 * kt);
  if (!dq)
    c.hash = ir_shared(k, "tile_hash", TY_I32, kt);
  if (attention_bwd_stages_own(s, t, dq))
    for (int h = 0; h < 2; h++)
      c.own[h] = ir_shared(k, h ? (dq ? "do_rows" : "v_rows") : (dq ? "q_rows" : "k_rows"),
                           TY_F32, (int64_t)t->rows * D);
  ir_set_grid(k, 0, ATTN_BWD_N, -1, t->rows);
  ir_set_grid(k, 1, ATTN_BWD_H, -1, 1);
  ir_set_grid(k, 2, ATTN_BWD_B, -1, 1);

  c.first = mul(&b, ir_block_id(&b, 0), i32(&b, t->rows));
  c.head = ir_block_id(&b, 1);
  c.batch = ir_block_id(&b, 2);
  c.len = ir_load(&b, c.buf[ATTN_BWD_LENGTHS], c.batch);
  c.scale = f32(&b, 1.0 / sqrt((double)D));
  Op *p = c.p[ATTN_BWD_DROPOUT];
  c.thresh = dropout_threshold_ir(&b, p);
  c.inv_keep = ir_bin(&b, OP_DIV, f32(&b, 1.0), sub(&b, f32(&b, 1.0), p));
  if (dq)
    dq_body(&c, &b);
  else
    dkdv_body(&c, &b);
  return k;
}

Kernel *attention_bwd_dq_build(const Spec *s, const TileConfig *t) { return build(s, t, true); }
Kernel *attention_bwd_dkdv_build(const Spec *s, const TileConfig *t) { return build(s, t, false); }

int attention_bwd_build(const Spec *s, const TileConfig *t, Module *m, char *err, size_t cap) {
  if (t->sched == SCHED_TILE) {
    if (tile_check(s, t, err, cap))
      return -1;
  } else if (t->warps < 1 || t->warps > 16 || t->rows < 1 || t->rows % t->warps) {
    snprintf(err, cap, "tile rows = %d, warps = %d: rows must be a positive multiple of warps "
             "(1..16)", t->rows, t->warps);
    return -1;
  }
  int64_t bytes = attention_bwd_shared_bytes(s, t);
  if (t->sched != SCHED_TILE && bytes > TILE_SHARED_LIMIT) {
    snprintf(err, cap, "backward: tile rows = %d, warps = %d needs %lld bytes of shared memory "
             "with head_dim = %d even with staged tiles of one row (limit %d)", t->rows,
             t->warps, (long long)bytes, s->head_dim, TILE_SHARED_LIMIT);
    return -1;
  }
  if (m->n + 2 > (int)(sizeof m->kernels / sizeof m->kernels[0])) {
    snprintf(err, cap, "backward: the module already holds %d kernels", m->n);
    return -1;
  }
  if (t->sched == SCHED_TILE) {
    m->kernels[m->n++] = attention_bwd_tile_build(s, t);
    return 0;
  }
  m->kernels[m->n++] = attention_bwd_dq_build(s, t);
  m->kernels[m->n++] = attention_bwd_dkdv_build(s, t);
  return 0;
}
