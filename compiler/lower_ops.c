/* lower_ops.c: each IR op to LLVM IR, for both targets.
 *
 * Values (by op id), arithmetic, compares and casts, memory (global, shared,
 * frame arrays, atomics), vars, and structured control flow (for loops with their
 * vectorisation hints, if/else), dispatching the target primitives to lower_gpu.c
 * and lower_host.c. Apart from lower.c, which drives kernels and the module and
 * holds the helpers every lowering file uses: this file is the op-by-op
 * translation. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/DebugInfo.h>

#include "lower_impl.h"
#include "passes.h"

/* ---- values ---- */

static LLVMValueRef value(Lower *L, const Op *op) {
  LLVMValueRef v = op && op->id >= 0 && op->id < L->k->next_id ? L->vals[op->id] : NULL;
  if (v)
    return v;
  lower_fail(L, "%%%d (%s) is used but has no value here", op ? op->id : -1,
             op ? ir_op_name(op->kind) : "null");
  return LLVMGetUndef(op && op->type != TY_VOID ? lower_type(L, op->type) : L->t_i32);
}

static void define(Lower *L, const Op *op, LLVMValueRef v) {
  if (op->id >= 0 && op->id < L->k->next_id)
    L->vals[op->id] = v;
  else
    lower_fail(L, "%s op without a number", ir_op_name(op->kind));
}

static LLVMValueRef lower_const(Lower *L, const Op *op) {
  if (ir_type_is_float(op->type))
    return lower_const_f(L, op->type, op->fval);
  if (op->type == TY_BOOL)
    return LLVMConstInt(L->t_bool, op->ival != 0, 0);
  return lower_const_int(L, op->type, op->ival);
}

/* ---- arithmetic ---- */

static LLVMValueRef lower_binary(Lower *L, const Op *op) {
  LLVMBuilderRef b = L->b;
  LLVMValueRef x = value(L, op->a[0]), y = value(L, op->a[1]);
  bool f = ir_type_is_float(op->type);
  switch (op->kind) {
  case OP_ADD: case OP_MIN: case OP_MAX:
    return lower_combine(L, op->kind, op->type, x, y);
  case OP_SUB: return f ? LLVMBuildFSub(b, x, y, "") : LLVMBuildSub(b, x, y, "");
  case OP_MUL: return f ? LLVMBuildFMul(b, x, y, "") : LLVMBuildMul(b, x, y, "");
  case OP_DIV: return f ? LLVMBuildFDiv(b, x, y, "") : LLVMBuildSDiv(b, x, y, "");
  case OP_REM: return f ? LLVMBuildFRem(b, x, y, "") : LLVMBuildSRem(b, x, y, "");
  case OP_AND: return LLVMBuildAnd(b, x, y, "");
  case OP_OR: return LLVMBuildOr(b, x, y, "");
  case OP_XOR: return LLVMBuildXor(b, x, y, "");
  case OP_SHL: return LLVMBuildShl(b, x, y, "");
  default: return LLVMBuildLShr(b, x, y, "");   /* OP_SHR is a logical shift */
  }
}

static LLVMValueRef float_intrinsic(Lower *L, const char *name, Type t, LLVMValueRef x) {
  LLVMTypeRef ty = lower_type(L, t);
  return lower_intrinsic(L, name, &ty, 1, &x, 1);
}

static LLVMValueRef lower_unary(Lower *L, const Op *op) {
  LLVMValueRef x = value(L, op->a[0]);
  bool gpu = target_is_gpu(L->target);
  switch (op->kind) {
  case OP_NEG:
    if (ir_type_is_float(op->type))
      return LLVMBuildFNeg(L->b, x, "");
    return LLVMBuildNeg(L->b, x, "");   /* wraps; on i1 the identity, as in the interpreter */
  case OP_EXP: return gpu ? gpu_exp(L, op->type, x) : host_exp(L, op->type, x);
  case OP_LOG: return gpu ? gpu_log(L, op->type, x) : host_log(L, op->type, x);
  case OP_SQRT: return float_intrinsic(L, "llvm.sqrt", op->type, x);
  default: return float_intrinsic(L, "llvm.fabs", op->type, x);   /* OP_ABS */
  }
}

/* llvm.cttz with is_zero_poison false: defined for 0 (the width), as the
 * interpreter has it; x86 lowers it to tzcnt, NVPTX to brev + clz. */
static LLVMValueRef lower_ctz(Lower *L, const Op *op) {
  LLVMTypeRef ty = lower_type(L, op->type);
  LLVMValueRef args[2] = {value(L, op->a[0]), LLVMConstInt(LLVMInt1TypeInContext(L->ctx), 0, 0)};
  return lower_intrinsic(L, "llvm.cttz", &ty, 1, args, 2);
}

/* As the interpreter (ir/interp.c) defines them: float predicates are all ordered,
 * != too (false on NaN); ints are signed except ULT/UGE; bools compare as signed i1
 * (true = -1), which is what LLVM's signed predicates on i1 do. */
static LLVMValueRef lower_cmp(Lower *L, const Op *op) {
  static const LLVMRealPredicate fp[] = {
      [CMP_EQ] = LLVMRealOEQ, [CMP_NE] = LLVMRealONE, [CMP_LT] = LLVMRealOLT,
      [CMP_LE] = LLVMRealOLE, [CMP_GT] = LLVMRealOGT, [CMP_GE] = LLVMRealOGE,
      [CMP_ULT] = LLVMRealOLT, [CMP_UGE] = LLVMRealOGE};   /* (the verifier rejects these two) */
  static const LLVMIntPredicate ip[] = {
      [CMP_EQ] = LLVMIntEQ, [CMP_NE] = LLVMIntNE, [CMP_LT] = LLVMIntSLT, [CMP_LE] = LLVMIntSLE,
      [CMP_GT] = LLVMIntSGT, [CMP_GE] = LLVMIntSGE, [CMP_ULT] = LLVMIntULT,
      [CMP_UGE] = LLVMIntUGE};
  LLVMValueRef x = value(L, op->a[0]), y = value(L, op->a[1]);
  if (ir_type_is_float(op->a[0]->type))
    return LLVMBuildFCmp(L->b, fp[op->pred], x, y, "");
  return LLVMBuildICmp(L->b, ip[op->pred], x, y, "");
}

static LLVMValueRef lower_cast(Lower *L, const Op *op) {
  LLVMValueRef x = value(L, op->a[0]);
  Type from = op->a[0]->type, to = op->type;
  LLVMTypeRef ty = lower_type(L, to);
  bool ff = ir_type_is_float(from), tf = ir_type_is_float(to);
  if (from == to)
    return x;
  if (from == TY_BOOL)   /* true is 1, not -1 */
    return tf ? LLVMBuildUIToFP(L->b, x, ty, "") : LLVMBuildZExt(L->b, x, ty, "");
  if (!ff && tf)
    return LLVMBuildSIToFP(L->b, x, ty, "");
  if (ff && !tf)
    return LLVMBuildFPToSI(L->b, x, ty, "");
  bool wider = ir_type_bits(to) > ir_type_bits(from);
  if (ff)
    return wider ? LLVMBuildFPExt(L->b, x, ty, "") : LLVMBuildFPTrunc(L->b, x, ty, "");
  return wider ? LLVMBuildSExt(L->b, x, ty, "") : LLVMBuildTrunc(L->b, x, ty, "");
}

/* ---- memory ---- */

static LLVMValueRef as_i64(Lower *L, const Op *x) {
  LLVMValueRef v = value(L, x);
  return x->type == TY_I64 ? v : LLVMBuildSExt(L->b, v, L->t_i64, "");
}

static LLVMValueRef elem_ptr(Lower *L, const Buf *buf, const Op *index) {
  LLVMValueRef idx = as_i64(L, index);
  return LLVMBuildInBoundsGEP2(L->b, lower_type(L, buf->elem), L->bufs[buf->id], &idx, 1, "");
}

static LLVMValueRef address(Lower *L, const Op *op) { return elem_ptr(L, op->buf, op->a[0]); }

/* llvm.prefetch(ptr, read, locality 3 (keep in every level), data) on the host; the
 * address is a plain (not inbounds) GEP, since a prefetch may point anywhere. The
 * GPU drops the hint. */
static void lower_prefetch(Lower *L, const Op *op) {
  if (target_is_gpu(L->target))
    return;
  LLVMValueRef idx = as_i64(L, op->a[0]);
  LLVMValueRef ptr = LLVMBuildGEP2(L->b, lower_type(L, op->buf->elem), L->bufs[op->buf->id], &idx,
                                   1, "");
  LLVMValueRef args[4] = {ptr, LLVMConstInt(L->t_i32, 0, 0), LLVMConstInt(L->t_i32, 3, 0),
                          LLVMConstInt(L->t_i32, 1, 0)};
  LLVMTypeRef over = L->t_ptr;
  lower_intrinsic(L, "llvm.prefetch", &over, 1, args, 4);
}

/* Only the host gets here: the GPU mapping expands transpose16 into a lane loop. */
static void lower_transpose(Lower *L, const Op *op) {
  if (target_is_gpu(L->target)) {
    lower_fail(L, "%%%d: transpose16 in a GPU kernel (ir_map expands it)", op->id);
    return;
  }
  host_transpose16(L, elem_ptr(L, op->buf, op->a[0]), op->ival, elem_ptr(L, op->src, op->a[1]),
                   as_i64(L, op->a[2]), as_i64(L, op->a[3]));
}

static LLVMValueRef lower_load(Lower *L, const Op *op) {
  return LLVMBuildLoad2(L->b, lower_type(L, op->type), address(L, op), "");
}

static void lower_store(Lower *L, const Op *op) {
  LLVMBuildStore(L->b, value(L, op->a[1]), address(L, op));
}

/* A relaxed (monotonic) atomicrmw add returning the old value: atom/red .global or
 * .shared on NVPTX, a locked add on the host. A host block runs on one thread, so
 * its shared arrays (frame arrays) take a plain read-modify-write. */
static LLVMValueRef lower_atomic_add(Lower *L, const Op *op) {
  LLVMValueRef ptr = address(L, op), val = value(L, op->a[1]);
  bool f = op->type == TY_F32;
  if (op->buf->space != SPACE_GLOBAL && !target_is_gpu(L->target)) {
    LLVMValueRef old = LLVMBuildLoad2(L->b, lower_type(L, op->type), ptr, "");
    LLVMBuildStore(L->b, f ? LLVMBuildFAdd(L->b, old, val, "") : LLVMBuildAdd(L->b, old, val, ""),
                   ptr);
    return old;
  }
  return LLVMBuildAtomicRMW(L->b, f ? LLVMAtomicRMWBinOpFAdd : LLVMAtomicRMWBinOpAdd, ptr, val,
                            LLVMAtomicOrderingMonotonic, 0);
}

/* Local arrays (and shared ones on the host) live in the entry block's frame. On the
 * host each starts a cache line: the vector loops read them a full 64-byte zmm at a
 * time, and at 16-byte alignment such loads straddled two lines (the tile kernels'
 * slots and packed rows; docs/kernels.md, "Frame arrays on a cache line"). */
static LLVMValueRef frame_array(Lower *L, const Buf *buf) {
  if (buf->size <= 0 || buf->size > UINT_MAX) {
    lower_fail(L, "array %s has size %lld", buf->name, (long long)buf->size);
    return LLVMGetUndef(L->t_ptr);
  }
  LLVMTypeRef at = LLVMArrayType(lower_type(L, buf->elem), (unsigned)buf->size);
  LLVMValueRef a = lower_alloca(L, at, buf->name);
  LLVMSetAlignment(a, L->target == TARGET_HOST ? 64 : 16);
  return a;
}

void lower_bind_buffers(Lower *L) {
  for (int i = 0; i < L->k->nbufs && !L->failed; i++) {
    Buf *buf = L->k->bufs[i];
    if (buf->space == SPACE_GLOBAL)
      L->bufs[i] = LLVMGetParam(L->fn, (unsigned)buf->param);
    else if (buf->space == SPACE_SHARED && target_is_gpu(L->target))
      L->bufs[i] = gpu_shared_buffer(L, buf);
    else
      L->bufs[i] = frame_array(L, buf);
  }
  for (int i = 0; i < L->k->nparams; i++)
    L->params[i] = L->k->params[i].buf ? NULL : LLVMGetParam(L->fn, (unsigned)i);
}

/* ---- structured control flow ---- */

LLVMBasicBlockRef lower_new_block(Lower *L, const char *name) {
  return LLVMAppendBasicBlockInContext(L->ctx, L->fn, name);
}

static LLVMMetadataRef md_str(Lower *L, const char *s) {
  return LLVMMDStringInContext2(L->ctx, s, strlen(s));
}

/* !{"name", i32 v} (v < 0: !{"name", i1 true}) */
static LLVMMetadataRef md_hint(Lower *L, const char *name, int v) {
  LLVMValueRef c = v < 0 ? LLVMConstInt(L->t_bool, 1, 0) : LLVMConstInt(L->t_i32, (unsigned)v, 0);
  LLVMMetadataRef ops[2] = {md_str(L, name), LLVMValueAsMetadata(c)};
  return LLVMMDNodeInContext2(L->ctx, ops, 2);
}

/* Host lane loops this short are vectorised whole: the loop runs once. */
enum { HOST_VF = 16, HOST_WHOLE_MAX = 8 * HOST_VF };

/* Trip count of a `for` with constant bounds and step 1, else -1. */
static int64_t const_trips(const Op *op) {
  const Op *lo = op->a[0], *hi = op->a[1];
  if (lo->kind != OP_CONST || hi->kind != OP_CONST || op->ival != 1)
    return -1;
  return hi->ival - lo->ival;
}

/* !{self, !{"llvm.loop.vectorize.enable", i1 true}, ...}: the vectoriser may reorder
 * the loop's float reductions (the IR's `vectorize` promises reassociation is fine).
 * On the host, a constant-length loop of at most HOST_WHOLE_MAX lanes (the d or key
 * lanes of a register tile) is vectorised whole: width 16, interleave trips / 16,
 * and no unrolling before the vectoriser. Otherwise LLVM fully unrolls a short loop
 * to scalars first and SLP leaves the tile as scalar fmas spilled to the stack
 * (MiniLM's d = 32: 12% packed fmas in the profile, a 1.3x slower training step). */
static void mark_vectorize(Lower *L, LLVMValueRef br, int64_t trips) {
  LLVMMetadataRef self = LLVMTemporaryMDNode(L->ctx, NULL, 0);
  LLVMMetadataRef ops[5] = {self, md_hint(L, "llvm.loop.vectorize.enable", -1)};
  size_t n = 2;
  if (!target_is_gpu(L->target) && trips >= HOST_VF && trips <= HOST_WHOLE_MAX &&
      trips % HOST_VF == 0) {
    ops[n++] = md_hint(L, "llvm.loop.vectorize.width", HOST_VF);
    ops[n++] = md_hint(L, "llvm.loop.interleave.count", (int)(trips / HOST_VF));
    ops[n++] = md_hint(L, "llvm.loop.unroll.disable", -1);
  }
  LLVMMetadataRef loop = LLVMMDNodeInContext2(L->ctx, ops, n);
  LLVMMetadataReplaceAllUsesWith(self, loop);   /* also frees the temporary node */
  LLVMSetMetadata(br, LLVMGetMDKindIDInContext(L->ctx, "llvm.loop", 9),
                  LLVMMetadataAsValue(L->ctx, loop));
}

/* preheader -> header (i < hi?) -> body ... -> latch (i += step) -> header | exit */
static void lower_for(Lower *L, const Op *op) {
  Type t = op->a[0]->type;
  LLVMValueRef lo = value(L, op->a[0]), hi = value(L, op->a[1]);
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(L->b);
  LLVMBasicBlockRef header = lower_new_block(L, "for.header"), body = lower_new_block(L, "for.body");
  LLVMBasicBlockRef latch = lower_new_block(L, "for.latch"), exit = lower_new_block(L, "for.exit");
  LLVMBuildBr(L->b, header);
  LLVMPositionBuilderAtEnd(L->b, header);
  LLVMValueRef i = LLVMBuildPhi(L->b, lower_type(L, t), op->index->hint ? op->index->hint : "i");
  LLVMBuildCondBr(L->b, LLVMBuildICmp(L->b, LLVMIntSLT, i, hi, ""), body, exit);
  define(L, op->index, i);
  LLVMPositionBuilderAtEnd(L->b, body);
  lower_block(L, &op->body);
  LLVMBuildBr(L->b, latch);
  LLVMPositionBuilderAtEnd(L->b, latch);
  LLVMValueRef next = LLVMBuildNSWAdd(L->b, i, lower_const_int(L, t, op->ival), "");
  LLVMValueRef back = LLVMBuildBr(L->b, header);
  if (op->vectorize)
    mark_vectorize(L, back, const_trips(op));
  LLVMValueRef in_vals[2] = {lo, next};
  LLVMBasicBlockRef in_blocks[2] = {pre, latch};
  LLVMAddIncoming(i, in_vals, in_blocks, 2);
  LLVMPositionBuilderAtEnd(L->b, exit);
}

static void lower_if(Lower *L, const Op *op) {
  LLVMValueRef cond = value(L, op->a[0]);
  LLVMBasicBlockRef then = lower_new_block(L, "if.then");
  LLVMBasicBlockRef els = op->els.n ? lower_new_block(L, "if.else") : NULL;
  LLVMBasicBlockRef merge = lower_new_block(L, "if.end");
  LLVMBuildCondBr(L->b, cond, then, els ? els : merge);
  LLVMPositionBuilderAtEnd(L->b, then);
  lower_block(L, &op->body);
  LLVMBuildBr(L->b, merge);
  if (els) {
    LLVMPositionBuilderAtEnd(L->b, els);
    lower_block(L, &op->els);
    LLVMBuildBr(L->b, merge);
  }
  LLVMPositionBuilderAtEnd(L->b, merge);
}

/* ---- ops ---- */

/* Ops that exist only on one target, or only before mapping. */
static bool check_target_op(Lower *L, const Op *op) {
  switch (op->kind) {
  case OP_PFOR: case OP_REDUCE: case OP_YIELD:
    lower_fail(L, "%%%d: %s left in a mapped kernel (run ir_map first)", op->id,
               ir_op_name(op->kind));
    return false;
  case OP_INDEX:
    lower_fail(L, "%%%d: an index value placed in a block", op->id);
    return false;
  case OP_THREAD_ID: case OP_WARP_REDUCE: case OP_WARPSYNC:
    if (!target_is_gpu(L->target)) {
      lower_fail(L, "%%%d: %s in a kernel for the host (a CPU-mapped kernel has no threads)",
                 op->id, ir_op_name(op->kind));
      return false;
    }
    return true;
  default:
    return true;
  }
}

static LLVMValueRef lower_value(Lower *L, const Op *op) {
  bool gpu = target_is_gpu(L->target);
  switch (op->kind) {
  case OP_CONST: return lower_const(L, op);
  case OP_PARAM:
    if (op->ival >= 0 && op->ival < L->k->nparams && L->params[op->ival])
      return L->params[op->ival];
    lower_fail(L, "%%%d: parameter %lld is not a scalar parameter", op->id, (long long)op->ival);
    return LLVMGetUndef(lower_type(L, op->type));
  case OP_BLOCK_ID:
    return gpu ? gpu_block_id(L, (int)op->ival)
               : LLVMGetParam(L->fn, (unsigned)(L->k->nparams + op->ival));
  case OP_FMA:
    return lower_fmuladd(L, value(L, op->a[0]), value(L, op->a[1]), value(L, op->a[2]));
  case OP_NEG: case OP_EXP: case OP_LOG: case OP_SQRT: case OP_ABS:
    return lower_unary(L, op);
  case OP_CTZ: return lower_ctz(L, op);
  case OP_CMP: return lower_cmp(L, op);
  case OP_SELECT:
    return LLVMBuildSelect(L->b, value(L, op->a[0]), value(L, op->a[1]), value(L, op->a[2]), "");
  case OP_CAST: return lower_cast(L, op);
  case OP_BITCAST:
    return LLVMBuildBitCast(L->b, value(L, op->a[0]), lower_type(L, op->type), "");
  case OP_LOAD: return lower_load(L, op);
  case OP_ATOMIC_ADD: return lower_atomic_add(L, op);
  case OP_GET: return LLVMBuildLoad2(L->b, lower_type(L, op->type), value(L, op->var), "");
  case OP_THREAD_ID: return gpu_thread_id(L);
  case OP_WARP_REDUCE: return gpu_warp_reduce(L, op->red, op->type, value(L, op->a[0]));
  default: return lower_binary(L, op);
  }
}

static void lower_op(Lower *L, const Op *op) {
  if (!check_target_op(L, op))
    return;
  switch (op->kind) {
  case OP_STORE: lower_store(L, op); return;
  case OP_TRANSPOSE: lower_transpose(L, op); return;
  case OP_PREFETCH: lower_prefetch(L, op); return;
  case OP_VAR: {
    LLVMValueRef slot = lower_alloca(L, lower_type(L, op->type), op->hint);
    LLVMBuildStore(L->b, value(L, op->a[0]), slot);
    define(L, op, slot);
    return;
  }
  case OP_SET: LLVMBuildStore(L->b, value(L, op->a[0]), value(L, op->var)); return;
  case OP_FOR: lower_for(L, op); return;
  case OP_IF: lower_if(L, op); return;
  case OP_BARRIER:
    if (target_is_gpu(L->target))   /* one thread runs a block on the host */
      gpu_barrier(L);
    return;
  case OP_WARPSYNC: gpu_warpsync(L); return;
  default:
    break;
  }
  if (ir_op_has_result(op))
    define(L, op, lower_value(L, op));
  else
    lower_fail(L, "%%%d: cannot lower a %s without a result", op->id, ir_op_name(op->kind));
}

void lower_block(Lower *L, const Block *blk) {
  for (int i = 0; i < blk->n && !L->failed; i++)
    lower_op(L, blk->ops[i]);
}

