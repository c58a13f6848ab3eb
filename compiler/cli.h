/* crispc's command line: options, reading the spec (with -D overrides), and
 * writing outputs atomically (a failed run leaves no file behind). */
#ifndef CRISP_CLI_H
#define CRISP_CLI_H

#include <stddef.h>

#include "../templates/templates.h"
#include "emit.h"
#include "spec.h"
#include "target.h"

typedef enum { EMIT_KIND_IR, EMIT_KIND_LLVM, EMIT_KIND_PTX, EMIT_KIND_ASM, EMIT_KIND_OBJ } EmitWhat;

enum { MAX_DEFINES = 32 };

typedef struct Options {
  const char *spec_path;
  const char *output;                /* NULL: text to stdout */
  Target target;
  EmitWhat emit;
  const char *dump;                  /* -d PASS: print the IR after PASS ("all" for every one) */
  const char *defines[MAX_DEFINES];  /* -D key=value, applied in order */
  int ndefines;
  /* --tune: sweep the tiles on a device instead of emitting code (runtime/tune_spec.h) */
  bool tune;
  const char *device;                /* --device auto|cpu|cuda (default auto) */
  int threads;                       /* --threads N: CPU threads (0: one per core) */
  const char *tune_db;               /* --tune-db FILE (default: the cache's tune.json) */
  int tune_n[8];                     /* --tune-n 128,512: lengths to tune for */
  int tune_nn;
} Options;

/* Returns -1 to go on compiling, else the exit status (0 for --help/--version, 2 for
 * a usage error, already reported). */
int parse_args(int argc, char **argv, Options *o);

/* Reads, parses and overrides the spec; reports errors (file:line:col, caret). */
int load_spec(const Options *o, Spec *s);

EmitKind emit_kind_of(EmitWhat w);

/* Writes to o->output atomically, or to stdout. 0 or 1 (reported). */
int output_text(const Options *o, const char *data, size_t len);

/* The manifest beside o->output; removes o->output again if it cannot be written. */
int output_manifest(const Options *o, const Spec *s, const TileConfig *t, const Module *m);

#endif
