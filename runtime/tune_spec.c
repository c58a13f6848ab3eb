/* crispc --tune (see tune_spec.h). */
#include "tune_spec.h"

#include <stdlib.h>
#include <string.h>

#include "compile.h"
#include "fsutil.h"
#include "pool.h"

enum { MAX_TILES = 64 };

int rt_tune_spec(const RtTuneRequest *r, FILE *out, char *err, size_t cap) {
  const Spec *s = r->spec;
  BackendOptions bo = {.threads = r->threads};
  Backend *b = backend_open(r->device, &bo, err, cap);
  if (!b)
    return -1;
  Target target;
  TileConfig tiles[MAX_TILES];
  int nt = tune_legal_tiles(s, tiles, MAX_TILES);
  if (rt_backend_target(b, &target, err, cap)) {
    backend_close(b);
    return -1;
  }
  if (nt == 0 || nt > MAX_TILES) {
    snprintf(err, cap, "%s: %d legal tiles (expected 1..%d)", s->name, nt, MAX_TILES);
    backend_close(b);
    return -1;
  }
  TileConfig def = tile_resolve(s, target == TARGET_HOST ? TUNE_CPU : TUNE_GPU);
  int def_index = -1;
  for (int i = 0; i < nt; i++)
    if (tiles[i].rows == def.rows && tiles[i].warps == def.warps)
      def_index = i;
  if (!s->tile.is_auto)
    fprintf(out, "note: %s fixes tile rows=%d warps=%d; the tuning database is consulted only "
            "for tile = auto\n", s->name, def.rows, def.warps);

  if (attn_tune_db_check(r->db_path, err, cap)) {   /* before minutes of compiling */
    backend_close(b);
    return -1;
  }
  RtCache cache;
  char why[512];
  if (rt_cache_open(&cache, NULL, why, sizeof why))
    fprintf(stderr, "crisp: warning: no kernel cache: %s\n", why);
  RtArtifact *arts = calloc((size_t)nt, sizeof *arts);
  char (*errs)[512] = calloc((size_t)nt, sizeof *errs);
  TuneVariant *v = calloc((size_t)nt, sizeof *v);
  if (!arts || !errs || !v) {
    free(arts), free(errs), free(v);
    backend_close(b);
    snprintf(err, cap, "out of memory");
    return -1;
  }
  int cthreads = r->compile_threads > 0 ? r->compile_threads : rt_cpu_count();
  long before = rt_compile_count();
  double t0 = rt_now();
  rt_compile_many(s, tiles, nt, target, &cache, cthreads, arts, errs);
  fprintf(out, "compiled %d variants for %s in %.1f s on %d thread%s (%ld compiled, %ld from "
          "the kernel cache)\n", nt, target_name(target), rt_now() - t0, cthreads,
          cthreads == 1 ? "" : "s", rt_compile_count() - before, (long)atomic_load(&cache.hits));
  for (int i = 0; i < nt; i++) {
    v[i].tile = tiles[i];
    if (!arts[i].code) {
      v[i].state = TUNE_BROKEN;
      snprintf(v[i].note, sizeof v[i].note, "%.190s", errs[i]);
      continue;
    }
    RtModule *m = NULL;
    if (rt_artifact_load(b, &arts[i], &m, why, sizeof why)) {
      v[i].state = TUNE_BROKEN;
      snprintf(v[i].note, sizeof v[i].note, "%.190s", why);
    }
    v[i].user = m;
  }
  AttnTuneConfig cfg;
  attn_tune_config_default(&cfg, s);
  if (r->nn > 0) {
    cfg.nn = r->nn < TUNE_MAX_BUCKETS ? r->nn : TUNE_MAX_BUCKETS;
    for (int i = 0; i < cfg.nn; i++)
      cfg.n[i] = r->n[i];
  }
  if (r->B > 0)
    cfg.B = r->B;
  if (r->H > 0)
    cfg.H = r->H;
  if (r->reps > 0)
    cfg.opt.reps = r->reps;
  if (!strcmp(b->kind, "cpu")) {
    /* A CPU sweep must stay short: one example of 12 heads (a block is a pool task,
     * so 12 heads already give every thread many), three repeats, harder pruning. */
    if (r->B <= 0)
      cfg.B = 1;
    cfg.opt.warmup = 1;
    if (r->reps <= 0)
      cfg.opt.reps = 3;
    cfg.opt.prune = 2.0;
  }
  cfg.db_path = r->db_path;
  cfg.opt.progress = r->progress ? stderr : NULL;
  int rc = attn_tune(b, s, v, nt, def_index, &cfg, out, err, cap);
  for (int i = 0; i < nt; i++) {
    rt_module_unload(b, v[i].user);
    rt_artifact_free(&arts[i]);
  }
  free(arts), free(errs), free(v);
  backend_close(b);
  return rc;
}
