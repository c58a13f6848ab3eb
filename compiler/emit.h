/* emit.h: from a lowered LLVM module to optimised text or object code.
 *
 *   tm = emit_target_machine(t)        the LLVM target machine for a Target
 *   emit_optimize(mod, tm)             verify, then run LLVM's default<O3> pipeline
 *   emit_buffer(mod, tm, kind, ...)    LLVM IR text, assembly (PTX on NVPTX), or an object
 *   emit_module(m, t, kind, ...)       all of it for a crisp IR Module: lower_module, the
 *                                      target machine, optimise, emit, and dispose
 *
 * Only the NVPTX and X86 back ends are initialised (once, thread-safely). Every
 * function returns 0 / non-NULL on success, or -1 / NULL with a message in err. */
#ifndef CRISP_EMIT_H
#define CRISP_EMIT_H

#include <stddef.h>

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>

#include "ir.h"
#include "target.h"

typedef enum { EMIT_LLVM, EMIT_ASM, EMIT_OBJ } EmitKind;

/* Initialises the NVPTX and X86 targets; idempotent. Called by the functions below. */
void emit_init_targets(void);

/* NVPTX: triple nvptx64-nvidia-cuda, cpu sm_80/sm_90. Host: the default triple with
 * the host CPU name and features (LLVMGetHostCPUName/Features), PIC. Both at
 * CodeGenOpt aggressive. Dispose with LLVMDisposeTargetMachine. */
LLVMTargetMachineRef emit_target_machine(Target t, char *err, size_t cap);

/* Sets mod's triple and data layout from tm. */
void emit_set_layout(LLVMModuleRef mod, LLVMTargetMachineRef tm);

/* LLVMVerifyModule, then LLVMRunPasses(mod, "default<O3>", tm) with loop and SLP
 * vectorisation on. */
int emit_optimize(LLVMModuleRef mod, LLVMTargetMachineRef tm, char *err, size_t cap);

/* *out: a malloc'd, NUL-terminated buffer of *len bytes (the NUL not counted); the
 * caller frees it with free(). EMIT_LLVM prints the module (tm unused, may be NULL);
 * EMIT_ASM is PTX on an NVPTX machine. */
int emit_buffer(LLVMModuleRef mod, LLVMTargetMachineRef tm, EmitKind kind, char **out,
                size_t *len, char *err, size_t cap);

/* m (mapped for t) lowered in a context of its own, optimised and emitted as kind
 * (*out, *len as emit_buffer's); every LLVM object it makes is disposed before it
 * returns. m stays the caller's. */
int emit_module(Module *m, Target t, EmitKind kind, char **out, size_t *len, char *err,
                size_t cap);


#endif
