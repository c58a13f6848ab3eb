/* jit.h: JIT-compile a CPU-mapped Module in process (ORC LLJIT, LLVM C API), or
 * link host object code compiled earlier.
 *
 * jit_compile lowers the module for TARGET_HOST in a fresh context, optimises it
 * with default<O3> for the host CPU and features, and hands it to an LLJIT whose
 * target machine is that same host machine (CodeGenOpt aggressive). Calls into the
 * C library (exp on f64, fmodf, memset...) resolve against the running process.
 * Each kernel NAME is then a CpuKernelFn (see lower.h for the calling convention):
 *     fn(args, grid, first_block, last_block)
 * runs blocks [first_block, last_block); disjoint ranges may run on different
 * threads at once. The Module is not needed after jit_compile returns. */
#ifndef CRISP_JIT_H
#define CRISP_JIT_H

#include <stddef.h>
#include <stdint.h>

#include "ir.h"

typedef void (*CpuKernelFn)(void **args, const int32_t *grid, int64_t first_block,
                            int64_t last_block);

typedef struct Jit Jit;

/* Returns NULL with a message in err on failure. */
Jit *jit_compile(Module *m, char *err, size_t cap);

/* An LLJIT over host object code (emit.h's EMIT_OBJ, e.g. from the kernel cache):
 * the JIT only links it. NULL with a message in err on failure. */
Jit *jit_load_object(const char *obj, size_t len, char *err, size_t cap);

/* The entry of kernel name; NULL with the reason in err (err may be NULL). */
CpuKernelFn jit_find(Jit *j, const char *name, char *err, size_t cap);

/* The entry of kernel kernel_name, or NULL if the module has no such kernel. */
CpuKernelFn jit_lookup(Jit *j, const char *kernel_name);

/* Frees the JIT and its code; functions looked up from it become invalid. NULL is ok. */
void jit_free(Jit *j);

#endif
