/* attn_ref.h: crisp attention (DESIGN §4) in plain C over floats, forward and
 * backward, for every selection mode (none, row_topk, head_quantile,
 * layer_quantile), keep_min, attention dropout and causal = false. The model runs
 * it until the JIT'd crisp kernels are wired (model/attention.c); it writes what the
 * kernels write (templates/templates.h, templates/attention_bwd.h), so either can
 * stand in for the other. Single-threaded, nothing n x n stored.
 *
 * Per valid query row i of (b, h), L = lengths[b] valid keys:
 *   S_ij = f32(sum_d q_id k_jd, in order, in f32) * f32(1 / sqrt(D))   (j < L)
 *   tau_i from the mode (templates/reference.h): none -inf; row_topk the keep(L)-th
 *     largest of the row; head/layer_quantile min(tau_g, the row's keep_min-th
 *     largest), tau_g the keep(M_g)-th largest of the group's M_g valid scores
 *     (radix select over their order-preserving keys, scores recomputed per pass;
 *     -inf when keep(M_g) = M_g: every score kept, no select);
 *   kept_ij = S_ij >= tau_i (ties kept), P_ij = exp(S_ij - lse_i) on kept pairs,
 *   O_i = sum_j P_ij z_ij / (1 - p) V_j, z_ij dropout.h's keep bit of (seed, step,
 *     layer, b, h, i, j);
 * saved per row [B, H, N]: lse (before dropout), tau (-inf when every valid key is
 * kept), kept, and when asked the entropy of P and of the dense softmax over all L
 * valid keys (the kernels' stats bits 1 and 2). Padded rows: O = 0, lse 0,
 * tau +inf, kept 0, entropy 0.
 * Backward with tau held constant (the same float scores, so the same kept sets):
 *   Delta_i = dO_i . O_i, dP_ij = z_ij / (1 - p) dO_i . V_j, dS_ij = P_ij (dP_ij - Delta_i),
 *   dQ_i = scale sum_j dS_ij K_j, dK_j = scale sum_i dS_ij Q_i, dV_j = sum_i P_ij z_ij / (1 - p) dO_i;
 * every element of dq, dk, dv over b < B, n < N is written (padding 0).
 * Accumulations run in double. */
#ifndef CRISP_MODEL_ATTN_REF_H
#define CRISP_MODEL_ATTN_REF_H

#include <stddef.h>
#include <stdint.h>

#include "../templates/reference.h"

typedef struct AttnRefArgs {
  SelectKind select;
  double sparsity;       /* fraction of scores dropped, [0, 1) */
  int keep_min;          /* >= 1 */
  float dropout;         /* attention dropout probability; 0 = off */
  uint32_t seed, step, layer;
} AttnRefArgs;

/* Scratch bytes attn_ref_forward/backward need for padded length N, head size D. */
size_t attn_ref_workspace_bytes(int N, int D);

/* q, k, v (and dq, dk, dv) use l's qkv strides, o and dout its o strides; lse, tau,
 * kept, entropy, dense_entropy, delta are [B, H, N] (kept and the entropies may be
 * NULL). ws holds
 * attn_ref_workspace_bytes(N, D) bytes. Returns 0, or -1 for an unsupported argument
 * (keep_min < 1, sparsity outside [0, 1), dropout outside [0, 1), D outside 1..512). */
int attn_ref_forward(const AttnLayout *l, int D, const AttnRefArgs *a, const float *q,
                     const float *k, const float *v, const int32_t *lengths, float *o,
                     float *lse, float *tau, int32_t *kept, float *entropy,
                     float *dense_entropy, void *ws);
int attn_ref_backward(const AttnLayout *l, int D, const AttnRefArgs *a, const float *q,
                      const float *k, const float *v, const float *o, const float *dout,
                      const int32_t *lengths, const float *lse, const float *tau, float *dq,
                      float *dk, float *dv, float *delta, void *ws);

/* The keep-th largest (counting repeats, 1 <= keep <= m) of x[0..m); tmp holds m
 * floats (x is not modified). */
float attn_ref_kth_largest(const float *x, int m, int keep, float *tmp);

#endif
