/* The thread pool (runtime/pool.c):
 *   - every index of [0, total) is visited exactly once, for any thread count and
 *     chunk;
 *   - a stress run: thousands of short runs with odd totals and chunks, spinning
 *     off, briefly and at the default budget, with pauses longer than the budget
 *     between some runs (so workers go to sleep and must be woken), and runs made
 *     from several threads one after another; every run's coverage is checked;
 *   - the spin policy: the default, none when the pool has more threads than cores,
 *     and $CRISP_POOL_SPIN_US read back or refused with a message naming it, by the
 *     cpu backend too. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../runtime/backend.h"
#include "../runtime/pool.h"
#include "check.h"

enum { MAX_TOTAL = 331 };

typedef struct {
  atomic_int *hits;
  int64_t total;
  atomic_int bad_range;   /* calls outside [0, total) or empty */
} Visit;

static void visit(void *c, int64_t first, int64_t last) {
  Visit *v = c;
  if (first < 0 || last > v->total || first >= last) {
    atomic_fetch_add(&v->bad_range, 1);
    return;
  }
  for (int64_t i = first; i < last; i++) {
    for (volatile int k = 0; k < 100; k++) {   /* widens the window a lost wait would open */
    }
    atomic_fetch_add(&v->hits[i], 1);
  }
}

/* Indices not visited exactly once (and bad calls); clears the counts. */
static int run_and_count(RtPool *p, atomic_int *hits, int64_t total, int64_t chunk) {
  Visit v = {hits, total, 0};
  rt_pool_run(p, total, chunk, visit, &v);
  int bad = atomic_load(&v.bad_range);
  for (int64_t i = 0; i < total; i++)
    bad += atomic_exchange(&hits[i], 0) != 1;
  return bad;
}

static void test_cover(void) {
  enum { N = 10007 };
  static atomic_int hits[N];
  for (int threads = 1; threads <= 4; threads++) {
    RtPool *p = rt_pool_new(threads);
    CHECK(p && rt_pool_threads(p) == threads, "pool of %d", threads);
    if (!p)
      continue;
    for (int chunk = 0; chunk <= 64; chunk += 13) {
      int bad = run_and_count(p, hits, N, chunk);
      CHECK(bad == 0, "threads %d chunk %d: %d indices not visited exactly once", threads, chunk,
            bad);
    }
    rt_pool_run(p, 0, 0, NULL, NULL);   /* empty: nothing runs */
    rt_pool_free(p);
  }
}

/* ---- the stress run ---- */

typedef struct {
  RtPool *pool;
  uint64_t rng;
  int runs, bad;
} Caller;

static uint64_t next_rand(uint64_t *s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return *s >> 33;
}

static void *caller_runs(void *arg) {
  Caller *c = arg;
  atomic_int hits[MAX_TOTAL];
  for (int i = 0; i < MAX_TOTAL; i++)
    atomic_init(&hits[i], 0);
  for (int r = 0; r < c->runs; r++) {
    int64_t total = 1 + (int64_t)(next_rand(&c->rng) % MAX_TOTAL);
    int64_t chunk = (int64_t)(next_rand(&c->rng) % 9) - 1;   /* -1, 0: the default */
    c->bad += run_and_count(c->pool, hits, total, chunk);
    if (next_rand(&c->rng) % 8 == 0) {   /* longer than the default budget */
      struct timespec t = {0, 60000 + (long)(next_rand(&c->rng) % 100000)};
      nanosleep(&t, NULL);
    }
  }
  return NULL;
}

static void test_stress(void) {
  const int spins[] = {0, 1, RT_POOL_SPIN_US_DEFAULT};
  for (int threads = 2; threads <= 4; threads++)
    for (int s = 0; s < 3; s++) {
      RtPool *p = rt_pool_new(threads);
      CHECK(p != NULL, "pool of %d", threads);
      if (!p)
        continue;
      rt_pool_set_spin_us(p, spins[s]);
      CHECK(rt_pool_spin_us(p) == spins[s], "spin %d read back as %d", spins[s],
            rt_pool_spin_us(p));
      /* the main thread, then three others one after another */
      int bad = 0;
      for (int k = 0; k < 4; k++) {
        Caller c = {p, 1234u + 77u * (unsigned)(threads * 10 + s * 4 + k), 250, 0};
        pthread_t t;
        if (k == 0)
          caller_runs(&c);
        else if (pthread_create(&t, NULL, caller_runs, &c) == 0)
          pthread_join(t, NULL);
        else
          c.bad = 1;
        bad += c.bad;
      }
      CHECK(bad == 0, "threads %d spin %d us: %d bad indices or calls over 1000 runs", threads,
            spins[s], bad);
      rt_pool_free(p);
    }
}

/* ---- the spin policy ---- */

static void test_policy(void) {
  int cores = rt_cpu_count();
  RtPool *fits = rt_pool_new(cores), *over = rt_pool_new(cores + 1);
  CHECK(fits && over, "pools of %d and %d", cores, cores + 1);
  if (fits && over) {
    CHECK(rt_pool_spin_us(fits) == RT_POOL_SPIN_US_DEFAULT, "a pool of %d spins %d us", cores,
          rt_pool_spin_us(fits));
    CHECK(rt_pool_spin_us(over) == 0, "a pool of %d threads on %d cores spins %d us", cores + 1,
          cores, rt_pool_spin_us(over));
  }
  rt_pool_free(fits);
  rt_pool_free(over);

  char err[256];
  int us = 7;
  unsetenv("CRISP_POOL_SPIN_US");
  CHECK(rt_pool_spin_env(&us, err, sizeof err) == 0 && us == -1, "unset: %d", us);
  setenv("CRISP_POOL_SPIN_US", "0", 1);
  CHECK(rt_pool_spin_env(&us, err, sizeof err) == 0 && us == 0, "0: %d", us);
  setenv("CRISP_POOL_SPIN_US", "120", 1);
  CHECK(rt_pool_spin_env(&us, err, sizeof err) == 0 && us == 120, "120: %d", us);
  const char *bad[] = {"", "abc", "-1", "12us", "99999999"};
  for (int i = 0; i < 5; i++) {
    setenv("CRISP_POOL_SPIN_US", bad[i], 1);
    err[0] = 0;
    int rc = rt_pool_spin_env(&us, err, sizeof err);
    CHECK(rc == -1 && strstr(err, "CRISP_POOL_SPIN_US"), "'%s' refused: rc %d, '%s'", bad[i], rc,
          err);
  }

  /* the cpu backend applies it to its pool, and refuses a bad one */
  setenv("CRISP_POOL_SPIN_US", "7", 1);
  Backend *b = backend_open("cpu", NULL, err, sizeof err);
  CHECK(b && rt_pool_spin_us(rt_host_pool(b)) == 7, "CRISP_POOL_SPIN_US=7: %s", b ? "" : err);
  backend_close(b);
  setenv("CRISP_POOL_SPIN_US", "fast", 1);
  b = backend_open("cpu", NULL, err, sizeof err);
  CHECK(!b && strstr(err, "CRISP_POOL_SPIN_US=fast"), "a bad CRISP_POOL_SPIN_US opened: %s",
        b ? "" : err);
  backend_close(b);
  unsetenv("CRISP_POOL_SPIN_US");
}

int main(void) {
  test_cover();
  test_stress();
  test_policy();
  return check_summary();
}
