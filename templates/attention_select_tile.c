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
 *   2. per valid row, its valid keys (j < L, j <= i when causal) in chunks of
 *      MASK_KEYS (32): a vectorised bit mask of the keys that match the round's prefix,
 *      and, where it is nonzero, in round 2 each matching score binned (bin_row),
 *      in round 1 each appended to the block's candidates (store_row); round 0
 *      bins every score without the mask (bin_all).
 * Before them (attention_select_bracket.c has the picks and the why), round SAMPLE
 * scores every stride-th row group only (transposed; attention_select_sample.c) and
 * stores all their keys;
 * round BRACKET scores every row, stores the keys in the group's bracket [lo, hi]
 * with the same chunk masks (store_row) and, in the same chunks, counts those above hi.
 * Rounds 0-2 skip the groups those settled (rank[g] = SELECT_DONE), BRACKET the
 * groups without a bracket. Round WHOLE (small heads; attention_select_whole.c) scores
 * like SAMPLE with every row sampled (attention_select_sample.c) and copies the f32
 * scores to a shared buffer.
 * One block per head, not the forward's `rows`: the packing is strided loads, and
 * with 128-row blocks at L = 512 it took a fifth of the kernel's time, paid again
 * every round (measured 500 -> 425 ms of one thread's select plan at B = 16,
 * H = 12, n = 512). B*H blocks per round remain to share the cores.
 *
 * Candidates (cand, cand_cap; attention_select.h). Scoring is most of a round (the
 * QK^T register tiles run at the FMA units' rate), and after round 0 only the keys
 * in tau's 11-bit bin still count, a few percent of them. So round 1 stores the keys
 * that match its prefix, all of them, in the block's region of cand: row group by
 * row group, in order, as long as each group's TILE_RT * (its keys) still fit under
 * cand_cap and every group before it was stored; a group that does not fit, and
 * every one after it, is binned directly (bin_row). Round 1 then bins the
 * stored keys and writes the region's header: the count, and the rows stored (a
 * multiple of TILE_RT, or L when all were). Round 2 bins the stored keys that match
 * its prefix and scores only the rows past the stored ones (none when all fit), so
 * the histogram is the same whatever cand_cap is. The keys are what round 2 needs
 * (its filter and digit), and the forward's own f32 bits are never re-derived from
 * them, so tau stays one of the forward's scores.
 *
 * Cost per block: SAMPLE: the sampled rows' packing and scores and a store per key;
 * BRACKET: as round 1 plus a vectorised count per row. Rounds 0 and 1 (groups not
 * settled): L*D packing, 2*D flops per score of its rows (in
 * register tiles, rounded up to TILE_JT keys per group) and the mask per chunk of
 * keys; round 0 a shared-histogram increment per score; round 1 one scalar step per
 * stored key (a set bit of a mask) and a pass over them. Round 2: a pass over the
 * stored keys; the recomputation only past them. */
#include <math.h>

#include "attention_select_tile.h"
#include "attention_tile.h"

#define i32 attn_i32
#define add attn_add


/* Which keys a chunk's mask marks: those of the round's prefix, or in the bracket. */
typedef Op *(*KeyPred)(Builder *b, const HistBlock *h, const Tile *t, Op *key);

static Op *prefix_pred(Builder *b, const HistBlock *h, const Tile *t, Op *key) {
  (void)t;
  return select_key_matches(b, h, key);
}

static Op *bracket_pred(Builder *b, const HistBlock *h, const Tile *t, Op *key) {
  (void)h;
  return ir_bin(b, OP_AND, ir_cmp(b, CMP_UGE, key, t->lo), ir_cmp(b, CMP_UGE, t->hi, key));
}


/* Keys a query row i sees. */
static Op *row_keys(SelCtx *c, const HistBlock *h, Builder *b, Op *i) {
  return c->spec->causal ? ir_bin(b, OP_MIN, add(b, i, i32(b, 1)), h->len) : h->len;
}


/* Keys per chunk: one bit each in an i32 mask (not TILE_JT, the score tile's width,
 * which may exceed 32). */
enum { MASK_KEYS = 32 };

/* Per chunk of MASK_KEYS keys of one row, slot[base + j] for j < m: a vectorised
 * bit mask of the keys that match the round's prefix (bit jj: key j0 + jj; the lane
 * sum of distinct bits is their OR), then the builder `any` that runs only where it
 * is nonzero, with the chunk's first slot index in *at, its key count in *n. In
 * rounds 1 and 2 only the scores in the bins decided so far match, a small
 * fraction (in round 1 at B = 16, H = 12, n = 512, s = 0.8, unquantized inputs:
 * 5.2 % on average, 5.4 % at most in a head), so `any` runs once per matching key
 * instead of once per key. */
static Op *chunks(Builder *b, const HistBlock *h, const Tile *t, KeyPred pred, Op *base,
                  Op *m, Op *above, bool skip_empty, Builder *any, Op **at, Op **n) {
  Buf *slot = t->slot;
  Builder chunk, bits;
  Op *j0 = ir_for(b, i32(b, 0), m, MASK_KEYS, "j0", &chunk)->index;
  *at = add(&chunk, base, j0);
  *n = ir_bin(&chunk, OP_MIN, ir_bin(&chunk, OP_SUB, m, j0), i32(&chunk, MASK_KEYS));
  /* all MASK_KEYS lanes, those past n masked off: a constant-length loop vectorises
   * whole (a chunk never reads past tile_pad of its group's keys, which the slot holds) */
  Op *mask = ir_reduce(&chunk, AXIS_LANE, RED_ADD, TY_I32, i32(&chunk, MASK_KEYS), "jj", &bits);
  Op *key = attn_order_key(&bits, ir_load(&bits, slot, add(&bits, *at, mask->index)));
  Op *in = ir_cmp(&bits, CMP_LT, mask->index, *n);
  ir_yield(&bits, ir_select(&bits, ir_bin(&bits, OP_AND, in, pred(&bits, h, t, key)),
                            ir_bin(&bits, OP_SHL, i32(&bits, 1), mask->index), i32(&bits, 0)));
  if (above) {   /* round BRACKET: the chunk's keys above hi, the same 32 lanes */
    Builder up;
    Op *cnt = ir_reduce(&chunk, AXIS_LANE, RED_ADD, TY_I32, i32(&chunk, MASK_KEYS), "jj", &up);
    Op *ku = attn_order_key(&up, ir_load(&up, slot, add(&up, *at, cnt->index)));
    Op *hit = ir_bin(&up, OP_AND, ir_cmp(&up, CMP_LT, cnt->index, *n),
                     ir_cmp(&up, CMP_ULT, t->hi, ku));
    ir_yield(&up, ir_select(&up, hit, i32(&up, 1), i32(&up, 0)));
    ir_set(&chunk, above, add(&chunk, ir_get(&chunk, above), cnt));
  }
  if (skip_empty)
    ir_if(&chunk, ir_cmp(&chunk, CMP_NE, mask, i32(&chunk, 0)), any, NULL);
  else
    *any = chunk;
  return mask;
}

/* Step 2 in rounds 1 (rows not stored) and 2 for one row: its matching scores
 * binned (the scalar loop: a histogram increment does not vectorise). */
static void bin_row(Builder *b, const HistBlock *h, const Tile *t, Op *base, Op *m) {
  Builder any, lane;
  Op *at, *n;
  chunks(b, h, t, prefix_pred, base, m, NULL, true, &any, &at, &n);
  Op *jj = ir_pfor(&any, AXIS_LANE, n, "jj", &lane)->index;
  select_bin_score(&lane, h, ir_load(&lane, t->slot, add(&lane, at, jj)));
}

/* Step 2 in round 0 for one row: every score binned by its top digit, with none of
 * the prefix tests (a scalar loop whose instructions per score bound the round). */
static void bin_all(Builder *b, const HistBlock *h, Buf *slot, Op *base, Op *m) {
  Builder lane;
  Op *jj = ir_pfor(b, AXIS_LANE, m, "jj", &lane)->index;
  Op *key = attn_order_key(&lane, ir_load(&lane, slot, add(&lane, base, jj)));
  ir_atomic_add(&lane, h->bins, ir_bin(&lane, OP_SHR, key, i32(&lane, SELECT_SHIFT0)),
                i32(&lane, 1));
}

/* Set bits of a chunk's mask stored without a branch (STORE_STEPS, below). */
enum { STORE_STEPS = 2 };

/* The key of slot[at + jj] appended to the block's candidates where `real`, else
 * written to the block's header (each round rewrites it after its last row) and
 * not counted. */
static void append_key(SelCtx *c, const Tile *t, Builder *b, Op *cnt, Op *at, Op *jj, Op *real) {
  Op *key = attn_order_key(b, ir_load(b, t->slot, add(b, at, jj)));
  Op *k = ir_get(b, cnt);
  ir_store(b, c->cand, ir_select(b, real, add(b, select_tile_keys_at(b, t), k), t->head), key);
  ir_set(b, cnt, add(b, k, ir_cast(b, TY_I32, real)));
}

/* Step 2 in round 1 for a stored row: its matching keys appended to the block's
 * candidates (the caller checked the room), one scalar step per set bit of each
 * chunk's mask, lowest first, so in key order. They are binned after the last row
 * (bin_stored).
 * Why branch-free steps: in a chunk of 32 keys of a ~4 % bracket, P(no key) ~ 1/4
 * and P(more than one) ~ 1/3, so both the `mask != 0` test and a loop over the set
 * bits mispredicted about once per chunk (perf: the masks and stores were ~38 % of
 * hist at n = 512, the score tiles ~44 %). The first STORE_STEPS bits are stored
 * unconditionally (a step past the last bit writes the header, uncounted), a loop
 * takes the rest (P ~ 0.1). */
static void store_row(SelCtx *c, const HistBlock *h, const Tile *t, KeyPred pred, Builder *b,
                      Op *base, Op *m, Op *above) {
  Builder any, one, loop;
  Op *at, *n;
  Op *mask = chunks(b, h, t, pred, base, m, above, false, &any, &at, &n);
  ir_pfor(&any, AXIS_LANE, i32(&any, 1), "one", &one);
  Op *cnt = ir_var(&one, ir_load(&one, t->cs, i32(&one, 0)), "stored");
  Op *left = ir_var(&one, mask, "left");
  for (int s = 0; s < STORE_STEPS; s++) {
    Op *rest = ir_get(&one, left);
    /* lane 0 for an empty rest (ctz 32): in the chunk, so in bounds */
    Op *jj = ir_bin(&one, OP_AND, ir_un(&one, OP_CTZ, rest), i32(&one, MASK_KEYS - 1));
    append_key(c, t, &one, cnt, at, jj, ir_cmp(&one, CMP_NE, rest, i32(&one, 0)));
    ir_set(&one, left, ir_bin(&one, OP_AND, rest, ir_bin(&one, OP_SUB, rest, i32(&one, 1))));
  }
  Op *jj = tile_for_bits(&one, ir_get(&one, left), "e", &loop);
  append_key(c, t, &loop, cnt, at, jj, ir_const_bool(&loop, true));
  ir_store(&one, t->cs, i32(&one, 0), ir_get(&one, cnt));
}

/* The block's first n stored keys binned (those of the round's prefix). */
static void bin_stored(SelCtx *c, const HistBlock *h, const Tile *t, Builder *b, Op *n) {
  Builder lane;
  Op *e = ir_pfor(b, AXIS_LANE, n, "e", &lane)->index;
  select_bin_key(&lane, h, ir_load(&lane, c->cand, add(&lane, select_tile_keys_at(&lane, t), e)));
}

/* Steps 1-2 for rows i0 .. i0 + TILE_RT - 1 (i0 < lim). In round 1 the group is
 * stored if every group before it was (rows stored == i0) and its keys fit. */
/* Step 1 for rows i0 .. i0 + TILE_RT - 1 (i0 < lim) into the slot; returns the keys
 * of the group's last row (the most any of its rows sees). */
static Op *score_group(SelCtx *c, const HistBlock *h, const Tile *t, Builder *b, Op *i0) {
  int D = c->spec->head_dim;
  Op *mg = row_keys(c, h, b, add(b, i0, i32(b, TILE_RT - 1)));
  Op *last = ir_bin(b, OP_SUB, t->lim, i32(b, 1));
  Op *arow[TILE_RT];
  for (int r = 0; r < TILE_RT; r++)
    arow[r] = select_tile_qk_row(c, h, b, ir_bin(b, OP_MIN, add(b, i0, i32(b, r)), last));
  tile_scores(b, t->slot, i32(b, 0), t->ld, c->q, arow, t->kt, mg, D, t->sacc,
              ir_const_f32(b, 1.0 / sqrt((double)D)));
  return mg;
}

static void emit_group(SelCtx *c, const HistBlock *h, const Tile *t, Builder *b, Op *i0) {
  Op *mg = score_group(c, h, t, b, i0);
  Builder yes, no, one;
  Op *stored = ir_load(b, t->cs, i32(b, 0)), *done = ir_load(b, t->cs, i32(b, 1));
  Op *room = ir_cmp(b, CMP_LE, add(b, stored, attn_mul(b, mg, i32(b, TILE_RT))), t->cap);
  Op *keep = ir_bin(b, OP_AND, t->store,
                    ir_bin(b, OP_AND, ir_cmp(b, CMP_EQ, done, i0), room));
  ir_if(b, keep, &yes, &no);
  for (int r = 0; r < TILE_RT; r++) {
    Builder ry, rn;
    Op *iy = add(&yes, i0, i32(&yes, r)), *in = add(&no, i0, i32(&no, r));
    ir_if(&yes, ir_cmp(&yes, CMP_LT, iy, t->lim), &ry, NULL);
    store_row(c, h, t, prefix_pred, &ry, i32(&ry, (int)(r * t->ld)), row_keys(c, h, &ry, iy),
              NULL);
    ir_if(&no, ir_cmp(&no, CMP_LT, in, t->lim), &rn, NULL);
    Builder r0, later;
    Op *at = i32(&rn, (int)(r * t->ld)), *m = row_keys(c, h, &rn, in);
    ir_if(&rn, t->round0, &r0, &later);
    bin_all(&r0, h, t->slot, at, m);
    bin_row(&later, h, t, at, m);
  }
  ir_pfor(&yes, AXIS_LANE, i32(&yes, 1), "one", &one);
  ir_store(&one, t->cs, i32(&one, 1),
           ir_bin(&one, OP_MIN, add(&one, i0, i32(&one, TILE_RT)), t->lim));
}

TileConfig select_tile_hist_rows(const Spec *s, const TileConfig *t) {
  int rows = (s->max_seq + t->rows - 1) / t->rows * t->rows;
  return (TileConfig){rows, 1, SCHED_TILE};
}

/* Step 0: K^T of every key the block's rows see. */
static void pack_keys(SelCtx *c, Builder *b, const TileConfig *tc, const HistBlock *h,
                      const Tile *t) {
  Op *kcnt = row_keys(c, h, b, add(b, h->row0, i32(b, tc->rows - 1)));
  tile_pack_t(b, t->kt, t->ld, c->kk, select_tile_qk_row(c, h, b, i32(b, 0)),
              c->p[SELECT_QKV_SN], kcnt, c->spec->head_dim);
}

/* Rounds 0, 1 and, past the rows stored, 2: rows from `first` scored and binned. */
static void score_rows(SelCtx *c, Builder *b, const TileConfig *tc, const HistBlock *h,
                       const Tile *t, Op *first) {
  Builder work, groups, inside;
  ir_if(b, ir_cmp(b, CMP_LT, add(b, h->row0, first), t->lim), &work, NULL);
  pack_keys(c, &work, tc, h, t);
  Op *g = ir_for(&work, first, i32(&work, tc->rows), TILE_RT, "g", &groups)->index;
  Op *i0 = add(&groups, h->row0, g);
  ir_if(&groups, ir_cmp(&groups, CMP_LT, i0, t->lim), &inside, NULL);
  emit_group(c, h, t, &inside, i0);
}

/* Round BRACKET: every row scored once; the keys in [lo, hi] stored as candidates
 * (row group by row group while TILE_RT * its keys fit, as in round 1), those above hi
 * counted into hist[g, SELECT_ABOVE]. A group that does not fit ends the block's work:
 * header -1, and the group goes to the radix rounds. */
static void bracket_rows(SelCtx *c, Builder *b, const TileConfig *tc, const HistBlock *h,
                         const Tile *t) {
  Op *above = ir_var(b, i32(b, 0), "above");
  Builder work, groups, inside, fits, full, one;
  ir_if(b, ir_cmp(b, CMP_GT, t->lim, i32(b, 0)), &work, NULL);
  pack_keys(c, &work, tc, h, t);
  Op *gi = ir_for(&work, i32(&work, 0), i32(&work, tc->rows), TILE_RT, "g", &groups)->index;
  Op *i0 = add(&groups, h->row0, gi);
  Op *open = ir_cmp(&groups, CMP_EQ, ir_load(&groups, t->cs, i32(&groups, 1)), i32(&groups, 0));
  ir_if(&groups, ir_bin(&groups, OP_AND, open, ir_cmp(&groups, CMP_LT, i0, t->lim)), &inside,
        NULL);
  Op *mg = score_group(c, h, t, &inside, i0);
  Op *stored = ir_load(&inside, t->cs, i32(&inside, 0));
  Op *room = ir_cmp(&inside, CMP_LE, add(&inside, stored, attn_mul(&inside, mg, i32(&inside, TILE_RT))),
                    t->cap);
  ir_if(&inside, room, &fits, &full);
  for (int r = 0; r < TILE_RT; r++) {
    Builder in;
    Op *i = add(&fits, i0, i32(&fits, r));
    ir_if(&fits, ir_cmp(&fits, CMP_LT, i, t->lim), &in, NULL);
    Op *base = i32(&in, (int)(r * t->ld)), *m = row_keys(c, h, &in, i);
    store_row(c, h, t, bracket_pred, &in, base, m, above);
  }
  Builder over;
  ir_pfor(&full, AXIS_LANE, i32(&full, 1), "one", &over);
  ir_store(&over, t->cs, i32(&over, 1), i32(&over, 1));
  ir_pfor(b, AXIS_LANE, i32(b, 1), "one", &one);
  Op *overflow = ir_cmp(&one, CMP_NE, ir_load(&one, t->cs, i32(&one, 1)), i32(&one, 0));
  ir_store(&one, c->cand, t->head, ir_select(&one, overflow, i32(&one, -1),
                                             ir_load(&one, t->cs, i32(&one, 0))));
  Op *slot = add(&one, attn_mul(&one, h->g, i32(&one, SELECT_BINS)), i32(&one, SELECT_ABOVE));
  ir_atomic_add(&one, c->hist, slot, ir_get(&one, above));
}

/* Rounds 0, 1, 2 (the radix, for groups the bracket did not settle). */
static void radix_rows(SelCtx *c, Builder *b, const TileConfig *tc, const HistBlock *h,
                       const Tile *t) {
  Builder late, after, hdr;
  Op *round = c->p[SELECT_ROUND];
  /* round 2: the stored keys, then the rows past them recomputed */
  Op *first = ir_var(b, i32(b, 0), "first");
  ir_if(b, ir_cmp(b, CMP_EQ, round, i32(b, 2)), &late, NULL);
  ir_set(&late, first, ir_load(&late, c->cand, add(&late, t->head, i32(&late, 1))));
  bin_stored(c, h, t, &late, ir_load(&late, c->cand, t->head));
  score_rows(c, b, tc, h, t, ir_get(b, first));
  /* round 1: the header for round 2, and the stored keys binned */
  ir_if(b, t->store, &after, NULL);
  Op *n = ir_load(&after, t->cs, i32(&after, 0));
  ir_pfor(&after, AXIS_LANE, i32(&after, 1), "one", &hdr);
  ir_store(&hdr, c->cand, t->head, n);
  ir_store(&hdr, c->cand, add(&hdr, t->head, i32(&hdr, 1)), ir_load(&hdr, t->cs, i32(&hdr, 1)));
  bin_stored(c, h, t, &after, n);
}

void select_hist_tile_rows(SelCtx *c, Builder *b, const TileConfig *tc, const HistBlock *h) {
  const Spec *s = c->spec;
  int D = s->head_dim;
  Op **p = c->p;
  Tile t = {.ld = tile_ld(s->max_seq), .lim = h->len};
  t.kt = ir_shared(c->k, "kt", TY_F32, (int64_t)D * t.ld);
  t.slot = ir_shared(c->k, "scores", TY_F32, TILE_RT * t.ld);
  t.sacc = ir_shared(c->k, "sacc", TY_F32, TILE_RT * TILE_JT);
  t.cs = ir_shared(c->k, "stored", TY_I32, 2);
  bool whole = s->select == SEL_HEAD_QUANTILE;
  if (whole)
    t.whole = ir_shared(c->k, "whole", TY_F32, attention_select_whole_keys(s));
  Builder warp, one, sample, later, bracket, radix, br, live, other, wb;
  ir_pfor(b, AXIS_WARP, i32(b, 1), "w", &warp);
  Op *round = p[SELECT_ROUND];
  t.round0 = ir_cmp(&warp, CMP_EQ, round, i32(&warp, 0));
  t.store = ir_cmp(&warp, CMP_EQ, round, i32(&warp, 1));
  t.cap = select_cand_cap(c, &warp);
  /* one row block per head (N <= max_seq): the region of (b, h) */
  Op *bh = add(&warp, attn_mul(&warp, h->batch, p[SELECT_H]), h->head);
  t.head = select_cand_region(c, &warp, bh);
  ir_pfor(&warp, AXIS_LANE, i32(&warp, 1), "one", &one);
  ir_store(&one, t.cs, i32(&one, 0), i32(&one, 0));
  ir_store(&one, t.cs, i32(&one, 1), i32(&one, 0));
  Op *state = ir_load(&warp, c->rank, h->g);
  ir_if(&warp, ir_cmp(&warp, CMP_EQ, round, i32(&warp, SELECT_ROUND_SAMPLE)), &sample, &later);
  select_tile_sample_rows(c, &sample, h, &t);
  ir_if(&later, ir_cmp(&later, CMP_EQ, round, i32(&later, SELECT_ROUND_BRACKET)), &bracket,
        &other);
  if (whole) {
    ir_if(&other, ir_cmp(&other, CMP_EQ, round, i32(&other, SELECT_ROUND_WHOLE)), &wb, &radix);
    select_whole_round(c, &wb, h, t.whole, select_tile_whole_scores, &(SelTileWhole){c, h, &t});
  } else {
    radix = other;
  }
  ir_if(&bracket, ir_cmp(&bracket, CMP_EQ, state, i32(&bracket, SELECT_BRACKETED)), &br, NULL);
  Op *hrow = attn_mul(&br, h->g, i32(&br, SELECT_BINS));
  t.lo = ir_load(&br, c->hist, add(&br, hrow, i32(&br, SELECT_LO)));
  t.hi = ir_load(&br, c->hist, add(&br, hrow, i32(&br, SELECT_HI)));
  bracket_rows(c, &br, tc, h, &t);
  ir_if(&radix, ir_cmp(&radix, CMP_NE, state, i32(&radix, SELECT_DONE)), &live, NULL);
  radix_rows(c, &live, tc, h, &t);
}
