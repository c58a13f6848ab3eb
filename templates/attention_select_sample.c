/* The sampled scoring of the select's tile schedule: round SAMPLE (every stride-th
 * row group of a head, its keys stored as candidates) and round WHOLE (every row, the
 * f32 scores copied for attention_select_whole.c's search). Both score transposed:
 * the sampled queries, packed into kt, are the register tile's keys and the head's
 * keys its rows (read in place), so only D x (sampled rows) values are packed; the
 * sample is a set, so its order does not matter, and an fma's operand order does not
 * change its bits. The key rows of the tile, and in WHOLE the next head's queries, are
 * prefetched a group ahead (their first touch stalled the tiles and the pack). The rest
 * of the hist block is attention_select_tile.c. */
#include <math.h>

#include "attention_select_tile.h"
#include "attention_tile.h"

#define i32 attn_i32
#define add attn_add

/* Round SAMPLE, one row of the slot (at base, m keys): every key appended to the
 * block's candidates (the caller made the room). The addresses are i64 (as in
 * attention_tile.c): with i32 sums LLVM loaded the rows after a group's first with
 * gathers, ~1/5 of hist(SAMPLE) at n = 128 (perf annotate). */
static void store_all(SelCtx *c, const Tile *t, Builder *b, Op *base, Op *m) {
  Builder lane, one;
  Op *cnt = ir_load(b, t->cs, i32(b, 0));
  Op *to = ir_cast(b, TY_I64, add(b, select_tile_keys_at(b, t), cnt));
  Op *from = ir_cast(b, TY_I64, base);
  Op *jj = ir_pfor(b, AXIS_LANE, ir_cast(b, TY_I64, m), "jj", &lane)->index;
  Op *key = attn_order_key(&lane, ir_load(&lane, t->slot, add(&lane, from, jj)));
  ir_store(&lane, c->cand, add(&lane, to, jj), key);
  ir_pfor(b, AXIS_LANE, i32(b, 1), "one", &one);
  ir_store(&one, t->cs, i32(&one, 0), add(&one, cnt, m));
}

/* Round WHOLE, one key's row of scores (slot[base ..], m of them) appended to the
 * head's buffer as they are (the search compares the f32 scores themselves). */
static void copy_scores(SelCtx *c, const Tile *t, Builder *b, Op *base, Op *m) {
  (void)c;
  Builder lane, one;
  Op *cnt = ir_load(b, t->cs, i32(b, 0));
  Op *to = ir_cast(b, TY_I64, cnt), *from = ir_cast(b, TY_I64, base);
  Op *jj = ir_pfor(b, AXIS_LANE, ir_cast(b, TY_I64, m), "jj", &lane)->index;
  ir_store(&lane, t->whole, add(&lane, to, jj), ir_load(&lane, t->slot, add(&lane, from, jj)));
  ir_pfor(b, AXIS_LANE, i32(b, 1), "one", &one);
  ir_store(&one, t->cs, i32(&one, 0), add(&one, cnt, m));
}

static Op *idiv_up(Builder *b, Op *x, Op *y) {
  return ir_bin(b, OP_DIV, add(b, x, ir_bin(b, OP_SUB, y, i32(b, 1))), y);
}

/* Row of the s-th sampled query: groups of TILE_RT rows, `span` rows apart. */
static Op *sampled_row(Builder *b, Op *s, Op *span) {
  Op *g = ir_bin(b, OP_DIV, s, i32(b, TILE_RT));
  return add(b, attn_mul(b, g, span), ir_bin(b, OP_REM, s, i32(b, TILE_RT)));
}

/* Round SAMPLE, step 0: the n sampled query rows packed transposed into kt
 * (kt[d][s] = q of sampled row s, 0 up to tile_pad(n)): they are the tile's keys.
 * A sample of every row (span = TILE_RT, e.g. every head at n <= 64) is rows 0 .. n-1
 * at one stride: tile_pack_t's transposes; otherwise strided loads per lane. */
static void pack_sample(SelCtx *c, const HistBlock *h, const Tile *t, Builder *b, Op *span,
                        Op *n) {
  Builder whole, some, loop, lane;
  ir_if(b, ir_cmp(b, CMP_EQ, span, i32(b, TILE_RT)), &whole, &some);
  tile_pack_t(&whole, t->kt, t->ld, c->q, select_tile_qk_row(c, h, &whole, i32(&whole, 0)),
              c->p[SELECT_QKV_SN], n, c->spec->head_dim);
  b = &some;
  Op *d = ir_for(b, i32(b, 0), i32(b, c->spec->head_dim), 1, "d", &loop)->index;
  Op *s = ir_pfor(&loop, AXIS_LANE, tile_pad(&loop, n), "s", &lane)->index;
  Op *in = ir_cmp(&lane, CMP_LT, s, n);
  Op *row = sampled_row(&lane, ir_bin(&lane, OP_MIN, s, ir_bin(&lane, OP_SUB, n, i32(&lane, 1))), span);
  Op *x = ir_load(&lane, c->q, add(&lane, select_tile_qk_row(c, h, &lane, row), d));
  ir_store(&lane, t->kt, add(&lane, attn_mul(&lane, d, i32(&lane, (int)t->ld)), s),
           ir_select(&lane, in, x, ir_const_f32(&lane, 0)));
}

/* Causal: the sampled rows a key j sees (i >= j) are a suffix; its first index is
 * the count of sampled rows below j. */
static Op *first_sampled(Builder *b, Op *j, Op *span, Op *n) {
  Op *q = ir_bin(b, OP_DIV, j, span), *rem = ir_bin(b, OP_REM, j, span);
  Op *below = add(b, attn_mul(b, q, i32(b, TILE_RT)), ir_bin(b, OP_MIN, rem, i32(b, TILE_RT)));
  return ir_bin(b, OP_MIN, below, n);
}

/* The next key group's rows (j0 + TILE_RT ..., clamped to last) prefetched, one per
 * cache line: the score tile broadcasts from the key rows in place (9 KiB apart in the
 * fused QKV layout, 4 lines each at D = 64), and their first touch stalled the d loop
 * on every line (perf at n = 64: the FMAs after the tile's four broadcasts held ~45 %
 * of the select); one group's tile (D steps of 16 fmas) covers the next one's misses. */
static void prefetch_key_group(SelCtx *c, Builder *b, const HistBlock *h, Op *j0, Op *last) {
  for (int r = 0; r < TILE_RT; r++) {
    Op *j = ir_bin(b, OP_MIN, add(b, j0, i32(b, TILE_RT + r)), last);
    attn_prefetch_row(b, c->kk, ir_cast(b, TY_I64, select_tile_qk_row(c, h, b, j)),
                      c->spec->head_dim);
  }
}

/* Offset of row 0 of the head after the block's, (b, h + 1) or (b + 1, 0): a thread's
 * next block (blocks run in x, y, z order, and a block is a head). The block's own
 * head where there is none, so every prefetch stays inside q. */
static Op *next_head_row0(SelCtx *c, Builder *b, const HistBlock *h) {
  Op **p = c->p;
  Op *nb, *nh;
  attn_next_head(b, h->batch, h->head, p[SELECT_H], &nb, &nh);
  Op *none = ir_cmp(b, CMP_GE, nb, p[SELECT_B]);
  return attn_offset(b, ir_select(b, none, h->batch, nb), i32(b, 0),
                     ir_select(b, none, h->head, nh), p[SELECT_QKV_SB], p[SELECT_QKV_SN],
                     p[SELECT_QKV_SH]);
}

/* Round WHOLE: per key group j0, the next head's query rows j0 .. j0 + TILE_RT - 1
 * (clamped below N) prefetched, so the next block's pack finds its rows in cache: the
 * pack's loads of the rows' first lines were the select's largest stall once the key
 * rows were prefetched (perf at n = 64: ~37 % of the select's samples). Spread over
 * the groups, a few lines per tile, rather than a burst at block start. */
static void prefetch_next_queries(SelCtx *c, Builder *b, Op *next0, Op *j0) {
  Op *sn = ir_cast(b, TY_I64, c->p[SELECT_QKV_SN]);
  Op *last = ir_bin(b, OP_SUB, c->p[SELECT_N], i32(b, 1));
  for (int r = 0; r < TILE_RT; r++) {
    Op *i = ir_cast(b, TY_I64, ir_bin(b, OP_MIN, add(b, j0, i32(b, r)), last));
    attn_prefetch_row(b, c->q, add(b, ir_cast(b, TY_I64, next0), attn_mul(b, i, sn)),
                      c->spec->head_dim);
  }
}

/* What becomes of one scored key row of the sampled queries (slot[base ..], m of them):
 * store_all (SAMPLE) or copy_scores (WHOLE). */
typedef void (*RowFn)(SelCtx *c, const Tile *t, Builder *b, Op *base, Op *m);

/* Steps 0-1 of SAMPLE and WHOLE: the n sampled queries (groups of TILE_RT, span rows
 * apart) packed transposed, every key of the head scored against them in groups of
 * TILE_RT keys, and each key's row of scores (causal: the queries that see it) handed
 * to `row`; `next` (WHOLE): the next head's queries prefetched meanwhile. */
static void score_sampled(SelCtx *c, Builder *b, const HistBlock *h, const Tile *t, Op *span,
                          Op *n, RowFn row, bool next) {
  Builder keys;
  int D = c->spec->head_dim;
  /* the first group's rows, fetched while the queries are packed */
  prefetch_key_group(c, b, h, i32(b, -TILE_RT), ir_bin(b, OP_SUB, t->lim, i32(b, 1)));
  pack_sample(c, h, t, b, span, n);
  Op *next0 = next ? next_head_row0(c, b, h) : NULL;
  Op *j0 = ir_for(b, i32(b, 0), t->lim, TILE_RT, "j0", &keys)->index;
  if (next)
    prefetch_next_queries(c, &keys, next0, j0);
  Op *last = ir_bin(&keys, OP_SUB, t->lim, i32(&keys, 1));
  Op *arow[TILE_RT];
  for (int r = 0; r < TILE_RT; r++)
    arow[r] = select_tile_qk_row(c, h, &keys,
                                 ir_bin(&keys, OP_MIN, add(&keys, j0, i32(&keys, r)), last));
  prefetch_key_group(c, &keys, h, j0, last);
  tile_scores(&keys, t->slot, i32(&keys, 0), t->ld, c->kk, arow, t->kt, n, D, t->sacc,
              ir_const_f32(&keys, 1.0 / sqrt((double)D)));
  for (int r = 0; r < TILE_RT; r++) {
    Builder in;
    Op *j = add(&keys, j0, i32(&keys, r));
    ir_if(&keys, ir_cmp(&keys, CMP_LT, j, t->lim), &in, NULL);
    Op *first = c->spec->causal ? first_sampled(&in, j, span, n) : i32(&in, 0);
    row(c, t, &in, add(&in, i32(&in, (int)(r * t->ld)), first), ir_bin(&in, OP_SUB, n, first));
  }
}

/* Round SAMPLE: the keys of every stride-th row group stored. The stride keeps the sample
 * within min(cand_cap - TILE_RT * lk, SELECT_SAMPLE_KEYS) whatever the rows' lengths:
 * groups of TILE_RT rows of (at most) lk keys, lk = L per head, N for layer_quantile
 * (one stride, so one sampling rate, across the batch). Header: the keys stored (-1
 * when not even one group fits) and whether they are the whole head (stride 1).
 * Scored transposed: the head's keys are the tile's rows (read in place) and the
 * sampled queries, packed, its columns, so only D x (sampled rows) are gathered, not
 * the whole K^T (the sample is a set: its order does not matter; an fma's operand
 * order does not change its bits). */
void select_tile_sample_rows(SelCtx *c, Builder *b, const HistBlock *h, const Tile *t) {
  Op **p = c->p;
  Op *lk = c->spec->select == SEL_HEAD_QUANTILE ? h->len : p[SELECT_N];
  Op *per = ir_bin(b, OP_MAX, attn_mul(b, lk, i32(b, TILE_RT)), i32(b, 1));
  Op *room = ir_bin(b, OP_SUB, t->cap, attn_mul(b, lk, i32(b, TILE_RT)));
  Op *fit = ir_bin(b, OP_DIV, ir_bin(b, OP_MIN, room, i32(b, SELECT_SAMPLE_KEYS)), per);
  Op *ng = idiv_up(b, lk, i32(b, TILE_RT));
  Op *stride = ir_bin(b, OP_MAX, idiv_up(b, ng, ir_bin(b, OP_MAX, fit, i32(b, 1))), i32(b, 1));
  Op *rows = ir_cmp(b, CMP_GT, t->lim, i32(b, 0));
  Op *ok = ir_bin(b, OP_OR, ir_cmp(b, CMP_GT, fit, i32(b, 0)), ir_cmp(b, CMP_LE, t->lim, i32(b, 0)));
  Builder work, one;
  ir_if(b, ir_bin(b, OP_AND, ok, rows), &work, NULL);
  Op *span = attn_mul(&work, stride, i32(&work, TILE_RT));
  Op *nsg = idiv_up(&work, idiv_up(&work, t->lim, i32(&work, TILE_RT)), stride);
  Op *lastg = attn_mul(&work, ir_bin(&work, OP_SUB, nsg, i32(&work, 1)), span);
  Op *n = add(&work, attn_mul(&work, ir_bin(&work, OP_SUB, nsg, i32(&work, 1)), i32(&work, TILE_RT)),
              ir_bin(&work, OP_MIN, ir_bin(&work, OP_SUB, t->lim, lastg), i32(&work, TILE_RT)));
  score_sampled(c, &work, h, t, span, n, store_all, false);
  ir_pfor(b, AXIS_LANE, i32(b, 1), "one", &one);
  ir_store(&one, c->cand, t->head, ir_select(&one, ok, ir_load(&one, t->cs, i32(&one, 0)),
                                             i32(&one, -1)));
  ir_store(&one, c->cand, add(&one, t->head, i32(&one, 1)),
           ir_select(&one, ir_cmp(&one, CMP_EQ, stride, i32(&one, 1)), i32(&one, 1),
                     i32(&one, 0)));
}

/* Round WHOLE: every query row sampled (span TILE_RT, n = L), the scores to t->whole. */
void select_tile_whole_scores(void *ctx, Builder *b) {
  const SelTileWhole *w = ctx;
  score_sampled(w->c, b, w->h, w->t, i32(b, TILE_RT), w->t->lim, copy_scores, true);
}
