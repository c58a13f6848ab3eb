/* cuda_impl.h: the CUDA backend's internals, shared by cuda.c (the driver: memory,
 * modules, launches, events, opening and closing) and cuda_blas.c (gemm through
 * cuBLAS). The driver's and cuBLAS's types are declared here (the toolkit need not
 * be installed to build); their values are CUDA's ABI. Not part of the public API
 * (see backend.h). */
#ifndef CRISP_RT_CUDA_IMPL_H
#define CRISP_RT_CUDA_IMPL_H

#include <stddef.h>

#include "backend.h"

/* ---- the driver API subset (cuda.h, CUDA 13) ---- */
typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct CUctx_st *CUcontext;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUstream_st *CUstream;
typedef struct CUevent_st *CUevent;
typedef int CUjit_option;

enum {
  CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16,
  CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75,
  CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76,
  CU_JIT_INFO_LOG_BUFFER = 3,
  CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES = 4,
  CU_JIT_ERROR_LOG_BUFFER = 5,
  CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6,
  CU_JIT_LOG_VERBOSE = 12,
  CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK = 0,
  CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES = 1,
  CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES = 3,
  CU_FUNC_ATTRIBUTE_NUM_REGS = 4,
  CU_STREAM_DEFAULT = 0,
  CU_EVENT_DEFAULT = 0,
};

/* Each entry point: its field, its parameters, the symbols dlsym tries (newest first). */
#define DRIVER_CALLS(X)                                                                         \
  X(cuInit, (unsigned), "cuInit", NULL)                                                         \
  X(cuDriverGetVersion, (int *), "cuDriverGetVersion", NULL)                                    \
  X(cuDeviceGetCount, (int *), "cuDeviceGetCount", NULL)                                        \
  X(cuDeviceGet, (CUdevice *, int), "cuDeviceGet", NULL)                                        \
  X(cuDeviceGetName, (char *, int, CUdevice), "cuDeviceGetName", NULL)                          \
  X(cuDeviceGetAttribute, (int *, int, CUdevice), "cuDeviceGetAttribute", NULL)                 \
  X(cuDevicePrimaryCtxRetain, (CUcontext *, CUdevice), "cuDevicePrimaryCtxRetain", NULL)        \
  X(cuDevicePrimaryCtxRelease,                                                                  \
    (CUdevice),                                                                                 \
    "cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease")                                \
  X(cuCtxSetCurrent, (CUcontext), "cuCtxSetCurrent", NULL)                                      \
  X(cuMemAlloc, (CUdeviceptr *, size_t), "cuMemAlloc_v2", NULL)                                 \
  X(cuMemFree, (CUdeviceptr), "cuMemFree_v2", NULL)                                             \
  X(cuMemcpyHtoD, (CUdeviceptr, const void *, size_t), "cuMemcpyHtoD_v2", NULL)                 \
  X(cuMemcpyDtoH, (void *, CUdeviceptr, size_t), "cuMemcpyDtoH_v2", NULL)                       \
  X(cuMemcpyDtoD, (CUdeviceptr, CUdeviceptr, size_t), "cuMemcpyDtoD_v2", NULL)                  \
  X(cuMemsetD8, (CUdeviceptr, unsigned char, size_t), "cuMemsetD8_v2", NULL)                    \
  X(cuModuleLoadDataEx,                                                                         \
    (CUmodule *, const void *, unsigned, CUjit_option *, void **),                              \
    "cuModuleLoadDataEx", NULL)                                                                 \
  X(cuModuleUnload, (CUmodule), "cuModuleUnload", NULL)                                         \
  X(cuModuleGetFunction, (CUfunction *, CUmodule, const char *), "cuModuleGetFunction", NULL)   \
  X(cuFuncGetAttribute, (int *, int, CUfunction), "cuFuncGetAttribute", NULL)                   \
  X(cuLaunchKernel,                                                                             \
    (CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,                              \
     unsigned, unsigned, CUstream, void **, void **),                                           \
    "cuLaunchKernel", NULL)                                                                     \
  X(cuStreamCreate, (CUstream *, unsigned), "cuStreamCreate", NULL)                             \
  X(cuStreamDestroy, (CUstream), "cuStreamDestroy_v2", "cuStreamDestroy")                       \
  X(cuStreamSynchronize, (CUstream), "cuStreamSynchronize", NULL)                               \
  X(cuEventCreate, (CUevent *, unsigned), "cuEventCreate", NULL)                                \
  X(cuEventRecord, (CUevent, CUstream), "cuEventRecord", NULL)                                  \
  X(cuEventSynchronize, (CUevent), "cuEventSynchronize", NULL)                                  \
  X(cuEventElapsedTime,                                                                         \
    (float *, CUevent, CUevent),                                                                \
    "cuEventElapsedTime_v2", "cuEventElapsedTime")                                              \
  X(cuEventDestroy, (CUevent), "cuEventDestroy_v2", "cuEventDestroy")                           \
  X(cuGetErrorString, (CUresult, const char **), "cuGetErrorString", NULL)

typedef struct {
#define FIELD(name, params, sym, alt) CUresult(*name) params;
  DRIVER_CALLS(FIELD)
#undef FIELD
} Driver;

/* ---- cuBLAS subset (cublas_api.h) ---- */
typedef struct cublasContext *cublasHandle_t;
typedef int cublasStatus_t;
enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
typedef struct {
  void *lib;
  cublasHandle_t handle;
  cublasStatus_t (*create)(cublasHandle_t *);
  cublasStatus_t (*destroy)(cublasHandle_t);
  cublasStatus_t (*set_stream)(cublasHandle_t, CUstream);
  cublasStatus_t (*get_version)(cublasHandle_t, int *);
  cublasStatus_t (*sgemm)(cublasHandle_t, int, int, int, int, int, const float *, const float *,
                          int, const float *, int, const float *, float *, int);
  cublasStatus_t (*sgemm_strided)(cublasHandle_t, int, int, int, int, int, const float *,
                                  const float *, int, long long, const float *, int, long long,
                                  const float *, float *, int, long long, int);
} Cublas;

typedef struct {
  void *lib;
  Driver d;
  CUdevice dev;
  CUcontext ctx;
  CUstream stream;
  Cublas blas;
} Cuda;

struct RtEvent {
  CUevent e;
};

static inline Cuda *cu(Backend *b) { return b->impl; }

/* Formats a failed call: "cuda: WHAT: NAME (code): description" (cuda.c). */
int cu_fail(Backend *b, const Driver *d, CUresult r, const char *what);

#define CHECK(b, call, what)                       \
  do {                                             \
    CUresult r_ = (call);                          \
    if (r_ != 0)                                   \
      return cu_fail((b), &cu(b)->d, r_, (what));  \
  } while (0)

/* Makes the device's primary context current; every entry point starts here. */
static inline int enter(Backend *b) {
  CHECK(b, cu(b)->d.cuCtxSetCurrent(cu(b)->ctx), "cuCtxSetCurrent");
  return 0;
}

/* cuda_blas.c: the backend's gemm, loading cuBLAS on first use. */
int cuda_gemm(Backend *b, const RtGemm *g);

#endif
