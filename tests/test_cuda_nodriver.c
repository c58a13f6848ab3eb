/* The CUDA backend without a GPU:
 *   - no driver: backend_open("cuda") fails with one clear message, "auto" falls
 *     back to the CPU with exactly one line on stderr (none when quiet);
 *   - a library that is not a driver, the toolkit's stub driver (every call fails):
 *     the failing call is named with its CUresult name;
 *   - a stand-in driver (test_runtime_fakecuda.c, argv[1]): memory, copies, module
 *     loading with the JIT error log shown on failure, launches and events, an
 *     injected failure in each kind of call reported by name;
 *   - cu_result_name / cublas_status_name, checked against cuda.h when present.
 *   test_cuda_nodriver FAKE_LIBCUDA_PATH [STUB_LIBCUDA_PATH] */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../runtime/backend.h"
#include "../runtime/cuda_names.h"
#include "check.h"

#ifdef CRISP_HAVE_CUDA_H
#include <cuda.h>
#endif

static char err[4096];

/* Runs backend_open with stderr captured into buf; returns the backend. */
static Backend *open_capturing(const char *device, bool quiet, char *buf, size_t cap) {
  fflush(stderr);
  int saved = dup(2);
  FILE *tmp = tmpfile();
  dup2(fileno(tmp), 2);
  BackendOptions o = {.quiet = quiet, .threads = 1};
  Backend *b = backend_open(device, &o, err, sizeof err);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  rewind(tmp);
  size_t n = fread(buf, 1, cap - 1, tmp);
  buf[n] = 0;
  fclose(tmp);
  return b;
}

static int count_lines(const char *s) {
  int n = 0;
  for (; *s; s++)
    n += *s == '\n';
  return n;
}

static void test_names(void) {
  CHECK(!strcmp(cu_result_name(0), "CUDA_SUCCESS"), "0 -> %s", cu_result_name(0));
  CHECK(!strcmp(cu_result_name(218), "CUDA_ERROR_INVALID_PTX"), "218 -> %s", cu_result_name(218));
  CHECK(!strcmp(cu_result_name(700), "CUDA_ERROR_ILLEGAL_ADDRESS"), "700");
  CHECK(!strcmp(cu_result_name(100), "CUDA_ERROR_NO_DEVICE"), "100");
  CHECK(!strcmp(cu_result_name(999), "CUDA_ERROR_UNKNOWN"), "999");
  CHECK(!strcmp(cu_result_name(12345), "CUDA_ERROR_UNKNOWN_CODE"), "12345 -> %s",
        cu_result_name(12345));
  CHECK(!strcmp(cu_result_name(-1), "CUDA_ERROR_UNKNOWN_CODE"), "-1");
  CHECK(!strcmp(cublas_status_name(13), "CUBLAS_STATUS_EXECUTION_FAILED"), "cublas 13");
  CHECK(!strcmp(cublas_status_name(99), "CUBLAS_STATUS_UNKNOWN_CODE"), "cublas 99");
#ifdef CRISP_HAVE_CUDA_H
#define SAME(x) CHECK(!strcmp(cu_result_name(x), #x), "%s has value %d, named %s", #x, (int)(x), \
                      cu_result_name(x))
  SAME(CUDA_SUCCESS); SAME(CUDA_ERROR_INVALID_VALUE); SAME(CUDA_ERROR_OUT_OF_MEMORY);
  SAME(CUDA_ERROR_NOT_INITIALIZED); SAME(CUDA_ERROR_DEINITIALIZED); SAME(CUDA_ERROR_STUB_LIBRARY);
  SAME(CUDA_ERROR_NO_DEVICE); SAME(CUDA_ERROR_INVALID_DEVICE); SAME(CUDA_ERROR_INVALID_IMAGE);
  SAME(CUDA_ERROR_INVALID_CONTEXT); SAME(CUDA_ERROR_NO_BINARY_FOR_GPU);
  SAME(CUDA_ERROR_INVALID_PTX); SAME(CUDA_ERROR_UNSUPPORTED_PTX_VERSION);
  SAME(CUDA_ERROR_JIT_COMPILER_NOT_FOUND); SAME(CUDA_ERROR_INVALID_HANDLE);
  SAME(CUDA_ERROR_NOT_FOUND); SAME(CUDA_ERROR_NOT_READY); SAME(CUDA_ERROR_ILLEGAL_ADDRESS);
  SAME(CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES); SAME(CUDA_ERROR_LAUNCH_TIMEOUT);
  SAME(CUDA_ERROR_MISALIGNED_ADDRESS); SAME(CUDA_ERROR_LAUNCH_FAILED);
  SAME(CUDA_ERROR_NOT_PERMITTED); SAME(CUDA_ERROR_NOT_SUPPORTED);
  SAME(CUDA_ERROR_SYSTEM_DRIVER_MISMATCH); SAME(CUDA_ERROR_UNKNOWN);
  /* the values cuda_impl.h declares for itself */
  CHECK(CU_JIT_INFO_LOG_BUFFER == 3 && CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES == 4 &&
        CU_JIT_ERROR_LOG_BUFFER == 5 && CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES == 6 &&
        CU_JIT_LOG_VERBOSE == 12, "CUjit_option values");
  CHECK(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT == 16 &&
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR == 75 &&
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR == 76, "CUdevice_attribute values");
  CHECK(CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK == 0 && CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES == 1 &&
        CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES == 3 && CU_FUNC_ATTRIBUTE_NUM_REGS == 4,
        "CUfunction_attribute values");
  printf("result names checked against cuda.h\n");
#else
  printf("cuda.h not found: result names checked against the table only\n");
#endif
}

static void test_no_driver(void) {
  void *real = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (real) {
    printf("skip: a CUDA driver is installed here; the no-driver path is not testable\n");
    dlclose(real);
    return;
  }
  unsetenv("CRISP_LIBCUDA");
  Backend *b = backend_open("cuda", NULL, err, sizeof err);
  CHECK(b == NULL, "cuda opened without a driver");
  CHECK(strstr(err, "libcuda.so.1") && strstr(err, "cannot load the CUDA driver"),
        "message: %s", err);
  CHECK(!strchr(err, '\n'), "the message is one line: %s", err);

  char out[4096];
  b = open_capturing("auto", false, out, sizeof out);
  CHECK(b && !strcmp(b->kind, "cpu"), "auto did not fall back to the cpu");
  CHECK(count_lines(out) == 1, "auto printed %d lines: [%s]", count_lines(out), out);
  CHECK(strstr(out, "running on the CPU") && strstr(out, "libcuda.so.1"), "line: %s", out);
  backend_close(b);
  b = open_capturing(NULL, true, out, sizeof out);   /* NULL = auto */
  CHECK(b && !strcmp(b->kind, "cpu"), "quiet auto did not fall back");
  CHECK(out[0] == 0, "quiet auto printed [%s]", out);
  backend_close(b);

  b = open_capturing("gpu", false, out, sizeof out);
  CHECK(!b && strstr(err, "unknown device 'gpu'"), "bad device name: %s", err);
}

static void test_not_a_driver(const char *stub) {
  setenv("CRISP_LIBCUDA", "/nonexistent/libcuda.so.1", 1);
  Backend *b = backend_open("cuda", NULL, err, sizeof err);
  CHECK(!b && strstr(err, "cannot load the CUDA driver") && strstr(err, "/nonexistent"),
        "missing file: %s", err);
  setenv("CRISP_LIBCUDA", "libm.so.6", 1);
  b = backend_open("cuda", NULL, err, sizeof err);
  CHECK(!b && strstr(err, "has no cuInit"), "not a driver: %s", err);
  if (stub && access(stub, R_OK) == 0) {
    setenv("CRISP_LIBCUDA", stub, 1);
    b = backend_open("cuda", NULL, err, sizeof err);
    CHECK(!b && strstr(err, "cuInit: CUDA_ERROR_STUB_LIBRARY (34)"), "stub driver: %s", err);
    char out[4096];
    b = open_capturing("auto", false, out, sizeof out);
    CHECK(b && !strcmp(b->kind, "cpu") && count_lines(out) == 1 &&
          strstr(out, "CUDA_ERROR_STUB_LIBRARY"), "auto with the stub: [%s]", out);
    backend_close(b);
  } else {
    printf("skip: no stub driver at %s\n", stub ? stub : "(none given)");
  }
  unsetenv("CRISP_LIBCUDA");
}

static const char manifest[] =
    "{\"format\": 1, \"compiler\": \"crispc test\", \"llvm\": \"16\", \"target\": \"sm_90\","
    " \"spec_hash\": \"0\", \"spec\": {\"name\": \"t\", \"head_dim\": 8, \"max_seq\": 16,"
    " \"dtype\": \"f32\", \"sparsity\": 0, \"select\": \"none\", \"keep_min\": 1,"
    " \"causal\": false, \"dropout\": 0, \"backward\": false}, \"tile\": {\"rows\": 4,"
    " \"warps\": 2}, \"kernels\": [{\"name\": \"%s\", \"threads\": 64, \"shared_bytes\": 128,"
    " \"grid\": [{\"params\": [\"N\"], \"div\": 4}, {\"params\": [], \"div\": 1},"
    " {\"params\": [], \"div\": 1}], \"params\": [{\"name\": \"x\", \"type\": \"f32*\","
    " \"role\": \"inout\"}, {\"name\": \"N\", \"type\": \"i32\", \"role\": \"scalar\"}]}]}";

static int load(Backend *b, const char *kernel, const char *ptx, RtModule **m) {
  char text[sizeof manifest + 64];
  snprintf(text, sizeof text, manifest, kernel);
  RtModuleSource src = {.manifest_json = text, .manifest_len = strlen(text), .ptx = ptx,
                        .ptx_len = strlen(ptx)};
  return rt_module_load(b, &src, m);
}

static void test_fake_driver(const char *fake) {
  setenv("CRISP_LIBCUDA", fake, 1);
  Backend *b = backend_open("cuda", NULL, err, sizeof err);
  CHECK(b != NULL, "fake driver: %s", err);
  if (!b)
    return;
  CHECK(!strcmp(b->kind, "cuda") && !strcmp(b->device_name, "Fake GPU") &&
        !strcmp(b->target, "sm_90") && b->sm_count == 132, "device %s %s", b->device_name,
        b->target);
  CHECK(!strcmp(b->driver, "CUDA driver 13.0"), "driver %s", b->driver);
  /* memory round trip */
  float in[64], out[64];
  for (int i = 0; i < 64; i++)
    in[i] = (float)i;
  DevPtr p = 0, q = 0;
  CHECK(!rt_alloc(b, sizeof in, &p) && !rt_alloc(b, sizeof in, &q), "alloc: %s", b->err);
  CHECK(!rt_h2d(b, p, in, sizeof in) && !rt_d2d(b, q, p, sizeof in) &&
        !rt_d2h(b, out, q, sizeof out) && !memcmp(in, out, sizeof in), "copies");
  CHECK(!rt_memset(b, q, 0, sizeof in) && !rt_d2h(b, out, q, sizeof out) && out[5] == 0, "memset");
  /* a module, a launch, events */
  RtModule *m = NULL;
  CHECK(!load(b, "k", "// PTX\n.version 7.8\n", &m), "load: %s", b->err);
  RtKernel *k = m ? rt_kernel(b, m, "k") : NULL;
  CHECK(k != NULL, "kernel k");
  CHECK(m && m->jit_log && strstr(m->jit_log, "Used 40 registers") &&
        strstr(m->jit_log, "kernel k: 40 registers"), "jit log: %s", m && m->jit_log ? m->jit_log : "");
  CHECK(!rt_kernel(b, m, "nope") && strstr(b->err, "no kernel nope"), "missing kernel: %s", b->err);
  int32_t n = 10;
  void *args[2] = {&p, &n};
  RtEvent *e0 = NULL, *e1 = NULL;
  float ms = -1;
  CHECK(k && !rt_event_create(b, &e0) && !rt_event_create(b, &e1) && !rt_event_record(b, e0) &&
        !rt_launch(b, k, args) && !rt_event_record(b, e1) && !rt_event_elapsed(b, e0, e1, &ms) &&
        ms >= 0, "launch and events: %s", b->err);
  int32_t big[3] = {1, 70000, 1};
  CHECK(k && rt_launch_grid(b, k, args, big) && strstr(b->err, "exceeds 65535"), "grid y: %s",
        b->err);
  /* failures, each named */
  struct {
    const char *inject, *expect;
  } cases[] = {
      {"cuLaunchKernel:701", "cuLaunchKernel(k, grid 3 x 1 x 1, 64 threads): "
                             "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES (701)"},
      {"cuStreamSynchronize:700", "cuStreamSynchronize: CUDA_ERROR_ILLEGAL_ADDRESS (700)"},
      {"cuMemAlloc:2", "cuMemAlloc(256 bytes): CUDA_ERROR_OUT_OF_MEMORY (2): out of memory"},
      {"cuMemcpyHtoD:1", "cuMemcpyHtoD: CUDA_ERROR_INVALID_VALUE (1)"},
      {"cuEventRecord:400", "cuEventRecord: CUDA_ERROR_INVALID_HANDLE (400)"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    setenv("FAKE_CUDA_FAIL", cases[i].inject, 1);
    DevPtr tmp = 0;
    int rc = 0;
    if (strstr(cases[i].inject, "Launch"))
      rc = rt_launch(b, k, args);
    else if (strstr(cases[i].inject, "Sync"))
      rc = rt_sync(b);
    else if (strstr(cases[i].inject, "Alloc"))
      rc = rt_alloc(b, 256, &tmp);
    else if (strstr(cases[i].inject, "HtoD"))
      rc = rt_h2d(b, p, in, 4);
    else
      rc = rt_event_record(b, e0);
    CHECK(rc == -1 && strstr(b->err, cases[i].expect), "%s: got [%s]", cases[i].inject, b->err);
    rt_free(b, tmp);
  }
  unsetenv("FAKE_CUDA_FAIL");
  rt_event_destroy(b, e0);
  rt_event_destroy(b, e1);
  rt_module_unload(b, m);
  /* a module the driver's JIT rejects: the error log is part of the message */
  m = NULL;
  CHECK(load(b, "k", "// PTX\nBAD_PTX\n", &m) == -1 && !m, "bad PTX loaded");
  CHECK(strstr(b->err, "cuModuleLoadDataEx: CUDA_ERROR_INVALID_PTX (218)") &&
        strstr(b->err, "JIT error log") && strstr(b->err, "Unknown symbol 'BAD_PTX'"),
        "JIT error: %s", b->err);
  CHECK(load(b, "missing_k", "// PTX\n", &m) == -1 &&
        strstr(b->err, "cuModuleGetFunction(missing_k): CUDA_ERROR_NOT_FOUND (500)"),
        "missing function: %s", b->err);
  setenv("FAKE_CUDA_MAX_THREADS", "32", 1);
  CHECK(load(b, "k", "// PTX\n", &m) == -1 && strstr(b->err, "needs 64 threads"),
        "too many registers: %s", b->err);
  unsetenv("FAKE_CUDA_MAX_THREADS");
  /* host code and PTX go to their own backends */
  CpuKernelFn fns[1] = {NULL};
  char text[sizeof manifest + 64];
  snprintf(text, sizeof text, manifest, "k");
  RtModuleSource host = {.manifest_json = text, .manifest_len = strlen(text), .cpu_fns = fns};
  CHECK(rt_module_load(b, &host, &m) == -1 && strstr(b->err, "has no PTX"), "host on cuda: %s",
        b->err);
  rt_free(b, p);
  rt_free(b, q);
  backend_close(b);

  /* start-up failures */
  setenv("FAKE_CUDA_DEVICES", "0", 1);
  CHECK(!backend_open("cuda", NULL, err, sizeof err) && strstr(err, "no CUDA device"),
        "no device: %s", err);
  unsetenv("FAKE_CUDA_DEVICES");
  BackendOptions o = {.device = 3};
  CHECK(!backend_open("cuda", &o, err, sizeof err) && strstr(err, "no device 3"), "ordinal: %s",
        err);
  setenv("FAKE_CUDA_CC", "75", 1);
  CHECK(!backend_open("cuda", NULL, err, sizeof err) && strstr(err, "compute capability 7.5"),
        "old GPU: %s", err);
  unsetenv("FAKE_CUDA_CC");
  setenv("FAKE_CUDA_FAIL", "cuDevicePrimaryCtxRetain:201", 1);
  CHECK(!backend_open("cuda", NULL, err, sizeof err) &&
        strstr(err, "cuDevicePrimaryCtxRetain: CUDA_ERROR_INVALID_CONTEXT (201)"), "ctx: %s", err);
  unsetenv("FAKE_CUDA_FAIL");
  unsetenv("CRISP_LIBCUDA");
}

int main(int argc, char **argv) {
  test_names();
  test_no_driver();
  test_not_a_driver(argc > 2 ? argv[2] : NULL);
  if (argc > 1)
    test_fake_driver(argv[1]);
  else
    printf("skip: no stand-in driver given\n");
  return check_summary();
}
