/* The backward's warp schedule (SCHED_WARP, the GPU's; SCHED_WARP_HOST, the same
 * kernels with the host's forms of the dots and sums, templates.h): what its two
 * kernels share. attention_bwd_warp.c has the helpers, the shared-memory layout and
 * the kernel builder; attention_bwd_dq.c and attention_bwd_dkdv.c the kernels' steps.
 *
 * Why staged: with a warp per row and lanes over keys, each lane read its own K (or
 * Q) row from global memory — 32 rows per load instruction, uncoalesced — and every
 * warp of every block re-read them. Now a block copies a tile of KT rows into shared
 * memory once, coalesced (attn_stage_rows, leading dimension D + 1 so that lanes
 * reading one d of 32 rows hit 32 banks), and all the block's rows use that tile:
 * per block, K and V (dq) or Q and dO (dkdv) are read from global memory once.
 * KT = attention_bwd_stage_rows(): 32 (a key per lane), less where the block's
 * sums would not fit 48 KiB of shared memory beside two tiles.
 *
 * On SCHED_WARP a warp takes its rows (keys) R at a time (bwd_rows_per_warp): their
 * dots share each staged element they load, and their sums live in registers over a
 * tile (bwd_add_rows); kernels-backward.md, "Row sets and register sums".
 *
 * The block-level loops are uniform (lengths, block ids), so every barrier is reached
 * by the whole block; a warp owns the same rows (r = w, w + warps, ...) in every loop,
 * so its sums need no barrier. */
#ifndef CRISP_ATTENTION_BWD_WARP_H
#define CRISP_ATTENTION_BWD_WARP_H

#include "attention_bwd.h"
#include "attention_bwd_impl.h"
#include "attention_common.h"

/* Staged rows per step of the sums (step 3): the sum stays in a register for a group,
 * and lanes over d are the inner loop. */
enum { ATTN_BWD_SUM_GROUP = 4 };

typedef struct {
  Kernel *k;
  const Spec *spec;
  int rows, warps, kt, ld;      /* block rows (keys), warps, staged tile rows, its ld */
  int group;                    /* rows per step of the sums (ATTN_BWD_SUM_GROUP or kt) */
  bool host;                    /* SCHED_WARP_HOST: the host's forms (templates.h) */
  int R;                        /* rows (keys) a warp takes at once (bwd_rows_per_warp) */
  Buf *buf[ATTN_BWD_NPARAMS];   /* buffer parameters by ATTN_BWD_* index */
  Op *p[ATTN_BWD_NPARAMS];      /* scalar parameter values */
  Buf *ta, *tb;   /* staged tiles, kt x ld: K, V (dq) / Q, dO (dkdv) */
  Buf *acc;       /* per block row: dQ_i (dq) / dK_j, then dV_j (dkdv) */
  Buf *slot;      /* per warp: the tile's S, then dS (dkdv: kt more for P z/(1-p)) */
  Buf *stat;      /* dq: Delta per block row; dkdv: the tile's lse, tau, Delta rows */
  Buf *hash;      /* dkdv: the tile rows' dropout row hashes */
  Buf *own[2];    /* where they fit (else NULL): the block's own rows, rows x D each,
                     staged once: q_i, dO_i (dq) / k_j, v_j (dkdv) */
  Op *batch, *head, *len, *first;   /* b, h, L of this block; its first row (key) */
  Op *scale, *thresh, *inv_keep;
} Ctx;

static inline Op *add(Builder *b, Op *x, Op *y) { return attn_add(b, x, y); }
static inline Op *sub(Builder *b, Op *x, Op *y) { return ir_bin(b, OP_SUB, x, y); }
static inline Op *mul(Builder *b, Op *x, Op *y) { return attn_mul(b, x, y); }
static inline Op *min_(Builder *b, Op *x, Op *y) { return ir_bin(b, OP_MIN, x, y); }
static inline Op *lt(Builder *b, Op *x, Op *y) { return ir_cmp(b, CMP_LT, x, y); }
static inline Op *i32(Builder *b, int64_t v) { return attn_i32(b, v); }
static inline Op *f32(Builder *b, double v) { return ir_const_f32(b, v); }

/* Offset of row `row` of (batch, head) with strides p[sb], p[sb + 1], p[sb + 2]. */
Op *bwd_row_offset(Ctx *c, Builder *b, int sb, Op *row);
/* Index of (batch, head, row) in a [B, H, N] per-row array. */
Op *bwd_row_stat(Ctx *c, Builder *b, Op *row);
/* Row i's dropout hash (dropout.h). */
Op *bwd_row_hash(Ctx *c, Builder *b, Op *i);
/* Thread code: sum_d g[goff + d] * t[toff + d], a serial f32 dot. */
Op *bwd_dot_serial(Builder *b, Buf *g, Op *goff, Buf *t, Op *toff, int D);
/* Lane code: out[t] = sum_d g[goff[t] + d] * v[voff + d], t < R, as vars, summed
 * where `when` holds (else 0). */
void bwd_dots(Builder *lane, Op *when, int R, Buf *g, Op *const goff[], Buf *v, Op *voff,
              int D, Op *out[]);
/* Lanes over d: dst[off + d] = 0, or acc[base + d] (times factor unless NULL). */
void bwd_write_vec(Ctx *c, Builder *b, Buf *dst, Op *off, Buf *acc, Op *base, Op *factor);
/* Lanes over d: acc[base + d] = 0. */
void bwd_zero_vec(Ctx *c, Builder *b, Op *base);
/* The block's rows (keys) as warp code, a warp owning the same rows in every loop:
 * *in runs for i = first + r < lim, warp *w, block row *r. */
void bwd_block_rows(Ctx *c, Builder *b, Op *lim, Builder *in, Op **w, Op **r, Op **i);
/* Block-level: warp *w's rows (keys) in sets of R; *set runs per set, r0 returned. */
Op *bwd_row_sets(Ctx *c, Builder *b, Op **w, Builder *set);
/* A set's rows (keys), t < R: valid[t] (below L and the block's rows), at[t] = first +
 * r0 + warps t, and the values to use, r[t] (block row) and i[t] (row): those, or r0's
 * and its row's where not valid. */
void bwd_set_rows(Ctx *c, Builder *b, Op *r0, Op *valid[], Op *at[], Op *r[], Op *i[]);
/* Block-level loop over staged tiles of kt rows in [lo, hi); returns t0, *n its rows. */
Op *bwd_tile_loop(Ctx *c, Builder *b, Op *lo, Op *hi, Builder *body, Op **n);
/* n rounded up to a multiple of g. */
Op *bwd_round_up(Builder *b, Op *n, int g);
/* Block-level: a staged tile's rows n .. bwd_round_up(n, group) - 1 set to 0. */
void bwd_zero_tail(Ctx *c, Builder *b, Buf *tile, Op *n);
/* One sum of step 3: acc[base + d] += sum_e slot[slot + e] * tile[e ld + d]. */
typedef struct BwdSum {
  Op *slot;    /* offset of the weights in c->slot */
  Buf *tile;   /* the staged rows */
  Op *base;    /* offset of the sum in c->acc */
  Op *valid;   /* NULL, or whether the sum exists (else it is neither read nor written) */
} BwdSum;
enum { BWD_MAX_SUMS = 8 };

/* Warp code, step 3 of both kernels: the n <= BWD_MAX_SUMS sums over tile rows e in
 * [lo, hi), in order of e. */
void bwd_add_rows(Ctx *c, Builder *b, Op *lo, Op *hi, int n, const BwdSum sum[]);
/* Block-level, where they fit: the block's own rows of buffers ia, ib into own[0, 1]. */
void bwd_stage_own(Ctx *c, Builder *b, int sa, int ia, int sb, int ib);
/* Block row r's row of own[h] (staged), else row i of buffer buf; *off its offset. */
Buf *bwd_own_row(Ctx *c, Builder *b, int h, int buf, int sb, Op *i, Op *r, Op **off);

/* SCHED_WARP: rows (dq) or keys (dkdv) a warp takes at once, so that their dots and
 * sums share each staged element they load; 1 for SCHED_WARP_HOST. */
int bwd_rows_per_warp(const Spec *s, const TileConfig *t, bool dq);

/* The kernels' bodies (block-level code). */
void bwd_dq_body(Ctx *c, Builder *b);
void bwd_dkdv_body(Ctx *c, Builder *b);

#endif
