/* compile.h: from a spec to kernels loaded on a backend, through the on-disk cache.
 * This is the part of the runtime that needs LLVM (library crisp_runtime_jit).
 *
 *   rt_compile_artifact   spec + tile + target -> code (PTX, or a host object file)
 *                         + manifest JSON; from the cache, or compiled and stored
 *   rt_artifact_load      loads an artifact on a backend (host objects go into an
 *                         ORC LLJIT through its object layer; PTX to the driver)
 *   rt_compile_load       both, for the backend's own target
 *   rt_compile_for        the same with the tile chosen by the tuning database
 *   rt_compile_many       many tiles at once, on several threads (the autotuner)
 *
 * The cache key is the canonical spec, the tile, the target (for the host: CPU name
 * and features), crisp's version with a digest of the code generator's sources,
 * and LLVM's version; so a warm start compiles nothing and any change that could
 * change the code misses. rt_compile_count() counts compilations (cache misses
 * that lowered and generated code) in this process. Thread-safe except for loading,
 * which uses the backend (one thread at a time). */
#ifndef CRISP_RT_COMPILE_H
#define CRISP_RT_COMPILE_H

#include <stdbool.h>
#include <stddef.h>

#include "../compiler/target.h"
#include "../ir/passes.h"
#include "../templates/templates.h"
#include "backend.h"
#include "cache.h"
#include "tune.h"

long rt_compile_count(void);

typedef struct RtArtifact {
  Target target;
  char *code;               /* PTX text, or an ELF object for the host */
  size_t code_len;
  char *manifest;           /* JSON, see compiler/manifest.h */
  size_t manifest_len;
  bool cached;              /* came from the disk cache */
} RtArtifact;

/* The spec's kernels for tile t, verified, simplified and (unless MAP_NONE) mapped. */
int rt_build_module(const Spec *s, const TileConfig *t, MapTarget mt, Module *m, char *err,
                    size_t cap);

/* The cache key text of (spec, tile, target). */
void rt_cache_key(const Spec *s, const TileConfig *t, Target target, char *buf, size_t cap);

/* cache may be NULL (always compile). */
int rt_compile_artifact(const Spec *s, const TileConfig *t, Target target, RtCache *cache,
                        RtArtifact *out, char *err, size_t cap);
void rt_artifact_free(RtArtifact *a);
int rt_artifact_load(Backend *b, const RtArtifact *a, RtModule **out, char *err, size_t cap);

/* The code target a backend runs (host, sm_90, sm_80). */
int rt_backend_target(const Backend *b, Target *t, char *err, size_t cap);

int rt_compile_load(Backend *b, const Spec *s, const TileConfig *t, RtCache *cache,
                    RtModule **out, char *err, size_t cap);

/* Picks the tile with tune_tile_for(db, s, b, n) (db may be NULL: the default, or
 * the spec's explicit tile), then rt_compile_load. *used (may be NULL) gets it. */
int rt_compile_for(Backend *b, const Spec *s, int n, RtCache *cache, const TuneDb *db,
                   RtModule **out, TileConfig *used, char *err, size_t cap);

/* Compiles tiles[0..n) on `threads` threads (<= 0: one per core). out[i] is filled,
 * or out[i].code is NULL and errs[i] says why. */
void rt_compile_many(const Spec *s, const TileConfig *tiles, int n, Target target,
                     RtCache *cache, int threads, RtArtifact *out, char (*errs)[512]);

#endif
