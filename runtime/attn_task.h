/* attn_task.h: the attention forward kernel as a workload on a backend — random
 * inputs, kernel arguments bound by parameter name from the manifest, a check
 * against the double-precision reference (templates/reference.c), and launches
 * for timing. Used by the autotuner and the GPU device check; needs no LLVM.
 *
 * Layout: separate q, k, v, o tensors [B, N, H, D]; per-row outputs [B, H, N].
 * Parameters are bound by the names of the forward contract (templates.h): q k v o
 * lengths kept lse tau entropy dense_entropy tau_group, B H N qkv_s* o_s*, sparsity
 * dropout seed step layer stats. A buffer of another name gets B*N*H*D zeroed
 * elements (and a warning); a scalar of another name is an error. Outputs are
 * poisoned (NaN, -7) before a checked run, so unwritten elements are caught. */
#ifndef CRISP_RT_ATTN_TASK_H
#define CRISP_RT_ATTN_TASK_H

#include <stdbool.h>
#include <stdint.h>

#include "../templates/reference.h"
#include "backend.h"

typedef enum {
  ATTN_FILL_RANDOM,      /* q, k, v uniform in [-1, 1] */
  ATTN_FILL_QUANTIZED,   /* q, k multiples of 1/4 (exact scores, exact kept sets) */
  ATTN_FILL_TIES,        /* q, k constant: every score equal */
} AttnFill;

typedef struct AttnTask {
  Backend *b;
  Spec spec;
  AttnLayout l;
  double sparsity;
  int64_t n_t, n_row;        /* elements of one [B,N,H,D] tensor; of one [B,H,N] output */
  float *q, *k, *v;          /* host inputs */
  int32_t *lengths;
  DevPtr dev[RT_MAX_PARAMS]; /* device buffers by parameter index (bound kernel) */
  size_t dev_bytes[RT_MAX_PARAMS];
  /* argument storage, args[i] points into it */
  DevPtr ptr_val[RT_MAX_PARAMS];
  int64_t scalar[RT_MAX_PARAMS];   /* i32/i64/f32/f64 values stored in 8 bytes */
  void *args[RT_MAX_PARAMS];
  const RtKernelInfo *bound;
  bool warned;
  /* the reference's outputs for the current inputs (computed on first check) */
  double *ref_o, *ref_lse, *ref_tau;
  int32_t *ref_kept;
  bool ref_valid;
} AttnTask;

typedef struct AttnCheck {
  double err;        /* max |o - ref| / max |v| over the tensor */
  double lse_err;    /* max |lse - ref| / max(1, |ref|) over valid rows (0 if no lse) */
  bool kept_ok, tau_ok, unwritten;
  char first_bad[160];
} AttnCheck;

/* Allocates host inputs; lengths = N. 0, or -1 with err. */
int attn_task_init(AttnTask *t, Backend *b, const Spec *s, int B, int H, int N, double sparsity,
                   char *err, size_t cap);
void attn_task_free(AttnTask *t);
void attn_task_fill(AttnTask *t, uint64_t *rng, AttnFill fill, bool random_lengths);
/* Allocates device buffers for kernel k's parameters, uploads the inputs and sets
 * the scalars. Call again after refilling (or for another kernel). */
int attn_task_bind(AttnTask *t, const RtKernelInfo *k, char *err, size_t cap);
/* One launch (asynchronous on the GPU). */
int attn_task_run(AttnTask *t, const RtKernel *k);
/* Poisons the outputs, runs, syncs, compares with the reference. -1 only when the
 * backend fails (err); a wrong result is reported in *res (attn_check_ok). */
int attn_task_check(AttnTask *t, const RtKernel *k, AttnCheck *res, char *err, size_t cap);
bool attn_check_ok(const AttnCheck *c);
/* Relative tolerance of o and lse (DESIGN §8: 1e-5 for f32). */
enum { ATTN_TOL_E6 = 10 };   /* the tolerance is ATTN_TOL_E6 * 1e-6 */

uint64_t rt_rng_next(uint64_t *state);   /* splitmix64 */
double rt_rng_uniform(uint64_t *state);  /* [0, 1) */

#endif
