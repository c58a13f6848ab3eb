/* Finding ptxas (the CUDA toolkit's, else on PATH) and counting matches in its
 * output: shared by the tests that push generated PTX through it. */
#ifndef CRISP_PTXAS_UTIL_H
#define CRISP_PTXAS_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The ptxas to use, or NULL when the toolkit is absent (tests then skip). */
static inline const char *find_ptxas(void) {
  static char path[512];
  if (access("/usr/local/cuda/bin/ptxas", X_OK) == 0)
    return "/usr/local/cuda/bin/ptxas";
  const char *env = getenv("PATH");
  while (env && *env) {
    const char *colon = strchr(env, ':');
    size_t n = colon ? (size_t)(colon - env) : strlen(env);
    snprintf(path, sizeof path, "%.*s/ptxas", (int)n, env);
    if (n && access(path, X_OK) == 0)
      return path;
    env = colon ? colon + 1 : NULL;
  }
  return NULL;
}

/* Occurrences of needle in s. */
static inline int count(const char *s, const char *needle) {
  int n = 0;
  for (const char *p = s; (p = strstr(p, needle)); p++)
    n++;
  return n;
}

#endif
