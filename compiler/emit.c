/* emit.c: target machines, the O3 pipeline, code emission and atomic file writes.
 * See emit.h. */
#define _POSIX_C_SOURCE 200809L   /* mkstemp, fsync, strdup, O_DIRECTORY */

#include "emit.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/Target.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include "lower.h"

/* ---- target machines ---- */

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init_targets(void) {
  LLVMInitializeNVPTXTargetInfo();
  LLVMInitializeNVPTXTarget();
  LLVMInitializeNVPTXTargetMC();
  LLVMInitializeNVPTXAsmPrinter();
  LLVMInitializeX86TargetInfo();
  LLVMInitializeX86Target();
  LLVMInitializeX86TargetMC();
  LLVMInitializeX86AsmPrinter();
  LLVMInitializeX86AsmParser();
}

void emit_init_targets(void) { pthread_once(&init_once, init_targets); }

static LLVMTargetMachineRef make_machine(const char *triple, const char *cpu,
                                         const char *features, LLVMRelocMode reloc,
                                         char *err, size_t cap) {
  LLVMTargetRef target;
  char *msg = NULL;
  if (LLVMGetTargetFromTriple(triple, &target, &msg)) {
    snprintf(err, cap, "no LLVM target for %s: %s", triple, msg ? msg : "?");
    LLVMDisposeMessage(msg);
    return NULL;
  }
  LLVMTargetMachineRef tm = LLVMCreateTargetMachine(target, triple, cpu, features,
                                                    LLVMCodeGenLevelAggressive, reloc,
                                                    LLVMCodeModelDefault);
  if (!tm)
    snprintf(err, cap, "cannot create a target machine for %s (%s)", triple, cpu);
  return tm;
}

LLVMTargetMachineRef emit_target_machine(Target t, char *err, size_t cap) {
  emit_init_targets();
  switch (t) {
  case TARGET_SM80:
    return make_machine("nvptx64-nvidia-cuda", "sm_80", "+ptx70", LLVMRelocDefault, err, cap);
  case TARGET_SM90:
    return make_machine("nvptx64-nvidia-cuda", "sm_90", "+ptx78", LLVMRelocDefault, err, cap);
  default:
    break;
  }
  char *triple = LLVMGetDefaultTargetTriple();
  char *cpu = LLVMGetHostCPUName();
  char *features = LLVMGetHostCPUFeatures();
  LLVMTargetMachineRef tm = make_machine(triple, cpu, features, LLVMRelocPIC, err, cap);
  LLVMDisposeMessage(triple);
  LLVMDisposeMessage(cpu);
  LLVMDisposeMessage(features);
  return tm;
}

void emit_set_layout(LLVMModuleRef mod, LLVMTargetMachineRef tm) {
  char *triple = LLVMGetTargetMachineTriple(tm);
  LLVMSetTarget(mod, triple);
  LLVMDisposeMessage(triple);
  LLVMTargetDataRef td = LLVMCreateTargetDataLayout(tm);
  char *layout = LLVMCopyStringRepOfTargetData(td);
  LLVMSetDataLayout(mod, layout);
  LLVMDisposeMessage(layout);
  LLVMDisposeTargetData(td);
}

/* ---- optimisation ---- */

int emit_optimize(LLVMModuleRef mod, LLVMTargetMachineRef tm, char *err, size_t cap) {
  char *msg = NULL;
  if (LLVMVerifyModule(mod, LLVMReturnStatusAction, &msg)) {
    snprintf(err, cap, "invalid LLVM module: %s", msg ? msg : "?");
    LLVMDisposeMessage(msg);
    return -1;
  }
  LLVMDisposeMessage(msg);
  LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
  LLVMPassBuilderOptionsSetLoopVectorization(opts, 1);
  LLVMPassBuilderOptionsSetSLPVectorization(opts, 1);
  LLVMPassBuilderOptionsSetLoopInterleaving(opts, 1);
  LLVMPassBuilderOptionsSetLoopUnrolling(opts, 1);
  LLVMErrorRef e = LLVMRunPasses(mod, "default<O3>", tm, opts);
  LLVMDisposePassBuilderOptions(opts);
  if (e) {
    char *em = LLVMGetErrorMessage(e);
    snprintf(err, cap, "LLVM optimisation failed: %s", em);
    LLVMDisposeErrorMessage(em);
    return -1;
  }
  return 0;
}

/* ---- emission ---- */

static int copy_out(const char *data, size_t n, char **out, size_t *len, char *err, size_t cap) {
  char *p = malloc(n + 1);
  if (!p) {
    snprintf(err, cap, "out of memory (%zu bytes of output)", n);
    return -1;
  }
  memcpy(p, data, n);
  p[n] = 0;
  *out = p;
  *len = n;
  return 0;
}

int emit_buffer(LLVMModuleRef mod, LLVMTargetMachineRef tm, EmitKind kind, char **out,
                size_t *len, char *err, size_t cap) {
  *out = NULL;
  *len = 0;
  if (kind == EMIT_LLVM) {
    char *s = LLVMPrintModuleToString(mod);
    int rc = copy_out(s, strlen(s), out, len, err, cap);
    LLVMDisposeMessage(s);
    return rc;
  }
  if (!tm) {
    snprintf(err, cap, "emitting code needs a target machine");
    return -1;
  }
  char *msg = NULL;
  LLVMMemoryBufferRef buf = NULL;
  LLVMCodeGenFileType ft = kind == EMIT_ASM ? LLVMAssemblyFile : LLVMObjectFile;
  if (LLVMTargetMachineEmitToMemoryBuffer(tm, mod, ft, &msg, &buf)) {
    snprintf(err, cap, "LLVM code generation failed: %s", msg ? msg : "?");
    LLVMDisposeMessage(msg);
    return -1;
  }
  int rc = copy_out(LLVMGetBufferStart(buf), LLVMGetBufferSize(buf), out, len, err, cap);
  LLVMDisposeMemoryBuffer(buf);
  return rc;
}

int emit_module(Module *m, Target t, EmitKind kind, char **out, size_t *len, char *err,
                size_t cap) {
  LLVMContextRef ctx = LLVMContextCreate();
  LLVMTargetMachineRef tm = emit_target_machine(t, err, cap);
  LLVMModuleRef mod = tm ? lower_module(ctx, m, t, err, cap) : NULL;
  int rc = mod && !emit_optimize(mod, tm, err, cap) &&
                   !emit_buffer(mod, tm, kind, out, len, err, cap)
               ? 0
               : -1;
  if (mod)
    LLVMDisposeModule(mod);
  if (tm)
    LLVMDisposeTargetMachine(tm);
  LLVMContextDispose(ctx);
  return rc;
}
