/* Shared by the two schedules of the backward template: the warp schedule
 * (attention_bwd_warp.h: a warp per row or key, the GPU's) and attention_bwd_tile.c
 * (register-blocked tiles, the CPU's); attention_bwd.c declares the parameters. */
#ifndef CRISP_ATTENTION_BWD_IMPL_H
#define CRISP_ATTENTION_BWD_IMPL_H

#include "attention_bwd.h"

/* Which kernel the parameters are for: their roles differ (what it writes). */
typedef enum { ATTN_BWD_DQ_PART, ATTN_BWD_DKDV_PART, ATTN_BWD_FUSED } BwdPart;

/* The parameters of every backward kernel (ATTN_BWD_* order): buffers into buf,
 * scalar values into p. */
void bwd_declare_params(Kernel *k, BwdPart part, Buf **buf, Op **p);

/* The tile schedule's one kernel, NAME_attn_bwd. */
Kernel *attention_bwd_tile_build(const Spec *s, const TileConfig *t);

#endif
