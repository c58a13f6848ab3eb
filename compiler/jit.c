/* jit.c: ORC LLJIT over the host lowering, or over host object code (see jit.h).
 *
 * Ownership, which the ORC C API makes easy to get wrong: the thread-safe module
 * owns the LLVM module and shares the thread-safe context; adding it to the JIT
 * transfers it (on failure we still own it). The JIT target machine builder takes
 * the host target machine; the LLJIT builder takes the target machine builder, and
 * LLVMOrcCreateLLJIT takes the LLJIT builder, even when it fails;
 * LLVMOrcLLJITAddObjectFile takes the memory buffer. */
#include "jit.h"

#include <stdio.h>
#include <stdlib.h>

#include <llvm-c/Error.h>
#include <llvm-c/ExecutionEngine.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/OrcEE.h>

#include "emit.h"
#include "lower.h"

struct Jit {
  LLVMOrcLLJITRef lljit;
};

/* Formats and consumes an LLVM error. Returns -1 for chaining. */
static int take_error(LLVMErrorRef e, const char *what, char *err, size_t cap) {
  char *msg = LLVMGetErrorMessage(e);
  snprintf(err, cap, "%s: %s", what, msg);
  LLVMDisposeErrorMessage(msg);
  return -1;
}

/* Lowers and optimises m into a module of tsc's context. */
static LLVMModuleRef build_module(Module *m, LLVMOrcThreadSafeContextRef tsc, char *err,
                                  size_t cap) {
  LLVMContextRef ctx = LLVMOrcThreadSafeContextGetContext(tsc);
  LLVMModuleRef mod = lower_module(ctx, m, TARGET_HOST, err, cap);
  if (!mod)
    return NULL;
  LLVMTargetMachineRef tm = emit_target_machine(TARGET_HOST, err, cap);
  int rc = tm ? emit_optimize(mod, tm, err, cap) : -1;
  if (tm)
    LLVMDisposeTargetMachine(tm);
  if (rc) {
    LLVMDisposeModule(mod);
    return NULL;
  }
  return mod;
}

/* With $CRISP_PERF_JIT set, objects go through RuntimeDyld with LLVM's perf listener,
 * which writes a jitdump (into $JITDUMPDIR, else ~/.debug/jit) that `perf inject --jit`
 * turns into symbols and code for `perf report`/`annotate` (docs/profiling.md). The
 * default JITLink layer has no C-API hook for listeners. */
static LLVMOrcObjectLayerRef perf_object_layer(void *ctx, LLVMOrcExecutionSessionRef es,
                                               const char *triple) {
  (void)ctx;
  (void)triple;
  LLVMOrcObjectLayerRef layer = LLVMOrcCreateRTDyldObjectLinkingLayerWithSectionMemoryManager(es);
  LLVMJITEventListenerRef perf = LLVMCreatePerfJITEventListener();
  if (perf)
    LLVMOrcRTDyldObjectLinkingLayerRegisterJITEventListener(layer, perf);
  else
    fprintf(stderr, "crisp: CRISP_PERF_JIT: this LLVM has no perf listener\n");
  return layer;
}

static LLVMOrcLLJITRef make_lljit(char *err, size_t cap) {
  LLVMTargetMachineRef tm = emit_target_machine(TARGET_HOST, err, cap);
  if (!tm)
    return NULL;
  LLVMOrcJITTargetMachineBuilderRef jtmb = LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(tm);
  LLVMOrcLLJITBuilderRef builder = LLVMOrcCreateLLJITBuilder();
  LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(builder, jtmb);
  const char *perf = getenv("CRISP_PERF_JIT");
  if (perf && *perf && *perf != '0')
    LLVMOrcLLJITBuilderSetObjectLinkingLayerCreator(builder, perf_object_layer, NULL);
  LLVMOrcLLJITRef lljit = NULL;
  LLVMErrorRef e = LLVMOrcCreateLLJIT(&lljit, builder);
  if (e) {
    take_error(e, "cannot create the JIT", err, cap);
    return NULL;
  }
  /* resolve libm/libc calls the generated code makes against this process */
  LLVMOrcDefinitionGeneratorRef gen = NULL;
  e = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(
      &gen, LLVMOrcLLJITGetGlobalPrefix(lljit), NULL, NULL);
  if (e) {
    take_error(e, "cannot search the process for symbols", err, cap);
    LLVMConsumeError(LLVMOrcDisposeLLJIT(lljit));
    return NULL;
  }
  LLVMOrcJITDylibAddGenerator(LLVMOrcLLJITGetMainJITDylib(lljit), gen);
  return lljit;
}

static Jit *wrap(LLVMOrcLLJITRef lljit, char *err, size_t cap) {
  Jit *j = malloc(sizeof *j);
  if (!j) {
    snprintf(err, cap, "out of memory");
    LLVMConsumeError(LLVMOrcDisposeLLJIT(lljit));
    return NULL;
  }
  j->lljit = lljit;
  return j;
}

Jit *jit_compile(Module *m, char *err, size_t cap) {
  LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
  LLVMModuleRef mod = build_module(m, tsc, err, cap);
  if (!mod) {
    LLVMOrcDisposeThreadSafeContext(tsc);
    return NULL;
  }
  LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(mod, tsc);
  LLVMOrcDisposeThreadSafeContext(tsc);   /* the module keeps the context alive */
  LLVMOrcLLJITRef lljit = make_lljit(err, cap);
  if (!lljit) {
    LLVMOrcDisposeThreadSafeModule(tsm);
    return NULL;
  }
  LLVMErrorRef e = LLVMOrcLLJITAddLLVMIRModule(lljit, LLVMOrcLLJITGetMainJITDylib(lljit), tsm);
  if (e) {
    take_error(e, "cannot add the module to the JIT", err, cap);
    LLVMOrcDisposeThreadSafeModule(tsm);
    LLVMConsumeError(LLVMOrcDisposeLLJIT(lljit));
    return NULL;
  }
  Jit *j = wrap(lljit, err, cap);
  if (!j)
    return NULL;
  /* compile everything now, so that errors surface here and lookups are cheap */
  for (int i = 0; i < m->n; i++)
    if (!jit_find(j, m->kernels[i]->name, err, cap)) {
      jit_free(j);
      return NULL;
    }
  return j;
}

Jit *jit_load_object(const char *obj, size_t len, char *err, size_t cap) {
  LLVMOrcLLJITRef lljit = make_lljit(err, cap);
  if (!lljit)
    return NULL;
  LLVMMemoryBufferRef buf = LLVMCreateMemoryBufferWithMemoryRangeCopy(obj, len, "crisp-kernels.o");
  LLVMErrorRef e = LLVMOrcLLJITAddObjectFile(lljit, LLVMOrcLLJITGetMainJITDylib(lljit), buf);
  if (e) {
    take_error(e, "cannot add the object to the JIT", err, cap);
    LLVMConsumeError(LLVMOrcDisposeLLJIT(lljit));
    return NULL;
  }
  return wrap(lljit, err, cap);
}

/* Materialises (compiles) a kernel on first use. */
CpuKernelFn jit_find(Jit *j, const char *name, char *err, size_t cap) {
  LLVMOrcExecutorAddress addr = 0;
  LLVMErrorRef e = LLVMOrcLLJITLookup(j->lljit, &addr, name);
  if (e) {
    if (err)
      take_error(e, name, err, cap);
    else
      LLVMConsumeError(e);
    return NULL;
  }
  /* an executor address is a host address here (in-process JIT) */
  return (CpuKernelFn)(uintptr_t)addr;
}

CpuKernelFn jit_lookup(Jit *j, const char *kernel_name) {
  return j && kernel_name ? jit_find(j, kernel_name, NULL, 0) : NULL;
}

void jit_free(Jit *j) {
  if (!j)
    return;
  LLVMConsumeError(LLVMOrcDisposeLLJIT(j->lljit));
  free(j);
}
