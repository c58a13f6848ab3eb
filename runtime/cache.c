/* The kernel cache (see cache.h). */
#define _POSIX_C_SOURCE 200809L

#include "cache.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsutil.h"

static const char MAGIC[8] = {'C', 'R', 'I', 'S', 'P', 'K', 'C', '1'};

int rt_cache_open(RtCache *c, const char *dir, char *err, size_t cap) {
  memset(c, 0, sizeof *c);
  char root[1024];
  const char *off = getenv("CRISP_NO_CACHE");
  if (off && *off && strcmp(off, "0")) {
    c->disabled = true;
    return 0;
  }
  if (dir)
    snprintf(root, sizeof root, "%s", dir);
  else if (rt_cache_dir(root, sizeof root)) {
    c->disabled = true;
    snprintf(err, cap, "no cache directory (set XDG_CACHE_HOME or HOME)");
    return -1;
  }
  if (snprintf(c->dir, sizeof c->dir, "%s/kernels", root) >= (int)sizeof c->dir ||
      rt_mkdirs(c->dir, err, cap)) {
    c->disabled = true;
    if (strlen(c->dir) >= sizeof c->dir - 1)
      snprintf(err, cap, "cache directory name too long");
    return -1;
  }
  return 0;
}

void rt_cache_path(const RtCache *c, const char *key, char *buf, size_t cap) {
  uint64_t h = rt_fnv1a64(key, strlen(key), RT_FNV_OFFSET);
  snprintf(buf, cap, "%s/%016" PRIx64 ".crk", c->dir, h);
}

static void put_u32(char **p, uint32_t v) {
  memcpy(*p, &v, 4);
  *p += 4;
}
static void put_u64(char **p, uint64_t v) {
  memcpy(*p, &v, 8);
  *p += 8;
}

int rt_cache_put(RtCache *c, const char *key, const RtBlob *parts, int nparts, char *err,
                 size_t cap) {
  if (c->disabled)
    return 0;
  size_t klen = strlen(key), total = 8 + 4 + klen + 4 + 8;
  for (int i = 0; i < nparts; i++)
    total += 8 + parts[i].len;
  char *buf = malloc(total), *p = buf;
  if (!buf) {
    snprintf(err, cap, "cache: out of memory");
    return -1;
  }
  memcpy(p, MAGIC, 8);
  p += 8;
  put_u32(&p, (uint32_t)klen);
  memcpy(p, key, klen);
  p += klen;
  put_u32(&p, (uint32_t)nparts);
  for (int i = 0; i < nparts; i++) {
    put_u64(&p, parts[i].len);
    memcpy(p, parts[i].data, parts[i].len);
    p += parts[i].len;
  }
  put_u64(&p, rt_fnv1a64(buf, (size_t)(p - buf), RT_FNV_OFFSET));
  char path[1200];
  rt_cache_path(c, key, path, sizeof path);
  int rc = rt_write_atomic(path, buf, total, err, cap);
  free(buf);
  if (!rc)
    atomic_fetch_add(&c->stores, 1);
  return rc;
}

/* Reads bounded fields; returns -1 when the entry is shorter than it says. */
typedef struct {
  const char *p, *end;
} Reader;

static int take(Reader *r, void *out, size_t n) {
  if ((size_t)(r->end - r->p) < n)
    return -1;
  memcpy(out, r->p, n);
  r->p += n;
  return 0;
}

/* 1: hit; 0: miss (another key); -1: corrupt, with the reason in *why. */
static int decode(const char *buf, size_t len, const char *key, RtBlob *parts, int nparts,
                  const char **why) {
  *why = len < 8 + 4 + 4 + 8 ? "shorter than any entry" : "not a crisp cache entry (magic)";
  if (len < 8 + 4 + 4 + 8 || memcmp(buf, MAGIC, 8))
    return -1;
  uint64_t sum;
  memcpy(&sum, buf + len - 8, 8);
  *why = "checksum mismatch (truncated or changed)";
  if (sum != rt_fnv1a64(buf, len - 8, RT_FNV_OFFSET))
    return -1;
  Reader r = {buf + 8, buf + len - 8};
  uint32_t klen, n;
  *why = "a length runs past the end";
  if (take(&r, &klen, 4) || (size_t)(r.end - r.p) < klen)
    return -1;
  int same = klen == strlen(key) && !memcmp(r.p, key, klen);
  r.p += klen;
  if (take(&r, &n, 4))
    return -1;
  if (!same || (int)n != nparts)
    return 0;   /* another key's entry (a hash collision), or a caller's mistake */
  for (int i = 0; i < nparts; i++) {
    uint64_t plen;
    if (take(&r, &plen, 8) || (uint64_t)(r.end - r.p) < plen)
      return -1;
    parts[i].data = malloc((size_t)plen + 1);
    if (!parts[i].data) {
      for (int j = 0; j < i; j++)
        free(parts[j].data);
      return 0;
    }
    memcpy(parts[i].data, r.p, (size_t)plen);
    parts[i].data[plen] = 0;
    parts[i].len = (size_t)plen;
    r.p += plen;
  }
  if (r.p != r.end) {
    for (int i = 0; i < nparts; i++)
      free(parts[i].data);
    *why = "bytes after the last part";
    return -1;
  }
  return 1;
}

int rt_cache_get(RtCache *c, const char *key, RtBlob *parts, int nparts, char *note,
                 size_t cap) {
  note[0] = 0;
  for (int i = 0; i < nparts; i++)
    parts[i] = (RtBlob){0};
  if (c->disabled) {
    atomic_fetch_add(&c->misses, 1);
    return 0;
  }
  char path[1200], err[256];
  rt_cache_path(c, key, path, sizeof path);
  char *buf;
  size_t len;
  if (access(path, F_OK) || rt_read_file(path, &buf, &len, err, sizeof err)) {
    atomic_fetch_add(&c->misses, 1);
    return 0;
  }
  const char *why = NULL;
  int rc = decode(buf, len, key, parts, nparts, &why);
  free(buf);
  if (rc < 0) {
    /* Rebuilt, not refused: the entry is only a copy of what the compiler makes again
     * from the key, so refusing would just make the user delete it by hand. Said,
     * though: a damaged file in the cache hints at a failing disk or a tool writing
     * there, which the user wants to know about. */
    atomic_fetch_add(&c->corrupt, 1);
    bool gone = !unlink(path);   /* rebuilt and re-stored by the caller */
    snprintf(note, cap, "%s: corrupt entry (%s), %s; compiling again", path, why,
             gone ? "removed" : "cannot be removed");
  }
  if (rc <= 0) {
    atomic_fetch_add(&c->misses, 1);
    return 0;
  }
  atomic_fetch_add(&c->hits, 1);
  return 1;
}
