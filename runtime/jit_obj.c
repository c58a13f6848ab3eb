/* Host object code in an ORC LLJIT (see compile.h). The object comes from the
 * kernel cache or from a fresh compilation (EMIT_OBJ); either way the JIT only
 * links it, so a warm start skips lowering, optimisation and code generation.
 * Ownership as in compiler/jit.c: LLVMOrcCreateLLJIT takes the builder, which
 * takes the target machine builder; LLVMOrcLLJITAddObjectFile takes the buffer. */
#include <stdio.h>
#include <stdlib.h>

#include <llvm-c/Core.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>

#include "../compiler/emit.h"
#include "compile.h"

struct RtJit {
  LLVMOrcLLJITRef lljit;
};

static void take_error(LLVMErrorRef e, const char *what, char *err, size_t cap) {
  char *msg = LLVMGetErrorMessage(e);
  snprintf(err, cap, "%s: %s", what, msg);
  LLVMDisposeErrorMessage(msg);
}

RtJit *rt_jit_from_object(const char *obj, size_t len, char *err, size_t cap) {
  LLVMTargetMachineRef tm = emit_target_machine(TARGET_HOST, err, cap);
  if (!tm)
    return NULL;
  LLVMOrcJITTargetMachineBuilderRef jtmb = LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(tm);
  LLVMOrcLLJITBuilderRef builder = LLVMOrcCreateLLJITBuilder();
  LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(builder, jtmb);
  LLVMOrcLLJITRef lljit = NULL;
  LLVMErrorRef e = LLVMOrcCreateLLJIT(&lljit, builder);
  if (e) {
    take_error(e, "cannot create the JIT", err, cap);
    return NULL;
  }
  LLVMOrcDefinitionGeneratorRef gen = NULL;
  e = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(
      &gen, LLVMOrcLLJITGetGlobalPrefix(lljit), NULL, NULL);
  if (e) {
    take_error(e, "cannot search the process for symbols", err, cap);
    LLVMConsumeError(LLVMOrcDisposeLLJIT(lljit));
    return NULL;
  }
  LLVMOrcJITDylibAddGenerator(LLVMOrcLLJITGetMainJITDylib(lljit), gen);
  LLVMMemoryBufferRef buf = LLVMCreateMemoryBufferWithMemoryRangeCopy(obj, len, "crisp-kernels.o");
  e = LLVMOrcLLJITAddObjectFile(lljit, LLVMOrcLLJITGetMainJITDylib(lljit), buf);
  if (e) {
    take_error(e, "cannot add the object to the JIT", err, cap);
    LLVMConsumeError(LLVMOrcDisposeLLJIT(lljit));
    return NULL;
  }
  RtJit *j = malloc(sizeof *j);
  if (!j) {
    snprintf(err, cap, "out of memory");
    LLVMConsumeError(LLVMOrcDisposeLLJIT(lljit));
    return NULL;
  }
  j->lljit = lljit;
  return j;
}

CpuKernelFn rt_jit_lookup(RtJit *j, const char *name, char *err, size_t cap) {
  LLVMOrcExecutorAddress addr = 0;
  LLVMErrorRef e = LLVMOrcLLJITLookup(j->lljit, &addr, name);
  if (e) {
    take_error(e, name, err, cap);
    return NULL;
  }
  return (CpuKernelFn)(uintptr_t)addr;   /* in-process: an executor address is a host address */
}

void rt_jit_free(void *p) {
  RtJit *j = p;
  if (!j)
    return;
  LLVMConsumeError(LLVMOrcDisposeLLJIT(j->lljit));
  free(j);
}
