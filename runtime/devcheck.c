/* crisp-devcheck: runs precompiled kernels (PTX + manifest from crispc) on a device
 * and checks them against the double-precision reference, tunes them, and times
 * them; the GPU half of scripts/device-check.sh. The runtime-only build (no LLVM,
 * as on the GPU machines) runs PTX on cuda; a full build also compiles the
 * manifests' specs for --device cpu.
 *
 *   crisp-devcheck [--device auto|cpu|cuda] [--threads N] [--seed S] COMMAND ...
 *     info                         the device
 *     gemm                         sgemm (transposes, strided batched) vs a double reference
 *     check DIR...                 every X.manifest.json (+ X.ptx) in each DIR, several shapes
 *     tune DIR [--db F] [--n L]    the autotuner over the tile variants in DIR (one spec)
 *     bench DIR... [--db F] [--n L] [--json F]
 *                                  each DIR's forward kernel at B=16 H=12 (the tuned tile
 *                                  when the database has one), median of repeats
 *     train FILE... [--n L] [--json F] each X.manifest.json's select + forward + backward
 *                                  kernels as one training call (fused QKV, dropout) vs
 *                                  the reference, then forward and backward timed
 * Exit status: 0 all passed, 1 a check failed or the device failed, 2 usage.
 *
 * This file is the command line; the commands are in devcheck_kernels.c (check,
 * tune, bench), devcheck_gemm.c, devcheck_train.c, and the variants are loaded by
 * devcheck_load.c (shared through devcheck.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "devcheck.h"

static const char usage[] =
    "usage: crisp-devcheck [--device auto|cpu|cuda] [--threads N] [--seed S] COMMAND ...\n"
    "  info                        describe the device\n"
    "  gemm                        sgemm against a double-precision reference\n"
    "  check DIR...                every X.manifest.json (+ X.ptx) in each DIR against the reference\n"
    "  tune DIR [--db F] [--n L]   the autotuner over the tile variants in DIR\n"
    "  bench DIR... [--db F] [--n L] [--json F]   time each DIR's forward kernel\n"
    "  train FILE... [--n L] [--json F]   select + forward + backward of each manifest vs the\n"
    "                              reference, then timed at B=16 H=12\n";

/* ---- command line ---- */

/* A whole decimal number in [lo, hi] (no sign, no trailing text): atoi and strtoull
 * read "abc" as 0 and "-1" as a huge seed, and a negative --reps made the bench's
 * median NaN. 0, or -1. */
static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out) {
  if (!s || *s < '0' || *s > '9')
    return -1;
  errno = 0;
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end || v < lo || v > hi)
    return -1;
  *out = v;
  return 0;
}

/* --threads, --reps: an int in [lo, hi], or a usage message (-1). */
static int int_flag(const char *flag, const char *val, int lo, int hi, int *out) {
  uint64_t v;
  if (parse_u64(val, (uint64_t)lo, (uint64_t)hi, &v)) {
    fprintf(stderr, "crisp-devcheck: %s %s: expected a whole number from %d to %d\n", flag, val,
            lo, hi);
    return -1;
  }
  *out = (int)v;
  return 0;
}

static int parse_list(const char *s, int *out, int *n) {
  *n = 0;
  while (*s) {
    if (*n == TUNE_MAX_BUCKETS)
      return -1;   /* more lengths than buckets: not silently dropped */
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || v < 1 || v > 1 << 20)
      return -1;
    out[(*n)++] = (int)v;
    s = *end == ',' ? end + 1 : end;
    if (*end && *end != ',')
      return -1;
  }
  return *n ? 0 : -1;
}

static int train_command(Backend *b, const char *const *files, int n, const Opts *o) {
  FILE *json = o->json ? fopen(o->json, "w") : NULL;
  if (o->json && !json) {
    fprintf(stderr, "crisp-devcheck: cannot write %s\n", o->json);
    return 1;
  }
  int failures = 0;
  for (int i = 0; i < n; i++)
    if (train_check_file(b, files[i], o, json, &failures))
      break;   /* the device failed */
  if (json)
    fclose(json);
  printf("train: %s (%d failure%s)\n", failures ? "FAILED" : "all passed", failures,
         failures == 1 ? "" : "s");
  return failures ? 1 : 0;
}

int main(int argc, char **argv) {
  Opts o = {.device = "auto", .seed = (uint64_t)time(NULL)};
  const char *env = getenv("CRISP_SEED");
  if (env && parse_u64(env, 0, UINT64_MAX, &o.seed)) {
    fprintf(stderr, "crisp-devcheck: CRISP_SEED=%.40s: expected a whole number\n", env);
    return 2;
  }
  const char *cmd = NULL;
  const char *pos[64];
  int npos = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      fputs(usage, stdout);
      return 0;
    } else if (!strcmp(a, "--version")) {
      printf("crisp-devcheck (crisp runtime%s)\n",
#ifdef CRISP_DEVCHECK_JIT
             ", with the JIT"
#else
             ", runtime-only"
#endif
      );
      return 0;
    }
    bool takes = !strcmp(a, "--device") || !strcmp(a, "--threads") || !strcmp(a, "--seed") ||
                 !strcmp(a, "--db") || !strcmp(a, "--json") || !strcmp(a, "--n") ||
                 !strcmp(a, "--reps");
    if (takes && !val) {
      fprintf(stderr, "crisp-devcheck: %s needs a value\n", a);
      return 2;
    }
    if (!strcmp(a, "--device")) o.device = val;
    else if (!strcmp(a, "--threads")) {
      if (int_flag(a, val, 1, 256, &o.threads))
        return 2;
    } else if (!strcmp(a, "--seed")) {
      if (parse_u64(val, 0, UINT64_MAX, &o.seed)) {
        fprintf(stderr, "crisp-devcheck: --seed %s: expected a whole number\n", val);
        return 2;
      }
    }
    else if (!strcmp(a, "--db")) o.db = val;
    else if (!strcmp(a, "--json")) o.json = val;
    else if (!strcmp(a, "--reps")) {
      if (int_flag(a, val, 1, 63, &o.reps))
        return 2;
    }
    else if (!strcmp(a, "--n")) {
      if (parse_list(val, o.n, &o.nn)) {
        fprintf(stderr, "crisp-devcheck: --n wants 1 to %d lengths like 128,512\n", TUNE_MAX_BUCKETS);
        return 2;
      }
    } else if (a[0] == '-') {
      fprintf(stderr, "crisp-devcheck: unknown option %s\n%s", a, usage);
      return 2;
    } else if (!cmd) {
      cmd = a;
    } else if (npos < 64) {
      pos[npos++] = a;
    } else {
      fprintf(stderr, "crisp-devcheck: more than 64 folders or files\n");
      return 2;
    }
    if (takes)
      i++;
  }
  if (!cmd) {
    fputs(usage, stderr);
    return 2;
  }
  if (backend_check_name(o.device)) {
    fprintf(stderr, "crisp-devcheck: unknown device '%s' (auto, cpu or cuda)\n", o.device);
    return 2;
  }
  bool known = !strcmp(cmd, "info") || !strcmp(cmd, "gemm") || !strcmp(cmd, "check") ||
               !strcmp(cmd, "tune") || !strcmp(cmd, "bench") || !strcmp(cmd, "train");
  bool needs_pos = !strcmp(cmd, "check") || !strcmp(cmd, "bench") || !strcmp(cmd, "train");
  if (!known || (needs_pos && npos < 1) ||
      (!strcmp(cmd, "tune") && npos != 1)) {
    fprintf(stderr, "crisp-devcheck: bad command line\n%s", usage);
    return 2;
  }
  char err[1024];
  BackendOptions bo = {.threads = o.threads};
  Backend *b = backend_open(o.device, &bo, err, sizeof err);
  if (!b) {
    fprintf(stderr, "crisp-devcheck: %s\n", err);
    return 1;
  }
  char desc[512];
  backend_describe(b, desc, sizeof desc);
  printf("device: %s\nseed %" PRIu64 " (set CRISP_SEED or --seed to repeat)\n", desc, o.seed);
  int rc = 0;
  if (!strcmp(cmd, "gemm")) {
    rc = gemm_check(b, &o);
  } else if (!strcmp(cmd, "check")) {
    int failures = 0;
    for (int i = 0; i < npos; i++)
      if (check_dir(b, pos[i], &o, &failures))
        break;   /* the device failed: later kernels would only repeat it */
    printf("check: %s (%d failure%s)\n", failures ? "FAILED" : "all passed", failures,
           failures == 1 ? "" : "s");
    rc = failures ? 1 : 0;
  } else if (!strcmp(cmd, "tune")) {
    rc = tune_dir(b, pos[0], &o);
  } else if (!strcmp(cmd, "train")) {
    rc = train_command(b, pos, npos, &o);
  } else if (!strcmp(cmd, "bench")) {
    TuneDb db = {0};
    char path[1100];
    if (o.db)
      snprintf(path, sizeof path, "%s", o.db);
    else if (tune_db_default_path(path, sizeof path))
      path[0] = 0;
    /* refused, not timed with default tiles: the bench reports the tuned tiles' speed */
    if (path[0] && tune_db_load(&db, path, err, sizeof err)) {
      fprintf(stderr, "crisp-devcheck: tuning database: %s\n", err);
      backend_close(b);
      return 1;
    }
    FILE *json = o.json ? fopen(o.json, "w") : NULL;
    if (o.json && !json) {
      fprintf(stderr, "crisp-devcheck: cannot write %s\n", o.json);
      rc = 1;
    }
    for (int i = 0; i < npos && !rc; i++)
      rc = bench_dir(b, pos[i], &o, &db, json);
    if (json)
      fclose(json);
    tune_db_free(&db);
  }
  backend_close(b);
  return rc;
}
