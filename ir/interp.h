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

/* The memory traffic the GPU mapping would make (interp_traffic.c), counted by
 * interp_run_traffic (added to, so zero it first). A *request* is one
 * warp-wide memory instruction: the accesses of a warp's 32 lanes that the same op
 * makes for the same time in the lanes' own sequence (lockstep, as SIMT executes
 * uniform code); a load in warp-level code is one request, in block-level code one
 * per warp. Global requests touch 32-byte sectors (offsets within the buffer, as if
 * it were 256-byte aligned: cudaMalloc's); a coalesced f32 request of 32 lanes is 4
 * sectors, 32 lanes on 32 rows 32 sectors. Shared requests take wavefronts: the most
 * distinct 4-byte words any one of the 32 banks serves (1: conflict-free; the same
 * word to many lanes is one broadcast). Local arrays are registers: not counted.
 * load_sectors / load_unique_sectors is how many times each byte read is asked for:
 * the reuse that caches (or shared memory) must catch. */
typedef struct InterpTraffic {
  int64_t load_requests, load_sectors, load_bytes;      /* global loads */
  int64_t load_unique_sectors;  /* distinct sectors loaded: the traffic of an endless cache */
  int64_t store_requests, store_sectors, store_bytes;   /* global stores and atomics */
  int64_t shared_requests, shared_wavefronts;           /* shared loads, stores, atomics */
} InterpTraffic;

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
/* interp_run that also adds the kernel's memory traffic to *traffic (NULL: none). */
int interp_run_traffic(Kernel *k, void *const *args, const int64_t *counts,
                       const int32_t grid[3], const InterpOptions *opt, InterpTraffic *traffic,
                       char *err, size_t cap);

#endif
