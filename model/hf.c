/* hf.c: config.json for DistilBERT and BERT: transformers' defaults, the range and
 * consistency checks, and reading a file with every key's JSON type checked; see hf.h.
 * Writing it and the rest of a folder is hf_save.c; the parameter list and loading
 * weights are hf_params.c.
 *
 * Each config field has one row in hf_keys giving its JSON key for either model type,
 * so reading, checking and writing all name the key the user sees in the file. */
#include "hf_impl.h"
#include "errf.h"
#include "json_kind.h"
#include "vocab.h" /* utf8_find_invalid */

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>

enum { CONFIG_MAX_BYTES = 16 << 20 };

/* ---- the config fields ------------------------------------------------------ */

#define F(field) offsetof(ModelConfig, field)
const Key hf_keys[] = {
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
enum { N_KEYS = sizeof hf_keys / sizeof *hf_keys };
const int hf_n_keys = N_KEYS;

const char *hf_key_name(const Key *k, ModelType t) {
  return t == MODEL_BERT ? k->bert : k->distilbert;
}

double hf_key_get(const ModelConfig *c, const Key *k) {
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
    if (hf_keys[i].offset == offset) return &hf_keys[i];
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
    const Key *k = &hf_keys[i];
    const char *name = hf_key_name(k, c->type);
    if (!name) continue;
    double v = hf_key_get(c, k);
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
                hf_key_name(key_for(offsetof(ModelConfig, heads)), t), c->heads,
                hf_key_name(key_for(offsetof(ModelConfig, hidden)), t), c->hidden);
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

static int type_error(const Reader *r, const char *key, const char *want, const cJSON *j) {
  return model_fail(r->err, r->cap, "%s: key \"%s\" must be %s, but it is %s", r->path, key, want,
              json_kind(j));
}

/* Reads hf_keys' row k if present (null counts as absent for BERT's classifier_dropout). */
static int read_key(const Reader *r, ModelConfig *c, const Key *k) {
  const char *name = hf_key_name(k, c->type);
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

/* A label is printed as one column of crisp predict's tab-separated lines and written
 * back as a JSON key of label2id, so it must be UTF-8 text without control characters
 * (a tab or newline would split the column or the line) or line/paragraph separators.
 * `which` says where it is ("of id \"1\""): the label itself may not be printable. */
static int check_label(const Reader *r, const char *key, const char *which, const char *s) {
  size_t n = strlen(s), bad = utf8_find_invalid(s, n);
  if (bad != (size_t)-1)
    return model_fail(r->err, r->cap, "%s: key \"%s\": the label %s is not valid UTF-8 (byte %zu: "
                      "0x%02X)", r->path, key, which, bad, (unsigned char)s[bad]);
  for (size_t i = 0; i < n;) {
    utf8proc_int32_t cp;
    const utf8proc_uint8_t *at = (const utf8proc_uint8_t *)s + i;
    utf8proc_ssize_t k = utf8proc_iterate(at, (utf8proc_ssize_t)(n - i), &cp);
    utf8proc_category_t cat = utf8proc_category(cp);
    if (cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_ZL ||
        cat == UTF8PROC_CATEGORY_ZP)
      return model_fail(r->err, r->cap, "%s: key \"%s\": the label %s holds a control character "
                        "(U+%04X at byte %zu): labels are printed as tab-separated columns",
                        r->path, key, which, (unsigned)cp, i);
    i += (size_t)k;
  }
  return 0;
}

/* "0".."n-1" -> names, each a label once; sets num_labels. */
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
    char which[48];
    snprintf(which, sizeof which, "of id \"%ld\"", id);
    if (check_label(r, "id2label", which, kv->valuestring))
      return -1;
    for (int j = 0; j < HF_MAX_LABELS; j++)
      if (seen[j] && !strcmp(c->id2label[j], kv->valuestring))
        return model_fail(r->err, r->cap, "%s: key \"id2label\": ids \"%d\" and \"%ld\" are both "
                          "\"%s\" (each label once, or a prediction cannot be told apart)",
                          r->path, j, id, kv->valuestring);
    seen[id] = true;
    snprintf(c->id2label[id], HF_LABEL_MAX, "%s", kv->valuestring);
  }
  c->num_labels = n;
  return 0;
}

/* label2id is not used (id2label names the labels), but it is read as strictly: its
 * labels as id2label's, each once, each mapped to an id of the model. */
static int read_label2id(const Reader *r, const ModelConfig *c) {
  const cJSON *m = cJSON_GetObjectItemCaseSensitive(r->root, "label2id");
  if (!m) return 0;
  if (!cJSON_IsObject(m)) return type_error(r, "label2id", "an object", m);
  int k = 0;
  for (const cJSON *kv = m->child; kv; kv = kv->next) {
    char which[48];
    snprintf(which, sizeof which, "of entry %d", ++k);
    if (check_label(r, "label2id", which, kv->string))
      return -1;
    for (const cJSON *b = m->child; b != kv; b = b->next)
      if (!strcmp(b->string, kv->string))
        return model_fail(r->err, r->cap, "%s: key \"label2id\": \"%s\" is given twice", r->path,
                          kv->string);
    double v = cJSON_IsNumber(kv) ? kv->valuedouble : -1;
    if (v != floor(v) || v < 0 || v >= c->num_labels)
      return model_fail(r->err, r->cap, "%s: key \"label2id\": \"%s\" must map to an id 0..%d",
                        r->path, kv->string, c->num_labels - 1);
  }
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

/* A key given twice: cJSON finds the first, Python's json (so transformers) keeps the
 * last, so the two would build different models from one file without a word. */
static int check_unique_keys(const Reader *r) {
  for (const cJSON *a = r->root->child; a; a = a->next)
    for (const cJSON *b = a->next; b; b = b->next)
      if (!strcmp(a->string, b->string))
        return model_fail(r->err, r->cap, "%s: key \"%s\" is given twice (transformers would "
                          "take the last, so it is ambiguous)", r->path, a->string);
  return 0;
}

static int read_config(const Reader *r, ModelConfig *c) {
  if (!cJSON_IsObject(r->root))
    return model_fail(r->err, r->cap, "%s: byte 0: config is not a JSON object", r->path);
  if (check_unique_keys(r)) return -1;
  ModelType t = MODEL_DISTILBERT;
  if (read_model_type(r, &t)) return -1;
  hf_config_default(c, t);
  for (int i = 0; i < N_KEYS; i++)
    if (read_key(r, c, &hf_keys[i])) return -1;
  bool have_id2label = cJSON_GetObjectItemCaseSensitive(r->root, "id2label") != NULL;
  if (read_id2label(r, c) || read_num_labels(r, c, have_id2label) || read_label2id(r, c) ||
      read_type_specific(r, c))
    return -1;
  return hf_config_check(c, r->path, r->err, r->cap);
}

/* The whole file, NUL-terminated, in *out (caller frees). */
int hf_slurp(const char *path, char **out, size_t *len, char *err, size_t cap) {
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

void hf_config_path(const char *path, char *out, size_t n) {
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
  hf_config_path(path, file, sizeof file);
  char *text;
  size_t len;
  if (hf_slurp(file, &text, &len, err, cap)) return -1;
  cJSON *root = parse_json(file, text, len, err, cap);
  free(text);
  if (!root) return -1;
  Reader r = {root, file, err, cap};
  int rc = read_config(&r, c);
  cJSON_Delete(root);
  return rc;
}
