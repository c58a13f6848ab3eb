/* The straightforward C implementation the benchmark measures the generated
 * kernel against: what a careful engineer writes first (f32, qsort for the
 * threshold), compiled -O3 -march=native. Same layout as the kernels. */
#ifndef CRISP_NAIVE_ATTENTION_H
#define CRISP_NAIVE_ATTENTION_H

#include <stdint.h>

void naive_attention_fwd(const float *q, const float *k, const float *v, float *o,
                         const int32_t *lengths, int32_t *kept, int B, int H, int N, int D,
                         int64_t sb, int64_t sn, int64_t sh, double sparsity, int topk,
                         int b_first, int b_last);

#endif
