/* safetensors.c: reading (mmap + cJSON header, every rule of Hugging Face's reader
 * checked) and atomic F32 writing of safetensors files; see safetensors.h.
 *
 * Reading: the header is copied out of the mapping and NUL-terminated before cJSON
 * sees it, so no parse can run past the header. Each entry is checked on its own
 * (types, dtype, shape, offsets inside the data, size), then the entries sorted by
 * offset must tile the data exactly. A name-sorted index serves st_find.
 *
 * Writing: the header is built by hand (cJSON only parses the caller's metadata) so
 * that offsets print as plain integers however large, and the data is encoded
 * little-endian in chunks, whatever the host. */
#include "safetensors.h"
#include "errf.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

enum { HEADER_MAX = 100000000 }; /* Hugging Face's MAX_HEADER_SIZE */
#define EXACT_INT_MAX 9007199254740992.0 /* 2^53: larger JSON numbers lose digits */

typedef struct Entry {
  StTensor t;
  uint64_t begin, end; /* data_offsets, relative to the data section */
} Entry;

typedef struct MetaPair {
  char *key, *value;
} MetaPair;

struct SafeTensors {
  char *path;
  const unsigned char *map;
  size_t size;        /* file size */
  size_t header_len;  /* N */
  size_t data_size;   /* size - 8 - N */
  Entry *e;           /* n entries, sorted by offset */
  int n;
  Entry **by_name;    /* the entries sorted by name */
  MetaPair *meta;
  int n_meta;
};

static const struct {
  const char *name;
  size_t size;
} DTYPES[ST_DTYPE_COUNT] = {
    [ST_BOOL] = {"BOOL", 1}, [ST_U8] = {"U8", 1},   [ST_I8] = {"I8", 1},
    [ST_F8_E5M2] = {"F8_E5M2", 1}, [ST_F8_E4M3] = {"F8_E4M3", 1},
    [ST_I16] = {"I16", 2},   [ST_U16] = {"U16", 2}, [ST_F16] = {"F16", 2},
    [ST_BF16] = {"BF16", 2}, [ST_I32] = {"I32", 4}, [ST_U32] = {"U32", 4},
    [ST_F32] = {"F32", 4},   [ST_F64] = {"F64", 8}, [ST_I64] = {"I64", 8},
    [ST_U64] = {"U64", 8},
};

const char *st_dtype_name(StDtype d) {
  return (unsigned)d < ST_DTYPE_COUNT ? DTYPES[d].name : "?";
}

size_t st_dtype_size(StDtype d) {
  return (unsigned)d < ST_DTYPE_COUNT ? DTYPES[d].size : 0;
}

StDtype st_dtype_parse(const char *name) {
  for (int d = 0; d < ST_DTYPE_COUNT; d++)
    if (strcmp(DTYPES[d].name, name) == 0) return (StDtype)d;
  return ST_DTYPE_COUNT;
}

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
static size_t utf8_bad_at(const unsigned char *s, size_t n) {
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

/* ---- open and the fixed-size prefix --------------------------------------- */

static int map_file(SafeTensors *st, char *err, size_t cap) {
  int fd = open(st->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return model_fail(err, cap, "%s: cannot open: %s", st->path, strerror(errno));
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    close(fd);
    return model_fail(err, cap, "%s: not a regular file", st->path);
  }
  st->size = (size_t)sb.st_size;
  if (st->size < 8) {
    close(fd);
    return model_fail(err, cap,
                "%s: byte 0: file is %zu bytes, too short for the 8-byte header length%s",
                st->path, st->size, st->size == 0 ? " (empty file)" : "");
  }
  void *m = mmap(NULL, st->size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (m == MAP_FAILED) return model_fail(err, cap, "%s: cannot map: %s", st->path, strerror(errno));
  st->map = m;
  return 0;
}

static int check_prefix(SafeTensors *st, char *err, size_t cap) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = (n << 8) | st->map[i];
  if (n > HEADER_MAX)
    return model_fail(err, cap, "%s: byte 0: header length %llu exceeds the limit of %d bytes",
                st->path, (unsigned long long)n, HEADER_MAX);
  if (n > st->size - 8)
    return model_fail(err, cap,
                "%s: byte 0: header length %llu runs past the end of the file "
                "(%zu bytes, so at most %zu)",
                st->path, (unsigned long long)n, st->size, st->size - 8);
  if (n < 2)
    return model_fail(err, cap, "%s: byte 0: header length %llu is too short for a JSON object",
                st->path, (unsigned long long)n);
  st->header_len = (size_t)n;
  st->data_size = st->size - 8 - st->header_len;
  return 0;
}

/* The header's bytes as text: starts with '{', UTF-8, no control bytes. */
static int check_header_text(const SafeTensors *st, char *err, size_t cap) {
  const unsigned char *h = st->map + 8;
  size_t n = st->header_len;
  if (h[0] != '{')
    return model_fail(err, cap, "%s: byte 8: header does not start with '{' (found 0x%02x)",
                st->path, h[0]);
  size_t bad = utf8_bad_at(h, n);
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

static const char *json_kind(const cJSON *j) {
  if (!j) return "missing";
  if (cJSON_IsString(j)) return "a string";
  if (cJSON_IsNumber(j)) return "a number";
  if (cJSON_IsArray(j)) return "an array";
  if (cJSON_IsObject(j)) return "an object";
  if (cJSON_IsBool(j)) return "a boolean";
  return "null";
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

/* ---- public reader -------------------------------------------------------- */

void st_close(SafeTensors *st) {
  if (!st) return;
  for (int i = 0; i < st->n; i++) free((char *)st->e[i].t.name);
  for (int i = 0; i < st->n_meta; i++) {
    free(st->meta[i].key);
    free(st->meta[i].value);
  }
  free(st->meta);
  free(st->e);
  free(st->by_name);
  if (st->map) munmap((void *)st->map, st->size);
  free(st->path);
  free(st);
}

static int load(SafeTensors *st, char *err, size_t cap) {
  if (map_file(st, err, cap) || check_prefix(st, err, cap) || check_header_text(st, err, cap))
    return -1;
  cJSON *root = parse_header(st, err, cap);
  if (!root) return -1;
  int rc = parse_entries(st, root, err, cap);
  cJSON_Delete(root);
  if (rc) return -1;
  qsort(st->e, (size_t)st->n, sizeof *st->e, cmp_offsets);
  return index_names(st, err, cap) || check_tiling(st, err, cap) ? -1 : 0;
}

SafeTensors *st_open(const char *path, char *err, size_t cap) {
  SafeTensors *st = calloc(1, sizeof *st);
  if (!st || !(st->path = strdup(path))) {
    free(st);
    model_fail(err, cap, "%s: out of memory", path);
    return NULL;
  }
  if (load(st, err, cap)) {
    st_close(st);
    return NULL;
  }
  return st;
}

int st_count(const SafeTensors *st) { return st->n; }

const StTensor *st_tensor(const SafeTensors *st, int i) {
  return i >= 0 && i < st->n ? &st->e[i].t : NULL;
}

static const StTensor *find_exact(const SafeTensors *st, const char *name) {
  int lo = 0, hi = st->n - 1;
  while (lo <= hi) {
    int mid = lo + (hi - lo) / 2;
    const StTensor *t = &st->by_name[mid]->t;
    int c = strcmp(t->name, name);
    if (c == 0) return t;
    if (c < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return NULL;
}

static const char *const PREFIXES[] = {"distilbert.", "bert."};

const StTensor *st_find(const SafeTensors *st, const char *name) {
  const StTensor *t = find_exact(st, name);
  if (t) return t;
  for (size_t i = 0; i < sizeof PREFIXES / sizeof *PREFIXES; i++) {
    size_t len = strlen(PREFIXES[i]);
    if (strncmp(name, PREFIXES[i], len) == 0) return find_exact(st, name + len);
  }
  char buf[512];
  for (size_t i = 0; i < sizeof PREFIXES / sizeof *PREFIXES; i++) {
    int k = snprintf(buf, sizeof buf, "%s%s", PREFIXES[i], name);
    if (k > 0 && (size_t)k < sizeof buf && (t = find_exact(st, buf))) return t;
  }
  return NULL;
}

const char *st_metadata(const SafeTensors *st, const char *key) {
  for (int i = 0; i < st->n_meta; i++)
    if (strcmp(st->meta[i].key, key) == 0) return st->meta[i].value;
  return NULL;
}

/* ---- conversion ------------------------------------------------------------ */

static float bits_to_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

float st_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h >> 15) << 31;
  uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  if (exp == 0x1f) return bits_to_f32(sign | 0x7f800000u | (mant << 13)); /* inf, nan */
  if (exp == 0) {                                                           /* 0, subnormal */
    float v = ldexpf((float)mant, -24);
    return sign ? -v : v;
  }
  return bits_to_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

float st_bf16_to_f32(uint16_t b) { return bits_to_f32((uint32_t)b << 16); }

static uint64_t load_le(const unsigned char *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

int st_read_f32(const StTensor *t, float *dst, size_t count, char *err, size_t cap) {
  if (count != t->numel)
    return model_fail(err, cap, "%s: tensor \"%s\": asked for %zu values, it holds %zu", t->file,
                t->name, count, t->numel);
  const unsigned char *p = t->data;
  switch (t->dtype) {
  case ST_F32:
    for (size_t i = 0; i < count; i++) dst[i] = bits_to_f32((uint32_t)load_le(p + 4 * i, 4));
    return 0;
  case ST_F16:
    for (size_t i = 0; i < count; i++) dst[i] = st_f16_to_f32((uint16_t)load_le(p + 2 * i, 2));
    return 0;
  case ST_BF16:
    for (size_t i = 0; i < count; i++) dst[i] = st_bf16_to_f32((uint16_t)load_le(p + 2 * i, 2));
    return 0;
  case ST_F64:
    for (size_t i = 0; i < count; i++) {
      uint64_t u = load_le(p + 8 * i, 8);
      double d;
      memcpy(&d, &u, sizeof d);
      dst[i] = (float)d;
    }
    return 0;
  default:
    return model_fail(err, cap, "%s: tensor \"%s\": dtype %s is not a floating-point type (F32, F16, "
                "BF16, F64)", t->file, t->name, st_dtype_name(t->dtype));
  }
}

/* ---- writer ---------------------------------------------------------------- */

typedef struct Buf {
  char *p;
  size_t n, cap;
  bool oom;
} Buf;

static void buf_add(Buf *b, const char *s, size_t len) {
  if (b->oom) return;
  if (b->n + len + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + len + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = true;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, len);
  b->n += len;
  b->p[b->n] = '\0';
}

static void buf_str(Buf *b, const char *s) { buf_add(b, s, strlen(s)); }

/* s as a JSON string literal. */
static void buf_json_str(Buf *b, const char *s) {
  buf_add(b, "\"", 1);
  for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
    char esc[8];
    if (*c == '"' || *c == '\\') {
      esc[0] = '\\';
      esc[1] = (char)*c;
      buf_add(b, esc, 2);
    } else if (*c < 0x20) {
      snprintf(esc, sizeof esc, "\\u%04x", *c);
      buf_add(b, esc, 6);
    } else {
      buf_add(b, (const char *)c, 1);
    }
  }
  buf_add(b, "\"", 1);
}

static void buf_u64(Buf *b, uint64_t v) {
  char s[24];
  snprintf(s, sizeof s, "%llu", (unsigned long long)v);
  buf_str(b, s);
}

static bool utf8_ok(const char *s) {
  size_t n = strlen(s);
  return utf8_bad_at((const unsigned char *)s, n) == n;
}

/* "__metadata__": {...} with "format": "pt" added when absent. */
static int write_metadata(Buf *b, const char *json, const char *path, char *err, size_t cap) {
  cJSON *m = json ? cJSON_Parse(json) : cJSON_CreateObject();
  if (!m || !cJSON_IsObject(m)) {
    cJSON_Delete(m);
    return model_fail(err, cap, "%s: metadata is not a JSON object: %.60s", path, json);
  }
  buf_str(b, "{\"__metadata__\":{");
  bool has_format = false, first = true;
  const cJSON *kv;
  cJSON_ArrayForEach(kv, m) {
    if (!cJSON_IsString(kv) || !utf8_ok(kv->string) || !utf8_ok(kv->valuestring)) {
      int rc = model_fail(err, cap, "%s: metadata key \"%.60s\" must be a UTF-8 string", path,
                    kv->string);
      cJSON_Delete(m);
      return rc;
    }
    has_format |= strcmp(kv->string, "format") == 0;
    if (!first) buf_str(b, ",");
    first = false;
    buf_json_str(b, kv->string);
    buf_str(b, ":");
    buf_json_str(b, kv->valuestring);
  }
  if (!has_format) buf_str(b, first ? "\"format\":\"pt\"" : ",\"format\":\"pt\"");
  buf_str(b, "}");
  cJSON_Delete(m);
  return 0;
}

static int numel_of(const StWriteTensor *t, uint64_t *numel) {
  uint64_t n = 1;
  if (t->rank < 0 || t->rank > ST_MAX_RANK) return -1;
  for (int i = 0; i < t->rank; i++) {
    if (t->shape[i] < 0) return -1;
    uint64_t d = (uint64_t)t->shape[i];
    if (d && n > (UINT64_MAX / 4) / d) return -1;
    n *= d;
  }
  *numel = n;
  return 0;
}

static int cmp_wnames(const void *a, const void *b) {
  return strcmp((*(const StWriteTensor *const *)a)->name, (*(const StWriteTensor *const *)b)->name);
}

static int check_write_names(const StWriteTensor *t, int n, const char *path, char *err,
                             size_t cap) {
  const StWriteTensor **s = malloc(((size_t)n + 1) * sizeof *s);
  if (!s) return model_fail(err, cap, "%s: out of memory", path);
  int rc = 0;
  for (int i = 0; i < n && !rc; i++) {
    s[i] = &t[i];
    if (!t[i].name || !t[i].name[0] || !utf8_ok(t[i].name) ||
        strcmp(t[i].name, "__metadata__") == 0)
      rc = model_fail(err, cap, "%s: tensor %d: name must be non-empty UTF-8 other than __metadata__",
                path, i);
  }
  if (!rc) qsort(s, (size_t)n, sizeof *s, cmp_wnames);
  for (int i = 1; i < n && !rc; i++)
    if (strcmp(s[i - 1]->name, s[i]->name) == 0)
      rc = model_fail(err, cap, "%s: tensor \"%s\" is given twice", path, s[i]->name);
  free(s);
  return rc;
}

static int build_header(Buf *b, const StWriteTensor *t, int n, const char *meta,
                        const char *path, char *err, size_t cap) {
  if (write_metadata(b, meta, path, err, cap)) return -1;
  uint64_t off = 0;
  for (int i = 0; i < n; i++) {
    uint64_t numel;
    if (numel_of(&t[i], &numel) || (numel && !t[i].data))
      return model_fail(err, cap, "%s: tensor \"%s\": bad rank, shape or data", path, t[i].name);
    buf_str(b, ",");
    buf_json_str(b, t[i].name);
    buf_str(b, ":{\"dtype\":\"F32\",\"shape\":[");
    for (int d = 0; d < t[i].rank; d++) {
      if (d) buf_str(b, ",");
      buf_u64(b, (uint64_t)t[i].shape[d]);
    }
    buf_str(b, "],\"data_offsets\":[");
    buf_u64(b, off);
    buf_str(b, ",");
    buf_u64(b, off += 4 * numel);
    buf_str(b, "]}");
  }
  buf_str(b, "}");
  while (!b->oom && b->n % 8) buf_str(b, " ");
  if (b->oom) return model_fail(err, cap, "%s: out of memory", path);
  if (b->n > HEADER_MAX)
    return model_fail(err, cap, "%s: header would exceed %d bytes", path, HEADER_MAX);
  return 0;
}

static int write_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n) {
    ssize_t k = write(fd, c, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    c += k;
    n -= (size_t)k;
  }
  return 0;
}

static int write_f32_le(int fd, const float *x, size_t n) {
  unsigned char chunk[1 << 16];
  while (n) {
    size_t k = n < sizeof chunk / 4 ? n : sizeof chunk / 4;
    for (size_t i = 0; i < k; i++) {
      uint32_t u;
      memcpy(&u, &x[i], 4);
      for (int j = 0; j < 4; j++) chunk[4 * i + (size_t)j] = (unsigned char)(u >> (8 * j));
    }
    if (write_all(fd, chunk, 4 * k)) return -1;
    x += k;
    n -= k;
  }
  return 0;
}

static int write_body(int fd, const Buf *h, const StWriteTensor *t, int n) {
  unsigned char len[8];
  for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)h->n >> (8 * i));
  if (write_all(fd, len, 8) || write_all(fd, h->p, h->n)) return -1;
  for (int i = 0; i < n; i++) {
    uint64_t numel = 0;
    numel_of(&t[i], &numel);
    if (numel && write_f32_le(fd, t[i].data, (size_t)numel)) return -1;
  }
  return 0;
}

/* fsync of the folder holding path, so the rename itself is durable. */
static void sync_dir(const char *path) {
  char *copy = strdup(path);
  if (!copy) return;
  int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
  free(copy);
}

static int write_atomic(const char *path, const Buf *h, const StWriteTensor *t, int n,
                        char *err, size_t cap) {
  size_t len = strlen(path);
  char *tmp = malloc(len + 16);
  if (!tmp) return model_fail(err, cap, "%s: out of memory", path);
  snprintf(tmp, len + 16, "%s.tmp-XXXXXX", path);
  int fd = mkstemp(tmp);
  if (fd < 0) {
    int rc = model_fail(err, cap, "%s: cannot create a temporary file: %s", path, strerror(errno));
    free(tmp);
    return rc;
  }
  int ok = fchmod(fd, 0644) == 0 && write_body(fd, h, t, n) == 0 && fsync(fd) == 0;
  int saved = errno;
  ok = (close(fd) == 0) && ok;
  if (ok && rename(tmp, path) != 0) ok = 0, saved = errno;
  if (!ok) {
    unlink(tmp);
    free(tmp);
    return model_fail(err, cap, "%s: write failed: %s", path, strerror(saved));
  }
  free(tmp);
  sync_dir(path);
  return 0;
}

int st_write(const char *path, const StWriteTensor *t, int n, const char *metadata_json,
             char *err, size_t cap) {
  if (n < 0 || (n > 0 && !t)) return model_fail(err, cap, "%s: bad tensor list", path);
  if (check_write_names(t, n, path, err, cap)) return -1;
  Buf h = {0};
  int rc = build_header(&h, t, n, metadata_json, path, err, cap);
  if (!rc) rc = write_atomic(path, &h, t, n, err, cap);
  free(h.p);
  return rc;
}
