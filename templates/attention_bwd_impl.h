/* Shared by the two schedules of the backward template: attention_bwd.c (a warp per
 * row or key, the GPU's) and attention_bwd_tile.c (register-blocked tiles, the CPU's). */
#ifndef CRISP_ATTENTION_BWD_IMPL_H
#define CRISP_ATTENTION_BWD_IMPL_H

#include "attention_bwd.h"

/* The parameters of both kernels (ATTN_BWD_* order): buffers into buf, scalar
 * values into p; dq selects the dq kernel's roles. */
void bwd_declare_params(Kernel *k, bool dq, Buf **buf, Op **p);

/* The tile schedule's dq (dq = true) or dkdv kernel. */
Kernel *attention_bwd_tile_build(const Spec *s, const TileConfig *t, bool dq);

#endif
