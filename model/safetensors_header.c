/* safetensors_header.c: the JSON header of a safetensors file, checked by every rule
 * of Hugging Face's reader (see safetensors.h): UTF-8 text, JSON syntax, each entry's
 * types, dtype, shape, offsets inside the data and size, then that the entries sorted
 * by offset tile the data exactly; a name-sorted index serves st_find. Every error
 * names the file and a byte offset or the tensor and key.
 *
 * The header is copied out of the mapping and NUL-terminated before cJSON sees it, so
 * no parse can run past the header. */
#include "safetensors_impl.h"
#include "errf.h"
#include "json_kind.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXACT_INT_MAX 9007199254740992.0 /* 2^53: larger JSON numbers lose digits */

/* ---- small text helpers ---------------------------------------------------- */

/* Length (1..4) of the well-formed UTF-8 sequence at s[0..n), 0 if none. */
static size_t utf8_len(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  if (c < 0x80) return 1;
  size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
  if (len == 0 || c > 0xf4 || len > n) return 0;
  for (size_t i = 1; i < len; i++)
    if ((s[i] & 0xc0) != 0x80) return 0;
  if (c == 0xe0 && s[1] < 0xa0) return 0; /* overlong */
  if (c == 0xed && s[1] >= 0xa0) return 0; /* surrogate */
  if (c == 0xf0 && s[1] < 0x90) return 0; /* overlong */
  if (c == 0xf4 && s[1] >= 0x90) return 0; /* above U+10FFFF */
  return len;
}

/* Offset of the first byte that is not valid UTF-8 text, or n. */
size_t st_utf8_bad_at(const unsigned char *s, size_t n) {
  for (size_t i = 0; i < n;) {
    size_t len = utf8_len(s + i, n - i);
    if (len == 0) return i;
    i += len;
  }
  return n;
}

static bool is_json_space(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Up to 20 bytes at s[0..n) as printable ASCII ('?' for others) into out[32]. */
static void snippet(const unsigned char *s, size_t n, char out[32]) {
  size_t k = 0;
  for (; k < n && k < 20; k++) out[k] = (s[k] >= 0x20 && s[k] < 0x7f) ? (char)s[k] : '?';
  out[k] = '\0';
}

static void line_col(const unsigned char *s, size_t off, int *line, int *col) {
  *line = 1;
  *col = 1;
  for (size_t i = 0; i < off; i++) {
    if (s[i] == '\n') {
      (*line)++;
      *col = 1;
    } else {
      (*col)++;
    }
  }
}

/* The header's bytes as text: starts with '{', UTF-8, no control bytes. */
static int check_header_text(const SafeTensors *st, char *err, size_t cap) {
  const unsigned char *h = st->map + 8;
  size_t n = st->header_len;
  if (h[0] != '{')
    return model_fail(err, cap, "%s: byte 8: header does not start with '{' (found 0x%02x)",
                st->path, h[0]);
  size_t bad = st_utf8_bad_at(h, n);
  if (bad < n)
    return model_fail(err, cap, "%s: byte %zu: header is not valid UTF-8 (byte 0x%02x)", st->path,
                8 + bad, h[bad]);
  for (size_t i = 0; i < n; i++)
    if (h[i] < 0x20 && !is_json_space(h[i]))
      return model_fail(err, cap, "%s: byte %zu: control byte 0x%02x in the header", st->path,
                  8 + i, h[i]);
  return 0;
}

/* Parses the header; trailing bytes may only be whitespace (the padding). */
static cJSON *parse_header(const SafeTensors *st, char *err, size_t cap) {
  const unsigned char *h = st->map + 8;
  size_t n = st->header_len;
  char *copy = malloc(n + 1);
  if (!copy) return model_fail(err, cap, "%s: out of memory", st->path), NULL;
  memcpy(copy, h, n);
  copy[n] = '\0';
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(copy, n, &end, 0);
  size_t at = end ? (size_t)(end - copy) : 0;
  if (at > n) at = n;
  free(copy);
  char near[32];
  int line, col;
  snippet(h + at, n - at, near);
  line_col(h, at, &line, &col);
  size_t rest = at;
  while (rest < n && is_json_space(h[rest])) rest++;
  if (!root && rest == n)
    return model_fail(err, cap, "%s: byte %zu: header: invalid JSON: it ends too early", st->path,
                8 + at), NULL;
  if (!root)
    return model_fail(err, cap, "%s: byte %zu: header: invalid JSON near \"%s\" (line %d, column %d)",
                st->path, 8 + at, near, line, col), NULL;
  while (at < n && is_json_space(h[at])) at++;
  if (at < n) {
    cJSON_Delete(root);
    snippet(h + at, n - at, near);
    return model_fail(err, cap, "%s: byte %zu: header: unexpected \"%s\" after the JSON object",
                st->path, 8 + at, near), NULL;
  }
  return root;
}

/* ---- one entry ------------------------------------------------------------ */

typedef struct Ctx {
  SafeTensors *st;
  const char *name;
  char *err;
  size_t cap;
} Ctx;

/* Byte offset in the file of the key "name": in the header, or 0 if not found
 * (a name with escapes, for example). */
static size_t key_offset(const SafeTensors *st, const char *name) {
  const char *h = (const char *)st->map + 8;
  size_t n = st->header_len, len = strlen(name);
  for (size_t i = 0; i + len + 2 <= n; i++) {
    if (h[i] != '"' || memcmp(h + i + 1, name, len) != 0 || h[i + len + 1] != '"') continue;
    size_t j = i + len + 2;
    while (j < n && is_json_space((unsigned char)h[j])) j++;
    if (j < n && h[j] == ':') return 8 + i;
  }
  return 0;
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int entry_fail(const Ctx *c, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  size_t at = key_offset(c->st, c->name);
  const char *what = strcmp(c->name, "__metadata__") == 0 ? "" : "tensor ";
  if (at)
    return model_fail(c->err, c->cap, "%s: byte %zu: %s\"%s\": %s", c->st->path, at, what, c->name,
                msg);
  return model_fail(c->err, c->cap, "%s: %s\"%s\": %s", c->st->path, what, c->name, msg);
}

/* A non-negative integer that JSON can carry exactly. */
static bool json_u64(const cJSON *j, uint64_t *out) {
  if (!cJSON_IsNumber(j)) return false;
  double d = j->valuedouble;
  if (!(d >= 0 && d <= EXACT_INT_MAX) || d != floor(d)) return false;
  *out = (uint64_t)d;
  return true;
}

static int entry_dtype(const Ctx *c, const cJSON *obj, StDtype *dt) {
  const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, "dtype");
  if (!cJSON_IsString(j))
    return entry_fail(c, "\"dtype\" must be a string, but it is %s", json_kind(j));
  *dt = st_dtype_parse(j->valuestring);
  if (*dt == ST_DTYPE_COUNT)
    return entry_fail(c, "unknown dtype \"%.32s\" (expected F32, F16, BF16, F64, I64, ...)",
                      j->valuestring);
  return 0;
}

static int entry_shape(const Ctx *c, const cJSON *obj, StTensor *t) {
  const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, "shape");
  if (!cJSON_IsArray(j))
    return entry_fail(c, "\"shape\" must be an array, but it is %s", json_kind(j));
  int rank = cJSON_GetArraySize(j);
  if (rank > ST_MAX_RANK)
    return entry_fail(c, "\"shape\" has %d dimensions; at most %d are supported", rank,
                      ST_MAX_RANK);
  t->rank = rank;
  uint64_t numel = 1;
  for (int i = 0; i < rank; i++) {
    uint64_t d;
    if (!json_u64(cJSON_GetArrayItem(j, i), &d))
      return entry_fail(c, "\"shape\"[%d] must be a non-negative integer", i);
    t->shape[i] = (int64_t)d;
    if (d && numel > UINT64_MAX / d) return entry_fail(c, "\"shape\" overflows a 64-bit size");
    numel *= d;
  }
  uint64_t esize = st_dtype_size(t->dtype);
  if (numel > SIZE_MAX / esize) return entry_fail(c, "\"shape\" x dtype size overflows");
  t->numel = (size_t)numel;
  t->nbytes = (size_t)(numel * esize);
  return 0;
}

static int entry_offsets(const Ctx *c, const cJSON *obj, Entry *e) {
  const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, "data_offsets");
  if (!cJSON_IsArray(j) || cJSON_GetArraySize(j) != 2)
    return entry_fail(c, "\"data_offsets\" must be an array [begin, end], but it is %s",
                      cJSON_IsArray(j) ? "an array of another length" : json_kind(j));
  if (!json_u64(cJSON_GetArrayItem(j, 0), &e->begin) ||
      !json_u64(cJSON_GetArrayItem(j, 1), &e->end))
    return entry_fail(c, "\"data_offsets\" must hold two non-negative integers");
  if (e->end < e->begin)
    return entry_fail(c, "\"data_offsets\" [%llu, %llu] end before they begin",
                      (unsigned long long)e->begin, (unsigned long long)e->end);
  if (e->end > c->st->data_size)
    return entry_fail(c,
                      "\"data_offsets\" [%llu, %llu] run past the end of the data "
                      "(%zu bytes after the header; file size %zu)",
                      (unsigned long long)e->begin, (unsigned long long)e->end,
                      c->st->data_size, c->st->size);
  if (e->end - e->begin != e->t.nbytes)
    return entry_fail(c,
                      "\"data_offsets\" [%llu, %llu] span %llu bytes, but shape x dtype %s "
                      "needs %zu",
                      (unsigned long long)e->begin, (unsigned long long)e->end,
                      (unsigned long long)(e->end - e->begin), st_dtype_name(e->t.dtype),
                      e->t.nbytes);
  return 0;
}

static int parse_entry(Ctx *c, const cJSON *obj, Entry *e) {
  if (!cJSON_IsObject(obj))
    return entry_fail(c, "must be an object {dtype, shape, data_offsets}, but it is %s",
                      json_kind(obj));
  if (entry_dtype(c, obj, &e->t.dtype) || entry_shape(c, obj, &e->t) ||
      entry_offsets(c, obj, e))
    return -1;
  e->t.name = strdup(c->name);
  if (!e->t.name) return model_fail(c->err, c->cap, "%s: out of memory", c->st->path);
  e->t.file = c->st->path;
  e->t.file_offset = 8 + c->st->header_len + (size_t)e->begin;
  e->t.data = c->st->map + e->t.file_offset;
  return 0;
}

static int parse_metadata(SafeTensors *st, const cJSON *obj, char *err, size_t cap) {
  Ctx c = {st, "__metadata__", err, cap};
  if (st->meta) return entry_fail(&c, "appears twice");
  if (!cJSON_IsObject(obj))
    return entry_fail(&c, "must be an object of strings, but it is %s", json_kind(obj));
  int n = cJSON_GetArraySize(obj);
  st->meta = calloc((size_t)n + 1, sizeof *st->meta);
  if (!st->meta) return model_fail(err, cap, "%s: out of memory", st->path);
  const cJSON *kv;
  cJSON_ArrayForEach(kv, obj) {
    if (!cJSON_IsString(kv))
      return entry_fail(&c, "key \"%.64s\" must be a string, but it is %s", kv->string,
                        json_kind(kv));
    MetaPair *p = &st->meta[st->n_meta++];
    p->key = strdup(kv->string);
    p->value = strdup(kv->valuestring);
    if (!p->key || !p->value) return model_fail(err, cap, "%s: out of memory", st->path);
  }
  return 0;
}

static int parse_entries(SafeTensors *st, const cJSON *root, char *err, size_t cap) {
  if (!cJSON_IsObject(root))
    return model_fail(err, cap, "%s: byte 8: header is not a JSON object", st->path);
  st->e = calloc((size_t)cJSON_GetArraySize(root) + 1, sizeof *st->e);
  if (!st->e) return model_fail(err, cap, "%s: out of memory", st->path);
  const cJSON *item;
  cJSON_ArrayForEach(item, root) {
    if (strcmp(item->string, "__metadata__") == 0) {
      if (parse_metadata(st, item, err, cap)) return -1;
      continue;
    }
    Ctx c = {st, item->string, err, cap};
    if (parse_entry(&c, item, &st->e[st->n])) return -1;
    st->n++;
  }
  return 0;
}

/* ---- whole-file checks ------------------------------------------------------ */

static int cmp_offsets(const void *a, const void *b) {
  const Entry *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return 0;
}

/* The tensors, sorted by offset, must cover the data exactly. */
static int check_tiling(SafeTensors *st, char *err, size_t cap) {
  uint64_t at = 0;
  for (int i = 0; i < st->n; i++) {
    const Entry *e = &st->e[i];
    Ctx c = {st, e->t.name, err, cap};
    if (e->begin < at)
      return entry_fail(&c, "\"data_offsets\" [%llu, %llu] overlap tensor \"%s\" (ends at %llu)",
                        (unsigned long long)e->begin, (unsigned long long)e->end,
                        st->e[i - 1].t.name, (unsigned long long)at);
    if (e->begin > at)
      return entry_fail(&c,
                        "\"data_offsets\" [%llu, %llu] leave a gap of %llu bytes after offset "
                        "%llu (the data must be contiguous)",
                        (unsigned long long)e->begin, (unsigned long long)e->end,
                        (unsigned long long)(e->begin - at), (unsigned long long)at);
    at = e->end;
  }
  if (at != st->data_size)
    return model_fail(err, cap,
                "%s: byte %zu: %zu bytes after the last tensor's data belong to no tensor "
                "(the tensors must cover the data exactly)",
                st->path, (size_t)(8 + st->header_len + at), st->data_size - (size_t)at);
  return 0;
}

static int cmp_name_ptr(const void *a, const void *b) {
  return strcmp((*(const Entry *const *)a)->t.name, (*(const Entry *const *)b)->t.name);
}

/* Sorts entry pointers by name and rejects duplicates. */
static int index_names(SafeTensors *st, char *err, size_t cap) {
  st->by_name = malloc(((size_t)st->n + 1) * sizeof *st->by_name);
  if (!st->by_name) return model_fail(err, cap, "%s: out of memory", st->path);
  for (int i = 0; i < st->n; i++) st->by_name[i] = &st->e[i];
  qsort(st->by_name, (size_t)st->n, sizeof *st->by_name, cmp_name_ptr);
  for (int i = 1; i < st->n; i++) {
    const char *name = st->by_name[i]->t.name;
    if (strcmp(st->by_name[i - 1]->t.name, name) == 0) {
      Ctx c = {st, name, err, cap};
      return entry_fail(&c, "appears twice in the header");
    }
  }
  return 0;
}

/* ---- the whole header ------------------------------------------------------ */

int st_read_header(SafeTensors *st, char *err, size_t cap) {
  if (check_header_text(st, err, cap)) return -1;
  cJSON *root = parse_header(st, err, cap);
  if (!root) return -1;
  int rc = parse_entries(st, root, err, cap);
  cJSON_Delete(root);
  if (rc) return -1;
  qsort(st->e, (size_t)st->n, sizeof *st->e, cmp_offsets);
  return index_names(st, err, cap) || check_tiling(st, err, cap) ? -1 : 0;
}
