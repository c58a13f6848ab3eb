/* json_kind.h: what a cJSON value is, worded for an error message ("a string",
 * "an array", ...), so that every reader of JSON in model/ (config.json in hf.c, the
 * safetensors header in safetensors_header.c) says "must be X, but it is Y" alike;
 * and a whole file's text parsed strictly, for the readers of small JSON files. */
#ifndef CRISP_MODEL_JSON_KIND_H
#define CRISP_MODEL_JSON_KIND_H

#include <cjson/cJSON.h>

/* "a string", "a number", "an array", "an object", "a boolean", "null", or "missing"
 * for NULL (a key that is not there). */
const char *json_kind(const cJSON *j);

/* The one JSON value that text (len bytes, the contents of file path) holds: a NUL
 * byte (it would cut a string short) or anything but blanks after the value is an
 * error too, where cJSON would silently stop. NULL on error, with
 * "PATH:LINE:COL: invalid JSON" (or "NUL byte", "unexpected text after the JSON
 * value") in err. */
cJSON *json_parse_whole(const char *path, const char *text, size_t len, char *err,
                        size_t cap);

#endif
