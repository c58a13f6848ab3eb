/* json_kind.h: what a cJSON value is, worded for an error message ("a string",
 * "an array", ...), so that every reader of JSON in model/ (config.json in hf.c, the
 * safetensors header in safetensors_header.c) says "must be X, but it is Y" alike.
 * A whole file's text parsed strictly: runtime/json_whole.h. */
#ifndef CRISP_MODEL_JSON_KIND_H
#define CRISP_MODEL_JSON_KIND_H

#include <cjson/cJSON.h>

/* "a string", "a number", "an array", "an object", "a boolean", "null", or "missing"
 * for NULL (a key that is not there). */
const char *json_kind(const cJSON *j);

#endif
