/* spec_text.c: test_spec's text around a spec: diagnostics render exactly (tabs,
 * UTF-8, end of file, long lines), -D overrides good and bad, the canonical text
 * and its hash are stable. Apart because these fix what users and caches see,
 * not what parses. */
#define _POSIX_C_SOURCE 200809L
#include "spec_test.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- diagnostics ---- */

void test_diag_render(Tally *t) {
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
  check(t, rc == -1 && strcmp(got, want) == 0, __FILE__, __LINE__, what);
  snprintf(what, sizeof what, "-D '%s' leaves the spec unchanged", kv);
  check(t, same_canon(&s, base), __FILE__, __LINE__, what);
}

void test_overrides(Tally *t) {
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

void test_canonical(Tally *t) {
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

