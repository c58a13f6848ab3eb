/* json_whole.h: a small JSON file's text parsed strictly, for every reader of one
 * (the tuning database, manifests, and model/'s configs and run files).
 *
 * Why: cJSON_ParseWithLength stops after the first value, so a file with garbage or
 * a second value appended would be read as if it ended there, and a NUL byte would
 * silently cut a string short. */
#ifndef CRISP_RT_JSON_WHOLE_H
#define CRISP_RT_JSON_WHOLE_H

#include <stddef.h>

#include <cjson/cJSON.h>

/* Where and why json_whole failed: 1-based line and column of the byte, and
 * "NUL byte", "unexpected text after the JSON value" or "invalid JSON". */
typedef struct {
  int line, col;
  const char *what;
} JsonWhere;

/* The one JSON value text (len bytes) holds, blanks around it allowed; NULL on error
 * with *where filled in. */
cJSON *json_whole(const char *text, size_t len, JsonWhere *where);

/* The same for the contents of file path, the error as "PATH:LINE:COL: what". */
cJSON *json_whole_file(const char *path, const char *text, size_t len, char *err,
                       size_t cap);

#endif
