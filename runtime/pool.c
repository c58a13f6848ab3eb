/* The thread pool (see pool.h). Workers sleep on a condition variable until a run is
 * posted, take chunks from the run's atomic counter, and report back.
 *
 * The caller returns as soon as every chunk is done, without waiting for workers that
 * have not woken yet: on a loaded machine a sleeping worker can take milliseconds to
 * be scheduled, and waiting for each one to check in cost that much per run even when
 * the caller had done all the chunks itself. A run's state lives on the caller's
 * stack, so a worker that joined a run holds a reference the caller waits for, and a
 * worker that wakes after the run is over finds no run posted and sleeps again. */
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct Run {
  RtPoolFn fn;
  void *ctx;
  int64_t total, chunk, nchunks;
  atomic_llong next;            /* the next chunk's first index */
  atomic_llong done;            /* chunks finished */
  int refs;                     /* workers inside the run (under the pool's mutex) */
} Run;

struct RtPool {
  int nthreads;                 /* including the caller */
  pthread_t *tids;
  pthread_mutex_t mu;
  pthread_cond_t start, done;
  uint64_t generation;          /* moves when a run is posted */
  Run *run;                     /* the current run, NULL between runs */
  int stop;
};

int rt_cpu_count(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

static void work(Run *r) {
  for (;;) {
    int64_t first = atomic_fetch_add(&r->next, r->chunk);
    if (first >= r->total)
      return;
    int64_t last = first + r->chunk < r->total ? first + r->chunk : r->total;
    r->fn(r->ctx, first, last);
    atomic_fetch_add(&r->done, 1);
  }
}

static void *worker(void *arg) {
  RtPool *p = arg;
  uint64_t seen = 0;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->stop && (p->generation == seen || !p->run)) {
      seen = p->generation;   /* a run that ended before we woke: skip it */
      pthread_cond_wait(&p->start, &p->mu);
    }
    if (p->stop)
      break;
    seen = p->generation;
    Run *r = p->run;
    r->refs++;
    pthread_mutex_unlock(&p->mu);
    work(r);
    pthread_mutex_lock(&p->mu);
    if (--r->refs == 0)
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
  Run r = {.fn = fn, .ctx = ctx, .total = total, .chunk = chunk,
           .nchunks = (total + chunk - 1) / chunk};
  atomic_init(&r.next, 0);
  atomic_init(&r.done, 0);
  pthread_mutex_lock(&p->mu);
  p->run = &r;
  p->generation++;
  pthread_cond_broadcast(&p->start);
  pthread_mutex_unlock(&p->mu);
  work(&r);
  pthread_mutex_lock(&p->mu);
  /* every chunk done and no worker still inside (one that took the last chunk may
   * not have counted it yet: it holds a reference until it has) */
  while (atomic_load(&r.done) < r.nchunks || r.refs > 0)
    pthread_cond_wait(&p->done, &p->mu);
  p->run = NULL;
  pthread_mutex_unlock(&p->mu);
}
