/* Shared by the two schedules of the forward template: attention_fwd_staged.c (rows
 * of a block against staged K/V tiles, the GPU's) and attention_fwd_tile.c
 * (register-blocked tiles, the CPU's); the per-row steps are in attention_fwd.c.
 * The per-row steps after the scores (selection, softmax, statistics) are one code. */
#ifndef CRISP_ATTENTION_FWD_IMPL_H
#define CRISP_ATTENTION_FWD_IMPL_H

#include "attention_common.h"

typedef struct {
  const Spec *spec;
  Buf *q, *kk, *v, *o, *lengths, *kept, *lse, *tau, *ent, *dent, *tau_group, *scores, *acc;
  Op *p[ATTN_NPARAMS];     /* scalar parameter values */
  Op *batch, *head, *len;  /* b, h, L for this block */
  Op *tg;                  /* the group threshold (quantile modes) */
  Op *drop_thr;            /* dropout threshold, i32 */
} Ctx;

/* The kernel's parameters, in the order of templates.h. */
void fwd_declare_params(Ctx *c, Kernel *k);
/* The per-block values of c (head, batch, len, tg, drop_thr) from the block ids. */
void fwd_block_values(Ctx *c, Builder *b);
/* tau and the kept count of a row, per select mode. */
void fwd_emit_select(Ctx *c, Builder *b, const AttnRow *r, Op **tau, Op **cnt);
/* e_j = exp(S_j - mx), stored signed (+ kept, - not); returns the kept sum. */
Op *fwd_emit_exp_store(Builder *b, const AttnRow *r, Op *mx, Op *tau);
Op *fwd_row_at(Ctx *c, Builder *b, Op *i);
void fwd_store_entropies(Ctx *c, Builder *b, const AttnRow *r, Op *z_kept, Op *i);
void fwd_store_row(Ctx *c, Builder *b, Op *i, Op *kept, Op *lse, Op *tau);
/* Steps 2-3 on a row whose scores are in r: selection, softmax, kept/lse/tau and the
 * entropies written; returns sum (1 - p) of the kept e_j (o = acc / that). */
Op *fwd_softmax_row(Ctx *c, Builder *b, const AttnRow *r, Op *i);
/* The same with tau, the kept count and the row max mx already at hand (the tile
 * schedule selects for a group of rows at once, from their maxima). */
Op *fwd_softmax_row_at(Ctx *c, Builder *b, const AttnRow *r, Op *i, Op *tau, Op *cnt, Op *mx);
void fwd_emit_padded_row(Ctx *c, Builder *b, Op *i);

/* The tile schedule's kernel (attention_fwd_tile.c). */
Kernel *attention_fwd_tile_build(const Spec *s, const TileConfig *t);
/* The warp schedule's kernel (attention_fwd_staged.c); t must pass tile_check. */
Kernel *attention_fwd_staged_build(const Spec *s, const TileConfig *t);

#endif
