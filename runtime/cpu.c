/* The CPU backend (see backend.h): host memory, a thread pool over the grid,
 * timing by the monotonic clock, and sgemm: crisp's own packed AVX-512 kernel
 * (sgemm.h) where the CPU has AVX-512F and the BLAS would not use it (choose_gemm),
 * else a BLAS library loaded with dlopen
 * (OpenBLAS from Debian by default; $CRISP_BLAS names another library, or "none"
 * for the built-in loops), so the runtime links no BLAS itself. $CRISP_GEMM
 * chooses: auto (the default, see choose_gemm), crisp, or blas. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "fsutil.h"
#include "pool.h"
#include "sgemm.h"

enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };
typedef void (*CblasSgemm)(int layout, int ta, int tb, int m, int n, int k, float alpha,
                           const float *a, int lda, const float *b, int ldb, float beta,
                           float *c, int ldc);

typedef struct {
  RtPool *pool;
  void *blas;             /* dlopen handle */
  CblasSgemm sgemm;
  bool split;             /* sgemm single-threaded, split over the pool (see cpu_gemm) */
  Sgemm *own;             /* crisp's sgemm, when chosen (CRISP_GEMM) */
} Cpu;

struct RtEvent {
  double t;
};

static Cpu *cpu(Backend *b) { return b->impl; }

static const BackendOps cpu_ops;

static int cpu_alloc(Backend *b, size_t bytes, DevPtr *out) {
  size_t n = (bytes + 63) / 64 * 64;
  void *p = aligned_alloc(64, n ? n : 64);
  if (!p)
    return rt_fail(b, "cpu: out of memory allocating %zu bytes", bytes);
  *out = (DevPtr)(uintptr_t)p;
  return 0;
}

static void cpu_free(Backend *b, DevPtr p) {
  (void)b;
  free((void *)(uintptr_t)p);
}

static int cpu_h2d(Backend *b, DevPtr dst, const void *src, size_t n) {
  (void)b;
  memcpy((void *)(uintptr_t)dst, src, n);
  return 0;
}

static int cpu_d2h(Backend *b, void *dst, DevPtr src, size_t n) {
  (void)b;
  memcpy(dst, (const void *)(uintptr_t)src, n);
  return 0;
}

static int cpu_d2d(Backend *b, DevPtr dst, DevPtr src, size_t n) {
  (void)b;
  memmove((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, n);
  return 0;
}

static int cpu_memset(Backend *b, DevPtr dst, int v, size_t n) {
  (void)b;
  memset((void *)(uintptr_t)dst, v, n);
  return 0;
}

static int cpu_load(Backend *b, RtModule *m, const RtModuleSource *src) {
  if (!src->cpu_fns)
    return rt_fail(b, "cpu: the module has no host code (%s)",
                   src->ptx ? "PTX runs on the cuda backend" : "nothing to load");
  for (int i = 0; i < m->manifest.nkernels; i++) {
    if (!src->cpu_fns[i])
      return rt_fail(b, "cpu: no host code for kernel %s", m->manifest.kernels[i].name);
    m->kernels[i].fn = (void *)src->cpu_fns[i];
  }
  return 0;
}

static void cpu_unload(Backend *b, RtModule *m) {
  (void)b;
  (void)m;
}

typedef struct {
  CpuKernelFn fn;
  void **args;
  const int32_t *grid;
} LaunchCtx;

static void run_blocks(void *ctx, int64_t first, int64_t last) {
  LaunchCtx *l = ctx;
  l->fn(l->args, l->grid, first, last);
}

static int cpu_launch(Backend *b, const RtKernel *k, void **args, const int32_t grid[3]) {
  LaunchCtx l = {(CpuKernelFn)k->fn, args, grid};
  rt_pool_run(cpu(b)->pool, (int64_t)grid[0] * grid[1] * grid[2], 0, run_blocks, &l);
  return 0;
}

static int cpu_sync(Backend *b) {
  (void)b;
  return 0;
}

static int cpu_event_create(Backend *b, RtEvent **e) {
  *e = calloc(1, sizeof **e);
  return *e ? 0 : rt_fail(b, "cpu: out of memory");
}

static int cpu_event_record(Backend *b, RtEvent *e) {
  (void)b;
  e->t = rt_now();   /* launches are synchronous: everything before is done */
  return 0;
}

static int cpu_event_elapsed(Backend *b, RtEvent *s, RtEvent *e, float *ms) {
  (void)b;
  *ms = (float)((e->t - s->t) * 1e3);
  return 0;
}

static void cpu_event_destroy(Backend *b, RtEvent *e) {
  (void)b;
  free(e);
}

/* ---- gemm ---- */

typedef struct {
  const RtGemm *g;
  const float *a, *b;
  float *c;
} GemmCtx;

/* The built-in fallback: rows of C in parallel, k-loop in the middle. */
static void gemm_rows(void *ctx, int64_t first, int64_t last) {
  GemmCtx *x = ctx;
  const RtGemm *g = x->g;
  for (int64_t i = first; i < last; i++) {
    float *ci = x->c + i * g->ldc;
    for (int j = 0; j < g->n; j++)
      ci[j] = g->beta == 0 ? 0 : g->beta * ci[j];
    for (int p = 0; p < g->k; p++) {
      float aip = g->ta ? x->a[(int64_t)p * g->lda + i] : x->a[i * g->lda + p];
      aip *= g->alpha;
      for (int j = 0; j < g->n; j++)
        ci[j] += aip * (g->tb ? x->b[(int64_t)j * g->ldb + p] : x->b[(int64_t)p * g->ldb + j]);
    }
  }
}

/* One BLAS call per block of rows (or columns) of C, on the pool's threads. */
typedef struct {
  Cpu *cpu;
  const RtGemm *g;
  const float *a, *b;
  float *c;
  bool by_rows;
  int64_t block;
} SplitCtx;

static void gemm_blocks(void *ctx, int64_t first, int64_t last) {
  const SplitCtx *x = ctx;
  const RtGemm *g = x->g;
  for (int64_t blk = first; blk < last; blk++) {
    int64_t lo = blk * x->block, dim = x->by_rows ? g->m : g->n;
    int len = (int)(lo + x->block < dim ? x->block : dim - lo);
    const float *A = x->a, *B = x->b;
    float *C = x->c;
    if (x->by_rows) {   /* rows lo.. of op(A) and C */
      A += g->ta ? lo : lo * g->lda;
      C += lo * g->ldc;
    } else {            /* columns lo.. of op(B) and C */
      B += g->tb ? lo * g->ldb : lo;
      C += lo;
    }
    x->cpu->sgemm(CBLAS_ROW_MAJOR, g->ta ? CBLAS_TRANS : CBLAS_NO_TRANS,
                  g->tb ? CBLAS_TRANS : CBLAS_NO_TRANS, x->by_rows ? len : g->m,
                  x->by_rows ? g->n : len, g->k, g->alpha, A, g->lda, B, g->ldb, g->beta, C,
                  g->ldc);
  }
}

/* BLAS's own threads spin (sched_yield) for a while after each call and while waiting
 * for each other; between GEMMs the pool runs the attention kernels and the model's
 * loops on the same cores, so on a small machine those spinning threads take time
 * from them. With split, BLAS runs single-threaded and each GEMM is cut along the
 * larger dimension of C into about two blocks per thread (a multiple of 16, at least
 * 64) that the pool's threads take: one set of threads for everything. Each call
 * packs the other operand again, so blocks stay few and large; cutting the larger
 * dimension re-packs the smaller operand. Each element of C is computed by the same
 * single-threaded kernel over the whole k whatever the block, so the result does
 * not depend on the thread count. */
static void gemm_split(Cpu *c, const RtGemm *g, const float *A, const float *B, float *C) {
  SplitCtx x = {c, g, A, B, C, g->m >= g->n, 0};
  int64_t dim = x.by_rows ? g->m : g->n, parts = 2 * (int64_t)rt_pool_threads(c->pool);
  x.block = ((dim + parts - 1) / parts + 15) / 16 * 16;
  if (x.block < 64)
    x.block = 64;
  rt_pool_run(c->pool, (dim + x.block - 1) / x.block, 1, gemm_blocks, &x);
}

static int cpu_gemm(Backend *b, const RtGemm *g) {
  Cpu *c = cpu(b);
  if (c->own) {   /* takes the strided batch itself */
    if (sgemm_run(c->own, c->pool, g, (const float *)(uintptr_t)g->a,
                  (const float *)(uintptr_t)g->b, (float *)(uintptr_t)g->c))
      return rt_fail(b, "cpu: out of memory packing a %dx%dx%d sgemm", g->m, g->n, g->k);
    return 0;
  }
  int batch = g->batch > 1 ? g->batch : 1;
  for (int i = 0; i < batch; i++) {
    const float *A = (const float *)(uintptr_t)g->a + i * g->stride_a;
    const float *B = (const float *)(uintptr_t)g->b + i * g->stride_b;
    float *C = (float *)(uintptr_t)g->c + i * g->stride_c;
    if (c->sgemm && c->split) {
      gemm_split(c, g, A, B, C);
    } else if (c->sgemm) {
      c->sgemm(CBLAS_ROW_MAJOR, g->ta ? CBLAS_TRANS : CBLAS_NO_TRANS,
               g->tb ? CBLAS_TRANS : CBLAS_NO_TRANS, g->m, g->n, g->k, g->alpha, A, g->lda, B,
               g->ldb, g->beta, C, g->ldc);
    } else {
      GemmCtx x = {g, A, B, C};
      rt_pool_run(c->pool, g->m, 0, gemm_rows, &x);
    }
  }
  return 0;
}

struct RtPool *rt_host_pool(Backend *b) {
  return b && b->ops == &cpu_ops ? cpu(b)->pool : NULL;
}

static void cpu_close(Backend *b) {
  Cpu *c = cpu(b);
  rt_pool_free(c->pool);
  sgemm_free(c->own);
  if (c->blas)
    dlclose(c->blas);
  free(c);
  free(b);
}

static const BackendOps cpu_ops = {
    cpu_alloc,        cpu_free,         cpu_h2d,           cpu_d2h,
    cpu_d2d,          cpu_memset,       cpu_load,          cpu_unload,
    cpu_launch,       cpu_sync,         cpu_event_create,  cpu_event_record,
    cpu_event_elapsed, cpu_event_destroy, cpu_gemm,        cpu_close,
};

/* OpenBLAS picks its kernels from the CPU's family and model; where those are
 * masked (virtual machines often report a generic model) it falls back to old SSE
 * kernels, several times slower. Name the kernels from the CPU's feature flags
 * instead, unless the user already chose (OPENBLAS_CORETYPE). */
static void openblas_coretype(void) {
  if (getenv("OPENBLAS_CORETYPE"))
    return;
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f)
    return;
  char line[8192];
  const char *core = NULL;
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, "flags", 5)) {
      bool avx512 = strstr(line, " avx512f") && strstr(line, " avx512bw") &&
                    strstr(line, " avx512vl") && strstr(line, " avx512dq");
      bool avx2 = strstr(line, " avx2") && strstr(line, " fma");
      core = avx512 ? "SkylakeX" : avx2 ? "Haswell" : NULL;
      break;
    }
  fclose(f);
  if (core)
    setenv("OPENBLAS_CORETYPE", core, 0);
}

/* $name, with an empty value read as unset. */
static const char *env_set(const char *name) {
  const char *v = getenv(name);
  return v && *v ? v : NULL;
}

/* The first BLAS that provides cblas_sgemm. A library named by CRISP_BLAS that cannot
 * be loaded is an error, not a quiet fall-back to the built-in loops (tens of times
 * slower): the user asked for that one. 0, or -1 with err. */
static int load_blas(Cpu *c, Backend *b, char *err, size_t cap) {
  const char *env = env_set("CRISP_BLAS");
  const char *const defaults[] = {"libopenblas.so.0", "libcblas.so.3", "libblas.so.3", NULL};
  const char *one[] = {env, NULL};
  const char *const *names = env ? one : defaults;
  snprintf(b->gemm_lib, sizeof b->gemm_lib, "built-in loops (no BLAS found)");
  if (env && !strcmp(env, "none")) {
    snprintf(b->gemm_lib, sizeof b->gemm_lib, "built-in loops (CRISP_BLAS=none)");
    return 0;
  }
  openblas_coretype();
  for (int i = 0; names[i]; i++) {
    void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    CblasSgemm f = h ? (CblasSgemm)dlsym(h, "cblas_sgemm") : NULL;
    if (!f) {
      if (env) {
        snprintf(err, cap, "cpu: CRISP_BLAS=%.200s: %.300s", env,
                 h ? "the library has no cblas_sgemm" : dlerror());
        if (h)
          dlclose(h);
        return -1;
      }
      if (h)
        dlclose(h);
      continue;
    }
    c->blas = h;
    c->sgemm = f;
    /* CRISP_GEMM_THREADS=blas keeps BLAS's own threading (see gemm_split) */
    void (*set_threads)(int) = (void (*)(int))dlsym(h, "openblas_set_num_threads");
    const char *mode = env_set("CRISP_GEMM_THREADS");
    if (set_threads && rt_pool_threads(c->pool) > 1 && !mode) {
      set_threads(1);
      c->split = true;
    }
    char *(*config)(void) = (char *(*)(void))dlsym(h, "openblas_get_config");
    if (config)
      snprintf(b->gemm_lib, sizeof b->gemm_lib, "%.80s", config());
    else
      snprintf(b->gemm_lib, sizeof b->gemm_lib, "%.80s", names[i]);
    return 0;
  }
  return 0;
}

/* Whether the loaded BLAS runs 512-bit kernels: OpenBLAS names its kernel set. */
static bool blas_is_avx512(const Cpu *c) {
  char *(*core)(void) = (char *(*)(void))dlsym(c->blas, "openblas_get_corename");
  const char *name = core ? core() : NULL;
  return name && (strcasestr(name, "skylakex") || strcasestr(name, "cooperlake") ||
                  strcasestr(name, "sapphirerapids"));
}

static void unload_blas(Cpu *c) {
  dlclose(c->blas);
  c->blas = NULL;
  c->sgemm = NULL;
  c->split = false;
}

/* CRISP_GEMM: crisp's sgemm or BLAS. auto takes BLAS where the user named one
 * (CRISP_BLAS), where the CPU lacks AVX-512F, or where OpenBLAS runs its own AVX-512
 * kernels (3-10 % faster per training step here, docs/training.md); crisp's sgemm
 * where the BLAS would run narrower kernels than the CPU has (an OPENBLAS_CORETYPE
 * of Haswell, as on this project's machines) or no BLAS is found. 0, or -1 with a
 * message in err. */
static int choose_gemm(Cpu *c, Backend *b, char *err, size_t cap) {
  const char *mode = getenv("CRISP_GEMM");
  const char *threads = env_set("CRISP_GEMM_THREADS");
  if (threads && strcmp(threads, "blas")) {   /* a typo would silently change nothing */
    snprintf(err, cap, "cpu: CRISP_GEMM_THREADS=%.40s: expected blas (or unset)", threads);
    return -1;
  }
  if (!mode || !*mode)
    mode = "auto";
  bool own;
  if (!strcmp(mode, "auto")) {
    own = sgemm_supported() && !env_set("CRISP_BLAS");
    if (own) {
      if (load_blas(c, b, err, cap))
        return -1;
      own = !c->blas || !blas_is_avx512(c);
      if (own && c->blas)
        unload_blas(c);
    }
  } else if (!strcmp(mode, "crisp") || !strcmp(mode, "blas")) {
    own = !strcmp(mode, "crisp");
  } else {
    snprintf(err, cap, "cpu: CRISP_GEMM=%.40s: expected auto, crisp or blas", mode);
    return -1;
  }
  if (!own)
    return c->blas ? 0 : load_blas(c, b, err, cap);
  if (!(c->own = sgemm_new(SGEMM_FAST))) {
    snprintf(err, cap, "cpu: out of memory");
    return -1;
  }
  snprintf(b->gemm_lib, sizeof b->gemm_lib, "crisp sgemm (%s %dx%d tile)",
           sgemm_supported() ? "AVX-512" : "generic", SGEMM_MR, SGEMM_NR);
  return 0;
}

static void cpu_model(char *buf, size_t cap) {
  snprintf(buf, cap, "unknown CPU");
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f)
    return;
  char line[512];
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, "model name", 10)) {
      char *v = strchr(line, ':');
      if (v) {
        v++;
        while (*v == ' ' || *v == '\t')
          v++;
        v[strcspn(v, "\n")] = 0;
        snprintf(buf, cap, "%s", v);
      }
      break;
    }
  fclose(f);
}

Backend *rt_cpu_open(const BackendOptions *opt, char *err, size_t cap) {
  Backend *b = calloc(1, sizeof *b);
  Cpu *c = calloc(1, sizeof *c);
  if (!b || !c) {
    free(b);
    free(c);
    snprintf(err, cap, "cpu: out of memory");
    return NULL;
  }
  int spin_us;
  if (rt_pool_spin_env(&spin_us, err, cap)) {
    free(b);
    free(c);
    return NULL;
  }
  c->pool = rt_pool_new(opt ? opt->threads : 0);
  if (!c->pool) {
    free(b);
    free(c);
    snprintf(err, cap, "cpu: cannot start the thread pool");
    return NULL;
  }
  if (spin_us >= 0)
    rt_pool_set_spin_us(c->pool, spin_us);
  b->kind = "cpu";
  b->ops = &cpu_ops;
  b->impl = c;
  b->threads = rt_pool_threads(c->pool);
  cpu_model(b->device_name, sizeof b->device_name);
  snprintf(b->driver, sizeof b->driver, "host");
  snprintf(b->target, sizeof b->target, "host");
  snprintf(b->device_key, sizeof b->device_key, "%.150s x%d threads", b->device_name,
           b->threads);
  if (choose_gemm(c, b, err, cap)) {
    cpu_close(b);
    return NULL;
  }
  return b;
}
