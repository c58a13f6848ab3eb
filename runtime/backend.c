/* Backend selection and the calls common to every backend (see backend.h). */
#include "backend.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int rt_fail(Backend *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(b->err, sizeof b->err, fmt, ap);
  va_end(ap);
  return -1;
}

int backend_check_name(const char *device) {
  return !device || !strcmp(device, "auto") || !strcmp(device, "cpu") ||
                 !strcmp(device, "cuda")
             ? 0
             : -1;
}

Backend *backend_open(const char *device, const BackendOptions *opt, char *err, size_t cap) {
  BackendOptions defaults = {0};
  if (!opt)
    opt = &defaults;
  if (!device)
    device = "auto";
  if (backend_check_name(device)) {
    snprintf(err, cap, "unknown device '%s' (expected auto, cpu or cuda)", device);
    return NULL;
  }
  if (!strcmp(device, "cpu"))
    return rt_cpu_open(opt, err, cap);
  if (!strcmp(device, "cuda"))
    return rt_cuda_open(opt, err, cap);
  char why[1024];
  Backend *b = rt_cuda_open(opt, why, sizeof why);
  if (b)
    return b;
  if (!opt->quiet)
    fprintf(stderr, "crisp: no usable CUDA GPU (%s); running on the CPU\n", why);
  return rt_cpu_open(opt, err, cap);
}

void backend_close(Backend *b) {
  if (b)
    b->ops->close(b);
}

const char *backend_error(const Backend *b) { return b->err; }

void backend_describe(const Backend *b, char *buf, size_t cap) {
  if (!strcmp(b->kind, "cuda"))
    snprintf(buf, cap, "cuda: %s (%s, %d SMs), %s, gemm %s", b->device_name, b->target,
             b->sm_count, b->driver, b->gemm_lib);
  else
    snprintf(buf, cap, "cpu: %s, %d thread%s, gemm %s", b->device_name, b->threads,
             b->threads == 1 ? "" : "s", b->gemm_lib);
}


int rt_alloc(Backend *b, size_t bytes, DevPtr *out) { return b->ops->alloc(b, bytes, out); }
void rt_free(Backend *b, DevPtr p) {
  if (p)
    b->ops->free(b, p);
}
int rt_h2d(Backend *b, DevPtr dst, const void *src, size_t bytes) {
  return bytes ? b->ops->h2d(b, dst, src, bytes) : 0;
}
int rt_d2h(Backend *b, void *dst, DevPtr src, size_t bytes) {
  return bytes ? b->ops->d2h(b, dst, src, bytes) : 0;
}
int rt_d2d(Backend *b, DevPtr dst, DevPtr src, size_t bytes) {
  return bytes ? b->ops->d2d(b, dst, src, bytes) : 0;
}
int rt_memset(Backend *b, DevPtr dst, int value, size_t bytes) {
  return bytes ? b->ops->memset8(b, dst, value, bytes) : 0;
}

static void free_owner(const RtModuleSource *src) {
  if (src->owner && src->owner_free)
    src->owner_free(src->owner);
}

int rt_module_load(Backend *b, const RtModuleSource *src, RtModule **out) {
  *out = NULL;
  RtModule *m = calloc(1, sizeof *m);
  if (!m) {
    free_owner(src);
    return rt_fail(b, "out of memory");
  }
  if (src->manifest) {
    m->manifest = *src->manifest;
  } else {
    char err[1024];
    if (!src->manifest_json ||
        rt_manifest_parse(src->manifest_json, src->manifest_len, &m->manifest, err, sizeof err)) {
      free(m);
      free_owner(src);
      return rt_fail(b, "%s", src->manifest_json ? err : "module without a manifest");
    }
  }
  for (int i = 0; i < m->manifest.nkernels; i++) {
    m->kernels[i].info = &m->manifest.kernels[i];
    m->kernels[i].module = m;
  }
  m->owner = src->owner;
  m->owner_free = src->owner_free;
  if (b->ops->load(b, m, src)) {
    free_owner(src);
    free(m->jit_log);
    free(m);
    return -1;
  }
  *out = m;
  return 0;
}

void rt_module_unload(Backend *b, RtModule *m) {
  if (!m)
    return;
  b->ops->unload(b, m);
  if (m->owner && m->owner_free)
    m->owner_free(m->owner);
  free(m->jit_log);
  free(m);
}

RtKernel *rt_kernel(Backend *b, RtModule *m, const char *name) {
  for (int i = 0; i < m->manifest.nkernels; i++)
    if (!strcmp(m->kernels[i].info->name, name))
      return &m->kernels[i];
  rt_fail(b, "the module has no kernel %s", name);
  return NULL;
}

int rt_launch_grid(Backend *b, const RtKernel *k, void **args, const int32_t grid[3]) {
  for (int d = 0; d < 3; d++)
    if (grid[d] < 0)
      return rt_fail(b, "launch %s: negative grid dimension %d", k->info->name, grid[d]);
  if ((int64_t)grid[0] * grid[1] * grid[2] == 0)
    return 0;
  return b->ops->launch(b, k, args, grid);
}

int rt_launch(Backend *b, const RtKernel *k, void **args) {
  int32_t grid[3];
  rt_grid(k->info, args, grid);
  return rt_launch_grid(b, k, args, grid);
}

int rt_launch_named(Backend *b, const RtKernel *k, const RtArg *tab, int n, char *err,
                    size_t cap) {
  const RtKernelInfo *ki = k->info;
  void *args[RT_MAX_PARAMS];
  for (int i = 0; i < ki->nparams; i++) {
    const RtParam *p = &ki->params[i];
    int j = 0;
    while (j < n && strcmp(tab[j].name, p->name))
      j++;
    if (j == n || tab[j].is_buf != p->is_buf || (!p->is_buf && tab[j].type != p->type)) {
      snprintf(err, cap, "kernel %s: parameter \"%s\" (%s %s) is not in the arguments bound",
               ki->name, p->name, p->is_buf ? "buffer of" : "scalar", rt_type_name(p->type));
      return -1;
    }
    args[i] = (void *)tab[j].val;
  }
  if (rt_launch(b, k, args)) {
    snprintf(err, cap, "%s: %s", ki->name, backend_error(b));
    return -1;
  }
  return 0;
}

int rt_sync(Backend *b) { return b->ops->sync(b); }
int rt_event_create(Backend *b, RtEvent **e) { return b->ops->event_create(b, e); }
int rt_event_record(Backend *b, RtEvent *e) { return b->ops->event_record(b, e); }
int rt_event_elapsed(Backend *b, RtEvent *s, RtEvent *e, float *ms) {
  return b->ops->event_elapsed(b, s, e, ms);
}
void rt_event_destroy(Backend *b, RtEvent *e) {
  if (e)
    b->ops->event_destroy(b, e);
}

int rt_gemm(Backend *b, const RtGemm *g) {
  if (g->m < 0 || g->n < 0 || g->k < 0 || g->batch < 0)
    return rt_fail(b, "gemm: negative size");
  int cols_a = g->ta ? g->m : g->k, cols_b = g->tb ? g->k : g->n;   /* row-major widths */
  if (g->lda < (cols_a > 1 ? cols_a : 1) || g->ldb < (cols_b > 1 ? cols_b : 1) ||
      g->ldc < (g->n > 1 ? g->n : 1))
    return rt_fail(b, "gemm: a leading dimension is smaller than its row (lda %d, ldb %d, ldc %d)",
                   g->lda, g->ldb, g->ldc);
  if (g->m == 0 || g->n == 0)
    return 0;
  return b->ops->gemm(b, g);
}
