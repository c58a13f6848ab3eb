/* cli_model.c: the model folder `crisp eval` and `crisp predict` run: config, vocabulary
 * and weights on a cpu backend, the attention settings (DIR/crisp_attention.json as
 * crisp train wrote it, then the flags) and the crisp kernels. */
#include "cli_impl.h"

#include "../runtime/fsutil.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void cli_loaded_free(Loaded *l) {
  model_free(l->m);
  if (l->mod)
    rt_module_unload(l->be, l->mod);
  tok_free(l->tok);
  if (l->be)
    backend_close(l->be);
}

static int select_from_name(const char *s) {
  const char *names[] = {"none", "row_topk", "head_quantile", "layer_quantile"};
  for (int i = 0; i < 4; i++)
    if (!strcmp(s, names[i]))
      return i;
  return -1;
}

/* The model's attention settings: DIR/crisp_attention.json, then the flags. */
static int attention_settings(const char *cmd, const char *dir, const AttnOpts *ao, Model *m,
                              char *err, size_t cap) {
  int L = m->cfg.layers;
  m->attn.select = SEL_NONE;
  m->attn.keep_min = 1;
  for (int l = 0; l < L; l++)
    m->attn.sparsity[l] = 0;
  char path[1200];
  snprintf(path, sizeof path, "%s/crisp_attention.json", dir);
  char *text;
  size_t len;
  struct stat st;
  if (stat(path, &st) == 0) {
    if (rt_read_file(path, &text, &len, err, cap))
      return 1;
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *sel = cJSON_GetObjectItemCaseSensitive(j, "select");
    const cJSON *km = cJSON_GetObjectItemCaseSensitive(j, "keep_min");
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(j, "sparsity");
    int s = cJSON_IsString(sel) ? select_from_name(sel->valuestring) : -1;
    if (!j || s < 0 || !cJSON_IsNumber(km) || km->valueint < 1 || !cJSON_IsArray(sp) ||
        cJSON_GetArraySize(sp) != L) {
      cJSON_Delete(j);
      snprintf(err, cap, "%s: expected {\"select\", \"keep_min\", \"sparsity\": [%d numbers]}",
               path, L);
      return 2;
    }
    m->attn.select = (SelectKind)s;
    m->attn.keep_min = km->valueint;
    for (int l = 0; l < L; l++) {
      double v = cJSON_GetArrayItem(sp, l)->valuedouble;
      if (!(v >= 0 && v < 1)) {
        cJSON_Delete(j);
        snprintf(err, cap, "%s: sparsity[%d] = %g is outside [0, 1)", path, l, v);
        return 2;
      }
      m->attn.sparsity[l] = (float)v;
    }
    cJSON_Delete(j);
  }
  if (ao->select) {
    int s = select_from_name(ao->select);
    if (s < 0) {
      snprintf(err, cap, "--select: expected none, row_topk, head_quantile or layer_quantile");
      return 2;
    }
    m->attn.select = (SelectKind)s;
  }
  if (ao->keep_min)
    m->attn.keep_min = ao->keep_min;
  if (ao->sparsity) {
    double v[MODEL_MAX_LAYERS];
    int n = 0;
    const char *p = ao->sparsity;
    while (*p && n < MODEL_MAX_LAYERS) {
      char *end;
      v[n] = strtod(p, &end);
      if (end == p || !(v[n] >= 0 && v[n] < 1) || (*end && *end != ',')) {
        snprintf(err, cap, "--sparsity: expected numbers in [0, 1) separated by commas");
        return 2;
      }
      n++;
      p = *end ? end + 1 : end;
    }
    if (n != 1 && n != L) {
      snprintf(err, cap, "--sparsity: %d values for a %d-layer model (give 1 or %d)", n, L, L);
      return 2;
    }
    for (int l = 0; l < L; l++)
      m->attn.sparsity[l] = (float)(n == 1 ? v[0] : v[l]);
  }
  (void)cmd;
  return 0;
}

int cli_load_model(const char *cmd, const char *dir, int threads, int batch, int max_len,
                   const AttnOpts *ao, Loaded *out, char *err, size_t cap) {
  memset(out, 0, sizeof *out);
  ModelConfig mc;
  char path[1200];
  if (hf_config_load(dir, &mc, err, cap))
    return 2;
  snprintf(path, sizeof path, "%s/vocab.txt", dir);
  out->tok = tok_load(path, err, cap);
  if (!out->tok)
    return 2;
  if (threads > 0) {
    char t[16];
    snprintf(t, sizeof t, "%d", threads);
    setenv("OPENBLAS_NUM_THREADS", t, 1);
  }
  out->be = backend_open("cpu", &(BackendOptions){.threads = threads}, err, cap);
  if (!out->be)
    return 1;
  if (max_len > mc.max_position)
    max_len = mc.max_position;
  out->m = model_create(out->be, &mc, &(ModelOptions){.max_batch = batch, .max_len = max_len},
                        err, cap);
  if (!out->m)
    return 1;
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  int n_init = 0;
  if (model_load(out->m, path, 0, &n_init, err, cap))
    return 2;
  if (n_init)
    fprintf(stderr, "crisp %s: warning: %s has no trained classifier (%d tensors initialised "
                    "at random)\n",
            cmd, path, n_init);
  int rc = attention_settings(cmd, dir, ao, out->m, err, cap);
  if (rc)
    return rc;
  bool crisp = !ao->impl || !strcmp(ao->impl, "crisp");
  if (ao->impl && strcmp(ao->impl, "crisp") && strcmp(ao->impl, "ref")) {
    snprintf(err, cap, "--impl: expected crisp or ref");
    return 2;
  }
  if (crisp) {
    if (train_attach_crisp(out->m, out->m->attn.select, out->m->attn.keep_min, &out->mod, err,
                           cap))
      return 1;
    out->m->attn.impl = ATTN_IMPL_CRISP;
  }
  return 0;
}

bool cli_attn_flag(int argc, char **argv, int *i, AttnOpts *ao, const char *cmd, int *rc) {
  const char *v = NULL;
  bool miss = false;
  *rc = 0;
  if (cli_opt_val(argc, argv, i, "--select", &v, &miss))
    ao->select = v;
  else if (cli_opt_val(argc, argv, i, "--sparsity", &v, &miss))
    ao->sparsity = v;
  else if (cli_opt_val(argc, argv, i, "--impl", &v, &miss))
    ao->impl = v;
  else if (cli_opt_val(argc, argv, i, "--keep-min", &v, &miss)) {
    long k;
    if (!miss && !cli_parse_int(v, 1, 8192, &k)) {
      *rc = cli_usage_error(cmd, "--keep-min: expected an integer >= 1, got \"%s\"", v);
      return true;
    }
    if (!miss)
      ao->keep_min = (int)k;
  } else
    return false;
  if (miss)
    *rc = cli_usage_error(cmd, "%s needs a value", argv[*i]);
  return true;
}
