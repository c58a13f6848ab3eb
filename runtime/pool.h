/* pool.h: a fixed thread pool that splits [0, total) into chunks.
 *
 * rt_pool_run(p, total, chunk, fn, ctx) calls fn(ctx, first, last) on disjoint
 * ranges covering [0, total), on the pool's threads and the caller's, and returns
 * when all are done. Chunks are taken in order from a shared counter (dynamic
 * scheduling), so the result must not depend on which thread runs a chunk; it does
 * not for kernels whose blocks are independent. One run at a time per pool (runs may
 * come from different threads one after another).
 *
 * Waiting threads (idle workers, and the caller for the workers) spin for a bounded
 * time before they sleep, so back-to-back runs skip the kernel's wake-ups; see pool.c
 * for the policy and why it cannot lose a wake-up. */
#ifndef CRISP_RT_POOL_H
#define CRISP_RT_POOL_H

#include <stddef.h>
#include <stdint.h>

typedef struct RtPool RtPool;
typedef void (*RtPoolFn)(void *ctx, int64_t first, int64_t last);

/* threads: total including the caller (<= 0: one per online core). NULL if out of
 * memory or threads cannot be started. */
RtPool *rt_pool_new(int threads);
void rt_pool_free(RtPool *p);
int rt_pool_threads(const RtPool *p);
/* The spin budget of each wait, in microseconds (0: sleep at once). A new pool
 * spins RT_POOL_SPIN_US_DEFAULT, or not at all when it has more threads than the
 * machine has online cores. */
enum { RT_POOL_SPIN_US_DEFAULT = 50, RT_POOL_SPIN_US_MAX = 1000000 };
void rt_pool_set_spin_us(RtPool *p, int us);
int rt_pool_spin_us(const RtPool *p);
/* $CRISP_POOL_SPIN_US: *us = its value, or -1 when unset. A bad value: -1 and err
 * says why (naming the variable). */
int rt_pool_spin_env(int *us, char *err, size_t cap);
/* chunk <= 0 picks total / (8 * threads), at least 1. */
void rt_pool_run(RtPool *p, int64_t total, int64_t chunk, RtPoolFn fn, void *ctx);

/* Online cores (at least 1). */
int rt_cpu_count(void);

#endif
