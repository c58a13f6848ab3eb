/* Plain C references for the kernel families, in double precision. They define
 * what the generated kernels must compute (DESIGN §4) and are what every test
 * and the autotuner compare against. Slow and obvious on purpose. */
#ifndef CRISP_REFERENCE_H
#define CRISP_REFERENCE_H

#include <stdint.h>

#include "templates.h"

/* Shapes and strides of one attention call (see templates.h for the layout). */
typedef struct AttnLayout {
  int B, H, N;
  int64_t qkv_sb, qkv_sn, qkv_sh;
  int64_t o_sb, o_sn, o_sh;
} AttnLayout;

/* keep = max(keep_min, ceil((1 - s) * M - 1e-6)), at most M */
int attention_keep_count(double sparsity, int keep_min, int m);

/* o (double, o-layout) and kept ([B, H, N]) for the spec's select/causal/keep_min. */
void attention_fwd_ref(const Spec *s, const AttnLayout *l, const float *q, const float *k,
                       const float *v, const int32_t *lengths, double sparsity, double *o,
                       int32_t *kept);

#endif
