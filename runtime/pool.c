/* The thread pool (see pool.h). Workers sleep on a condition variable until the
 * generation number moves, take chunks from an atomic counter, and report back. */
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

struct RtPool {
  int nthreads;                 /* including the caller */
  pthread_t *tids;
  pthread_mutex_t mu;
  pthread_cond_t start, done;
  uint64_t generation;
  int busy;                     /* workers still in the current run */
  int stop;
  /* the current run */
  RtPoolFn fn;
  void *ctx;
  int64_t total, chunk;
  atomic_llong next;
};

int rt_cpu_count(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

static void work(RtPool *p) {
  for (;;) {
    int64_t first = atomic_fetch_add(&p->next, p->chunk);
    if (first >= p->total)
      return;
    int64_t last = first + p->chunk < p->total ? first + p->chunk : p->total;
    p->fn(p->ctx, first, last);
  }
}

static void *worker(void *arg) {
  RtPool *p = arg;
  uint64_t seen = 0;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->stop && p->generation == seen)
      pthread_cond_wait(&p->start, &p->mu);
    if (p->stop)
      break;
    seen = p->generation;
    pthread_mutex_unlock(&p->mu);
    work(p);
    pthread_mutex_lock(&p->mu);
    if (--p->busy == 0)
      pthread_cond_signal(&p->done);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

RtPool *rt_pool_new(int threads) {
  if (threads <= 0)
    threads = rt_cpu_count();
  RtPool *p = calloc(1, sizeof *p);
  if (!p)
    return NULL;
  p->nthreads = threads;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->start, NULL);
  pthread_cond_init(&p->done, NULL);
  p->tids = calloc((size_t)threads, sizeof *p->tids);
  if (!p->tids) {
    free(p);
    return NULL;
  }
  for (int i = 1; i < threads; i++)
    if (pthread_create(&p->tids[i], NULL, worker, p)) {
      p->nthreads = i;   /* stop the ones started */
      rt_pool_free(p);
      return NULL;
    }
  return p;
}

void rt_pool_free(RtPool *p) {
  if (!p)
    return;
  pthread_mutex_lock(&p->mu);
  p->stop = 1;
  pthread_cond_broadcast(&p->start);
  pthread_mutex_unlock(&p->mu);
  for (int i = 1; i < p->nthreads; i++)
    pthread_join(p->tids[i], NULL);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->start);
  pthread_cond_destroy(&p->done);
  free(p->tids);
  free(p);
}

int rt_pool_threads(const RtPool *p) { return p->nthreads; }

void rt_pool_run(RtPool *p, int64_t total, int64_t chunk, RtPoolFn fn, void *ctx) {
  if (total <= 0)
    return;
  if (chunk <= 0) {
    chunk = total / (8 * (int64_t)p->nthreads);
    if (chunk < 1)
      chunk = 1;
  }
  if (p->nthreads == 1 || total <= chunk) {
    fn(ctx, 0, total);
    return;
  }
  pthread_mutex_lock(&p->mu);
  p->fn = fn;
  p->ctx = ctx;
  p->total = total;
  p->chunk = chunk;
  atomic_store(&p->next, 0);
  p->busy = p->nthreads - 1;
  p->generation++;
  pthread_cond_broadcast(&p->start);
  pthread_mutex_unlock(&p->mu);
  work(p);
  pthread_mutex_lock(&p->mu);
  while (p->busy > 0)
    pthread_cond_wait(&p->done, &p->mu);
  pthread_mutex_unlock(&p->mu);
}
