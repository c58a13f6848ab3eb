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
} HistBlock;

/* Grid (ceil(N / rows), H, B), the block's values, its shared histogram zeroed and
 * a barrier: the block's rows may be binned after this. */
void select_hist_begin(SelCtx *c, Builder *b, const TileConfig *t, HistBlock *h);
/* Whether an order key's decided bits equal the round's prefix (bool). */
Op *select_key_matches(Builder *b, const HistBlock *h, Op *key);
/* In lane code: adds score s (f32) to its bin if its key matches the round's prefix. */
void select_bin_score(Builder *lane, const HistBlock *h, Op *s);
/* The same for an order key. */
void select_bin_key(Builder *lane, const HistBlock *h, Op *key);
/* Barrier, then the block's nonzero bins added to hist[g, :] (global atomics). */
void select_hist_end(SelCtx *c, Builder *b, const HistBlock *h);

/* The tile schedule's hist block (attention_select_tile.c): all max_seq rows of one
 * (b, h) (a multiple of t->rows), so K^T is packed once per head and round. */
TileConfig select_tile_hist_rows(const Spec *s, const TileConfig *t);
/* The tile schedule's rows (attention_select_tile.c): every valid score of the
 * block's rows binned, scored by tile_scores with the tile forward's bits. */
void select_hist_tile_rows(SelCtx *c, Builder *b, const TileConfig *t, const HistBlock *h);

#endif
