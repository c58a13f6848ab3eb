/* safetensors_write.c: st_write, F32 tensors to a safetensors file, atomically (a
 * temporary file beside it, fsynced, renamed over it; see safetensors.h).
 *
 * The header is built by hand (cJSON only parses the caller's metadata) so that
 * offsets print as plain integers however large, and the data is encoded
 * little-endian in chunks, whatever the host. */
#include "safetensors_impl.h"
#include "errf.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
  return st_utf8_bad_at((const unsigned char *)s, n) == n;
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
