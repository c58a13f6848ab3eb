/* train_impl.h: what the files of the training run share and nothing outside them
 * needs (train.h is the API): the padded batch, the shuffle, and the Run that
 * train_run (train.c) steps, with the pieces kept apart from the loop: preparing and
 * releasing it (train_setup.c), its folder made and, on an early failure, removed
 * (train_folder.c), and its console output (train_log.c). */
#ifndef CRISP_MODEL_TRAIN_IMPL_H
#define CRISP_MODEL_TRAIN_IMPL_H

#include "train.h"

/* ---- batches and shuffles (train_data.c) ------------------------------------------ */

typedef struct Batch {
  int B, N, cap_rows, cap_len;
  int32_t *ids, *lengths, *labels;
  int64_t tokens;   /* valid (non-padding) tokens */
} Batch;

int batch_alloc(Batch *b, int rows, int len);
void batch_free(Batch *b);
/* Rows idx[0..count) padded to the longest of them (dynamic padding). */
void batch_fill(Batch *b, const EncodedSet *s, const int *idx, int count, int32_t pad);
/* idx = a permutation of 0..n-1 drawn from seed (Fisher-Yates). */
void train_permutation(int *idx, int n, uint64_t seed);

/* ---- the run folder (train_folder.c) ---------------------------------------------- */

/* What existed of RUNS/NAME before this invocation: enough to remove, when the run
 * fails before its first checkpoint, what it created and nothing else. */
typedef struct RunFolder {
  char dir[1200];
  char top[1200];   /* the first folder of dir's path that was missing ("": dir existed) */
  char **had;       /* dir's entries before (n_had < 0: unknown, so nothing is removed) */
  int n_had;
} RunFolder;

/* Notes what exists, then makes dir (mkdir -p). 0, or -1 with err. */
int run_folder_make(RunFolder *f, const char *dir, char *err, size_t cap);
/* Removes the entries of dir that were not there before (recursively, not following
 * links), then dir and the folders above it that run_folder_make created. */
void run_folder_undo(const RunFolder *f);
void run_folder_free(RunFolder *f);

/* ---- the run ---------------------------------------------------------------------- */

typedef struct Run {
  TrainConfig *c;
  const TrainOptions *opt;
  char dir[1200], data[1300], vocab[1400], data_note[256];
  char cfg_path[1300], metrics_path[1300], ckpt_path[1300];   /* in dir */
  Backend *be;
  RtModule *mod;
  Tokenizer *tok;
  EncodedSet train, dev;
  Model *m;
  AdamW adam;
  bool adam_ok;
  TrainState st;
  FILE *metrics;
  bool tty, line_open;
  double last_line;
  int64_t eval_step;   /* the step of the last evaluation (-1: none in this process) */
  RunFolder folder;    /* what this invocation made of RUNS/NAME */
  int64_t ckpt_step;   /* the step of the run's checkpoint (-1: none yet) */
} Run;

/* ---- preparing and releasing it (train_setup.c) ---------------------------------- */

/* Everything before the first step: the config checked, the run folder, the data, the
 * backend, the sets, the model, the state (the checkpoint's when resuming), config.json
 * written and metrics.jsonl open. 0, or train_run's exit status (2: what the user can
 * fix; 1: another failure) with err. */
int run_open(Run *r, TrainResult *res, char *err, size_t cap);
bool train_file_exists(const char *p);
/* Three steps of run_open, which return 0, or -2 for what the user can fix
 * (train_run exits 2) or -1, with err. */
/* Resolves r->data and r->vocab (and c->data in the resolved config). */
int run_resolve_data(Run *r, char *err, size_t cap);
/* r->tok, r->train and r->dev. */
int run_load_sets(Run *r, char *err, size_t cap);
/* r->m with its attention settings and kernels, and r->adam. */
int run_build_model(Run *r, char *err, size_t cap);
void run_free(Run *r);

/* ---- the console (train_log.c) ---------------------------------------------------- */

/* A log line on stderr (clearing an open progress line first). */
void run_say(Run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void train_fmt_time(double s, char *buf, size_t cap);
/* The progress line (a terminal only, at most every 0.1 s). */
void run_progress(Run *r, int64_t total, double loss, double lr, double tps, double eta);

#endif
