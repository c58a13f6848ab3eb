/* interp_test.h: what the test_interp suite's files share.
 *
 * test_interp is one program in four files with one pass/fail count:
 * test_interp.c (running a kernel and expecting success or an error, refused
 * kernels, speed, main), interp_results.c (results against plain C and the GPU's
 * reduction orders), interp_errors.c (each class of error the interpreter must
 * report) and interp_atomics.c (atomics: results and races). */
#ifndef CRISP_INTERP_TEST_H
#define CRISP_INTERP_TEST_H

#include <stdbool.h>

#include "expect.h"
#include <stdint.h>

#include "interp.h"

extern const int32_t ONE_BLOCK[3];

/* test_interp.c: a run that must succeed, or fail with `substr` */
int run(Kernel *k, void **args, const int64_t *counts, const int32_t *grid, char *err,
        const InterpOptions *opt);
void expect_ok(const char *name, Kernel *k, void **args, const int64_t *counts,
               const int32_t *grid);
void expect_error(const char *name, Kernel *k, void **args, const int64_t *counts,
                  const int32_t *grid, const char *substr);

/* interp_results.c */
Kernel *vadd_kernel(int warps);
void test_vadd(void);
void test_softmax(void);
void test_block_reduce(void);
void test_serial_reduce(void);
void test_shared_stage(void);
void test_scalar_semantics(void);
void test_lane_rounding(void);

/* interp_errors.c */
void test_oob_global(void);
void test_shared_errors(void);
void test_warp_races(void);
void test_block_level_read(void);
void test_block_reduce_sync(void);
void test_cross_block(void);
void test_arith_errors(void);
void test_local(void);

/* interp_traffic.c */
void test_traffic(void);

/* interp_atomics.c */
void test_atomic_hist(void);
void test_atomic_races(void);

#endif
