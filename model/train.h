/* train.h: fine-tuning a sequence classifier on SST-2 as the paper does (DESIGN §7),
 * with crisp attention budgets across layers (DESIGN §4). docs/training.md has the
 * details and our reading of the paper's "adaptive" sparsity.
 *
 *   TrainConfig c; train_config_defaults(&c);
 *   train_config_load("examples/configs/aggressive_sparse.json", &c, err, cap);  (strict)
 *   train_config_set(&c, "max_steps=200", err, cap);                              (--set)
 *   rc = train_run(&c, &(TrainOptions){0}, &result, err, cap);
 *
 * A run writes RUNS/NAME/: config.json (resolved), metrics.jsonl, summary.json,
 * checkpoint.bin (while unfinished) and final/ (a Hugging Face folder). Split over
 * train_config.c (the JSON config), train.c (the loop), train_setup.c (data, sets and
 * model made ready), train_folder.c (the run folder, removed on an early failure),
 * train_data.c (encoded sets, batches), train_eval.c (crisp kernels,
 * evaluation), train_log.c (console lines), budget.c (sparsity per layer), metrics.c
 * (JSON lines, summary), checkpoint.c (atomic save/load), synth.c (the data made when
 * none is shared); train_impl.h holds what the train_*.c files share. */
#ifndef CRISP_MODEL_TRAIN_H
#define CRISP_MODEL_TRAIN_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "data.h"
#include "model.h"
#include "optim.h"
#include "tokenizer.h"

typedef struct EvalResult EvalResult;

/* ---- budgets: the sparsity s_l of every layer (budget.c) ------------------------- */

typedef enum BudgetKind { BUDGET_UNIFORM, BUDGET_ADAPTIVE, BUDGET_LIST } BudgetKind;
/* What an attention row's entropy is normalised by for the concentration. */
typedef enum BudgetNorm { BUDGET_NORM_KEPT, BUDGET_NORM_LENGTH } BudgetNorm;
/* Which distribution's entropy measures a layer's concentration: the kept
 * (re-normalised) one, or the dense softmax over every valid key, which does not
 * depend on the sparsity the budget just applied. */
typedef enum BudgetEntropy { BUDGET_ENTROPY_KEPT, BUDGET_ENTROPY_DENSE } BudgetEntropy;

typedef struct BudgetConfig {
  BudgetKind kind;
  double target;          /* mean sparsity over layers (uniform: every layer's) */
  double gain;            /* adaptive: g in s_l = target + g (c_l - mean c) */
  double s_min, s_max;    /* adaptive: the clip range (s_min <= target <= s_max < 1) */
  double ema;             /* adaptive: c_ema = ema * c_ema + (1 - ema) * c_batch */
  BudgetNorm norm;        /* adaptive, kept entropy: / log(kept keys) or / log(valid keys) */
  BudgetEntropy entropy;  /* adaptive: of the kept or of the dense distribution */
  int n_list;             /* list: layers given */
  double list[MODEL_MAX_LAYERS];
} BudgetConfig;

typedef struct Budget {
  BudgetConfig cfg;
  int layers;
  double s[MODEL_MAX_LAYERS];      /* the current s_l (what the next batch uses) */
  double c_ema[MODEL_MAX_LAYERS];  /* adaptive: smoothed concentration */
  double c_last[MODEL_MAX_LAYERS]; /* adaptive: the last batch's concentration */
  int64_t updates;                 /* batches observed (0: still uniform) */
} Budget;

/* 0, or -1 with the reason (a list of the wrong length, a range error). */
int budget_init(Budget *b, const BudgetConfig *cfg, int layers, char *err, size_t cap);
/* Adaptive: folds one batch's per-layer concentration into the EMA and recomputes s.
 * Other kinds: nothing. */
void budget_observe(Budget *b, const double *c);
/* out[l] = clip(x[l] + shift, lo, hi) with the one shift that makes the mean of out
 * equal target (lo <= target <= hi): found exactly on the piecewise-linear mean, then
 * the rounding residue spread over the unclipped layers. */
void budget_recenter(const double *x, int n, double target, double lo, double hi, double *out);
/* The concentration of every layer in the model's last forward: mean over heads and
 * valid rows with more than one candidate key of 1 - H_row / log(n_row), clipped to
 * [0, 1]. BUDGET_ENTROPY_KEPT (the forward ran with stats): H_row is the kept
 * distribution's entropy, n_row the row's kept keys (BUDGET_NORM_KEPT) or its valid
 * keys (BUDGET_NORM_LENGTH). BUDGET_ENTROPY_DENSE (the forward ran with dense_stats):
 * H_row is the dense softmax's entropy and n_row the valid keys, whatever norm says
 * (the dense distribution spans them all, so log(L) is its maximum). */
void budget_concentration(const Model *m, const BudgetConfig *cfg, double *c);
/* Copies s into the model's settings (as floats). */
void budget_apply(const Budget *b, Model *m);
const char *budget_kind_name(BudgetKind k);

/* ---- the run's configuration (train_config.c) ------------------------------------- */

typedef struct RandomModel {  /* the model built when no --model is given */
  ModelType type;
  int layers, hidden, heads, intermediate, max_position;
} RandomModel;

typedef struct TrainConfig {
  char name[128];
  SelectKind select;
  BudgetConfig budget;
  int keep_min;
  double lr, beta1, beta2, eps, weight_decay, max_grad_norm, warmup_ratio;
  int batch_size, grad_accum, epochs, max_len, eval_batch;
  uint64_t seed;
  int64_t eval_every;          /* optimizer steps between evaluations (0: epoch ends only) */
  int64_t checkpoint_every;    /* optimizer steps between checkpoints (0: only on exit) */
  int64_t log_every;           /* optimizer steps between metrics lines/plain log lines */
  int64_t max_steps;           /* stop after this many optimizer steps (0: all) */
  int train_limit;             /* use a seeded subset of this many train rows (0: all) */
  int eval_limit;              /* evaluate on the first N dev rows (0: all) */
  int threads;                 /* CPU threads (pool and BLAS); 0: one per core */
  char device[16];             /* auto | cpu | cuda */
  char impl[8];                /* crisp | ref: the attention implementation */
  double drop_hidden, drop_attention, drop_classifier;   /* < 0: the model config's */
  char model[1024];            /* a Hugging Face folder; "" = a random model */
  char data[1024];             /* a folder with train.tsv and dev.tsv; "" = the shared
                                  SST-2; "synthetic" = generated */
  char runs_dir[1024];         /* where RUNS/NAME goes ("runs") */
  RandomModel random_model;
  uint64_t explicit_keys;      /* bit i: key i of the table was given (file or --set) */
} TrainConfig;

/* The paper's settings (lr 2e-5, betas 0.9/0.999, eps 1e-8, weight decay 0.01, batch
 * 16 x 4, 3 epochs, max_len 512, linear decay, grad clip 1.0) and the paper's best
 * configuration (head_quantile, adaptive, target 0.8). */
void train_config_defaults(TrainConfig *c);
/* Reads a JSON config over c: unknown keys, wrong types and out-of-range values are
 * errors "FILE: key \"K\": ..." (return -1). */
int train_config_load(const char *path, TrainConfig *c, char *err, size_t cap);
/* One override "KEY=VALUE" (dotted keys: budget.target=0.6); VALUE is JSON, or a
 * bare string. */
int train_config_set(TrainConfig *c, const char *kv, char *err, size_t cap);
/* Cross-key checks (after all loads and overrides). */
int train_config_check(const TrainConfig *c, const char *where, char *err, size_t cap);
/* With no model: the small embedded profile for every key not given explicitly
 * (train_limit 20000, max_len 64, 1 epoch, lr 1e-3, batch 16 x 1, warm-up 0.1, ...). */
void train_config_embedded(TrainConfig *c);
/* The resolved config as JSON text (malloc'd). */
char *train_config_json(const TrainConfig *c);
/* A hash of the resolved config without the resumable keys, name and runs_dir
 * (checkpoints carry it; a run folder may be moved or renamed). */
uint64_t train_config_hash(const TrainConfig *c);
/* Keys that may change on --resume without changing the numbers. */
bool train_config_resumable_key(const char *key);

/* ---- running ---------------------------------------------------------------------- */

typedef struct TrainOptions {
  bool resume;                          /* continue RUNS/NAME from its checkpoint */
  int progress;                         /* 1: \r progress line; 0: plain lines; -1: auto
                                           (a terminal on stderr) */
  bool quiet;                           /* no log lines at all (tests) */
  volatile sig_atomic_t *stop;          /* set (by a signal handler): save and return 130 */
} TrainOptions;

typedef struct TrainResult {
  double accuracy, val_loss, train_seconds, tokens_per_s;
  int correct, total;
  int64_t steps, total_steps;
  char run_dir[1200];
  bool interrupted, finished;
} TrainResult;

/* Trains (or continues) the run. 0: done (summary written); 130: stopped by
 * *opt->stop, checkpoint saved; 2: a configuration/data error; 1: another failure.
 * The message is in err. A failure before the run's first checkpoint removes what
 * this call created of RUNS/NAME; after one, the folder stays and err ends with how
 * to resume it. */
int train_run(TrainConfig *c, const TrainOptions *opt, TrainResult *res, char *err,
              size_t cap);

/* Reads RUN_DIR/config.json into c (for --resume); max_steps is cleared (it limited
 * the invocation that stopped, not the run). */
int train_config_from_run(const char *run_dir, TrainConfig *c, char *err, size_t cap);

/* ---- pieces shared with the CLI (crisp eval / predict) ----------------------------- */

/* A data set tokenized once: row r's ids at ids[offset[r] .. + length[r]). */
typedef struct EncodedSet {
  int n, longest;
  int32_t *ids, *offset, *length, *label;
} EncodedSet;

/* Tokenizes the first `limit` rows (0: all) with max_len. 0, or -1 with err. */
int encoded_set_build(const Tokenizer *t, const Sst2Set *s, int max_len, int limit,
                      EncodedSet *out, char *err, size_t cap);
void encoded_set_free(EncodedSet *e);

/* Compiles (through the kernel cache) and registers the crisp kernels for the mode
 * (head_dim from the model, max_seq = m->max_len, backward kernels when built);
 * *mod is to be unloaded after model_free. */
int train_attach_crisp(Model *m, SelectKind sel, int keep_min, RtModule **mod, char *err,
                       size_t cap);

/* Evaluates the set with dropout off at the model's current attention settings, in
 * batches of `batch` (dynamic padding): loss, accuracy, kept fractions and per-head
 * entropies. 0, or -1 with err. eval_result_free releases the arrays. */
int train_evaluate(Model *m, const EncodedSet *set, int batch, EvalResult *out, char *err,
                   size_t cap);
void eval_result_free(EvalResult *e);

/* ---- checkpoints (checkpoint.c) --------------------------------------------------- */

typedef struct TrainState {
  uint64_t config_hash;   /* of the resolved config minus the resumable keys */
  int64_t opt_step;       /* optimizer steps done */
  int64_t micro;          /* micro-batches done (the dropout counter) */
  int64_t epoch;          /* current epoch (0-based) */
  int64_t epoch_pos;      /* micro-batches of it done */
  int64_t metrics_bytes;  /* metrics.jsonl length at this point */
  double train_seconds;   /* training time so far (excluding evaluations) */
  int64_t tokens;         /* training tokens so far */
  double best_accuracy;
  int64_t best_step;
  Budget budget;
} TrainState;

/* Writes path atomically (PATH.tmp, fsync, rename, fsync of the folder): a header,
 * the state, parameters, AdamW moments and step, a checksum of everything. */
int checkpoint_save(const char *path, const TrainState *st, const Model *m, const AdamW *o,
                    char *err, size_t cap);
/* Reads it back into st, m's parameters and o (sizes must match); a short, altered or
 * foreign file is an error naming it (nothing is half-applied to m or o). */
int checkpoint_load(const char *path, TrainState *st, Model *m, AdamW *o, char *err,
                    size_t cap);

/* ---- metrics (metrics.c) ---------------------------------------------------------- */

struct EvalResult {
  double loss, accuracy;
  int correct, total;
  int layers, heads;
  double kept[MODEL_MAX_LAYERS];       /* kept / valid scores over the set */
  double *entropy;                     /* [layers * heads] mean entropy (nats) of kept rows */
  double *entropy_norm;                /* [layers * heads] the same / log(L) */
  double seconds;
};

typedef struct StepRecord {
  int64_t step, total, epoch;
  double loss, lr, grad_norm, tokens_per_s, elapsed;
  int layers;
  const double *sparsity;              /* s_l used */
  const double *concentration;         /* adaptive: c_ema (else NULL) */
} StepRecord;

/* One JSON line each, appended and flushed. 0, or -1 with err. */
int metrics_step(FILE *f, const StepRecord *r, char *err, size_t cap);
int metrics_eval(FILE *f, int64_t step, int64_t epoch, const char *when, const EvalResult *e,
                 const double *s_used, char *err, size_t cap);
/* summary.json, atomically. */
int metrics_summary(const char *path, const TrainConfig *c, const TrainState *st,
                    const EvalResult *final, int64_t total_steps, bool finished,
                    const double *s_final, int layers, char *err, size_t cap);

/* ---- synthetic SST-2-like data (synth.c) ------------------------------------------ */

/* Writes DIR/train.tsv (n_train rows), DIR/dev.tsv (n_dev rows) and DIR/vocab.txt: short
 * templated movie-review sentences with a positive/negative label (negation flips
 * it), from seed. 0, or -1 with err. */
int synth_sst2(const char *dir, int n_train, int n_dev, uint64_t seed, char *err, size_t cap);

#endif
