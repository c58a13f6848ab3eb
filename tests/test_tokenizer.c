/* Tests of the vocabulary loader and the WordPiece tokenizer:
 *   - vocab.txt errors (duplicate, empty line, CRLF, NUL, invalid UTF-8) name file:line;
 *   - strict UTF-8 validation, invalid tokenizer input reported by byte offset;
 *   - WordPiece rules, truncation and dynamic-padding batches on a tiny vocabulary;
 *   - parity with Hugging Face's BertTokenizer on tests/fixtures/tokenizer/
 *     (hard_cases.tsv, dev_ids.txt) with the bert-base-uncased vocabulary;
 *   - the time to tokenize all SST-2 training sentences.
 * Usage: test_tokenizer FIXTURE_DIR DATA_DIR (DATA_DIR = ../shared/data; the parts
 * that need it are skipped with a message when it is absent).
 * Prints "N passed, M failed, K skipped" and exits non-zero on failure. */
#include "check.h"
#include "data.h"
#include "tokenizer.h"
#include "vocab.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <utf8proc.h>

static int skipped;
static char tmpdir[64];

static void skip(const char *what, const char *why) {
  skipped++;
  printf("SKIP %s: %s\n", what, why);
}

static int file_exists(const char *path) { return access(path, R_OK) == 0; }

/* Writes bytes to tmpdir/name; returns the path (static buffer). */
static const char *write_tmp(const char *name, const char *bytes, size_t len) {
  static char path[128];
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  FILE *f = fopen(path, "wb");
  if (!f) { perror(path); exit(2); }
  fwrite(bytes, 1, len, f);
  fclose(f);
  return path;
}

/* ---- vocabulary loader ---- */

static void expect_vocab_error(const char *name, const char *bytes, size_t len, const char *want) {
  char err[256] = "";
  const char *path = write_tmp(name, bytes, len);
  Vocab *v = vocab_load(path, err, sizeof err);
  CHECK(v == NULL && strstr(err, want), "%s: want error containing '%s', got '%s'", name, want, err);
  vocab_free(v);
  unlink(path);
}

static void test_vocab_errors(void) {
  expect_vocab_error("dup.txt", "[PAD]\nb\nc\nb\n", 12, "dup.txt:4: duplicate token 'b' (first on line 2)");
  expect_vocab_error("empty_line.txt", "a\nb\n\nc\n", 7, "empty_line.txt:3: empty line");
  expect_vocab_error("crlf.txt", "a\r\nb\r\n", 6, "crlf.txt:1:2: carriage return");
  expect_vocab_error("utf8.txt", "a\nxy\xC3(\n", 7, "utf8.txt:2:3: invalid UTF-8");
  expect_vocab_error("nul.txt", "a\nb\0c\n", 6, "nul.txt:2:2: NUL byte");
  expect_vocab_error("zero.txt", "", 0, "zero.txt:1: empty vocabulary file");
  expect_vocab_error("blank_end.txt", "a\nb\n\n", 5, "blank_end.txt:3: empty line");
  char err[256] = "";
  CHECK(vocab_load("/nonexistent/vocab.txt", err, sizeof err) == NULL &&
            strstr(err, "/nonexistent/vocab.txt: cannot open"), "missing file: '%s'", err);
}

static void test_vocab_lookup(void) {
  char err[256] = "";
  const char *path = write_tmp("ok.txt", "[PAD]\nab\n##c\n\xC3\xA9t\xC3\xA9", 18); /* no final LF */
  Vocab *v = vocab_load(path, err, sizeof err);
  unlink(path);
  CHECK(v != NULL, "ok.txt: %s", err);
  if (!v) return;
  CHECK(vocab_size(v) == 4, "size %d", vocab_size(v));
  CHECK(vocab_lookup(v, "ab", 2) == 1 && vocab_lookup(v, "##c", 3) == 2, "lookup");
  CHECK(vocab_lookup(v, "\xC3\xA9t\xC3\xA9", 5) == 3, "lookup of the last, unterminated line");
  CHECK(vocab_lookup(v, "a", 1) == -1 && vocab_lookup(v, "abc", 3) == -1, "absent tokens");
  CHECK(strcmp(vocab_token(v, 2), "##c") == 0 && vocab_token(v, 4) == NULL, "vocab_token");
  CHECK(vocab_max_token_chars(v) == 5, "max chars %d", vocab_max_token_chars(v));
  vocab_free(v);
}

/* ---- UTF-8 ---- */

static void test_utf8(void) {
  static const struct { const char *s; size_t bad; } cases[] = {
      {"plain ascii", (size_t)-1},
      {"\xDF\xBF \xE0\xA0\x80 \xEF\xBF\xBF \xF0\x90\x80\x80 \xF4\x8F\xBF\xBF", (size_t)-1},
      {"\xED\x9F\xBF \xEE\x80\x80", (size_t)-1}, /* U+D7FF, U+E000 */
      {"ab\xC0\x80", 2},                         /* overlong NUL */
      {"\xE0\x80\x80", 0},                       /* overlong 3-byte */
      {"x\xF0\x80\x80\x80", 1},                  /* overlong 4-byte */
      {"xx\xED\xA0\x80", 2},                     /* surrogate U+D800 */
      {"\xF4\x90\x80\x80", 0},                   /* past U+10FFFF */
      {"abc\x80", 3},                            /* lone continuation */
      {"\xC3", 0},                               /* truncated */
      {"a\xE2\x82", 1},                          /* truncated 3-byte */
      {"ok\xFF", 2},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    size_t got = utf8_find_invalid(cases[i].s, strlen(cases[i].s));
    CHECK(got == cases[i].bad, "utf8 case %zu: offset %zu, want %zu", i, got, cases[i].bad);
  }
}

/* ---- WordPiece rules on a tiny vocabulary ---- */

static Tokenizer *tiny_tokenizer(void) {
  static const char *toks[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "u",
                               "un",    "##aff", "##able", "a",    "##a",    "b",
                               ",",     "caf",   "##e",    "x",    "bc",     "##cd"};
  char err[256] = "";
  Tokenizer *t = tok_new(vocab_from_tokens(toks, 18, "tiny", err, sizeof err), err, sizeof err);
  CHECK(t != NULL, "tiny tokenizer: %s", err);
  return t;
}

/* Encodes text with max_len and compares with want[0..nwant). */
static void expect_ids(const Tokenizer *t, const char *text, int max_len, const int32_t *want,
                       int nwant) {
  int32_t ids[512];
  int n = -1;
  char err[256] = "";
  int rc = tok_encode(t, text, strlen(text), max_len, ids, &n, err, sizeof err);
  int same = rc == 0 && n == nwant && memcmp(ids, want, (size_t)n * sizeof *ids) == 0;
  CHECK(same, "'%s' (max_len %d): rc %d n %d want %d %s", text, max_len, rc, n, nwant, err);
}

static void test_wordpiece(const Tokenizer *t) {
  expect_ids(t, "unaffable", 512, (int32_t[]){2, 6, 7, 8, 3}, 5);      /* longest match */
  expect_ids(t, "UNAFFABLE, b", 512, (int32_t[]){2, 6, 7, 8, 12, 11, 3}, 7);
  expect_ids(t, "unaffablex b", 512, (int32_t[]){2, 1, 11, 3}, 4);  /* no match: whole word UNK */
  expect_ids(t, "bcd", 512, (int32_t[]){2, 1, 3}, 3);               /* greedy, no backtracking */
  expect_ids(t, "Café", 512, (int32_t[]){2, 13, 14, 3}, 4);
  expect_ids(t, "", 512, (int32_t[]){2, 3}, 2);
  expect_ids(t, "b b b b", 4, (int32_t[]){2, 11, 11, 3}, 4);
  expect_ids(t, "unaffable", 3, (int32_t[]){2, 6, 3}, 3);
  expect_ids(t, "x [MASK]x[SEP]", 512, (int32_t[]){2, 15, 4, 15, 3, 3}, 6);
  char word[128];
  memset(word, 'a', 101);
  word[100] = '\0';
  int32_t want[103] = {2};
  for (int i = 1; i <= 100; i++) want[i] = i == 1 ? 9 : 10;
  want[101] = 3;
  expect_ids(t, word, 512, want, 102);
  word[100] = 'a', word[101] = '\0';
  expect_ids(t, word, 512, (int32_t[]){2, 1, 3}, 3);
}

static void test_encode_errors(const Tokenizer *t) {
  int32_t ids[16];
  int n = 0;
  char err[256] = "";
  int rc = tok_encode(t, "ab\xFF" "cd", 5, 16, ids, &n, err, sizeof err);
  CHECK(rc == -1 && strstr(err, "invalid UTF-8 at byte offset 2"), "bad UTF-8: '%s'", err);
  rc = tok_encode(t, "a\xED\xA0\x80", 4, 16, ids, &n, err, sizeof err);
  CHECK(rc == -1 && strstr(err, "byte offset 1"), "surrogate: '%s'", err);
  rc = tok_encode(t, "a", 1, 1, ids, &n, err, sizeof err);
  CHECK(rc == -1 && strstr(err, "max_len 1"), "max_len 1: '%s'", err);
  rc = tok_encode(t, NULL, 0, 16, ids, &n, err, sizeof err);
  CHECK(rc == 0 && n == 2, "NULL empty text");
  rc = tok_encode(t, "un\0aff", 6, 16, ids, &n, err, sizeof err);
  CHECK(rc == 0 && n == 4 && ids[1] == 6 && ids[2] == 7, "embedded NUL is dropped like HF's _clean_text");
}

static void test_batch(const Tokenizer *t) {
  const char *texts[] = {"b", "unaffable b", ""};
  TokBatch b;
  char err[256] = "";
  int rc = tok_encode_batch(t, texts, NULL, 3, 512, &b, err, sizeof err);
  CHECK(rc == 0 && b.batch == 3 && b.seq_len == 6, "batch shape %d x %d: %s", b.batch, b.seq_len, err);
  if (rc == 0) {
    static const int32_t want[18] = {2, 11, 3, 0, 0, 0, 2, 6, 7, 8, 11, 3, 2, 3, 0, 0, 0, 0};
    CHECK(memcmp(b.ids, want, sizeof want) == 0, "batch ids");
    CHECK(b.lengths[0] == 3 && b.lengths[1] == 6 && b.lengths[2] == 2, "batch lengths");
  }
  tok_batch_free(&b);
  const char *bad[] = {"b", "b\xC3"};
  rc = tok_encode_batch(t, bad, NULL, 2, 512, &b, err, sizeof err);
  CHECK(rc == -1 && strstr(err, "text 1: invalid UTF-8 at byte offset 1") && !b.ids && !b.lengths,
        "batch error: '%s'", err);
}

static void test_missing_special(void) {
  static const char *toks[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "a"};
  char err[256] = "";
  Tokenizer *t = tok_new(vocab_from_tokens(toks, 5, "nomask", err, sizeof err), err, sizeof err);
  CHECK(t == NULL && strstr(err, "lacks the special token [MASK]"), "missing [MASK]: '%s'", err);
  tok_free(t);
}

/* ---- fixtures ---- */

/* The character a one-letter JSON escape stands for, or -1. */
static int json_escape(char e) {
  switch (e) {
  case '"': case '\\': case '/': return e;
  case 'b': return '\b';
  case 'f': return '\f';
  case 'n': return '\n';
  case 'r': return '\r';
  case 't': return '\t';
  default: return -1;
  }
}

/* A \uXXXX escape (with its low surrogate when s starts a pair) at s; advances *s. */
static int32_t json_unicode(const char **s) {
  unsigned hi = 0, lo = 0;
  if (sscanf(*s, "%4x", &hi) != 1) return -1;
  *s += 4;
  if (hi >= 0xD800 && hi < 0xDC00 && (*s)[0] == '\\' && (*s)[1] == 'u' &&
      sscanf(*s + 2, "%4x", &lo) == 1) {
    *s += 6;
    hi = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
  }
  return (int32_t)hi;
}

/* Decodes a JSON string literal (as Python's json.dumps writes it) at s into out;
 * returns the byte length, or -1. */
static long json_string(const char *s, char *out, size_t cap) {
  size_t n = 0;
  if (*s++ != '"') return -1;
  while (*s && *s != '"') {
    int32_t c = (unsigned char)*s++;
    if (c == '\\') {
      char e = *s++;
      c = e == 'u' ? json_unicode(&s) : json_escape(e);
    }
    if (c < 0 || n + 4 >= cap) return -1;
    n += (size_t)utf8proc_encode_char(c, (utf8proc_uint8_t *)out + n);
  }
  return *s == '"' ? (long)n : -1;
}

/* Parses space-separated ids; returns the count. */
static int parse_ids(const char *s, int32_t *ids, int cap) {
  int n = 0;
  char *end;
  for (long v = strtol(s, &end, 10); end != s && n < cap; v = strtol(s, &end, 10)) {
    ids[n++] = (int32_t)v;
    s = end;
  }
  return n;
}

static int same_ids(const int32_t *a, int na, const int32_t *b, int nb) {
  return na == nb && memcmp(a, b, (size_t)na * sizeof *a) == 0;
}

static void print_ids(const char *label, const int32_t *ids, int n) {
  fprintf(stderr, "  %s:", label);
  for (int i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
  fputc('\n', stderr);
}

/* One hard_cases.tsv line: NAME \t MAX_LEN \t JSON \t IDS. */
static void hard_case(const Tokenizer *t, char *line, int lineno, char *text, size_t cap) {
  char *f[4] = {line};
  for (int i = 1; i < 4; i++) {
    f[i] = f[i - 1] ? strchr(f[i - 1], '\t') : NULL;
    if (f[i]) *f[i]++ = '\0';
  }
  long len = f[3] ? json_string(f[2], text, cap) : -1;
  CHECK(len >= 0, "hard_cases.tsv:%d: malformed line", lineno);
  if (len < 0) return;
  static int32_t want[1024], got[1024];
  int nwant = parse_ids(f[3], want, 1024), ngot = 0, max_len = atoi(f[1]);
  char err[256] = "";
  int rc = tok_encode(t, text, (size_t)len, max_len, got, &ngot, err, sizeof err);
  int ok = rc == 0 && same_ids(got, ngot, want, nwant);
  CHECK(ok, "hard case %s (hard_cases.tsv:%d) differs from BertTokenizer %s", f[0], lineno, err);
  if (!ok) print_ids("want", want, nwant), print_ids("got ", got, ngot);
}

static void test_hard_cases(const Tokenizer *t, const char *fixtures) {
  char path[512], line[65536], text[65536];
  snprintf(path, sizeof path, "%s/hard_cases.tsv", fixtures);
  FILE *f = fopen(path, "r");
  CHECK(f != NULL, "cannot open %s", path);
  if (!f) return;
  int lineno = 0, cases = 0;
  while (fgets(line, sizeof line, f)) {
    lineno++;
    line[strcspn(line, "\n")] = '\0';
    if (line[0] == '#') {
      if (strncmp(line, "# unicode ", 10) == 0 && strcmp(line + 10, utf8proc_unicode_version()))
        printf("note: fixture made with Unicode %s, utf8proc has %s\n", line + 10, utf8proc_unicode_version());
      continue;
    }
    hard_case(t, line, lineno, text, sizeof text);
    cases++;
  }
  fclose(f);
  CHECK(cases >= 50, "only %d hard cases", cases);
  printf("hard cases: %d compared\n", cases);
}

/* Every dev sentence against dev_ids.txt, singly and through 16-row batches. */
static void test_dev(const Tokenizer *t, const Sst2Set *dev, const char *fixtures) {
  char path[512], line[16384];
  snprintf(path, sizeof path, "%s/dev_ids.txt", fixtures);
  FILE *f = fopen(path, "r");
  CHECK(f != NULL, "cannot open %s", path);
  if (!f) return;
  static int32_t want[512], got[512];
  int i = 0, same = 0;
  for (; i < dev->n && fgets(line, sizeof line, f); i++) {
    int nwant = parse_ids(line, want, 512), ngot = 0;
    char err[256] = "";
    int rc = tok_encode(t, dev->rows[i].text, dev->rows[i].len, 512, got, &ngot, err, sizeof err);
    int ok = rc == 0 && same_ids(got, ngot, want, nwant);
    same += ok;
    if (!ok) fprintf(stderr, "dev sentence %d (dev.tsv:%d) differs: %s\n", i, i + 2, dev->rows[i].text);
  }
  CHECK(i == 872 && fgets(line, sizeof line, f) == NULL, "dev_ids.txt has a line count other than %d", i);
  fclose(f);
  CHECK(same == dev->n, "dev: %d of %d sentences match BertTokenizer", same, dev->n);
  printf("dev: %d of %d sentences match BertTokenizer\n", same, dev->n);
}

static void test_dev_batches(const Tokenizer *t, const Sst2Set *dev) {
  int bad = 0;
  for (int s = 0; s < dev->n; s += 16) {
    const char *texts[16];
    size_t lens[16];
    int nb = dev->n - s < 16 ? dev->n - s : 16, longest = 0;
    for (int b = 0; b < nb; b++) texts[b] = dev->rows[s + b].text, lens[b] = dev->rows[s + b].len;
    TokBatch tb;
    char err[256] = "";
    bad += tok_encode_batch(t, texts, lens, nb, 512, &tb, err, sizeof err) != 0;
    for (int b = 0; b < tb.batch; b++) {
      int32_t one[512];
      int n = 0;
      tok_encode(t, texts[b], lens[b], 512, one, &n, err, sizeof err);
      longest = n > longest ? n : longest;
      bad += n != tb.lengths[b] || memcmp(one, tb.ids + (size_t)b * (size_t)tb.seq_len, (size_t)n * 4);
      for (int i = n; i < tb.seq_len; i++) bad += tb.ids[(size_t)b * (size_t)tb.seq_len + (size_t)i] != 0;
    }
    bad += tb.seq_len != longest;
    tok_batch_free(&tb);
  }
  CHECK(bad == 0, "dev batches: %d mismatches against single encodes", bad);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void time_train(const Tokenizer *t, const char *data) {
  char path[512], err[512] = "";
  snprintf(path, sizeof path, "%s/sst2/train.tsv", data);
  Sst2Set train;
  if (sst2_load(path, &train, err, sizeof err) != 0) { CHECK(0, "%s", err); return; }
  static int32_t ids[512];
  long tokens = 0, bad = 0;
  double t0 = now();
  for (int i = 0; i < train.n; i++) {
    int n = 0;
    bad += tok_encode(t, train.rows[i].text, train.rows[i].len, 512, ids, &n, err, sizeof err) != 0;
    tokens += n;
  }
  double dt = now() - t0;
  CHECK(bad == 0 && train.n == 67349, "train: %ld failures over %d sentences", bad, train.n);
  printf("timing: tokenized %d train sentences (%ld tokens) in %.3f s (%.0f sentences/s)\n",
         train.n, tokens, dt, train.n / dt);
  sst2_free(&train);
}

static void test_real(const char *fixtures, const char *data) {
  char vocab[512], dev_path[512], err[512] = "";
  snprintf(vocab, sizeof vocab, "%s/bert-base-uncased/vocab.txt", data);
  if (!file_exists(vocab)) { skip("bert-base-uncased parity (hard cases, dev, timing)", "no vocab.txt under the data folder"); return; }
  Tokenizer *t = tok_load(vocab, err, sizeof err);
  CHECK(t != NULL, "%s", err);
  if (!t) return;
  TokSpecialIds sp = tok_special_ids(t);
  CHECK(sp.pad == 0 && sp.unk == 100 && sp.cls == 101 && sp.sep == 102 && sp.mask == 103 &&
            vocab_size(tok_vocab(t)) == 30522, "bert-base-uncased special ids / size");
  test_hard_cases(t, fixtures);
  snprintf(dev_path, sizeof dev_path, "%s/sst2/dev.tsv", data);
  Sst2Set dev;
  if (!file_exists(dev_path)) {
    skip("SST-2 dev parity and train timing", "no sst2/dev.tsv under the data folder");
  } else if (sst2_load(dev_path, &dev, err, sizeof err) != 0) {
    CHECK(0, "%s", err);
  } else {
    test_dev(t, &dev, fixtures);
    test_dev_batches(t, &dev);
    sst2_free(&dev);
    time_train(t, data);
  }
  tok_free(t);
}

int main(int argc, char **argv) {
  if (argc != 3) { fprintf(stderr, "usage: %s FIXTURE_DIR DATA_DIR\n", argv[0]); return 2; }
  snprintf(tmpdir, sizeof tmpdir, "/tmp/crisp_tok_XXXXXX");
  if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 2; }
  test_vocab_errors();
  test_vocab_lookup();
  test_utf8();
  Tokenizer *t = tiny_tokenizer();
  if (t) test_wordpiece(t), test_encode_errors(t), test_batch(t);
  tok_free(t);
  test_missing_special();
  rmdir(tmpdir);
  test_real(argv[1], argv[2]);
  printf("%d passed, %d failed, %d skipped\n", check_passed, check_failed, skipped);
  return check_failed ? 1 : 0;
}
