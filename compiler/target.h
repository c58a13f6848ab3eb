/* target.h: the code generation targets crisp knows.
 *
 * TARGET_HOST is the machine the compiler runs on (x86-64, JIT-compiled in process);
 * TARGET_SM80/TARGET_SM90 are NVIDIA GPUs reached through LLVM's NVPTX back end.
 * The names are the ones users type (`--target sm_90`); target_name(target_parse(s))
 * round-trips. Defined in target.c. */
#ifndef CRISP_TARGET_H
#define CRISP_TARGET_H

typedef enum { TARGET_HOST, TARGET_SM80, TARGET_SM90 } Target;

/* "host", "sm_80", "sm_90". */
const char *target_name(Target t);

/* Parses a target name (also accepts "sm80"/"sm90"); returns 0, or -1 if unknown. */
int target_parse(const char *s, Target *out);

/* True for the NVPTX targets. */
static inline int target_is_gpu(Target t) { return t != TARGET_HOST; }

#endif
