/* hf.c: config.json for DistilBERT and BERT (read with transformers' defaults and
 * checked, written for *ForSequenceClassification), the parameter list, and loading
 * and saving weights; see hf.h.
 *
 * Each config field has one row in KEYS giving its JSON key for either model type,
 * so reading, checking and writing all name the key the user sees in the file. */
#include "hf.h"
#include "errf.h"

#include "fsutil.h"
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { CONFIG_MAX_BYTES = 16 << 20 };

/* ---- the config fields ------------------------------------------------------ */

typedef enum Kind { K_INT, K_FLOAT } Kind;

typedef struct Key {
  const char *distilbert, *bert; /* JSON key per type; NULL: not in that type */
  Kind kind;
  size_t offset;                 /* into ModelConfig */
  double lo, hi;                 /* inclusive range */
} Key;

#define F(field) offsetof(ModelConfig, field)
static const Key KEYS[] = {
    {"vocab_size", "vocab_size", K_INT, F(vocab_size), 1, 1 << 24},
    {"dim", "hidden_size", K_INT, F(hidden), 1, 1 << 16},
    {"n_layers", "num_hidden_layers", K_INT, F(layers), 1, 1024},
    {"n_heads", "num_attention_heads", K_INT, F(heads), 1, 1 << 16},
    {"hidden_dim", "intermediate_size", K_INT, F(intermediate), 1, 1 << 20},
    {"max_position_embeddings", "max_position_embeddings", K_INT, F(max_position), 1, 1 << 20},
    {NULL, "type_vocab_size", K_INT, F(type_vocab_size), 1, 1 << 16},
    {"pad_token_id", "pad_token_id", K_INT, F(pad_token_id), 0, (1 << 24) - 1},
    {NULL, "layer_norm_eps", K_FLOAT, F(layer_norm_eps), 1e-30, 0.1},
    {"dropout", "hidden_dropout_prob", K_FLOAT, F(hidden_dropout), 0, 0.99},
    {"attention_dropout", "attention_probs_dropout_prob", K_FLOAT, F(attention_dropout), 0,
     0.99},
    {"seq_classif_dropout", "classifier_dropout", K_FLOAT, F(classifier_dropout), 0, 0.99},
    {"initializer_range", "initializer_range", K_FLOAT, F(initializer_range), 0, 10},
};
#undef F
enum { N_KEYS = sizeof KEYS / sizeof *KEYS };

static const char *key_name(const Key *k, ModelType t) {
  return t == MODEL_BERT ? k->bert : k->distilbert;
}

static double key_get(const ModelConfig *c, const Key *k) {
  const char *p = (const char *)c + k->offset;
  if (k->kind == K_INT) return *(const int *)(const void *)p;
  return *(const float *)(const void *)p;
}

static void key_set(ModelConfig *c, const Key *k, double v) {
  char *p = (char *)c + k->offset;
  if (k->kind == K_INT) *(int *)(void *)p = (int)v;
  else *(float *)(void *)p = (float)v;
}

static const Key *key_for(size_t offset) {
  for (int i = 0; i < N_KEYS; i++)
    if (KEYS[i].offset == offset) return &KEYS[i];
  return NULL;
}

void hf_config_default(ModelConfig *c, ModelType type) {
  memset(c, 0, sizeof *c);
  c->type = type;
  c->vocab_size = 30522;
  c->hidden = 768;
  c->layers = type == MODEL_BERT ? 12 : 6;
  c->heads = 12;
  c->intermediate = 3072;
  c->max_position = 512;
  c->type_vocab_size = type == MODEL_BERT ? 2 : 0;
  c->num_labels = 2;
  c->layer_norm_eps = 1e-12f;
  c->hidden_dropout = 0.1f;
  c->attention_dropout = 0.1f;
  c->classifier_dropout = type == MODEL_BERT ? 0.1f : 0.2f;
  c->initializer_range = 0.02f;
  snprintf(c->activation, sizeof c->activation, "gelu");
  for (int i = 0; i < HF_MAX_LABELS; i++)
    snprintf(c->id2label[i], HF_LABEL_MAX, "LABEL_%d", i);
}

/* ---- checking ----------------------------------------------------------------- */

static int check_ranges(const ModelConfig *c, const char *path, char *err, size_t cap) {
  for (int i = 0; i < N_KEYS; i++) {
    const Key *k = &KEYS[i];
    const char *name = key_name(k, c->type);
    if (!name) continue;
    double v = key_get(c, k);
    if (!(v >= k->lo && v <= k->hi))
      return model_fail(err, cap, "%s: key \"%s\": %g is out of range [%.10g, %.10g]", path, name, v,
                  k->lo, k->hi);
  }
  return 0;
}

static int check_consistency(const ModelConfig *c, const char *path, char *err, size_t cap) {
  ModelType t = c->type;
  if (c->hidden % c->heads != 0)
    return model_fail(err, cap, "%s: key \"%s\": %d does not divide \"%s\" %d", path,
                key_name(key_for(offsetof(ModelConfig, heads)), t), c->heads,
                key_name(key_for(offsetof(ModelConfig, hidden)), t), c->hidden);
  if (c->pad_token_id >= c->vocab_size)
    return model_fail(err, cap, "%s: key \"pad_token_id\": %d is not below vocab_size %d", path,
                c->pad_token_id, c->vocab_size);
  if (c->num_labels < 1 || c->num_labels > HF_MAX_LABELS)
    return model_fail(err, cap, "%s: key \"id2label\": %d labels; 1 to %d are supported", path,
                c->num_labels, HF_MAX_LABELS);
  if (strcmp(c->activation, "gelu") != 0 && strcmp(c->activation, "relu") != 0)
    return model_fail(err, cap, "%s: key \"%s\": \"%s\" is not supported (\"gelu\" or \"relu\")",
                path, t == MODEL_BERT ? "hidden_act" : "activation", c->activation);
  return 0;
}

int hf_config_check(const ModelConfig *c, const char *path, char *err, size_t cap) {
  if (c->type != MODEL_DISTILBERT && c->type != MODEL_BERT)
    return model_fail(err, cap, "%s: unknown model type %d", path, (int)c->type);
  return check_ranges(c, path, err, cap) || check_consistency(c, path, err, cap) ? -1 : 0;
}

/* ---- reading ------------------------------------------------------------------ */

typedef struct Reader {
  const cJSON *root;
  const char *path;
  char *err;
  size_t cap;
} Reader;

static const char *json_kind(const cJSON *j) {
  if (cJSON_IsString(j)) return "a string";
  if (cJSON_IsNumber(j)) return "a number";
  if (cJSON_IsArray(j)) return "an array";
  if (cJSON_IsObject(j)) return "an object";
  if (cJSON_IsBool(j)) return "a boolean";
  return "null";
}

static int type_error(const Reader *r, const char *key, const char *want, const cJSON *j) {
  return model_fail(r->err, r->cap, "%s: key \"%s\" must be %s, but it is %s", r->path, key, want,
              json_kind(j));
}

/* Reads KEYS' row k if present (null counts as absent for BERT's classifier_dropout). */
static int read_key(const Reader *r, ModelConfig *c, const Key *k) {
  const char *name = key_name(k, c->type);
  const cJSON *j = name ? cJSON_GetObjectItemCaseSensitive(r->root, name) : NULL;
  if (!j) return 0;
  if (cJSON_IsNull(j) && c->type == MODEL_BERT &&
      k->offset == offsetof(ModelConfig, classifier_dropout))
    return 0;
  if (!cJSON_IsNumber(j))
    return type_error(r, name, k->kind == K_INT ? "an integer" : "a number", j);
  double v = j->valuedouble;
  if (k->kind == K_INT && (v != floor(v) || fabs(v) > INT_MAX))
    return model_fail(r->err, r->cap, "%s: key \"%s\": %g is not an integer in range", r->path, name,
                v);
  if (!isfinite(v)) return model_fail(r->err, r->cap, "%s: key \"%s\" is not finite", r->path, name);
  key_set(c, k, v);
  return 0;
}

static int read_string(const Reader *r, const char *key, char *dst, size_t n) {
  const cJSON *j = cJSON_GetObjectItemCaseSensitive(r->root, key);
  if (!j) return 0;
  if (!cJSON_IsString(j)) return type_error(r, key, "a string", j);
  if (strlen(j->valuestring) >= n)
    return model_fail(r->err, r->cap, "%s: key \"%s\": \"%.40s\" is too long", r->path, key,
                j->valuestring);
  snprintf(dst, n, "%s", j->valuestring);
  return 0;
}

/* A key whose only supported value is `want` (when present). */
static int read_fixed_bool(const Reader *r, const char *key, bool want) {
  const cJSON *j = cJSON_GetObjectItemCaseSensitive(r->root, key);
  if (!j) return 0;
  if (!cJSON_IsBool(j)) return type_error(r, key, "a boolean", j);
  if (cJSON_IsTrue(j) != want)
    return model_fail(r->err, r->cap, "%s: key \"%s\": only %s is supported", r->path, key,
                want ? "true" : "false");
  return 0;
}

/* "0".."n-1" -> names; sets num_labels. */
static int read_id2label(const Reader *r, ModelConfig *c) {
  const cJSON *m = cJSON_GetObjectItemCaseSensitive(r->root, "id2label");
  if (!m) return 0;
  if (!cJSON_IsObject(m)) return type_error(r, "id2label", "an object", m);
  int n = cJSON_GetArraySize(m);
  if (n < 1 || n > HF_MAX_LABELS)
    return model_fail(r->err, r->cap, "%s: key \"id2label\": %d labels; 1 to %d are supported",
                r->path, n, HF_MAX_LABELS);
  bool seen[HF_MAX_LABELS] = {false};
  const cJSON *kv;
  cJSON_ArrayForEach(kv, m) {
    char *end;
    long id = strtol(kv->string, &end, 10);
    if (!kv->string[0] || *end || id < 0 || id >= n || seen[id])
      return model_fail(r->err, r->cap,
                  "%s: key \"id2label\": \"%.20s\" is not one of the ids \"0\"..\"%d\" "
                  "(each once)", r->path, kv->string, n - 1);
    if (!cJSON_IsString(kv) || strlen(kv->valuestring) >= HF_LABEL_MAX)
      return model_fail(r->err, r->cap, "%s: key \"id2label\": \"%s\" must be a string under %d bytes",
                  r->path, kv->string, HF_LABEL_MAX);
    seen[id] = true;
    snprintf(c->id2label[id], HF_LABEL_MAX, "%s", kv->valuestring);
  }
  c->num_labels = n;
  return 0;
}

static int read_num_labels(const Reader *r, ModelConfig *c, bool have_id2label) {
  const cJSON *j = cJSON_GetObjectItemCaseSensitive(r->root, "num_labels");
  if (!j) return 0;
  if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble))
    return type_error(r, "num_labels", "an integer", j);
  double v = j->valuedouble;
  if (v < 1 || v > HF_MAX_LABELS)
    return model_fail(r->err, r->cap, "%s: key \"num_labels\": %g; 1 to %d are supported", r->path,
                v, HF_MAX_LABELS);
  if (have_id2label && (int)v != c->num_labels)
    return model_fail(r->err, r->cap, "%s: key \"num_labels\": %d disagrees with id2label's %d entries",
                r->path, (int)v, c->num_labels);
  c->num_labels = (int)v;
  return 0;
}

static int read_model_type(const Reader *r, ModelType *t) {
  const cJSON *j = cJSON_GetObjectItemCaseSensitive(r->root, "model_type");
  if (!j)
    return model_fail(r->err, r->cap, "%s: key \"model_type\" is missing (\"distilbert\" or \"bert\")",
                r->path);
  if (!cJSON_IsString(j)) return type_error(r, "model_type", "a string", j);
  if (strcmp(j->valuestring, "distilbert") == 0) *t = MODEL_DISTILBERT;
  else if (strcmp(j->valuestring, "bert") == 0) *t = MODEL_BERT;
  else
    return model_fail(r->err, r->cap,
                "%s: key \"model_type\": \"%.40s\" is not supported (\"distilbert\" or \"bert\")",
                r->path, j->valuestring);
  return 0;
}

static int read_type_specific(const Reader *r, ModelConfig *c) {
  if (c->type == MODEL_DISTILBERT)
    return read_string(r, "activation", c->activation, sizeof c->activation) ||
           read_fixed_bool(r, "sinusoidal_pos_embds", false);
  if (read_string(r, "hidden_act", c->activation, sizeof c->activation) ||
      read_fixed_bool(r, "is_decoder", false) || read_fixed_bool(r, "add_cross_attention", false))
    return -1;
  char pos[32] = "absolute";
  if (read_string(r, "position_embedding_type", pos, sizeof pos)) return -1;
  if (strcmp(pos, "absolute") != 0)
    return model_fail(r->err, r->cap, "%s: key \"position_embedding_type\": only \"absolute\" is "
                "supported, not \"%s\"", r->path, pos);
  const cJSON *cd = cJSON_GetObjectItemCaseSensitive(r->root, "classifier_dropout");
  if (!cd || cJSON_IsNull(cd)) c->classifier_dropout = c->hidden_dropout;
  return 0;
}

static int read_config(const Reader *r, ModelConfig *c) {
  if (!cJSON_IsObject(r->root))
    return model_fail(r->err, r->cap, "%s: byte 0: config is not a JSON object", r->path);
  ModelType t = MODEL_DISTILBERT;
  if (read_model_type(r, &t)) return -1;
  hf_config_default(c, t);
  for (int i = 0; i < N_KEYS; i++)
    if (read_key(r, c, &KEYS[i])) return -1;
  bool have_id2label = cJSON_GetObjectItemCaseSensitive(r->root, "id2label") != NULL;
  if (read_id2label(r, c) || read_num_labels(r, c, have_id2label) || read_type_specific(r, c))
    return -1;
  return hf_config_check(c, r->path, r->err, r->cap);
}

/* The whole file, NUL-terminated, in *out (caller frees). */
static int slurp(const char *path, char **out, size_t *len, char *err, size_t cap) {
  FILE *f = fopen(path, "rb");
  if (!f) return model_fail(err, cap, "%s: cannot open: %s", path, strerror(errno));
  char *buf = malloc(CONFIG_MAX_BYTES + 1);
  size_t n = buf ? fread(buf, 1, CONFIG_MAX_BYTES + 1, f) : 0;
  int bad = !buf || ferror(f);
  fclose(f);
  if (bad || n > CONFIG_MAX_BYTES) {
    free(buf);
    return model_fail(err, cap, "%s: %s", path, bad ? "cannot read" : "larger than 16 MiB");
  }
  buf[n] = '\0';
  *out = buf;
  *len = n;
  return 0;
}

static void config_path(const char *path, char *out, size_t n) {
  struct stat sb;
  if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) snprintf(out, n, "%s/config.json", path);
  else snprintf(out, n, "%s", path);
}

static cJSON *parse_json(const char *path, const char *text, size_t len, char *err, size_t cap) {
  if (strlen(text) != len)
    return model_fail(err, cap, "%s: byte %zu: NUL byte in JSON text", path, strlen(text)), NULL;
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(text, len + 1, &end, 1); /* + its NUL */
  if (root) return root;
  size_t at = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
  int line = 1, col = 1;
  for (size_t i = 0; i < at; i++) {
    if (text[i] == '\n') line++, col = 1;
    else col++;
  }
  model_fail(err, cap, "%s:%d:%d: invalid JSON (byte %zu)", path, line, col, at);
  return NULL;
}

int hf_config_load(const char *path, ModelConfig *c, char *err, size_t cap) {
  char file[4096];
  config_path(path, file, sizeof file);
  char *text;
  size_t len;
  if (slurp(file, &text, &len, err, cap)) return -1;
  cJSON *root = parse_json(file, text, len, err, cap);
  free(text);
  if (!root) return -1;
  Reader r = {root, file, err, cap};
  int rc = read_config(&r, c);
  cJSON_Delete(root);
  return rc;
}


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
  for (int i = 0; i < N_KEYS; i++) {
    const char *name = key_name(&KEYS[i], c->type);
    if (!name) continue;
    if (KEYS[i].kind == K_INT) {
      cJSON_AddNumberToObject(root, name, key_get(c, &KEYS[i]));
    } else {
      char text[32];
      float_text((float)key_get(c, &KEYS[i]), text);
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
  config_path(path, file, sizeof file);
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

/* ---- the parameter list ---------------------------------------------------------- */

typedef struct Lister {
  HfParam *out;
  int cap, n;
  const char *prefix;
} Lister;

static void add(Lister *l, const char *name, int rank, int64_t d0, int64_t d1, HfInit init) {
  if (l->n < l->cap) {
    HfParam *p = &l->out[l->n];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s%s", l->prefix, name);
    p->rank = rank;
    p->shape[0] = d0;
    p->shape[1] = rank == 2 ? d1 : 0;
    p->numel = (size_t)d0 * (size_t)(rank == 2 ? d1 : 1);
    p->init = init;
  }
  l->n++;
}

static HfParam *last(Lister *l) { return l->n <= l->cap ? &l->out[l->n - 1] : NULL; }

/* NAME.weight [out, in] and NAME.bias [out]. */
static void linear(Lister *l, const char *name, int out, int in) {
  char s[HF_NAME_MAX];
  snprintf(s, sizeof s, "%s.weight", name);
  add(l, s, 2, out, in, HF_INIT_NORMAL);
  snprintf(s, sizeof s, "%s.bias", name);
  add(l, s, 1, out, 0, HF_INIT_ZEROS);
}

static void layer_norm(Lister *l, const char *name, int dim) {
  char s[HF_NAME_MAX];
  snprintf(s, sizeof s, "%s.weight", name);
  add(l, s, 1, dim, 0, HF_INIT_ONES);
  snprintf(s, sizeof s, "%s.bias", name);
  add(l, s, 1, dim, 0, HF_INIT_ZEROS);
}

static void embeddings(Lister *l, const ModelConfig *c) {
  HfParam *p;
  add(l, "embeddings.word_embeddings.weight", 2, c->vocab_size, c->hidden, HF_INIT_NORMAL);
  if ((p = last(l))) p->is_embedding = 1;
  add(l, "embeddings.position_embeddings.weight", 2, c->max_position, c->hidden, HF_INIT_NORMAL);
  if (c->type == MODEL_BERT)
    add(l, "embeddings.token_type_embeddings.weight", 2, c->type_vocab_size, c->hidden,
        HF_INIT_NORMAL);
  layer_norm(l, "embeddings.LayerNorm", c->hidden);
}

static void distilbert_layer(Lister *l, const ModelConfig *c, int i) {
  static const char *const attn[] = {"q_lin", "k_lin", "v_lin", "out_lin"};
  char s[HF_NAME_MAX];
  int h = c->hidden;
  for (int k = 0; k < 4; k++) {
    snprintf(s, sizeof s, "transformer.layer.%d.attention.%s", i, attn[k]);
    linear(l, s, h, h);
  }
  snprintf(s, sizeof s, "transformer.layer.%d.sa_layer_norm", i);
  layer_norm(l, s, h);
  snprintf(s, sizeof s, "transformer.layer.%d.ffn.lin1", i);
  linear(l, s, c->intermediate, h);
  snprintf(s, sizeof s, "transformer.layer.%d.ffn.lin2", i);
  linear(l, s, h, c->intermediate);
  snprintf(s, sizeof s, "transformer.layer.%d.output_layer_norm", i);
  layer_norm(l, s, h);
}

static void bert_layer(Lister *l, const ModelConfig *c, int i) {
  static const char *const qkv[] = {"query", "key", "value"};
  char s[HF_NAME_MAX];
  int h = c->hidden;
  for (int k = 0; k < 3; k++) {
    snprintf(s, sizeof s, "encoder.layer.%d.attention.self.%s", i, qkv[k]);
    linear(l, s, h, h);
  }
  snprintf(s, sizeof s, "encoder.layer.%d.attention.output.dense", i);
  linear(l, s, h, h);
  snprintf(s, sizeof s, "encoder.layer.%d.attention.output.LayerNorm", i);
  layer_norm(l, s, h);
  snprintf(s, sizeof s, "encoder.layer.%d.intermediate.dense", i);
  linear(l, s, c->intermediate, h);
  snprintf(s, sizeof s, "encoder.layer.%d.output.dense", i);
  linear(l, s, h, c->intermediate);
  snprintf(s, sizeof s, "encoder.layer.%d.output.LayerNorm", i);
  layer_norm(l, s, h);
}

static void mark_optional(Lister *l, int from) {
  for (int i = from; i < l->n && i < l->cap; i++) l->out[i].optional = 1;
}

int hf_params(const ModelConfig *c, HfParam *out, int cap) {
  if (hf_config_check(c, "config", NULL, 0)) return -1;
  bool bert = c->type == MODEL_BERT;
  Lister l = {out, out ? cap : 0, 0, bert ? "bert." : "distilbert."};
  embeddings(&l, c);
  for (int i = 0; i < c->layers; i++) bert ? bert_layer(&l, c, i) : distilbert_layer(&l, c, i);
  int heads = l.n;
  if (bert) linear(&l, "pooler.dense", c->hidden, c->hidden);
  l.prefix = "";
  if (!bert) linear(&l, "pre_classifier", c->hidden, c->hidden);
  linear(&l, "classifier", c->num_labels, c->hidden);
  mark_optional(&l, heads);
  return l.n;
}

/* ---- initialisation ------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static uint64_t fnv1a(const char *s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
  return h;
}

/* Standard normal by Box-Muller; u1 in (0, 1]. */
static double normal(uint64_t *s) {
  double u1 = ((double)(splitmix64(s) >> 11) + 1.0) * 0x1p-53;
  double u2 = (double)(splitmix64(s) >> 11) * 0x1p-53;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void hf_init_param(const ModelConfig *c, const HfParam *p, float *dst, uint64_t seed) {
  uint64_t s = seed ^ fnv1a(p->name);
  for (size_t i = 0; i < p->numel; i++) {
    if (p->init == HF_INIT_ZEROS) dst[i] = 0.0f;
    else if (p->init == HF_INIT_ONES) dst[i] = 1.0f;
    else dst[i] = (float)(normal(&s) * c->initializer_range);
  }
  if (p->is_embedding && p->rank == 2 && c->pad_token_id < p->shape[0])
    memset(dst + (size_t)c->pad_token_id * (size_t)p->shape[1], 0,
           (size_t)p->shape[1] * sizeof *dst);
}

/* ---- loading weights ------------------------------------------------------------ */

/* The tensor for p, trying old BERT names (LayerNorm.gamma/beta) too. */
static const StTensor *lookup(const SafeTensors *st, const HfParam *p) {
  const StTensor *t = st_find(st, p->name);
  const char *ln = strstr(p->name, "LayerNorm.");
  if (t || !ln) return t;
  char alt[HF_NAME_MAX + 8];
  const char *suffix = strcmp(ln, "LayerNorm.weight") == 0 ? "gamma" : "beta";
  snprintf(alt, sizeof alt, "%.*sLayerNorm.%s", (int)(ln - p->name), p->name, suffix);
  return st_find(st, alt);
}

static void shape_text(int rank, const int64_t *shape, char out[64]) {
  int k = snprintf(out, 64, "[");
  for (int i = 0; i < rank && k < 56; i++)
    k += snprintf(out + k, (size_t)(64 - k), "%s%lld", i ? ", " : "", (long long)shape[i]);
  snprintf(out + k, (size_t)(64 - k), "]");
}

static int check_shape(const char *path, const StTensor *t, const HfParam *p, char *err,
                       size_t cap) {
  bool same = t->rank == p->rank;
  for (int i = 0; same && i < p->rank; i++) same = t->shape[i] == p->shape[i];
  if (same) return 0;
  char have[64], want[64];
  shape_text(t->rank, t->shape, have);
  shape_text(p->rank, p->shape, want);
  return model_fail(err, cap, "%s: tensor \"%s\" has shape %s, but config.json needs %s for \"%s\"",
              path, t->name, have, want, p->name);
}

static int missing(const char *path, const SafeTensors *st, const HfParam *p, char *err,
                   size_t cap) {
  const StTensor *any = st_count(st) ? st_tensor(st, 0) : NULL;
  return model_fail(err, cap, "%s: tensor \"%s\" is missing (the file has %d tensors%s%s%s)", path,
              p->name, st_count(st), any ? ", e.g. \"" : "", any ? any->name : "",
              any ? "\"" : "");
}

static int load_all(const char *path, const SafeTensors *st, const ModelConfig *c,
                    const HfParam *ps, int n, float *const *dst, uint64_t seed, int *n_init,
                    char *err, size_t cap) {
  for (int i = 0; i < n; i++) {
    const StTensor *t = lookup(st, &ps[i]);
    if (!t && !ps[i].optional) return missing(path, st, &ps[i], err, cap);
    if (!t) {
      hf_init_param(c, &ps[i], dst[i], seed);
      if (n_init) (*n_init)++;
      continue;
    }
    if (check_shape(path, t, &ps[i], err, cap) || st_read_f32(t, dst[i], ps[i].numel, err, cap))
      return -1;
  }
  return 0;
}

int hf_load_params(const char *path, const ModelConfig *c, float *const *dst, uint64_t seed,
                   int *n_init, char *err, size_t cap) {
  if (n_init) *n_init = 0;
  if (hf_config_check(c, path, err, cap)) return -1;
  int n = hf_params(c, NULL, 0);
  HfParam *ps = malloc((size_t)n * sizeof *ps);
  if (!ps) return model_fail(err, cap, "%s: out of memory", path);
  hf_params(c, ps, n);
  SafeTensors *st = st_open(path, err, cap);
  int rc = st ? load_all(path, st, c, ps, n, dst, seed, n_init, err, cap) : -1;
  st_close(st);
  free(ps);
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
  if (slurp(src, &text, &len, err, cap)) return -1;
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
