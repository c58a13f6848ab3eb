/* The select hist kernel's warp schedule (SCHED_WARP, the GPU's), block-staged: the
 * block's query rows score against tiles of K staged in shared memory once per
 * block, a warp per row, lanes over the tile's keys.
 *
 * Why: on the H100 (docs/gpu.md) each lane read its own K row from global memory
 * (32 rows per load instruction, uncoalesced), and every warp of every block re-read
 * the head's whole K: head_quantile's select + forward took 3.7 ms at n = 128 against
 * row_topk's 1.2 ms forward, three hist launches each rescoring the head that way.
 * Here the block copies a tile of `kt` keys (attn_stage_rows: coalesced, rows
 * D + 1 apart so lanes reading one d of 32 keys hit 32 banks) and all its rows use
 * it; the block's Q rows are staged once too where they fit, so per block K is read
 * once per tile and Q once. The S bits are the forward's: the same score helper on
 * the staged tile (the same dot over d, times f32(1/sqrt(D))), so tau_group is one
 * of the forward's scores. The histogram logic is the shared one
 * (attention_select_impl.h): each score goes from the warp's slot to its bin.
 *
 * Per block, for j0 = 0, kt, ... below the last key its rows see (L, or the last
 * row + 1 when causal):
 *   stage K[j0, j0 + nk) -> ktile; barrier;
 *   per row (a warp takes its rows `rows` / `warps` apart, R at a time on SCHED_WARP):
 *   its keys of the tile into its slot by attn_rows_scores (SCHED_WARP_HOST:
 *   attn_row_scores, one row), then each binned (select_bin_score);
 *   barrier (the tile's readers are done before the next tile overwrites it).
 * A radix launch is one pass: the rounds' prefixes come from the picks between
 * launches, so scores cannot be kept from one round to the next. Where a whole head
 * fits one block (head_quantile specs with max_seq <= SELECT_WARP_WHOLE_SEQ: 64 x 64
 * scores, 16 KiB; at 128 they would be 64 KiB, past the 48 KiB of static shared
 * memory) round WHOLE keeps them: the head's first block scores it into `whole` with
 * the same staged tiles and its warp 0 finds tau there, one launch per call. */
#include "attention_select_impl.h"

#include <stdio.h>

#define i32 attn_i32
#define add attn_add
#define mul attn_mul

int attention_select_warp_whole_keys(const Spec *s) {
  bool small = s->select == SEL_HEAD_QUANTILE && s->max_seq <= SELECT_WARP_WHOLE_SEQ &&
               s->head_dim <= 128;
  return small ? s->max_seq * s->max_seq : 0;
}

/* Rows a warp scores at once (SCHED_WARP; attn_rows_scores), each with its slot. */
static int rows_per_warp(const TileConfig *t) {
  int R = t->rows / t->warps;
  return t->sched == SCHED_WARP_HOST || R < 1 ? 1 : R < 4 ? R : 4;
}

static int64_t layout_bytes(const Spec *s, const TileConfig *t, int kt, bool stage_q) {
  int64_t ld = s->head_dim + 1, slots = (int64_t)t->warps * rows_per_warp(t) * kt;
  return 4 * (SELECT_BINS + kt * ld + slots + (stage_q ? t->rows * ld : 0) +
              attention_select_warp_whole_keys(s));
}

/* The first that fits its budget: a 64-key tile with Q staged, then a 32-key tile
 * (a key per lane) with Q, while the block stays within 32 KiB; then without Q (q
 * read from global memory, one broadcast per d and tile) and the tile as large as fits
 * 48 KiB. Why the 32 KiB: staging Q saves loads that hit L1 anyway (a broadcast
 * each), while the bytes cost blocks per SM (an H100's 228 KiB hold 7 blocks of
 * 32 KiB, 5 of 41 KiB: at warps = 1, as many warps), so Q is staged only where it
 * is cheap. With head_dim <= 256 and warps <= 16 a 32-key tile always fits, and
 * with the whole-head buffer (16 KiB at most, head_dim <= 128) too. */
SelectWarpLayout select_warp_layout(const Spec *s, const TileConfig *t) {
  enum { CHEAP = 32 * 1024 };
  static const struct { int kt; bool q; int64_t budget; } tries[] = {
    {64, true, CHEAP}, {32, true, CHEAP}, {64, false, TILE_SHARED_LIMIT},
    {32, false, TILE_SHARED_LIMIT}, {16, false, TILE_SHARED_LIMIT},
    {8, false, TILE_SHARED_LIMIT}};
  int whole = attention_select_warp_whole_keys(s);
  for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++) {
    int64_t bytes = layout_bytes(s, t, tries[i].kt, tries[i].q);
    if (bytes <= tries[i].budget)
      return (SelectWarpLayout){tries[i].kt, tries[i].q, whole, bytes};
  }
  return (SelectWarpLayout){0, false, whole, layout_bytes(s, t, 8, false)};
}

int64_t attention_select_hist_shared_bytes(const Spec *s, const TileConfig *t) {
  return select_warp_layout(s, t).bytes;
}

int attention_select_check(const Spec *s, const TileConfig *t, char *err, size_t cap) {
  if (t->sched == SCHED_TILE)
    return 0;   /* the tile schedule's arrays live in the host's frame (tile_check) */
  SelectWarpLayout lay = select_warp_layout(s, t);
  if (lay.kt > 0)
    return 0;
  snprintf(err, cap, "select hist: tile rows = %d, warps = %d with head_dim = %d needs %lld "
           "bytes of shared memory even with 8-key tiles (limit %d)", t->rows, t->warps,
           s->head_dim, (long long)lay.bytes, TILE_SHARED_LIMIT);
  return -1;
}

/* The staged loop shared by the radix rounds and round WHOLE. */
typedef struct {
  SelCtx *c;
  const TileConfig *t;
  const HistBlock *h;
  SelectWarpLayout lay;
  Buf *ktile, *slots, *qtile, *whole;
  int R;           /* rows a warp scores at once (rows_per_warp) */
  bool to_whole;   /* the rows' scores go to `whole` (round WHOLE), else to their bins */
} Staged;

/* Rows r_t = r0 + warps t of the block (t < R; i_t = row0 + r_t) against the staged
 * tile, in warp-level code: row t has mt[t] keys there (0 past the block's rows, whose
 * q offset is then row r0's), some row at least one. Radix rounds: S into the rows'
 * slots of warp w (lanes over the tile's keys), then each score binned by the lane
 * that wrote it; round WHOLE: S to its place in the head's packed scores (row i at
 * i L, or i (i + 1) / 2 when causal). */
static void score_rows(const Staged *st, Builder *b, Op *const r[], Op *const i[], Op *j0,
                       Op *const mt[], Op *mx, Op *w) {
  SelCtx *c = st->c;
  Op **p = c->p;
  int D = c->spec->head_dim, R = st->R;
  bool staged_q = st->qtile && !st->to_whole;
  Buf *q = staged_q ? st->qtile : c->q;
  AttnRow rows[ATTN_ROWS_MAX];
  Op *qoff[ATTN_ROWS_MAX], *slot[ATTN_ROWS_MAX];
  for (int t = 0; t < R; t++) {
    qoff[t] = staged_q ? mul(b, r[t], i32(b, D + 1))
                       : attn_offset(b, st->h->batch, i[t], st->h->head, p[SELECT_QKV_SB],
                                     p[SELECT_QKV_SN], p[SELECT_QKV_SH]);
    if (st->to_whole) {
      Op *it = i[t];
      Op *at = c->spec->causal
                   ? ir_bin(b, OP_DIV, mul(b, it, add(b, it, i32(b, 1))), i32(b, 2))
                   : mul(b, it, st->h->len);
      rows[t] = (AttnRow){st->whole, add(b, at, j0), mt[t]};
    } else {
      slot[t] = mul(b, add(b, mul(b, w, i32(b, R)), i32(b, t)), i32(b, st->lay.kt));
      rows[t] = (AttnRow){st->slots, slot[t], mt[t]};
    }
  }
  if (R == 1)
    attn_row_scores(b, &rows[0], q, st->ktile, qoff[0], i32(b, 0), i32(b, D + 1), D,
                    st->t->sched == SCHED_WARP_HOST);
  else
    attn_rows_scores(b, R, rows, q, qoff, st->ktile, i32(b, 0), i32(b, D + 1), D);
  if (st->to_whole)
    return;
  Builder lane, has;
  Op *j = ir_pfor(b, AXIS_LANE, mx, "j", &lane)->index;
  for (int t = 0; t < R; t++) {
    Builder *at = &lane;
    if (R > 1) {
      ir_if(&lane, ir_cmp(&lane, CMP_LT, j, mt[t]), &has, NULL);
      at = &has;
    }
    select_bin_score(at, st->h, ir_load(at, st->slots, add(at, slot[t], j)));
  }
}

/* Block-level: rows row0 + [0, nrows) against the keys [0, kend) in staged tiles,
 * each warp taking R of its rows (r = w, w + warps, ...) at a time. */
static void staged_rows(const Staged *st, Builder *b, Op *row0, Op *nrows, Op *kend) {
  SelCtx *c = st->c;
  const HistBlock *h = st->h;
  Op **p = c->p;
  int D = c->spec->head_dim, kt = st->lay.kt, warps = st->t->warps, R = st->R;
  Builder tile, warp, rows, some;
  Op *j0 = ir_for(b, i32(b, 0), kend, kt, "j0", &tile)->index;
  Op *nk = ir_bin(&tile, OP_MIN, ir_bin(&tile, OP_SUB, kend, j0), i32(&tile, kt));
  attn_stage_rows(&tile, st->ktile, D + 1, c->kk,
                  attn_offset(&tile, h->batch, j0, h->head, p[SELECT_QKV_SB], p[SELECT_QKV_SN],
                              p[SELECT_QKV_SH]),
                  p[SELECT_QKV_SN], nk, D);
  ir_barrier(&tile);
  Op *w = ir_pfor(&tile, AXIS_WARP, i32(&tile, warps), "w", &warp)->index;
  Op *r0 = ir_for(&warp, w, nrows, (int64_t)warps * R, "r", &rows)->index;
  Op *r[ATTN_ROWS_MAX], *i[ATTN_ROWS_MAX], *mt[ATTN_ROWS_MAX], *mx = NULL;
  for (int t = 0; t < R; t++) {
    Op *rt = add(&rows, r0, i32(&rows, t * warps));
    Op *valid = ir_cmp(&rows, CMP_LT, rt, nrows);
    r[t] = ir_select(&rows, valid, rt, r0);
    i[t] = add(&rows, row0, r[t]);
    Op *m = h->len;
    if (c->spec->causal)
      m = ir_bin(&rows, OP_MIN, add(&rows, i[t], i32(&rows, 1)), h->len);
    /* the row's keys in this tile: none for a causal row above the tile */
    Op *k = ir_bin(&rows, OP_MAX, ir_bin(&rows, OP_MIN, ir_bin(&rows, OP_SUB, m, j0), nk),
                   i32(&rows, 0));
    mt[t] = ir_select(&rows, valid, k, i32(&rows, 0));
    mx = mx ? ir_bin(&rows, OP_MAX, mx, mt[t]) : mt[t];
  }
  ir_if(&rows, ir_cmp(&rows, CMP_GT, mx, i32(&rows, 0)), &some, NULL);
  score_rows(st, &some, r, i, j0, mt, mx, w);
  ir_barrier(&tile);
}

/* The radix rounds: the block's rows binned. */
static void radix_rows(Staged *st, Builder *b) {
  SelCtx *c = st->c;
  const HistBlock *h = st->h;
  Op **p = c->p;
  int D = c->spec->head_dim;
  /* the block's valid rows, and the keys they see: j < L, or j <= its last row */
  Op *left = ir_bin(b, OP_SUB, h->len, h->row0);
  Op *nrows = ir_bin(b, OP_MAX, ir_bin(b, OP_MIN, left, i32(b, st->t->rows)), i32(b, 0));
  Op *kend = c->spec->causal ? add(b, h->row0, nrows) : h->len;
  kend = ir_select(b, ir_cmp(b, CMP_GT, nrows, i32(b, 0)), kend, i32(b, 0));
  if (st->qtile)   /* read after the first tile's barrier */
    attn_stage_rows(b, st->qtile, D + 1, c->q,
                    attn_offset(b, h->batch, h->row0, h->head, p[SELECT_QKV_SB],
                                p[SELECT_QKV_SN], p[SELECT_QKV_SH]),
                    p[SELECT_QKV_SN], nrows, D);
  st->to_whole = false;
  staged_rows(st, b, h->row0, nrows, kend);
}

static void scored_already(void *ctx, Builder *b) { (void)ctx, (void)b; }

/* Round WHOLE: the head's first block scores all of it into `whole` (every warp, the
 * staged tiles; q from global memory) where the search needs the scores, and its
 * warp 0 finds tau there (select_whole_round, the tile schedule's search); the head's
 * other blocks have nothing to do. */
static void whole_round(Staged *st, Builder *b) {
  SelCtx *c = st->c;
  const HistBlock *h = st->h;
  Builder first, go, warp;
  ir_if(b, ir_cmp(b, CMP_EQ, h->row0, i32(b, 0)), &first, NULL);
  Op *M = select_group_count(c, &first, h->g);
  Op *keep = attn_keep_count(&first, c->p[SELECT_SPARSITY], M, c->spec->keep_min);
  Op *some = ir_bin(&first, OP_AND, ir_cmp(&first, CMP_GT, keep, i32(&first, 0)),
                    ir_cmp(&first, CMP_LT, keep, M));
  Op *fits = ir_cmp(&first, CMP_LE, M, i32(&first, st->lay.whole));
  ir_if(&first, ir_bin(&first, OP_AND, some, fits), &go, NULL);
  st->to_whole = true;
  staged_rows(st, &go, i32(&go, 0), h->len, h->len);
  ir_pfor(&first, AXIS_WARP, i32(&first, 1), "w", &warp);
  select_whole_round(c, &warp, h, st->whole, scored_already, NULL);
}

void select_hist_warp_rows(SelCtx *c, Builder *b, const TileConfig *t, const HistBlock *h) {
  Staged st = {.c = c, .t = t, .h = h, .lay = select_warp_layout(c->spec, t),
               .R = rows_per_warp(t)};
  int ld = c->spec->head_dim + 1;
  st.ktile = ir_shared(c->k, "ktile", TY_F32, (int64_t)st.lay.kt * ld);
  st.slots = ir_shared(c->k, "slots", TY_F32, (int64_t)t->warps * st.R * st.lay.kt);
  if (st.lay.stage_q)
    st.qtile = ir_shared(c->k, "qtile", TY_F32, (int64_t)t->rows * ld);
  if (!st.lay.whole) {
    radix_rows(&st, b);
    return;
  }
  st.whole = ir_shared(c->k, "whole", TY_F32, st.lay.whole);
  Builder wb, radix;
  ir_if(b, ir_cmp(b, CMP_EQ, c->p[SELECT_ROUND], i32(b, SELECT_ROUND_WHOLE)), &wb, &radix);
  whole_round(&st, &wb);
  radix_rows(&st, &radix);
}
