/* The crisp attention backward kernels (DESIGN §4), FlashAttention-style: nothing
 * n x n is kept between forward and backward. From the forward's per-row lse and
 * tau they recompute S = Q K^T / sqrt(d) and P_ij = kept_ij * exp(S_ij - lse_i),
 * kept_ij = (j valid for row i) && S_ij >= tau_i (the threshold is a constant), and
 *
 *   Delta_i = dO_i . O_i                 dP_ij = (dO_i . V_j) * z_ij / (1 - p)
 *   dS_ij   = P_ij (dP_ij - Delta_i)     dV_j  = sum_i P_ij z_ij / (1 - p) dO_i
 *   dQ_i    = sum_j dS_ij K_j / sqrt(d)  dK_j  = sum_i dS_ij Q_i / sqrt(d)
 *
 * with z_ij the dropout keep bit of dropout.h (1 when p = 0). Only the score
 * recomputation touches every valid (i, j); dO.V, P.dO, dS.K and dS.Q run over kept
 * pairs only, so the work falls with the sparsity. Every selection mode (none,
 * row_topk, head_quantile, layer_quantile) shares these kernels: the mode only
 * decides tau, which the forward saved per row.
 *
 * The warp schedule (the GPU's) is two kernels, launched in this order on the same
 * arguments:
 *   NAME_attn_bwd_dq    a block of query rows, tiles of keys staged in shared memory,
 *                       a warp per row: writes delta [B, H, N] and dq;
 *   NAME_attn_bwd_dkdv  a block of keys, tiles of query rows staged, a warp per key:
 *                       reads delta, writes dk and dv.
 * The tile schedule (the CPU's) is one kernel, a block per (b, h):
 *   NAME_attn_bwd       writes delta, dq, dk and dv (attention_bwd_tile.c).
 * A caller launches NAME_attn_bwd where the module has it, else the two in order. All take the same parameter list
 * (ATTN_BWD_*), so one kernelParams array serves all. Buffers a kernel does not touch
 * are declared `in` there and never read (dq kernel: dk, dv; dkdv kernel: o, dq).
 *
 *   q, k, v: f32 in, qkv strides; o, dout: f32 in, o strides (the forward's output
 *     and the gradient of the loss with respect to it);
 *   lse, tau: f32 in [B, H, N], as the forward wrote them (padded rows: lse 0,
 *     tau +inf); lengths: i32 in [B];
 *   delta: f32 [B, H, N] (dq kernel: out; dkdv kernel: in); padded rows get 0;
 *   dq (dq kernel), dk, dv (dkdv kernel): f32 out, dqkv strides; padded rows/keys
 *     (>= L) are written as zeros, so [B, N, 3, H, D] fused gradients need no memset;
 *   B, H, N, qkv_sb, qkv_sn, qkv_sh, o_sb, o_sn, o_sh, dqkv_sb, dqkv_sn, dqkv_sh: i32;
 *   dropout: f32 (the forward's p); seed, step, layer: i32 (the forward's counters).
 * Grid of the two: (ceil(N / rows), H, B), 32 * warps threads, from the TileConfig;
 * of the one: (1, H, B) for N <= max_seq.
 *
 * The scores are recomputed with exactly the forward's arithmetic (an f32 dot over
 * d in order, then a multiply by f32(1/sqrt(d))), so on one target the kept sets of
 * forward and backward agree bit for bit. */
#ifndef CRISP_ATTENTION_BWD_H
#define CRISP_ATTENTION_BWD_H

#include "templates.h"

enum {
  ATTN_BWD_Q, ATTN_BWD_K, ATTN_BWD_V, ATTN_BWD_O, ATTN_BWD_DOUT, ATTN_BWD_LSE, ATTN_BWD_TAU,
  ATTN_BWD_LENGTHS, ATTN_BWD_DELTA, ATTN_BWD_DQ, ATTN_BWD_DK, ATTN_BWD_DV,
  ATTN_BWD_B, ATTN_BWD_H, ATTN_BWD_N, ATTN_BWD_QKV_SB, ATTN_BWD_QKV_SN, ATTN_BWD_QKV_SH,
  ATTN_BWD_O_SB, ATTN_BWD_O_SN, ATTN_BWD_O_SH, ATTN_BWD_DQKV_SB, ATTN_BWD_DQKV_SN,
  ATTN_BWD_DQKV_SH, ATTN_BWD_DROPOUT, ATTN_BWD_SEED, ATTN_BWD_STEP, ATTN_BWD_LAYER,
  ATTN_BWD_NPARAMS
};

/* The warp schedule stages tiles of rows in shared memory (K and V tiles of keys in
 * the dq kernel, Q and dO tiles of query rows in the dkdv kernel): ATTN_BWD_STAGE_ROWS
 * rows (a key per lane), halved until the kernel's shared arrays fit 48 KiB with the
 * tile's rows and warps; 1 if nothing fits (the tile is then refused). */
enum { ATTN_BWD_STAGE_ROWS = 32 };
int attention_bwd_stage_rows(const Spec *s, const TileConfig *t, bool dq);
/* Whether the kernel also stages the block's own rows once (q_i and dO_i in dq, k_j
 * and v_j in dkdv: 2 rows D floats more): where they fit beside the tiles at the
 * staged rows above, which they never shrink. */
bool attention_bwd_stages_own(const Spec *s, const TileConfig *t, bool dq);

/* Shared memory bytes of the larger of the two kernels with this tile, at their
 * staged tile rows KT (attention_bwd_stage_rows), ld = head_dim + 1:
 *   dq:   4 * (2 KT ld + rows D + warps KT + rows [+ 2 rows D, own rows])
 *   dkdv: 4 * (2 KT ld + 2 rows D + 2 warps KT + 4 KT [+ 2 rows D])
 * Independent of max_seq. */
int64_t attention_bwd_shared_bytes(const Spec *s, const TileConfig *t);

/* NAME_attn_bwd_dq and NAME_attn_bwd_dkdv (unverified, unmapped). */
Kernel *attention_bwd_dq_build(const Spec *s, const TileConfig *t);
Kernel *attention_bwd_dkdv_build(const Spec *s, const TileConfig *t);

/* Appends the backward kernels to m in launch order: NAME_attn_bwd for the tile
 * schedule, else NAME_attn_bwd_dq then NAME_attn_bwd_dkdv. Returns 0, or -1 with err
 * when the tile is illegal (rows a multiple of warps, 1..16 warps, shared memory within
 * 48 KiB even with staged tiles of one row: rows * head_dim sums are the floor;
 * tile_check for the tile schedule) or m has no room for two more kernels. */
int attention_bwd_build(const Spec *s, const TileConfig *t, Module *m, char *err, size_t cap);

#endif
