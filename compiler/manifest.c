/* Manifest writer (see manifest.h). The JSON is built with cJSON. */
#include "manifest.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "version.h"

static const char *const role_names[] = {"in", "out", "inout", "scalar"};

static cJSON *param_json(const Param *p) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "name", p->name);
  if (p->buf) {
    char type[16];
    snprintf(type, sizeof type, "%s*", ir_type_name(p->buf->elem));
    cJSON_AddStringToObject(j, "type", type);
    cJSON_AddStringToObject(j, "role", role_names[p->buf->role]);
  } else {
    cJSON_AddStringToObject(j, "type", ir_type_name(p->type));
    cJSON_AddStringToObject(j, "role", "scalar");
  }
  return j;
}

/* grid dim = ceil(product(params) / div) */
static cJSON *grid_json(const Kernel *k) {
  cJSON *grid = cJSON_CreateArray();
  for (int d = 0; d < 3; d++) {
    cJSON *g = cJSON_CreateObject();
    cJSON *names = cJSON_AddArrayToObject(g, "params");
    for (int j = 0; j < 2; j++)
      if (k->grid[d].params[j] >= 0)
        cJSON_AddItemToArray(names, cJSON_CreateString(k->params[k->grid[d].params[j]].name));
    cJSON_AddNumberToObject(g, "div", k->grid[d].div);
    cJSON_AddItemToArray(grid, g);
  }
  return grid;
}

static int64_t shared_bytes(const Kernel *k) {
  int64_t n = 0;
  for (int i = 0; i < k->nbufs; i++)
    if (k->bufs[i]->space == SPACE_SHARED)
      n += k->bufs[i]->size * (ir_type_bits(k->bufs[i]->elem) / 8);
  return n;
}

static cJSON *kernel_json(const Kernel *k) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "name", k->name);
  cJSON_AddNumberToObject(j, "threads", 32 * k->warps);
  cJSON_AddNumberToObject(j, "shared_bytes", (double)shared_bytes(k));
  cJSON_AddItemToObject(j, "grid", grid_json(k));
  cJSON *params = cJSON_AddArrayToObject(j, "params");
  for (int i = 0; i < k->nparams; i++)
    cJSON_AddItemToArray(params, param_json(&k->params[i]));
  return j;
}

static cJSON *spec_json(const Spec *s) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "name", s->name);
  cJSON_AddNumberToObject(j, "head_dim", s->head_dim);
  cJSON_AddNumberToObject(j, "max_seq", s->max_seq);
  cJSON_AddStringToObject(j, "dtype", dtype_name(s->dtype));
  cJSON_AddNumberToObject(j, "sparsity", s->sparsity);
  cJSON_AddStringToObject(j, "select", select_name(s->select));
  cJSON_AddNumberToObject(j, "keep_min", s->keep_min);
  cJSON_AddBoolToObject(j, "causal", s->causal);
  cJSON_AddNumberToObject(j, "dropout", s->dropout);
  cJSON_AddBoolToObject(j, "backward", s->backward);
  return j;
}

char *manifest_json(const Spec *s, const TileConfig *t, Target target, const Module *m) {
  cJSON *root = cJSON_CreateObject();
  char hash[32];
  snprintf(hash, sizeof hash, "%016" PRIx64, spec_hash(s));
  cJSON_AddNumberToObject(root, "format", 1);
  cJSON_AddStringToObject(root, "compiler", "crispc " CRISP_VERSION);
  cJSON_AddStringToObject(root, "llvm", CRISP_LLVM_VERSION);
  cJSON_AddStringToObject(root, "target", target_name(target));
  cJSON_AddStringToObject(root, "spec_hash", hash);
  cJSON_AddItemToObject(root, "spec", spec_json(s));
  cJSON *tile = cJSON_AddObjectToObject(root, "tile");
  cJSON_AddNumberToObject(tile, "rows", t->rows);
  cJSON_AddNumberToObject(tile, "warps", t->warps);
  cJSON *kernels = cJSON_AddArrayToObject(root, "kernels");
  for (int i = 0; i < m->n; i++)
    cJSON_AddItemToArray(kernels, kernel_json(m->kernels[i]));
  char *text = cJSON_Print(root);
  cJSON_Delete(root);
  return text;
}

char *manifest_path_for(const char *output_path) {
  size_t n = strlen(output_path);
  const char *dot = strrchr(output_path, '.');
  const char *slash = strrchr(output_path, '/');
  if (dot && (!slash || dot > slash))
    n = (size_t)(dot - output_path);
  char *path = malloc(n + sizeof ".manifest.json");
  if (!path)
    return NULL;
  memcpy(path, output_path, n);
  strcpy(path + n, ".manifest.json");
  return path;
}
