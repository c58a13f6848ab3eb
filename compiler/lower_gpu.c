/* lower_gpu.c: the NVPTX primitives of the lowering.
 *
 * Kernel signature and nvvm.annotations (LLVM 16 marks kernels with metadata, not
 * a calling convention), special registers for thread/block ids, barriers, warp
 * shuffles for warp_reduce, addrspace(3) globals for shared arrays, and exp/log:
 * llvm.exp.f32 does not lower on NVPTX in LLVM 16, so exp is built on
 * ex2.approx with an exact correction of the x*log2(e) rounding. */
#include <stdio.h>
#include <string.h>

#include "lower_impl.h"
#include "passes.h"

enum { AS_GLOBAL = 1, AS_SHARED = 3 };
enum { SHARED_LIMIT = 48 * 1024 };   /* static shared memory per block */

LLVMValueRef gpu_kernel_function(Lower *L) {
  Kernel *k = L->k;
  LLVMTypeRef ps[32];
  for (int i = 0; i < k->nparams; i++)
    ps[i] = k->params[i].buf ? LLVMPointerTypeInContext(L->ctx, AS_GLOBAL)
                             : lower_type(L, k->params[i].type);
  LLVMTypeRef fty = LLVMFunctionType(L->t_void, ps, (unsigned)k->nparams, 0);
  LLVMValueRef fn = LLVMAddFunction(L->mod, k->name, fty);
  lower_add_attr(L, fn, LLVMAttributeFunctionIndex, "nounwind");
  for (int i = 0; i < k->nparams; i++) {
    Buf *buf = k->params[i].buf;
    if (!buf)
      continue;
    /* noalias + readonly lets NVPTX use the read-only data cache (ld.global.nc) */
    lower_add_attr(L, fn, (unsigned)i + 1, "noalias");
    if (buf->role == ROLE_IN)
      lower_add_attr(L, fn, (unsigned)i + 1, "readonly");
  }
  return fn;
}

static void annotate(Lower *L, const char *key, int value) {
  LLVMMetadataRef md[3] = {
      LLVMValueAsMetadata(L->fn), LLVMMDStringInContext2(L->ctx, key, strlen(key)),
      LLVMValueAsMetadata(LLVMConstInt(L->t_i32, (unsigned long long)value, 0))};
  LLVMAddNamedMetadataOperand(L->mod, "nvvm.annotations",
                              LLVMMetadataAsValue(L->ctx, LLVMMDNodeInContext2(L->ctx, md, 3)));
}

void gpu_annotate(Lower *L) {
  annotate(L, "kernel", 1);
  annotate(L, "maxntidx", IR_WARP_SIZE * L->k->warps);
  /* Without a minimum of one block per SM, ptxas treats .maxntid as an occupancy
   * target and spills a few cold values; one resident block is all we ask. */
  annotate(L, "minctasm", 1);
}

LLVMValueRef gpu_shared_buffer(Lower *L, Buf *buf) {
  int64_t bytes = 0;
  for (int i = 0; i < L->k->nbufs; i++) {
    const Buf *b = L->k->bufs[i];
    if (b->space == SPACE_SHARED && b->size > 0)
      bytes += b->size * ((ir_type_bits(b->elem) + 7) / 8);
  }
  if (buf->size <= 0 || bytes > SHARED_LIMIT) {
    lower_fail(L, "shared arrays take %lld bytes; a block has at most %d of static shared memory",
               (long long)bytes, SHARED_LIMIT);
    return LLVMGetUndef(LLVMPointerTypeInContext(L->ctx, AS_SHARED));
  }
  char name[128];
  snprintf(name, sizeof name, "%s.%s", L->k->name, buf->name);
  LLVMTypeRef at = LLVMArrayType(lower_type(L, buf->elem), (unsigned)buf->size);
  LLVMValueRef g = LLVMAddGlobalInAddressSpace(L->mod, at, name, AS_SHARED);
  LLVMSetLinkage(g, LLVMInternalLinkage);
  LLVMSetInitializer(g, LLVMGetUndef(at));
  LLVMSetAlignment(g, 16);
  return g;
}

static LLVMValueRef sreg(Lower *L, const char *name) {
  return lower_intrinsic(L, name, NULL, 0, NULL, 0);
}

LLVMValueRef gpu_thread_id(Lower *L) {
  LLVMValueRef tid = sreg(L, "llvm.nvvm.read.ptx.sreg.tid.x");
  /* !range [0, threads): lets LLVM drop sign extensions of tid-based indices */
  LLVMMetadataRef r[2] = {
      LLVMValueAsMetadata(LLVMConstInt(L->t_i32, 0, 0)),
      LLVMValueAsMetadata(LLVMConstInt(L->t_i32, (unsigned)(IR_WARP_SIZE * L->k->warps), 0))};
  LLVMSetMetadata(tid, LLVMGetMDKindIDInContext(L->ctx, "range", 5),
                  LLVMMetadataAsValue(L->ctx, LLVMMDNodeInContext2(L->ctx, r, 2)));
  return tid;
}

LLVMValueRef gpu_block_id(Lower *L, int dim) {
  static const char *const names[3] = {"llvm.nvvm.read.ptx.sreg.ctaid.x",
                                       "llvm.nvvm.read.ptx.sreg.ctaid.y",
                                       "llvm.nvvm.read.ptx.sreg.ctaid.z"};
  return sreg(L, names[dim < 0 || dim > 2 ? 0 : dim]);
}

void gpu_barrier(Lower *L) { lower_intrinsic(L, "llvm.nvvm.barrier0", NULL, 0, NULL, 0); }

void gpu_warpsync(Lower *L) {
  LLVMValueRef mask = LLVMConstInt(L->t_i32, 0xffffffffu, 0);
  lower_intrinsic(L, "llvm.nvvm.bar.warp.sync", NULL, 0, &mask, 1);
}

/* shfl.sync.bfly of a 32-bit value: lane l receives lane l^offset's v. */
static LLVMValueRef shfl32(Lower *L, LLVMValueRef v, int offset) {
  bool f = LLVMGetTypeKind(LLVMTypeOf(v)) == LLVMFloatTypeKind;
  LLVMValueRef args[4] = {LLVMConstInt(L->t_i32, 0xffffffffu, 0), v,
                          LLVMConstInt(L->t_i32, (unsigned)offset, 0),
                          LLVMConstInt(L->t_i32, 31, 0)};
  return lower_intrinsic(L, f ? "llvm.nvvm.shfl.sync.bfly.f32" : "llvm.nvvm.shfl.sync.bfly.i32",
                         NULL, 0, args, 4);
}

/* 64-bit values travel as two 32-bit halves. */
static LLVMValueRef shfl(Lower *L, Type t, LLVMValueRef v, int offset) {
  if (ir_type_bits(t) == 32)
    return shfl32(L, v, offset);
  LLVMBuilderRef b = L->b;
  LLVMValueRef bits = t == TY_F64 ? LLVMBuildBitCast(b, v, L->t_i64, "") : v;
  LLVMValueRef lo = LLVMBuildTrunc(b, bits, L->t_i32, "");
  LLVMValueRef hi =
      LLVMBuildTrunc(b, LLVMBuildLShr(b, bits, LLVMConstInt(L->t_i64, 32, 0), ""), L->t_i32, "");
  lo = LLVMBuildZExt(b, shfl32(L, lo, offset), L->t_i64, "");
  hi = LLVMBuildZExt(b, shfl32(L, hi, offset), L->t_i64, "");
  bits = LLVMBuildOr(b, lo, LLVMBuildShl(b, hi, LLVMConstInt(L->t_i64, 32, 0), ""), "");
  return t == TY_F64 ? LLVMBuildBitCast(b, bits, L->t_f64, "") : bits;
}

/* Butterfly all-reduce: after offsets 16..1 every lane holds the combination of all
 * 32 (bitwise equal across lanes: each step combines the same pair commutatively). */
LLVMValueRef gpu_warp_reduce(Lower *L, RedKind red, Type t, LLVMValueRef v) {
  static const OpKind kinds[] = {[RED_ADD] = OP_ADD, [RED_MAX] = OP_MAX, [RED_MIN] = OP_MIN};
  if (!ir_type_is_int(t) && !ir_type_is_float(t)) {
    lower_fail(L, "warp_reduce of %s is not supported", ir_type_name(t));
    return v;
  }
  for (int offset = IR_WARP_SIZE / 2; offset > 0; offset /= 2)
    v = lower_combine(L, kinds[red], t, v, shfl(L, t, v, offset));
  return v;
}

static LLVMValueRef f32c(Lower *L, double v) { return LLVMConstReal(L->t_f32, v); }

static LLVMValueRef fma32(Lower *L, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c) {
  LLVMValueRef args[3] = {a, b, c};
  return lower_intrinsic(L, "llvm.fma", &L->t_f32, 1, args, 3);
}

/* Clamps with compares that are false on NaN, so NaN passes through. */
static LLVMValueRef clamp_keep_nan(Lower *L, LLVMValueRef x, double lo, double hi) {
  LLVMBuilderRef b = L->b;
  x = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOLT, x, f32c(L, lo), ""), f32c(L, lo), x, "");
  return LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGT, x, f32c(L, hi), ""), f32c(L, hi), x, "");
}

/* exp(x) = 2^p * 2^e with p = fl(x*log2e) and e = x*log2e - p computed exactly by fma
 * (plus the error of log2e's f32 rounding). 2^e ~ 1 + e*ln2 since |e| < 2^-16.
 * Error: ex2.approx's (about 2 ulp) plus about 1.5 ulp; results below FLT_MIN
 * flush to 0 (ftz), x >= 88.73 gives +inf, NaN propagates. */
LLVMValueRef gpu_exp(Lower *L, Type t, LLVMValueRef x) {
  if (t != TY_F32) {
    lower_fail(L, "exp on %s is not supported on NVPTX", ir_type_name(t));
    return x;
  }
  const double log2e_hi = 1.44269502162933349609375;     /* (float)log2(e) */
  const double log2e_lo = 1.925963033500011e-08;         /* log2(e) - log2e_hi */
  LLVMBuilderRef b = L->b;
  x = clamp_keep_nan(L, x, -104.0, 89.0);   /* keeps p and e finite */
  LLVMValueRef p = LLVMBuildFMul(b, x, f32c(L, log2e_hi), "");
  LLVMValueRef e = fma32(L, x, f32c(L, log2e_hi), LLVMBuildFNeg(b, p, ""));
  e = fma32(L, x, f32c(L, log2e_lo), e);
  LLVMValueRef r = lower_intrinsic(L, "llvm.nvvm.ex2.approx.ftz.f", NULL, 0, &p, 1);
  LLVMValueRef c = fma32(L, e, f32c(L, 0.693147180559945309), f32c(L, 1.0));
  return LLVMBuildFMul(b, r, c, "");   /* not fma(r, e*ln2, r): that is NaN for r = inf */
}

LLVMValueRef gpu_log(Lower *L, Type t, LLVMValueRef x) {
  if (t != TY_F32) {
    lower_fail(L, "log on %s is not supported on NVPTX", ir_type_name(t));
    return x;
  }
  return math_log_f32(L, x);
}
