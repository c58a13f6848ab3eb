/* The forward template's tile schedule (SCHED_TILE, the CPU's): same contract and
 * results as attention_fwd.c, work split GEMM-like.
 *
 * A block takes `rows` query rows of one (b, h) and runs as one warp:
 *   0. K^T of the keys any of its rows sees is packed into kt[d][j] once, and
 *      their V rows are copied contiguous into vc[j][d] (tile_copy_rows);
 *   then per group of TILE_RT rows:
 *   1. S for the group's rows over its keys by tile_scores (TILE_RT x TILE_JT register
 *      tiles, keys contiguous), into the group's TILE_RT score slots;
 *   2. per valid row, the forward's own selection/softmax/statistics code
 *      (fwd_softmax_row), then one pass over the group's keys leaves the row's P.V
 *      weight final in the slot (row_weights): e_rj for kept, undropped pairs, 0
 *      otherwise, the dropout mask tested there;
 *   3. O for the group: per chunk of 32 keys, a mask of the keys some valid row of
 *      the group weights (keys_used); a full chunk runs every key, any other only
 *      its set bits (tile_for_bits): tile_axpy adds w_rj v_j to the TILE_RT x D
 *      accumulators, w_rj loaded from the slots (broadcasts, loads and fmas only; a
 *      skipped key would add exact zeros); o = acc / (sum (1 - p)).
 * Rows past min(N, L) in a group are scored from a clamped query row (in bounds,
 * results unused); their accumulators are never stored. Cost per block: L*D
 * packing, then per row 2*M*D flops of scores and 2*M*D of P.V, both register
 * tiles, plus the row's selection, softmax and weight passes. */
#include <math.h>
#include <stdio.h>

#include "attention_fwd_impl.h"
#include "attention_tile.h"
#include "dropout.h"

#define i32 attn_i32
#define add attn_add
#define mul attn_mul

typedef struct {
  Buf *kt, *sacc, *rscale, *vc;
  int64_t ld;                 /* slot and packed-row stride (tile_ld) */
  Op *row0, *lim;             /* first row of the block; rows < lim are valid (min(N, L)) */
} Tile;

static Op *qkv_row(Ctx *c, Builder *b, Op *i) {
  Op **p = c->p;
  return attn_offset(b, c->batch, i, c->head, p[ATTN_QKV_SB], p[ATTN_QKV_SN], p[ATTN_QKV_SH]);
}

/* Keys a query row i sees. */
static Op *row_keys(Ctx *c, Builder *b, Op *i) {
  return c->spec->causal ? ir_bin(b, OP_MIN, add(b, i, i32(b, 1)), c->len) : c->len;
}

/* 2'. the row's P.V weights, final in its slot for the group's keys j < mg: e_j for
 * kept (stored positive) keys j < m that dropout keeps, else 0 (not kept, dropped, or
 * m <= j < mg, past the row's own keys). group_pv then only loads and multiplies. The
 * mask is tested only when p > 0. */
static void row_weights(Ctx *c, Builder *b, const AttnRow *r, Op *i, Op *mg) {
  Op **p = c->p;
  Builder on, off, lane;
  ir_if(b, ir_cmp(b, CMP_GT, p[ATTN_DROPOUT], ir_const_f32(b, 0)), &on, &off);
  Op *rh = dropout_row_hash_ir(&on, p[ATTN_SEED], p[ATTN_STEP], p[ATTN_LAYER], c->batch,
                               c->head, i);
  for (int drop = 0; drop < 2; drop++) {
    Builder *at_b = drop ? &on : &off;
    Op *j = ir_pfor(at_b, AXIS_LANE, mg, "j", &lane)->index;
    Op *at = add(&lane, r->base, j);
    Op *x = ir_load(&lane, r->buf, at);
    Op *use = ir_bin(&lane, OP_AND, ir_cmp(&lane, CMP_LT, j, r->m),
                     ir_cmp(&lane, CMP_GT, x, ir_const_f32(&lane, 0)));
    if (drop)
      use = ir_bin(&lane, OP_AND, use, dropout_keep_ir(&lane, rh, j, c->drop_thr));
    ir_store(&lane, r->buf, at, ir_select(&lane, use, x, ir_const_f32(&lane, 0)));
  }
}

/* acc += w_rj v_j for the group's rows r (weights from the slots, V from vc). */
static void pv_key(Ctx *c, Tile *t, Builder *b, Op *j) {
  int D = c->spec->head_dim;
  Op *w[TILE_RT];
  for (int r = 0; r < TILE_RT; r++)
    w[r] = ir_load(b, c->scores, add(b, i32(b, (int)(r * t->ld)), j));
  tile_axpy(b, c->acc, w, TILE_RT, t->vc, mul(b, j, i32(b, D)), D);
}

/* Bit k of the result: some valid row (i0 + r < lim) of the group has a nonzero
 * weight for key c0 + k, k < cnt. */
static Op *keys_used(Ctx *c, Tile *t, Builder *b, Op *i0, Op *c0, Op *cnt) {
  Op *valid[TILE_RT];
  for (int r = 0; r < TILE_RT; r++)
    valid[r] = ir_cmp(b, CMP_LT, add(b, i0, i32(b, r)), t->lim);
  Builder lane;
  Op *red = ir_reduce(b, AXIS_LANE, RED_ADD, TY_I32, cnt, "k", &lane);
  Op *j = add(&lane, c0, red->index);
  Op *any = ir_const_bool(&lane, false);
  for (int r = 0; r < TILE_RT; r++) {
    Op *w = ir_load(&lane, c->scores, add(&lane, i32(&lane, (int)(r * t->ld)), j));
    any = ir_bin(&lane, OP_OR, any,
                 ir_bin(&lane, OP_AND, valid[r], ir_cmp(&lane, CMP_NE, w, ir_const_f32(&lane, 0))));
  }
  ir_yield(&lane, ir_select(&lane, any, ir_bin(&lane, OP_SHL, i32(&lane, 1), red->index),
                            i32(&lane, 0)));
  return red;
}

/* 3. o for the group's valid rows (i < lim), from the weights row_weights left in
 * the slots, over the keys some valid row weights: at s = 0.8 a group of 4 rows uses
 * ~59% of the keys (1 - 0.8^4) for random kept sets. Rows past lim are multiplied too
 * (their slots hold scores, written by tile_scores) but never stored. */
static void group_pv(Ctx *c, Tile *t, Builder *b, Op *i0, Op *mg) {
  int D = c->spec->head_dim;
  Builder chunks, dense, sparse, keys, lane, valid;
  tile_zero(b, c->acc, TILE_RT, D);
  Op *c0 = ir_for(b, i32(b, 0), mg, 32, "c0", &chunks)->index;
  Op *cnt = ir_bin(&chunks, OP_MIN, i32(&chunks, 32), ir_bin(&chunks, OP_SUB, mg, c0));
  Op *used = keys_used(c, t, &chunks, i0, c0, cnt);
  Op *full = ir_select(&chunks, ir_cmp(&chunks, CMP_EQ, cnt, i32(&chunks, 32)), i32(&chunks, -1),
                       ir_bin(&chunks, OP_SUB, ir_bin(&chunks, OP_SHL, i32(&chunks, 1),
                                     ir_bin(&chunks, OP_AND, cnt, i32(&chunks, 31))),
                              i32(&chunks, 1)));
  ir_if(&chunks, ir_cmp(&chunks, CMP_EQ, used, full), &dense, &sparse);
  Op *k = ir_for(&dense, i32(&dense, 0), cnt, 1, "k", &keys)->index;
  pv_key(c, t, &keys, add(&keys, c0, k));
  Builder bits;
  Op *bit = tile_for_bits(&sparse, used, "k", &bits);
  pv_key(c, t, &bits, add(&bits, c0, bit));
  Op **p = c->p;
  for (int r = 0; r < TILE_RT; r++) {
    Op *i = add(b, i0, i32(b, r));
    ir_if(b, ir_cmp(b, CMP_LT, i, t->lim), &valid, NULL);
    Op *ooff = attn_offset(&valid, c->batch, i, c->head, p[ATTN_O_SB], p[ATTN_O_SN],
                           p[ATTN_O_SH]);
    Op *scale = ir_load(&valid, t->rscale, i32(&valid, r));
    Op *d = ir_pfor(&valid, AXIS_LANE, i32(&valid, D), "d", &lane)->index;
    ir_store(&lane, c->o, add(&lane, ooff, d),
             mul(&lane, ir_load(&lane, c->acc, add(&lane, i32(&lane, r * D), d)), scale));
  }
}

/* 2. row_topk's tau and kept count for rows i0 .. i0 + TILE_RT - 1, their searches
 * interleaved (attn_rows_kth_count). A row past lim keeps "all" its keys (no search;
 * its results are unused). The rows' lengths are the plain row_keys: a select there
 * hid from LLVM that the slot index does not wrap, and the passes became gathers. */
static void group_topk(Ctx *c, Tile *t, Builder *b, Op *i0, Op *mx[], Op *tau[], Op *cnt[]) {
  AttnRow rows[TILE_RT];
  Op *k[TILE_RT];
  for (int r = 0; r < TILE_RT; r++) {
    Op *i = add(b, i0, i32(b, r));
    Op *mi = row_keys(c, b, i);
    rows[r] = (AttnRow){c->scores, i32(b, (int)(r * t->ld)), mi};
    k[r] = ir_select(b, ir_cmp(b, CMP_LT, i, t->lim),
                     attn_keep_count(b, c->p[ATTN_SPARSITY], mi, c->spec->keep_min), mi);
    mx[r] = attn_row_max(b, &rows[r]);
  }
  attn_rows_kth_count(b, rows, TILE_RT, k, mx, tau, cnt);
}

/* Steps 1-3 for rows i0 .. i0 + TILE_RT - 1 (i0 < lim). */
static void emit_group(Ctx *c, Tile *t, Builder *b, Op *i0) {
  const Spec *s = c->spec;
  Op *mg = row_keys(c, b, add(b, i0, i32(b, TILE_RT - 1)));
  Op *arow[TILE_RT];
  Op *last = ir_bin(b, OP_SUB, t->lim, i32(b, 1));
  for (int r = 0; r < TILE_RT; r++)
    arow[r] = qkv_row(c, b, ir_bin(b, OP_MIN, add(b, i0, i32(b, r)), last));
  tile_scores(b, c->scores, i32(b, 0), t->ld, c->q, arow, t->kt, mg, s->head_dim, t->sacc,
              ir_const_f32(b, 1.0 / sqrt((double)s->head_dim)));
  Op *tau[TILE_RT], *cnt[TILE_RT], *mx[TILE_RT];
  if (s->select == SEL_ROW_TOPK)
    group_topk(c, t, b, i0, mx, tau, cnt);
  for (int r = 0; r < TILE_RT; r++) {
    Op *i = add(b, i0, i32(b, r));
    Op *valid = ir_cmp(b, CMP_LT, i, t->lim);
    Op *mi = row_keys(c, b, i);
    Builder row, one;
    ir_if(b, valid, &row, NULL);
    AttnRow ar = {c->scores, i32(&row, (int)(r * t->ld)), mi};
    Op *kept_mass = s->select == SEL_ROW_TOPK
                        ? fwd_softmax_row_at(c, &row, &ar, i, tau[r], cnt[r], mx[r])
                        : fwd_softmax_row(c, &row, &ar, i);
    Op *inv = ir_bin(&row, OP_DIV, ir_const_f32(&row, 1.0), kept_mass);
    ir_pfor(&row, AXIS_LANE, i32(&row, 1), "one", &one);
    ir_store(&one, t->rscale, i32(&one, r), inv);
    row_weights(c, &row, &ar, i, mg);
  }
  group_pv(c, t, b, i0, mg);
}

/* One prefetch per cache line of N rows of D floats at buf[x0 + j*sn]. */
static void prefetch_rows(Ctx *c, Builder *b, Buf *buf, Op *x0) {
  Builder rows;
  Op *sn = ir_cast(b, TY_I64, c->p[ATTN_QKV_SN]);
  Op *j = ir_for(b, ir_const_i64(b, 0), ir_cast(b, TY_I64, c->p[ATTN_N]), 1, "j", &rows)->index;
  attn_prefetch_row(&rows, buf, add(&rows, ir_cast(&rows, TY_I64, x0), mul(&rows, j, sn)),
                    c->spec->head_dim);
}

/* A thread's next block is the next head (grid x is 1 when a block is a head, blocks
 * run in x, y, z order). Its q, k, v rows are prefetched before this head's work:
 * their first touch otherwise stalls the pack. */
static void prefetch_next_head(Ctx *c, Builder *b) {
  Op **p = c->p;
  Builder next;
  Op *nb, *nh;
  attn_next_head(b, c->batch, c->head, p[ATTN_H], &nb, &nh);
  ir_if(b, ir_cmp(b, CMP_LT, nb, p[ATTN_B]), &next, NULL);
  Op *x0 = attn_offset(&next, nb, i32(&next, 0), nh, p[ATTN_QKV_SB], p[ATTN_QKV_SN],
                       p[ATTN_QKV_SH]);
  Buf *in[3] = {c->q, c->kk, c->v};
  for (int k = 0; k < 3; k++)
    prefetch_rows(c, &next, in[k], x0);
}

static void emit_block(Ctx *c, Tile *t, Builder *b, int rows) {
  const Spec *s = c->spec;
  Builder pad, padded, work, groups, inside;
  /* the block's rows below N: a block may be a whole head of max_seq rows (tile_resolve) */
  Op *nr = ir_bin(b, OP_MIN, i32(b, rows), ir_bin(b, OP_SUB, c->p[ATTN_N], t->row0));
  /* padded rows L <= i < N: zeros */
  Op *r = ir_for(b, i32(b, 0), nr, 1, "r", &pad)->index;
  Op *i = add(&pad, t->row0, r);
  Op *is_pad = ir_bin(&pad, OP_AND, ir_cmp(&pad, CMP_LT, i, c->p[ATTN_N]),
                      ir_cmp(&pad, CMP_GE, i, c->len));
  ir_if(&pad, is_pad, &padded, NULL);
  fwd_emit_padded_row(c, &padded, i);

  if (rows >= s->max_seq)
    prefetch_next_head(c, b);
  ir_if(b, ir_cmp(b, CMP_LT, t->row0, t->lim), &work, NULL);
  /* 0. K^T and V of every key the block's rows see */
  Op *kcnt = row_keys(c, &work, add(&work, t->row0, i32(&work, rows - 1)));
  tile_pack_t(&work, t->kt, t->ld, c->kk, qkv_row(c, &work, i32(&work, 0)), c->p[ATTN_QKV_SN],
              kcnt, s->head_dim);
  /* V rows contiguous (vc[j * D + d]): P.V then streams one run of memory instead of
   * rows a QKV stride apart */
  tile_copy_rows(&work, t->vc, c->v, qkv_row(c, &work, i32(&work, 0)), c->p[ATTN_QKV_SN], kcnt,
                 s->head_dim);
  Op *g = ir_for(&work, i32(&work, 0), nr, TILE_RT, "g", &groups)->index;
  Op *i0 = add(&groups, t->row0, g);
  ir_if(&groups, ir_cmp(&groups, CMP_LT, i0, t->lim), &inside, NULL);
  emit_group(c, t, &inside, i0);
}

Kernel *attention_fwd_tile_build(const Spec *s, const TileConfig *tc) {
  char name[96];
  snprintf(name, sizeof name, "%s_attn_fwd", s->name);
  Kernel *k = ir_kernel_new(name, 1);
  Builder b = ir_builder(k);
  Ctx c = {.spec = s};
  fwd_declare_params(&c, k);
  Tile t = {.ld = tile_ld(s->max_seq)};
  c.scores = ir_shared(k, "scores", TY_F32, TILE_RT * t.ld);
  c.acc = ir_shared(k, "acc", TY_F32, (int64_t)TILE_RT * s->head_dim);
  t.kt = ir_shared(k, "kt", TY_F32, (int64_t)s->head_dim * t.ld);
  t.sacc = ir_shared(k, "sacc", TY_F32, TILE_RT * TILE_JT);
  t.rscale = ir_shared(k, "rscale", TY_F32, TILE_RT);
  t.vc = ir_shared(k, "vc", TY_F32, (int64_t)s->max_seq * s->head_dim);
  ir_set_grid(k, 0, ATTN_N, -1, tc->rows);
  ir_set_grid(k, 1, ATTN_H, -1, 1);
  ir_set_grid(k, 2, ATTN_B, -1, 1);

  t.row0 = mul(&b, ir_block_id(&b, 0), i32(&b, tc->rows));
  fwd_block_values(&c, &b);
  t.lim = ir_bin(&b, OP_MIN, c.p[ATTN_N], c.len);
  Builder warp;
  ir_pfor(&b, AXIS_WARP, i32(&b, 1), "w", &warp);
  emit_block(&c, &t, &warp, tc->rows);
  return k;
}
