/* spec_cases.c: test_spec's good and bad specs: the defaults; good specs, inline and
 * every GOOD_DIR/<name>.spec, parse to the expected fields and their canonical text
 * reads back to itself; every BAD_DIR/<name>.spec fails, and the first line of its
 * diagnostic, less the "PATH:" prefix, equals the first line of its .expect. Apart
 * because these are the language's accepted and refused inputs, case by case. */
#define _POSIX_C_SOURCE 200809L
#include "spec_test.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- good specs ---- */

void test_defaults(Tally *t) {
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

void test_good_inline(Tally *t) {
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
  if (!check(t, rc == 0, __FILE__, __LINE__, what)) {
    if (text)
      fputs(d.text, stderr);
    free(text);
    return;
  }
  snprintf(what, sizeof what, "good spec %s round-trips through its canonical text", path);
  check(t, round_trips(&s), __FILE__, __LINE__, what);
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

void test_good_files(Tally *t, const char *dir) {
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
  if (!check(t, text && exp, __FILE__, __LINE__, what)) {
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
  check(t, ok, __FILE__, __LINE__, what);
  free(text);
  free(exp_z);
}

void test_bad_files(Tally *t, const char *dir) {
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

