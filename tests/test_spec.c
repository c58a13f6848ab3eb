/* test_spec.c: tests of the spec language front end (compiler/spec.h, compiler/diag.h).
 *
 *     test_spec BAD_DIR [GOOD_DIR]      e.g.  test_spec tests/specs/bad
 *
 * - good specs, inline and every GOOD_DIR/<name>.spec (default: BAD_DIR/../good), parse
 *   to the expected fields and their canonical text reads back to itself;
 * - every BAD_DIR/<name>.spec fails, and the first line of its diagnostic, less the
 *   "PATH:" prefix, equals the first line of BAD_DIR/<name>.expect;
 * - diagnostics render exactly (tabs, UTF-8, end of file, long lines);
 * - -D overrides, good and bad; canonical text and hash stability;
 * - thousands of random byte strings and mutations of a good spec never crash
 *   (build with -fsanitize=address,undefined; inputs sit in exact-size buffers).
 * Prints "N passed, M failed"; exits non-zero on any failure.
 *
 * This file holds the tally, the helpers and main (the order the tests run in);
 * the tests are split by concern, see spec_test.h. */
#define _POSIX_C_SOURCE 200809L
#include "spec_test.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool check(Tally *t, bool ok, const char *file, int line, const char *what) {
  if (ok) {
    t->passed++;
  } else {
    t->failed++;
    fprintf(stderr, "FAIL (%s:%d): %s\n", file, line, what);
  }
  return ok;
}

/* ---- helpers ---- */

/* An exact-size heap copy, so that any read past the end is caught by ASan. */
char *dup_exact(const char *s, size_t n) {
  char *p = malloc(n ? n : 1);
  if (n)
    memcpy(p, s, n);
  return p;
}

int parse_str(const char *text, Spec *s, Diag *d) {
  size_t n = strlen(text);
  char *buf = dup_exact(text, n);
  int rc = spec_parse("t.spec", buf, n, s, d);
  free(buf);
  return rc;
}

char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  size_t got;
  while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
    n += got;
    if (n == cap)
      buf = realloc(buf, cap *= 2);
  }
  fclose(f);
  *len = n;
  char *exact = dup_exact(buf, n);
  free(buf);
  return exact;
}

/* The first line of s (without '\n'), into buf. */
const char *first_line(const char *s, char *buf, size_t cap) {
  size_t n = strcspn(s, "\n");
  snprintf(buf, cap, "%.*s", (int)n, s);
  return buf;
}

bool same_canon(const Spec *a, const Spec *b) {
  char x[SPEC_CANONICAL_MAX], y[SPEC_CANONICAL_MAX];
  spec_canonical(a, x, sizeof x);
  spec_canonical(b, y, sizeof y);
  return strcmp(x, y) == 0;
}

/* Canonical text parses back to an equal spec. */
bool round_trips(const Spec *s) {
  char text[SPEC_CANONICAL_MAX];
  Spec back;
  Diag d;
  spec_canonical(s, text, sizeof text);
  if (parse_str(text, &back, &d) != 0) {
    fprintf(stderr, "canonical text does not parse:\n%s%s", text, d.text);
    return false;
  }
  return same_canon(s, &back) && spec_hash(s) == spec_hash(&back);
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of the files in dir ending in ext; *n gets their count. */
char **list_dir(const char *dir, const char *ext, int *n) {
  DIR *dp = opendir(dir);
  char **names = NULL;
  *n = 0;
  if (!dp)
    return NULL;
  for (struct dirent *e; (e = readdir(dp));) {
    size_t len = strlen(e->d_name), el = strlen(ext);
    if (len <= el || strcmp(e->d_name + len - el, ext) != 0)
      continue;
    names = realloc(names, sizeof *names * (size_t)(*n + 1));
    names[(*n)++] = strdup(e->d_name);
  }
  closedir(dp);
  if (*n)
    qsort(names, (size_t)*n, sizeof *names, by_name);
  return names;
}

void free_list(char **names, int n) {
  for (int i = 0; i < n; i++)
    free(names[i]);
  free(names);
}


static char *good_dir_of(const char *bad) {
  char *good = malloc(strlen(bad) + 8);
  strcpy(good, bad);
  size_t n = strlen(good);
  while (n > 1 && good[n - 1] == '/')
    good[--n] = '\0';
  if (n >= 3 && strcmp(good + n - 3, "bad") == 0)
    strcpy(good + n - 3, "good");
  else
    strcat(good, "/../good");
  return good;
}

int main(int argc, char **argv) {
  Tally t = {0, 0};
  if (argc < 2) {
    fprintf(stderr, "usage: %s BAD_DIR [GOOD_DIR]\n", argv[0]);
    return 2;
  }
  char *good = argc > 2 ? strdup(argv[2]) : good_dir_of(argv[1]);
  test_defaults(&t);
  test_good_inline(&t);
  test_good_files(&t, good);
  test_bad_files(&t, argv[1]);
  test_diag_render(&t);
  test_overrides(&t);
  test_canonical(&t);
  test_fuzz_random(&t);
  test_fuzz_mutations(&t);
  test_huge(&t);
  free(good);
  printf("%d passed, %d failed\n", t.passed, t.failed);
  return t.failed != 0;
}
