/* Host loops over the backend's pool in fixed chunks (see par.h). */
#include "par.h"

void par_for(RtPool *pool, int64_t total, int64_t chunk, ParFn fn, void *ctx) {
  if (total <= 0)
    return;
  if (chunk < 1)
    chunk = 1;
  /* one call per chunk even on one thread: callers that keep per-chunk partial sums
   * index them by first / chunk */
  if (!pool || rt_pool_threads(pool) == 1 || total <= chunk) {
    for (int64_t first = 0; first < total; first += chunk)
      fn(ctx, first, first + chunk < total ? first + chunk : total);
    return;
  }
  rt_pool_run(pool, total, chunk, fn, ctx);
}

int64_t par_chunk(int64_t total, int64_t work_per_item) {
  if (work_per_item < 1)
    work_per_item = 1;
  int64_t c = PAR_GRAIN / work_per_item;
  if (c < 1)
    c = 1;
  return c < total ? c : (total > 0 ? total : 1);
}
