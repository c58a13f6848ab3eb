/* bench_args.c: the bench programs' strict command-line reading (bench_args.h). */
#include "bench_args.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

BenchArgs bench_args(int argc, char **argv, const char *prog, const char *usage) {
  return (BenchArgs){.argc = argc, .argv = argv, .i = 0, .prog = prog, .usage = usage};
}

bool bench_next(BenchArgs *a) {
  if (++a->i >= a->argc)
    return false;
  const char *arg = a->argv[a->i];
  if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
    fputs(a->usage, stdout);
    exit(0);
  }
  return true;
}

void bench_fail(const BenchArgs *a, const char *flag, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "%s: %s: ", a->prog, flag);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n%s", a->usage);
  exit(2);
}

void bench_unknown(const BenchArgs *a) {
  const char *arg = a->argv[a->i];
  fprintf(stderr, "%s: unknown %s \"%s\"\n%s", a->prog, arg[0] == '-' ? "option" : "argument",
          arg, a->usage);
  exit(2);
}

bool bench_flag(const BenchArgs *a, const char *name) {
  return !strcmp(a->argv[a->i], name);
}

/* The value after flag `name`, or NULL when the current argument is another flag. */
static const char *value(BenchArgs *a, const char *name) {
  if (strcmp(a->argv[a->i], name))
    return NULL;
  if (a->i + 1 >= a->argc)
    bench_fail(a, name, "needs a value");
  return a->argv[++a->i];
}

bool bench_str(BenchArgs *a, const char *name, const char **out) {
  const char *v = value(a, name);
  if (!v)
    return false;
  if (!*v)
    bench_fail(a, name, "empty value");
  *out = v;
  return true;
}

/* One number of a list at *p, ending at a comma or the end; false if it is not one. */
static bool one_number(const char **p, double *out) {
  char *end;
  errno = 0;
  double v = strtod(*p, &end);
  if (end == *p || (*end && *end != ',') || errno == ERANGE || !isfinite(v))
    return false;
  *out = v;
  *p = end;
  return true;
}

/* A comma-separated list of numbers in [lo, hi] (integers when ints): their count, or
 * -1 with why[] said. */
static int parse_list(const char *s, double lo, double hi, bool ints, double *out, int max,
                      char *why, size_t cap) {
  int n = 0;
  const char *p = s;
  for (;;) {
    double v;
    if (n == max) {
      snprintf(why, cap, "at most %d values", max);
      return -1;
    }
    if (!one_number(&p, &v) || !(v >= lo && v <= hi) || (ints && v != floor(v))) {
      snprintf(why, cap, ints ? "expected %s in %.17g..%.17g" : "expected %s in [%g, %g]",
               ints ? "integers" : "numbers", lo, hi);
      return -1;
    }
    out[n++] = v;
    if (!*p)
      return n;
    p++;   /* the comma; a trailing one leaves an empty item, refused above */
  }
}

bool bench_list(BenchArgs *a, const char *name, double lo, double hi, double *out, int max,
                int *n) {
  const char *v = value(a, name);
  if (!v)
    return false;
  char why[128];
  int k = parse_list(v, lo, hi, false, out, max, why, sizeof why);
  if (k < 0)
    bench_fail(a, name, "%s, got \"%s\"", why, v);
  *n = k;
  return true;
}

bool bench_int_list(BenchArgs *a, const char *name, long lo, long hi, int *out, int max,
                    int *n) {
  const char *v = value(a, name);
  if (!v)
    return false;
  char why[128];
  double d[64];
  int k = parse_list(v, (double)lo, (double)hi, true, d, max < 64 ? max : 64, why, sizeof why);
  if (k < 0)
    bench_fail(a, name, "%s, got \"%s\"", why, v);
  for (int j = 0; j < k; j++)
    out[j] = (int)d[j];
  *n = k;
  return true;
}

bool bench_int(BenchArgs *a, const char *name, long lo, long hi, int *out) {
  const char *v = value(a, name);
  if (!v)
    return false;
  char *end;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (end == v || *end || errno == ERANGE || x < lo || x > hi)
    bench_fail(a, name, "expected an integer in %ld..%ld, got \"%s\"", lo, hi, v);
  *out = (int)x;
  return true;
}

bool bench_num(BenchArgs *a, const char *name, double lo, double hi, double *out) {
  const char *v = value(a, name);
  if (!v)
    return false;
  const char *p = v;
  double x;
  if (!one_number(&p, &x) || *p || !(x >= lo && x <= hi))
    bench_fail(a, name, "expected a number in [%g, %g], got \"%s\"", lo, hi, v);
  *out = x;
  return true;
}

bool bench_choice(BenchArgs *a, const char *name, const char *const *choices, int *out) {
  const char *v = value(a, name);
  if (!v)
    return false;
  char list[256] = "";
  for (int k = 0; choices[k]; k++) {
    if (!strcmp(v, choices[k])) {
      *out = k;
      return true;
    }
    size_t n = strlen(list);
    snprintf(list + n, sizeof list - n, "%s%s", k ? ", " : "", choices[k]);
  }
  bench_fail(a, name, "expected one of %s, got \"%s\"", list, v);
}
