/* lower_impl.h: state and helpers shared by the lowering's files (not a public API).
 *
 *   lower.c       the module and kernels, and the helpers below
 *   lower_ops.c   each op: values, arithmetic, memory, structured control flow
 *   lower_gpu.c   NVPTX: kernel signature and annotations, thread/block ids, barriers,
 *                 warp shuffles, shared memory, exp/log on the GPU
 *   lower_host.c  host: the block-loop entry wrapper, function attributes, an
 *                 inline (vectorisable) exp
 *   lower_math.c  target-neutral math expansions (log) built from plain IR */
#ifndef CRISP_LOWER_IMPL_H
#define CRISP_LOWER_IMPL_H

#include <stdbool.h>

#include "lower.h"

typedef struct Lower {
  LLVMContextRef ctx;
  LLVMModuleRef mod;
  LLVMBuilderRef b;        /* the insertion point of the code being lowered */
  LLVMBuilderRef allocas;  /* end of the entry block: allocas go here */
  Target target;
  Kernel *k;
  LLVMValueRef fn;         /* the function holding the kernel body */
  LLVMValueRef *vals;      /* by op id: the LLVM value of an op (a VAR's alloca) */
  LLVMValueRef bufs[32];   /* by buffer id: its base pointer */
  LLVMValueRef params[32]; /* by parameter index: scalar values */
  char *host_cpu, *host_features; /* host only (LLVM messages) */
  LLVMTypeRef t_void, t_bool, t_i8, t_i32, t_i64, t_f32, t_f64, t_ptr;
  char *err;
  size_t cap;
  bool failed;
} Lower;

/* Records the first error ("kernel NAME: ..."); later ones are dropped. */
void lower_fail(Lower *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

LLVMTypeRef lower_type(Lower *L, Type t);
LLVMValueRef lower_const_int(Lower *L, Type t, int64_t v);
LLVMValueRef lower_const_f(Lower *L, Type t, double v);
/* Calls an intrinsic by name; overloaded ones take their overload types. */
LLVMValueRef lower_intrinsic(Lower *L, const char *name, LLVMTypeRef *over, unsigned nover,
                             LLVMValueRef *args, unsigned nargs);
LLVMValueRef lower_fmuladd(Lower *L, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c);
/* min/max/add as the reductions combine them (signed ints, minnum/maxnum floats). */
LLVMValueRef lower_combine(Lower *L, OpKind kind, Type t, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef lower_alloca(Lower *L, LLVMTypeRef t, const char *name);
void lower_add_attr(Lower *L, LLVMValueRef fn, unsigned idx, const char *name);
/* noalias on every buffer parameter (argument i + 1 for parameter i), readonly on the
 * `in` ones: on NVPTX that lets loads use the read-only data cache (ld.global.nc). */
void lower_buffer_attrs(Lower *L, LLVMValueRef fn, const Kernel *k);

/* Ops (lower_ops.c): a kernel's buffer and scalar parameters bound to the
 * function's arguments (or shared/frame arrays), a block of ops lowered at the
 * builder's position, and a new basic block at the end of the function. */
void lower_bind_buffers(Lower *L);
void lower_block(Lower *L, const Block *blk);
LLVMBasicBlockRef lower_new_block(Lower *L, const char *name);

/* GPU (lower_gpu.c) */
LLVMValueRef gpu_kernel_function(Lower *L);
void gpu_annotate(Lower *L);
LLVMValueRef gpu_shared_buffer(Lower *L, Buf *buf);
LLVMValueRef gpu_thread_id(Lower *L);
LLVMValueRef gpu_block_id(Lower *L, int dim);
void gpu_barrier(Lower *L);
void gpu_warpsync(Lower *L);
LLVMValueRef gpu_warp_reduce(Lower *L, RedKind red, Type t, LLVMValueRef v);
LLVMValueRef gpu_exp(Lower *L, Type t, LLVMValueRef x);
LLVMValueRef gpu_log(Lower *L, Type t, LLVMValueRef x);

/* Host (lower_host.c) */
LLVMValueRef host_body_function(Lower *L);
void host_entry_wrapper(Lower *L, LLVMValueRef body);
void host_function_attrs(Lower *L, LLVMValueRef fn);
LLVMValueRef host_exp(Lower *L, Type t, LLVMValueRef x);
LLVMValueRef host_log(Lower *L, Type t, LLVMValueRef x);
/* transpose16 (ir.h) from element pointers: dst row stride ld, src row stride ss (i64). */
void host_transpose16(Lower *L, LLVMValueRef dst, int64_t ld, LLVMValueRef src, LLVMValueRef ss,
                      LLVMValueRef rows);

/* Target-neutral math (lower_math.c): f32 natural log, ~1-2 ulp, IEEE special cases. */
LLVMValueRef math_log_f32(Lower *L, LLVMValueRef x);

#endif
