/* attn_tune.h: the autotuner applied to the attention forward kernel of a spec.
 *
 * The caller supplies one loaded module per tile (TuneVariant.user = RtModule *,
 * NULL for one that failed to build: it is listed as BROKEN), compiled by the JIT
 * (runtime/compile.h) or loaded from precompiled PTX (the GPU device check).
 * attn_tune checks every variant on a small padded shape against the reference,
 * times the survivors at each length bucket (B x H heads of N keys), prints the
 * table, and records the winners in the tuning database. */
#ifndef CRISP_RT_ATTN_TUNE_H
#define CRISP_RT_ATTN_TUNE_H

#include <stdint.h>
#include <stdio.h>

#include "tune.h"

typedef struct AttnTuneConfig {
  int B, H;                       /* timing shape: 16 x 12 (DistilBERT, batch 16) */
  int n[TUNE_MAX_BUCKETS];        /* timing lengths: 128 and 512 */
  int nn;
  int check_B, check_H, check_N;  /* check shape: 2 x 3 x min(77, max_seq), padded lengths */
  double sparsity;                /* run-time sparsity: the spec's */
  TuneOptions opt;
  const char *db_path;            /* NULL: tune_db_default_path; "": do not save */
  uint64_t seed;
} AttnTuneConfig;

void attn_tune_config_default(AttnTuneConfig *c, const Spec *s);

/* Returns 0 (the table printed to out, the database updated), or -1 with err. */
/* Reads the database that a tune would write (db: as AttnTuneConfig.db_path), so a
 * damaged one stops the run before compiling and timing rather than after, when its
 * results could not be stored. 0, or -1 with err naming the file and the fault. */
int attn_tune_db_check(const char *db, char *err, size_t cap);

int attn_tune(Backend *b, const Spec *s, TuneVariant *v, int nv, int default_index,
              const AttnTuneConfig *cfg, FILE *out, char *err, size_t cap);

#endif
