/* tune.h: the autotuner's machinery and its database.
 *
 * A sweep takes variants (one per legal tile of a kernel), checks each against the
 * reference before timing it (a variant that fails never competes), then times it
 * at each shape bucket: warm-up launches, then the median of repeats, each
 * bracketed by backend events (device events on the GPU). A variant whose first
 * timed launch is over TuneOptions.prune times the best median so far is dropped
 * from that bucket early. The winners go to the tuning database, a JSON file keyed
 * by (kernel, spec hash, shape bucket, device, driver), which JIT compilation
 * consults (tune_tile_for). Tuning never changes results: it only picks among
 * variants that passed the check, and every run rebinds its inputs.
 *
 * The database: $CRISP_TUNE_DB, else <cache dir>/tune.json; written atomically.
 *   {"format": 1, "entries": [{"kernel": "crisp80_attn_fwd", "spec_hash": "...",
 *     "bucket": 128, "device": "...", "driver": "...", "tile": {"rows": 16, "warps": 1},
 *     "ms": 1.25, "default_ms": 1.5, "shape": {"B": 16, "H": 12, "N": 128},
 *     "variants": 25, "tuned_at": "2026-11-28T10:00:00Z"}]} */
#ifndef CRISP_RT_TUNE_H
#define CRISP_RT_TUNE_H

#include <stdbool.h>
#include <stdio.h>

#include "../templates/templates.h"
#include "backend.h"

/* ---- the database ---- */

typedef struct TuneKey {
  char kernel[96];
  char spec_hash[24];     /* spec_hash of the spec with tile = auto, hex */
  int bucket;             /* sequence-length bucket: the power of two >= N */
  char device[192];       /* Backend.device_key */
  char driver[64];        /* Backend.driver */
} TuneKey;

typedef struct TuneEntry {
  TuneKey key;
  TileConfig tile;
  double ms, default_ms;
  int B, H, N;
  int variants;
  char tuned_at[32];
} TuneEntry;

typedef struct TuneDb {
  TuneEntry *e;
  int n, cap;
} TuneDb;

/* $CRISP_TUNE_DB, else <cache dir>/tune.json. -1 if neither can be found. */
int tune_db_default_path(char *buf, size_t cap);
/* A missing file is an empty database; a malformed one is an error (-1, err). */
int tune_db_load(TuneDb *db, const char *path, char *err, size_t cap);
int tune_db_save(const TuneDb *db, const char *path, char *err, size_t cap);
void tune_db_free(TuneDb *db);
const TuneEntry *tune_db_find(const TuneDb *db, const TuneKey *k);
/* Inserts or replaces the entry with the same key. 0, or -1 out of memory. */
int tune_db_put(TuneDb *db, const TuneEntry *e);

int tune_bucket(int n);   /* smallest power of two >= n (>= 1) */
/* Fills the key of the attention forward kernel of s on backend b at length n. */
void tune_key(TuneKey *k, const Spec *s, const Backend *b, int n);

/* The tile JIT compilation should use for spec s on backend b at length n: the
 * spec's explicit tile; else the database's entry for n's bucket (or the nearest
 * tuned bucket of the same kernel, device and driver); else tile_resolve's default.
 * db may be NULL. *from_db (may be NULL) says whether the database decided. */
TileConfig tune_tile_for(const TuneDb *db, const Spec *s, const Backend *b, int n, bool *from_db);

/* Every legal tile for s: rows 1..64 (powers of two), warps dividing rows (1..16),
 * passing tile_check. Returns the count (at most cap written). */
int tune_legal_tiles(const Spec *s, TileConfig *out, int cap);

/* ---- the sweep ---- */

enum { TUNE_MAX_BUCKETS = 8 };

typedef enum { TUNE_OK, TUNE_BROKEN, TUNE_WRONG } TuneState;

typedef struct TuneVariant {
  TileConfig tile;
  void *user;                        /* the caller's (e.g. its RtModule) */
  TuneState state;                   /* BROKEN: did not build/load; WRONG: failed the check */
  char note[200];
  double check_err;
  double ms[TUNE_MAX_BUCKETS];       /* median; < 0: not timed (pruned or not OK) */
  bool pruned[TUNE_MAX_BUCKETS];
} TuneVariant;

typedef struct TuneOps {
  void *ctx;
  /* Checks v against the reference: 0 and *err_out if right; 1 if wrong (note set);
   * -1 if the backend failed (note set). */
  int (*check)(void *ctx, TuneVariant *v, double *err_out, char *note, size_t cap);
  /* Prepares timing inputs for bucket index i (for every variant). */
  int (*prepare)(void *ctx, int bucket_index, char *err, size_t cap);
  /* Binds v to the prepared inputs, once per bucket before its launches. */
  int (*bind)(void *ctx, TuneVariant *v, int bucket_index, char *note, size_t cap);
  /* One launch of v on the prepared inputs (may be asynchronous). */
  int (*run)(void *ctx, TuneVariant *v, char *note, size_t cap);
} TuneOps;

typedef struct TuneOptions {
  int warmup;        /* launches before timing (>= 1) */
  int reps;          /* timed launches; the median is kept */
  double prune;      /* drop a variant at a bucket when its first launch > prune x best */
  double slow_ms;    /* launches slower than this get at most 3 repeats */
  FILE *progress;    /* a line per variant, or NULL */
  int first;         /* this variant is timed first at every bucket and never pruned
                        (the default tile, so its time is known); -1: none */
} TuneOptions;

void tune_options_default(TuneOptions *o);

/* Checks and times nv variants at nbuckets buckets. Returns 0, or -1 (err) when the
 * backend itself fails; a variant's own failure only marks that variant. */
int tune_sweep(Backend *b, const TuneOps *ops, TuneVariant *v, int nv, int nbuckets,
               const TuneOptions *o, char *err, size_t cap);

/* Index of the fastest OK variant at bucket i, or -1. */
int tune_best(const TuneVariant *v, int nv, int bucket_index);

/* The table of what was tried: one row per variant, a column per bucket, the
 * winners marked, and the default variant's row labelled. */
void tune_print_table(FILE *f, const TuneVariant *v, int nv, const int *bucket_n, int nbuckets,
                      int default_index);

/* Median of n values (sorts them). */
double tune_median(double *x, int n);

#endif
