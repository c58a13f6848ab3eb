/* The CUDA backend's gemm: cuBLAS, loaded with dlopen on the first call.
 *
 * Apart from the driver code (cuda.c) because it is a second library with its own
 * loading, errors and version: a machine with a driver but no cuBLAS still runs
 * every attention kernel, and only gemm reports that cuBLAS is missing.
 * $CRISP_LIBCUBLAS names another library. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda_impl.h"
#include "cuda_names.h"

static int blas_fail(Backend *b, cublasStatus_t s, const char *what) {
  return rt_fail(b, "cuda: %s: %s (%d)", what, cublas_status_name(s), s);
}

static int load_cublas(Backend *b) {
  Cublas *c = &cu(b)->blas;
  if (c->handle)
    return 0;
  const char *env = getenv("CRISP_LIBCUBLAS");
  const char *const names[] = {env && *env ? env : "libcublas.so.13", "libcublas.so.12",
                               "libcublas.so.11", "libcublas.so", NULL};
  char why[512] = "";
  for (int i = 0; names[i] && !c->lib; i++) {
    c->lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!c->lib && i == 0)
      snprintf(why, sizeof why, "%s", dlerror());
  }
  if (!c->lib)
    return rt_fail(b, "cuda: gemm needs cuBLAS, which cannot be loaded (%s)", why);
  c->create = (cublasStatus_t(*)(cublasHandle_t *))dlsym(c->lib, "cublasCreate_v2");
  c->destroy = (cublasStatus_t(*)(cublasHandle_t))dlsym(c->lib, "cublasDestroy_v2");
  c->set_stream = (cublasStatus_t(*)(cublasHandle_t, CUstream))dlsym(c->lib, "cublasSetStream_v2");
  c->get_version = (cublasStatus_t(*)(cublasHandle_t, int *))dlsym(c->lib, "cublasGetVersion_v2");
  *(void **)&c->sgemm = dlsym(c->lib, "cublasSgemm_v2");
  *(void **)&c->sgemm_strided = dlsym(c->lib, "cublasSgemmStridedBatched");
  if (!c->create || !c->destroy || !c->set_stream || !c->sgemm || !c->sgemm_strided) {
    dlclose(c->lib);
    c->lib = NULL;
    return rt_fail(b, "cuda: the cuBLAS library lacks cublasCreate_v2/cublasSgemm_v2/...");
  }
  if (enter(b))
    return -1;
  cublasStatus_t s = c->create(&c->handle);
  if (s != 0) {
    c->handle = NULL;
    return blas_fail(b, s, "cublasCreate");
  }
  s = c->set_stream(c->handle, cu(b)->stream);
  if (s != 0)
    return blas_fail(b, s, "cublasSetStream");
  int version = 0;
  if (c->get_version && c->get_version(c->handle, &version) == 0)
    snprintf(b->gemm_lib, sizeof b->gemm_lib, "cuBLAS %d.%d.%d", version / 10000,
             version / 100 % 100, version % 100);
  return 0;
}

/* Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands. */
int cuda_gemm(Backend *b, const RtGemm *g) {
  if (load_cublas(b) || enter(b))
    return -1;
  Cublas *c = &cu(b)->blas;
  int opa = g->ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = g->tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  const float *A = (const float *)(uintptr_t)g->a, *B = (const float *)(uintptr_t)g->b;
  float *C = (float *)(uintptr_t)g->c;
  cublasStatus_t s;
  if (g->batch > 1)
    s = c->sgemm_strided(c->handle, opb, opa, g->n, g->m, g->k, &g->alpha, B, g->ldb, g->stride_b,
                         A, g->lda, g->stride_a, &g->beta, C, g->ldc, g->stride_c, g->batch);
  else
    s = c->sgemm(c->handle, opb, opa, g->n, g->m, g->k, &g->alpha, B, g->ldb, A, g->lda, &g->beta,
                 C, g->ldc);
  return s ? blas_fail(b, s, g->batch > 1 ? "cublasSgemmStridedBatched" : "cublasSgemm") : 0;
}
