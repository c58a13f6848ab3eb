/* Plain C references for the kernel families, in double precision. They define
 * what the generated kernels must compute (DESIGN §4) and are what every test
 * and the autotuner compare against. Slow and obvious on purpose.
 *
 * Thresholds, for query row i with M valid keys (j < L, and j <= i when causal):
 *   none:            tau_i = -inf (every valid key kept)
 *   row_topk:        tau_i = keep(M)-th largest of the row's scores
 *   head_quantile:   tau_g = keep(M_g)-th largest of all valid scores of (b, h)
 *   layer_quantile:  tau_g = keep(M_g)-th largest of all valid scores of the batch
 *   quantile modes:  tau_i = min(tau_g, keep_min-th largest of the row)
 * where keep(M) = max(keep_min, ceil((1 - s) M - 1e-6)), at most M; key j is
 * kept iff S_ij >= tau_i (ties kept). A group that keeps every one of its M_g > 0
 * scores (keep(M_g) = M_g) has tau_g = -inf (any tau <= its minimum keeps the same
 * set, and -inf says "all" without a select); an empty one +inf. */
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
int64_t attention_keep_count(double sparsity, int keep_min, int64_t m);

/* Valid keys of query row i: L, or min(i + 1, L) when causal; 0 for padded rows. */
int attention_valid_keys(const Spec *s, int i, int L);

/* S_ij = q_i . k_j / sqrt(d) for j < m, into s[0..m). */
void attention_scores_ref(const Spec *sp, const AttnLayout *l, const float *q, const float *k,
                          int b, int h, int i, int m, double *s);

/* The keep-th largest of s[0..m), counting repeats. */
double kth_largest_ref(const double *s, int64_t m, int64_t keep);

/* One group's threshold from its m valid scores s[0..m): +inf for m = 0, -inf when
 * keep(m) = m (every score kept), else the keep(m)-th largest. */
double attention_group_tau_of_ref(const double *s, int64_t m, double sparsity, int keep_min);

/* Group thresholds of the quantile modes (attention_group_tau_of_ref per group):
 * tau_group[b*H + h] (head_quantile) or tau_group[0] (layer_quantile). Returns the
 * number of groups (0 for other modes). */
int attention_group_tau_ref(const Spec *sp, const AttnLayout *l, const float *q, const float *k,
                            const int32_t *lengths, double sparsity, double *tau_group);

/* tau_i of a row from its scores (and the row's group threshold in quantile modes). */
double attention_row_tau_ref(const Spec *sp, const double *s, int m, double sparsity,
                             double tau_group);

/* o (double, o-layout) and kept ([B, H, N]) for the spec's select/causal/keep_min. */
void attention_fwd_ref(const Spec *s, const AttnLayout *l, const float *q, const float *k,
                       const float *v, const int32_t *lengths, double sparsity, double *o,
                       int32_t *kept);

/* The forward kernel's run-time arguments beyond the tensors. */
typedef struct AttnFwdArgs {
  double sparsity;
  const double *tau_group;   /* quantile modes; NULL: from attention_group_tau_ref */
  float dropout;             /* probability; 0 = off */
  uint32_t seed, step, layer;
} AttnFwdArgs;

/* Everything the forward kernel writes (any pointer may be NULL), per row [B, H, N]
 * unless noted; padded rows get o = 0, kept = 0, lse = 0, tau = +inf, 0 elsewhere.
 *   o:       o-layout; sum_j p_j z_j / (1 - dropout) v_j over kept j, p = softmax
 *            of the kept scores, z_j the dropout keep bit (dropout.h)
 *   lse:     max_j S_j + log(sum over kept j of exp(S_j - max)), before dropout
 *   tau:     the row's threshold (kept <=> S >= tau); -inf when every valid key is kept
 *   entropy, dense_entropy: of p (kept) and of the softmax over every valid key
 *   dropped: kept keys that dropout zeroed (a test statistic, not a kernel output) */
typedef struct AttnFwdOut {
  double *o, *lse, *tau, *entropy, *dense_entropy;
  int32_t *kept, *dropped;
} AttnFwdOut;

void attention_fwd_full_ref(const Spec *s, const AttnLayout *l, const float *q,
                            const float *k, const float *v, const int32_t *lengths,
                            const AttnFwdArgs *a, const AttnFwdOut *out);

#endif
