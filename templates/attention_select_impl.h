/* Shared by the two schedules of the select template's hist kernel:
 * attention_select.c (a warp per query row, lanes over keys: the GPU's) and
 * attention_select_tile.c (register-blocked score tiles: the CPU's). Everything
 * but the scoring of the block's rows (histogram setup, binning of one score,
 * flush to the group's global histogram) is one code. */
#ifndef CRISP_ATTENTION_SELECT_IMPL_H
#define CRISP_ATTENTION_SELECT_IMPL_H

#include "attention_common.h"
#include "attention_select.h"

/* Round 0's digit: key bits 31..21, every key binned. */
enum { SELECT_SHIFT0 = 21 };

/* The state of group g in rank[g] before and between the radix rounds (init writes 0:
 * unsettled; the rounds' own ranks are >= 0): SELECT_DONE, tau_group[g] is final and
 * the later rounds skip the group (both schedules: round 0's pick settles a group that
 * keeps every score, and so does round ALL_KEPT; the tile schedule's hist skips it);
 * the tile schedule's SELECT_BRACKETED, pick(SAMPLE) left the
 * bracket [lo, hi] of tau's key in hist[g, SELECT_LO], hist[g, SELECT_HI] for the
 * BRACKET round, whose hist blocks add their count of keys above hi to
 * hist[g, SELECT_ABOVE] (pick(BRACKET) zeroes the three). */
enum { SELECT_DONE = -1, SELECT_BRACKETED = -2 };
enum { SELECT_LO, SELECT_HI, SELECT_ABOVE };
/* A region's header in cand after the SAMPLE and BRACKET rounds: [0] the keys stored
 * (-1: they did not fit), [1] (SAMPLE) whether they are every valid score of the head.
 * Rounds 1 and 2 reuse it: [0] the keys stored, [1] the rows stored. */
/* SAMPLE's target size: row groups are sampled with a stride that keeps the sample at
 * most this many keys (and within cand_cap); at n = 512 every 16th group, 32 rows. */
enum { SELECT_SAMPLE_KEYS = 16384 };

typedef struct {
  const Spec *spec;
  Kernel *k;
  Buf *q, *kk, *lengths, *hist, *prefix, *rank, *tau_group;
  Buf *cand;               /* the tile schedule's candidate keys (NULL: warp schedule) */
  Op *p[SELECT_NPARAMS];   /* scalar parameter values */
} SelCtx;

/* One hist block's values: its first row, (batch, head), valid length and group, and the
 * round's key filter: keys with (key & himask) == match count, in bin
 * (key >> shift) & dmask of the shared histogram `bins`. */
typedef struct {
  Buf *bins;
  Op *row0, *batch, *head, *len, *g;
  Op *match, *himask, *shift, *dmask;
  Op *binned;   /* whether the block bins any score this round (bool) */
} HistBlock;

/* Grid (ceil(N / rows), H, B), the block's values, its shared histogram zeroed (where
 * h->binned) and a barrier: the block's rows may be binned after this. */
void select_hist_begin(SelCtx *c, Builder *b, const TileConfig *t, HistBlock *h);
/* Whether an order key's decided bits equal the round's prefix (bool). */
Op *select_key_matches(Builder *b, const HistBlock *h, Op *key);
/* In lane code: adds score s (f32) to its bin if its key matches the round's prefix. */
void select_bin_score(Builder *lane, const HistBlock *h, Op *s);
/* The same for an order key. */
void select_bin_key(Builder *lane, const HistBlock *h, Op *key);
/* Barrier, then, where h->binned, the block's nonzero bins added to hist[g, :]
 * (global atomics). */
void select_hist_end(SelCtx *c, Builder *b, const HistBlock *h);

/* One thread: tau_group[g] = tau, rank[g] = SELECT_DONE (the group leaves the plan). */
void select_settle(SelCtx *c, Builder *one, Op *g, double tau);

/* The radix pick's shared steps (attention_select.c): after hs holds a histogram of
 * SELECT_BINS bins, select_chunk_sums writes the sums of its chunks to cs (a pfor and a
 * barrier, block-level code; banked: GPU shared-memory bank order, false on the CPU's
 * tile schedule); select_find_bin (one thread) returns the bin where the
 * count from the top reaches rank, and in *above the count of the bins above it. */
enum { SELECT_CHUNK = 16, SELECT_NCHUNKS = SELECT_BINS / SELECT_CHUNK };
void select_chunk_sums(Builder *b, Buf *hs, Buf *cs, bool banked);
Op *select_find_bin(Builder *one, Buf *hs, Buf *cs, Op *rank, Op **above);

/* The tile schedule's picks of the SAMPLE and BRACKET rounds (attention_select_bracket.c),
 * block-level code of the pick kernel of group g, with its shared hs and cs. */
void select_pick_bracket(SelCtx *c, Builder *b, Buf *hs, Buf *cs, Op *g);
/* The tile schedule's pick has SELECT_SPARE_BINS more words in hs (a power of two). */
enum { SELECT_SPARE_BINS = 16 };
/* Valid scores of group g (i32, one thread): L^2 or L (L + 1) / 2 per head. */
Op *select_group_count(SelCtx *c, Builder *one, Op *g);
/* The per-(b, h) cand region's first element (i32): bh * (cap + SELECT_CAND_HEAD),
 * cap = cand_cap clamped to [0, 2^30]. */
Op *select_cand_cap(SelCtx *c, Builder *b);
Op *select_cand_region(SelCtx *c, Builder *b, Op *bh);

/* The tile schedule's hist block (attention_select_tile.c): all max_seq rows of one
 * (b, h) (a multiple of t->rows), so K^T is packed once per head and round. */
TileConfig select_tile_hist_rows(const Spec *s, const TileConfig *t);
/* The tile schedule's rows (attention_select_tile.c): every valid score of the
 * block's rows binned, scored by tile_scores with the tile forward's bits. */
void select_hist_tile_rows(SelCtx *c, Builder *b, const TileConfig *t, const HistBlock *h);

/* The warp schedule's hist block (attention_select_warp.c): K tiles of `kt` keys staged
 * in shared memory for all of the block's rows, and the block's Q rows too where
 * stage_q; bytes: the kernel's shared memory, bins included. kt = 0: nothing fits in
 * 48 KiB (attention_select_check refuses the tile). */
typedef struct {
  int kt;
  bool stage_q;
  int whole;       /* keys of the whole-head buffer (attention_select_warp_whole_keys) */
  int64_t bytes;
} SelectWarpLayout;
SelectWarpLayout select_warp_layout(const Spec *s, const TileConfig *t);
/* The warp schedule's rows: a warp per row, lanes over the staged tile's keys; and
 * round WHOLE where the spec has its buffer. */
void select_hist_warp_rows(SelCtx *c, Builder *b, const TileConfig *t, const HistBlock *h);

/* Round WHOLE (attention_select_whole.c), warp-level code of a hist block of head_quantile:
 * where the head keeps some but not all of its M scores and M fits `scores` (its
 * size: attention_select_whole_keys, or the warp schedule's
 * attention_select_warp_whole_keys), score(ctx, b) writes all of them to scores[0, M)
 * (in any order; the warp schedule's are there already, written by the whole block
 * before a barrier), and the keep_g-th largest is tau; tau_group[g] and rank[g] = SELECT_DONE
 * are written in every case (+-inf without scoring where the head keeps none or all)
 * but M past the buffer, where nothing is. */
void select_whole_round(SelCtx *c, Builder *b, const HistBlock *h, Buf *scores,
                        void (*score)(void *ctx, Builder *b), void *ctx);

#endif
