/* The autotuner on tiny search spaces:
 *   - the legal tiles of a spec (and the shared-memory limit);
 *   - a sweep over fake variants made deliberately slow picks the fastest, never a
 *     wrong one however fast, prunes the hopeless, times the default first;
 *   - the database round-trips through JSON, replaces by key, rejects garbage;
 *   - tune_tile_for (what JIT compilation consults): the database's tile for the
 *     bucket, else the nearest tuned bucket, else the default; an explicit spec
 *     tile wins; another device's entry is ignored;
 *   - the real thing on two JIT-compiled tiles: the table and the database. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../runtime/attn_tune.h"
#include "../runtime/compile.h"
#include "check.h"

static char err[4096];

static void test_legal(void) {
  Spec s;
  spec_defaults(&s);
  TileConfig t[64];
  int n = tune_legal_tiles(&s, t, 64);
  CHECK(n == 25, "default spec: %d legal tiles (expected 25)", n);
  int bad = 0;
  for (int i = 0; i < n && i < 64; i++)
    bad += t[i].rows % t[i].warps != 0 || tile_check(&s, &t[i], err, sizeof err) != 0;
  CHECK(bad == 0, "%d illegal tiles listed", bad);
  s.max_seq = 8192;   /* a 32 KiB score slot per warp, beside a key tile: one warp only */
  n = tune_legal_tiles(&s, t, 64);
  CHECK(n == 7, "max_seq 8192: %d legal tiles (expected 7, one warp each)", n);
  for (int i = 0; i < n; i++)
    CHECK(t[i].warps == 1, "warps %d with max_seq 8192", t[i].warps);
}

/* ---- fake variants: user points to a Fake ---- */
typedef struct {
  int sleep_us;   /* per launch */
  bool wrong;     /* fails its check */
  int runs;
} Fake;

static int fake_check(void *ctx, TuneVariant *v, double *e, char *note, size_t cap) {
  (void)ctx;
  Fake *f = v->user;
  *e = f->wrong ? 0.5 : 1e-7;
  if (f->wrong)
    snprintf(note, cap, "o differs by 0.5");
  return f->wrong ? 1 : 0;
}
static int fake_prepare(void *ctx, int bi, char *e, size_t cap) {
  (void)ctx, (void)bi, (void)e, (void)cap;
  return 0;
}
static int fake_bind(void *ctx, TuneVariant *v, int bi, char *note, size_t cap) {
  (void)ctx, (void)v, (void)bi, (void)note, (void)cap;
  return 0;
}
static int fake_run(void *ctx, TuneVariant *v, char *note, size_t cap) {
  (void)ctx, (void)note, (void)cap;
  Fake *f = v->user;
  f->runs++;
  usleep((useconds_t)f->sleep_us);
  return 0;
}

static void test_sweep(Backend *b) {
  /* the wrong one is the fastest; index 3 is the fastest correct one; 4 hopeless */
  Fake fakes[6] = {{6000, false, 0}, {4000, false, 0}, {100, true, 0},
                   {1000, false, 0}, {60000, false, 0}, {3000, false, 0}};
  TuneVariant v[6];
  memset(v, 0, sizeof v);
  for (int i = 0; i < 6; i++) {
    v[i].tile = (TileConfig){1 << i, 1, SCHED_WARP};
    v[i].user = &fakes[i];
  }
  TuneOps ops = {NULL, fake_check, fake_prepare, fake_bind, fake_run};
  TuneOptions o;
  tune_options_default(&o);
  o.warmup = 1;
  o.reps = 3;
  o.first = 0;   /* the "default": timed first, never pruned */
  CHECK(!tune_sweep(b, &ops, v, 6, 2, &o, err, sizeof err), "sweep: %s", err);
  for (int bi = 0; bi < 2; bi++)
    CHECK(tune_best(v, 6, bi) == 3, "bucket %d: best is %d (expected 3)", bi, tune_best(v, 6, bi));
  CHECK(v[2].state == TUNE_WRONG && fakes[2].runs == 0, "the wrong variant was timed");
  CHECK(v[4].pruned[0] && v[4].pruned[1] && fakes[4].runs == 2, "slow variant not pruned "
        "(%d runs)", fakes[4].runs);
  CHECK(!v[0].pruned[0] && v[0].ms[0] >= 5.0, "the default was pruned or mistimed (%.3f ms)",
        v[0].ms[0]);
  CHECK(v[3].ms[0] >= 0.9 && v[3].ms[0] < 5.0, "fastest measured %.3f ms", v[3].ms[0]);
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  int ns[2] = {128, 512};
  tune_print_table(f, v, 6, ns, 2, 0);
  fclose(f);
  printf("%s", text);
  CHECK(strstr(text, "WRONG") && strstr(text, "pruned") && strstr(text, "(default)") &&
            strstr(text, "n=128: best rows=8 warps=1") && strstr(text, "n=512: best rows=8 "),
        "table:\n%s", text);
  free(text);
  /* a backend failure in a variant's run marks it broken, the sweep goes on */
  double m[] = {3, 1, 2};
  CHECK(tune_median(m, 3) == 2, "median");
  double m4[] = {4, 1, 3, 2};
  CHECK(tune_median(m4, 4) == 2.5, "median of 4");
}

static TuneEntry entry(const char *kernel, int bucket, const char *device, int rows, int warps,
                       double ms) {
  TuneEntry e;
  memset(&e, 0, sizeof e);
  snprintf(e.key.kernel, sizeof e.key.kernel, "%s", kernel);
  snprintf(e.key.spec_hash, sizeof e.key.spec_hash, "00000000deadbeef");
  e.key.bucket = bucket;
  snprintf(e.key.device, sizeof e.key.device, "%s", device);
  snprintf(e.key.driver, sizeof e.key.driver, "host");
  e.tile = (TileConfig){rows, warps, SCHED_WARP};
  e.ms = ms;
  e.default_ms = 2 * ms;
  e.B = 16, e.H = 12, e.N = bucket, e.variants = 25;
  snprintf(e.tuned_at, sizeof e.tuned_at, "2026-11-28T00:00:00Z");
  return e;
}

static void test_db(const char *path) {
  TuneDb db = {0};
  TuneEntry a = entry("x_attn_fwd", 128, "cpu \"quoted\" x2", 16, 2, 1.25);
  TuneEntry b = entry("x_attn_fwd", 512, "cpu \"quoted\" x2", 64, 8, 9.5);
  TuneEntry c = entry("y_attn_fwd", 128, "NVIDIA H100", 8, 4, 0.0625);
  CHECK(!tune_db_put(&db, &a) && !tune_db_put(&db, &b) && !tune_db_put(&db, &c) && db.n == 3,
        "put");
  TuneEntry a2 = a;
  a2.tile = (TileConfig){32, 4, SCHED_WARP};
  CHECK(!tune_db_put(&db, &a2) && db.n == 3 && tune_db_find(&db, &a.key)->tile.rows == 32,
        "put replaces by key");
  CHECK(!tune_db_save(&db, path, err, sizeof err), "save: %s", err);
  TuneDb back;
  CHECK(!tune_db_load(&back, path, err, sizeof err) && back.n == 3, "load: %s", err);
  for (int i = 0; i < db.n && i < back.n; i++) {
    const TuneEntry *x = &db.e[i], *y = tune_db_find(&back, &x->key);
    CHECK(y && y->tile.rows == x->tile.rows && y->tile.warps == x->tile.warps && y->ms == x->ms &&
              y->default_ms == x->default_ms && y->B == x->B && y->N == x->N &&
              y->variants == x->variants && !strcmp(y->tuned_at, x->tuned_at),
          "entry %d did not round-trip", i);
  }
  tune_db_free(&back);
  tune_db_free(&db);
  /* missing: empty; garbage: an error naming the file */
  CHECK(!tune_db_load(&back, "/tmp/crisp-no-such-tune.json", err, sizeof err) && back.n == 0,
        "missing database");
  /* each fault named: the file, then where (line:col, or the entry and its field) */
#define ENTRY(fields) "{\"format\": 1, \"entries\": [{\"kernel\": \"k\", \"spec_hash\": \"0\", " \
                      "\"device\": \"d\", \"driver\": \"x\", " fields "}]}"
#define GOOD "\"bucket\": 64, \"tile\": {\"rows\": 8, \"warps\": 4}, \"ms\": 1"
  const struct { const char *text, *want; } bad[] = {
      {"not json", ":1:1: invalid JSON"},
      {"{\"format\": 1,\n \"entries\": [}", ":2:14: invalid JSON"},
      {"{\"format\": 1, \"entries\": []} {}", ":1:30: unexpected text after the JSON value"},
      {"[1]", "not a crisp tuning database"},
      {"{\"format\": 2, \"entries\": []}", "not a crisp tuning database"},
      {"{\"format\": 1, \"entries\": [{\"kernel\": 1}]}", "entry 0: kernel: missing or not a string"},
      {"{\"format\": 1, \"entries\": [7]}", "entry 0: entry: not an object"},
      {ENTRY("\"bucket\": 0, \"tile\": {\"rows\": 1, \"warps\": 1}, \"ms\": 1"), "entry 0: bucket:"},
      {ENTRY("\"bucket\": 100, \"tile\": {\"rows\": 1, \"warps\": 1}, \"ms\": 1"),
       "entry 0: bucket: not a power of two"},
      {ENTRY("\"bucket\": 64, \"tile\": {\"rows\": 12, \"warps\": 4}, \"ms\": 1"),
       "entry 0: tile.rows: not a power of two from 1 to 64"},
      {ENTRY("\"bucket\": 64, \"tile\": {\"rows\": -8, \"warps\": 1}, \"ms\": 1"), "tile.rows"},
      {ENTRY("\"bucket\": 64, \"tile\": {\"rows\": 1048576, \"warps\": 1}, \"ms\": 1"), "tile.rows"},
      {ENTRY("\"bucket\": 64, \"tile\": {\"rows\": 8, \"warps\": 3}, \"ms\": 1"),
       "entry 0: tile.warps: does not divide tile.rows"},
      {ENTRY("\"bucket\": 64, \"tile\": {\"rows\": 64, \"warps\": 32}, \"ms\": 1"),
       "tile.warps: not a whole number from 1 to 16"},
      {ENTRY("\"bucket\": 64, \"tile\": {\"rows\": 8, \"warps\": \"4\"}, \"ms\": 1"), "tile.warps"},
      {ENTRY("\"bucket\": 64, \"tile\": [8, 4], \"ms\": 1"), "entry 0: tile: missing or not an object"},
      {ENTRY("\"bucket\": 64, \"tile\": {\"rows\": 8, \"warps\": 4}, \"ms\": 1e999"),
       "entry 0: ms: missing or not a finite number"},
      {ENTRY("\"bucket\": 64, \"tile\": {\"rows\": 8, \"warps\": 4}, \"ms\": -1"), "entry 0: ms:"},
      {ENTRY(GOOD ", \"shape\": \"16x12\""), "entry 0: shape: not an object"},
      {ENTRY(GOOD ", \"shape\": {\"B\": -1}"), "entry 0: shape.B:"},
      {ENTRY(GOOD ", \"variants\": \"many\""), "entry 0: variants:"},
      {"{\"format\": 1, \"entries\": [{\"kernel\": \"k\", \"spec_hash\": \"0\", \"device\": \"d\", "
       "\"driver\": \"x\", " GOOD "}, {\"kernel\": \"k\"}]}",
       "entry 1: spec_hash: missing"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    FILE *f = fopen(path, "w");
    fputs(bad[i].text, f);
    fclose(f);
    err[0] = 0;
    CHECK(tune_db_load(&back, path, err, sizeof err) == -1 && strstr(err, path) &&
          strstr(err, bad[i].want), "bad database %zu: want '%s', got '%s'", i, bad[i].want, err);
  }
  /* unknown keys: ignored (a later crisp may add informative ones) */
  FILE *f = fopen(path, "w");
  fputs(ENTRY(GOOD ", \"note\": \"hand-tuned\""), f);
  fclose(f);
  CHECK(!tune_db_load(&back, path, err, sizeof err) && back.n == 1 && back.e[0].tile.rows == 8,
        "an unknown key refused: %s", err);
  tune_db_free(&back);
#undef ENTRY
#undef GOOD
  unlink(path);
}

static void test_tile_for(Backend *b) {
  Spec s;
  spec_defaults(&s);
  snprintf(s.name, sizeof s.name, "tt");
  TuneDb db = {0};
  TileConfig def = tile_resolve(&s, TUNE_CPU);
  bool from = true;
  TileConfig t = tune_tile_for(&db, &s, b, 100, &from);
  CHECK(!from && t.rows == def.rows && t.warps == def.warps, "empty database: default");
  TuneEntry e;
  memset(&e, 0, sizeof e);
  tune_key(&e.key, &s, b, 128);
  CHECK(e.key.bucket == 128 && tune_bucket(100) == 128 && tune_bucket(129) == 256 &&
        tune_bucket(1) == 1, "buckets");
  e.tile = (TileConfig){4, 2, SCHED_WARP};
  e.ms = 1;
  tune_db_put(&db, &e);
  t = tune_tile_for(&db, &s, b, 100, &from);
  CHECK(from && t.rows == 4 && t.warps == 2, "bucket 128 -> 4x2");
  t = tune_tile_for(&db, &s, b, 2000, &from);
  CHECK(from && t.rows == 4, "nearest tuned bucket");
  tune_key(&e.key, &s, b, 512);
  e.tile = (TileConfig){32, 8, SCHED_WARP};
  tune_db_put(&db, &e);
  t = tune_tile_for(&db, &s, b, 2000, &from);
  CHECK(from && t.rows == 32, "nearest of two buckets (512 for 2048)");
  t = tune_tile_for(&db, &s, b, 200, &from);
  CHECK(from && t.rows == 4, "nearest of two buckets (128 for 256)");
  Spec other = s;
  other.sparsity = 0.3;   /* another spec hash: not this entry */
  t = tune_tile_for(&db, &other, b, 128, &from);
  CHECK(!from, "another spec used this spec's entry");
  Spec fixed = s;
  fixed.tile = (TileSpec){false, 2, 64, 1};
  t = tune_tile_for(&db, &fixed, b, 128, &from);
  CHECK(!from && t.rows == 2 && t.warps == 1, "an explicit tile must win");
  for (int i = 0; i < db.n; i++)
    snprintf(db.e[i].key.device, sizeof db.e[i].key.device, "another machine");
  t = tune_tile_for(&db, &s, b, 128, &from);
  CHECK(!from && t.rows == def.rows, "another device's entry used");
  tune_db_free(&db);
}

/* Two real tiles through the JIT: check, time, table, database; then JIT
 * compilation consults the database. */
static void test_real(Backend *b, const char *path) {
  Spec s;
  spec_defaults(&s);
  snprintf(s.name, sizeof s.name, "tiny");
  s.head_dim = 16;
  s.max_seq = 64;
  s.sparsity = 0.5;
  TileConfig tiles[2] = {{16, 1, SCHED_WARP}, {2, 2, SCHED_WARP}};
  TuneVariant v[2];
  memset(v, 0, sizeof v);
  for (int i = 0; i < 2; i++) {
    v[i].tile = tiles[i];
    RtModule *m = NULL;
    CHECK(!rt_compile_load(b, &s, &tiles[i], NULL, &m, err, sizeof err), "compile: %s", err);
    v[i].user = m;
  }
  AttnTuneConfig cfg;
  attn_tune_config_default(&cfg, &s);
  CHECK(cfg.nn == 1 && cfg.n[0] == 64 && cfg.check_N == 64, "defaults clamp to max_seq");
  cfg.B = 2, cfg.H = 2, cfg.n[0] = 32, cfg.n[1] = 64, cfg.nn = 2;
  cfg.opt.reps = 3;
  cfg.db_path = path;
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  CHECK(!attn_tune(b, &s, v, 2, 0, &cfg, f, err, sizeof err), "attn_tune: %s", err);
  fclose(f);
  printf("%s", text);
  CHECK(v[0].state == TUNE_OK && v[1].state == TUNE_OK, "a real variant failed its check");
  CHECK(strstr(text, "n=32 ms") && strstr(text, "n=64: best") && strstr(text, path),
        "table:\n%s", text);
  free(text);
  TuneDb db;
  CHECK(!tune_db_load(&db, path, err, sizeof err) && db.n == 2, "database: %s", err);
  int best = tune_best(v, 2, 1);
  TileConfig used;
  RtModule *m = NULL;
  CHECK(!rt_compile_for(b, &s, 64, NULL, &db, &m, &used, err, sizeof err) && best >= 0 &&
            used.rows == v[best].tile.rows && used.warps == v[best].tile.warps &&
            m->manifest.tile_rows == used.rows,
        "rt_compile_for did not use the tuned tile");
  rt_module_unload(b, m);
  tune_db_free(&db);
  for (int i = 0; i < 2; i++)
    rt_module_unload(b, v[i].user);
  unlink(path);
}

int main(void) {
  char path[128];
  snprintf(path, sizeof path, "/tmp/crisp-test-tune-%d.json", (int)getpid());
  BackendOptions o = {.threads = 2};
  Backend *b = backend_open("cpu", &o, err, sizeof err);
  if (!b) {
    fprintf(stderr, "cpu backend: %s\n", err);
    return 1;
  }
  test_legal();
  test_sweep(b);
  test_db(path);
  test_tile_for(b);
  test_real(b, path);
  backend_close(b);
  return check_summary();
}
