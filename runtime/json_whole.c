/* json_whole.c: see json_whole.h. */
#include "json_whole.h"

#include <stdio.h>
#include <string.h>

static void locate(const char *text, size_t len, size_t at, const char *what, JsonWhere *w) {
  w->line = 1, w->col = 1, w->what = what;
  for (size_t i = 0; i < at && i < len; i++)
    text[i] == '\n' ? (w->line++, w->col = 1) : w->col++;
}

cJSON *json_whole(const char *text, size_t len, JsonWhere *where) {
  const char *end = NULL;
  size_t nul = strnlen(text, len);
  cJSON *j = nul < len ? NULL : cJSON_ParseWithLengthOpts(text, len, &end, 0);
  size_t at = nul < len ? nul : end ? (size_t)(end - text) : 0;
  while (j && at < len && strchr(" \t\r\n", text[at]))
    at++;
  if (j && at == len)
    return j;
  cJSON_Delete(j);
  locate(text, len, at,
         nul < len ? "NUL byte" : j ? "unexpected text after the JSON value" : "invalid JSON",
         where);
  return NULL;
}

cJSON *json_whole_file(const char *path, const char *text, size_t len, char *err,
                       size_t cap) {
  JsonWhere w;
  cJSON *j = json_whole(text, len, &w);
  if (!j)
    snprintf(err, cap, "%s:%d:%d: %s", path, w.line, w.col, w.what);
  return j;
}
