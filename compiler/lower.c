/* lower.c: crisp IR -> LLVM IR through the LLVM C API (see lower.h).
 *
 * This file holds the module and per-kernel driver and the helpers every lowering
 * file uses; each op is lowered in lower_ops.c (values, arithmetic, memory,
 * structured control flow), target primitives in lower_gpu.c and lower_host.c,
 * math expansions in lower_math.c. Values are mapped by op id (ir_number), which
 * is valid because the IR is lexically scoped: a use is always dominated by its
 * definition once nested blocks become nested LLVM regions. */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/DebugInfo.h>

#include "emit.h"
#include "lower_impl.h"
#include "passes.h"

/* ---- helpers shared by the lowering files ---- */

void lower_fail(Lower *L, const char *fmt, ...) {
  if (L->failed)
    return;
  L->failed = true;
  int n = snprintf(L->err, L->cap, "kernel %s: ", L->k ? L->k->name : "?");
  if (n < 0 || (size_t)n >= L->cap)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(L->err + n, L->cap - (size_t)n, fmt, ap);
  va_end(ap);
}

LLVMTypeRef lower_type(Lower *L, Type t) {
  switch (t) {
  case TY_BOOL: return L->t_bool;
  case TY_I32: return L->t_i32;
  case TY_I64: return L->t_i64;
  case TY_F32: return L->t_f32;
  case TY_F64: return L->t_f64;
  default: return L->t_void;
  }
}

LLVMValueRef lower_const_int(Lower *L, Type t, int64_t v) {
  return LLVMConstInt(lower_type(L, t), (unsigned long long)v, 1);
}

LLVMValueRef lower_const_f(Lower *L, Type t, double v) {
  return LLVMConstReal(lower_type(L, t), v);
}

LLVMValueRef lower_intrinsic(Lower *L, const char *name, LLVMTypeRef *over, unsigned nover,
                             LLVMValueRef *args, unsigned nargs) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  if (!id) {   /* the names are fixed in this code: a miss is a bug here, not bad input */
    fprintf(stderr, "crisp: LLVM 16 has no intrinsic %s\n", name);
    abort();
  }
  LLVMValueRef fn = LLVMGetIntrinsicDeclaration(L->mod, id, over, nover);
  LLVMTypeRef ty = LLVMIntrinsicGetType(L->ctx, id, over, nover);
  return LLVMBuildCall2(L->b, ty, fn, args, nargs, "");
}

LLVMValueRef lower_fmuladd(Lower *L, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c) {
  LLVMTypeRef t = LLVMTypeOf(a);
  LLVMValueRef args[3] = {a, b, c};
  return lower_intrinsic(L, "llvm.fmuladd", &t, 1, args, 3);
}

LLVMValueRef lower_combine(Lower *L, OpKind kind, Type t, LLVMValueRef a, LLVMValueRef b) {
  bool f = ir_type_is_float(t);
  if (kind == OP_ADD)
    return f ? LLVMBuildFAdd(L->b, a, b, "") : LLVMBuildAdd(L->b, a, b, "");
  if (f) {
    LLVMTypeRef ty = lower_type(L, t);
    LLVMValueRef args[2] = {a, b};
    return lower_intrinsic(L, kind == OP_MIN ? "llvm.minnum" : "llvm.maxnum", &ty, 1, args, 2);
  }
  LLVMIntPredicate p = kind == OP_MIN ? LLVMIntSLT : LLVMIntSGT;
  return LLVMBuildSelect(L->b, LLVMBuildICmp(L->b, p, a, b, ""), a, b, "");
}

LLVMValueRef lower_alloca(Lower *L, LLVMTypeRef t, const char *name) {
  return LLVMBuildAlloca(L->allocas, t, name ? name : "");
}

void lower_add_attr(Lower *L, LLVMValueRef fn, unsigned idx, const char *name) {
  unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
  LLVMAddAttributeAtIndex(fn, idx, LLVMCreateEnumAttribute(L->ctx, kind, 0));
}

void lower_buffer_attrs(Lower *L, LLVMValueRef fn, const Kernel *k) {
  for (int i = 0; i < k->nparams; i++) {
    Buf *buf = k->params[i].buf;
    if (!buf)
      continue;
    lower_add_attr(L, fn, (unsigned)i + 1, "noalias");
    if (buf->role == ROLE_IN)
      lower_add_attr(L, fn, (unsigned)i + 1, "readonly");
  }
}

/* ---- kernels and the module ---- */

static bool check_kernel(Lower *L, Kernel *k) {
  MapTarget want = target_is_gpu(L->target) ? MAP_GPU : MAP_CPU;
  if (!k->mapped || k->target != (int)want) {
    lower_fail(L, "not mapped for %s (run ir_map with %s first)", target_name(L->target),
               want == MAP_GPU ? "MAP_GPU" : "MAP_CPU");
    return false;
  }
  if (LLVMGetNamedFunction(L->mod, k->name)) {
    lower_fail(L, "a second kernel of this name in the module");
    return false;
  }
  if (k->nparams > 32 || k->nbufs > 32) {
    lower_fail(L, "too many parameters or buffers");
    return false;
  }
  return true;
}

static void lower_kernel(Lower *L, Kernel *k) {
  L->k = k;
  if (!check_kernel(L, k))
    return;
  ir_number(k);
  L->vals = calloc((size_t)k->next_id + 1, sizeof *L->vals);
  if (!L->vals) {
    lower_fail(L, "out of memory");
    return;
  }
  L->fn = target_is_gpu(L->target) ? gpu_kernel_function(L) : host_body_function(L);
  LLVMBasicBlockRef entry = lower_new_block(L, "entry"), start = lower_new_block(L, "start");
  LLVMPositionBuilderAtEnd(L->allocas, entry);
  LLVMPositionBuilderAtEnd(L->b, start);
  lower_bind_buffers(L);
  lower_block(L, &k->body);
  LLVMBuildRetVoid(L->b);
  LLVMBuildBr(L->allocas, start);   /* entry holds only the frame's allocas */
  free(L->vals);
  L->vals = NULL;
  if (L->failed)
    return;
  if (target_is_gpu(L->target))
    gpu_annotate(L);
  else
    host_entry_wrapper(L, L->fn);
}

static void init_types(Lower *L) {
  LLVMContextRef c = L->ctx;
  L->t_void = LLVMVoidTypeInContext(c);
  L->t_bool = LLVMInt1TypeInContext(c);
  L->t_i8 = LLVMInt8TypeInContext(c);
  L->t_i32 = LLVMInt32TypeInContext(c);
  L->t_i64 = LLVMInt64TypeInContext(c);
  L->t_f32 = LLVMFloatTypeInContext(c);
  L->t_f64 = LLVMDoubleTypeInContext(c);
  L->t_ptr = LLVMPointerTypeInContext(c, 0);
}

/* LLVM prints "loop not vectorized" warnings for every `vectorize` loop it cannot
 * vectorise (float min/max reductions need nnan/nsz flags that LLVM 16's C API
 * cannot set; NVPTX has no vector registers). They are expected, so only errors
 * are shown unless CRISP_LLVM_REMARKS is set. */
static void diagnostics(LLVMDiagnosticInfoRef di, void *unused) {
  (void)unused;
  if (LLVMGetDiagInfoSeverity(di) != LLVMDSError && !getenv("CRISP_LLVM_REMARKS"))
    return;
  char *msg = LLVMGetDiagInfoDescription(di);
  fprintf(stderr, "crisp: LLVM: %s\n", msg);
  LLVMDisposeMessage(msg);
}

LLVMModuleRef lower_module(LLVMContextRef ctx, Module *m, Target t, char *err, size_t cap) {
  if (!LLVMContextGetDiagnosticHandler(ctx))
    LLVMContextSetDiagnosticHandler(ctx, diagnostics, NULL);
  LLVMTargetMachineRef tm = emit_target_machine(t, err, cap);
  if (!tm)
    return NULL;
  Lower L = {.ctx = ctx, .target = t, .err = err, .cap = cap};
  L.mod = LLVMModuleCreateWithNameInContext("crisp", ctx);
  emit_set_layout(L.mod, tm);
  LLVMDisposeTargetMachine(tm);
  init_types(&L);
  L.b = LLVMCreateBuilderInContext(ctx);
  L.allocas = LLVMCreateBuilderInContext(ctx);
  if (!target_is_gpu(t)) {
    L.host_cpu = LLVMGetHostCPUName();
    L.host_features = LLVMGetHostCPUFeatures();
  }
  for (int i = 0; i < m->n && !L.failed; i++)
    lower_kernel(&L, m->kernels[i]);
  LLVMDisposeBuilder(L.b);
  LLVMDisposeBuilder(L.allocas);
  LLVMDisposeMessage(L.host_cpu);
  LLVMDisposeMessage(L.host_features);
  if (L.failed) {
    LLVMDisposeModule(L.mod);
    return NULL;
  }
  return L.mod;
}
