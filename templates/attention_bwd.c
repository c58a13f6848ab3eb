/* The crisp attention backward template (see attention_bwd.h for the contract): the
 * parameters every backward kernel takes, and which schedule builds a tile's kernels.
 * The warp schedule (the GPU's, and SCHED_WARP_HOST on the host) is
 * attention_bwd_warp.c with its two kernels in attention_bwd_dq.c and
 * attention_bwd_dkdv.c; the CPU's tile schedule is attention_bwd_tile.c. */
#include "attention_bwd.h"

#include <stdio.h>

#include "attention_bwd_impl.h"

void bwd_declare_params(Kernel *k, BwdPart part, Buf **buf, Op **p) {
  static const char *const bufs[] = {"q", "k", "v", "o", "dout", "lse", "tau", "lengths",
                                     "delta", "dq", "dk", "dv"};
  static const char *const scalars[] = {"B", "H", "N", "qkv_sb", "qkv_sn", "qkv_sh", "o_sb",
                                        "o_sn", "o_sh", "dqkv_sb", "dqkv_sn", "dqkv_sh"};
  for (int i = ATTN_BWD_Q; i <= ATTN_BWD_DV; i++) {
    Role role = ROLE_IN;
    if (i == ATTN_BWD_DELTA || i == ATTN_BWD_DQ)
      role = part == ATTN_BWD_DKDV_PART ? ROLE_IN : ROLE_OUT;
    else if (i == ATTN_BWD_DK || i == ATTN_BWD_DV)
      role = part == ATTN_BWD_DQ_PART ? ROLE_IN : ROLE_OUT;
    buf[i] = ir_param_buf(k, bufs[i], i == ATTN_BWD_LENGTHS ? TY_I32 : TY_F32, role);
  }
  for (int i = 0; i < 12; i++)
    p[ATTN_BWD_B + i] = ir_param_scalar(k, scalars[i], TY_I32);
  p[ATTN_BWD_DROPOUT] = ir_param_scalar(k, "dropout", TY_F32);
  p[ATTN_BWD_SEED] = ir_param_scalar(k, "seed", TY_I32);
  p[ATTN_BWD_STEP] = ir_param_scalar(k, "step", TY_I32);
  p[ATTN_BWD_LAYER] = ir_param_scalar(k, "layer", TY_I32);
}

int attention_bwd_build(const Spec *s, const TileConfig *t, Module *m, char *err, size_t cap) {
  if (t->sched == SCHED_TILE) {
    if (tile_check(s, t, err, cap))
      return -1;
  } else if (t->warps < 1 || t->warps > 16 || t->rows < 1 || t->rows % t->warps) {
    snprintf(err, cap, "tile rows = %d, warps = %d: rows must be a positive multiple of warps "
             "(1..16)", t->rows, t->warps);
    return -1;
  }
  int64_t bytes = attention_bwd_shared_bytes(s, t);
  if (t->sched != SCHED_TILE && bytes > TILE_SHARED_LIMIT) {
    snprintf(err, cap, "backward: tile rows = %d, warps = %d needs %lld bytes of shared memory "
             "with head_dim = %d even with staged tiles of one row (limit %d)", t->rows,
             t->warps, (long long)bytes, s->head_dim, TILE_SHARED_LIMIT);
    return -1;
  }
  if (m->n + 2 > (int)(sizeof m->kernels / sizeof m->kernels[0])) {
    snprintf(err, cap, "backward: the module already holds %d kernels", m->n);
    return -1;
  }
  if (t->sched == SCHED_TILE) {
    m->kernels[m->n++] = attention_bwd_tile_build(s, t);
    return 0;
  }
  m->kernels[m->n++] = attention_bwd_dq_build(s, t);
  m->kernels[m->n++] = attention_bwd_dkdv_build(s, t);
  return 0;
}
