/* Shared by the attention tests and benchmark: random inputs, the compile
 * pipeline for one spec, kernel arguments in kernelParams form, and the error
 * measures against the double-precision reference. */
#ifndef CRISP_ATTN_HARNESS_H
#define CRISP_ATTN_HARNESS_H

#include <stdbool.h>
#include <stdint.h>

#include "../compiler/jit.h"
#include "../ir/passes.h"
#include "../templates/reference.h"

typedef struct AttnCase {
  Spec spec;
  AttnLayout l;
  bool fused;            /* q/k/v views into one [B, N, 3, H, D] buffer */
  bool quantized;        /* set by attn_case_fill */
  float *qkv, *q, *k, *v;
  float *o;
  int32_t *lengths, *kept;
  float *lse, *tau, *entropy, *dense_entropy;   /* [B, H, N] */
  float *tau_group;      /* [B*H]: the kernel's group thresholds (quantile modes) */
  double *tau_group_ref; /* the same in double, for the reference */
  int64_t qkv_count, o_count, kept_count;
} AttnCase;

/* The forward kernel's run-time scalars beyond the shapes. */
typedef struct AttnRun {
  double sparsity;
  float dropout;
  uint32_t seed, step, layer;
  int stats;             /* ATTN_STATS_* flags */
} AttnRun;

uint64_t harness_seed(void);   /* fresh per run (time), or $CRISP_SEED; printed */
double harness_uniform(uint64_t *state);

/* Allocates a case; lengths all N unless set afterwards. */
void attn_case_init(AttnCase *c, const Spec *s, int B, int H, int N, bool fused);
void attn_case_free(AttnCase *c);
/* quantized: q, k multiples of 1/4 in [-1, 1] so scores are exact in f32 and the
 * kept sets of kernel and reference agree; v uniform in [-1, 1]. */
void attn_case_fill(AttnCase *c, uint64_t *rng, bool quantized);
/* NaN into every float output, -7 into kept. */
void attn_case_poison(AttnCase *c);

/* The f32 score the kernels compute for a double reference score of quantized
 * inputs: f32(dot) * f32(1/sqrt(d)); +-inf unchanged. */
float harness_kernel_score(double s, int head_dim);

/* Quantile modes: the group thresholds from attention_group_tau_ref (until the
 * select kernels exist), in double for the reference and as the kernel's f32 score
 * for the kernel. Called by attn_args*. */
void attn_case_group_tau(AttnCase *c, double sparsity);

/* kernelParams for the forward kernel (storage must outlive the call). */
typedef struct AttnArgs {
  void *ptrs[ATTN_B];
  int32_t ints[9];
  double sparsity;
  float dropout;
  int32_t seed, step, layer, stats;
  void *args[ATTN_NPARAMS];
  int64_t counts[ATTN_NPARAMS];
} AttnArgs;
void attn_args_run(AttnArgs *a, AttnCase *c, const AttnRun *r);
/* sparsity only: no dropout, no statistics */
void attn_args(AttnArgs *a, AttnCase *c, double sparsity);

/* The tests' spec: defaults, named `name`, with these fields set. */
Spec harness_spec(const char *name, SelectKind sel, int head_dim, int max_seq, bool causal,
                  int keep_min);

/* The forward kernel alone (m->kernels[0]), whatever else the spec asks for:
 * verify -> simplify [-> map(target) -> simplify -> verify]; MAP_NONE stops before map. */
int harness_compile(Module *m, const Spec *s, const TileConfig *t, MapTarget target,
                    char *err, size_t cap);

/* Runs the JIT'd forward kernel over the whole grid on this thread. */
void harness_run_jit(CpuKernelFn fn, Kernel *k, AttnArgs *a);

/* The kernel's outputs against attention_fwd_full_ref:
 *   o:   max |o - ref| / max |v| (o is a convex combination of v rows, scaled by
 *        1/(1 - p) under dropout);
 *   lse, entropy, dense_entropy: max |x - ref| / max(|ref|, 1) over all rows
 *        (entropies only when r->stats asks for them);
 *   kept_ok: every count equal; tau_ok: every tau equal to the reference's as the
 *        kernel's f32 score (exactly when quantized, else within 1e-6 relative);
 *   unwritten: a NaN survived in an output the kernel must write;
 *   dropped/kept_total: over valid rows, kept keys that dropout zeroed / kept keys. */
typedef struct AttnErr {
  double o, lse, entropy, dense_entropy;
  bool kept_ok, tau_ok, unwritten;
  int64_t bad_row;       /* first row with a wrong count or tau, or -1 */
  int64_t dropped, kept_total;
} AttnErr;
void attn_case_check(AttnCase *c, const AttnRun *r, AttnErr *e);

/* o and kept only, no dropout (the original measure). */
double attn_case_error(AttnCase *c, double sparsity, bool *kept_ok, bool *unwritten);

#endif
