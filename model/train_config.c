/* train_config.c: the run configuration (see train.h): the table of its keys, which
 * reading (train_config_read.c) and writing (train_config_write.c) share, the defaults,
 * the embedded profile of a run without --model, and the checks across keys. */
#include "train_config_impl.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define F(field) offsetof(TrainConfig, field), sizeof(((TrainConfig *)0)->field)

const Key tc_keys[] = {
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
const int tc_n_keys = sizeof tc_keys / sizeof *tc_keys;
_Static_assert(sizeof tc_keys / sizeof *tc_keys <= 64, "explicit_keys is a 64-bit mask");

const char *const tc_select_names[4] = {"none", "row_topk", "head_quantile", "layer_quantile"};
const char *const tc_bkind_names[3] = {"uniform", "adaptive", "list"};
const char *const tc_bnorm_names[2] = {"kept", "length"};
const char *const tc_bent_names[2] = {"kept", "dense"};
const char *const tc_mtype_names[2] = {"distilbert", "bert"};

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
    for (int k = 0; k < tc_n_keys; k++)
      if (!strcmp(tc_keys[k].name, prof[i].key) && !(c->explicit_keys >> k & 1)) {
        char *p = (char *)c + tc_keys[k].off;
        if (tc_keys[k].type == K_INT)
          *(int *)p = (int)prof[i].v;
        else if (tc_keys[k].type == K_I64)
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
  for (int k = 0; k < tc_n_keys; k++)
    if (!strncmp(tc_keys[k].name, "budget.", 7) && (c->explicit_keys >> k & 1))
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
