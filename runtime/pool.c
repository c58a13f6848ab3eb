/* The thread pool (see pool.h).
 *
 * Why it spins. A run hands work to sleeping threads and waits for them: two
 * wake-ups through the kernel (the workers on `start`, then the caller on `done`),
 * 8-76 us per empty run with 2 threads on this project's machine (bench_pool). An
 * attention step at n = 64 is 3-9 kernel launches of 0.1-2 ms each, and a training
 * step launches dozens of kernels and GEMM phases back to back, so the wake-ups were
 * a visible part of the step. Now each waiter first spins on the word it waits for
 * (the generation number, the count of busy workers) for a bounded time, and only
 * then sleeps on the condition variable; launches that follow one another within the
 * budget never enter the kernel.
 *
 * The budget (RT_POOL_SPIN_US_DEFAULT, 50 us) is about what one sleep and wake-up
 * costs (8-76 us per empty launch measured here): spinning that long and then
 * sleeping wastes at most about twice what the better choice would have (the
 * ski-rental bound), and a waiter never burns more than the budget per gap between
 * runs. A waiter spins on the CPU's pause hint for the first 2 us (PAUSE_NS), where a
 * hand-off between threads on two cores lands (under a microsecond), then calls
 * sched_yield between looks: when the thread it waits for shares its core (the other
 * cores taken by other processes, common on a shared machine), only giving the core
 * up lets that thread run. Spinning on pause alone burned the whole budget on both
 * sides there, twice per launch: 105-139 us per empty launch against 8 us sleeping at
 * once, where pause-then-yield measured 7 us (bench_pool, load average 4-5). Pools with
 * more threads than online cores do not spin at all.
 *
 * Why no wake-up is lost. The run's arguments are plain fields, written by the
 * caller before it moves `generation` (release) and read by workers after they see
 * it move (acquire); the caller writes the next run's only after it has seen `busy`
 * reach 0 (acquire), which each worker decrements (release) after its last read. A
 * waiter that gives up spinning counts itself as a sleeper under the mutex and then
 * checks its word again before it waits; the side that changes the word does so
 * before it takes the mutex, and signals only when a sleeper is counted. The mutex
 * orders the two critical sections: if the sleeper's came first, the signaller sees
 * the count and signals (the sleeper is in pthread_cond_wait by then, which released
 * the mutex); if the signaller's came first, the change happened before it, so the
 * sleeper's check sees it and does not wait. */
#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

struct RtPool {
  int nthreads;                 /* including the caller */
  pthread_t *tids;
  atomic_llong spin_ns;         /* each wait's spin budget; 0: sleep at once */
  pthread_mutex_t mu;
  pthread_cond_t start, done;
  atomic_ullong generation;     /* moves once per run; workers wait for it to move */
  atomic_int busy;              /* workers that have not finished the current run */
  atomic_int stop;
  int sleepers;                 /* workers waiting on start (under mu) */
  int caller_sleeps;            /* the caller waits on done (under mu) */
  /* the current run (see the top comment for who may touch them when) */
  RtPoolFn fn;
  void *ctx;
  int64_t total, chunk;
  atomic_llong next;
};

int rt_cpu_count(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

/* ---- waiting: spin for the budget, then sleep ---- */

/* How long a waiter spins on the pause hint before it starts to yield. */
enum { PAUSE_NS = 2000 };

static int64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

typedef bool (*Ready)(RtPool *p, uint64_t arg);

static bool started(RtPool *p, uint64_t seen) {
  return atomic_load_explicit(&p->generation, memory_order_acquire) != seen ||
         atomic_load_explicit(&p->stop, memory_order_acquire);
}

static bool finished(RtPool *p, uint64_t unused) {
  (void)unused;
  return atomic_load_explicit(&p->busy, memory_order_acquire) == 0;
}

/* Whether ready() came true within the budget: pause first, then yield (see the top
 * comment). The clock is read every 16 pauses (a pause is 10-150 cycles depending on
 * the CPU) and after every yield. */
static bool spin(RtPool *p, Ready ready, uint64_t arg) {
  int64_t budget = atomic_load_explicit(&p->spin_ns, memory_order_relaxed);
  bool now = ready(p, arg);
  if (now || budget <= 0)
    return now;
  int64_t t0 = now_ns(), spent = 0;
  int64_t pausing = budget < PAUSE_NS ? budget : PAUSE_NS;
  for (unsigned i = 1; spent < pausing; i++) {
    cpu_relax();
    if (ready(p, arg))
      return true;
    if (i % 16 == 0)
      spent = now_ns() - t0;
  }
  while (spent < budget) {
    sched_yield();
    if (ready(p, arg))
      return true;
    spent = now_ns() - t0;
  }
  return false;
}

/* Sleeps on cv until ready(), counted in *sleeping (see the top comment). */
static void sleep_until(RtPool *p, pthread_cond_t *cv, int *sleeping, Ready ready,
                        uint64_t arg) {
  pthread_mutex_lock(&p->mu);
  ++*sleeping;
  while (!ready(p, arg))
    pthread_cond_wait(cv, &p->mu);
  --*sleeping;
  pthread_mutex_unlock(&p->mu);
}

/* Called after the word the sleepers on cv wait for has changed. */
static void wake(RtPool *p, pthread_cond_t *cv, const int *sleeping) {
  pthread_mutex_lock(&p->mu);
  if (*sleeping)
    pthread_cond_broadcast(cv);
  pthread_mutex_unlock(&p->mu);
}

/* ---- the workers ---- */

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
  for (;;) {
    if (!spin(p, started, seen))
      sleep_until(p, &p->start, &p->sleepers, started, seen);
    if (atomic_load_explicit(&p->stop, memory_order_acquire))
      return NULL;
    /* the caller cannot move it again before this worker has decremented busy */
    seen = atomic_load_explicit(&p->generation, memory_order_acquire);
    work(p);
    if (atomic_fetch_sub_explicit(&p->busy, 1, memory_order_acq_rel) == 1)
      wake(p, &p->done, &p->caller_sleeps);
  }
}

/* ---- the pool ---- */

RtPool *rt_pool_new(int threads) {
  if (threads <= 0)
    threads = rt_cpu_count();
  RtPool *p = calloc(1, sizeof *p);
  if (!p)
    return NULL;
  p->nthreads = threads;
  rt_pool_set_spin_us(p, threads <= rt_cpu_count() ? RT_POOL_SPIN_US_DEFAULT : 0);
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
  atomic_store_explicit(&p->stop, 1, memory_order_release);
  pthread_mutex_lock(&p->mu);
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

void rt_pool_set_spin_us(RtPool *p, int us) {
  atomic_store_explicit(&p->spin_ns, us > 0 ? (long long)us * 1000 : 0, memory_order_relaxed);
}

int rt_pool_spin_us(const RtPool *p) {
  return (int)(atomic_load_explicit(&p->spin_ns, memory_order_relaxed) / 1000);
}

int rt_pool_spin_env(int *us, char *err, size_t cap) {
  const char *e = getenv("CRISP_POOL_SPIN_US");
  *us = -1;
  if (!e)
    return 0;
  char *end;
  long v = strtol(e, &end, 10);
  if (!*e || *end || v < 0 || v > RT_POOL_SPIN_US_MAX) {
    snprintf(err, cap, "CRISP_POOL_SPIN_US=%.40s: expected microseconds, 0 (never spin) to %d",
             e, RT_POOL_SPIN_US_MAX);
    return -1;
  }
  *us = (int)v;
  return 0;
}

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
  p->fn = fn;
  p->ctx = ctx;
  p->total = total;
  p->chunk = chunk;
  atomic_store_explicit(&p->next, 0, memory_order_relaxed);
  atomic_store_explicit(&p->busy, p->nthreads - 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
  wake(p, &p->start, &p->sleepers);
  work(p);
  if (!spin(p, finished, 0))
    sleep_until(p, &p->done, &p->caller_sleeps, finished, 0);
}
