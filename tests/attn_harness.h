/* Shared by the attention tests and benchmark: random inputs, the compile
 * pipeline for one spec, kernel arguments in kernelParams form, and the error
 * measure against the double-precision reference. */
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
  float *qkv, *q, *k, *v;
  float *o;
  int32_t *lengths, *kept;
  int64_t qkv_count, o_count, kept_count;
} AttnCase;

uint64_t harness_seed(void);   /* fresh per run (time), or $CRISP_SEED; printed */
double harness_uniform(uint64_t *state);

/* Allocates a case; lengths all N unless set afterwards. */
void attn_case_init(AttnCase *c, const Spec *s, int B, int H, int N, bool fused);
void attn_case_free(AttnCase *c);
/* quantized: q, k multiples of 1/4 in [-1, 1] so scores are exact in f32 and the
 * kept sets of kernel and reference agree; v uniform in [-1, 1]. */
void attn_case_fill(AttnCase *c, uint64_t *rng, bool quantized);
void attn_case_poison(AttnCase *c);

/* kernelParams for the forward kernel (storage must outlive the call). */
typedef struct AttnArgs {
  void *ptrs[6];
  int32_t ints[9];
  double sparsity;
  void *args[ATTN_NPARAMS];
  int64_t counts[ATTN_NPARAMS];
} AttnArgs;
void attn_args(AttnArgs *a, AttnCase *c, double sparsity);

/* verify -> simplify [-> map(target) -> simplify -> verify]; MAP_NONE stops before map. */
int harness_compile(Module *m, const Spec *s, const TileConfig *t, MapTarget target,
                    char *err, size_t cap);

/* Runs the JIT'd forward kernel over the whole grid on this thread. */
void harness_run_jit(CpuKernelFn fn, Kernel *k, AttnArgs *a);

/* max |o - ref| / max |v| over valid rows (o is a convex combination of v rows);
 * sets *kept_ok when every kept count matches and *unwritten when a NaN survived. */
double attn_case_error(AttnCase *c, double sparsity, bool *kept_ok, bool *unwritten);

#endif
