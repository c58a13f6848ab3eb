/* WordPiece vocabulary: strict vocab.txt loader and an open-addressing hash table
 * (FNV-1a, linear probing, load factor <= 1/2) from token bytes to id. */
#include "vocab.h"
#include "errf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

struct Vocab {
  int32_t n;
  char **tokens;   /* n NUL-terminated copies, index = id */
  size_t *lens;    /* byte lengths */
  int32_t *slots;  /* hash table of ids, -1 = empty */
  size_t mask;     /* table size - 1 (a power of two) */
  int max_chars;   /* longest token in code points, without "##" */
};

size_t utf8_find_invalid(const char *s, size_t len) {
  const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
  size_t i = 0;
  while (i < len) {
    if (p[i] < 0x80) { i++; continue; }
    utf8proc_int32_t cp;
    utf8proc_ssize_t k = utf8proc_iterate(p + i, (utf8proc_ssize_t)(len - i), &cp);
    if (k <= 0) return i;
    i += (size_t)k;
  }
  return (size_t)-1;
}

char *read_whole_file(const char *path, size_t *len, char *err, size_t cap) {
  FILE *f = fopen(path, "rb");
  if (!f) { model_fail(err, cap, "%s: cannot open: %s", path, strerror(errno)); return NULL; }
  size_t n = 0, size = 1 << 16;
  char *buf = malloc(size);
  size_t got;
  while (buf && (got = fread(buf + n, 1, size - n - 1, f)) > 0) {
    n += got;
    if (n + 1 == size) {
      char *grown = realloc(buf, size * 2);
      if (!grown) { free(buf); buf = NULL; break; }
      buf = grown, size *= 2;
    }
  }
  int bad = !buf || ferror(f);
  fclose(f);
  if (bad) { free(buf); model_fail(err, cap, "%s: read failed", path); return NULL; }
  buf[n] = '\0';
  *len = n;
  return buf;
}

static uint64_t hash_bytes(const char *s, size_t len) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return h;
}

int32_t vocab_lookup(const Vocab *v, const char *s, size_t len) {
  for (size_t i = hash_bytes(s, len) & v->mask;; i = (i + 1) & v->mask) {
    int32_t id = v->slots[i];
    if (id < 0) return -1;
    if (v->lens[id] == len && memcmp(v->tokens[id], s, len) == 0) return id;
  }
}

int32_t vocab_size(const Vocab *v) { return v->n; }

const char *vocab_token(const Vocab *v, int32_t id) {
  return id >= 0 && id < v->n ? v->tokens[id] : NULL;
}

int vocab_max_token_chars(const Vocab *v) { return v->max_chars; }

void vocab_free(Vocab *v) {
  if (!v) return;
  for (int32_t i = 0; i < v->n; i++) free(v->tokens[i]);
  free(v->tokens);
  free(v->lens);
  free(v->slots);
  free(v);
}

/* The problem with one token's bytes, or NULL when it is acceptable; *at is the
 * byte offset in the line, or (size_t)-1 when no position applies. */
static const char *token_problem(const char *s, size_t len, size_t *at) {
  *at = (size_t)-1;
  if (len == 0) return "empty line (every line must hold a token)";
  const char *cr = memchr(s, '\r', len);
  if (cr) { *at = (size_t)(cr - s); return "carriage return (CRLF line endings are not supported)"; }
  const char *nul = memchr(s, '\0', len);
  if (nul) { *at = (size_t)(nul - s); return "NUL byte in token"; }
  size_t bad = utf8_find_invalid(s, len);
  if (bad != (size_t)-1) { *at = bad; return "invalid UTF-8"; }
  return NULL;
}

static int count_chars(const char *s, size_t len) {
  int n = 0;
  for (size_t i = 0; i < len; i++) n += ((unsigned char)s[i] & 0xC0) != 0x80;
  return n;
}

static Vocab *vocab_alloc(int32_t n) {
  Vocab *v = calloc(1, sizeof *v);
  if (!v) return NULL;
  size_t size = 16;
  while (size < 2 * (size_t)n) size *= 2;
  v->tokens = calloc((size_t)n ? (size_t)n : 1, sizeof *v->tokens);
  v->lens = calloc((size_t)n ? (size_t)n : 1, sizeof *v->lens);
  v->slots = malloc(size * sizeof *v->slots);
  v->mask = size - 1;
  if (!v->tokens || !v->lens || !v->slots) { vocab_free(v); return NULL; }
  memset(v->slots, 0xff, size * sizeof *v->slots);
  return v;
}

/* Adds token id (already copied into v->tokens[id]); returns the id of an earlier
 * equal token, or -1 when it was new. */
static int32_t vocab_insert(Vocab *v, int32_t id) {
  const char *s = v->tokens[id];
  size_t len = v->lens[id];
  size_t i = hash_bytes(s, len) & v->mask;
  for (; v->slots[i] >= 0; i = (i + 1) & v->mask) {
    int32_t o = v->slots[i];
    if (v->lens[o] == len && memcmp(v->tokens[o], s, len) == 0) return o;
  }
  v->slots[i] = id;
  return -1;
}

/* Checks and adds token id from s[0..len); 0, or -1 with "where:line: ..." in err. */
static int vocab_add(Vocab *v, int32_t id, const char *s, size_t len, const char *where,
                     char *err, size_t cap) {
  size_t at;
  const char *why = token_problem(s, len, &at);
  if (why && at == (size_t)-1) {
    model_fail(err, cap, "%s:%ld: %s", where, (long)id + 1, why);
    return -1;
  }
  if (why) {
    model_fail(err, cap, "%s:%ld:%zu: %s", where, (long)id + 1, at + 1, why);
    return -1;
  }
  v->tokens[id] = malloc(len + 1);
  if (!v->tokens[id]) { model_fail(err, cap, "%s: out of memory", where); return -1; }
  memcpy(v->tokens[id], s, len);
  v->tokens[id][len] = '\0';
  v->lens[id] = len;
  v->n = id + 1;
  int32_t dup = vocab_insert(v, id);
  if (dup >= 0) {
    model_fail(err, cap, "%s:%ld: duplicate token '%s' (first on line %ld)", where, (long)id + 1,
            v->tokens[id], (long)dup + 1);
    return -1;
  }
  int chars = count_chars(s, len) - (len > 2 && s[0] == '#' && s[1] == '#' ? 2 : 0);
  if (chars > v->max_chars) v->max_chars = chars;
  return 0;
}

Vocab *vocab_from_tokens(const char *const *tokens, int32_t n, const char *where,
                         char *err, size_t cap) {
  Vocab *v = n > 0 ? vocab_alloc(n) : NULL;
  if (!v) { model_fail(err, cap, "%s: %s", where, n > 0 ? "out of memory" : "no tokens"); return NULL; }
  for (int32_t i = 0; i < n; i++)
    if (vocab_add(v, i, tokens[i], strlen(tokens[i]), where, err, cap) != 0) {
      vocab_free(v);
      return NULL;
    }
  return v;
}

static int32_t count_lines(const char *buf, size_t len) {
  int32_t n = 0;
  for (size_t i = 0; i < len; i++) n += buf[i] == '\n';
  return n + (len > 0 && buf[len - 1] != '\n');
}

static Vocab *vocab_parse(const char *buf, size_t len, const char *path, char *err, size_t cap) {
  int32_t n = count_lines(buf, len);
  if (n == 0) { model_fail(err, cap, "%s:1: empty vocabulary file", path); return NULL; }
  Vocab *v = vocab_alloc(n);
  if (!v) { model_fail(err, cap, "%s: out of memory", path); return NULL; }
  size_t start = 0;
  for (int32_t id = 0; id < n; id++) {
    const char *nl = memchr(buf + start, '\n', len - start);
    size_t end = nl ? (size_t)(nl - buf) : len;
    if (vocab_add(v, id, buf + start, end - start, path, err, cap) != 0) {
      vocab_free(v);
      return NULL;
    }
    start = end + 1;
  }
  return v;
}

Vocab *vocab_load(const char *path, char *err, size_t cap) {
  size_t len;
  char *buf = read_whole_file(path, &len, err, cap);
  if (!buf) return NULL;
  Vocab *v = vocab_parse(buf, len, path, err, cap);
  free(buf);
  return v;
}
