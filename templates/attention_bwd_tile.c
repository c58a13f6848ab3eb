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
 * then the block's products dK, dV, dQ and its dq (attention_bwd_products.c: a walk
 *   over the rows each pair of keys uses, or register-tiled GEMMs where that is
 *   cheaper). Finally dk = dK / sqrt(d), dv = dV.
 * Against the GPU's two kernels (dq with a warp per row, dkdv with a warp per key)
 * this computes S, dP' and P once instead of twice: 10 n^2 d flops per head instead
 * of 14. The GPU cannot do the same without atomics on dk, dv (many blocks per head);
 * a host block owns its head's dk and dv.
 * Where sparsity pays here: S and dP' are dense (the kept test needs every score);
 * the products (6 of the 10) run over the rows some key of a pair uses, 36% of the
 * block's rows at s = 0.8 for random kept sets (1 - s^2). */
#include <math.h>
#include <stdio.h>

#include "attention_bwd_tile_impl.h"
#include "dropout.h"

/* lanes over d: dst[off + d] = 0 */
static void zero_row(BwdTile *c, Builder *b, Buf *dst, Op *off) {
  Builder lane;
  Op *d = ir_pfor(b, AXIS_LANE, i32(b, c->spec->head_dim), "d", &lane)->index;
  ir_store(&lane, dst, add(&lane, off, d), f32(&lane, 0));
}

/* Kept pair (i, j) whose S is x and dP' (= dO_i . V_j) is g, row i's lse:
 * *ds = P (g z/(1-p) - Delta), *pz = P z/(1-p), as in attention_bwd_dkdv.c. rh NULL: no
 * dropout (p = 0), z/(1-p) = 1, so P and g stand unmultiplied: x * 1 = x, the same
 * bits, without the mask's hash per pair. */
static Op *grad_pair(BwdTile *c, Builder *b, Op *x, Op *g, Op *lse, Op *j, Op *rh, Op *delta,
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

static Op *kept_pair(Builder *b, Op *x, Op *tau) {
  return tau ? ir_cmp(b, CMP_GE, x, tau) : ir_const_bool(b, true);
}

static Op *hash(BwdTile *c, Builder *b, Op *i) {
  Op **p = c->p;
  return dropout_row_hash_ir(b, p[ATTN_BWD_SEED], p[ATTN_BWD_STEP], p[ATTN_BWD_LAYER], c->batch,
                             c->head, i);
}

/* ---- one group of rows ---- */

static Op *row_keys(BwdTile *c, Builder *b, Op *i) {
  return c->spec->causal ? ir_bin(b, OP_MIN, add(b, i, i32(b, 1)), c->len) : c->len;
}

/* Delta_i = dO_i . O_i for the block's valid rows, into delta. All rows first, in
 * one loop: the O rows are read nowhere else, so each is a cache miss, and computed
 * per row beside its dS pass (the earlier order) the misses came one at a time. */
static void block_deltas(BwdTile *c, Builder *b, Op *b0) {
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
static void dq_row(BwdTile *c, Builder *b, Op *g, int r, Op *i, Op *m) {
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
static void zero_rows(BwdTile *c, Builder *b, Op *g, int r0, int n, Op *mb) {
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
static void pair_scores(BwdTile *c, Builder *b, Op *i0, Op *g) {
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
static void group_grads(BwdTile *c, Builder *b, Op *i0, Op *g, Op *mb) {
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
static void emit_block(BwdTile *c, Builder *b, Op *b0) {
  Op *mb = row_keys(c, b, add(b, b0, i32(b, TILE_KR - 1)));
  Builder pairs, inside, past, groups, ginside, gpast;
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
  bwd_tile_products(c, b, b0, mb);
}

/* ---- the kernel ---- */

/* Rows L <= i < N of the head (and i < rows): dq, dk, dv zero and delta 0. The loop
 * runs over those rows only: over all `rows` with a test per row it was ~1% of the
 * backward's samples at n = 64 (512 empty iterations per head at max_seq 512). */
static void padded(BwdTile *c, Builder *b, int rows) {
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
static void keys_pass(BwdTile *c, Builder *b, bool zero) {
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

static void emit_head(BwdTile *c, Builder *b, int rows) {
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
  BwdTile c = {.spec = s, .ld = (s->max_seq + TILE_JT - 1) / TILE_JT * TILE_JT};
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

