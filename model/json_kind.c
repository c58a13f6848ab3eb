/* json_kind.c: see json_kind.h. */
#include "json_kind.h"


const char *json_kind(const cJSON *j) {
  if (!j) return "missing";
  if (cJSON_IsString(j)) return "a string";
  if (cJSON_IsNumber(j)) return "a number";
  if (cJSON_IsArray(j)) return "an array";
  if (cJSON_IsObject(j)) return "an object";
  if (cJSON_IsBool(j)) return "a boolean";
  return "null";
}
