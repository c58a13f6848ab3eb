/* Kernel templates: C functions that build crisp IR for one kernel family from a
 * spec and a tile configuration. A template knows no LLVM and no target: it builds
 * IR through ir/ir.h only, with explicit parallel axes that the map pass assigns.
 *
 * Attention tensors (DESIGN §4) are addressed with strides in elements, so the
 * kernels read a fused QKV projection [B, N, 3, H, D] and write [B, N, H, D]
 * without transposes: element (b, i, h, d) of q/k/v lives at
 *   b*qkv_sb + i*qkv_sn + h*qkv_sh + d     (the three share strides, not bases)
 * and of o at b*o_sb + i*o_sn + h*o_sh + d. Offsets must fit in 31 bits.
 * Per-row outputs (kept) are [B, H, N] contiguous. */
#ifndef CRISP_TEMPLATES_H
#define CRISP_TEMPLATES_H

#include "../compiler/spec.h"
#include "../ir/ir.h"

/* How the attention kernels split their work:
 *   SCHED_WARP       a warp per query row, one dot product per score, lanes over keys
 *                    or over d (the GPU schedule); sums over keys (the forward's P.V,
 *                    the backward's dQ, dK, dV) in registers: each lane owns slices
 *                    of d and keeps their sums over a staged tile's keys, one shared
 *                    load per FMA;
 *   SCHED_WARP_HOST  the same for the host (where tile = auto leaves the tile
 *                    schedule, or a spec names a tile): the same products in the same
 *                    order per d, but the sums as a serial loop over keys with lanes
 *                    over d inside, read and written per key (or group of keys),
 *                    which the host vectorises; it runs the register form's lane
 *                    loops scalar, the forward ~3x slower;
 *   SCHED_TILE       the CPU schedule: one warp per block, K (and V, dO, Q) packed
 *                    transposed per block, scores and products as register-blocked
 *                    TILE_RT x TILE_JT micro-tiles (attention_tile.h). Host only in
 *                    practice (its block-local arrays exceed GPU shared memory). */
typedef enum { SCHED_WARP, SCHED_TILE, SCHED_WARP_HOST } TileSched;

/* The schedule knobs of the attention kernels (the autotuner's search space). */
typedef struct TileConfig {
  int rows;    /* query rows per block (grid.x = ceil(N / rows)) */
  int warps;   /* warps per block; each warp owns one row at a time (SCHED_TILE: 1) */
  TileSched sched;
} TileConfig;

typedef enum { TUNE_GPU, TUNE_CPU } TileTarget;

/* Static shared memory per block on sm_80/sm_90: every GPU-schedule kernel's shared
 * arrays must fit it (the staged layouts size themselves against it). */
enum { TILE_SHARED_LIMIT = 48 * 1024 };

/* Bytes of block-local arrays a tile-schedule block keeps in its stack frame; the
 * schedule is refused past TILE_FRAME_LIMIT (thread stacks are 8 MiB by default;
 * max_seq = 512, D = 64 needs ~0.8 MiB), and tile = auto on the CPU falls back to
 * the warp schedule there. */
enum { TILE_FRAME_LIMIT = 1 << 20 };
int64_t tile_frame_bytes(const Spec *s);
/* Of those, the tile backward's contiguous copy of a head's K rows: 0 where it would
 * not fit under TILE_FRAME_LIMIT (the kernel then reads K in place). */
int64_t tile_frame_kc_bytes(const Spec *s);

/* The spec's explicit tile, or the default for the target when tile = auto. */
TileConfig tile_resolve(const Spec *s, TileTarget t);
/* 0 if the tile is legal for the spec (rows a multiple of warps, shared memory fits). */
int tile_check(const Spec *s, const TileConfig *t, char *err, size_t cap);
/* Shared memory bytes the forward kernel needs with this tile. */
int64_t attention_fwd_shared_bytes(const Spec *s, const TileConfig *t);
/* The warp-schedule forward's staged layout (attention_fwd_staged.c): a block scores
 * `group` of its rows at once (their score slots, Q rows and accumulators in shared
 * memory) against tiles of `keys` K (then V) rows, `bytes` of shared memory in all.
 * group = 0 when not even one row per warp fits (bytes is then over the limit). */
typedef struct FwdStage {
  int group, keys;
  int64_t bytes;
} FwdStage;
FwdStage attention_fwd_stage(const Spec *s, const TileConfig *t);

/* Every kernel the spec asks for, appended to m. Returns 0 or -1 with err. */
int templates_build(const Spec *s, const TileConfig *t, Module *m, char *err, size_t cap);

/* The attention forward kernel: NAME_attn_fwd. Parameters, in order:
 *   q, k, v: f32 in; o: f32 out; lengths: i32 in [B]; kept: i32 out [B, H, N];
 *   lse, tau: f32 out [B, H, N]: per row the log-sum-exp of the kept scores (before
 *     dropout) and the threshold, which the backward kernels recompute P from;
 *   entropy, dense_entropy: f32 out [B, H, N], written only when stats has bit 1 / 2
 *     (entropy of the kept distribution / of the dense softmax, natural log);
 *   tau_group: f32 in, the group thresholds of head_quantile ([B*H]) and
 *     layer_quantile ([1]) from the select kernels; unused by none/row_topk;
 *   B, H, N, qkv_sb, qkv_sn, qkv_sh, o_sb, o_sn, o_sh: i32; sparsity: f64;
 *   dropout: f32 (probability; 0 = off, as at evaluation); seed, step, layer: i32
 *     (the dropout mask's counters, see dropout.h); stats: i32 flags.
 * Grid (ceil(N / rows), H, B). N is the padded length; lengths[b] <= N.
 * Padded rows (i >= L) get o = 0, kept = 0, lse = 0, tau = +inf. */
Kernel *attention_fwd_build(const Spec *s, const TileConfig *t);

enum {
  ATTN_Q, ATTN_K, ATTN_V, ATTN_O, ATTN_LENGTHS, ATTN_KEPT, ATTN_LSE, ATTN_TAU,
  ATTN_ENTROPY, ATTN_DENSE_ENTROPY, ATTN_TAU_GROUP,
  ATTN_B, ATTN_H, ATTN_N, ATTN_QKV_SB, ATTN_QKV_SN, ATTN_QKV_SH,
  ATTN_O_SB, ATTN_O_SN, ATTN_O_SH, ATTN_SPARSITY, ATTN_DROPOUT, ATTN_SEED, ATTN_STEP,
  ATTN_LAYER, ATTN_STATS, ATTN_NPARAMS
};
enum { ATTN_STATS_ENTROPY = 1, ATTN_STATS_DENSE_ENTROPY = 2 };

#endif
