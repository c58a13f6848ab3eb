/* devcheck.h: what crisp-devcheck's commands share (devcheck.c: info, gemm, check,
 * tune, bench; devcheck_train.c: train). */
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

/* `train FILE...`: each manifest's select + forward + backward kernels as one
 * training call, against the reference on several shapes, then timed forward and
 * backward at B=16 H=12 (json: one line per timing). Counts failures; returns -1
 * when the device itself failed. */
int train_check_file(Backend *b, const char *manifest, const Opts *o, FILE *json,
                     int *failures);

#endif
