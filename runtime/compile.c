/* Spec -> loaded kernels through the kernel cache (see compile.h). */
#include "compile.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>

#include "../compiler/emit.h"
#include "../compiler/jit.h"
#include "../compiler/manifest.h"
#include "../compiler/version.h"
#include "fsutil.h"
#include "pool.h"

#ifdef CRISP_HAVE_CODEGEN_ID
#include "crisp_codegen_id.h"   /* generated: a digest of ir/, templates/, compiler/ sources */
#endif
#ifndef CRISP_CODEGEN_ID
#define CRISP_CODEGEN_ID "unknown"
#endif

static atomic_long compilations;

static void free_jit(void *j) { jit_free(j); }   /* as an RtModule's owner */

long rt_compile_count(void) { return atomic_load(&compilations); }

int rt_build_module(const Spec *s, const TileConfig *t, MapTarget mt, Module *m, char *err,
                    size_t cap) {
  memset(m, 0, sizeof *m);
  if (templates_build(s, t, m, err, cap)) {
    ir_module_free(m);
    return -1;
  }
  for (int i = 0; i < m->n; i++)
    if (ir_run_passes(m->kernels[i], mt, err, cap)) {
      ir_module_free(m);
      return -1;
    }
  return 0;
}

void rt_cache_key(const Spec *s, const TileConfig *t, Target target, char *buf, size_t cap) {
  char canon[SPEC_CANONICAL_MAX], machine[1024];
  spec_canonical(s, canon, sizeof canon);
  if (target == TARGET_HOST) {
    char *cpu = LLVMGetHostCPUName(), *features = LLVMGetHostCPUFeatures();
    uint64_t fh = rt_fnv1a64(features, strlen(features), RT_FNV_OFFSET);
    snprintf(machine, sizeof machine, "host %s features %016llx", cpu, (unsigned long long)fh);
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(features);
  } else {
    snprintf(machine, sizeof machine, "%s", target_name(target));
  }
  snprintf(buf, cap,
           "crisp kernel cache 1\n%s"
           "tile rows=%d warps=%d%s\ntarget %s\ncrisp %s codegen %s\nllvm %s\n",
           canon, t->rows, t->warps,
           t->sched == SCHED_TILE        ? " sched=tile"
           : t->sched == SCHED_WARP_HOST ? " sched=warp-host"
                                         : "",
           machine, CRISP_VERSION, CRISP_CODEGEN_ID, CRISP_LLVM_VERSION);
}

void rt_artifact_free(RtArtifact *a) {
  free(a->code);
  free(a->manifest);
  memset(a, 0, sizeof *a);
}

/* template -> IR -> LLVM -> O3 -> PTX or object, and the manifest. */
static int compile_fresh(const Spec *s, const TileConfig *t, Target target, RtArtifact *out,
                         char *err, size_t cap) {
  Module m;
  if (rt_build_module(s, t, target == TARGET_HOST ? MAP_CPU : MAP_GPU, &m, err, cap))
    return -1;
  atomic_fetch_add(&compilations, 1);
  int rc = -1;
  out->manifest = manifest_json(s, t, target, &m);
  if (!out->manifest)
    snprintf(err, cap, "out of memory");
  else if (!emit_module(&m, target, target == TARGET_HOST ? EMIT_OBJ : EMIT_ASM, &out->code,
                        &out->code_len, err, cap))
    rc = 0;
  ir_module_free(&m);
  if (rc)
    rt_artifact_free(out);
  else
    out->manifest_len = strlen(out->manifest);
  return rc;
}

int rt_compile_artifact(const Spec *s, const TileConfig *t, Target target, RtCache *cache,
                        RtArtifact *out, char *err, size_t cap) {
  memset(out, 0, sizeof *out);
  out->target = target;
  char key[2048];
  rt_cache_key(s, t, target, key, sizeof key);
  RtBlob parts[2];
  char note[1500];
  int hit = cache ? rt_cache_get(cache, key, parts, 2, note, sizeof note) : 0;
  if (cache && note[0])
    fprintf(stderr, "crisp: warning: kernel cache: %s\n", note);
  if (hit) {
    out->code = parts[0].data, out->code_len = parts[0].len;
    out->manifest = parts[1].data, out->manifest_len = parts[1].len;
    out->cached = true;
    return 0;
  }
  if (compile_fresh(s, t, target, out, err, cap))
    return -1;
  out->target = target;
  if (cache) {
    RtBlob put[2] = {{out->code, out->code_len}, {out->manifest, out->manifest_len}};
    char why[512];
    if (rt_cache_put(cache, key, put, 2, why, sizeof why))
      fprintf(stderr, "crisp: warning: kernel cache: %s\n", why);   /* go on without it */
  }
  return 0;
}

int rt_backend_target(const Backend *b, Target *t, char *err, size_t cap) {
  if (target_parse(b->target, t)) {
    snprintf(err, cap, "%s: no code target for this device (%s)", b->kind, b->target);
    return -1;
  }
  return 0;
}

int rt_artifact_load(Backend *b, const RtArtifact *a, RtModule **out, char *err, size_t cap) {
  *out = NULL;
  RtModuleSource src = {0};
  RtManifest *man = malloc(sizeof *man);
  if (!man) {
    snprintf(err, cap, "out of memory");
    return -1;
  }
  if (rt_manifest_parse(a->manifest, a->manifest_len, man, err, cap)) {
    free(man);
    return -1;
  }
  src.manifest = man;
  CpuKernelFn fns[RT_MAX_KERNELS] = {0};
  if (a->target == TARGET_HOST) {
    Jit *j = jit_load_object(a->code, a->code_len, err, cap);
    if (!j) {
      free(man);
      return -1;
    }
    for (int i = 0; i < man->nkernels; i++)
      if (!(fns[i] = jit_find(j, man->kernels[i].name, err, cap))) {
        jit_free(j);
        free(man);
        return -1;
      }
    src.cpu_fns = fns;
    src.owner = j;
    src.owner_free = free_jit;
  } else {
    src.ptx = a->code;
    src.ptx_len = a->code_len;
  }
  int rc = rt_module_load(b, &src, out);
  if (rc)
    snprintf(err, cap, "%s", backend_error(b));
  free(man);
  return rc;
}

int rt_compile_load(Backend *b, const Spec *s, const TileConfig *t, RtCache *cache,
                    RtModule **out, char *err, size_t cap) {
  Target target;
  RtArtifact a;
  *out = NULL;
  if (rt_backend_target(b, &target, err, cap) ||
      rt_compile_artifact(s, t, target, cache, &a, err, cap))
    return -1;
  int rc = rt_artifact_load(b, &a, out, err, cap);
  rt_artifact_free(&a);
  return rc;
}

int rt_compile_for(Backend *b, const Spec *s, int n, RtCache *cache, const TuneDb *db,
                   RtModule **out, TileConfig *used, char *err, size_t cap) {
  TileConfig t = tune_tile_for(db, s, b, n, NULL);
  if (used)
    *used = t;
  return rt_compile_load(b, s, &t, cache, out, err, cap);
}

/* ---- many at once ---- */

typedef struct {
  const Spec *s;
  const TileConfig *tiles;
  Target target;
  RtCache *cache;
  RtArtifact *out;
  char (*errs)[512];
} Many;

static void compile_range(void *ctx, int64_t first, int64_t last) {
  Many *m = ctx;
  for (int64_t i = first; i < last; i++) {
    m->errs[i][0] = 0;
    if (rt_compile_artifact(m->s, &m->tiles[i], m->target, m->cache, &m->out[i], m->errs[i],
                            sizeof m->errs[i]))
      memset(&m->out[i], 0, sizeof m->out[i]);
  }
}

void rt_compile_many(const Spec *s, const TileConfig *tiles, int n, Target target,
                     RtCache *cache, int threads, RtArtifact *out, char (*errs)[512]) {
  Many m = {s, tiles, target, cache, out, errs};
  emit_init_targets();
  RtPool *pool = rt_pool_new(threads);
  if (!pool) {
    compile_range(&m, 0, n);
    return;
  }
  rt_pool_run(pool, n, 1, compile_range, &m);
  rt_pool_free(pool);
}
