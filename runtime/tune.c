/* The autotuner's sweep, table and database (see tune.h). */
#include "tune.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fsutil.h"
#include "json_whole.h"

/* ---- database ---- */

int tune_db_default_path(char *buf, size_t cap) {
  const char *env = getenv("CRISP_TUNE_DB");
  if (env && *env)
    return snprintf(buf, cap, "%s", env) < (int)cap ? 0 : -1;
  char dir[1024];
  if (rt_cache_dir(dir, sizeof dir))
    return -1;
  return snprintf(buf, cap, "%s/tune.json", dir) < (int)cap ? 0 : -1;
}

void tune_db_free(TuneDb *db) {
  free(db->e);
  memset(db, 0, sizeof *db);
}

static bool same_key(const TuneKey *a, const TuneKey *b) {
  return a->bucket == b->bucket && !strcmp(a->kernel, b->kernel) &&
         !strcmp(a->spec_hash, b->spec_hash) && !strcmp(a->device, b->device) &&
         !strcmp(a->driver, b->driver);
}

const TuneEntry *tune_db_find(const TuneDb *db, const TuneKey *k) {
  for (int i = 0; i < db->n; i++)
    if (same_key(&db->e[i].key, k))
      return &db->e[i];
  return NULL;
}

int tune_db_put(TuneDb *db, const TuneEntry *e) {
  for (int i = 0; i < db->n; i++)
    if (same_key(&db->e[i].key, &e->key)) {
      db->e[i] = *e;
      return 0;
    }
  if (db->n == db->cap) {
    int cap = db->cap ? 2 * db->cap : 16;
    TuneEntry *grown = realloc(db->e, (size_t)cap * sizeof *grown);
    if (!grown)
      return -1;
    db->e = grown;
    db->cap = cap;
  }
  db->e[db->n++] = *e;
  return 0;
}

/* Reading an entry: each failure names the field and what was wrong, so a hand-edited
 * or damaged database says where to look ("entry 3: tile.warps: ..."). */
typedef struct {
  const char *field;   /* the first field that failed, or NULL */
  const char *what;
} Why;

static int bad(Why *w, const char *field, const char *what) {
  w->field = field;
  w->what = what;
  return -1;
}

static int str_field(Why *w, const cJSON *o, const char *key, char *out, size_t cap) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!cJSON_IsString(v))
    return bad(w, key, "missing or not a string");
  if (strlen(v->valuestring) >= cap)
    return bad(w, key, "too long");
  snprintf(out, cap, "%s", v->valuestring);
  return 0;
}

/* A finite number >= 0 (cJSON reads 1e999 as infinity). */
static int num_field(Why *w, const cJSON *o, const char *key, double *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < 0)
    return bad(w, key, "missing or not a finite number >= 0");
  *out = v->valuedouble;
  return 0;
}

static int int_field(Why *w, const cJSON *o, const char *key, int lo, int hi, int *out) {
  double d;
  const char *range = lo == 0 ? "missing or not a whole number >= 0"
                              : "missing or not a whole number in range";
  if (num_field(w, o, key, &d) || d != floor(d) || d < lo || d > hi)
    return bad(w, key, range);
  *out = (int)d;
  return 0;
}

static bool power_of_two(int v) { return v > 0 && !(v & (v - 1)); }

/* The tile as the sweep writes it (tune_legal_tiles): rows a power of two up to 64,
 * warps 1..16 dividing rows. What depends on the spec (shared memory) is checked when
 * a spec consults it (tune_tile_for). */
static int parse_tile(Why *w, const cJSON *tile, TileConfig *t) {
  if (!cJSON_IsObject(tile))
    return bad(w, "tile", "missing or not an object");
  if (int_field(w, tile, "rows", 1, 64, &t->rows) || !power_of_two(t->rows))
    return bad(w, "tile.rows", "not a power of two from 1 to 64");
  if (int_field(w, tile, "warps", 1, 16, &t->warps))
    return bad(w, "tile.warps", "not a whole number from 1 to 16");
  if (t->rows % t->warps)
    return bad(w, "tile.warps", "does not divide tile.rows");
  t->sched = SCHED_WARP;
  return 0;
}

/* Informative fields are optional, but a present one must be well formed. */
static int optional_fields(Why *w, const cJSON *j, TuneEntry *e) {
  const cJSON *shape = cJSON_GetObjectItemCaseSensitive(j, "shape");
  if ((cJSON_HasObjectItem(j, "default_ms") && num_field(w, j, "default_ms", &e->default_ms)) ||
      (cJSON_HasObjectItem(j, "variants") &&
       int_field(w, j, "variants", 0, 1 << 20, &e->variants)) ||
      (cJSON_HasObjectItem(j, "tuned_at") &&
       str_field(w, j, "tuned_at", e->tuned_at, sizeof e->tuned_at)))
    return -1;
  if (!shape)
    return 0;
  if (!cJSON_IsObject(shape))
    return bad(w, "shape", "not an object");
  static const char *const key[] = {"B", "H", "N"}, *const field[] = {"shape.B", "shape.H",
                                                                      "shape.N"};
  int *dst[] = {&e->B, &e->H, &e->N};
  for (int i = 0; i < 3; i++)
    if (cJSON_HasObjectItem(shape, key[i]) && int_field(w, shape, key[i], 0, 1 << 30, dst[i]))
      return bad(w, field[i], w->what);
  return 0;
}

/* Unknown keys are ignored: a later crisp may add informative fields, and a change
 * that matters bumps "format". */
static int parse_entry(Why *w, const cJSON *j, TuneEntry *e) {
  memset(e, 0, sizeof *e);
  if (!cJSON_IsObject(j))
    return bad(w, "entry", "not an object");
  if (str_field(w, j, "kernel", e->key.kernel, sizeof e->key.kernel) ||
      str_field(w, j, "spec_hash", e->key.spec_hash, sizeof e->key.spec_hash) ||
      int_field(w, j, "bucket", 1, 1 << 30, &e->key.bucket))
    return -1;
  if (!power_of_two(e->key.bucket))
    return bad(w, "bucket", "not a power of two");
  if (str_field(w, j, "device", e->key.device, sizeof e->key.device) ||
      str_field(w, j, "driver", e->key.driver, sizeof e->key.driver) ||
      parse_tile(w, cJSON_GetObjectItemCaseSensitive(j, "tile"), &e->tile) ||
      num_field(w, j, "ms", &e->ms))
    return -1;
  return optional_fields(w, j, e);
}

int tune_db_load(TuneDb *db, const char *path, char *err, size_t cap) {
  memset(db, 0, sizeof *db);
  char *text;
  size_t len;
  FILE *probe = fopen(path, "rb");
  if (!probe)
    return 0;   /* no database yet */
  fclose(probe);
  if (rt_read_file(path, &text, &len, err, cap))
    return -1;
  cJSON *root = json_whole_file(path, text, len, err, cap);
  free(text);
  if (!root)
    return -1;
  const cJSON *entries = cJSON_GetObjectItemCaseSensitive(root, "entries");
  const cJSON *format = cJSON_GetObjectItemCaseSensitive(root, "format");
  if (!cJSON_IsObject(root) || !cJSON_IsNumber(format) || format->valuedouble != 1 ||
      !cJSON_IsArray(entries)) {
    snprintf(err, cap, "%s: not a crisp tuning database (format 1 with entries)", path);
    cJSON_Delete(root);
    return -1;
  }
  int i = 0;
  const cJSON *it;
  cJSON_ArrayForEach(it, entries) {
    TuneEntry e;
    Why w = {0};
    if (parse_entry(&w, it, &e)) {
      snprintf(err, cap, "%s: entry %d: %s: %s", path, i, w.field, w.what);
      cJSON_Delete(root);
      tune_db_free(db);
      return -1;
    }
    if (tune_db_put(db, &e)) {
      snprintf(err, cap, "out of memory");
      cJSON_Delete(root);
      tune_db_free(db);
      return -1;
    }
    i++;
  }
  cJSON_Delete(root);
  return 0;
}

int tune_db_save(const TuneDb *db, const char *path, char *err, size_t cap) {
  cJSON *root = cJSON_CreateObject();
  cJSON_AddNumberToObject(root, "format", 1);
  cJSON *entries = cJSON_AddArrayToObject(root, "entries");
  for (int i = 0; i < db->n; i++) {
    const TuneEntry *e = &db->e[i];
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "kernel", e->key.kernel);
    cJSON_AddStringToObject(j, "spec_hash", e->key.spec_hash);
    cJSON_AddNumberToObject(j, "bucket", e->key.bucket);
    cJSON_AddStringToObject(j, "device", e->key.device);
    cJSON_AddStringToObject(j, "driver", e->key.driver);
    cJSON *tile = cJSON_AddObjectToObject(j, "tile");
    cJSON_AddNumberToObject(tile, "rows", e->tile.rows);
    cJSON_AddNumberToObject(tile, "warps", e->tile.warps);
    cJSON_AddNumberToObject(j, "ms", e->ms);
    cJSON_AddNumberToObject(j, "default_ms", e->default_ms);
    cJSON *shape = cJSON_AddObjectToObject(j, "shape");
    cJSON_AddNumberToObject(shape, "B", e->B);
    cJSON_AddNumberToObject(shape, "H", e->H);
    cJSON_AddNumberToObject(shape, "N", e->N);
    cJSON_AddNumberToObject(j, "variants", e->variants);
    cJSON_AddStringToObject(j, "tuned_at", e->tuned_at);
    cJSON_AddItemToArray(entries, j);
  }
  char *text = cJSON_Print(root);
  cJSON_Delete(root);
  if (!text) {
    snprintf(err, cap, "out of memory");
    return -1;
  }
  /* the directory may not exist yet (first run) */
  char dir[1024];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  int rc = 0;
  if (slash && slash != dir) {
    *slash = 0;
    rc = rt_mkdirs(dir, err, cap);
  }
  if (!rc)
    rc = rt_write_atomic(path, text, strlen(text), err, cap);
  free(text);
  return rc;
}

int tune_bucket(int n) {
  int b = 1;
  while (b < n && b < (1 << 30))
    b *= 2;
  return b;
}

void tune_key(TuneKey *k, const Spec *s, const Backend *b, int n) {
  memset(k, 0, sizeof *k);
  Spec auto_spec = *s;
  auto_spec.tile = (TileSpec){.is_auto = true};
  snprintf(k->kernel, sizeof k->kernel, "%.63s_attn_fwd", s->name);
  snprintf(k->spec_hash, sizeof k->spec_hash, "%016" PRIx64, spec_hash(&auto_spec));
  k->bucket = tune_bucket(n);
  snprintf(k->device, sizeof k->device, "%s", b->device_key);
  snprintf(k->driver, sizeof k->driver, "%s", b->driver);
}

TileConfig tune_tile_for(const TuneDb *db, const Spec *s, const Backend *b, int n, bool *from_db) {
  TileTarget target = strcmp(b->kind, "cpu") ? TUNE_GPU : TUNE_CPU;
  if (from_db)
    *from_db = false;
  if (!s->tile.is_auto || !db)
    return tile_resolve(s, target);
  TuneKey k;
  tune_key(&k, s, b, n);
  const TuneEntry *best = tune_db_find(db, &k);
  if (!best) {   /* the nearest tuned bucket of the same kernel on this device */
    double dist = INFINITY;
    for (int i = 0; i < db->n; i++) {
      TuneKey other = db->e[i].key;
      other.bucket = k.bucket;
      if (!same_key(&other, &k))
        continue;
      double d = fabs(log2((double)db->e[i].key.bucket) - log2((double)k.bucket));
      if (d < dist)
        dist = d, best = &db->e[i];
    }
  }
  char err[256];
  if (!best || tile_check(s, &best->tile, err, sizeof err))
    return tile_resolve(s, target);
  if (from_db)
    *from_db = true;
  return best->tile;
}

int tune_legal_tiles(const Spec *s, TileConfig *out, int cap) {
  int n = 0;
  char err[256];
  for (int rows = 1; rows <= 64; rows *= 2)
    for (int warps = 1; warps <= 16 && warps <= rows; warps++) {
      TileConfig t = {rows, warps, SCHED_WARP};
      if (rows % warps || tile_check(s, &t, err, sizeof err))
        continue;
      if (n < cap)
        out[n] = t;
      n++;
    }
  return n;
}

/* ---- the sweep ---- */

void tune_options_default(TuneOptions *o) {
  o->warmup = 2;
  o->reps = 7;
  o->prune = 3.0;
  o->slow_ms = 100.0;
  o->progress = NULL;
  o->first = -1;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double tune_median(double *x, int n) {
  if (n <= 0)
    return NAN;
  qsort(x, (size_t)n, sizeof *x, cmp_double);
  return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/* One launch bracketed by events; its milliseconds in *ms. */
static int timed_run(Backend *b, const TuneOps *ops, TuneVariant *v, RtEvent *e0, RtEvent *e1,
                     double *ms, char *note, size_t cap) {
  float f = 0;
  if (rt_event_record(b, e0))
    return snprintf(note, cap, "%s", backend_error(b)), -1;
  if (ops->run(ops->ctx, v, note, cap))
    return -1;
  if (rt_event_record(b, e1) || rt_event_elapsed(b, e0, e1, &f))
    return snprintf(note, cap, "%s", backend_error(b)), -1;
  *ms = f;
  return 0;
}

static void time_variant(Backend *b, const TuneOps *ops, TuneVariant *v, int bi,
                         const TuneOptions *o, bool never_prune, double *best, RtEvent *e0,
                         RtEvent *e1) {
  v->ms[bi] = -1;
  char note[sizeof v->note];
  double first, t[64];
  if (ops->bind(ops->ctx, v, bi, note, sizeof note) ||
      timed_run(b, ops, v, e0, e1, &first, note, sizeof note)) {
    v->state = TUNE_BROKEN;
    snprintf(v->note, sizeof v->note, "%s", note);
    return;
  }
  if (isfinite(*best) && first > o->prune * *best && !never_prune) {
    v->pruned[bi] = true;
    return;
  }
  for (int w = 1; w < o->warmup; w++)
    if (timed_run(b, ops, v, e0, e1, &t[0], note, sizeof note)) {
      v->state = TUNE_BROKEN;
      snprintf(v->note, sizeof v->note, "%s", note);
      return;
    }
  int reps = o->reps < 1 ? 1 : o->reps > 63 ? 63 : o->reps;
  if (first > o->slow_ms && reps > 3)
    reps = 3;
  for (int r = 0; r < reps; r++)
    if (timed_run(b, ops, v, e0, e1, &t[r], note, sizeof note)) {
      v->state = TUNE_BROKEN;
      snprintf(v->note, sizeof v->note, "%s", note);
      return;
    }
  v->ms[bi] = tune_median(t, reps);
  if (v->ms[bi] < *best)
    *best = v->ms[bi];
}

int tune_sweep(Backend *b, const TuneOps *ops, TuneVariant *v, int nv, int nbuckets,
               const TuneOptions *o, char *err, size_t cap) {
  TuneOptions defaults;
  if (!o) {
    tune_options_default(&defaults);
    o = &defaults;
  }
  if (nbuckets > TUNE_MAX_BUCKETS) {
    snprintf(err, cap, "at most %d shape buckets", TUNE_MAX_BUCKETS);
    return -1;
  }
  for (int i = 0; i < nv; i++) {
    for (int j = 0; j < TUNE_MAX_BUCKETS; j++)
      v[i].ms[j] = -1, v[i].pruned[j] = false;
    if (v[i].state != TUNE_OK)
      continue;
    char note[sizeof v->note] = "";
    int rc = ops->check(ops->ctx, &v[i], &v[i].check_err, note, sizeof note);
    if (rc) {
      v[i].state = rc > 0 ? TUNE_WRONG : TUNE_BROKEN;
      snprintf(v[i].note, sizeof v[i].note, "%s", note);
    }
    if (o->progress)
      fprintf(o->progress, "  check rows=%-2d warps=%-2d %s%s%s\n", v[i].tile.rows,
              v[i].tile.warps, rc ? "FAILED" : "ok", rc ? ": " : "", rc ? note : "");
  }
  RtEvent *e0 = NULL, *e1 = NULL;
  if (rt_event_create(b, &e0) || rt_event_create(b, &e1)) {
    snprintf(err, cap, "%s", backend_error(b));
    rt_event_destroy(b, e0);
    return -1;
  }
  int rc = 0;
  for (int bi = 0; bi < nbuckets && !rc; bi++) {
    if (ops->prepare(ops->ctx, bi, err, cap)) {
      rc = -1;
      break;
    }
    double best = INFINITY;
    for (int k = -1; k < nv; k++) {
      int i = k < 0 ? o->first : k;
      if (i < 0 || i >= nv || (k >= 0 && i == o->first) || v[i].state != TUNE_OK)
        continue;
      time_variant(b, ops, &v[i], bi, o, i == o->first, &best, e0, e1);
      if (o->progress && v[i].state == TUNE_OK)
        fprintf(o->progress, "  time  rows=%-2d warps=%-2d bucket %d: %s%.4g ms\n",
                v[i].tile.rows, v[i].tile.warps, bi, v[i].pruned[bi] ? "pruned, > " : "",
                v[i].pruned[bi] ? o->prune * best : v[i].ms[bi]);
    }
  }
  rt_event_destroy(b, e0);
  rt_event_destroy(b, e1);
  return rc;
}

int tune_best(const TuneVariant *v, int nv, int bi) {
  int best = -1;
  for (int i = 0; i < nv; i++)
    if (v[i].state == TUNE_OK && v[i].ms[bi] >= 0 && (best < 0 || v[i].ms[bi] < v[best].ms[bi]))
      best = i;
  return best;
}

void tune_print_table(FILE *f, const TuneVariant *v, int nv, const int *bucket_n, int nbuckets,
                      int default_index) {
  int best[TUNE_MAX_BUCKETS];
  for (int b = 0; b < nbuckets; b++)
    best[b] = tune_best(v, nv, b);
  fprintf(f, "  %-5s %-5s  %-17s", "rows", "warps", "check (max err)");
  for (int b = 0; b < nbuckets; b++) {
    char h[32];
    snprintf(h, sizeof h, "n=%d ms", bucket_n[b]);
    fprintf(f, "  %12s", h);
  }
  fputc('\n', f);
  for (int i = 0; i < nv; i++) {
    char check[64];
    if (v[i].state == TUNE_OK)
      snprintf(check, sizeof check, "ok (%.1e)", v[i].check_err);
    else
      snprintf(check, sizeof check, "%s", v[i].state == TUNE_WRONG ? "WRONG" : "BROKEN");
    fprintf(f, "  %-5d %-5d  %-17s", v[i].tile.rows, v[i].tile.warps, check);
    for (int b = 0; b < nbuckets; b++) {
      char cell[32];
      if (v[i].state != TUNE_OK)
        snprintf(cell, sizeof cell, "-");
      else if (v[i].pruned[b])
        snprintf(cell, sizeof cell, "pruned");
      else
        snprintf(cell, sizeof cell, "%.3f%s", v[i].ms[b], i == best[b] ? " *" : "  ");
      fprintf(f, "  %12s", cell);
    }
    if (i == default_index)
      fputs("  (default)", f);
    if (v[i].state != TUNE_OK && v[i].note[0])
      fprintf(f, "  %s", v[i].note);
    fputc('\n', f);
  }
  for (int b = 0; b < nbuckets; b++) {
    if (best[b] < 0) {
      fprintf(f, "n=%d: no variant passed\n", bucket_n[b]);
      continue;
    }
    const TuneVariant *w = &v[best[b]];
    fprintf(f, "n=%d: best rows=%d warps=%d, %.3f ms", bucket_n[b], w->tile.rows, w->tile.warps,
            w->ms[b]);
    if (default_index >= 0 && v[default_index].state == TUNE_OK && v[default_index].ms[b] > 0)
      fprintf(f, " (default rows=%d warps=%d: %.3f ms, %.2fx)", v[default_index].tile.rows,
              v[default_index].tile.warps, v[default_index].ms[b],
              v[default_index].ms[b] / w->ms[b]);
    fputc('\n', f);
  }
}
