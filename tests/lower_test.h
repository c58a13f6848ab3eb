/* lower_test.h: what the test_lower suite's files share.
 *
 * test_lower is one program in three files: lower_kernels.c builds the small
 * kernels with the IR builder, lower_cases.c runs each JIT-compiled kernel on the
 * host against plain C and prepares modules as the driver does, and test_lower.c
 * holds the checks that use them (host sweeps, vectorisation, PTX and ptxas,
 * lowering errors, rt_write_atomic); one pass/fail count (expect.h). */
#ifndef CRISP_LOWER_TEST_H
#define CRISP_LOWER_TEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ir.h"
#include "jit.h"
#include "expect.h"
#include "passes.h"


/* lower_cases.c: small helpers the runs share */
double rnd(uint64_t *s);
bool close_to(double got, double want, double rel);
void *xmalloc(size_t n);
float *poisoned_f32(int n);

/* lower_kernels.c: one builder per kernel, each a fresh unmapped Kernel */
Kernel *k_vadd(void);
Kernel *k_rowsum(void);
Kernel *k_lane64(void);
Kernel *k_blockmax(void);
Kernel *k_dot(void);
Kernel *k_exp(void);
Kernel *k_math(void);
Kernel *k_bits(void);
Kernel *k_transpose(void);
Kernel *k_misc(void);
Kernel *k_grid3(void);
Kernel *k_cmps(void);
Kernel *k_hist(void);
Kernel *k_tile16(void);   /* transpose16 */

/* lower_cases.c: each kernel with its host run (returns the number of wrong outputs) */
typedef struct {
  const char *name;
  Kernel *(*build)(void);
  int (*run)(CpuKernelFn, Kernel *);
} Case;

enum { NCASES = 14 };
extern const Case cases[NCASES];

void launch(CpuKernelFn fn, Kernel *k, void **args);

/* k_tile16's packed tile: TILE16_D rows of TILE16_LD (keys padded with 0) */
enum { TILE16_D = 32, TILE16_LD = 80 };
/* Runs k_tile16 through run(k, args, counts) for several key counts (src allocated
 * to the exact size, so an over-read is an ASan error) and returns the wrong outputs. */
int tile16_runs(Kernel *k, int (*run)(Kernel *, void **, const int64_t *, void *), void *ctx);
void test_atomic_threads(CpuKernelFn fn, Kernel *k);
int build_module(Module *m, MapTarget t);

#endif
