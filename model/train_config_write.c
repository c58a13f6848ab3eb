/* train_config_write.c: the resolved configuration a run writes to RUNS/NAME/config.json
 * (every key, grouped as the user writes them), and the hash a checkpoint carries: the
 * same object without the keys a resumed run may change, so that --resume refuses a
 * checkpoint of another configuration but not a renamed or moved run folder. */
#include "train_config_impl.h"

#include "../runtime/fsutil.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cJSON *group_of(cJSON *root, const char *name, const char **leaf) {
  const char *dot = strchr(name, '.');
  if (!dot) {
    *leaf = name;
    return root;
  }
  char g[64];
  snprintf(g, sizeof g, "%.*s", (int)(dot - name), name);
  cJSON *o = cJSON_GetObjectItemCaseSensitive(root, g);
  if (!o)
    o = cJSON_AddObjectToObject(root, g);
  *leaf = dot + 1;
  return o;
}

static cJSON *config_object(const TrainConfig *c, bool resumable_too) {
  cJSON *root = cJSON_CreateObject();
  for (int ki = 0; ki < tc_n_keys; ki++) {
    const Key *k = &tc_keys[ki];
    if (!resumable_too && (train_config_resumable_key(k->name) || !strcmp(k->name, "name") ||
                           !strcmp(k->name, "runs_dir")))
      continue;   /* the hash: a run folder may be renamed or moved */
    if (!strcmp(k->name, "description"))
      continue;
    if (!strncmp(k->name, "random_model.", 13) && c->model[0])
      continue;   /* not used */
    if (!strcmp(k->name, "budget.layers") && c->budget.kind != BUDGET_LIST)
      continue;
    if (!resumable_too && !strcmp(k->name, "budget.entropy") &&
        c->budget.entropy == BUDGET_ENTROPY_KEPT)
      continue;   /* hashed as before the key existed: older checkpoints still resume */
    const char *leaf;
    cJSON *o = group_of(root, k->name, &leaf);
    const char *p = (const char *)c + k->off;
    switch (k->type) {
    case K_STR: cJSON_AddStringToObject(o, leaf, p); break;
    case K_INT: cJSON_AddNumberToObject(o, leaf, *(const int *)p); break;
    case K_I64: cJSON_AddNumberToObject(o, leaf, (double)*(const int64_t *)p); break;
    case K_U64: cJSON_AddNumberToObject(o, leaf, (double)*(const uint64_t *)p); break;
    case K_NUM: cJSON_AddNumberToObject(o, leaf, *(const double *)p); break;
    case K_DROP:
      if (*(const double *)p < 0)
        cJSON_AddNullToObject(o, leaf);
      else
        cJSON_AddNumberToObject(o, leaf, *(const double *)p);
      break;
    case K_SELECT: cJSON_AddStringToObject(o, leaf, tc_select_names[*(const int *)p]); break;
    case K_BKIND: cJSON_AddStringToObject(o, leaf, tc_bkind_names[*(const int *)p]); break;
    case K_BNORM: cJSON_AddStringToObject(o, leaf, tc_bnorm_names[*(const int *)p]); break;
    case K_BENT: cJSON_AddStringToObject(o, leaf, tc_bent_names[*(const int *)p]); break;
    case K_MTYPE: cJSON_AddStringToObject(o, leaf, tc_mtype_names[*(const int *)p]); break;
    case K_BETAS: {
      double b[2] = {c->beta1, c->beta2};
      cJSON_AddItemToObject(o, leaf, cJSON_CreateDoubleArray(b, 2));
      break;
    }
    case K_LIST:
      cJSON_AddItemToObject(o, leaf, cJSON_CreateDoubleArray(c->budget.list, c->budget.n_list));
      break;
    }
  }
  return root;
}

char *train_config_json(const TrainConfig *c) {
  cJSON *o = config_object(c, true);
  char *s = cJSON_Print(o);
  cJSON_Delete(o);
  return s;
}

uint64_t train_config_hash(const TrainConfig *c) {
  cJSON *o = config_object(c, false);
  char *s = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  uint64_t h = s ? rt_fnv1a64(s, strlen(s), RT_FNV_OFFSET) : 0;
  free(s);
  return h;
}
