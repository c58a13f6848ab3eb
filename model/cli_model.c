/* cli_model.c: the model folder `crisp eval` and `crisp predict` run: config, vocabulary
 * and weights on a cpu backend, the attention settings (DIR/crisp_attention.json as
 * crisp train wrote it, then the flags) and the crisp kernels. */
#include "cli_impl.h"

#include "../runtime/fsutil.h"
#include "../runtime/json_whole.h"
#include "json_kind.h"

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

/* "PATH: key \"K\": what" (for the reader below), 2 (a bad file). */
static int attn_key_error(const char *path, const char *key, const char *what, char *err,
                          size_t cap) {
  snprintf(err, cap, "%s: key \"%s\": expected %s", path, key, what);
  return 2;
}

/* DIR/crisp_attention.json as crisp train writes it: {"select": NAME, "keep_min":
 * 1..8192, "sparsity": [one number in [0, 1) per layer]}, read strictly: a value of
 * another type or range is an error naming the key, never read as 0 or truncated. */
static int read_attention_file(const char *path, Model *m, char *err, size_t cap) {
  int L = m->cfg.layers;
  char *text, what[64];
  size_t len;
  if (rt_read_file(path, &text, &len, err, cap))
    return 1;
  cJSON *j = json_whole_file(path, text, len, err, cap);
  free(text);
  if (!j)
    return 2;
  const cJSON *sel = cJSON_GetObjectItemCaseSensitive(j, "select");
  const cJSON *km = cJSON_GetObjectItemCaseSensitive(j, "keep_min");
  const cJSON *sp = cJSON_GetObjectItemCaseSensitive(j, "sparsity");
  int s = cJSON_IsString(sel) ? select_from_name(sel->valuestring) : -1;
  double k = cJSON_IsNumber(km) ? km->valuedouble : 0;
  snprintf(what, sizeof what, "a list of %d numbers in [0, 1)", L);
  int rc = 0;
  if (!cJSON_IsObject(j))
    rc = 2, snprintf(err, cap, "%s: expected a JSON object", path);
  else if (s < 0)
    rc = attn_key_error(path, "select", "none, row_topk, head_quantile or layer_quantile", err,
                        cap);
  else if (!(k >= 1 && k <= 8192 && k == (int)k))
    rc = attn_key_error(path, "keep_min", "an integer in 1..8192", err, cap);
  else if (!cJSON_IsArray(sp) || cJSON_GetArraySize(sp) != L)
    rc = attn_key_error(path, "sparsity", what, err, cap);
  for (int l = 0; !rc && l < L; l++) {
    const cJSON *v = cJSON_GetArrayItem(sp, l);
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble < 1))
      rc = attn_key_error(path, "sparsity", what, err, cap);
    else
      m->attn.sparsity[l] = (float)v->valuedouble;
  }
  if (!rc)
    m->attn.select = (SelectKind)s, m->attn.keep_min = (int)k;
  cJSON_Delete(j);
  return rc;
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
  struct stat st;
  int rc = stat(path, &st) == 0 ? read_attention_file(path, m, err, cap) : 0;
  if (rc)
    return rc;
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
      if (end == p || !(v[n] >= 0 && v[n] < 1) || (*end && *end != ',') ||
          (*end == ',' && !end[1])) {   /* "0.5," is not a list of one */
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

/* The labels the command can use, checked before any weight is read. eval scores
 * SST-2's 0/1 labels, so it needs the 2 labels crisp train requires (any other count
 * failed later as "labels[0] = 1 is outside 0..0", or compared against the wrong
 * classes); predict picks the likeliest of at least 2 (num_labels 1 is a regression
 * head, whose one softmax "probability" would always be 1). 0, or 2 with err. */
static int check_labels(const char *cmd, const char *dir, int labels, char *err, size_t cap) {
  if (!strcmp(cmd, "eval") && labels != 2) {
    snprintf(err, cap, "%s: the model has %d label%s; SST-2 has 2", dir, labels,
             labels == 1 ? "" : "s");
    return 2;
  }
  if (labels < 2) {
    snprintf(err, cap, "%s: the model has 1 label (a regression head); %s needs a classifier "
                       "with 2 or more", dir, cmd);
    return 2;
  }
  return 0;
}

int cli_load_model(const char *cmd, const char *dir, int threads, int batch, int max_len,
                   const AttnOpts *ao, Loaded *out, char *err, size_t cap) {
  memset(out, 0, sizeof *out);
  ModelConfig mc;
  char path[1200];
  if (hf_config_load(dir, &mc, err, cap) || check_labels(cmd, dir, mc.num_labels, err, cap))
    return 2;
  snprintf(path, sizeof path, "%s/vocab.txt", dir);
  out->tok = tok_load(path, err, cap);
  if (!out->tok)
    return 2;
  /* a token past the model's embedding table would fail only when a text uses it */
  if (vocab_size(tok_vocab(out->tok)) > mc.vocab_size) {
    snprintf(err, cap, "%s/vocab.txt holds %d tokens, but config.json's vocab_size is %d",
             dir, vocab_size(tok_vocab(out->tok)), mc.vocab_size);
    return 2;
  }
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
      *rc = cli_usage_error(cmd, "--keep-min: expected an integer in 1..8192, got \"%s\"", v);
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
