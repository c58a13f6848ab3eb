/* cache.h: the on-disk kernel cache.
 *
 * An entry maps a key text (everything the compiled code depends on: canonical
 * spec, tile, target and host CPU, compiler version and code-generator digest, LLVM
 * version) to a few byte strings (PTX + manifest, or object code + manifest).
 * It lives in DIR/kernels/<fnv64 of key>.crk as
 *     "CRISPKC1" | u32 key length | key | u32 parts | (u64 length | bytes)* | u64 FNV-1a of all before
 * written atomically (temp file + rename). A read checks the magic, every length,
 * the checksum and the full key text: a truncated or corrupt entry is counted,
 * removed and reported as a miss with a note naming the file and the fault (the
 * caller warns, rebuilds and re-stores it); a hash
 * collision is a plain miss. So a different key never returns another key's code.
 * DIR is rt_cache_dir() unless given. Thread-safe: counters are atomic and every
 * entry is one file. */
#ifndef CRISP_RT_CACHE_H
#define CRISP_RT_CACHE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct RtCache {
  char dir[1024];        /* DIR/kernels */
  bool disabled;         /* $CRISP_NO_CACHE=1 or no usable directory: every get misses */
  atomic_long hits, misses, corrupt, stores;
} RtCache;

typedef struct RtBlob {
  char *data;            /* get: malloc'd (NUL-terminated; the caller frees) */
  size_t len;
} RtBlob;

enum { RT_CACHE_MAX_PARTS = 4 };

/* dir: the cache root (NULL: rt_cache_dir()). Creates DIR/kernels. On failure the
 * cache is disabled (returns -1 with the reason; callers may go on without it). */
int rt_cache_open(RtCache *c, const char *dir, char *err, size_t cap);

/* 1 and the parts on a hit (nparts must match the entry's), 0 on a miss. note: ""
 * or, when a corrupt entry was found (and removed), a line naming the file and what
 * was wrong, for the caller to show as a warning. */
int rt_cache_get(RtCache *c, const char *key, RtBlob *parts, int nparts, char *note,
                 size_t cap);
/* 0, or -1 with a message (the cache stays usable). */
int rt_cache_put(RtCache *c, const char *key, const RtBlob *parts, int nparts, char *err,
                 size_t cap);
/* The entry's file name for a key (for tests and messages). */
void rt_cache_path(const RtCache *c, const char *key, char *buf, size_t cap);

#endif
