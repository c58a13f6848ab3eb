/* spec_fuzz.c: test_spec's robustness: thousands of random byte strings and
 * mutations of a good spec, and huge inputs, never crash (build with
 * -fsanitize=address,undefined; inputs sit in exact-size buffers). Apart because it
 * asserts only survival and clean refusal, on a fixed pseudo-random stream. */
#define _POSIX_C_SOURCE 200809L
#include "spec_test.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void test_fuzz_random(Tally *t) {
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

void test_fuzz_mutations(Tally *t) {
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
void test_huge(Tally *t) {
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

