/* crispc's command line (see cli.h). */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsutil.h"
#include "manifest.h"
#include "version.h"

static const char usage[] =
    "usage: crispc SPEC [options]\n"
    "  -o FILE              write the output to FILE (with --emit ptx, also FILE's manifest\n"
    "                       X.manifest.json beside it); default, or FILE '-': standard\n"
    "                       output (and no manifest)\n"
    "  --target T           sm_90 (default), sm_80 or host\n"
    "  --emit K             ir | llvm | ptx | asm | obj (default: ptx for sm_*, asm for host)\n"
    "  -D key=value         override a spec key (repeatable), e.g. -D sparsity=0.6\n"
    "  -d PASS              print the IR after PASS to stderr: build, simplify, map,\n"
    "                       cleanup, verify, or all\n"
    "  --tune               autotune instead: check and time every legal tile of the\n"
    "                       forward kernel on the device, print the table and keep the\n"
    "                       best per length bucket in the tuning database\n"
    "  --device D           with --tune: auto (default: cuda if a GPU is usable, else\n"
    "                       cpu), cpu or cuda\n"
    "  --threads N          with --tune on the CPU: threads (default: one per core)\n"
    "  --tune-n LIST        with --tune: lengths to tune for (default 128,512)\n"
    "  --tune-db FILE       with --tune: the database (default $CRISP_TUNE_DB, else\n"
    "                       $XDG_CACHE_HOME/crisp/tune.json or ~/.cache/crisp/tune.json)\n"
    "  --help, --version\n"
    "exit status: 0 ok, 2 bad input (usage or spec), 1 failure\n";

static int usage_error(const char *fmt, const char *arg) {
  fputs("crispc: ", stderr);
  fprintf(stderr, fmt, arg);
  fputs("\n(try crispc --help)\n", stderr);
  return 2;
}

static int parse_emit(const char *s, EmitWhat *w) {
  static const char *const names[] = {"ir", "llvm", "ptx", "asm", "obj"};
  for (int i = 0; i < 5; i++)
    if (!strcmp(s, names[i])) {
      *w = (EmitWhat)i;
      return 0;
    }
  return -1;
}

static const char *const dump_names[] = {"build", "simplify", "map", "cleanup", "verify", "all"};

static int check_dump(const char *s) {
  for (size_t i = 0; i < sizeof dump_names / sizeof dump_names[0]; i++)
    if (!strcmp(s, dump_names[i]))
      return 0;
  return -1;
}

/* "128,512" into o->tune_n. */
static int parse_lengths(const char *s, Options *o) {
  o->tune_nn = 0;
  for (;;) {
    char *end;
    long n = strtol(s, &end, 10);
    if (end == s || n < 1 || n > 8192 || o->tune_nn == 8)
      return -1;
    o->tune_n[o->tune_nn++] = (int)n;
    if (*end == 0)
      return 0;
    if (*end != ',')
      return -1;
    s = end + 1;
  }
}

/* One option with its value; returns the number of argv entries used or -1. */
static int take_option(Options *o, int argc, char **argv, int i, bool *emit_given) {
  const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
  bool needs = !strcmp(a, "-o") || !strcmp(a, "--target") || !strcmp(a, "--emit") ||
               !strcmp(a, "-D") || !strcmp(a, "-d") || !strcmp(a, "--device") ||
               !strcmp(a, "--threads") || !strcmp(a, "--tune-db") || !strcmp(a, "--tune-n");
  if (needs && !v)
    return usage_error("option %s needs a value", a), -1;
  if (!strcmp(a, "-o"))
    o->output = strcmp(v, "-") ? v : NULL;   /* "-": standard output, as without -o */
  else if (!strcmp(a, "--target") && target_parse(v, &o->target))
    return usage_error("unknown target '%s' (expected sm_90, sm_80 or host)", v), -1;
  else if (!strcmp(a, "--emit")) {
    if (parse_emit(v, &o->emit))
      return usage_error("unknown --emit '%s' (expected ir, llvm, ptx, asm or obj)", v), -1;
    *emit_given = true;
  } else if (!strcmp(a, "-D")) {
    if (o->ndefines == MAX_DEFINES)
      return usage_error("too many -D options (at most %s)", "32"), -1;
    o->defines[o->ndefines++] = v;
  } else if (!strcmp(a, "-d")) {
    if (check_dump(v))
      return usage_error("unknown pass '%s' for -d (build, simplify, map, cleanup, verify, all)",
                         v), -1;
    o->dump = v;
  } else if (!strcmp(a, "--tune")) {
    o->tune = true;
  } else if (!strcmp(a, "--device")) {
    if (strcmp(v, "auto") && strcmp(v, "cpu") && strcmp(v, "cuda"))
      return usage_error("unknown --device '%s' (expected auto, cpu or cuda)", v), -1;
    o->device = v;
  } else if (!strcmp(a, "--threads")) {
    char *end;
    long n = strtol(v, &end, 10);
    if (*end || n < 1 || n > 256)
      return usage_error("--threads wants a count from 1 to 256, not '%s'", v), -1;
    o->threads = (int)n;
  } else if (!strcmp(a, "--tune-db")) {
    o->tune_db = v;
  } else if (!strcmp(a, "--tune-n")) {
    if (parse_lengths(v, o))
      return usage_error("--tune-n wants lengths like 128,512 (1..8192, at most 8), not '%s'",
                         v), -1;
  } else if (!needs)
    return usage_error("unknown option '%s'", a), -1;
  return needs ? 2 : 1;
}

static int check_combination(Options *o, bool emit_given) {
  if (!o->tune && (o->device || o->threads || o->tune_db || o->tune_nn))
    return usage_error("--device, --threads, --tune-n and --tune-db go with %s", "--tune");
  if (o->tune && (emit_given || o->output))
    return usage_error("--tune writes no code (%s)", "drop -o and --emit");
  if (!emit_given)
    o->emit = o->target == TARGET_HOST ? EMIT_KIND_ASM : EMIT_KIND_PTX;
  if (o->emit == EMIT_KIND_PTX && o->target == TARGET_HOST)
    return usage_error("--emit ptx needs a GPU target (%s)", "--target sm_90 or sm_80");
  if (o->emit == EMIT_KIND_OBJ && o->target != TARGET_HOST)
    return usage_error("--emit obj is for --target host (%s)", "use --emit ptx for GPUs");
  if (o->emit == EMIT_KIND_OBJ && !o->output)
    return usage_error("--emit obj needs -o FILE (%s)", "binary output");
  return -1;
}

int parse_args(int argc, char **argv, Options *o) {
  memset(o, 0, sizeof *o);
  o->target = TARGET_SM90;
  bool emit_given = false;
  for (int i = 1; i < argc;) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      fputs(usage, stdout);
      return 0;
    }
    if (!strcmp(a, "--version")) {
      printf("crispc %s (LLVM %s)\n", CRISP_VERSION, CRISP_LLVM_VERSION);
      return 0;
    }
    if (a[0] == '-' && a[1]) {
      int used = take_option(o, argc, argv, i, &emit_given);
      if (used < 0)
        return 2;
      i += used;
      continue;
    }
    if (o->spec_path)
      return usage_error("more than one spec file given ('%s')", a);
    o->spec_path = a;
    i++;
  }
  if (!o->spec_path)
    return usage_error("no spec file given%s", "");
  return check_combination(o, emit_given);
}

/* The whole file; NULL with errno set on failure. */
static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  char *buf = NULL;
  size_t cap = 0, n = 0;
  for (;;) {
    if (n == cap) {
      cap = cap ? 2 * cap : 4096;
      char *grown = realloc(buf, cap);
      if (!grown) {
        free(buf);
        fclose(f);
        errno = ENOMEM;
        return NULL;
      }
      buf = grown;
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0)
      break;
  }
  int bad = ferror(f);
  fclose(f);
  if (bad) {
    free(buf);
    errno = EIO;
    return NULL;
  }
  *len = n;
  return buf;
}

int load_spec(const Options *o, Spec *s) {
  size_t len = 0;
  char *text = read_file(o->spec_path, &len);
  if (!text) {
    fprintf(stderr, "crispc: cannot read %s: %s\n", o->spec_path, strerror(errno));
    return -1;
  }
  Diag d;
  int rc = spec_parse(o->spec_path, text, len, s, &d);
  for (int i = 0; !rc && i < o->ndefines; i++)
    rc = spec_override(s, o->defines[i], &d);
  free(text);
  if (rc)
    fputs(d.text, stderr);
  return rc;
}

EmitKind emit_kind_of(EmitWhat w) {
  switch (w) {
  case EMIT_KIND_LLVM: return EMIT_LLVM;
  case EMIT_KIND_OBJ: return EMIT_OBJ;
  default: return EMIT_ASM;
  }
}

int output_text(const Options *o, const char *data, size_t len) {
  char err[512];
  if (!o->output) {
    if (fwrite(data, 1, len, stdout) != len || fflush(stdout)) {
      fprintf(stderr, "crispc: writing standard output: %s\n", strerror(errno));
      return 1;
    }
    return 0;
  }
  if (rt_write_atomic(o->output, data, len, err, sizeof err)) {
    fprintf(stderr, "crispc: %s\n", err);
    return 1;
  }
  return 0;
}

int output_manifest(const Options *o, const Spec *s, const TileConfig *t, const Module *m) {
  char err[512];
  char *path = manifest_path_for(o->output);
  char *json = manifest_json(s, t, o->target, m);
  int rc = 0;
  if (!path || !json || rt_write_atomic(path, json, strlen(json), err, sizeof err)) {
    fprintf(stderr, "crispc: manifest: %s\n", path && json ? err : "out of memory");
    unlink(o->output);   /* a PTX without its manifest is half an output */
    rc = 1;
  }
  free(path);
  free(json);
  return rc;
}
