/* test_safetensors.c: tests of the safetensors reader and writer (model/safetensors.h).
 *
 *     test_safetensors [TMPDIR]        (default: a fresh folder under /tmp)
 *
 * - F32 round trip through st_write (scalars, empty tensors, names needing escapes,
 *   metadata), byte-exact header layout, and F16/BF16/F64 files built by hand;
 * - every one of the 65536 F16 values against an independent decoding;
 * - lookup with and without the "distilbert."/"bert." prefix;
 * - malformed files, each failing with a message that names the file and contains
 *   an expected substring;
 * - writer errors leave nothing behind (no file, no temporary);
 * - random mutations of a valid file never crash, and whatever opens is consistent
 *   (CRISP_FUZZ_ITERS, CRISP_FUZZ_SEED override the defaults).
 * Prints "N passed, M failed"; exits non-zero on any failure. */
#include "check.h"
#include "safetensors.h"

#include <dirent.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[512];

static void path_in(char *out, size_t n, const char *name) {
  snprintf(out, n, "%s/%s", g_dir, name);
}

/* (Unlinked first: truncating a file in place makes ext4 flush it on close.) */
static void write_bytes(const char *path, const void *p, size_t n) {
  unlink(path);
  FILE *f = fopen(path, "wb");
  if (!f) {
    perror(path);
    exit(2);
  }
  if (n) fwrite(p, 1, n, f);
  fclose(f);
}

/* A file: 8-byte length of header, header, data. */
static void write_st(const char *path, const char *header, const void *data, size_t ndata) {
  size_t hn = strlen(header);
  unsigned char *b = malloc(8 + hn + ndata + 1);
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hn >> (8 * i));
  memcpy(b + 8, header, hn);
  if (ndata) memcpy(b + 8 + hn, data, ndata);
  write_bytes(path, b, 8 + hn + ndata);
  free(b);
}

static unsigned char *read_all(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc((size_t)len + 1);
  *n = fread(b, 1, (size_t)len, f);
  fclose(f);
  return b;
}

/* Files in g_dir whose name contains s. */
static int count_files(const char *s) {
  DIR *d = opendir(g_dir);
  int n = 0;
  for (struct dirent *e; d && (e = readdir(d));) n += strstr(e->d_name, s) != NULL;
  if (d) closedir(d);
  return n;
}

/* ---- round trips ------------------------------------------------------------- */

static void test_f32_roundtrip(void) {
  float a[6] = {0, 1, -2.5f, 3e-38f, INFINITY, -0.0f}, s[1] = {42};
  StWriteTensor t[] = {
      {"layer.0.w", 2, {2, 3}, a},
      {"scalar", 0, {0}, s},
      {"empty", 2, {0, 3}, NULL},
      {"we\"ird\\ name \xc3\xa9", 1, {1}, s},
  };
  char path[600], err[512];
  path_in(path, sizeof path, "rt.safetensors");
  CHECK(st_write(path, t, 4, "{\"framework\":\"crisp\"}", err, sizeof err) == 0, "%s", err);
  SafeTensors *st = st_open(path, err, sizeof err);
  CHECK(st != NULL, "reopen: %s", err);
  if (!st) return;
  CHECK(st_count(st) == 4, "count %d", st_count(st));
  CHECK(st_metadata(st, "format") && strcmp(st_metadata(st, "format"), "pt") == 0, "format pt");
  CHECK(st_metadata(st, "framework") && strcmp(st_metadata(st, "framework"), "crisp") == 0,
        "metadata kept");
  const StTensor *w = st_find(st, "layer.0.w");
  float got[6];
  CHECK(w && w->rank == 2 && w->shape[0] == 2 && w->shape[1] == 3 && w->dtype == ST_F32,
        "layer.0.w shape");
  if (w && st_read_f32(w, got, 6, err, sizeof err) == 0)
    CHECK(memcmp(got, a, sizeof a) == 0, "layer.0.w values");
  const StTensor *sc = st_find(st, "scalar");
  CHECK(sc && sc->rank == 0 && sc->numel == 1 && st_read_f32(sc, got, 1, err, sizeof err) == 0 &&
            got[0] == 42, "scalar");
  const StTensor *em = st_find(st, "empty");
  CHECK(em && em->numel == 0 && em->nbytes == 0, "empty tensor");
  CHECK(st_find(st, "we\"ird\\ name \xc3\xa9") != NULL, "escaped name found");
  CHECK(st_read_f32(w, got, 5, err, sizeof err) != 0 && strstr(err, "holds 6"), "count check");
  st_close(st);
  size_t n;
  unsigned char *b = read_all(path, &n);
  uint64_t hn = 0;
  for (int i = 7; i >= 0; i--) hn = (hn << 8) | b[i];
  CHECK(hn % 8 == 0 && b[8 + hn - 1] != '\0', "header padded to 8 (%llu)", (unsigned long long)hn);
  free(b);
}

/* The header our writer makes for Hugging Face's own serialization test tensor. */
static void test_exact_bytes(void) {
  float d[6] = {0, 1, 2, 3, 4, 5};
  StWriteTensor t = {"attn.0", 3, {1, 2, 3}, d};
  char path[600], err[512];
  path_in(path, sizeof path, "exact.safetensors");
  CHECK(st_write(path, &t, 1, NULL, err, sizeof err) == 0, "%s", err);
  const char *want = "{\"__metadata__\":{\"format\":\"pt\"},\"attn.0\":{\"dtype\":\"F32\","
                     "\"shape\":[1,2,3],\"data_offsets\":[0,24]}}";
  size_t n, wn = strlen(want), pad = (8 - wn % 8) % 8;
  unsigned char *b = read_all(path, &n);
  CHECK(n == 8 + wn + pad + 24, "size %zu", n);
  CHECK(b[0] == wn + pad && memcmp(b + 8, want, wn) == 0, "header text");
  for (size_t i = 0; i < pad; i++) CHECK(b[8 + wn + i] == ' ', "space padding");
  CHECK(memcmp(b + 8 + wn + pad + 4, "\x00\x00\x80\x3f", 4) == 0, "1.0f little-endian");
  free(b);
}

/* Reference F16 decoding in double arithmetic. */
static double f16_ref(uint16_t h) {
  int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
  double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
  return s ? -v : v;
}

static void test_f16_exhaustive(void) {
  int bad = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    float f = st_f16_to_f32((uint16_t)h);
    double r = f16_ref((uint16_t)h);
    bool ok = isnan(r) ? isnan(f) : ((double)f == r && !signbit(f) == !signbit(r));
    if (!ok && bad++ < 5) fprintf(stderr, "f16 0x%04x -> %g, want %g\n", h, f, r);
  }
  CHECK(bad == 0, "%d F16 values decode wrongly", bad);
  CHECK(st_f16_to_f32(0x0001) == 0x1p-24f && st_f16_to_f32(0x03ff) == 0x3ffp-24f, "subnormals");
  CHECK(st_f16_to_f32(0x7bff) == 65504.0f && isinf(st_f16_to_f32(0xfc00)), "max, -inf");
  uint32_t u;
  float nan = st_f16_to_f32(0x7e01);
  memcpy(&u, &nan, 4);
  CHECK(isnan(nan) && (u & 0x7fffff) == (1u << 22 | 1u << 13), "nan payload kept");
}

static void test_f16_bf16_files(void) {
  /* F16: 1, -2, 2^-24, inf, nan; BF16: 1, -2, 2^-133, -inf; F64: pi; I64 (not float). */
  unsigned char d[] = {0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00, 0x00, 0x7c, 0x00, 0x7e,
                       0x80, 0x3f, 0x00, 0xc0, 0x01, 0x00, 0x80, 0xff,
                       0x18, 0x2d, 0x44, 0x54, 0xfb, 0x21, 0x09, 0x40,
                       7, 0, 0, 0, 0, 0, 0, 0};
  const char *h = "{\"h\":{\"dtype\":\"F16\",\"shape\":[5],\"data_offsets\":[0,10]},"
                  "\"b\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[10,18]},"
                  "\"d\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[18,26]},"
                  "\"i\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[26,34]}}";
  char path[600], err[512];
  path_in(path, sizeof path, "half.safetensors");
  write_st(path, h, d, sizeof d);
  SafeTensors *st = st_open(path, err, sizeof err);
  CHECK(st != NULL, "half: %s", err);
  if (!st) return;
  float v[5];
  const StTensor *t = st_find(st, "h");
  CHECK(t && st_read_f32(t, v, 5, err, sizeof err) == 0 && v[0] == 1 && v[1] == -2 &&
            v[2] == 0x1p-24f && isinf(v[3]) && v[3] > 0 && isnan(v[4]), "F16 values");
  t = st_find(st, "b");
  CHECK(t && st_read_f32(t, v, 4, err, sizeof err) == 0 && v[0] == 1 && v[1] == -2 &&
            v[2] == 0x1p-133f && isinf(v[3]) && v[3] < 0, "BF16 values");
  t = st_find(st, "d");
  CHECK(t && st_read_f32(t, v, 1, err, sizeof err) == 0 && v[0] == (float)3.141592653589793,
        "F64 value");
  t = st_find(st, "i");
  CHECK(t && t->dtype == ST_I64 && st_read_f32(t, v, 1, err, sizeof err) != 0 &&
            strstr(err, "I64 is not a floating-point type"), "I64 refused: %s", err);
  CHECK(st_tensor(st, 0) && strcmp(st_tensor(st, 0)->name, "h") == 0 && st_tensor(st, 4) == NULL,
        "data order");
  st_close(st);
}

static void test_prefix_lookup(void) {
  float x[2] = {1, 2};
  StWriteTensor t[] = {{"distilbert.embeddings.word_embeddings.weight", 1, {2}, x},
                       {"encoder.layer.0.output.dense.bias", 1, {2}, x},
                       {"classifier.bias", 1, {2}, x}};
  char path[600], err[512];
  path_in(path, sizeof path, "prefix.safetensors");
  CHECK(st_write(path, t, 3, NULL, err, sizeof err) == 0, "%s", err);
  SafeTensors *st = st_open(path, err, sizeof err);
  CHECK(st != NULL, "%s", err);
  if (!st) return;
  const StTensor *a = st_find(st, "embeddings.word_embeddings.weight");
  CHECK(a && strcmp(a->name, t[0].name) == 0, "prefix added");
  CHECK(st_find(st, "distilbert.embeddings.word_embeddings.weight") == a, "exact");
  CHECK(st_find(st, "bert.encoder.layer.0.output.dense.bias") != NULL, "bert. prefix dropped");
  CHECK(st_find(st, "distilbert.encoder.layer.0.output.dense.bias") != NULL, "distilbert. dropped");
  CHECK(st_find(st, "classifier.bias") != NULL, "no prefix");
  CHECK(st_find(st, "bert.embeddings.word_embeddings.weight") == NULL, "prefixes don't mix");
  CHECK(st_find(st, "classifier.weight") == NULL, "absent");
  st_close(st);
}

/* ---- malformed files -------------------------------------------------------------- */

typedef struct Bad {
  const char *name;
  const char *header;   /* NULL: raw bytes below */
  size_t ndata;         /* data bytes after the header (zeros) */
  const char *raw;      /* raw file when header is NULL */
  size_t nraw;
  const char *expect;
} Bad;

#define T(dt, shape, b, e) "{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":[" b "," e "]}"

static const Bad BAD[] = {
    {"empty", NULL, 0, "", 0, "byte 0: file is 0 bytes, too short for the 8-byte header length (empty file)"},
    {"short", NULL, 0, "\x10\0\0\0\0", 5, "file is 5 bytes, too short"},
    {"huge header length", NULL, 0, "\0\0\0\0\0\x01\0\0{}", 10, "byte 0: header length 1099511627776 exceeds the limit"},
    {"header past end", NULL, 0, "\x40\0\0\0\0\0\0\0{}", 10, "header length 64 runs past the end of the file (10 bytes"},
    {"zero header length", NULL, 0, "\0\0\0\0\0\0\0\0", 8, "header length 0 is too short"},
    {"not an object", "[1,2]", 0, NULL, 0, "byte 8: header does not start with '{'"},
    {"invalid JSON", "{\"a\": {\"dtype\": }", 0, NULL, 0, "byte 24: header: invalid JSON near \"}\""},
    {"unterminated", "{\"a\": ", 0, NULL, 0, "header: invalid JSON"},
    {"trailing junk", "{}  x", 0, NULL, 0, "byte 12: header: unexpected \"x\" after the JSON object"},
    {"bad UTF-8", "{\"a\xff\": 1}", 0, NULL, 0, "byte 11: header is not valid UTF-8"},
    {"NUL in header", NULL, 0, "\x06\0\0\0\0\0\0\0{\"\0\"}  ", 14, "byte 10: control byte 0x00"},
    {"entry not object", "{\"w\": 3}", 0, NULL, 0, "byte 9: tensor \"w\": must be an object"},
    {"dtype unknown", "{\"w\":" T("F33", "[1]", "0", "4") "}", 4, NULL, 0, "tensor \"w\": unknown dtype \"F33\""},
    {"dtype not string", "{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, NULL, 0, "\"dtype\" must be a string, but it is a number"},
    {"shape not array", "{\"w\":" T("F32", "7", "0", "4") "}", 4, NULL, 0, "\"shape\" must be an array, but it is a number"},
    {"shape missing", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, NULL, 0, "\"shape\" must be an array, but it is missing"},
    {"negative shape", "{\"w\":" T("F32", "[2,-3]", "0", "4") "}", 4, NULL, 0, "\"shape\"[1] must be a non-negative integer"},
    {"fractional shape", "{\"w\":" T("F32", "[1.5]", "0", "4") "}", 4, NULL, 0, "\"shape\"[0] must be a non-negative integer"},
    {"string in shape", "{\"w\":" T("F32", "[\"2\"]", "0", "4") "}", 4, NULL, 0, "\"shape\"[0] must be a non-negative integer"},
    {"rank 9", "{\"w\":" T("F32", "[1,1,1,1,1,1,1,1,1]", "0", "4") "}", 4, NULL, 0, "\"shape\" has 9 dimensions; at most 8"},
    {"shape overflow", "{\"w\":" T("F32", "[4294967296,4294967296,4294967296]", "0", "4") "}", 4, NULL, 0, "overflows"},
    {"shape/offset mismatch", "{\"w\":" T("F32", "[2]", "0", "4") "}", 4, NULL, 0, "\"data_offsets\" [0, 4] span 4 bytes, but shape x dtype F32 needs 8"},
    {"offsets not a pair", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4, NULL, 0, "\"data_offsets\" must be an array [begin, end], but it is an array of another length"},
    {"offsets missing", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, NULL, 0, "\"data_offsets\" must be an array [begin, end], but it is missing"},
    {"offset negative", "{\"w\":" T("F32", "[1]", "-4", "0") "}", 4, NULL, 0, "\"data_offsets\" must hold two non-negative integers"},
    {"offset huge", "{\"w\":" T("F32", "[1]", "0", "1e300") "}", 4, NULL, 0, "\"data_offsets\" must hold two non-negative integers"},
    {"end before begin", "{\"w\":" T("F32", "[0]", "4", "0") "}", 4, NULL, 0, "[4, 0] end before they begin"},
    {"offsets past end", "{\"w\":" T("F32", "[2]", "0", "8") "}", 4, NULL, 0, "\"data_offsets\" [0, 8] run past the end of the data (4 bytes after the header"},
    {"overlap", "{\"a\":" T("F32", "[2]", "0", "8") ",\"b\":" T("F32", "[2]", "4", "12") "}", 12, NULL, 0, "tensor \"b\": \"data_offsets\" [4, 12] overlap tensor \"a\""},
    {"gap", "{\"a\":" T("F32", "[1]", "0", "4") ",\"b\":" T("F32", "[1]", "8", "12") "}", 12, NULL, 0, "leave a gap of 4 bytes after offset 4"},
    {"gap at start", "{\"a\":" T("F32", "[1]", "4", "8") "}", 8, NULL, 0, "leave a gap of 4 bytes after offset 0"},
    {"bytes after last tensor", "{\"a\":" T("F32", "[1]", "0", "4") "}", 12, NULL, 0, "8 bytes after the last tensor's data belong to no tensor"},
    {"data but no tensors", "{}", 4, NULL, 0, "4 bytes after the last tensor's data belong to no tensor"},
    {"duplicate name", "{\"a\":" T("F32", "[1]", "0", "4") ",\"a\":" T("F32", "[1]", "4", "8") "}", 8, NULL, 0, "tensor \"a\": appears twice"},
    {"metadata not strings", "{\"__metadata__\":{\"format\":1}}", 0, NULL, 0, "byte 9: \"__metadata__\": key \"format\" must be a string, but it is a number"},
    {"metadata not object", "{\"__metadata__\":[]}", 0, NULL, 0, "\"__metadata__\": must be an object of strings"},
    {"metadata twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, NULL, 0, "\"__metadata__\": appears twice"},
    {"deep nesting", NULL, 0, NULL, 0, "invalid JSON"},
};

/* The deep-nesting case's header: {"a": [[[[...]]]]} 2000 levels deep. */
static char *deep_header(void) {
  enum { DEPTH = 2000 };
  char *h = malloc(2 * DEPTH + 16);
  size_t k = (size_t)sprintf(h, "{\"a\":");
  memset(h + k, '[', DEPTH);
  memset(h + k + DEPTH, ']', DEPTH);
  strcpy(h + k + 2 * DEPTH, "}");
  return h;
}

static void test_bad_files(void) {
  int n = (int)(sizeof BAD / sizeof *BAD);
  CHECK(n >= 15, "at least 15 malformed cases (%d)", n);
  for (int i = 0; i < n; i++) {
    const Bad *b = &BAD[i];
    char path[600], err[512] = "";
    path_in(path, sizeof path, "bad.safetensors");
    if (b->header) {
      void *zeros = calloc(1, b->ndata + 1);
      write_st(path, b->header, zeros, b->ndata);
      free(zeros);
    } else if (b->raw) {
      write_bytes(path, b->raw, b->nraw);
    } else {
      char *h = deep_header();
      write_st(path, h, NULL, 0);
      free(h);
    }
    SafeTensors *st = st_open(path, err, sizeof err);
    if (getenv("CRISP_VERBOSE")) printf("%-24s %s\n", b->name, err);
    CHECK(st == NULL, "%s: opened", b->name);
    st_close(st);
    CHECK(strstr(err, b->expect) != NULL && strncmp(err, path, strlen(path)) == 0,
          "%s:\n  got:  %s\n  want: PATH: ...%s...", b->name, err, b->expect);
  }
}

static void test_open_errors(void) {
  char err[512];
  CHECK(!st_open(g_dir, err, sizeof err) && strstr(err, "not a regular file"), "dir: %s", err);
  char path[600];
  path_in(path, sizeof path, "nonexistent.safetensors");
  CHECK(!st_open(path, err, sizeof err) && strstr(err, "cannot open"), "missing: %s", err);
}

/* ---- writer errors ---------------------------------------------------------------- */

static void test_write_errors(void) {
  float x[4] = {1, 2, 3, 4};
  char path[600], err[512];
  path_in(path, sizeof path, "w.safetensors");
  unlink(path);
  StWriteTensor dup[] = {{"a", 1, {1}, x}, {"b", 1, {1}, x}, {"a", 1, {1}, x}};
  CHECK(st_write(path, dup, 3, NULL, err, sizeof err) != 0 && strstr(err, "\"a\" is given twice"),
        "dup: %s", err);
  StWriteTensor neg = {"n", 2, {2, -1}, x};
  CHECK(st_write(path, &neg, 1, NULL, err, sizeof err) != 0 && strstr(err, "bad rank, shape"),
        "neg: %s", err);
  StWriteTensor nodata = {"n", 1, {4}, NULL};
  CHECK(st_write(path, &nodata, 1, NULL, err, sizeof err) != 0, "no data");
  StWriteTensor ok = {"ok", 1, {4}, x};
  CHECK(st_write(path, &ok, 1, "[1]", err, sizeof err) != 0 && strstr(err, "metadata"), "meta: %s", err);
  CHECK(st_write(path, &ok, 1, "{\"k\":2}", err, sizeof err) != 0 && strstr(err, "\"k\""), "meta2");
  StWriteTensor noname = {"", 1, {4}, x};
  CHECK(st_write(path, &noname, 1, NULL, err, sizeof err) != 0, "empty name");
  StWriteTensor badutf = {"\xc3", 1, {4}, x};
  CHECK(st_write(path, &badutf, 1, NULL, err, sizeof err) != 0, "bad UTF-8 name");
  CHECK(access(path, F_OK) != 0, "nothing written on errors");
  char nodir[700];
  snprintf(nodir, sizeof nodir, "%s/no/such/dir/x.safetensors", g_dir);
  CHECK(st_write(nodir, &ok, 1, NULL, err, sizeof err) != 0 && strstr(err, nodir), "no dir: %s", err);
  /* Overwriting keeps the file whole; no temporaries are left. */
  CHECK(st_write(path, &ok, 1, NULL, err, sizeof err) == 0, "%s", err);
  StWriteTensor two[] = {{"a", 1, {4}, x}, {"b", 1, {2}, x}};
  CHECK(st_write(path, two, 2, NULL, err, sizeof err) == 0, "%s", err);
  CHECK(st_write(path, dup, 3, NULL, err, sizeof err) != 0, "dup again");
  SafeTensors *st = st_open(path, err, sizeof err);
  CHECK(st && st_count(st) == 2, "previous file intact");
  st_close(st);
  CHECK(count_files(".tmp-") == 0, "no temporary files left");
}

/* ---- fuzzing ------------------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

/* A valid file with several dtypes and metadata: the seed of every mutation. */
static unsigned char *seed_file(size_t *n) {
  unsigned char d[40];
  for (int i = 0; i < 40; i++) d[i] = (unsigned char)(i * 37);
  const char *h = "{\"__metadata__\":{\"format\":\"pt\"},"
                  "\"distilbert.a\":" T("F32", "[2,2]", "0", "16") ","
                  "\"b\":" T("F16", "[3]", "16", "22") ","
                  "\"c\":" T("BF16", "[1,1]", "22", "24") ","
                  "\"d\":" T("I64", "[2]", "24", "40") "}  ";
  size_t hn = strlen(h);
  unsigned char *b = malloc(8 + hn + 40);
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hn >> (8 * i));
  memcpy(b + 8, h, hn);
  memcpy(b + 8 + hn, d, 40);
  *n = 8 + hn + 40;
  return b;
}

static size_t mutate(unsigned char *b, size_t n, size_t cap, uint64_t *s) {
  static const char TOKENS[] = "{}[]\":,0123456789-.e \\";
  int edits = 1 + (int)(rng_next(s) % 4);
  for (int k = 0; k < edits && n > 0; k++) {
    size_t at = rng_next(s) % n;
    switch (rng_next(s) % 6) {
    case 0: b[at] = (unsigned char)rng_next(s); break;
    case 1: b[at] = (unsigned char)TOKENS[rng_next(s) % (sizeof TOKENS - 1)]; break;
    case 2: n = at; break; /* truncate */
    case 3: b[rng_next(s) % 8] = (unsigned char)rng_next(s); break; /* header length */
    case 4: /* delete a byte */
      memmove(b + at, b + at + 1, n - at - 1);
      n--;
      break;
    default: /* insert a byte */
      if (n < cap) {
        memmove(b + at + 1, b + at, n - at);
        b[at] = (unsigned char)TOKENS[rng_next(s) % (sizeof TOKENS - 1)];
        n++;
      }
    }
  }
  return n;
}

/* Whatever opens must tile its data exactly and convert without complaint. */
static bool consistent(SafeTensors *st, size_t size) {
  size_t end = 0;
  for (int i = 0; i < st_count(st); i++) {
    const StTensor *t = st_tensor(st, i);
    if (i == 0) end = t->file_offset;
    if (t->file_offset != end || t->file_offset + t->nbytes > size) return false;
    end += t->nbytes;
    if (st_find(st, t->name) != t) return false;
    if (t->dtype == ST_F32 || t->dtype == ST_F16 || t->dtype == ST_BF16) {
      float *v = malloc((t->numel + 1) * sizeof *v);
      int rc = st_read_f32(t, v, t->numel, NULL, 0);
      free(v);
      if (rc) return false;
    }
  }
  return st_count(st) == 0 || end == size;
}

static void test_fuzz(void) {
  const char *it = getenv("CRISP_FUZZ_ITERS"), *sd = getenv("CRISP_FUZZ_SEED");
  int iters = it ? atoi(it) : 3000;
  uint64_t s = sd ? strtoull(sd, NULL, 0) : 0x5eed5eedULL;
  if (!s) s = 1;
  size_t n0;
  unsigned char *seed = seed_file(&n0), *b = malloc(n0 + 64);
  char path[600], err[512];
  path_in(path, sizeof path, "fuzz.safetensors");
  int opened = 0, inconsistent = 0;
  for (int i = 0; i < iters; i++) {
    memcpy(b, seed, n0);
    size_t n = mutate(b, n0, n0 + 64, &s);
    write_bytes(path, b, n);
    SafeTensors *st = st_open(path, err, sizeof err);
    if (st) {
      opened++;
      inconsistent += !consistent(st, n);
    } else if (strncmp(err, path, strlen(path)) != 0) {
      inconsistent++;
    }
    st_close(st);
  }
  CHECK(inconsistent == 0, "fuzz: %d inconsistent results", inconsistent);
  printf("fuzz: %d mutations, %d still valid, seed %#llx\n", iters, opened,
         (unsigned long long)(sd ? strtoull(sd, NULL, 0) : 0x5eed5eedULL));
  free(seed);
  free(b);
}

static void make_dir(int argc, char **argv) {
  if (argc > 1) {
    snprintf(g_dir, sizeof g_dir, "%s", argv[1]);
    mkdir(g_dir, 0755);
    return;
  }
  snprintf(g_dir, sizeof g_dir, "/tmp/crisp-st-XXXXXX");
  if (!mkdtemp(g_dir)) {
    perror("mkdtemp");
    exit(2);
  }
}

static void remove_dir(void) {
  DIR *d = opendir(g_dir);
  for (struct dirent *e; d && (e = readdir(d));) {
    if (e->d_name[0] == '.') continue;
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
    unlink(p);
  }
  if (d) closedir(d);
  rmdir(g_dir);
}

int main(int argc, char **argv) {
  make_dir(argc, argv);
  test_f32_roundtrip();
  test_exact_bytes();
  test_f16_exhaustive();
  test_f16_bf16_files();
  test_prefix_lookup();
  test_bad_files();
  test_open_errors();
  test_write_errors();
  test_fuzz();
  if (argc <= 1) remove_dir();
  return check_summary();
}
