/* attention_bwd_tile_impl.h: what the tile backward's two files share
 * (attention_bwd_tile.c: the kernel, the score tiles and the per-row gradients;
 * attention_bwd_products.c: a block's dK, dV and dQ products and its dq): the
 * kernel's state while it is built, and the small index helpers both use. */
#ifndef CRISP_ATTENTION_BWD_TILE_IMPL_H
#define CRISP_ATTENTION_BWD_TILE_IMPL_H

#include "attention_bwd_impl.h"
#include "attention_common.h"
#include "attention_tile.h"

#define i32 attn_i32
#define add attn_add
#define mul attn_mul

/* Rows per score tile (pair_scores): two groups; divides TILE_KR. */
enum { SCORE_ROWS = 2 * TILE_RT };

typedef struct {
  const Spec *spec;
  Buf *buf[ATTN_BWD_NPARAMS];
  Op *p[ATTN_BWD_NPARAMS];
  Buf *ta, *tb;            /* packed transposes K^T, V^T */
  Buf *s1, *s2;            /* TILE_KR slots of ld: S then dS; dP' then P z/(1-p) */
  Buf *sacc;               /* score micro-tile */
  Buf *dk, *dv;            /* the head's dK, dV sums, max_seq x D, contiguous rows */
  Buf *rbits;              /* per key of a block: its rows with nonzero weights (row_bits) */
  Buf *qacc;               /* the block's dQ sums, TILE_KR x D */
  Buf *xb;                 /* the block's Q and dO rows, contiguous (pack_rows) */
  Buf *kc;                 /* the head's K rows, contiguous (dense_block) */
  Op *copied;              /* i32 var: kc holds the head's K rows (dense_block copies once) */
  Buf *deltas;             /* the block's Delta_i (block_deltas) */
  int64_t ld;              /* keys per row mask array: max_seq rounded up to TILE_JT */
  int64_t lds;             /* slot and packed-row stride (tile_ld) */
  Op *batch, *head, *len, *lim, *scale, *thresh, *inv_keep;
} BwdTile;

static inline Op *f32(Builder *b, double v) { return ir_const_f32(b, v); }
static inline Op *sub(Builder *b, Op *x, Op *y) { return ir_bin(b, OP_SUB, x, y); }

/* Offset of row `row` of (batch, head) with strides p[sb], p[sb + 1], p[sb + 2]. */
static inline Op *row_off(BwdTile *c, Builder *b, int sb, Op *row) {
  return attn_offset(b, c->batch, row, c->head, c->p[sb], c->p[sb + 1], c->p[sb + 2]);
}

/* Index of (batch, head, row) in a [B, H, N] per-row array. */
static inline Op *row_stat(BwdTile *c, Builder *b, Op *row) {
  return add(b, mul(b, add(b, mul(b, c->batch, c->p[ATTN_BWD_H]), c->head), c->p[ATTN_BWD_N]),
             row);
}

/* Slot row g + r, key e (g: an i32 row index). */
static inline Op *slot(BwdTile *c, Builder *b, Op *g, int r, Op *e) {
  return add(b, mul(b, add(b, g, i32(b, r)), i32(b, (int)c->lds)), e);
}

/* lanes over d: dst[off + d] = acc[aoff + d] * factor */
static inline void write_row(BwdTile *c, Builder *b, Buf *dst, Op *off, Buf *acc, Op *aoff, Op *factor) {
  Builder lane;
  Op *d = ir_pfor(b, AXIS_LANE, i32(b, c->spec->head_dim), "d", &lane)->index;
  ir_store(&lane, dst, add(&lane, off, d),
           mul(&lane, ir_load(&lane, acc, add(&lane, aoff, d)), factor));
}

/* Row i's tau, or NULL where the spec never selects (every valid pair kept). */
static inline Op *row_tau(BwdTile *c, Builder *b, Op *i) {
  if (c->spec->select == SEL_NONE)
    return NULL;
  return ir_load(b, c->buf[ATTN_BWD_TAU], row_stat(c, b, i));
}

/* The block's products, rows b0 .. b0 + TILE_KR - 1 over its keys j < mb, after its
 * slots hold dS and P z/(1-p): dK and dV summed into the head's, dQ into qacc (zeroed
 * here), and the block's dq written (attention_bwd_products.c). */
void bwd_tile_products(BwdTile *c, Builder *b, Op *b0, Op *mb);

#endif
