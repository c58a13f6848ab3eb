/* fsutil.h: the few file-system operations the runtime needs, without LLVM.
 *
 *   rt_read_file      a whole file into memory (NUL-terminated)
 *   rt_write_atomic   temp file + fsync + rename: readers see the old or the whole new file
 *   rt_mkdirs         mkdir -p
 *   rt_cache_dir      $CRISP_CACHE_DIR, else $XDG_CACHE_HOME/crisp, else ~/.cache/crisp
 *   rt_fnv1a64        the hash used for cache keys and entry checksums
 * Functions return 0, or -1 with a message naming the path in err. */
#ifndef CRISP_RT_FSUTIL_H
#define CRISP_RT_FSUTIL_H

#include <stddef.h>
#include <stdint.h>

/* *out is malloc'd (len + 1 bytes, NUL-terminated); the caller frees it. */
int rt_read_file(const char *path, char **out, size_t *len, char *err, size_t cap);
int rt_write_atomic(const char *path, const void *data, size_t len, char *err, size_t cap);
int rt_mkdirs(const char *path, char *err, size_t cap);
/* Writes the cache directory (not created) into buf; -1 if no home can be found. */
int rt_cache_dir(char *buf, size_t cap);

uint64_t rt_fnv1a64(const void *data, size_t len, uint64_t h);
enum { RT_FNV_OFFSET = 0 };   /* pass 0 to start: rt_fnv1a64 then uses the FNV offset basis */

/* Monotonic seconds. */
double rt_now(void);

#endif
