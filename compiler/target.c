/* target.c: the names of the code generation targets (see target.h). */
#include "target.h"

#include <stddef.h>
#include <string.h>

const char *target_name(Target t) {
  switch (t) {
  case TARGET_SM80: return "sm_80";
  case TARGET_SM90: return "sm_90";
  default: return "host";
  }
}

int target_parse(const char *s, Target *out) {
  static const struct { const char *name; Target t; } names[] = {
      {"host", TARGET_HOST}, {"cpu", TARGET_HOST}, {"sm_80", TARGET_SM80},
      {"sm80", TARGET_SM80}, {"sm_90", TARGET_SM90}, {"sm90", TARGET_SM90},
  };
  for (size_t i = 0; s && i < sizeof names / sizeof names[0]; i++)
    if (!strcmp(s, names[i].name)) {
      *out = names[i].t;
      return 0;
    }
  return -1;
}
