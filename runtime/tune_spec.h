/* tune_spec.h: `crispc SPEC --tune` as a library call. Opens the device, compiles
 * every legal tile of the spec's forward kernel for it (in parallel, through the
 * kernel cache), and runs the autotuner (attn_tune.h): check, time, print the
 * table, record the winners in the tuning database. */
#ifndef CRISP_RT_TUNE_SPEC_H
#define CRISP_RT_TUNE_SPEC_H

#include <stdbool.h>
#include <stdio.h>

#include "attn_tune.h"

typedef struct RtTuneRequest {
  const Spec *spec;
  const char *device;        /* auto | cpu | cuda (NULL: auto) */
  int threads;               /* cpu backend pool (0: one per core) */
  int compile_threads;       /* 0: one per core */
  int n[TUNE_MAX_BUCKETS];   /* lengths to tune for (nn = 0: 128 and 512) */
  int nn;
  int B, H;                  /* 0: 16 and 12 */
  int reps;                  /* 0: the default */
  const char *db_path;       /* NULL: the default database; "": do not save */
  bool progress;             /* a line per check and timing on stderr */
} RtTuneRequest;

/* 0, or -1 with err (a device that cannot be opened, no legal tile, ...). */
int rt_tune_spec(const RtTuneRequest *r, FILE *out, char *err, size_t cap);

#endif
