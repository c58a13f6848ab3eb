/* Which kernels a spec asks for, and the tile configurations they may use. */
#include "templates.h"

#include "attention_bwd.h"
#include "attention_select.h"
#include "attention_tile.h"

#include <stdio.h>

/* Defaults: on the GPU four warps share a block and take two rows each; on the
 * CPU a "block" is one thread-pool task running the tile schedule over a whole head
 * (max_seq rows): each block packs the K^T of its keys once with strided loads, so
 * blocks of 128 rows repacked the head's K^T four times at n = 512 (forward 0.87-0.90x
 * of that time with one block per head, docs/kernels.md; earlier 128 rows had taken
 * ~35% less CPU time than 32). B*H tasks remain at any n. */
TileConfig tile_resolve(const Spec *s, TileTarget t) {
  TileSched warp = t == TUNE_CPU ? SCHED_WARP_HOST : SCHED_WARP;
  if (!s->tile.is_auto)
    return (TileConfig){s->tile.rows, s->tile.warps, warp};
  /* Every select mode takes the tile schedule, head/layer_quantile's select kernels
   * included (they score with the tile micro-kernel, attention_select_tile.c). */
  if (t == TUNE_CPU) {
    int head = (s->max_seq + TILE_RT - 1) / TILE_RT * TILE_RT;
    return tile_frame_bytes(s) <= TILE_FRAME_LIMIT ? (TileConfig){head, 1, SCHED_TILE}
                                                   : (TileConfig){16, 1, SCHED_WARP_HOST};
  }
  return (TileConfig){8, 4, warp};
}

/* The backward kernel's arrays, the largest of the tile schedule: two packed D-row
 * transposes and two TILE_KR-row slots (rows tile_ld apart), the head's dK and dV sums
 * (max_seq x D each), the block's Q and dO rows and dQ sums, the score micro-tile and
 * the per-key row masks (i32); and a contiguous copy of the head's K rows where it
 * fits (tile_frame_kc_bytes). */
static int64_t frame_base(const Spec *s) {
  int64_t ld = tile_ld(s->max_seq), D = s->head_dim;
  return 4 * (2 * D * ld + 2 * (int64_t)s->max_seq * D + 2 * TILE_KR * ld + 3 * TILE_KR * D +
              TILE_RT * TILE_JT + ld);
}

/* The K copy is optional (the dense blocks read K in place without it) so that it
 * never moves the limit past which tile = auto picks the warp schedule. */
int64_t tile_frame_kc_bytes(const Spec *s) {
  int64_t kc = 4 * (int64_t)s->max_seq * s->head_dim;
  return frame_base(s) + kc <= TILE_FRAME_LIMIT ? kc : 0;
}

int64_t tile_frame_bytes(const Spec *s) { return frame_base(s) + tile_frame_kc_bytes(s); }

int64_t attention_fwd_shared_bytes(const Spec *s, const TileConfig *t) {
  return attention_fwd_stage(s, t).bytes;
}

int tile_check(const Spec *s, const TileConfig *t, char *err, size_t cap) {
  if (t->sched == SCHED_TILE) {   /* block-local arrays live in the host's frame */
    if (t->warps != 1 || t->rows < TILE_RT || t->rows % TILE_RT) {
      snprintf(err, cap, "tile schedule: rows = %d, warps = %d: rows must be a positive "
               "multiple of %d and warps 1", t->rows, t->warps, TILE_RT);
      return -1;
    }
    if (tile_frame_bytes(s) > TILE_FRAME_LIMIT) {
      snprintf(err, cap, "tile schedule: max_seq = %d, head_dim = %d need %lld bytes of "
               "block-local arrays on the stack (limit %d)", s->max_seq, s->head_dim,
               (long long)tile_frame_bytes(s), TILE_FRAME_LIMIT);
      return -1;
    }
    return 0;
  }
  if (t->warps < 1 || t->warps > 16 || t->rows < 1 || t->rows % t->warps) {
    snprintf(err, cap, "tile rows = %d, warps = %d: rows must be a positive multiple of warps "
             "(1..16)", t->rows, t->warps);
    return -1;
  }
  int64_t bytes = attention_fwd_shared_bytes(s, t);
  if (bytes > TILE_SHARED_LIMIT) {
    snprintf(err, cap, "tile warps = %d needs %lld bytes of shared memory with max_seq = %d "
             "(limit %d)", t->warps, (long long)bytes, s->max_seq, TILE_SHARED_LIMIT);
    return -1;
  }
  return 0;
}

int templates_build(const Spec *s, const TileConfig *t, Module *m, char *err, size_t cap) {
  if (tile_check(s, t, err, cap))
    return -1;
  m->kernels[m->n++] = attention_fwd_build(s, t);
  /* head/layer_quantile: NAME_select_{init,hist,pick} after the forward */
  if (attention_select_build(s, t, m, err, cap))
    return -1;
  /* backward = true: NAME_attn_bwd (tile schedule), or NAME_attn_bwd_dq, NAME_attn_bwd_dkdv */
  return s->backward ? attention_bwd_build(s, t, m, err, cap) : 0;
}
