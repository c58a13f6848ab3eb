/* What the select hist kernel's tile schedule shares between its files:
 * attention_select_tile.c (the block: packing, score tiles, the rounds' masks, bins and
 * candidate stores) and attention_select_sample.c (the sampled scoring of rounds
 * SAMPLE and WHOLE). Not part of the templates' API. */
#ifndef CRISP_ATTENTION_SELECT_TILE_H
#define CRISP_ATTENTION_SELECT_TILE_H

#include "attention_select_impl.h"

/* One hist block's tiles and the values its rounds share. */
typedef struct {
  Buf *kt, *slot, *sacc;
  Buf *cs;      /* shared [2]: keys stored, and rows stored so far (round 1) or
                   overflow (round BRACKET) */
  int64_t ld;   /* slot and packed-row stride: max_seq rounded up to TILE_JT, plus a
                   cache line: at 2 KiB (max_seq 512) the D rows a tile reads for a short
                   head fell into 8 of the 64 L1 sets (select at n = 64 0.72x with it) */
  Op *lim;      /* rows < lim are valid: min(N, L) = L (select_hist_begin clamps L) */
  Op *round0;   /* round 0: every score binned (bool) */
  Op *store;    /* round 1: groups may be stored as candidates (bool) */
  Op *cap;      /* cand_cap, clamped to [0, 2^30] */
  Op *head;     /* the block's header in cand; its keys follow */
  Op *lo, *hi;  /* round BRACKET: the group's bracket of keys (unsigned, inclusive) */
  Buf *whole;   /* round WHOLE (head_quantile): every score of the head, f32 */
} Tile;

/* Offset of query/key row i of the block's head in the fused QKV layout. */
static inline Op *select_tile_qk_row(SelCtx *c, const HistBlock *h, Builder *b, Op *i) {
  Op **p = c->p;
  return attn_offset(b, h->batch, i, h->head, p[SELECT_QKV_SB], p[SELECT_QKV_SN],
                     p[SELECT_QKV_SH]);
}

/* Where the block's stored candidate keys start in cand (after its header). */
static inline Op *select_tile_keys_at(Builder *b, const Tile *t) {
  return attn_add(b, t->head, attn_i32(b, SELECT_CAND_HEAD));
}

/* Round SAMPLE: every stride-th row group's keys stored, with the region's header. */
void select_tile_sample_rows(SelCtx *c, Builder *b, const HistBlock *h, const Tile *t);

/* Round WHOLE's scoring, as select_whole_round's callback: ctx is a SelTileWhole. */
typedef struct {
  SelCtx *c;
  const HistBlock *h;
  const Tile *t;
} SelTileWhole;
void select_tile_whole_scores(void *ctx, Builder *b);

#endif
