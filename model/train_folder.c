/* train_folder.c: the run folder RUNS/NAME made, and unmade when the run fails before
 * its first checkpoint. A run that fails that early has nothing to resume, and the
 * config.json it left would block its name ("already holds a run"), so what this
 * invocation created goes again; and only that: the folders above RUNS/NAME that
 * existed, and whatever RUNS/NAME held before (a folder the user made), stay. */
#include "train_impl.h"

#include "../runtime/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool is_dir(const char *p) {
  struct stat s;
  return stat(p, &s) == 0 && S_ISDIR(s.st_mode);
}

static void free_list(char **v, int n) {
  for (int i = 0; i < n; i++)
    free(v[i]);
  free(v);
}

/* The names in dir (without . and ..), malloc'd; -1 when it cannot be read. */
static int list_dir(const char *dir, char ***out) {
  DIR *d = opendir(dir);
  *out = NULL;
  if (!d)
    return -1;
  int n = 0, cap = 0;
  char **v = NULL;
  bool oom = false;
  for (struct dirent *e; !oom && (e = readdir(d));) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
      continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 16;
      char **nv = realloc(v, (size_t)cap * sizeof *v);
      if (!nv) {
        oom = true;
        break;
      }
      v = nv;
    }
    if (!(v[n] = strdup(e->d_name)))
      oom = true;
    else
      n++;
  }
  closedir(d);
  if (oom) {   /* a partial list would make what it misses look new */
    free_list(v, n);
    return -1;
  }
  *out = v;
  return n;
}

/* rm -r, without following symbolic links (a link is removed, not what it names). */
static void remove_tree(const char *path) {
  struct stat s;
  if (lstat(path, &s))
    return;
  if (!S_ISDIR(s.st_mode)) {
    unlink(path);
    return;
  }
  char **names;
  int n = list_dir(path, &names);
  for (int i = 0; i < n; i++) {
    char child[4096];
    if (snprintf(child, sizeof child, "%s/%s", path, names[i]) < (int)sizeof child)
      remove_tree(child);
  }
  free_list(names, n);
  rmdir(path);
}

/* Cuts the last component (and the slashes before it) off p; false when none is left. */
static bool parent(char *p) {
  size_t n = strlen(p);
  while (n > 1 && p[n - 1] == '/')
    n--;
  while (n > 0 && p[n - 1] != '/')
    n--;
  while (n > 1 && p[n - 1] == '/')
    n--;
  p[n] = 0;
  return n > 0;
}

int run_folder_make(RunFolder *f, const char *dir, char *err, size_t cap) {
  *f = (RunFolder){.n_had = -1};
  snprintf(f->dir, sizeof f->dir, "%s", dir);
  if (is_dir(dir)) {
    f->n_had = list_dir(dir, &f->had);   /* unreadable (-1): nothing is removed */
  } else {
    /* the first folder of the path that is missing: it and all below it are ours */
    char buf[sizeof f->dir];
    snprintf(buf, sizeof buf, "%s", dir);
    for (size_t i = 1, n = strlen(buf); i <= n; i++) {
      if (buf[i] != '/' && buf[i] != 0)
        continue;
      char c = buf[i];
      buf[i] = 0;
      struct stat s;
      if (stat(buf, &s) && errno == ENOENT) {
        snprintf(f->top, sizeof f->top, "%s", buf);
        break;
      }
      buf[i] = c;
    }
    f->n_had = 0;
  }
  return rt_mkdirs(dir, err, cap);
}

static bool had(const RunFolder *f, const char *name) {
  for (int i = 0; i < f->n_had; i++)
    if (!strcmp(f->had[i], name))
      return true;
  return false;
}

void run_folder_undo(const RunFolder *f) {
  if (!f->dir[0] || f->n_had < 0)
    return;
  char **names;
  int n = list_dir(f->dir, &names);
  for (int i = 0; i < n; i++) {
    char child[4096];
    if (!had(f, names[i]) &&
        snprintf(child, sizeof child, "%s/%s", f->dir, names[i]) < (int)sizeof child)
      remove_tree(child);
  }
  free_list(names, n);
  if (!f->top[0])
    return;
  /* RUNS/NAME and the folders above it this invocation made, deepest first; rmdir
   * leaves any that something else has filled since */
  char p[sizeof f->dir];
  snprintf(p, sizeof p, "%s", f->dir);
  size_t top_len = strlen(f->top);
  while (strlen(p) >= top_len && !rmdir(p) && strcmp(p, f->top) && parent(p)) {
  }
}

void run_folder_free(RunFolder *f) {
  if (f->n_had > 0)
    free_list(f->had, f->n_had);
  f->had = NULL, f->n_had = -1;
}
