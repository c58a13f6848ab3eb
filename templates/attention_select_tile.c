/* The select hist kernel's tile schedule (SCHED_TILE, the CPU's): the same
 * histogram as the warp schedule's (attention_select.c), with the scores computed
 * as the tile forward and backward compute them.
 *
 * Why: tau_group must be one of the forward's own f32 scores, or the kept set
 * S >= tau of the forward differs from the one the radix select counted. The tile
 * schedule's S is tile_scores' in-order fma chain over d, times f32(1/sqrt(D)), so
 * the hist kernel scores with tile_scores itself. Scoring with a scalar in-order
 * loop per key (an fma chain cannot be vectorised over d) made head_quantile's
 * select + forward slower than the warp schedule; as register tiles over keys it
 * runs at the forward's own QK^T speed.
 *
 * A block takes every query row of one (b, h) (select_tile_hist_rows) and runs as
 * one warp:
 *   0. K^T of the keys any of its rows sees is packed into kt[d][j] once;
 *   then per group of TILE_RT rows:
 *   1. S for the group's rows over its keys by tile_scores into a TILE_RT x ld slot
 *      (rows past min(N, L) are scored from a clamped row and never binned);
 *   2. per valid row, lanes over its valid keys (j < L, j <= i when causal): each
 *      score binned by select_bin_score, in chunks of TILE_JT keys that are
 *      skipped when none of their keys matches the round's prefix (bin_row).
 * One block per head, not the forward's `rows`: the packing is strided loads, and
 * with 128-row blocks at L = 512 it took a fifth of the kernel's time, paid again
 * every round (measured 500 -> 425 ms of one thread's select plan at B = 16,
 * H = 12, n = 512). B*H blocks per round remain to share the cores.
 * Cost per block and round: L*D packing, 2*D flops per score of its rows (in
 * register tiles, rounded up to TILE_JT keys per group), and one key compare per
 * valid score plus a shared-histogram increment for each that matches the round's
 * prefix (every score in round 0). */
#include <math.h>

#include "attention_select_impl.h"
#include "attention_tile.h"

#define i32 attn_i32
#define add attn_add

typedef struct {
  Buf *kt, *slot, *sacc;
  int64_t ld;   /* slot and packed-row length: max_seq rounded up to TILE_JT */
  Op *lim;      /* rows < lim are valid: min(N, L) = L (select_hist_begin clamps L) */
} Tile;

static Op *qk_row(SelCtx *c, const HistBlock *h, Builder *b, Op *i) {
  Op **p = c->p;
  return attn_offset(b, h->batch, i, h->head, p[SELECT_QKV_SB], p[SELECT_QKV_SN],
                     p[SELECT_QKV_SH]);
}

/* Keys a query row i sees. */
static Op *row_keys(SelCtx *c, const HistBlock *h, Builder *b, Op *i) {
  return c->spec->causal ? ir_bin(b, OP_MIN, add(b, i, i32(b, 1)), h->len) : h->len;
}

/* Step 2 for one row, slot[base + j] for j < m, TILE_JT keys at a time: a
 * vectorised count of the keys that match the round's prefix first, and the
 * (scalar: a histogram increment cannot be vectorised) binning loop only where it
 * is nonzero. Round 0 bins every score; in rounds 1 and 2 only the scores in the
 * bins decided so far match, a small fraction, so most chunks skip the loop. */
static void bin_row(Builder *b, const HistBlock *h, Buf *slot, Op *base, Op *m) {
  Builder chunk, count, any, lane;
  Op *j0 = ir_for(b, i32(b, 0), m, TILE_JT, "j0", &chunk)->index;
  Op *at = add(&chunk, base, j0);
  Op *n = ir_bin(&chunk, OP_MIN, ir_bin(&chunk, OP_SUB, m, j0), i32(&chunk, TILE_JT));
  Op *hits = ir_reduce(&chunk, AXIS_LANE, RED_ADD, TY_I32, n, "jj", &count);
  Op *key = attn_order_key(&count, ir_load(&count, slot, add(&count, at, hits->index)));
  ir_yield(&count, ir_select(&count, select_key_matches(&count, h, key), i32(&count, 1),
                             i32(&count, 0)));
  ir_if(&chunk, ir_cmp(&chunk, CMP_GT, hits, i32(&chunk, 0)), &any, NULL);
  Op *jj = ir_pfor(&any, AXIS_LANE, n, "jj", &lane)->index;
  select_bin_score(&lane, h, ir_load(&lane, slot, add(&lane, at, jj)));
}

/* Steps 1-2 for rows i0 .. i0 + TILE_RT - 1 (i0 < lim). */
static void emit_group(SelCtx *c, const HistBlock *h, const Tile *t, Builder *b, Op *i0) {
  int D = c->spec->head_dim;
  Op *mg = row_keys(c, h, b, add(b, i0, i32(b, TILE_RT - 1)));
  Op *last = ir_bin(b, OP_SUB, t->lim, i32(b, 1));
  Op *arow[TILE_RT];
  for (int r = 0; r < TILE_RT; r++)
    arow[r] = qk_row(c, h, b, ir_bin(b, OP_MIN, add(b, i0, i32(b, r)), last));
  tile_scores(b, t->slot, i32(b, 0), t->ld, c->q, arow, t->kt, mg, D, t->sacc,
              ir_const_f32(b, 1.0 / sqrt((double)D)));
  for (int r = 0; r < TILE_RT; r++) {
    Builder row;
    Op *i = add(b, i0, i32(b, r));
    ir_if(b, ir_cmp(b, CMP_LT, i, t->lim), &row, NULL);
    bin_row(&row, h, t->slot, i32(&row, (int)(r * t->ld)), row_keys(c, h, &row, i));
  }
}

TileConfig select_tile_hist_rows(const Spec *s, const TileConfig *t) {
  int rows = (s->max_seq + t->rows - 1) / t->rows * t->rows;
  return (TileConfig){rows, 1, SCHED_TILE};
}

void select_hist_tile_rows(SelCtx *c, Builder *b, const TileConfig *tc, const HistBlock *h) {
  const Spec *s = c->spec;
  int D = s->head_dim;
  Tile t = {.ld = (s->max_seq + TILE_JT - 1) / TILE_JT * TILE_JT, .lim = h->len};
  t.kt = ir_shared(c->k, "kt", TY_F32, (int64_t)D * t.ld);
  t.slot = ir_shared(c->k, "scores", TY_F32, TILE_RT * t.ld);
  t.sacc = ir_shared(c->k, "sacc", TY_F32, TILE_RT * TILE_JT);
  Builder warp, work, groups, inside;
  ir_pfor(b, AXIS_WARP, i32(b, 1), "w", &warp);
  ir_if(&warp, ir_cmp(&warp, CMP_LT, h->row0, t.lim), &work, NULL);
  /* 0. K^T of every key the block's rows see */
  Op *kcnt = row_keys(c, h, &work, add(&work, h->row0, i32(&work, tc->rows - 1)));
  tile_pack_t(&work, t.kt, t.ld, c->kk, qk_row(c, h, &work, i32(&work, 0)),
              c->p[SELECT_QKV_SN], kcnt, D);
  Op *g = ir_for(&work, i32(&work, 0), i32(&work, tc->rows), TILE_RT, "g", &groups)->index;
  Op *i0 = add(&groups, h->row0, g);
  ir_if(&groups, ir_cmp(&groups, CMP_LT, i0, t.lim), &inside, NULL);
  emit_group(c, h, &t, &inside, i0);
}
