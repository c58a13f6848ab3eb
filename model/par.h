/* par.h: host loops split over the cpu backend's thread pool (runtime/pool.h).
 *
 * par_for(pool, total, chunk, fn, ctx) calls fn(ctx, first, last) on the chunks
 * [0, chunk), [chunk, 2 chunk), ... of [0, total) on the pool's threads; pool NULL
 * runs it on the caller as one call. Chunks are fixed by `chunk` alone, never by the
 * thread count, so a loop whose chunks write disjoint outputs, or whose per-chunk
 * partial sums are combined in chunk order afterwards, gives bitwise the same result
 * with any number of threads (the trainer's reproducibility rests on this).
 *
 * par_chunk(total, work_per_item) picks a chunk of about PAR_GRAIN units of work
 * (fewer, larger chunks than the pool's default: the elementwise layers are memory
 * bound and a chunk must outweigh the hand-off). */
#ifndef CRISP_MODEL_PAR_H
#define CRISP_MODEL_PAR_H

#include <stdint.h>

#include "../runtime/pool.h"

enum { PAR_GRAIN = 1 << 15 };

typedef void (*ParFn)(void *ctx, int64_t first, int64_t last);

void par_for(RtPool *pool, int64_t total, int64_t chunk, ParFn fn, void *ctx);
int64_t par_chunk(int64_t total, int64_t work_per_item);

#endif
