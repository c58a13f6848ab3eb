/* devcheck_load.c: crisp-devcheck's precompiled variants, found and loaded.
 *
 * Every X.manifest.json in a folder, sorted by tile, each loaded from its PTX on
 * cuda or compiled by the JIT on cpu (full build only); a variant that fails keeps
 * its reason for the tables. Separate from the commands that use the variants
 * (devcheck_kernels.c, devcheck_train.c) because all of them load the same way. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devcheck.h"
#include "fsutil.h"
#ifdef CRISP_DEVCHECK_JIT
#include "compile.h"
#endif

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && !strcmp(s + n - m, suffix);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The manifests in dir, sorted; returns the count (-1 if dir cannot be read). */
static int list_manifests(const char *dir, char ***out) {
  DIR *d = opendir(dir);
  if (!d)
    return -1;
  char **names = NULL;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (ends_with(e->d_name, ".manifest.json")) {
      char **grown = realloc(names, (size_t)(n + 1) * sizeof *names);
      if (!grown)
        break;
      names = grown;
      if (asprintf(&names[n], "%s/%s", dir, e->d_name) < 0)
        break;
      n++;
    }
  closedir(d);
  if (n)
    qsort(names, (size_t)n, sizeof *names, cmp_str);
  *out = names;
  return n;
}

int load_variant(Backend *b, Variant *v, char *err, size_t cap) {
  if (rt_manifest_load(v->path, &v->man, err, cap))
    return -1;
  v->parsed = true;
  if (!strcmp(b->kind, "cuda")) {
    char ptx_path[1100];
    size_t n = strlen(v->path) - strlen(".manifest.json");
    snprintf(ptx_path, sizeof ptx_path, "%.*s.ptx", (int)n, v->path);
    char *ptx;
    size_t len;
    if (rt_read_file(ptx_path, &ptx, &len, err, cap))
      return -1;
    /* The pair comes from disk, where one may be rebuilt or edited without the other:
     * a launch with another parameter list would read garbage pointers on the GPU. */
    char why[512];
    if (rt_manifest_check_ptx(&v->man, ptx, len, why, sizeof why)) {
      snprintf(err, cap, "%.250s: does not match %.250s: %s", ptx_path, v->path, why);
      free(ptx);
      return -1;
    }
    RtModuleSource src = {.manifest = &v->man, .ptx = ptx, .ptx_len = len};
    int rc = rt_module_load(b, &src, &v->mod);
    free(ptx);
    if (rc)
      snprintf(err, cap, "%.250s: %.4096s", ptx_path, backend_error(b));
    return rc;
  }
#ifdef CRISP_DEVCHECK_JIT
  static RtCache cache;
  static bool cache_open;
  if (!cache_open) {
    char why[512];
    if (rt_cache_open(&cache, NULL, why, sizeof why))
      fprintf(stderr, "crisp-devcheck: warning: no kernel cache: %s\n", why);
    cache_open = true;
  }
  TileConfig t = {v->man.tile_rows, v->man.tile_warps, SCHED_WARP};
  return rt_compile_load(b, &v->man.spec, &t, &cache, &v->mod, err, cap);
#else
  snprintf(err, cap, "this is the runtime-only build (no LLVM): only --device cuda runs kernels");
  return -1;
#endif
}

void free_variants(Backend *b, Variant *v, int n) {
  for (int i = 0; i < n; i++)
    rt_module_unload(b, v[i].mod);
  free(v);
}

static int cmp_variant(const void *a, const void *b) {
  const Variant *x = a, *y = b;
  if (x->parsed != y->parsed)
    return x->parsed ? -1 : 1;
  if (x->man.tile_rows != y->man.tile_rows)
    return x->man.tile_rows - y->man.tile_rows;
  if (x->man.tile_warps != y->man.tile_warps)
    return x->man.tile_warps - y->man.tile_warps;
  return strcmp(x->path, y->path);
}

/* Loads every variant in dir. A variant that fails keeps mod = NULL and its reason
 * in err; returns -1 (err) only if dir has no manifest or none could be parsed.
 * *spec points to the first parsed manifest's spec. */
int load_dir(Backend *b, const char *dir, Variant **out, int *count, const Spec **spec,
                    char *err, size_t cap) {
  char **names = NULL;
  int n = list_manifests(dir, &names);
  *out = NULL;
  *count = 0;
  if (n <= 0) {
    snprintf(err, cap, "%s: %s", dir, n < 0 ? "cannot read the directory" : "no *.manifest.json");
    free(names);
    return -1;
  }
  Variant *v = calloc((size_t)n, sizeof *v);
  for (int i = 0; i < n; i++) {
    if (v) {
      snprintf(v[i].path, sizeof v[i].path, "%s", names[i]);
      if (load_variant(b, &v[i], v[i].err, sizeof v[i].err))
        v[i].mod = NULL;
    }
    free(names[i]);
  }
  free(names);
  if (!v) {
    snprintf(err, cap, "out of memory");
    return -1;
  }
  qsort(v, (size_t)n, sizeof *v, cmp_variant);   /* by tile, for the tables */
  *spec = NULL;
  for (int i = n - 1; i >= 0; i--)
    if (v[i].parsed)
      *spec = &v[i].man.spec;
  if (!*spec) {
    snprintf(err, cap, "%.2000s", v[0].err);
    free_variants(b, v, n);
    return -1;
  }
  *out = v;
  *count = n;
  return 0;
}

const char *forward_name(const Variant *v, char *buf, size_t cap) {
  snprintf(buf, cap, "%.63s_attn_fwd", v->man.spec.name);
  return buf;
}
