/* pool.h: a fixed thread pool that splits [0, total) into chunks.
 *
 * rt_pool_run(p, total, chunk, fn, ctx) calls fn(ctx, first, last) on disjoint
 * ranges covering [0, total), on the pool's threads and the caller's, and returns
 * when all are done. Chunks are taken in order from a shared counter (dynamic
 * scheduling), so the result must not depend on which thread runs a chunk; it does
 * not for kernels whose blocks are independent. One run at a time per pool. */
#ifndef CRISP_RT_POOL_H
#define CRISP_RT_POOL_H

#include <stdint.h>

typedef struct RtPool RtPool;
typedef void (*RtPoolFn)(void *ctx, int64_t first, int64_t last);

/* threads: total including the caller (<= 0: one per online core). NULL if out of
 * memory or threads cannot be started. */
RtPool *rt_pool_new(int threads);
void rt_pool_free(RtPool *p);
int rt_pool_threads(const RtPool *p);
/* chunk <= 0 picks total / (8 * threads), at least 1. */
void rt_pool_run(RtPool *p, int64_t total, int64_t chunk, RtPoolFn fn, void *ctx);

/* Online cores (at least 1). */
int rt_cpu_count(void);

#endif
