/* Double-precision reference for the crisp attention backward (DESIGN §4), for every
 * selection mode. Slow and obvious on purpose; independent of the kernels: it derives
 * the kept sets from reference.h's thresholds and recomputes the forward itself.
 *
 * A kept mask holds, for every (b, h, i, j), 1 iff key j is valid for row i and
 * S_ij >= tau_i: mask[((b * H + h) * N + i) * N + j]. With the mask held fixed (the
 * threshold is a constant), the forward is
 *   P_ij = exp(S_ij - lse_i) on kept pairs (0 elsewhere), lse_i = log sum_kept exp S_ij,
 *   O_i  = sum_j P_ij z_ij / (1 - p) V_j          (padded rows: O = 0)
 * and the backward
 *   Delta_i = dO_i . O_i,  dP_ij = z_ij / (1 - p) dO_i . V_j,  dS_ij = P_ij (dP_ij - Delta_i),
 *   dQ_i = sum_j dS_ij K_j / sqrt(d),  dK_j = sum_i dS_ij Q_i / sqrt(d),
 *   dV_j = sum_i P_ij z_ij / (1 - p) dO_i,
 * z_ij being dropout.h's keep bit (1 when p = 0). Tensors use the AttnLayout strides
 * (q/k/v and dq/dk/dv: qkv strides; o and dout: o strides); per-row arrays are
 * [B, H, N]. Gradients of padded rows and keys are 0. */
#ifndef CRISP_REFERENCE_BWD_H
#define CRISP_REFERENCE_BWD_H

#include <stdint.h>

#include "reference.h"

/* The dropout of one attention call: probability and the mask's counters. */
typedef struct AttnDropout {
  float p;
  uint32_t seed, step, layer;
} AttnDropout;

/* Element counts of a layout's qkv-strided and o-strided tensors (one of q/k/v). */
int64_t attention_qkv_extent(const AttnLayout *l, int head_dim);
int64_t attention_o_extent(const AttnLayout *l, int head_dim);

/* The kept mask [B, H, N, N] and tau [B, H, N] (padded rows +inf) of the forward. */
void attention_mask_ref(const Spec *sp, const AttnLayout *l, const float *q, const float *k,
                        const int32_t *lengths, double sparsity, uint8_t *mask, double *tau);

/* Forward with a fixed mask: o (o layout) and lse ([B, H, N], padded rows 0). */
void attention_fwd_masked_ref(const Spec *sp, const AttnLayout *l, const double *q,
                              const double *k, const double *v, const int32_t *lengths,
                              const uint8_t *mask, const AttnDropout *dp, double *o,
                              double *lse);

/* Backward with a fixed mask, given the forward's o. Writes dq, dk, dv (qkv layout,
 * every element of the layout's rows, padding included) and delta ([B, H, N]). */
void attention_bwd_masked_ref(const Spec *sp, const AttnLayout *l, const double *q,
                              const double *k, const double *v, const double *o,
                              const double *dout, const int32_t *lengths, const uint8_t *mask,
                              const AttnDropout *dp, double *dq, double *dk, double *dv,
                              double *delta);

/* Everything from f32 inputs: the mask and tau, then the forward (o, lse) and the
 * backward (dq, dk, dv, delta). Any output pointer may be NULL. */
typedef struct AttnBwdRef {
  double *o, *lse, *tau, *delta;   /* o: o layout; the others [B, H, N] */
  double *dq, *dk, *dv;            /* qkv layout */
} AttnBwdRef;
void attention_bwd_ref(const Spec *sp, const AttnLayout *l, const float *q, const float *k,
                       const float *v, const float *dout, const int32_t *lengths,
                       double sparsity, const AttnDropout *dp, AttnBwdRef *out);

#endif
