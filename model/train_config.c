/* train_config.c: the run configuration (JSON, strict), its defaults, --set overrides
 * and the resolved form written to RUNS/NAME/config.json. See train.h. */
#include "train.h"

#include "../runtime/fsutil.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef enum KeyType {
  K_STR,     /* char[size] */
  K_INT,     /* int */
  K_I64,     /* int64_t */
  K_U64,     /* uint64_t (seed) */
  K_NUM,     /* double */
  K_DROP,    /* double, or null (-1: the model config's rate) */
  K_SELECT,  /* SelectKind */
  K_BKIND,   /* BudgetKind */
  K_BNORM,   /* BudgetNorm */
  K_BENT,    /* BudgetEntropy */
  K_MTYPE,   /* ModelType */
  K_BETAS,   /* beta1, beta2 */
  K_LIST,    /* budget list */
} KeyType;

typedef struct Key {
  const char *name;   /* dotted: "budget.target" */
  KeyType type;
  size_t off, size;
  double lo, hi;      /* inclusive range (numbers); K_STR: 1 = non-empty */
  bool hi_open;       /* hi excluded */
} Key;

#define F(field) offsetof(TrainConfig, field), sizeof(((TrainConfig *)0)->field)

static const Key KEYS[] = {
    {"name", K_STR, F(name), 1, 0, 0},
    {"description", K_STR, 0, 0, 0, 0, 0},   /* free text, ignored */
    {"select", K_SELECT, F(select), 0, 0, 0},
    {"budget.kind", K_BKIND, F(budget.kind), 0, 0, 0},
    {"budget.target", K_NUM, F(budget.target), 0, 1, 1},
    {"budget.gain", K_NUM, F(budget.gain), -100, 100, 0},
    {"budget.s_min", K_NUM, F(budget.s_min), 0, 1, 1},
    {"budget.s_max", K_NUM, F(budget.s_max), 0, 1, 1},
    {"budget.ema", K_NUM, F(budget.ema), 0, 1, 1},
    {"budget.norm", K_BNORM, F(budget.norm), 0, 0, 0},
    {"budget.entropy", K_BENT, F(budget.entropy), 0, 0, 0},
    {"budget.layers", K_LIST, F(budget.list), 0, 1, 1},
    {"keep_min", K_INT, F(keep_min), 1, 8192, 0},
    {"lr", K_NUM, F(lr), 0, 10, 0},
    {"betas", K_BETAS, F(beta1), 0, 1, 1},
    {"eps", K_NUM, F(eps), 0, 1, 0},
    {"weight_decay", K_NUM, F(weight_decay), 0, 10, 0},
    {"max_grad_norm", K_NUM, F(max_grad_norm), 0, 1e9, 0},
    {"warmup_ratio", K_NUM, F(warmup_ratio), 0, 1, 0},
    {"batch_size", K_INT, F(batch_size), 1, 4096, 0},
    {"grad_accum", K_INT, F(grad_accum), 1, 4096, 0},
    {"epochs", K_INT, F(epochs), 1, 100000, 0},
    {"max_len", K_INT, F(max_len), 2, 8192, 0},
    {"eval_batch", K_INT, F(eval_batch), 0, 4096, 0},
    {"seed", K_U64, F(seed), 0, 9007199254740992.0, 0},
    {"eval_every", K_I64, F(eval_every), 0, 1e15, 0},
    {"checkpoint_every", K_I64, F(checkpoint_every), 0, 1e15, 0},
    {"log_every", K_I64, F(log_every), 1, 1e15, 0},
    {"max_steps", K_I64, F(max_steps), 0, 1e15, 0},
    {"train_limit", K_INT, F(train_limit), 0, 1e9, 0},
    {"eval_limit", K_INT, F(eval_limit), 0, 1e9, 0},
    {"threads", K_INT, F(threads), 0, 1024, 0},
    {"device", K_STR, F(device), 1, 0, 0},
    {"impl", K_STR, F(impl), 1, 0, 0},
    {"dropout.hidden", K_DROP, F(drop_hidden), 0, 1, 1},
    {"dropout.attention", K_DROP, F(drop_attention), 0, 1, 1},
    {"dropout.classifier", K_DROP, F(drop_classifier), 0, 1, 1},
    {"model", K_STR, F(model), 0, 0, 0},
    {"data", K_STR, F(data), 0, 0, 0},
    {"runs_dir", K_STR, F(runs_dir), 1, 0, 0},
    {"random_model.type", K_MTYPE, F(random_model.type), 0, 0, 0},
    {"random_model.layers", K_INT, F(random_model.layers), 1, MODEL_MAX_LAYERS, 0},
    {"random_model.hidden", K_INT, F(random_model.hidden), 8, 8192, 0},
    {"random_model.heads", K_INT, F(random_model.heads), 1, 256, 0},
    {"random_model.intermediate", K_INT, F(random_model.intermediate), 1, 65536, 0},
    {"random_model.max_position", K_INT, F(random_model.max_position), 2, 8192, 0},
};
enum { N_KEYS = sizeof KEYS / sizeof *KEYS };
_Static_assert(N_KEYS <= 64, "explicit_keys is a 64-bit mask");

static const char *const GROUPS[] = {"budget", "dropout", "random_model"};

static const char *const SELECT_NAMES[] = {"none", "row_topk", "head_quantile", "layer_quantile"};
static const char *const BKIND_NAMES[] = {"uniform", "adaptive", "list"};
static const char *const BNORM_NAMES[] = {"kept", "length"};
static const char *const BENT_NAMES[] = {"kept", "dense"};
static const char *const MTYPE_NAMES[] = {"distilbert", "bert"};

void train_config_defaults(TrainConfig *c) {
  memset(c, 0, sizeof *c);
  snprintf(c->name, sizeof c->name, "default");
  c->select = SEL_HEAD_QUANTILE;
  c->budget = (BudgetConfig){.kind = BUDGET_ADAPTIVE, .target = 0.8, .gain = 1.0, .s_min = 0.5,
                             .s_max = 0.95, .ema = 0.9, .norm = BUDGET_NORM_KEPT};
  c->keep_min = 1;
  c->lr = 2e-5, c->beta1 = 0.9, c->beta2 = 0.999, c->eps = 1e-8, c->weight_decay = 0.01;
  c->max_grad_norm = 1.0, c->warmup_ratio = 0;
  c->batch_size = 16, c->grad_accum = 4, c->epochs = 3, c->max_len = 512, c->eval_batch = 0;
  c->seed = 42;
  c->eval_every = 0, c->checkpoint_every = 500, c->log_every = 1;
  c->threads = 0;
  snprintf(c->device, sizeof c->device, "cpu");
  snprintf(c->impl, sizeof c->impl, "crisp");
  c->drop_hidden = c->drop_attention = c->drop_classifier = -1;
  snprintf(c->runs_dir, sizeof c->runs_dir, "runs");
  c->random_model = (RandomModel){MODEL_DISTILBERT, 2, 64, 4, 256, 512};
}

/* Keys the embedded profile sets when the user did not. */
void train_config_embedded(TrainConfig *c) {
  struct {
    const char *key;
    double v;
  } const prof[] = {
      {"train_limit", 20000}, {"max_len", 64},       {"epochs", 1},
      {"lr", 1e-3},          {"grad_accum", 1},      {"warmup_ratio", 0.1},
      {"weight_decay", 0.01}, {"eval_every", 250},   {"checkpoint_every", 0},
  };
  for (size_t i = 0; i < sizeof prof / sizeof *prof; i++)
    for (int k = 0; k < N_KEYS; k++)
      if (!strcmp(KEYS[k].name, prof[i].key) && !(c->explicit_keys >> k & 1)) {
        char *p = (char *)c + KEYS[k].off;
        if (KEYS[k].type == K_INT)
          *(int *)p = (int)prof[i].v;
        else if (KEYS[k].type == K_I64)
          *(int64_t *)p = (int64_t)prof[i].v;
        else
          *(double *)p = prof[i].v;
      }
}

bool train_config_resumable_key(const char *key) {
  const char *ok[] = {"max_steps", "eval_every", "checkpoint_every", "log_every",
                      "description", "eval_batch", "eval_limit"};
  for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
    if (!strcmp(key, ok[i]))
      return true;
  return false;
}

/* ---- reading ---------------------------------------------------------------------- */

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
  const Key *k = &KEYS[ki];
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
    const char *const *tab = k->type == K_SELECT  ? SELECT_NAMES
                             : k->type == K_BKIND ? BKIND_NAMES
                             : k->type == K_BNORM ? BNORM_NAMES
                             : k->type == K_BENT  ? BENT_NAMES
                                                  : MTYPE_NAMES;
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
  for (int k = 0; k < N_KEYS; k++)
    if (!strcmp(KEYS[k].name, name))
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

int train_config_load(const char *path, TrainConfig *c, char *err, size_t cap) {
  char *text;
  size_t len;
  if (rt_read_file(path, &text, &len, err, cap))
    return -1;
  const char *end = NULL;
  cJSON *j = cJSON_ParseWithLengthOpts(text, len, &end, 0);
  if (!j) {
    size_t at = end ? (size_t)(end - text) : 0;
    int line = 1, col = 1;
    for (size_t i = 0; i < at && i < len; i++)
      text[i] == '\n' ? (line++, col = 1) : col++;
    snprintf(err, cap, "%s:%d:%d: invalid JSON", path, line, col);
    free(text);
    return -1;
  }
  free(text);
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
  cJSON *v = cJSON_Parse(val);
  if (!v || (KEYS[k].type == K_STR && !cJSON_IsString(v))) {
    cJSON_Delete(v);
    v = cJSON_CreateString(val);   /* a bare string */
  }
  int rc = set_key(c, k, v, "--set", err, cap);
  cJSON_Delete(v);
  return rc;
}

int train_config_check(const TrainConfig *c, const char *where, char *err, size_t cap) {
  for (const char *p = c->name; *p; p++)
    if (!(('a' <= *p && *p <= 'z') || ('A' <= *p && *p <= 'Z') || ('0' <= *p && *p <= '9') ||
          *p == '_' || *p == '-' || *p == '.') ||
        !strcmp(c->name, ".") || !strcmp(c->name, "..")) {
      snprintf(err, cap, "%s: key \"name\": \"%s\" must be letters, digits, '_', '-', '.'", where,
               c->name);
      return -1;
    }
  if (backend_check_name(c->device)) {
    snprintf(err, cap, "%s: key \"device\": expected \"auto\", \"cpu\" or \"cuda\"", where);
    return -1;
  }
  if (strcmp(c->impl, "crisp") && strcmp(c->impl, "ref")) {
    snprintf(err, cap, "%s: key \"impl\": expected \"crisp\" or \"ref\"", where);
    return -1;
  }
  const BudgetConfig *b = &c->budget;
  bool budget_given = false;
  for (int k = 0; k < N_KEYS; k++)
    if (!strncmp(KEYS[k].name, "budget.", 7) && (c->explicit_keys >> k & 1))
      budget_given = true;
  if (c->select == SEL_NONE) {
    if (budget_given && (b->kind != BUDGET_UNIFORM || b->target != 0)) {
      snprintf(err, cap, "%s: select \"none\" is dense: the budget must be uniform with target 0",
               where);
      return -1;
    }
    return 0;
  }
  if (b->kind == BUDGET_LIST && b->n_list == 0) {
    snprintf(err, cap, "%s: key \"budget.layers\": a \"list\" budget needs the per-layer list",
             where);
    return -1;
  }
  if (b->kind != BUDGET_LIST && b->n_list) {
    snprintf(err, cap, "%s: key \"budget.layers\": only a \"list\" budget takes a list", where);
    return -1;
  }
  if (b->kind == BUDGET_ADAPTIVE && !(b->s_min <= b->target && b->target <= b->s_max)) {
    snprintf(err, cap, "%s: budget: need s_min (%g) <= target (%g) <= s_max (%g)", where,
             b->s_min, b->target, b->s_max);
    return -1;
  }
  const RandomModel *r = &c->random_model;
  if (!c->model[0] && r->hidden % r->heads) {
    snprintf(err, cap, "%s: key \"random_model.heads\": %d does not divide hidden %d", where,
             r->heads, r->hidden);
    return -1;
  }
  return 0;
}

/* ---- writing ---------------------------------------------------------------------- */

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
  for (int ki = 0; ki < N_KEYS; ki++) {
    const Key *k = &KEYS[ki];
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
    case K_SELECT: cJSON_AddStringToObject(o, leaf, SELECT_NAMES[*(const int *)p]); break;
    case K_BKIND: cJSON_AddStringToObject(o, leaf, BKIND_NAMES[*(const int *)p]); break;
    case K_BNORM: cJSON_AddStringToObject(o, leaf, BNORM_NAMES[*(const int *)p]); break;
    case K_BENT: cJSON_AddStringToObject(o, leaf, BENT_NAMES[*(const int *)p]); break;
    case K_MTYPE: cJSON_AddStringToObject(o, leaf, MTYPE_NAMES[*(const int *)p]); break;
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

int train_config_from_run(const char *run_dir, TrainConfig *c, char *err, size_t cap) {
  char path[1200];
  snprintf(path, sizeof path, "%s/config.json", run_dir);
  train_config_defaults(c);
  if (train_config_load(path, c, err, cap))
    return -1;
  c->explicit_keys = ~0ull;   /* everything is resolved already */
  c->max_steps = 0;           /* a limit of the invocation that stopped, not of the run */
  return train_config_check(c, path, err, cap);
}
