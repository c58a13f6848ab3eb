/* lower.h: crisp IR -> LLVM IR, built through the LLVM C API only.
 *
 * lower_module lowers every kernel of a Module whose kernels were mapped for the
 * target (ir_map: MAP_GPU for sm_*, MAP_CPU for the host). The lowering knows IR ops
 * and parallel primitives, never a particular kernel.
 *
 * GPU (triple nvptx64-nvidia-cuda): one `kernel` function NAME(params...) per kernel;
 * buffers are `ptr addrspace(1)`, scalars i32/i64/f32/f64; nvvm.annotations mark it a
 * kernel with maxntidx = 32 * warps. Shared arrays are addrspace(3) globals.
 *
 * Host: one external function per kernel,
 *     void NAME(void **args, const int32_t *grid, int64_t first_block, int64_t last_block)
 * where args follows CUDA's kernelParams convention (args[i] points to parameter i's
 * value; for a buffer, to its data pointer). It runs the blocks with linear ids in
 * [first_block, last_block), block b being (b % gx, b / gx % gy, b / (gx*gy)).
 *
 * Both: buffer parameters are assumed not to overlap (noalias, like __restrict__);
 * input-only ones are marked readonly. Integer arithmetic wraps; loop counters do not
 * overflow (an extent plus its step fits the index type). atomic_add is a relaxed
 * (monotonic) atomicrmw; on the host, shared arrays are private to the thread
 * running the block, so atomics on them are plain read-modify-writes.
 *
 * The module gets its triple and data layout from the target's machine; ctx owns it
 * (dispose with LLVMDisposeModule). If ctx has no diagnostic handler, one is set that
 * shows LLVM errors only (set CRISP_LLVM_REMARKS=1 to see optimisation remarks). Returns NULL with a message in err on failure. */
#ifndef CRISP_LOWER_H
#define CRISP_LOWER_H

#include <stddef.h>

#include <llvm-c/Core.h>

#include "ir.h"
#include "target.h"

LLVMModuleRef lower_module(LLVMContextRef ctx, Module *m, Target t, char *err, size_t cap);

#endif
