/* train_config_impl.h: what the train_config files share (train.h is the API): the
 * table with one row per config key, which train_config.c holds with the defaults and
 * the checks, train_config_read.c parses JSON and --set against, and
 * train_config_write.c writes the resolved config and its hash from; and the names of
 * the enumerated values as the JSON spells them. */
#ifndef CRISP_MODEL_TRAIN_CONFIG_IMPL_H
#define CRISP_MODEL_TRAIN_CONFIG_IMPL_H

#include "train.h"

#include <stdbool.h>
#include <stddef.h>

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

/* Every key of a run config (train_config.c), tc_n_keys of them; bit k of
 * TrainConfig.explicit_keys says row k was given. */
extern const Key tc_keys[];
extern const int tc_n_keys;

/* The JSON names of SelectKind, BudgetKind, BudgetNorm, BudgetEntropy, ModelType. */
extern const char *const tc_select_names[4];
extern const char *const tc_bkind_names[3];
extern const char *const tc_bnorm_names[2];
extern const char *const tc_bent_names[2];
extern const char *const tc_mtype_names[2];

#endif
