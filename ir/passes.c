/* The pass pipeline every consumer of a template's kernels runs (the runtime, the
 * benchmarks, the tests); crispc runs the same passes one by one so that `-d PASS`
 * can print the kernel between them. */
#include "passes.h"

int ir_run_passes(Kernel *k, MapTarget target, char *err, size_t cap) {
  if (ir_verify(k, err, cap) || ir_simplify(k, err, cap))
    return -1;
  if (target != MAP_NONE && (ir_map(k, target, err, cap) || ir_simplify(k, err, cap)))
    return -1;
  return ir_verify(k, err, cap);
}
