/* hf_save.c: writing a Hugging Face folder that transformers loads: config.json (the
 * keys of hf_keys under the type's names, labels, architectures) and, with it,
 * model.safetensors, vocab.txt and tokenizer_config.json; every file atomically. See
 * hf.h. */
#include "hf_impl.h"
#include "errf.h"

#include "fsutil.h"
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- config.json out ----------------------------------------------------------- */

/* The shortest decimal that reads back as the same float ("0.1", not 0.100000001). */
static void float_text(float v, char out[32]) {
  for (int p = 1; p <= 9; p++) {
    snprintf(out, 32, "%.*g", p, (double)v);
    if (strtof(out, NULL) == v) break;
  }
  if (!strpbrk(out, ".eEn")) strcat(out, ".0"); /* keep it a float in Python */
}

static void add_labels(cJSON *root, const ModelConfig *c) {
  cJSON *id2label = cJSON_AddObjectToObject(root, "id2label");
  cJSON *label2id = cJSON_AddObjectToObject(root, "label2id");
  for (int i = 0; i < c->num_labels; i++) {
    char id[16];
    snprintf(id, sizeof id, "%d", i);
    cJSON_AddStringToObject(id2label, id, c->id2label[i]);
    cJSON_AddNumberToObject(label2id, c->id2label[i], i);
  }
}

static void add_keys(cJSON *root, const ModelConfig *c) {
  for (int i = 0; i < hf_n_keys; i++) {
    const char *name = hf_key_name(&hf_keys[i], c->type);
    if (!name) continue;
    if (hf_keys[i].kind == K_INT) {
      cJSON_AddNumberToObject(root, name, hf_key_get(c, &hf_keys[i]));
    } else {
      char text[32];
      float_text((float)hf_key_get(c, &hf_keys[i]), text);
      cJSON_AddItemToObject(root, name, cJSON_CreateRaw(text));
    }
  }
}

static cJSON *config_json(const ModelConfig *c) {
  bool bert = c->type == MODEL_BERT;
  cJSON *root = cJSON_CreateObject();
  cJSON *arch = cJSON_AddArrayToObject(root, "architectures");
  cJSON_AddItemToArray(arch, cJSON_CreateString(bert ? "BertForSequenceClassification"
                                                     : "DistilBertForSequenceClassification"));
  cJSON_AddStringToObject(root, "model_type", bert ? "bert" : "distilbert");
  add_keys(root, c);
  cJSON_AddStringToObject(root, bert ? "hidden_act" : "activation", c->activation);
  if (bert) {
    cJSON_AddStringToObject(root, "position_embedding_type", "absolute");
  } else {
    cJSON_AddFalseToObject(root, "sinusoidal_pos_embds");
    cJSON_AddItemToObject(root, "qa_dropout", cJSON_CreateRaw("0.1"));
    cJSON_AddTrueToObject(root, "tie_weights_");
  }
  add_labels(root, c);
  cJSON_AddStringToObject(root, "problem_type", c->num_labels == 1
                                                    ? "regression"
                                                    : "single_label_classification");
  cJSON_AddStringToObject(root, "torch_dtype", "float32");
  return root;
}

/* cJSON_Print indents with tabs and writes "key":<tab>value; this makes it read like
 * transformers' own files (2 spaces, "key": value) and end in a newline. Tabs inside
 * strings are escaped, so every raw tab is layout. NULL when out of memory. */
static char *pretty(const char *text, size_t *len) {
  char *out = malloc(2 * strlen(text) + 2);
  if (!out) return NULL;
  size_t k = 0;
  bool line_start = true;
  for (const char *s = text; *s; s++) {
    if (*s == '\t' && line_start) {
      out[k++] = ' ';
      out[k++] = ' ';
      continue;
    }
    line_start = *s == '\n';
    out[k++] = *s == '\t' ? ' ' : *s;
  }
  out[k++] = '\n';
  out[k] = '\0';
  *len = k;
  return out;
}

int hf_config_save(const char *path, const ModelConfig *c, char *err, size_t cap) {
  char file[4096];
  hf_config_path(path, file, sizeof file);
  if (hf_config_check(c, file, err, cap)) return -1;
  cJSON *root = config_json(c);
  char *text = root ? cJSON_Print(root) : NULL;
  cJSON_Delete(root);
  size_t n = 0;
  char *out = text ? pretty(text, &n) : NULL;
  free(text);
  if (!out) return model_fail(err, cap, "%s: out of memory", file);
  int rc = rt_write_atomic(file, out, n, err, cap);
  free(out);
  return rc;
}

/* ---- saving a folder -------------------------------------------------------------- */

static int make_dirs(const char *dir, char *err, size_t cap) {
  char p[4096];
  if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p)
    return model_fail(err, cap, "%s: path too long", dir);
  for (char *s = p + 1;; s++) {
    if (*s != '/' && *s) continue;
    char c = *s;
    *s = '\0';
    if (mkdir(p, 0755) != 0 && errno != EEXIST)
      return model_fail(err, cap, "%s: cannot create folder: %s", p, strerror(errno));
    *s = c;
    if (!c) break;
  }
  struct stat sb;
  if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
    return model_fail(err, cap, "%s: not a folder", dir);
  return 0;
}

static int save_weights(const char *file, const ModelConfig *c, const float *const *src,
                        char *err, size_t cap) {
  int n = hf_params(c, NULL, 0);
  HfParam *ps = malloc((size_t)n * sizeof *ps);
  StWriteTensor *w = calloc((size_t)n, sizeof *w);
  int rc = -1;
  if (!ps || !w) {
    model_fail(err, cap, "%s: out of memory", file);
  } else {
    hf_params(c, ps, n);
    for (int i = 0; i < n; i++) {
      w[i].name = ps[i].name;
      w[i].rank = ps[i].rank;
      w[i].shape[0] = ps[i].shape[0];
      w[i].shape[1] = ps[i].shape[1];
      w[i].data = src[i];
    }
    rc = st_write(file, w, n, "{\"format\":\"pt\"}", err, cap);
  }
  free(ps);
  free(w);
  return rc;
}

static int copy_vocab(const char *dst, const char *src, char *err, size_t cap) {
  char *text;
  size_t len;
  if (hf_slurp(src, &text, &len, err, cap)) return -1;
  int rc = rt_write_atomic(dst, text, len, err, cap);
  free(text);
  return rc;
}

static int save_tokenizer_config(const char *file, const ModelConfig *c, char *err, size_t cap) {
  char text[640];
  int n = snprintf(text, sizeof text,
                   "{\n  \"tokenizer_class\": \"%s\",\n  \"do_lower_case\": true,\n"
                   "  \"model_max_length\": %d,\n  \"unk_token\": \"[UNK]\",\n"
                   "  \"sep_token\": \"[SEP]\",\n  \"pad_token\": \"[PAD]\",\n"
                   "  \"cls_token\": \"[CLS]\",\n  \"mask_token\": \"[MASK]\"\n}\n",
                   c->type == MODEL_BERT ? "BertTokenizer" : "DistilBertTokenizer",
                   c->max_position);
  return rt_write_atomic(file, text, (size_t)n, err, cap);
}

int hf_save_model(const char *dir, const ModelConfig *c, const float *const *src,
                  const char *vocab_path, char *err, size_t cap) {
  if (hf_config_check(c, dir, err, cap) || make_dirs(dir, err, cap)) return -1;
  char file[4200];
  snprintf(file, sizeof file, "%s/model.safetensors", dir);
  if (save_weights(file, c, src, err, cap)) return -1;
  if (vocab_path) {
    snprintf(file, sizeof file, "%s/vocab.txt", dir);
    if (copy_vocab(file, vocab_path, err, cap)) return -1;
    snprintf(file, sizeof file, "%s/tokenizer_config.json", dir);
    if (save_tokenizer_config(file, c, err, cap)) return -1;
  }
  snprintf(file, sizeof file, "%s/config.json", dir);
  return hf_config_save(file, c, err, cap);
}
