/* The attention forward kernel through the autotuner (see attn_tune.h). */
#include "attn_tune.h"

#include <string.h>
#include <time.h>

#include "attn_task.h"

void attn_tune_config_default(AttnTuneConfig *c, const Spec *s) {
  memset(c, 0, sizeof *c);
  c->B = 16;
  c->H = 12;
  c->n[0] = 128 < s->max_seq ? 128 : s->max_seq;
  c->nn = 1;
  if (s->max_seq > 128)
    c->n[c->nn++] = 512 < s->max_seq ? 512 : s->max_seq;
  c->check_B = 2;
  c->check_H = 3;
  c->check_N = 77 < s->max_seq ? 77 : s->max_seq;
  c->sparsity = s->sparsity;
  tune_options_default(&c->opt);
  c->seed = (uint64_t)time(NULL);
}

typedef struct {
  Backend *b;
  const Spec *s;
  const AttnTuneConfig *cfg;
  AttnTask check, timing;
  bool timing_ready;
  uint64_t rng;
} Ctx;

static RtKernel *forward_kernel(Ctx *c, TuneVariant *v, char *note, size_t cap) {
  RtModule *m = v->user;
  char name[96];
  snprintf(name, sizeof name, "%.63s_attn_fwd", c->s->name);
  RtKernel *k = m ? rt_kernel(c->b, m, name) : NULL;
  if (!k)
    snprintf(note, cap, "%s", m ? backend_error(c->b) : "no module");
  return k;
}

static int check(void *ctx, TuneVariant *v, double *err_out, char *note, size_t cap) {
  Ctx *c = ctx;
  RtKernel *k = forward_kernel(c, v, note, cap);
  if (!k)
    return -1;
  AttnCheck res;
  if (attn_task_check(&c->check, k, &res, note, cap))
    return -1;
  *err_out = res.err > res.lse_err ? res.err : res.lse_err;
  if (!attn_check_ok(&res)) {
    snprintf(note, cap, "%s", res.first_bad);
    return 1;
  }
  return 0;
}

static int prepare(void *ctx, int bi, char *err, size_t cap) {
  Ctx *c = ctx;
  if (c->timing_ready)
    attn_task_free(&c->timing);
  c->timing_ready = false;
  if (attn_task_init(&c->timing, c->b, c->s, c->cfg->B, c->cfg->H, c->cfg->n[bi],
                     c->cfg->sparsity, err, cap))
    return -1;
  attn_task_fill(&c->timing, &c->rng, ATTN_FILL_RANDOM, false);
  c->timing_ready = true;
  return 0;
}

static int bind(void *ctx, TuneVariant *v, int bi, char *note, size_t cap) {
  Ctx *c = ctx;
  (void)bi;
  RtKernel *k = forward_kernel(c, v, note, cap);
  return k ? attn_task_bind(&c->timing, k->info, note, cap) : -1;
}

static int run(void *ctx, TuneVariant *v, char *note, size_t cap) {
  Ctx *c = ctx;
  RtKernel *k = forward_kernel(c, v, note, cap);
  if (!k)
    return -1;
  if (attn_task_run(&c->timing, k)) {
    snprintf(note, cap, "%s", backend_error(c->b));
    return -1;
  }
  return 0;
}

/* The database's file into path ("" when cfg says not to save). 0, or -1 (err). */
static int db_path(const AttnTuneConfig *cfg, char *path, size_t size, char *err, size_t cap) {
  path[0] = 0;
  if (cfg->db_path && !cfg->db_path[0])
    return 0;
  if (cfg->db_path)
    snprintf(path, size, "%s", cfg->db_path);
  else if (tune_db_default_path(path, size)) {
    snprintf(err, cap, "no place for the tuning database (set CRISP_TUNE_DB or HOME)");
    return -1;
  }
  return 0;
}

int attn_tune_db_check(const char *db, char *err, size_t cap) {
  char path[1100];
  TuneDb tdb;
  AttnTuneConfig cfg = {.db_path = db};
  if (db_path(&cfg, path, sizeof path, err, cap) ||
      (path[0] && tune_db_load(&tdb, path, err, cap)))
    return -1;
  if (path[0])
    tune_db_free(&tdb);
  return 0;
}

static int save(Backend *b, const Spec *s, const TuneVariant *v, int nv, int def,
                const AttnTuneConfig *cfg, FILE *out, char *err, size_t cap) {
  char path[1100];
  if (db_path(cfg, path, sizeof path, err, cap))
    return -1;
  if (!path[0])
    return 0;
  TuneDb db;
  if (tune_db_load(&db, path, err, cap))   /* again: another run may have added entries */
    return -1;
  char when[32];
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  int stored = 0;
  for (int bi = 0; bi < cfg->nn; bi++) {
    int w = tune_best(v, nv, bi);
    if (w < 0)
      continue;
    TuneEntry e;
    memset(&e, 0, sizeof e);
    tune_key(&e.key, s, b, cfg->n[bi]);
    e.tile = v[w].tile;
    e.ms = v[w].ms[bi];
    e.default_ms = def >= 0 && v[def].ms[bi] >= 0 ? v[def].ms[bi] : 0;
    e.B = cfg->B, e.H = cfg->H, e.N = cfg->n[bi];
    e.variants = nv;
    snprintf(e.tuned_at, sizeof e.tuned_at, "%s", when);
    if (tune_db_put(&db, &e)) {
      tune_db_free(&db);
      snprintf(err, cap, "out of memory");
      return -1;
    }
    stored++;
  }
  int rc = tune_db_save(&db, path, err, cap);
  if (!rc)
    fprintf(out, "tuning database: %s (%d entr%s written, %d in all)\n", path, stored,
            stored == 1 ? "y" : "ies", db.n);
  tune_db_free(&db);
  return rc;
}

int attn_tune(Backend *b, const Spec *s, TuneVariant *v, int nv, int default_index,
              const AttnTuneConfig *cfg, FILE *out, char *err, size_t cap) {
  Ctx c = {.b = b, .s = s, .cfg = cfg, .rng = cfg->seed};
  if (attn_tune_db_check(cfg->db_path, err, cap))
    return -1;
  if (attn_task_init(&c.check, b, s, cfg->check_B, cfg->check_H, cfg->check_N, cfg->sparsity,
                     err, cap))
    return -1;
  /* quantized inputs make the kernel's f32 scores exact, so kept sets compare exactly */
  attn_task_fill(&c.check, &c.rng, cfg->sparsity > 0 ? ATTN_FILL_QUANTIZED : ATTN_FILL_RANDOM,
                 true);
  for (int i = 0; i < nv; i++)
    if (!v[i].user && v[i].state == TUNE_OK) {
      v[i].state = TUNE_BROKEN;
      if (!v[i].note[0])
        snprintf(v[i].note, sizeof v[i].note, "not built");
    }
  TuneOps ops = {&c, check, prepare, bind, run};
  TuneOptions opt = cfg->opt;
  opt.first = default_index;
  char desc[512];
  backend_describe(b, desc, sizeof desc);
  fprintf(out, "tuning %s_attn_fwd on %s\n", s->name, desc);
  fprintf(out, "check: B=%d H=%d N=%d (padded lengths), sparsity %g; timing: B=%d H=%d, "
          "median of %d after %d warm-up\n", cfg->check_B, cfg->check_H, cfg->check_N,
          cfg->sparsity, cfg->B, cfg->H, opt.reps, opt.warmup);
  fflush(out);
  int rc = tune_sweep(b, &ops, v, nv, cfg->nn, &opt, err, cap);
  if (!rc) {
    tune_print_table(out, v, nv, cfg->n, cfg->nn, default_index);
    rc = save(b, s, v, nv, default_index, cfg, out, err, cap);
  }
  attn_task_free(&c.check);
  if (c.timing_ready)
    attn_task_free(&c.timing);
  return rc;
}
