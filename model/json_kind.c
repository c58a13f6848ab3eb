/* json_kind.c: see json_kind.h. */
#include "json_kind.h"

#include <stdio.h>
#include <string.h>

const char *json_kind(const cJSON *j) {
  if (!j) return "missing";
  if (cJSON_IsString(j)) return "a string";
  if (cJSON_IsNumber(j)) return "a number";
  if (cJSON_IsArray(j)) return "an array";
  if (cJSON_IsObject(j)) return "an object";
  if (cJSON_IsBool(j)) return "a boolean";
  return "null";
}

/* "PATH:LINE:COL: what" for byte `at` of text. */
static void text_error(const char *path, const char *text, size_t len, size_t at,
                       const char *what, char *err, size_t cap) {
  int line = 1, col = 1;
  for (size_t i = 0; i < at && i < len; i++)
    text[i] == '\n' ? (line++, col = 1) : col++;
  snprintf(err, cap, "%s:%d:%d: %s", path, line, col, what);
}

cJSON *json_parse_whole(const char *path, const char *text, size_t len, char *err,
                        size_t cap) {
  const char *end = NULL;
  size_t nul = strnlen(text, len);
  cJSON *j = nul < len ? NULL : cJSON_ParseWithLengthOpts(text, len, &end, 0);
  size_t at = nul < len ? nul : end ? (size_t)(end - text) : 0;
  while (j && at < len && strchr(" \t\r\n", text[at]))
    at++;
  if (j && at == len)
    return j;
  cJSON_Delete(j);
  text_error(path, text, len, at, nul < len ? "NUL byte"
                                  : j       ? "unexpected text after the JSON value"
                                            : "invalid JSON",
             err, cap);
  return NULL;
}
