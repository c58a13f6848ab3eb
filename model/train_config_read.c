/* train_config_read.c: a run configuration read strictly: a JSON file (an unknown key,
 * a value of the wrong type or out of its range is an error naming the file, or its
 * line and column for bad JSON, and the key) and --set KEY=VALUE overrides, where a
 * value that is not JSON is taken as a string. Each key given is marked in
 * explicit_keys, so the embedded profile and the checks know what the user set. */
#include "train_config_impl.h"

#include "../runtime/fsutil.h"
#include "../runtime/json_whole.h"
#include "json_kind.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const GROUPS[] = {"budget", "dropout", "random_model"};

static int enum_index(const char *const *names, int n, const char *s) {
  for (int i = 0; i < n; i++)
    if (!strcmp(names[i], s))
      return i;
  return -1;
}

static void enum_list(const char *const *names, int n, char *buf, size_t cap) {
  buf[0] = 0;
  for (int i = 0; i < n; i++) {
    size_t l = strlen(buf);
    snprintf(buf + l, cap - l, "%s\"%s\"", i ? ", " : "", names[i]);
  }
}

static int num_in_range(const Key *k, double v, const char *where, char *err, size_t cap) {
  if (!isfinite(v) || v < k->lo || (k->hi_open ? v >= k->hi : v > k->hi)) {
    snprintf(err, cap, "%s: key \"%s\": %g is outside [%g, %g%s", where, k->name, v, k->lo, k->hi,
             k->hi_open ? ")" : "]");
    return -1;
  }
  return 0;
}

/* Sets key k from JSON value v. */
static int set_key(TrainConfig *c, int ki, const cJSON *v, const char *where, char *err,
                   size_t cap) {
  const Key *k = &tc_keys[ki];
  char *p = (char *)c + k->off;
  char names[160];
#define EXPECT(what)                                                                      \
  do {                                                                                    \
    snprintf(err, cap, "%s: key \"%s\": expected %s", where, k->name, what);               \
    return -1;                                                                            \
  } while (0)
  switch (k->type) {
  case K_STR:
    if (!cJSON_IsString(v))
      EXPECT("a string");
    if (k->size == 0)
      break;   /* description */
    if (strlen(v->valuestring) >= k->size) {
      snprintf(err, cap, "%s: key \"%s\": longer than %zu bytes", where, k->name, k->size - 1);
      return -1;
    }
    if (k->lo == 1 && !v->valuestring[0])
      EXPECT("a non-empty string");
    snprintf(p, k->size, "%s", v->valuestring);
    break;
  case K_INT:
  case K_I64:
  case K_U64:
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
      EXPECT("an integer");
    if (num_in_range(k, v->valuedouble, where, err, cap))
      return -1;
    if (k->type == K_INT)
      *(int *)p = (int)v->valuedouble;
    else if (k->type == K_I64)
      *(int64_t *)p = (int64_t)v->valuedouble;
    else
      *(uint64_t *)p = (uint64_t)v->valuedouble;
    break;
  case K_NUM:
    if (!cJSON_IsNumber(v))
      EXPECT("a number");
    if (num_in_range(k, v->valuedouble, where, err, cap))
      return -1;
    *(double *)p = v->valuedouble;
    break;
  case K_DROP:
    if (cJSON_IsNull(v)) {
      *(double *)p = -1;
      break;
    }
    if (!cJSON_IsNumber(v))
      EXPECT("a number or null (the model config's rate)");
    if (num_in_range(k, v->valuedouble, where, err, cap))
      return -1;
    *(double *)p = v->valuedouble;
    break;
  case K_SELECT:
  case K_BKIND:
  case K_BNORM:
  case K_BENT:
  case K_MTYPE: {
    const char *const *tab = k->type == K_SELECT  ? tc_select_names
                             : k->type == K_BKIND ? tc_bkind_names
                             : k->type == K_BNORM ? tc_bnorm_names
                             : k->type == K_BENT  ? tc_bent_names
                                                  : tc_mtype_names;
    int n = k->type == K_SELECT ? 4 : k->type == K_BKIND ? 3 : 2;
    enum_list(tab, n, names, sizeof names);
    int i = cJSON_IsString(v) ? enum_index(tab, n, v->valuestring) : -1;
    if (i < 0) {
      snprintf(err, cap, "%s: key \"%s\": expected one of %s", where, k->name, names);
      return -1;
    }
    *(int *)p = i;
    break;
  }
  case K_BETAS: {
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2)
      EXPECT("[beta1, beta2]");
    for (int i = 0; i < 2; i++) {
      const cJSON *x = cJSON_GetArrayItem(v, i);
      if (!cJSON_IsNumber(x))
        EXPECT("[beta1, beta2] (numbers)");
      if (num_in_range(k, x->valuedouble, where, err, cap))
        return -1;
    }
    c->beta1 = cJSON_GetArrayItem(v, 0)->valuedouble;
    c->beta2 = cJSON_GetArrayItem(v, 1)->valuedouble;
    break;
  }
  case K_LIST: {
    int n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : -1;
    if (n < 1 || n > MODEL_MAX_LAYERS)
      EXPECT("a list of 1..64 per-layer sparsities");
    for (int i = 0; i < n; i++) {
      const cJSON *x = cJSON_GetArrayItem(v, i);
      if (!cJSON_IsNumber(x))
        EXPECT("a list of numbers");
      if (num_in_range(k, x->valuedouble, where, err, cap))
        return -1;
      c->budget.list[i] = x->valuedouble;
    }
    c->budget.n_list = n;
    break;
  }
  }
#undef EXPECT
  c->explicit_keys |= 1ull << ki;
  return 0;
}

static int find_key(const char *name) {
  for (int k = 0; k < tc_n_keys; k++)
    if (!strcmp(tc_keys[k].name, name))
      return k;
  return -1;
}

static bool is_group(const char *name) {
  for (size_t i = 0; i < sizeof GROUPS / sizeof *GROUPS; i++)
    if (!strcmp(GROUPS[i], name))
      return true;
  return false;
}

static int apply_object(TrainConfig *c, const cJSON *obj, const char *prefix, const char *where,
                        char *err, size_t cap) {
  for (const cJSON *it = obj->child; it; it = it->next) {
    char name[128];
    snprintf(name, sizeof name, "%s%s%s", prefix, prefix[0] ? "." : "", it->string);
    if (!prefix[0] && is_group(name)) {
      if (!cJSON_IsObject(it)) {
        snprintf(err, cap, "%s: key \"%s\": expected an object", where, name);
        return -1;
      }
      if (apply_object(c, it, name, where, err, cap))
        return -1;
      continue;
    }
    int k = find_key(name);
    if (k < 0) {
      snprintf(err, cap, "%s: unknown key \"%s\"", where, name);
      return -1;
    }
    if (set_key(c, k, it, where, err, cap))
      return -1;
  }
  return 0;
}

/* The file's one JSON value, strictly (json_whole_file). */
static cJSON *parse_file(const char *path, char *err, size_t cap) {
  char *text;
  size_t len;
  if (rt_read_file(path, &text, &len, err, cap))
    return NULL;
  cJSON *j = json_whole_file(path, text, len, err, cap);
  free(text);
  return j;
}

int train_config_load(const char *path, TrainConfig *c, char *err, size_t cap) {
  cJSON *j = parse_file(path, err, cap);
  if (!j)
    return -1;
  int rc = 0;
  if (!cJSON_IsObject(j)) {
    snprintf(err, cap, "%s: expected a JSON object at the top", path);
    rc = -1;
  } else {
    rc = apply_object(c, j, "", path, err, cap);
  }
  cJSON_Delete(j);
  return rc;
}

int train_config_set(TrainConfig *c, const char *kv, char *err, size_t cap) {
  const char *eq = strchr(kv, '=');
  if (!eq || eq == kv) {
    snprintf(err, cap, "--set %s: expected KEY=VALUE", kv);
    return -1;
  }
  char key[128];
  snprintf(key, sizeof key, "%.*s", (int)(eq - kv), kv);
  int k = find_key(key);
  if (k < 0) {
    snprintf(err, cap, "--set: unknown key \"%s\"", key);
    return -1;
  }
  const char *val = eq + 1;
  /* all of VALUE must be JSON ("4x" is not 4); anything else is a bare string */
  cJSON *v = cJSON_ParseWithOpts(val, NULL, 1);
  if (!v || (tc_keys[k].type == K_STR && !cJSON_IsString(v))) {
    cJSON_Delete(v);
    v = cJSON_CreateString(val);   /* a bare string */
  }
  int rc = set_key(c, k, v, "--set", err, cap);
  cJSON_Delete(v);
  return rc;
}
