/* The crisp IR interpreter ("interpreter mode"): executes an UNMAPPED kernel on the
 * CPU with the semantics of its GPU mapping (ir/map.c), so GPU schedules are tested
 * on machines without a GPU.
 *
 * Blocks run one after another. Inside a block, T = 32*warps threads and W = warps
 * warps are simulated: pfor.block gives thread t the indices t, t+T, ...; pfor.warp
 * gives warp w the indices w, w+W, ...; pfor.lane gives lane l of its warp l, l+32,
 * ...; reductions combine in the mapped code's order (per-lane strided partials,
 * the shfl.bfly butterfly with offsets 16..1, warps 0..W-1 in order for a block
 * reduce), so float results match the GPU bit for bit. Arithmetic is IEEE in the
 * op's own type (f32 in float), integers wrap.
 *
 * Reported as errors (-1 and a message naming kernel, block, thread, op %N):
 * out-of-bounds accesses, integer division by zero / overflow, shifts out of range,
 * out-of-range float->int casts, and optionally
 *   check_races:  two threads of a block touching one element (at least one write)
 *                 with no barrier (or, within one warp, warp sync) between them, on
 *                 shared and written global buffers; two blocks writing (or one
 *                 writing, another reading) one global element. Atomic adds count as
 *                 writes against plain accesses but never race with each other;
 *   check_uninit: reads of shared/local array elements not yet written in this block
 *                 (local arrays are per thread).
 * Loads in block- or warp-level code are performed by every thread of that scope;
 * a local array read there must hold the same value in every thread.
 */
#ifndef CRISP_INTERP_H
#define CRISP_INTERP_H

#include "ir.h"

typedef struct InterpOptions {
  bool check_races;
  bool check_uninit;
} InterpOptions; /* both default on (opt == NULL) */

/* args: CUDA kernelParams convention (args[i] points to param i's value; for buffers
 * to the data pointer). counts[i]: element count of buffer param i (for bounds checks);
 * ignored for scalars (may be NULL if the kernel has no buffer params).
 * grid: number of blocks per dim (ir_grid computes it from the kernel's rule).
 * Returns 0, or -1 with a message in err, e.g.
 *   "kernel attn: block (1,0,2) thread 37 (warp 1 lane 5): %42 (store): index 70 out of
 *    bounds of o[64]"
 *   "kernel k: block (0,0,0): %9 (load): race on shared s[12]: written by thread 3,
 *    read by thread 40 with no barrier between"
 *   "kernel k: block (0,0,0) thread 5 (warp 0 lane 5): %9 (load): read of shared t[3]
 *    before any thread wrote it"
 * Mapped kernels and kernels that fail ir_verify are refused. */
int interp_run(Kernel *k, void *const *args, const int64_t *counts, const int32_t grid[3],
               const InterpOptions *opt, char *err, size_t cap);

#endif
