/* backend.h: one small interface over the devices crisp runs on.
 *
 *   b = backend_open("auto" | "cpu" | "cuda", &opts, err, cap)
 *   rt_alloc / rt_free / rt_h2d / rt_d2h / rt_d2d / rt_memset   device memory
 *   rt_module_load(b, &src, &m)     kernels + their manifest (see RtModuleSource)
 *   rt_launch(b, rt_kernel(m, name), args)   grid from the manifest's rule
 *   rt_sync, rt_event_*             ordering and timing (device events on the GPU)
 *   rt_gemm                         dense sgemm through BLAS / cuBLAS
 *   backend_close(b)
 *
 * "cpu" runs host kernels (CpuKernelFn, compiled by the JIT library in
 * runtime/compile.h) on a thread pool over the grid; a device pointer is a host
 * pointer. "cuda" loads libcuda.so.1 with dlopen (the binary never links it), uses
 * the device's primary context, loads PTX with cuModuleLoadDataEx and launches on
 * its own stream; cuBLAS is loaded the same way on first use. "auto" tries cuda and
 * falls back to cpu with one line on stderr saying why. Arguments follow CUDA's
 * kernelParams convention: args[i] points to parameter i's value (for a buffer, to
 * a DevPtr). Every call returns 0, or -1 with a message in backend_error(b) that
 * names the failing call (CUDA results by name, e.g. CUDA_ERROR_INVALID_PTX).
 * A backend is used from one thread at a time. */
#ifndef CRISP_RT_BACKEND_H
#define CRISP_RT_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rt_manifest.h"

typedef uint64_t DevPtr;

/* The host kernel calling convention (same as compiler/jit.h). */
typedef void (*CpuKernelFn)(void **args, const int32_t *grid, int64_t first_block,
                            int64_t last_block);

typedef struct Backend Backend;
typedef struct RtModule RtModule;
typedef struct RtEvent RtEvent;

typedef struct RtKernel {
  const RtKernelInfo *info;   /* in the module's manifest */
  RtModule *module;
  void *fn;                   /* CpuKernelFn or CUfunction */
} RtKernel;

struct RtModule {
  RtManifest manifest;
  RtKernel kernels[RT_MAX_KERNELS];
  void *impl;                 /* backend's handle (CUmodule) */
  void *owner;                /* what keeps host code alive (a JIT), freed with the module */
  void (*owner_free)(void *);
  char *jit_log;              /* cuda: the driver's JIT info log (may be NULL) */
};

/* What to load: the manifest (parsed, or JSON text), and the code for the backend:
 * PTX text for cuda, one CpuKernelFn per manifest kernel for cpu. owner/owner_free
 * pass to the module, which frees them on unload (or at once if loading fails). */
typedef struct RtModuleSource {
  const RtManifest *manifest;
  const char *manifest_json;
  size_t manifest_len;
  const char *ptx;
  size_t ptx_len;
  const CpuKernelFn *cpu_fns;
  void *owner;
  void (*owner_free)(void *);
} RtModuleSource;

typedef enum { RT_NOTRANS = 0, RT_TRANS = 1 } RtTrans;

/* Row-major C = alpha * op(A) * op(B) + beta * C, C m x n, op(A) m x k, op(B) k x n;
 * batch > 1 repeats it at the given element strides (strided batched). */
typedef struct RtGemm {
  RtTrans ta, tb;
  int m, n, k;
  float alpha, beta;
  DevPtr a, b, c;
  int lda, ldb, ldc;
  int batch;                  /* 0 or 1: one product */
  int64_t stride_a, stride_b, stride_c;
} RtGemm;

typedef struct BackendOptions {
  int threads;                /* cpu: pool threads (0 = one per online core) */
  int device;                 /* cuda: device ordinal */
  bool quiet;                 /* auto: no fallback line */
} BackendOptions;

typedef struct BackendOps {
  int (*alloc)(Backend *, size_t bytes, DevPtr *out);
  void (*free)(Backend *, DevPtr);
  int (*h2d)(Backend *, DevPtr dst, const void *src, size_t bytes);
  int (*d2h)(Backend *, void *dst, DevPtr src, size_t bytes);
  int (*d2d)(Backend *, DevPtr dst, DevPtr src, size_t bytes);
  int (*memset8)(Backend *, DevPtr dst, int value, size_t bytes);
  int (*load)(Backend *, RtModule *m, const RtModuleSource *src);
  void (*unload)(Backend *, RtModule *m);
  int (*launch)(Backend *, const RtKernel *k, void **args, const int32_t grid[3]);
  int (*sync)(Backend *);
  int (*event_create)(Backend *, RtEvent **);
  int (*event_record)(Backend *, RtEvent *);
  int (*event_elapsed)(Backend *, RtEvent *start, RtEvent *end, float *ms);
  void (*event_destroy)(Backend *, RtEvent *);
  int (*gemm)(Backend *, const RtGemm *);
  void (*close)(Backend *);
} BackendOps;

struct Backend {
  const char *kind;           /* "cpu" or "cuda" */
  char device_name[128];      /* "NVIDIA H100 80GB HBM3", or the CPU's model name */
  char driver[64];            /* "CUDA driver 13.0", or "host" */
  char target[16];            /* code it runs: "host", "sm_90", "sm_80" */
  char gemm_lib[96];          /* which BLAS: "OpenBLAS ...", "cuBLAS ...", "built-in loops" */
  char device_key[192];       /* tuning database key: the device and what changes its speed */
  int threads;                /* cpu: pool size */
  int cc_major, cc_minor, sm_count;   /* cuda */
  char err[4096];
  const BackendOps *ops;
  void *impl;
};

/* device: "auto" (or NULL), "cpu" or "cuda". NULL with a message on failure. */
Backend *backend_open(const char *device, const BackendOptions *opt, char *err, size_t cap);
void backend_close(Backend *b);
const char *backend_error(const Backend *b);
/* "cuda: NVIDIA H100 ... (sm_90, 132 SMs), CUDA driver 13.0, gemm cuBLAS 13.0" etc. */
void backend_describe(const Backend *b, char *buf, size_t cap);

/* Returns 0 if "auto"/"cpu"/"cuda", else -1. */
int backend_check_name(const char *device);

/* Each backend's constructor (backend_open dispatches to these). */
Backend *rt_cpu_open(const BackendOptions *opt, char *err, size_t cap);
Backend *rt_cuda_open(const BackendOptions *opt, char *err, size_t cap);

/* ---- the calls ---- */
int rt_alloc(Backend *b, size_t bytes, DevPtr *out);
void rt_free(Backend *b, DevPtr p);
int rt_h2d(Backend *b, DevPtr dst, const void *src, size_t bytes);
int rt_d2h(Backend *b, void *dst, DevPtr src, size_t bytes);
int rt_d2d(Backend *b, DevPtr dst, DevPtr src, size_t bytes);
int rt_memset(Backend *b, DevPtr dst, int value, size_t bytes);

int rt_module_load(Backend *b, const RtModuleSource *src, RtModule **out);
void rt_module_unload(Backend *b, RtModule *m);
/* The kernel called name (NULL if absent: message in backend_error). */
RtKernel *rt_kernel(Backend *b, RtModule *m, const char *name);

/* Launches over the grid the manifest's rule gives for these args; an empty grid is
 * a no-op. rt_launch_grid takes an explicit grid. */
int rt_launch(Backend *b, const RtKernel *k, void **args);
int rt_launch_grid(Backend *b, const RtKernel *k, void **args, const int32_t grid[3]);
/* One argument by name, for kernels whose parameter order is the manifest's business:
 * val points to the DevPtr of a buffer or to the scalar (of exactly `type`). */
typedef struct RtArg {
  const char *name;
  bool is_buf;
  RtType type;       /* scalars only; a buffer's element type is the manifest's */
  const void *val;
} RtArg;
/* Binds every parameter of k by name from tab[0..n) and launches (rt_launch). 0, or
 * -1 with err: a parameter missing from tab or of another kind, or the backend's error. */
int rt_launch_named(Backend *b, const RtKernel *k, const RtArg *tab, int n, char *err,
                    size_t cap);
int rt_sync(Backend *b);

int rt_event_create(Backend *b, RtEvent **e);
int rt_event_record(Backend *b, RtEvent *e);
/* Waits for end, then the milliseconds between the two records. */
int rt_event_elapsed(Backend *b, RtEvent *start, RtEvent *end, float *ms);
void rt_event_destroy(Backend *b, RtEvent *e);

int rt_gemm(Backend *b, const RtGemm *g);

/* The cpu backend's thread pool (the one its kernels run on), for host loops that
 * run between launches, such as the model's elementwise layers; NULL for any other
 * backend. Borrowed: it lives as long as the backend. */
struct RtPool *rt_host_pool(Backend *b);

/* Sets b->err (printf-style) and returns -1. */
int rt_fail(Backend *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
