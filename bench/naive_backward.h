/* The straightforward C forward + backward of crisp attention that bench_backward
 * measures the generated kernels against: what a careful engineer writes first
 * (f32; per (b, h) the forward keeps the n x n probabilities in a scratch matrix,
 * qsort for the threshold, the counter-based dropout of dropout.h; the backward
 * loops over the kept entries of that matrix), compiled -O3 -march=native.
 * Non-causal, keep_min 1; mode 0 = none, 1 = row_topk, 2 = head_quantile.
 * q/k/v and dq/dk/dv share strides (sb, sn, sh); o and dout use (osb, osn, osh).
 * Runs the examples [b_first, b_last). */
#ifndef CRISP_NAIVE_BACKWARD_H
#define CRISP_NAIVE_BACKWARD_H

#include <stdint.h>

typedef struct NaiveAttn {
  const float *q, *k, *v, *dout;
  float *o, *dq, *dk, *dv;
  const int32_t *lengths;
  int B, H, N, D;
  int64_t sb, sn, sh, osb, osn, osh;
  double sparsity;
  int mode;
  float dropout;
  uint32_t seed, step, layer;
} NaiveAttn;

void naive_attention_fwd_bwd(const NaiveAttn *a, int b_first, int b_last);

#endif
