/* crisp-devcheck: runs precompiled kernels (PTX + manifest from crispc) on a device
 * and checks them against the double-precision reference, tunes them, and times
 * them; the GPU half of scripts/device-check.sh. The runtime-only build (no LLVM,
 * as on the GPU machines) runs PTX on cuda; a full build also compiles the
 * manifests' specs for --device cpu.
 *
 *   crisp-devcheck [--device auto|cpu|cuda] [--threads N] [--seed S] COMMAND ...
 *     info                         the device
 *     gemm                         sgemm (transposes, strided batched) vs a double reference
 *     check DIR...                 every X.manifest.json (+ X.ptx) in each DIR, several shapes
 *     tune DIR [--db F] [--n L]    the autotuner over the tile variants in DIR (one spec)
 *     bench DIR... [--db F] [--n L] [--json F]
 *                                  each DIR's forward kernel at B=16 H=12 (the tuned tile
 *                                  when the database has one), median of repeats
 *     train FILE... [--n L] [--json F] each X.manifest.json's select + forward + backward
 *                                  kernels as one training call (fused QKV, dropout) vs
 *                                  the reference, then forward and backward timed
 * Exit status: 0 all passed, 1 a check failed or the device failed, 2 usage. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attn_task.h"
#include "devcheck.h"
#include "attn_tune.h"
#include "backend.h"
#include "fsutil.h"
#ifdef CRISP_DEVCHECK_JIT
#include "compile.h"
#endif

static const char usage[] =
    "usage: crisp-devcheck [--device auto|cpu|cuda] [--threads N] [--seed S] COMMAND ...\n"
    "  info                        describe the device\n"
    "  gemm                        sgemm against a double-precision reference\n"
    "  check DIR...                every X.manifest.json (+ X.ptx) in each DIR against the reference\n"
    "  tune DIR [--db F] [--n L]   the autotuner over the tile variants in DIR\n"
    "  bench DIR... [--db F] [--n L] [--json F]   time each DIR's forward kernel\n"
    "  train FILE... [--n L] [--json F]   select + forward + backward of each manifest vs the\n"
    "                              reference, then timed at B=16 H=12\n";

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
static int load_dir(Backend *b, const char *dir, Variant **out, int *count, const Spec **spec,
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

static const char *forward_name(const Variant *v, char *buf, size_t cap) {
  snprintf(buf, cap, "%.63s_attn_fwd", v->man.spec.name);
  return buf;
}

/* ---- check ---- */

typedef struct {
  const char *what;
  int B, H, N;
  double sparsity;          /* < 0: the spec's */
  AttnFill fill;
  bool random_lengths;
} Shape;

static int check_dir(Backend *b, const char *dir, const Opts *o, int *failures) {
  char err[4096];
  Variant *v;
  int nv;
  const Spec *s;
  if (load_dir(b, dir, &v, &nv, &s, err, sizeof err)) {
    printf("FAIL %s: %s\n", dir, err);
    (*failures)++;
    return 0;
  }
  int maxn = s->max_seq, mid = maxn < 100 ? maxn : 100;
  const Shape shapes[] = {
      {"n=1", 2, 3, 1, -1, ATTN_FILL_QUANTIZED, false},
      {"odd n, padded", 3, 2, maxn < 37 ? maxn : 37, -1, ATTN_FILL_QUANTIZED, true},
      {"dense, padded", 2, 2, mid, 0.0, ATTN_FILL_RANDOM, true},
      {"n=max_seq", 1, 2, maxn, 0.5, ATTN_FILL_QUANTIZED, false},
      {"all ties", 2, 2, maxn < 33 ? maxn : 33, -1, ATTN_FILL_TIES, true},
      {"s=0.99", 2, 2, maxn < 64 ? maxn : 64, 0.99, ATTN_FILL_QUANTIZED, true},
  };
  enum { NS = sizeof shapes / sizeof shapes[0] };
  AttnTask tasks[NS];
  uint64_t rng = o->seed ^ rt_fnv1a64(dir, strlen(dir), RT_FNV_OFFSET);
  for (int i = 0; i < NS; i++) {
    double sp = shapes[i].sparsity < 0 ? s->sparsity : shapes[i].sparsity;
    if (attn_task_init(&tasks[i], b, s, shapes[i].B, shapes[i].H, shapes[i].N, sp, err,
                       sizeof err)) {
      printf("FAIL %s: %s\n", dir, err);
      for (int j = 0; j < i; j++)
        attn_task_free(&tasks[j]);
      free_variants(b, v, nv);
      (*failures)++;
      return 0;
    }
    attn_task_fill(&tasks[i], &rng, shapes[i].fill, shapes[i].random_lengths);
  }
  int device_failed = 0;
  for (int i = 0; i < nv && !device_failed; i++) {
    char name[96];
    if (!v[i].mod) {
      printf("FAIL %s: %s\n", v[i].path, v[i].err);
      (*failures)++;
      continue;
    }
    RtKernel *k = rt_kernel(b, v[i].mod, forward_name(&v[i], name, sizeof name));
    double worst = 0;
    int bad = 0;
    char first[4400] = "";
    for (int j = 0; j < NS && k; j++) {
      AttnCheck res;
      if (attn_task_check(&tasks[j], k, &res, err, sizeof err)) {
        snprintf(first, sizeof first, "%.40s: device error: %.4096s", shapes[j].what, err);
        bad++;
        device_failed = 1;
        break;
      }
      worst = fmax(worst, fmax(res.err, res.lse_err));
      if (!attn_check_ok(&res)) {
        if (!bad)
          snprintf(first, sizeof first, "%s (B=%d H=%d N=%d s=%g): %s", shapes[j].what,
                   shapes[j].B, shapes[j].H, shapes[j].N, tasks[j].sparsity, res.first_bad);
        bad++;
      }
    }
    if (!k) {
      bad = 1;
      snprintf(first, sizeof first, "%s", backend_error(b));
    }
    printf("%s %-8s rows=%-2d warps=%-2d %s", bad ? "FAIL" : "PASS", s->name, v[i].man.tile_rows,
           v[i].man.tile_warps, name);
    if (bad)
      printf(": %d of %d shapes wrong; first: %s\n", bad, NS, first);
    else
      printf(": %d shapes, max err %.2e\n", NS, worst);
    if (v[i].mod->jit_log && v[i].mod->jit_log[0]) {
      const char *line = strrchr(v[i].mod->jit_log, '\n');
      printf("     %s\n", line ? line + 1 : v[i].mod->jit_log);   /* registers, spills */
    }
    *failures += bad != 0;
  }
  for (int i = 0; i < NS; i++)
    attn_task_free(&tasks[i]);
  free_variants(b, v, nv);
  return device_failed ? -1 : 0;
}

/* ---- tune ---- */

static int tune_dir(Backend *b, const char *dir, const Opts *o) {
  char err[4096];
  Variant *v;
  int nv;
  const Spec *s;
  if (load_dir(b, dir, &v, &nv, &s, err, sizeof err)) {
    fprintf(stderr, "crisp-devcheck: %s\n", err);
    return 1;
  }
  TuneVariant *tv = calloc((size_t)nv, sizeof *tv);
  TileConfig def = tile_resolve(s, strcmp(b->kind, "cpu") ? TUNE_GPU : TUNE_CPU);
  int def_index = -1;
  for (int i = 0; i < nv; i++) {
    tv[i].tile = (TileConfig){v[i].man.tile_rows, v[i].man.tile_warps, SCHED_WARP};
    tv[i].user = v[i].mod;
    if (!v[i].mod)
      snprintf(tv[i].note, sizeof tv[i].note, "%.190s", v[i].err);
    if (tv[i].tile.rows == def.rows && tv[i].tile.warps == def.warps)
      def_index = i;
  }
  AttnTuneConfig cfg;
  attn_tune_config_default(&cfg, s);
  cfg.seed = o->seed;
  cfg.db_path = o->db;
  if (o->nn) {
    cfg.nn = o->nn;
    memcpy(cfg.n, o->n, sizeof cfg.n);
  }
  if (o->reps)
    cfg.opt.reps = o->reps;
  int rc = attn_tune(b, s, tv, nv, def_index, &cfg, stdout, err, sizeof err);
  if (rc)
    fprintf(stderr, "crisp-devcheck: %s\n", err);
  free(tv);
  free_variants(b, v, nv);
  return rc ? 1 : 0;
}

/* ---- bench ---- */

static int bench_dir(Backend *b, const char *dir, const Opts *o, const TuneDb *db, FILE *json) {
  char err[4096];
  Variant *v;
  int nv;
  const Spec *s;
  if (load_dir(b, dir, &v, &nv, &s, err, sizeof err)) {
    fprintf(stderr, "crisp-devcheck: %s\n", err);
    return 1;
  }
  int ns[TUNE_MAX_BUCKETS] = {128, 512}, nn = o->nn ? o->nn : 2;
  if (o->nn)
    memcpy(ns, o->n, sizeof ns);
  int rc = 0;
  for (int i = 0; i < nn && !rc; i++) {
    int n = ns[i] < s->max_seq ? ns[i] : s->max_seq;
    bool tuned = false;
    TileConfig want = tune_tile_for(db, s, b, n, &tuned);
    int pick = -1;
    for (int j = 0; j < nv; j++)
      if (v[j].mod && v[j].man.tile_rows == want.rows && v[j].man.tile_warps == want.warps)
        pick = j;
    if (pick < 0) {   /* the tuned tile was not built here: the default, else any */
      tuned = false;
      want = tile_resolve(s, TUNE_GPU);
      for (int j = nv - 1; j >= 0; j--)
        if (v[j].mod && (pick < 0 || (v[j].man.tile_rows == want.rows &&
                                      v[j].man.tile_warps == want.warps)))
          pick = j;
      if (pick < 0) {
        fprintf(stderr, "crisp-devcheck: %s: no variant loaded (%s)\n", dir, v[0].err);
        rc = 1;
        break;
      }
      want = (TileConfig){v[pick].man.tile_rows, v[pick].man.tile_warps, SCHED_WARP};
    }
    char name[96];
    RtKernel *k = rt_kernel(b, v[pick].mod, forward_name(&v[pick], name, sizeof name));
    AttnTask t;
    uint64_t rng = o->seed + (uint64_t)i;
    if (!k || attn_task_init(&t, b, s, 16, 12, n, s->sparsity, err, sizeof err)) {
      fprintf(stderr, "crisp-devcheck: %s\n", k ? err : backend_error(b));
      rc = 1;
      break;
    }
    attn_task_fill(&t, &rng, ATTN_FILL_RANDOM, false);
    double ms[64];
    int reps = o->reps ? o->reps : 20;
    reps = reps > 64 ? 64 : reps;
    RtEvent *e0 = NULL, *e1 = NULL;
    if (attn_task_bind(&t, k->info, err, sizeof err) || rt_event_create(b, &e0) ||
        rt_event_create(b, &e1)) {
      fprintf(stderr, "crisp-devcheck: %s\n", err[0] ? err : backend_error(b));
      rc = 1;
    }
    for (int w = 0; w < 3 && !rc; w++)
      rc = attn_task_run(&t, k);
    if (!rc)
      rc = rt_sync(b);
    for (int r = 0; r < reps && !rc; r++) {
      float f;
      rc = rt_event_record(b, e0) || attn_task_run(&t, k) || rt_event_record(b, e1) ||
           rt_event_elapsed(b, e0, e1, &f);
      ms[r] = f;
    }
    if (rc) {
      fprintf(stderr, "crisp-devcheck: %s\n", backend_error(b));
    } else {
      double med = tune_median(ms, reps);
      double flops = 4.0 * 16 * 12 * (double)n * n * s->head_dim;
      printf("bench %-8s n=%-4d s=%.2f rows=%-2d warps=%-2d%s  %.4f ms  %.1f GFLOP/s (dense count)\n",
             s->name, n, s->sparsity, want.rows, want.warps, tuned ? " (tuned)" : " (default)",
             med, flops / med * 1e-6);
      if (json)
        fprintf(json, "{\"spec\": \"%s\", \"select\": \"%s\", \"causal\": %s, \"B\": 16, "
                "\"H\": 12, \"N\": %d, \"D\": %d, \"sparsity\": %.17g, \"keep_min\": %d, "
                "\"rows\": %d, \"warps\": %d, \"tuned\": %s, \"ms\": %.6f, \"reps\": %d, "
                "\"device\": \"%s\"}\n",
                s->name, select_name(s->select), s->causal ? "true" : "false", n, s->head_dim,
                s->sparsity, s->keep_min, want.rows, want.warps, tuned ? "true" : "false", med,
                reps, b->device_key);
    }
    rt_event_destroy(b, e0);
    rt_event_destroy(b, e1);
    attn_task_free(&t);
  }
  free_variants(b, v, nv);
  return rc ? 1 : 0;
}

/* ---- gemm ---- */

static int gemm_case(Backend *b, RtTrans ta, RtTrans tb, int m, int n, int k, int batch,
                     uint64_t *rng, double *worst) {
  int rows_a = ta ? k : m, cols_a = ta ? m : k, rows_b = tb ? n : k, cols_b = tb ? k : n;
  int lda = cols_a + 3, ldb = cols_b + 1, ldc = n + 2;   /* padded rows */
  int64_t sa = (int64_t)rows_a * lda, sb = (int64_t)rows_b * ldb, sc = (int64_t)m * ldc;
  int nb = batch > 1 ? batch : 1;
  float *A = malloc((size_t)(sa * nb) * 4), *B = malloc((size_t)(sb * nb) * 4);
  float *C = malloc((size_t)(sc * nb) * 4), *C0 = malloc((size_t)(sc * nb) * 4);
  DevPtr dA = 0, dB = 0, dC = 0;
  int rc = -1;
  if (!A || !B || !C || !C0)
    goto done;
  for (int64_t i = 0; i < sa * nb; i++) A[i] = (float)(rt_rng_uniform(rng) * 2 - 1);
  for (int64_t i = 0; i < sb * nb; i++) B[i] = (float)(rt_rng_uniform(rng) * 2 - 1);
  for (int64_t i = 0; i < sc * nb; i++) C0[i] = (float)(rt_rng_uniform(rng) * 2 - 1);
  if (rt_alloc(b, (size_t)(sa * nb) * 4, &dA) || rt_alloc(b, (size_t)(sb * nb) * 4, &dB) ||
      rt_alloc(b, (size_t)(sc * nb) * 4, &dC) || rt_h2d(b, dA, A, (size_t)(sa * nb) * 4) ||
      rt_h2d(b, dB, B, (size_t)(sb * nb) * 4) || rt_h2d(b, dC, C0, (size_t)(sc * nb) * 4))
    goto done;
  RtGemm g = {ta, tb, m, n, k, 0.75f, 0.5f, dA, dB, dC, lda, ldb, ldc, batch, sa, sb, sc};
  if (rt_gemm(b, &g) || rt_sync(b) || rt_d2h(b, C, dC, (size_t)(sc * nb) * 4))
    goto done;
  for (int p = 0; p < nb; p++)
    for (int i = 0; i < m; i++)
      for (int j = 0; j < n; j++) {
        double acc = 0, mag = 0;
        for (int q = 0; q < k; q++) {
          double a = ta ? A[p * sa + (int64_t)q * lda + i] : A[p * sa + (int64_t)i * lda + q];
          double bb = tb ? B[p * sb + (int64_t)j * ldb + q] : B[p * sb + (int64_t)q * ldb + j];
          acc += a * bb;
          mag += fabs(a * bb);
        }
        double ref = 0.75 * acc + 0.5 * C0[p * sc + (int64_t)i * ldc + j];
        double e = fabs(C[p * sc + (int64_t)i * ldc + j] - ref) / (0.75 * mag + 0.5 + 1e-30);
        *worst = fmax(*worst, e);
      }
  rc = 0;
done:
  rt_free(b, dA), rt_free(b, dB), rt_free(b, dC);
  free(A), free(B), free(C), free(C0);
  return rc;
}

static int gemm_check(Backend *b, const Opts *o) {
  uint64_t rng = o->seed;
  struct { RtTrans ta, tb; int m, n, k, batch; } cases[] = {
      {RT_NOTRANS, RT_NOTRANS, 64, 48, 32, 1}, {RT_TRANS, RT_NOTRANS, 33, 65, 17, 1},
      {RT_NOTRANS, RT_TRANS, 7, 129, 64, 1},   {RT_TRANS, RT_TRANS, 50, 3, 100, 1},
      {RT_NOTRANS, RT_TRANS, 16, 20, 24, 3},   {RT_NOTRANS, RT_NOTRANS, 1, 1, 1, 1},
  };
  int failed = 0;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    double worst = 0;
    if (gemm_case(b, cases[i].ta, cases[i].tb, cases[i].m, cases[i].n, cases[i].k,
                  cases[i].batch, &rng, &worst)) {
      printf("FAIL gemm: %s\n", backend_error(b));
      return 1;
    }
    bool ok = worst < 1e-5;
    printf("%s gemm %c%c m=%d n=%d k=%d batch=%d: max err %.2e\n", ok ? "PASS" : "FAIL",
           cases[i].ta ? 'T' : 'N', cases[i].tb ? 'T' : 'N', cases[i].m, cases[i].n, cases[i].k,
           cases[i].batch, worst);
    failed += !ok;
  }
  /* one large product for a rate */
  int n = strcmp(b->kind, "cuda") ? 512 : 4096;
  DevPtr a = 0, bb = 0, c = 0;
  size_t bytes = (size_t)n * n * 4;
  RtEvent *e0 = NULL, *e1 = NULL;
  if (!rt_alloc(b, bytes, &a) && !rt_alloc(b, bytes, &bb) && !rt_alloc(b, bytes, &c) &&
      !rt_memset(b, a, 0x3c, bytes) && !rt_memset(b, bb, 0x3c, bytes) &&
      !rt_event_create(b, &e0) && !rt_event_create(b, &e1)) {
    RtGemm g = {RT_NOTRANS, RT_NOTRANS, n, n, n, 1, 0, a, bb, c, n, n, n, 1, 0, 0, 0};
    double t[5];
    int ok = !rt_gemm(b, &g) && !rt_sync(b);
    for (int r = 0; r < 5 && ok; r++) {
      float f;
      ok = !rt_event_record(b, e0) && !rt_gemm(b, &g) && !rt_event_record(b, e1) &&
           !rt_event_elapsed(b, e0, e1, &f);
      t[r] = f;
    }
    if (ok) {
      double med = tune_median(t, 5);
      printf("gemm %dx%dx%d f32 (%s): %.3f ms, %.1f GFLOP/s\n", n, n, n, b->gemm_lib, med,
             2.0 * n * n * (double)n / med * 1e-6);
    }
  }
  rt_event_destroy(b, e0), rt_event_destroy(b, e1);
  rt_free(b, a), rt_free(b, bb), rt_free(b, c);
  return failed ? 1 : 0;
}

/* ---- command line ---- */

static int parse_list(const char *s, int *out, int *n) {
  *n = 0;
  while (*s && *n < TUNE_MAX_BUCKETS) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || v < 1 || v > 1 << 20)
      return -1;
    out[(*n)++] = (int)v;
    s = *end == ',' ? end + 1 : end;
    if (*end && *end != ',')
      return -1;
  }
  return *n ? 0 : -1;
}

static int train_command(Backend *b, const char *const *files, int n, const Opts *o) {
  FILE *json = o->json ? fopen(o->json, "w") : NULL;
  if (o->json && !json) {
    fprintf(stderr, "crisp-devcheck: cannot write %s\n", o->json);
    return 1;
  }
  int failures = 0;
  for (int i = 0; i < n; i++)
    if (train_check_file(b, files[i], o, json, &failures))
      break;   /* the device failed */
  if (json)
    fclose(json);
  printf("train: %s (%d failure%s)\n", failures ? "FAILED" : "all passed", failures,
         failures == 1 ? "" : "s");
  return failures ? 1 : 0;
}

int main(int argc, char **argv) {
  Opts o = {.device = "auto", .seed = (uint64_t)time(NULL)};
  const char *env = getenv("CRISP_SEED");
  if (env)
    o.seed = strtoull(env, NULL, 0);
  const char *cmd = NULL;
  const char *pos[64];
  int npos = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      fputs(usage, stdout);
      return 0;
    } else if (!strcmp(a, "--version")) {
      printf("crisp-devcheck (crisp runtime%s)\n",
#ifdef CRISP_DEVCHECK_JIT
             ", with the JIT"
#else
             ", runtime-only"
#endif
      );
      return 0;
    }
    bool takes = !strcmp(a, "--device") || !strcmp(a, "--threads") || !strcmp(a, "--seed") ||
                 !strcmp(a, "--db") || !strcmp(a, "--json") || !strcmp(a, "--n") ||
                 !strcmp(a, "--reps");
    if (takes && !val) {
      fprintf(stderr, "crisp-devcheck: %s needs a value\n", a);
      return 2;
    }
    if (!strcmp(a, "--device")) o.device = val;
    else if (!strcmp(a, "--threads")) o.threads = atoi(val);
    else if (!strcmp(a, "--seed")) o.seed = strtoull(val, NULL, 0);
    else if (!strcmp(a, "--db")) o.db = val;
    else if (!strcmp(a, "--json")) o.json = val;
    else if (!strcmp(a, "--reps")) o.reps = atoi(val);
    else if (!strcmp(a, "--n")) {
      if (parse_list(val, o.n, &o.nn)) {
        fprintf(stderr, "crisp-devcheck: --n wants lengths like 128,512\n");
        return 2;
      }
    } else if (a[0] == '-') {
      fprintf(stderr, "crisp-devcheck: unknown option %s\n%s", a, usage);
      return 2;
    } else if (!cmd) {
      cmd = a;
    } else if (npos < 64) {
      pos[npos++] = a;
    }
    if (takes)
      i++;
  }
  if (!cmd) {
    fputs(usage, stderr);
    return 2;
  }
  if (backend_check_name(o.device)) {
    fprintf(stderr, "crisp-devcheck: unknown device '%s' (auto, cpu or cuda)\n", o.device);
    return 2;
  }
  bool known = !strcmp(cmd, "info") || !strcmp(cmd, "gemm") || !strcmp(cmd, "check") ||
               !strcmp(cmd, "tune") || !strcmp(cmd, "bench") || !strcmp(cmd, "train");
  bool needs_pos = !strcmp(cmd, "check") || !strcmp(cmd, "bench") || !strcmp(cmd, "train");
  if (!known || (needs_pos && npos < 1) ||
      (!strcmp(cmd, "tune") && npos != 1)) {
    fprintf(stderr, "crisp-devcheck: bad command line\n%s", usage);
    return 2;
  }
  char err[1024];
  BackendOptions bo = {.threads = o.threads};
  Backend *b = backend_open(o.device, &bo, err, sizeof err);
  if (!b) {
    fprintf(stderr, "crisp-devcheck: %s\n", err);
    return 1;
  }
  char desc[512];
  backend_describe(b, desc, sizeof desc);
  printf("device: %s\nseed %" PRIu64 " (set CRISP_SEED or --seed to repeat)\n", desc, o.seed);
  int rc = 0;
  if (!strcmp(cmd, "gemm")) {
    rc = gemm_check(b, &o);
  } else if (!strcmp(cmd, "check")) {
    int failures = 0;
    for (int i = 0; i < npos; i++)
      if (check_dir(b, pos[i], &o, &failures))
        break;   /* the device failed: later kernels would only repeat it */
    printf("check: %s (%d failure%s)\n", failures ? "FAILED" : "all passed", failures,
           failures == 1 ? "" : "s");
    rc = failures ? 1 : 0;
  } else if (!strcmp(cmd, "tune")) {
    rc = tune_dir(b, pos[0], &o);
  } else if (!strcmp(cmd, "train")) {
    rc = train_command(b, pos, npos, &o);
  } else if (!strcmp(cmd, "bench")) {
    TuneDb db = {0};
    char path[1100];
    if (o.db)
      snprintf(path, sizeof path, "%s", o.db);
    else if (tune_db_default_path(path, sizeof path))
      path[0] = 0;
    if (path[0] && tune_db_load(&db, path, err, sizeof err))
      fprintf(stderr, "crisp-devcheck: warning: %s (default tiles)\n", err);
    FILE *json = o.json ? fopen(o.json, "w") : NULL;
    if (o.json && !json) {
      fprintf(stderr, "crisp-devcheck: cannot write %s\n", o.json);
      rc = 1;
    }
    for (int i = 0; i < npos && !rc; i++)
      rc = bench_dir(b, pos[i], &o, &db, json);
    if (json)
      fclose(json);
    tune_db_free(&db);
  }
  backend_close(b);
  return rc;
}
