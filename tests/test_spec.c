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
 * Prints "N passed, M failed"; exits non-zero on any failure. */
#define _POSIX_C_SOURCE 200809L
#include "spec.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  int passed, failed;
} Tally;

static bool check(Tally *t, bool ok, int line, const char *what) {
  if (ok) {
    t->passed++;
  } else {
    t->failed++;
    fprintf(stderr, "FAIL (test_spec.c:%d): %s\n", line, what);
  }
  return ok;
}
#define CHECK(t, cond) check((t), (cond), __LINE__, #cond)

/* ---- helpers ---- */

/* An exact-size heap copy, so that any read past the end is caught by ASan. */
static char *dup_exact(const char *s, size_t n) {
  char *p = malloc(n ? n : 1);
  if (n)
    memcpy(p, s, n);
  return p;
}

static int parse_str(const char *text, Spec *s, Diag *d) {
  size_t n = strlen(text);
  char *buf = dup_exact(text, n);
  int rc = spec_parse("t.spec", buf, n, s, d);
  free(buf);
  return rc;
}

static char *read_file(const char *path, size_t *len) {
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
static const char *first_line(const char *s, char *buf, size_t cap) {
  size_t n = strcspn(s, "\n");
  snprintf(buf, cap, "%.*s", (int)n, s);
  return buf;
}

static bool same_canon(const Spec *a, const Spec *b) {
  char x[SPEC_CANONICAL_MAX], y[SPEC_CANONICAL_MAX];
  spec_canonical(a, x, sizeof x);
  spec_canonical(b, y, sizeof y);
  return strcmp(x, y) == 0;
}

/* Canonical text parses back to an equal spec. */
static bool round_trips(const Spec *s) {
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
static char **list_dir(const char *dir, const char *ext, int *n) {
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

static void free_list(char **names, int n) {
  for (int i = 0; i < n; i++)
    free(names[i]);
  free(names);
}

/* ---- good specs ---- */

static void test_defaults(Tally *t) {
  Spec s;
  spec_defaults(&s);
  CHECK(t, s.name[0] == '\0');
  CHECK(t, s.head_dim == 64 && s.max_seq == 512 && s.dtype == DTYPE_F32);
  CHECK(t, s.sparsity == 0.0 && s.select == SEL_ROW_TOPK && s.keep_min == 1);
  CHECK(t, !s.causal && s.dropout == 0.0 && !s.backward && s.tile.is_auto);
  CHECK(t, strcmp(select_name(SEL_LAYER_QUANTILE), "layer_quantile") == 0);
  CHECK(t, strcmp(dtype_name(DTYPE_BF16), "bf16") == 0);
  CHECK(t, strcmp(select_name((SelectKind)99), "?") == 0);
}

static void test_good_inline(Tally *t) {
  Spec s;
  Diag d;
  const char *design =
      "# the paper's uniform_sparse attention for DistilBERT\n"
      "attention crisp80 {\n"
      "  head_dim = 64          # 8..256, multiple of 8\n"
      "  max_seq  = 512\n"
      "  dtype    = f32\n"
      "  sparsity = 0.8\n"
      "  select   = row_topk    # none | row_topk | head_quantile | layer_quantile\n"
      "  keep_min = 1\n"
      "  causal   = false\n"
      "  dropout  = 0.1\n"
      "  backward = true\n"
      "  tile     = auto        # or tile { rows = 64, cols = 64, warps = 4 }\n"
      "}\n";
  if (CHECK(t, parse_str(design, &s, &d) == 0)) {
    CHECK(t, strcmp(s.name, "crisp80") == 0);
    CHECK(t, s.head_dim == 64 && s.max_seq == 512 && s.dtype == DTYPE_F32);
    CHECK(t, s.sparsity == 0.8 && s.select == SEL_ROW_TOPK && s.keep_min == 1);
    CHECK(t, !s.causal && s.dropout == 0.1 && s.backward && s.tile.is_auto);
    CHECK(t, round_trips(&s));
  }

  const char *tiled = "attention t {\n"
                      "  tile { rows = 8, cols = 64, warps = 4 }  # comment\n"
                      "  causal = true, keep_min = 8,\n"
                      "  select = layer_quantile\n"
                      "}";
  if (CHECK(t, parse_str(tiled, &s, &d) == 0)) {
    CHECK(t, !s.tile.is_auto && s.tile.rows == 8 && s.tile.cols == 64 && s.tile.warps == 4);
    CHECK(t, s.causal && s.keep_min == 8 && s.select == SEL_LAYER_QUANTILE);
    CHECK(t, s.head_dim == 64 && s.max_seq == 512 && !s.backward); /* defaults */
    CHECK(t, round_trips(&s));
  }

  /* tile = { ... } on several lines, signs, exponents, leading '.', key order free */
  const char *forms = "attention\n  f\n{\n"
                      "  sparsity = .25\n  dropout = 5e-2\n  head_dim = +256\n"
                      "  tile = {\n    warps = 16\n    rows = 64\n    cols = 512\n  }\n"
                      "  select = none\n  max_seq = 8192, keep_min = 8192\n}\n";
  if (CHECK(t, parse_str(forms, &s, &d) == 0)) {
    CHECK(t, s.sparsity == 0.25 && s.dropout == 0.05 && s.head_dim == 256);
    CHECK(t, s.tile.rows == 64 && s.tile.cols == 512 && s.tile.warps == 16);
    CHECK(t, s.select == SEL_NONE && s.max_seq == 8192 && s.keep_min == 8192);
  } else {
    fputs(d.text, stderr);
  }

  CHECK(t, parse_str("attention z { sparsity = -0.0, dropout = 0 }", &s, &d) == 0 &&
               !signbit(s.sparsity) && s.dropout == 0.0);
  CHECK(t, parse_str("attention smallest { head_dim = 8, max_seq = 1, "
                     "tile { rows = 1, cols = 16, warps = 1 } }", &s, &d) == 0 &&
               s.tile.rows == 1 && s.tile.cols == 16 && s.max_seq == 1);
  CHECK(t, parse_str("attention x { sparsity = 0.99999999999999989 }", &s, &d) == 0 &&
               s.sparsity < 1.0);
  /* not NUL-terminated: only len bytes count */
  CHECK(t, spec_parse("t.spec", "attention n {}garbage", 14, &s, &d) == 0 &&
               strcmp(s.name, "n") == 0);
  CHECK(t, spec_parse("t.spec", NULL, 0, &s, &d) == -1);
  CHECK(t, parse_str("attention x {}", &s, NULL) == 0); /* no Diag wanted */
}

static void check_good_file(Tally *t, const char *dir, const char *name) {
  char path[1024], what[1200 + 1024];
  size_t len;
  Spec s;
  Diag d;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  char *text = read_file(path, &len);
  snprintf(what, sizeof what, "good spec %s parses", path);
  int rc = text ? spec_parse(path, text, len, &s, &d) : -1;
  if (!check(t, rc == 0, __LINE__, what)) {
    if (text)
      fputs(d.text, stderr);
    free(text);
    return;
  }
  snprintf(what, sizeof what, "good spec %s round-trips through its canonical text", path);
  check(t, round_trips(&s), __LINE__, what);
  if (strcmp(name, "tiled.spec") == 0) {
    CHECK(t, strcmp(s.name, "tiled") == 0 && s.max_seq == 128 && s.keep_min == 4);
    CHECK(t, s.sparsity == 0.5 && s.select == SEL_ROW_TOPK);
    CHECK(t, !s.tile.is_auto && s.tile.rows == 8 && s.tile.cols == 64 && s.tile.warps == 4);
  }
  if (strcmp(name, "crlf.spec") == 0)
    CHECK(t, strcmp(s.name, "crlf_spec") == 0 && s.head_dim == 32 && s.sparsity == 0.6 &&
                 s.select == SEL_LAYER_QUANTILE && s.backward);
  if (strcmp(name, "minimal.spec") == 0) {
    Spec def;
    spec_defaults(&def);
    strcpy(def.name, "tiny");
    CHECK(t, same_canon(&s, &def));
  }
  free(text);
}

static void test_good_files(Tally *t, const char *dir) {
  int n;
  char **names = list_dir(dir, ".spec", &n);
  CHECK(t, n >= 3);
  for (int i = 0; i < n; i++)
    check_good_file(t, dir, names[i]);
  free_list(names, n);
}

/* ---- bad specs ---- */

static void check_bad_file(Tally *t, const char *dir, const char *name) {
  char path[1024], exp_path[1024], what[4096], got[1200], want[1200];
  size_t len, elen;
  Spec s;
  Diag d;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  snprintf(exp_path, sizeof exp_path, "%.*s.expect", (int)(strlen(path) - 5), path);
  char *text = read_file(path, &len), *exp = read_file(exp_path, &elen);
  snprintf(what, sizeof what, "%s and %s are readable", path, exp_path);
  if (!check(t, text && exp, __LINE__, what)) {
    free(text);
    free(exp);
    return;
  }
  char *exp_z = realloc(exp, elen + 1);
  exp_z[elen] = '\0';
  first_line(exp_z, want, sizeof want);

  int rc = spec_parse(path, text, len, &s, &d);
  first_line(d.text, got, sizeof got);
  size_t pl = strlen(path);
  bool ok = rc == -1 && strncmp(got, path, pl) == 0 && got[pl] == ':' &&
            strcmp(got + pl + 1, want) == 0;
  snprintf(what, sizeof what, "%s\n    want: %s\n    got:  %s", path, want,
           rc == 0 ? "(parsed without error)" : got + (strncmp(got, path, pl) ? 0 : pl + 1));
  check(t, ok, __LINE__, what);
  free(text);
  free(exp_z);
}

static void test_bad_files(Tally *t, const char *dir) {
  int n, ne;
  char **names = list_dir(dir, ".spec", &n);
  char **expects = list_dir(dir, ".expect", &ne);
  if (!CHECK(t, n >= 24)) /* at least the 24 required kinds of failure */
    fprintf(stderr, "  (found %d .spec files in %s)\n", n, dir);
  CHECK(t, ne == n); /* no .expect without its .spec */
  for (int i = 0; i < n; i++)
    check_bad_file(t, dir, names[i]);
  free_list(names, n);
  free_list(expects, ne);
}

/* ---- diagnostics ---- */

static void test_diag_render(Tally *t) {
  Diag d;
  Spec s;
  const char *src = "attention a {\n\thead_dim = 65\n}\n";
  CHECK(t, parse_str(src, &s, &d) == -1);
  CHECK(t, strcmp(d.text, "t.spec:2:13: error: head_dim must be a multiple of 8 in 8..256, "
                          "got 65\n"
                          "  \thead_dim = 65\n"
                          "  \t           ^~\n") == 0);
  CHECK(t, d.line == 2 && d.col == 13 && d.offset == 26 && d.span == 2);
  CHECK(t, strcmp(d.msg, "head_dim must be a multiple of 8 in 8..256, got 65") == 0);
  CHECK(t, strcmp(d.file, "t.spec") == 0);

  diag_error(&d, "f", "abc", 3, 3, 0, "at end %d", 1); /* end of text, no newline */
  CHECK(t, strcmp(d.text, "f:1:4: error: at end 1\n  abc\n     ^\n") == 0);
  diag_error(&d, NULL, "a\x01" "b\r\nz", 5, 1, 1, "ctl"); /* control byte shown as '?' */
  CHECK(t, strcmp(d.text, "<input>:1:2: error: ctl\n  a?b\n   ^\n") == 0);
  diag_error(&d, "u", "\xc3\xa9 = xyz", 8, 5, 3, "utf8"); /* caret counts characters */
  CHECK(t, strcmp(d.text, "u:1:6: error: utf8\n  \xc3\xa9 = xyz\n      ^~~\n") == 0);
  diag_error(&d, "e", "", 0, 0, 0, "empty");
  CHECK(t, strcmp(d.text, "e:1:1: error: empty\n\n  ^\n") == 0);
  diag_error(&d, "l", "a\nbc\n", 5, 99, 7, "past end"); /* offset clamped */
  CHECK(t, d.line == 3 && d.col == 1 && d.span == 0);

  /* a long line is shown as a window around the error, caret still aligned */
  char line[2000];
  memset(line, 'a', 1500);
  memcpy(line + 1000, " @", 2);
  diag_error(&d, "w", line, 1500, 1001, 1, "stray");
  char *l2 = strchr(d.text, '\n') + 1, *l3 = strchr(l2, '\n') + 1;
  CHECK(t, strncmp(l2, "  ...", 5) == 0 && l3 - l2 < 240);
  CHECK(t, strchr(l2, '@') - l2 == strchr(l3, '^') - l3);
  CHECK(t, d.col == 1002);

  CHECK(t, diag_utf8_len("\xed\xa0\x80", 3) == 0);     /* surrogate */
  CHECK(t, diag_utf8_len("\xc0\x80", 2) == 0);         /* overlong NUL */
  CHECK(t, diag_utf8_len("\xf4\x90\x80\x80", 4) == 0); /* above U+10FFFF */
  CHECK(t, diag_utf8_len("\xe2\x86\x92", 2) == 0);     /* cut short */
  CHECK(t, diag_utf8_len("\xf0\x9f\x98\x80", 4) == 4);
}

/* ---- -D overrides ---- */

static void test_override_bad(Tally *t, const Spec *base, const char *kv, const char *want) {
  Spec s = *base;
  Diag d;
  char got[1200], what[2600];
  int rc = spec_override(&s, kv, &d);
  first_line(d.text, got, sizeof got);
  snprintf(what, sizeof what, "-D '%s'\n    want: %s\n    got:  %s", kv, want,
           rc == 0 ? "(accepted)" : got);
  check(t, rc == -1 && strcmp(got, want) == 0, __LINE__, what);
  snprintf(what, sizeof what, "-D '%s' leaves the spec unchanged", kv);
  check(t, same_canon(&s, base), __LINE__, what);
}

static void test_overrides(Tally *t) {
  Spec s, base;
  Diag d;
  CHECK(t, parse_str("attention o { keep_min = 8, sparsity = 0.8 }", &base, &d) == 0);
  s = base;
  CHECK(t, spec_override(&s, "sparsity=0.5", &d) == 0 && s.sparsity == 0.5);
  CHECK(t, spec_override(&s, " causal = true ", &d) == 0 && s.causal);
  CHECK(t, spec_override(&s, "tile={rows=8,cols=64,warps=4}", &d) == 0 && !s.tile.is_auto &&
               s.tile.rows == 8 && s.tile.cols == 64 && s.tile.warps == 4);
  CHECK(t, spec_override(&s, "tile { rows = 16, cols = 32, warps = 2 }", &d) == 0 &&
               s.tile.rows == 16 && s.tile.warps == 2);
  CHECK(t, spec_override(&s, "tile=auto", &d) == 0 && s.tile.is_auto);
  CHECK(t, spec_override(&s, "max_seq=1024", &d) == 0 && s.max_seq == 1024);
  CHECK(t, spec_override(&s, "sparsity=0.5", &d) == 0 && spec_override(&s, "sparsity=0.6", &d) == 0 &&
               s.sparsity == 0.6); /* the same key again is fine: last one wins */
  CHECK(t, strcmp(s.name, "o") == 0 && s.keep_min == 8);

  test_override_bad(t, &base, "sparsity=1.5", "<-D>:1:10: error: sparsity must be in [0, 1), got 1.5");
  test_override_bad(t, &base, "foo=1", "<-D>:1:1: error: unknown key 'foo' (expected one of: "
                    "head_dim, max_seq, dtype, sparsity, select, keep_min, causal, dropout, "
                    "backward, tile)");
  test_override_bad(t, &base, "sparsity", "<-D>:1:9: error: expected '=' after key 'sparsity', "
                    "found end of file");
  test_override_bad(t, &base, "sparsity=", "<-D>:1:10: error: expected a value after '=', "
                    "found end of file");
  test_override_bad(t, &base, "", "<-D>:1:1: error: empty override: expected key=value");
  test_override_bad(t, &base, "=3", "<-D>:1:1: error: expected a key, found '='");
  test_override_bad(t, &base, "max_seq=4", "<-D>:1:9: error: keep_min (8) must not exceed "
                    "max_seq (4)");
  test_override_bad(t, &base, "sparsity=0.5,x", "<-D>:1:13: error: expected end of the "
                    "override after the value, found ','");
  test_override_bad(t, &base, "tile={rows=2,cols=64,warps=4}", "<-D>:1:28: error: tile rows "
                    "(2) must be a multiple of warps (4): each warp takes whole query rows");
  test_override_bad(t, &base, "dtype=bf16", "<-D>:1:7: error: dtype 'bf16' is not supported "
                    "yet (only f32)");
  test_override_bad(t, &base, "head_dim=\x01", "<-D>:1:10: error: binary data is not a spec "
                    "(byte 0x01 at offset 9)");
  test_override_bad(t, &base, "causal=yes", "<-D>:1:8: error: causal must be true or false, "
                    "found 'yes'");
  s = base;
  CHECK(t, spec_override(&s, NULL, &d) == -1 && spec_override(&s, "x", NULL) == -1);
}

/* ---- canonical text and hash ---- */

static uint64_t fnv1a(const char *s) {
  uint64_t h = 0xcbf29ce484222325u;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 0x100000001b3u;
  return h;
}

static void test_canonical(Tally *t) {
  Spec a, b, c;
  Diag d;
  char text[SPEC_CANONICAL_MAX];
  CHECK(t, parse_str("attention crisp80 {\n  head_dim = 64\n  sparsity = 0.8\n"
                     "  dropout = 0.1\n  backward = true\n"
                     "  tile { rows = 8, cols = 64, warps = 4 }\n}\n", &a, &d) == 0);
  CHECK(t, parse_str("# same spec, other spelling\n\nattention   crisp80{tile={warps=4,"
                     "cols=64,rows=8},  dropout=1e-1 # x\n backward=true,sparsity=.80, "
                     "head_dim=+64,\n select = row_topk,  max_seq = 512 }", &b, &d) == 0);
  spec_canonical(&a, text, sizeof text);
  const char *want = "attention crisp80 {\n"
                     "  head_dim = 64\n"
                     "  max_seq = 512\n"
                     "  dtype = f32\n"
                     "  sparsity = 0.80000000000000004\n"
                     "  select = row_topk\n"
                     "  keep_min = 1\n"
                     "  causal = false\n"
                     "  dropout = 0.10000000000000001\n"
                     "  backward = true\n"
                     "  tile { rows = 8, cols = 64, warps = 4 }\n"
                     "}\n";
  CHECK(t, strcmp(text, want) == 0);
  CHECK(t, spec_hash(&a) == fnv1a(want));
  CHECK(t, same_canon(&a, &b) && spec_hash(&a) == spec_hash(&b));
  CHECK(t, round_trips(&a));

  c = a;
  c.sparsity = 0.81;
  CHECK(t, spec_hash(&c) != spec_hash(&a));
  c = a;
  c.tile = (TileSpec){.is_auto = true};
  CHECK(t, spec_hash(&c) != spec_hash(&a));
  c = a;
  strcpy(c.name, "crisp81");
  CHECK(t, spec_hash(&c) != spec_hash(&a));
  c = a;
  c.causal = true;
  CHECK(t, spec_hash(&c) != spec_hash(&a));

  char small[16];
  spec_canonical(&a, small, sizeof small); /* truncates, stays a C string */
  CHECK(t, strlen(small) == 15);
}

/* ---- robustness ---- */

typedef struct {
  uint64_t s;
} Rng;

static uint64_t next(Rng *r) { /* splitmix64 */
  uint64_t z = (r->s += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

static size_t below(Rng *r, size_t n) { return n ? (size_t)(next(r) % n) : 0; }

static const char *const frags[] = {
    "attention", " ", "\n", "\t", "\r\n", "{", "}", "=", ",", "#", "# c\n", "\"", "\"s\"",
    "head_dim", "max_seq", "dtype", "sparsity", "select", "keep_min", "causal", "dropout",
    "backward", "tile", "rows", "cols", "warps", "auto", "true", "false", "f32", "bf16",
    "row_topk", "none", "64", "8", "0", "-1", "0.5", ".5", "1e999", "-0.0", "1e", "5.",
    "99999999999999999999999", "@", ":", "\xc3\xa9", "\xff", "\0", "x", "_", "+", "-", "."};

/* One parse of the n bytes at s: an error must be well formed, a success must
 * round-trip. */
static bool parse_ok(const char *s, size_t n) {
  Spec sp;
  Diag d;
  char *buf = dup_exact(s, n);
  int rc = spec_parse("fuzz.spec", buf, n, &sp, &d);
  free(buf);
  if (rc == 0)
    return round_trips(&sp) && sp.name[0] != '\0';
  size_t nl = 0;
  for (const char *p = d.text; *p; p++)
    nl += *p == '\n';
  return rc == -1 && strncmp(d.text, "fuzz.spec:", 10) == 0 && d.line >= 1 && d.col >= 1 &&
         nl == 3 && d.msg[0] != '\0';
}

static void test_fuzz_random(Tally *t) {
  Rng r = {12345};
  char buf[512];
  int bad = 0;
  for (int i = 0; i < 4000; i++) {
    size_t n = 0, want = below(&r, sizeof buf - 64);
    if (i % 2 == 0) { /* raw bytes */
      for (; n < want; n++)
        buf[n] = (char)next(&r);
    } else { /* spec-like fragments, sometimes with a valid start */
      if (i % 4 == 1)
        n = (size_t)snprintf(buf, sizeof buf, "attention f {");
      while (n < want) {
        const char *f = frags[below(&r, sizeof frags / sizeof *frags)];
        size_t fl = f[0] ? strlen(f) : 1;
        memcpy(buf + n, f, fl);
        n += fl;
      }
    }
    bad += !parse_ok(buf, n);
  }
  CHECK(t, bad == 0);
}

static void test_fuzz_mutations(Tally *t) {
  static const char base[] = "# mutated\nattention m {\n  head_dim = 64\n  max_seq = 512\n"
                             "  sparsity = 0.8, select = head_quantile\n  keep_min = 2\n"
                             "  causal = true\n  dropout = 0.1\n  backward = true\n"
                             "  tile { rows = 8, cols = 64, warps = 4 }\n}\n";
  Rng r = {777};
  char buf[1024];
  int bad = 0, accepted = 0;
  for (int i = 0; i < 6000; i++) {
    size_t n = sizeof base - 1;
    memcpy(buf, base, n);
    for (int edits = 1 + (int)below(&r, 4); edits > 0; edits--) {
      size_t at = below(&r, n + 1), k = 1 + below(&r, 8);
      switch (below(&r, 5)) {
      case 0: /* overwrite a byte */
        if (at < n)
          buf[at] = (char)next(&r);
        break;
      case 1: { /* insert a fragment */
        const char *f = frags[below(&r, sizeof frags / sizeof *frags)];
        size_t fl = f[0] ? strlen(f) : 1;
        if (n + fl < sizeof buf) {
          memmove(buf + at + fl, buf + at, n - at);
          memcpy(buf + at, f, fl);
          n += fl;
        }
        break;
      }
      case 2: /* delete a run */
        if (k > n - at)
          k = n - at;
        memmove(buf + at, buf + at + k, n - at - k);
        n -= k;
        break;
      case 3: /* duplicate a run */
        if (k > n - at)
          k = n - at;
        if (n + k < sizeof buf) {
          memmove(buf + at + k, buf + at, n - at);
          n += k;
        }
        break;
      default: /* truncate */
        n = at;
      }
    }
    bad += !parse_ok(buf, n);
    Spec s;
    Diag d;
    accepted += spec_parse("m", buf, n, &s, &d) == 0;
  }
  CHECK(t, bad == 0);
  CHECK(t, accepted > 0); /* some mutations stay valid (e.g. inside comments) */
}

/* Big inputs: long lines, long tokens, many entries, deep braces. */
static void test_huge(Tally *t) {
  size_t n = 1 << 20;
  char *buf = malloc(n + 64);
  Spec s;
  Diag d;

  memset(buf, '{', n);
  CHECK(t, spec_parse("h", buf, n, &s, &d) == -1 && d.line == 1 && d.col == 1);
  memcpy(buf, "attention a ", 12);
  CHECK(t, spec_parse("h", buf, n, &s, &d) == -1 && strstr(d.msg, "expected a key") &&
               strlen(d.text) < 1500);
  memset(buf, 'a', n);
  memcpy(buf, "attention ", 10);
  CHECK(t, spec_parse("h", buf, n, &s, &d) == -1 && strstr(d.msg, "too long"));
  memcpy(buf, "attention a { head_dim = ", 25);
  memset(buf + 25, '9', n - 25);
  CHECK(t, spec_parse("h", buf, n, &s, &d) == -1 && strstr(d.msg, "number is too long"));
  memset(buf + 25, ' ', n - 25); /* a value then a megabyte of blanks and no '}' */
  memcpy(buf + 25, "64", 2);
  CHECK(t, spec_parse("h", buf, n, &s, &d) == -1 && d.col == 28);

  size_t len = (size_t)snprintf(buf, n, "attention a {\n");
  while (len + 20 < n)
    len += (size_t)snprintf(buf + len, n - len, "  # c\n  causal = true\n");
  CHECK(t, spec_parse("h", buf, len, &s, &d) == -1 && strstr(d.msg, "duplicate key 'causal'"));

  len = (size_t)snprintf(buf, n, "attention a {");
  while (len + 8 < n)
    len += (size_t)snprintf(buf + len, n - len, " tile {");
  CHECK(t, spec_parse("h", buf, len, &s, &d) == -1 && strstr(d.msg, "unknown tile key 'tile'"));
  free(buf);
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
