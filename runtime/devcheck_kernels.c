/* devcheck_kernels.c: crisp-devcheck's check, tune and bench commands.
 *
 * check: every variant in a folder against the double-precision reference over
 * several shapes (fills, sparsities, random lengths); tune: the autotuner over the
 * folder's tile variants; bench: the forward kernel timed at B=16 H=12 with the
 * tuned tile. Together because all three take a folder of one spec's variants;
 * apart from gemm (devcheck_gemm.c) and train (devcheck_train.c). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn_task.h"
#include "attn_tune.h"
#include "devcheck.h"
#include "fsutil.h"

/* ---- check ---- */

typedef struct {
  const char *what;
  int B, H, N;
  double sparsity;          /* < 0: the spec's */
  AttnFill fill;
  bool random_lengths;
} Shape;

int check_dir(Backend *b, const char *dir, const Opts *o, int *failures) {
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

int tune_dir(Backend *b, const char *dir, const Opts *o) {
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

int bench_dir(Backend *b, const char *dir, const Opts *o, const TuneDb *db, FILE *json) {
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
