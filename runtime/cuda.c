/* The CUDA backend (see backend.h) through the driver API, loaded with dlopen so
 * that one binary runs with or without a driver. The driver's types are declared
 * in cuda_impl.h (the toolkit need not be installed to build).
 *
 * Context: the device's primary context (the one the CUDA runtime, and so cuBLAS,
 * uses too), made current on every entry. Work goes to one stream of our own; the
 * synchronous copies on the legacy default stream order themselves after it.
 * Every driver call is checked; a failure is reported as
 *   "cuda: cuModuleLoadDataEx: CUDA_ERROR_INVALID_PTX (218): a PTX JIT compilation failed"
 * followed, for module loads, by the JIT's error log. $CRISP_LIBCUDA names another
 * driver library (the tests use the toolkit's stub, whose every call fails).
 * gemm goes through cuBLAS, in cuda_blas.c. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_impl.h"
#include "cuda_names.h"

/* Formats a failed call: "cuda: WHAT: NAME (code): description". */
int cu_fail(Backend *b, const Driver *d, CUresult r, const char *what) {
  const char *desc = NULL;
  if (d && d->cuGetErrorString && d->cuGetErrorString(r, &desc) != 0)
    desc = NULL;
  return rt_fail(b, "cuda: %s: %s (%d)%s%s", what, cu_result_name(r), r, desc ? ": " : "",
                 desc ? desc : "");
}

static int cuda_alloc(Backend *b, size_t bytes, DevPtr *out) {
  CUdeviceptr p = 0;
  char what[96];
  if (enter(b))
    return -1;
  snprintf(what, sizeof what, "cuMemAlloc(%zu bytes)", bytes);
  CHECK(b, cu(b)->d.cuMemAlloc(&p, bytes ? bytes : 1), what);
  *out = p;
  return 0;
}

static void cuda_free(Backend *b, DevPtr p) {
  if (!enter(b))
    cu(b)->d.cuMemFree(p);   /* nothing useful to do with a failure here */
}

static int cuda_h2d(Backend *b, DevPtr dst, const void *src, size_t n) {
  if (enter(b))
    return -1;
  CHECK(b, cu(b)->d.cuMemcpyHtoD(dst, src, n), "cuMemcpyHtoD");
  return 0;
}

static int cuda_d2h(Backend *b, void *dst, DevPtr src, size_t n) {
  if (enter(b))
    return -1;
  CHECK(b, cu(b)->d.cuStreamSynchronize(cu(b)->stream), "cuStreamSynchronize (before a copy)");
  CHECK(b, cu(b)->d.cuMemcpyDtoH(dst, src, n), "cuMemcpyDtoH");
  return 0;
}

static int cuda_d2d(Backend *b, DevPtr dst, DevPtr src, size_t n) {
  if (enter(b))
    return -1;
  CHECK(b, cu(b)->d.cuMemcpyDtoD(dst, src, n), "cuMemcpyDtoD");
  return 0;
}

static int cuda_memset(Backend *b, DevPtr dst, int v, size_t n) {
  if (enter(b))
    return -1;
  CHECK(b, cu(b)->d.cuMemsetD8(dst, (unsigned char)v, n), "cuMemsetD8");
  return 0;
}

/* Appends the registers, local and shared memory of each kernel to the log. */
static void describe_functions(Backend *b, RtModule *m, char *log, size_t cap) {
  size_t used = strlen(log);
  for (int i = 0; i < m->manifest.nkernels && used < cap; i++) {
    int regs = -1, local = -1, shared = -1;
    CUfunction f = m->kernels[i].fn;
    cu(b)->d.cuFuncGetAttribute(&regs, CU_FUNC_ATTRIBUTE_NUM_REGS, f);
    cu(b)->d.cuFuncGetAttribute(&local, CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES, f);
    cu(b)->d.cuFuncGetAttribute(&shared, CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, f);
    int n = snprintf(log + used, cap - used, "%skernel %s: %d registers, %d bytes local, %d bytes shared",
                     used ? "\n" : "", m->manifest.kernels[i].name, regs, local, shared);
    if (n > 0)
      used += (size_t)n;
  }
}

static int cuda_load(Backend *b, RtModule *m, const RtModuleSource *src) {
  if (!src->ptx)
    return rt_fail(b, "cuda: the module has no PTX (%s)",
                   src->cpu_fns ? "host code runs on the cpu backend" : "nothing to load");
  if (strcmp(m->manifest.target, "host") == 0)
    return rt_fail(b, "cuda: the manifest is for target host, not a GPU");
  if (enter(b))
    return -1;
  /* the driver wants NUL-terminated PTX */
  char *ptx = malloc(src->ptx_len + 1);
  if (!ptx)
    return rt_fail(b, "cuda: out of memory");
  memcpy(ptx, src->ptx, src->ptx_len);
  ptx[src->ptx_len] = 0;
  enum { LOG = 1 << 14 };
  char *info = calloc(1, LOG), *error = calloc(1, LOG);
  if (!info || !error) {
    free(ptx);
    free(info);
    free(error);
    return rt_fail(b, "cuda: out of memory");
  }
  CUjit_option opts[] = {CU_JIT_INFO_LOG_BUFFER, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES,
                         CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES,
                         CU_JIT_LOG_VERBOSE};
  void *vals[] = {info, (void *)(uintptr_t)LOG, error, (void *)(uintptr_t)LOG, (void *)(uintptr_t)1};
  CUmodule mod = NULL;
  CUresult r = cu(b)->d.cuModuleLoadDataEx(&mod, ptx, 5, opts, vals);
  free(ptx);
  if (r != 0) {
    cu_fail(b, &cu(b)->d, r, "cuModuleLoadDataEx");
    size_t used = strlen(b->err);
    snprintf(b->err + used, sizeof b->err - used, "\nJIT error log:\n%s%s",
             error[0] ? error : "(empty)", info[0] ? "\nJIT info log:\n" : "");
    used = strlen(b->err);
    if (info[0])
      snprintf(b->err + used, sizeof b->err - used, "%s", info);
    free(info);
    free(error);
    return -1;
  }
  free(error);
  m->impl = mod;
  for (int i = 0; i < m->manifest.nkernels; i++) {
    const RtKernelInfo *k = &m->manifest.kernels[i];
    CUfunction f = NULL;
    char what[160];
    snprintf(what, sizeof what, "cuModuleGetFunction(%s)", k->name);
    r = cu(b)->d.cuModuleGetFunction(&f, mod, k->name);
    int max_threads = 0;
    if (r == 0)
      r = cu(b)->d.cuFuncGetAttribute(&max_threads, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, f);
    if (r != 0) {
      cu_fail(b, &cu(b)->d, r, what);
      cu(b)->d.cuModuleUnload(mod);
      free(info);
      return -1;
    }
    if (max_threads < k->threads) {
      rt_fail(b, "cuda: kernel %s needs %d threads per block but compiles to at most %d "
              "(too many registers)", k->name, k->threads, max_threads);
      cu(b)->d.cuModuleUnload(mod);
      free(info);
      return -1;
    }
    m->kernels[i].fn = f;
  }
  size_t used = strlen(info);
  if (used + 1024 < LOG) {
    if (used)
      info[used++] = '\n', info[used] = 0;
    describe_functions(b, m, info + used, LOG - used);
  }
  m->jit_log = info;
  return 0;
}

static void cuda_unload(Backend *b, RtModule *m) {
  if (m->impl && !enter(b))
    cu(b)->d.cuModuleUnload(m->impl);
}

static int cuda_launch(Backend *b, const RtKernel *k, void **args, const int32_t grid[3]) {
  if (grid[1] > 65535 || grid[2] > 65535)
    return rt_fail(b, "cuda: launch %s: grid (%d, %d, %d) exceeds 65535 in y or z",
                   k->info->name, grid[0], grid[1], grid[2]);
  if (enter(b))
    return -1;
  char what[160];
  snprintf(what, sizeof what, "cuLaunchKernel(%s, grid %d x %d x %d, %d threads)",
           k->info->name, grid[0], grid[1], grid[2], k->info->threads);
  CHECK(b, cu(b)->d.cuLaunchKernel(k->fn, (unsigned)grid[0], (unsigned)grid[1], (unsigned)grid[2],
                                   (unsigned)k->info->threads, 1, 1, 0, cu(b)->stream, args, NULL),
        what);
  return 0;
}

static int cuda_sync(Backend *b) {
  if (enter(b))
    return -1;
  CHECK(b, cu(b)->d.cuStreamSynchronize(cu(b)->stream), "cuStreamSynchronize");
  return 0;
}

static int cuda_event_create(Backend *b, RtEvent **e) {
  if (enter(b))
    return -1;
  RtEvent *ev = calloc(1, sizeof *ev);
  if (!ev)
    return rt_fail(b, "cuda: out of memory");
  CUresult r = cu(b)->d.cuEventCreate(&ev->e, CU_EVENT_DEFAULT);
  if (r != 0) {
    free(ev);
    return cu_fail(b, &cu(b)->d, r, "cuEventCreate");
  }
  *e = ev;
  return 0;
}

static int cuda_event_record(Backend *b, RtEvent *e) {
  if (enter(b))
    return -1;
  CHECK(b, cu(b)->d.cuEventRecord(e->e, cu(b)->stream), "cuEventRecord");
  return 0;
}

static int cuda_event_elapsed(Backend *b, RtEvent *s, RtEvent *e, float *ms) {
  if (enter(b))
    return -1;
  CHECK(b, cu(b)->d.cuEventSynchronize(e->e), "cuEventSynchronize");
  CHECK(b, cu(b)->d.cuEventElapsedTime(ms, s->e, e->e), "cuEventElapsedTime");
  return 0;
}

static void cuda_event_destroy(Backend *b, RtEvent *e) {
  if (!enter(b))
    cu(b)->d.cuEventDestroy(e->e);
  free(e);
}

static void cuda_close(Backend *b) {
  Cuda *c = cu(b);
  if (c->ctx && !enter(b)) {
    if (c->blas.handle)
      c->blas.destroy(c->blas.handle);
    if (c->stream)
      c->d.cuStreamDestroy(c->stream);
    c->d.cuDevicePrimaryCtxRelease(c->dev);
  }
  if (c->blas.lib)
    dlclose(c->blas.lib);
  /* libcuda stays loaded: unloading the driver while the process runs is not safe */
  free(c);
  free(b);
}

static const BackendOps cuda_ops = {
    cuda_alloc,         cuda_free,          cuda_h2d,          cuda_d2h,
    cuda_d2d,           cuda_memset,        cuda_load,         cuda_unload,
    cuda_launch,        cuda_sync,          cuda_event_create, cuda_event_record,
    cuda_event_elapsed, cuda_event_destroy, cuda_gemm,         cuda_close,
};

static int resolve(Driver *d, void *lib, char *err, size_t cap) {
  const char *names[2];
  void *p;
#define RESOLVE(name, params, sym, alt)                            \
  names[0] = sym, names[1] = alt, p = NULL;                      \
  for (int i = 0; i < 2 && !p; i++)                              \
    if (names[i])                                                \
      p = dlsym(lib, names[i]);                                  \
  if (!p) {                                                      \
    snprintf(err, cap, "cuda: the driver library has no %s", sym); \
    return -1;                                                   \
  }                                                              \
  *(void **)&d->name = p;
  DRIVER_CALLS(RESOLVE)
#undef RESOLVE
  return 0;
}

/* Opens the driver and device; on failure err says why, in one line. */
static int cuda_start(Backend *b, Cuda *c, const BackendOptions *opt, char *err, size_t cap) {
  const char *env = getenv("CRISP_LIBCUDA");
  const char *name = env && *env ? env : "libcuda.so.1";
  c->lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
  if (!c->lib) {
    snprintf(err, cap, "cuda: cannot load the CUDA driver: %s", dlerror());
    return -1;
  }
  if (resolve(&c->d, c->lib, err, cap))
    return -1;
  Driver *d = &c->d;
  int count = 0, version = 0, ordinal = opt ? opt->device : 0;
#define START(call, what)                                \
  do {                                                   \
    CUresult r_ = (call);                                \
    if (r_ != 0) {                                       \
      cu_fail(b, d, r_, (what));                         \
      snprintf(err, cap, "%s", b->err);                  \
      return -1;                                         \
    }                                                    \
  } while (0)
  START(d->cuInit(0), "cuInit");
  START(d->cuDriverGetVersion(&version), "cuDriverGetVersion");
  START(d->cuDeviceGetCount(&count), "cuDeviceGetCount");
  if (count == 0) {
    snprintf(err, cap, "cuda: the driver sees no CUDA device");
    return -1;
  }
  if (ordinal < 0 || ordinal >= count) {
    snprintf(err, cap, "cuda: no device %d (the driver sees %d)", ordinal, count);
    return -1;
  }
  START(d->cuDeviceGet(&c->dev, ordinal), "cuDeviceGet");
  START(d->cuDeviceGetName(b->device_name, (int)sizeof b->device_name - 1, c->dev),
        "cuDeviceGetName");
  START(d->cuDeviceGetAttribute(&b->cc_major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, c->dev),
        "cuDeviceGetAttribute(compute capability major)");
  START(d->cuDeviceGetAttribute(&b->cc_minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, c->dev),
        "cuDeviceGetAttribute(compute capability minor)");
  START(d->cuDeviceGetAttribute(&b->sm_count, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, c->dev),
        "cuDeviceGetAttribute(multiprocessor count)");
  START(d->cuDevicePrimaryCtxRetain(&c->ctx, c->dev), "cuDevicePrimaryCtxRetain");
  START(d->cuCtxSetCurrent(c->ctx), "cuCtxSetCurrent");
  START(d->cuStreamCreate(&c->stream, CU_STREAM_DEFAULT), "cuStreamCreate");
#undef START
  snprintf(b->driver, sizeof b->driver, "CUDA driver %d.%d", version / 1000, version % 1000 / 10);
  if (b->cc_major >= 9)
    snprintf(b->target, sizeof b->target, "sm_90");
  else if (b->cc_major >= 8)
    snprintf(b->target, sizeof b->target, "sm_80");
  else
    snprintf(b->target, sizeof b->target, "none");
  snprintf(b->device_key, sizeof b->device_key, "%.120s (sm_%d%d, %d SMs)", b->device_name,
           b->cc_major, b->cc_minor, b->sm_count);
  snprintf(b->gemm_lib, sizeof b->gemm_lib, "cuBLAS (loaded on first use)");
  return 0;
}

Backend *rt_cuda_open(const BackendOptions *opt, char *err, size_t cap) {
  Backend *b = calloc(1, sizeof *b);
  Cuda *c = calloc(1, sizeof *c);
  if (!b || !c) {
    free(b);
    free(c);
    snprintf(err, cap, "cuda: out of memory");
    return NULL;
  }
  b->kind = "cuda";
  b->ops = &cuda_ops;
  b->impl = c;
  if (cuda_start(b, c, opt, err, cap)) {
    if (c->ctx) {
      if (c->stream)
        c->d.cuStreamDestroy(c->stream);
      c->d.cuDevicePrimaryCtxRelease(c->dev);
    }
    free(c);
    free(b);
    return NULL;
  }
  if (strcmp(b->target, "none") == 0) {
    snprintf(err, cap, "cuda: %s is compute capability %d.%d; crisp's kernels need 8.0 or newer",
             b->device_name, b->cc_major, b->cc_minor);
    cuda_close(b);
    return NULL;
  }
  return b;
}
