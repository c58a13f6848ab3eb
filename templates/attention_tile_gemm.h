/* A register-tiled GEMM micro-kernel for the CPU tile schedule, beside those of
 * attention_tile.h: the tile backward's dense blocks (every weight possibly nonzero,
 * s = 0) compute dK, dV and dQ with it instead of walking per-key row masks. */
#ifndef CRISP_ATTENTION_TILE_GEMM_H
#define CRISP_ATTENTION_TILE_GEMM_H

#include "templates.h"

/* acc[aoff + r * D + d] += sum_{t < cnt} w[woff + r * wr + t * wt] * x[xoff + t * xs + d]
 * for r < R (at most 4) and d < D: an R x D tile (16 zmm at R = 4, D = 64) that LLVM
 * keeps in registers over the t loop, each sum an fma chain over t = 0, 1, ... in order
 * (the order a loop of tile_axpy_at calls over t gives, so the same bits). Per t: R
 * weights broadcast against one row of x. */
void tile_gemm_acc(Builder *b, Buf *acc, Op *aoff, int R, Buf *w, Op *woff, int64_t wr,
                   int64_t wt, Buf *x, Op *xoff, Op *xs, Op *cnt, int D);

#endif
