/* crispc: spec -> crisp IR -> LLVM -> PTX or host code.
 *
 * The whole pipeline is compile() below: parse the spec, build the kernels from
 * the templates, run the IR passes (dumping after any one with -d), then lower to
 * LLVM and emit. Exit status: 0 ok, 2 bad input (usage or spec), 1 failure. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ir/passes.h"
#include "../runtime/tune_spec.h"
#include "../templates/templates.h"
#include "cli.h"
#include "emit.h"
#include "manifest.h"
#include "spec.h"

typedef struct {
  const char *name;
  int (*run)(Kernel *k, const Options *o, char *err, size_t cap);
} Pass;

static int pass_verify(Kernel *k, const Options *o, char *err, size_t cap) {
  (void)o;
  return ir_verify(k, err, cap);
}

static int pass_simplify(Kernel *k, const Options *o, char *err, size_t cap) {
  (void)o;
  return ir_simplify(k, err, cap);
}

static int pass_map(Kernel *k, const Options *o, char *err, size_t cap) {
  return ir_map(k, o->target == TARGET_HOST ? MAP_CPU : MAP_GPU, err, cap);
}

/* --emit ir stops after "simplify": the target-independent IR. */
static const Pass passes[] = {
    {"build", pass_verify},  {"simplify", pass_simplify}, {"map", pass_map},
    {"cleanup", pass_simplify}, {"verify", pass_verify},
};
enum { NPASSES = sizeof passes / sizeof passes[0], LAST_IR_PASS = 1 };

static int run_passes(const Options *o, Module *m) {
  char err[1024];
  int last = o->emit == EMIT_KIND_IR ? LAST_IR_PASS : NPASSES - 1;
  for (int i = 0; i < m->n; i++)
    for (int p = 0; p <= last; p++) {
      if (passes[p].run(m->kernels[i], o, err, sizeof err)) {
        fprintf(stderr, "crispc: internal error after pass %s: %s\n", passes[p].name, err);
        return 1;
      }
      if (o->dump && (!strcmp(o->dump, passes[p].name) || !strcmp(o->dump, "all"))) {
        fprintf(stderr, "; after %s\n", passes[p].name);
        ir_print(stderr, m->kernels[i]);
      }
    }
  return 0;
}

static int emit_ir(const Options *o, Module *m) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (!f)
    return 1;
  for (int i = 0; i < m->n; i++)
    ir_print(f, m->kernels[i]);
  fclose(f);
  int rc = output_text(o, text, len);
  free(text);
  return rc;
}

static int emit_llvm(const Options *o, const Spec *s, const TileConfig *t, Module *m) {
  char err[1024];
  char *buf = NULL;
  size_t len = 0;
  int rc = 1;
  if (!emit_module(m, o->target, emit_kind_of(o->emit), &buf, &len, err, sizeof err)) {
    rc = output_text(o, buf, len);
    if (!rc && o->emit == EMIT_KIND_PTX && o->output)
      rc = output_manifest(o, s, t, m);
  } else {
    fprintf(stderr, "crispc: %s\n", err);
  }
  free(buf);
  return rc;
}

static int compile(const Options *o) {
  Spec spec;
  if (load_spec(o, &spec))
    return 2;
  TileConfig tile = tile_resolve(&spec, o->target == TARGET_HOST ? TUNE_CPU : TUNE_GPU);
  Module m = {0};
  char err[1024];
  if (templates_build(&spec, &tile, &m, err, sizeof err)) {
    fprintf(stderr, "%s: error: %s\n", o->spec_path, err);
    return 2;
  }
  int rc = run_passes(o, &m);
  if (!rc)
    rc = o->emit == EMIT_KIND_IR ? emit_ir(o, &m) : emit_llvm(o, &spec, &tile, &m);
  ir_module_free(&m);
  return rc;
}

/* --tune: the autotuner on a device (runtime/tune_spec.h). */
static int tune(const Options *o) {
  Spec spec;
  if (load_spec(o, &spec))
    return 2;
  RtTuneRequest r = {.spec = &spec, .device = o->device, .threads = o->threads,
                     .db_path = o->tune_db, .nn = o->tune_nn};
  for (int i = 0; i < o->tune_nn; i++)
    r.n[i] = o->tune_n[i];
  char err[2048];
  if (rt_tune_spec(&r, stdout, err, sizeof err)) {
    fprintf(stderr, "crispc: --tune: %s\n", err);
    return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  Options o;
  int rc = parse_args(argc, argv, &o);
  if (rc >= 0)
    return rc;   /* --help, --version, or a usage error */
  return o.tune ? tune(&o) : compile(&o);
}
