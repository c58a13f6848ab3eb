/* devcheck.h: what crisp-devcheck's files share (devcheck.c: the command line and
 * info; devcheck_load.c: the variants; devcheck_kernels.c: check, tune, bench;
 * devcheck_gemm.c: gemm; devcheck_train.c: train). */
#ifndef CRISP_RT_DEVCHECK_H
#define CRISP_RT_DEVCHECK_H

#include <stdint.h>
#include <stdio.h>

#include "backend.h"
#include "rt_manifest.h"
#include "tune.h"

typedef struct {
  const char *device;
  int threads;
  uint64_t seed;
  const char *db;
  const char *json;
  int n[TUNE_MAX_BUCKETS];
  int nn;
  int reps;
} Opts;

/* One precompiled variant: X.manifest.json (+ X.ptx on cuda; compiled by the JIT on
 * cpu in the full build). */
typedef struct {
  char path[1024];           /* X.manifest.json */
  RtManifest man;
  bool parsed;               /* man is valid */
  RtModule *mod;             /* NULL: failed to load (err says why) */
  char err[4400];
} Variant;

/* Parses v->path and loads its module. 0, or -1 with err. */
int load_variant(Backend *b, Variant *v, char *err, size_t cap);
void free_variants(Backend *b, Variant *v, int n);

/* Loads every variant in dir. A variant that fails keeps mod = NULL and its reason
 * in err; returns -1 (err) only if dir has no manifest or none could be parsed.
 * *spec points to the first parsed manifest's spec. */
int load_dir(Backend *b, const char *dir, Variant **out, int *count, const Spec **spec,
             char *err, size_t cap);
/* The forward kernel's name in v's module, written into buf. */
const char *forward_name(const Variant *v, char *buf, size_t cap);

/* The commands. check_dir counts failures into *failures and returns -1 only when
 * the device itself failed (0 otherwise); the others return 0, or 1 when a check
 * or the device failed. */
int check_dir(Backend *b, const char *dir, const Opts *o, int *failures);
int tune_dir(Backend *b, const char *dir, const Opts *o);
int bench_dir(Backend *b, const char *dir, const Opts *o, const TuneDb *db, FILE *json);
int gemm_check(Backend *b, const Opts *o);

/* `train FILE...`: each manifest's select + forward + backward kernels as one
 * training call, against the reference on several shapes, then timed forward and
 * backward at B=16 H=12 (json: one line per timing). Counts failures; returns -1
 * when the device itself failed. */
int train_check_file(Backend *b, const char *manifest, const Opts *o, FILE *json,
                     int *failures);

#endif
