/* A stand-in for libcuda.so.1 with no GPU behind it, so the CUDA backend's own
 * logic (start-up, memory, copies, module loading with its JIT logs, launches,
 * events, error reporting) is tested on machines without a driver. Loaded by the
 * tests through $CRISP_LIBCUDA. "Device memory" is host memory; launches run
 * nothing. $FAKE_CUDA_FAIL=NAME:CODE makes the entry point NAME return CODE;
 * PTX containing "BAD_PTX" fails to load with an error log, like ptxas would. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int CUresult;
typedef unsigned long long CUdeviceptr;

static CUresult injected(const char *name) {
  const char *f = getenv("FAKE_CUDA_FAIL");
  size_t n = strlen(name);
  if (f && !strncmp(f, name, n) && f[n] == ':')
    return atoi(f + n + 1);
  return 0;
}

#define ENTER(name)                \
  do {                             \
    CUresult r_ = injected(name);  \
    if (r_)                        \
      return r_;                   \
  } while (0)

static int ctx_token, stream_token, module_token, function_token;

CUresult cuInit(unsigned flags) { (void)flags; ENTER("cuInit"); return 0; }
CUresult cuDriverGetVersion(int *v) { ENTER("cuDriverGetVersion"); *v = 13000; return 0; }
CUresult cuDeviceGetCount(int *n) {
  ENTER("cuDeviceGetCount");
  const char *e = getenv("FAKE_CUDA_DEVICES");
  *n = e ? atoi(e) : 1;
  return 0;
}
CUresult cuDeviceGet(int *d, int ordinal) { ENTER("cuDeviceGet"); *d = ordinal; return 0; }
CUresult cuDeviceGetName(char *name, int len, int dev) {
  (void)dev;
  ENTER("cuDeviceGetName");
  snprintf(name, (size_t)len, "Fake GPU");
  return 0;
}
CUresult cuDeviceGetAttribute(int *v, int attr, int dev) {
  (void)dev;
  ENTER("cuDeviceGetAttribute");
  const char *cc = getenv("FAKE_CUDA_CC");   /* e.g. "75" */
  int major = cc ? atoi(cc) / 10 : 9, minor = cc ? atoi(cc) % 10 : 0;
  *v = attr == 75 ? major : attr == 76 ? minor : attr == 16 ? 132 : 0;
  return 0;
}
CUresult cuDevicePrimaryCtxRetain(void **ctx, int dev) {
  (void)dev;
  ENTER("cuDevicePrimaryCtxRetain");
  *ctx = &ctx_token;
  return 0;
}
CUresult cuDevicePrimaryCtxRelease_v2(int dev) { (void)dev; return 0; }
CUresult cuCtxSetCurrent(void *ctx) { (void)ctx; ENTER("cuCtxSetCurrent"); return 0; }
CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t n) {
  ENTER("cuMemAlloc");
  void *m = malloc(n);
  if (!m)
    return 2;
  *p = (CUdeviceptr)(unsigned long)m;
  return 0;
}
CUresult cuMemFree_v2(CUdeviceptr p) { free((void *)(unsigned long)p); return 0; }
CUresult cuMemcpyHtoD_v2(CUdeviceptr d, const void *s, size_t n) {
  ENTER("cuMemcpyHtoD");
  memcpy((void *)(unsigned long)d, s, n);
  return 0;
}
CUresult cuMemcpyDtoH_v2(void *d, CUdeviceptr s, size_t n) {
  ENTER("cuMemcpyDtoH");
  memcpy(d, (const void *)(unsigned long)s, n);
  return 0;
}
CUresult cuMemcpyDtoD_v2(CUdeviceptr d, CUdeviceptr s, size_t n) {
  ENTER("cuMemcpyDtoD");
  memmove((void *)(unsigned long)d, (const void *)(unsigned long)s, n);
  return 0;
}
CUresult cuMemsetD8_v2(CUdeviceptr d, unsigned char v, size_t n) {
  ENTER("cuMemsetD8");
  memset((void *)(unsigned long)d, v, n);
  return 0;
}
CUresult cuModuleLoadDataEx(void **mod, const void *image, unsigned n, int *opts, void **vals) {
  ENTER("cuModuleLoadDataEx");
  char *info = NULL, *error = NULL;
  size_t info_cap = 0, error_cap = 0;
  for (unsigned i = 0; i < n; i++) {
    if (opts[i] == 3) info = vals[i];
    if (opts[i] == 4) info_cap = (size_t)(unsigned long)vals[i];
    if (opts[i] == 5) error = vals[i];
    if (opts[i] == 6) error_cap = (size_t)(unsigned long)vals[i];
  }
  if (strstr(image, "BAD_PTX")) {
    if (error && error_cap)
      snprintf(error, error_cap, "ptxas application ptx input, line 7; error   : Unknown symbol 'BAD_PTX'");
    return 218;   /* CUDA_ERROR_INVALID_PTX */
  }
  if (info && info_cap)
    snprintf(info, info_cap, "ptxas info    : Used 40 registers");
  *mod = &module_token;
  return 0;
}
CUresult cuModuleUnload(void *mod) { (void)mod; return 0; }
CUresult cuModuleGetFunction(void **f, void *mod, const char *name) {
  (void)mod;
  ENTER("cuModuleGetFunction");
  if (strstr(name, "missing"))
    return 500;   /* CUDA_ERROR_NOT_FOUND */
  *f = &function_token;
  return 0;
}
CUresult cuFuncGetAttribute(int *v, int attr, void *f) {
  (void)f;
  ENTER("cuFuncGetAttribute");
  const char *e = getenv("FAKE_CUDA_MAX_THREADS");
  *v = attr == 0 ? (e ? atoi(e) : 1024) : attr == 4 ? 40 : attr == 1 ? 9216 : 0;
  return 0;
}
CUresult cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                        unsigned bz, unsigned shared, void *stream, void **args, void **extra) {
  (void)f, (void)gx, (void)gy, (void)gz, (void)bx, (void)by, (void)bz, (void)shared;
  (void)stream, (void)args, (void)extra;
  ENTER("cuLaunchKernel");
  return 0;
}
CUresult cuStreamCreate(void **s, unsigned flags) {
  (void)flags;
  ENTER("cuStreamCreate");
  *s = &stream_token;
  return 0;
}
CUresult cuStreamDestroy_v2(void *s) { (void)s; return 0; }
CUresult cuStreamSynchronize(void *s) { (void)s; ENTER("cuStreamSynchronize"); return 0; }

typedef struct { double t; } Event;
CUresult cuEventCreate(void **e, unsigned flags) {
  (void)flags;
  ENTER("cuEventCreate");
  *e = calloc(1, sizeof(Event));
  return 0;
}
CUresult cuEventRecord(void *e, void *s) {
  (void)s;
  ENTER("cuEventRecord");
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  ((Event *)e)->t = ts.tv_sec + 1e-9 * ts.tv_nsec;
  return 0;
}
CUresult cuEventSynchronize(void *e) { (void)e; return 0; }
CUresult cuEventElapsedTime(float *ms, void *a, void *b) {
  ENTER("cuEventElapsedTime");
  *ms = (float)((((Event *)b)->t - ((Event *)a)->t) * 1e3);
  return 0;
}
CUresult cuEventDestroy_v2(void *e) { free(e); return 0; }
CUresult cuGetErrorString(CUresult r, const char **s) {
  *s = r == 218 ? "a PTX JIT compilation failed" : r == 2 ? "out of memory" : "fake error";
  return 0;
}
