/* File-system helpers (see fsutil.h). */
#define _POSIX_C_SOURCE 200809L

#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int rt_read_file(const char *path, char **out, size_t *len, char *err, size_t cap) {
  *out = NULL;
  *len = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    snprintf(err, cap, "%s: %s", path, strerror(errno));
    return -1;
  }
  size_t n = 0, size = 1 << 16;
  char *buf = malloc(size);
  for (;;) {
    if (!buf) {
      snprintf(err, cap, "%s: out of memory", path);
      close(fd);
      return -1;
    }
    if (n + 1 >= size) {
      char *grown = realloc(buf, size * 2);
      if (!grown) {
        free(buf);
        buf = NULL;
        continue;
      }
      buf = grown;
      size *= 2;
    }
    ssize_t got = read(fd, buf + n, size - n - 1);
    if (got < 0 && errno == EINTR)
      continue;
    if (got < 0) {
      snprintf(err, cap, "%s: read: %s", path, strerror(errno));
      free(buf);
      close(fd);
      return -1;
    }
    if (got == 0)
      break;
    n += (size_t)got;
  }
  close(fd);
  buf[n] = 0;
  *out = buf;
  *len = n;
  return 0;
}

static int write_all(int fd, const char *data, size_t len) {
  while (len) {
    ssize_t n = write(fd, data, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return -1;
    data += n;
    len -= (size_t)n;
  }
  return 0;
}

/* fsync the directory holding path, so the rename itself is durable (best effort). */
static void sync_dir(const char *path) {
  const char *slash = strrchr(path, '/');
  char dir[4096];
  if (!slash)
    snprintf(dir, sizeof dir, ".");
  else if (snprintf(dir, sizeof dir, "%.*s", (int)(slash - path + (slash == path)), path) >=
           (int)sizeof dir)
    return;
  int fd = open(dir, O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
}

int rt_write_atomic(const char *path, const void *data, size_t len, char *err, size_t cap) {
  size_t n = strlen(path);
  char *tmp = malloc(n + 16);
  if (!tmp) {
    snprintf(err, cap, "%s: out of memory", path);
    return -1;
  }
  memcpy(tmp, path, n);
  memcpy(tmp + n, ".tmp.XXXXXX", 12);
  int fd = mkstemp(tmp);
  if (fd < 0) {
    snprintf(err, cap, "%s: cannot create a temporary file: %s", path, strerror(errno));
    free(tmp);
    return -1;
  }
  const char *what = NULL;
  if (fchmod(fd, 0644))
    what = "chmod";
  else if (write_all(fd, data, len))
    what = "write";
  else if (fsync(fd))
    what = "fsync";
  int saved = errno;
  if (close(fd) && !what) {
    what = "close";
    saved = errno;
  }
  if (!what && rename(tmp, path)) {
    what = "rename";
    saved = errno;
  }
  if (what) {
    snprintf(err, cap, "%s: %s failed: %s", path, what, strerror(saved));
    unlink(tmp);
  } else {
    sync_dir(path);
  }
  free(tmp);
  return what ? -1 : 0;
}

int rt_mkdirs(const char *path, char *err, size_t cap) {
  char buf[4096];
  size_t n = strlen(path);
  if (n == 0 || n >= sizeof buf) {
    snprintf(err, cap, "%s: bad directory name", path);
    return -1;
  }
  memcpy(buf, path, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (buf[i] != '/' && buf[i] != 0)
      continue;
    char c = buf[i];
    buf[i] = 0;
    if (mkdir(buf, 0755) && errno != EEXIST) {
      snprintf(err, cap, "cannot create directory %s: %s", buf, strerror(errno));
      return -1;
    }
    buf[i] = c;
  }
  struct stat st;
  if (stat(path, &st) || !S_ISDIR(st.st_mode)) {
    snprintf(err, cap, "%s: not a directory", path);
    return -1;
  }
  return 0;
}

int rt_cache_dir(char *buf, size_t cap) {
  const char *env = getenv("CRISP_CACHE_DIR");
  if (env && *env)
    return snprintf(buf, cap, "%s", env) < (int)cap ? 0 : -1;
  env = getenv("XDG_CACHE_HOME");
  if (env && env[0] == '/')   /* the XDG spec: relative values are ignored */
    return snprintf(buf, cap, "%s/crisp", env) < (int)cap ? 0 : -1;
  env = getenv("HOME");
  if (env && *env)
    return snprintf(buf, cap, "%s/.cache/crisp", env) < (int)cap ? 0 : -1;
  return -1;
}

uint64_t rt_fnv1a64(const void *data, size_t len, uint64_t h) {
  if (h == RT_FNV_OFFSET)
    h = 0xcbf29ce484222325ull;
  const unsigned char *p = data;
  for (size_t i = 0; i < len; i++) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

double rt_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
