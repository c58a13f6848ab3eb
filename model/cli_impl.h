/* cli_impl.h: what the files of the `crisp` command share (cli.h is its entry point):
 * the option helpers (cli.c), the three commands (cli_train.c, cli_eval.c) and the
 * model folder that eval and predict load with its attention settings (cli_model.c). */
#ifndef CRISP_MODEL_CLI_IMPL_H
#define CRISP_MODEL_CLI_IMPL_H

#include "cli.h"
#include "train.h"

#include <stdbool.h>
#include <stddef.h>

/* ---- options (cli.c) ------------------------------------------------------------- */

/* "crisp CMD: message" and a pointer to --help on stderr; returns 2 (a usage error). */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Matches "--name VALUE" or "--name=VALUE"; *val gets the value. */
bool cli_opt_val(int argc, char **argv, int *i, const char *name, const char **val,
                 bool *missing);
/* A whole decimal number in lo..hi. */
bool cli_parse_int(const char *s, long lo, long hi, long *out);

/* ---- the commands (argv without "crisp COMMAND"); each returns the exit status --- */

int cli_train(int argc, char **argv);     /* cli_train.c */
int cli_eval(int argc, char **argv);      /* cli_eval.c */
int cli_predict(int argc, char **argv);   /* cli_eval.c */

/* ---- a model folder for eval and predict (cli_model.c) --------------------------- */

typedef struct Loaded {
  Backend *be;
  Model *m;
  RtModule *mod;
  Tokenizer *tok;
} Loaded;

typedef struct AttnOpts {
  const char *select, *sparsity, *impl;
  int keep_min;   /* 0: unset */
} AttnOpts;

/* DIR's config, vocabulary and weights on a cpu backend, with the attention settings
 * of DIR/crisp_attention.json and the flags, and crisp kernels unless --impl ref.
 * cmd "eval" needs a model with SST-2's 2 labels, "predict" one with 2 or more.
 * 0, or the exit status with err. */
int cli_load_model(const char *cmd, const char *dir, int threads, int batch, int max_len,
                   const AttnOpts *ao, Loaded *out, char *err, size_t cap);
void cli_loaded_free(Loaded *l);
/* Takes argv[*i] if it is one of the attention flags (--select, --sparsity, --impl,
 * --keep-min); *rc is then 0 or the usage error's status. */
bool cli_attn_flag(int argc, char **argv, int *i, AttnOpts *ao, const char *cmd, int *rc);

#endif
