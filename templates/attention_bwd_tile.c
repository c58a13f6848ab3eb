/* The backward template's tile schedule (SCHED_TILE, the CPU's): the contract of
 * attention_bwd.h, work split GEMM-like with the micro-kernels of attention_tile.h.
 * A block is one warp over `rows` rows (dq) or keys (dkdv) of one (b, h).
 *
 * dq kernel: K^T and V^T of the keys the block's rows see are packed once; per group
 * of TILE_RT query rows
 *   S = Q K^T / sqrt(d) and dP' = dO V^T as register tiles (S: the forward's own
 *   tile_scores, so the same bits and the same kept set); per valid row Delta_i and,
 *   lanes over keys, dS_ij = P_ij (dP'_ij z_ij / (1 - p) - Delta_i) for kept pairs
 *   (else 0), over S in its slot; dQ = dS K by tile_axpy over keys, dq = dQ / sqrt(d).
 * dkdv kernel: Q^T and dO^T of the query rows that see the block's keys (i >= lo:
 *   lo = the block's first key when causal, else 0) are packed once; per group of
 *   TILE_RT keys: S^T = K Q^T / sqrt(d) (fma is commutative: the forward's bits) and
 *   dP'^T = V dO^T; per valid key, lanes over rows, dS and P z/(1 - p) of kept pairs
 *   (causal: i >= j) into the two slots; dK = dS^T Q and dV = (P z/(1-p))^T dO by
 *   tile_axpy over rows (two passes: one TILE_RT x D accumulator tile each).
 * Every product is dense over the valid keys (rows), dropped pairs with weight 0:
 * on the CPU the register-tiled dense work measured faster than skipping pairs (see
 * tile_axpy), so here sparsity saves only the exp and hash of dropped pairs. */
#include <math.h>
#include <stdio.h>

#include "attention_bwd_impl.h"
#include "attention_common.h"
#include "attention_tile.h"
#include "dropout.h"

#define i32 attn_i32
#define add attn_add
#define mul attn_mul

typedef struct {
  const Spec *spec;
  Buf *buf[ATTN_BWD_NPARAMS];
  Op *p[ATTN_BWD_NPARAMS];
  Buf *ta, *tb;            /* packed transposes (dq: K^T, V^T; dkdv: Q^T, dO^T) */
  Buf *s1, *s2;            /* TILE_RT slots of ld: S then dS; dP' then P z/(1-p) */
  Buf *sacc, *acc;         /* score micro-tile; TILE_RT x D product accumulators */
  Buf *rhash;              /* dkdv: the dropout row hash of each packed row */
  int64_t ld;
  Op *batch, *head, *len, *lim, *blk0, *scale, *thresh, *inv_keep;
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

static Op *slot(Ctx *c, Builder *b, int r, Op *e) { return add(b, i32(b, (int)(r * c->ld)), e); }

/* lanes over d: dst[off + d] = acc[r * D + d] * factor, or 0 (acc NULL) */
static void write_row(Ctx *c, Builder *b, Buf *dst, Op *off, Buf *acc, int r, Op *factor) {
  int D = c->spec->head_dim;
  Builder lane;
  Op *d = ir_pfor(b, AXIS_LANE, i32(b, D), "d", &lane)->index;
  Op *v = f32(&lane, 0);
  if (acc) {
    v = ir_load(&lane, acc, add(&lane, i32(&lane, r * D), d));
    if (factor)
      v = mul(&lane, v, factor);
  }
  ir_store(&lane, dst, add(&lane, off, d), v);
}

/* Pair (i, j) whose S is x and dP' (= dO_i . V_j) is g: is it kept? then
 * *ds = P (g z/(1-p) - Delta), *pz = P z/(1-p), as in attention_bwd.c. */
static Op *grad_pair(Ctx *c, Builder *b, Op *x, Op *g, Op *i, Op *j, Op *rh, Op *delta,
                     Op **pz) {
  Op *pr = ir_un(b, OP_EXP, sub(b, x, ir_load(b, c->buf[ATTN_BWD_LSE], row_stat(c, b, i))));
  Op *zs = ir_select(b, dropout_keep_ir(b, rh, j, c->thresh), c->inv_keep, f32(b, 0));
  if (pz)
    *pz = mul(b, pr, zs);
  return mul(b, pr, sub(b, mul(b, g, zs), delta));
}

static Op *kept_pair(Ctx *c, Builder *b, Op *x, Op *i) {
  if (c->spec->select == SEL_NONE)
    return ir_const_bool(b, true);
  return ir_cmp(b, CMP_GE, x, ir_load(b, c->buf[ATTN_BWD_TAU], row_stat(c, b, i)));
}

static Op *hash(Ctx *c, Builder *b, Op *i) {
  Op **p = c->p;
  return dropout_row_hash_ir(b, p[ATTN_BWD_SEED], p[ATTN_BWD_STEP], p[ATTN_BWD_LAYER], c->batch,
                             c->head, i);
}

/* acc = sum over e < cnt of w_r(e) x[off(e)], w_r(e) = slot value of row r, or 0
 * where use[r] is false; x rows at row_off(sb, e0 + e). */
static void products(Ctx *c, Builder *b, Buf *sl, Op *const use[], Op *cnt, Buf *x, int sb,
                     Op *e0) {
  Builder loop;
  tile_zero(b, c->acc, TILE_RT, c->spec->head_dim);
  Op *e = ir_for(b, i32(b, 0), cnt, 1, "e", &loop)->index;
  Op *w[TILE_RT];
  for (int r = 0; r < TILE_RT; r++)
    w[r] = ir_select(&loop, use[r], ir_load(&loop, sl, slot(c, &loop, r, e)), f32(&loop, 0));
  tile_axpy(&loop, c->acc, w, TILE_RT, x, row_off(c, &loop, sb, add(&loop, e0, e)),
            c->spec->head_dim);
}

/* ---- dq ---- */

static Op *row_keys(Ctx *c, Builder *b, Op *i) {
  return c->spec->causal ? ir_bin(b, OP_MIN, add(b, i, i32(b, 1)), c->len) : c->len;
}

/* Delta_i, stored; then dS over the row's slot (kept pairs; 0 elsewhere). */
static void dq_row(Ctx *c, Builder *b, int r, Op *i, Op *m) {
  int D = c->spec->head_dim;
  Builder dot, one, lane, yes, no;
  Op *go = row_off(c, b, ATTN_BWD_O_SB, i);
  Op *red = ir_reduce(b, AXIS_LANE, RED_ADD, TY_F32, i32(b, D), "d", &dot);
  Op *at = add(&dot, go, red->index);
  ir_yield(&dot, mul(&dot, ir_load(&dot, c->buf[ATTN_BWD_DOUT], at),
                     ir_load(&dot, c->buf[ATTN_BWD_O], at)));
  ir_pfor(b, AXIS_LANE, i32(b, 1), "one", &one);
  ir_store(&one, c->buf[ATTN_BWD_DELTA], row_stat(c, &one, i), red);
  Op *rh = hash(c, b, i);
  Op *j = ir_pfor(b, AXIS_LANE, m, "j", &lane)->index;
  Op *sj = slot(c, &lane, r, j);
  Op *x = ir_load(&lane, c->s1, sj);
  ir_if(&lane, kept_pair(c, &lane, x, i), &yes, &no);
  ir_store(&yes, c->s1, sj, grad_pair(c, &yes, x, ir_load(&yes, c->s2, sj), i, j, rh, red, NULL));
  ir_store(&no, c->s1, sj, f32(&no, 0));
}

static void dq_group(Ctx *c, Builder *b, Op *i0) {
  int D = c->spec->head_dim;
  Op *mg = row_keys(c, b, add(b, i0, i32(b, TILE_RT - 1)));
  Op *last = sub(b, c->lim, i32(b, 1)), *qrow[TILE_RT], *grow[TILE_RT], *use[TILE_RT];
  for (int r = 0; r < TILE_RT; r++) {
    Op *ic = ir_bin(b, OP_MIN, add(b, i0, i32(b, r)), last);
    qrow[r] = row_off(c, b, ATTN_BWD_QKV_SB, ic);
    grow[r] = row_off(c, b, ATTN_BWD_O_SB, ic);
  }
  tile_scores(b, c->s1, i32(b, 0), c->ld, c->buf[ATTN_BWD_Q], qrow, c->ta, mg, D, c->sacc,
              c->scale);
  tile_scores(b, c->s2, i32(b, 0), c->ld, c->buf[ATTN_BWD_DOUT], grow, c->tb, mg, D, c->sacc,
              NULL);
  Builder row;
  for (int r = 0; r < TILE_RT; r++) {
    Op *i = add(b, i0, i32(b, r));
    Op *valid = ir_cmp(b, CMP_LT, i, c->lim);
    ir_if(b, valid, &row, NULL);
    dq_row(c, &row, r, i, row_keys(c, &row, i));
    /* causal: the slot past the row's keys holds raw S; keep it out of the sum */
    use[r] = valid;
  }
  if (c->spec->causal) {   /* keys j > i of row i: weight 0 */
    Builder loop;
    for (int r = 0; r < TILE_RT; r++) {
      Op *i = add(b, i0, i32(b, r));
      Op *m = ir_select(b, use[r], row_keys(c, b, i), i32(b, 0));
      Op *j = ir_pfor(b, AXIS_LANE, sub(b, mg, m), "j", &loop)->index;
      ir_store(&loop, c->s1, slot(c, &loop, r, add(&loop, m, j)), f32(&loop, 0));
    }
  }
  products(c, b, c->s1, use, mg, c->buf[ATTN_BWD_K], ATTN_BWD_QKV_SB, i32(b, 0));
  for (int r = 0; r < TILE_RT; r++) {
    Op *i = add(b, i0, i32(b, r));
    ir_if(b, use[r], &row, NULL);
    write_row(c, &row, c->buf[ATTN_BWD_DQ], row_off(c, &row, ATTN_BWD_DQKV_SB, i), c->acc, r,
              c->scale);
  }
}

/* ---- dkdv ---- */

/* Lanes over the rows i = lo + e (e < cnt) that see key j: dS and P z/(1-p) of kept
 * pairs (causal: i >= j) over the two slots, 0 elsewhere. */
static void dkdv_key(Ctx *c, Builder *b, int r, Op *j, Op *lo, Op *cnt) {
  Builder lane, yes, no;
  Op *e = ir_pfor(b, AXIS_LANE, cnt, "e", &lane)->index;
  Op *i = add(&lane, lo, e);
  Op *se = slot(c, &lane, r, e);
  Op *x = ir_load(&lane, c->s1, se);
  Op *kept = kept_pair(c, &lane, x, i);
  if (c->spec->causal)
    kept = ir_bin(&lane, OP_AND, kept, ir_cmp(&lane, CMP_GE, i, j));
  ir_if(&lane, kept, &yes, &no);
  Op *delta = ir_load(&yes, c->buf[ATTN_BWD_DELTA], row_stat(c, &yes, i));
  Op *pz;
  Op *rh = ir_load(&yes, c->rhash, e);
  Op *ds = grad_pair(c, &yes, x, ir_load(&yes, c->s2, se), i, j, rh, delta, &pz);
  ir_store(&yes, c->s1, se, ds);
  ir_store(&yes, c->s2, se, pz);
  ir_store(&no, c->s1, se, f32(&no, 0));
  ir_store(&no, c->s2, se, f32(&no, 0));
}

static void dkdv_group(Ctx *c, Builder *b, Op *j0, Op *lo, Op *cnt) {
  int D = c->spec->head_dim;
  Op *last = sub(b, c->lim, i32(b, 1)), *krow[TILE_RT], *use[TILE_RT];
  for (int r = 0; r < TILE_RT; r++)
    krow[r] = row_off(c, b, ATTN_BWD_QKV_SB, ir_bin(b, OP_MIN, add(b, j0, i32(b, r)), last));
  tile_scores(b, c->s1, i32(b, 0), c->ld, c->buf[ATTN_BWD_K], krow, c->ta, cnt, D, c->sacc,
              c->scale);
  tile_scores(b, c->s2, i32(b, 0), c->ld, c->buf[ATTN_BWD_V], krow, c->tb, cnt, D, c->sacc,
              NULL);
  Builder row;
  for (int r = 0; r < TILE_RT; r++) {
    Op *j = add(b, j0, i32(b, r));
    use[r] = ir_cmp(b, CMP_LT, j, c->lim);
    ir_if(b, use[r], &row, NULL);
    dkdv_key(c, &row, r, j, lo, cnt);
  }
  Buf *out[2] = {c->buf[ATTN_BWD_DK], c->buf[ATTN_BWD_DV]};
  for (int pass = 0; pass < 2; pass++) {
    products(c, b, pass ? c->s2 : c->s1, use, cnt, c->buf[pass ? ATTN_BWD_DOUT : ATTN_BWD_Q],
             pass ? ATTN_BWD_O_SB : ATTN_BWD_QKV_SB, lo);
    for (int r = 0; r < TILE_RT; r++) {
      Op *j = add(b, j0, i32(b, r));
      ir_if(b, use[r], &row, NULL);
      write_row(c, &row, out[pass], row_off(c, &row, ATTN_BWD_DQKV_SB, j), c->acc, r,
                pass ? NULL : c->scale);
    }
  }
}

/* ---- kernels ---- */

/* Rows (keys) L <= i < N of the block: zeros (and delta 0 in the dq kernel). */
static void padded(Ctx *c, Builder *b, int rows, bool dq) {
  Builder loop, pad, one;
  Op *r = ir_for(b, i32(b, 0), i32(b, rows), 1, "r", &loop)->index;
  Op *i = add(&loop, c->blk0, r);
  ir_if(&loop, ir_bin(&loop, OP_AND, ir_cmp(&loop, CMP_LT, i, c->p[ATTN_BWD_N]),
                      ir_cmp(&loop, CMP_GE, i, c->len)), &pad, NULL);
  Op *off = row_off(c, &pad, ATTN_BWD_DQKV_SB, i);
  if (dq) {
    write_row(c, &pad, c->buf[ATTN_BWD_DQ], off, NULL, 0, NULL);
    ir_pfor(&pad, AXIS_LANE, i32(&pad, 1), "one", &one);
    ir_store(&one, c->buf[ATTN_BWD_DELTA], row_stat(c, &one, i), f32(&one, 0));
    return;
  }
  write_row(c, &pad, c->buf[ATTN_BWD_DK], off, NULL, 0, NULL);
  write_row(c, &pad, c->buf[ATTN_BWD_DV], off, NULL, 0, NULL);
}

static void emit_block(Ctx *c, Builder *b, int rows, bool dq) {
  int D = c->spec->head_dim;
  Op **p = c->p;
  padded(c, b, rows, dq);
  Builder work, groups, inside;
  ir_if(b, ir_cmp(b, CMP_LT, c->blk0, c->lim), &work, NULL);
  Op *lo = i32(&work, 0), *cnt;
  if (dq) {   /* the keys the block's rows see */
    cnt = row_keys(c, &work, add(&work, c->blk0, i32(&work, rows - 1)));
    Op *k0 = row_off(c, &work, ATTN_BWD_QKV_SB, lo);
    tile_pack_t(&work, c->ta, c->ld, c->buf[ATTN_BWD_K], k0, p[ATTN_BWD_QKV_SN], cnt, D);
    tile_pack_t(&work, c->tb, c->ld, c->buf[ATTN_BWD_V], k0, p[ATTN_BWD_QKV_SN], cnt, D);
  } else {    /* the rows that see the block's keys */
    if (c->spec->causal)
      lo = c->blk0;
    cnt = sub(&work, c->len, lo);
    tile_pack_t(&work, c->ta, c->ld, c->buf[ATTN_BWD_Q], row_off(c, &work, ATTN_BWD_QKV_SB, lo),
                p[ATTN_BWD_QKV_SN], cnt, D);
    tile_pack_t(&work, c->tb, c->ld, c->buf[ATTN_BWD_DOUT], row_off(c, &work, ATTN_BWD_O_SB, lo),
                p[ATTN_BWD_O_SN], cnt, D);
    /* once per row here, not once per (row, key) pair */
    Builder lane;
    Op *e = ir_pfor(&work, AXIS_LANE, cnt, "e", &lane)->index;
    ir_store(&lane, c->rhash, e, hash(c, &lane, add(&lane, lo, e)));
  }
  Op *g = ir_for(&work, i32(&work, 0), i32(&work, rows), TILE_RT, "g", &groups)->index;
  Op *first = add(&groups, c->blk0, g);
  ir_if(&groups, ir_cmp(&groups, CMP_LT, first, c->lim), &inside, NULL);
  if (dq)
    dq_group(c, &inside, first);
  else
    dkdv_group(c, &inside, first, lo, cnt);
}

Kernel *attention_bwd_tile_build(const Spec *s, const TileConfig *t, bool dq) {
  char name[96];
  snprintf(name, sizeof name, "%s_attn_bwd_%s", s->name, dq ? "dq" : "dkdv");
  Kernel *k = ir_kernel_new(name, 1);
  Builder b = ir_builder(k);
  Ctx c = {.spec = s, .ld = (s->max_seq + TILE_JT - 1) / TILE_JT * TILE_JT};
  bwd_declare_params(k, dq, c.buf, c.p);
  int D = s->head_dim;
  c.ta = ir_shared(k, "ta", TY_F32, D * c.ld);
  c.tb = ir_shared(k, "tb", TY_F32, D * c.ld);
  c.s1 = ir_shared(k, "s1", TY_F32, TILE_RT * c.ld);
  c.s2 = ir_shared(k, "s2", TY_F32, TILE_RT * c.ld);
  c.sacc = ir_shared(k, "sacc", TY_F32, TILE_RT * TILE_JT);
  c.acc = ir_shared(k, "acc", TY_F32, (int64_t)TILE_RT * D);
  if (!dq)
    c.rhash = ir_shared(k, "rhash", TY_I32, c.ld);
  ir_set_grid(k, 0, ATTN_BWD_N, -1, t->rows);
  ir_set_grid(k, 1, ATTN_BWD_H, -1, 1);
  ir_set_grid(k, 2, ATTN_BWD_B, -1, 1);

  c.blk0 = mul(&b, ir_block_id(&b, 0), i32(&b, t->rows));
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
  emit_block(&c, &warp, t->rows, dq);
  return k;
}
