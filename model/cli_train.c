/* cli_train.c: `crisp train`: its flags turned into config overrides (--model DIR is
 * --set model="DIR"), the config from --config or, for --resume, the run's own with only
 * the resumable keys overridable, and Ctrl-C turned into a checkpoint at the next
 * optimizer step (train_run returns 130). */
#include "cli_impl.h"

#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE_TRAIN[] =
    "usage: crisp train [--config FILE] [--model DIR] [--data DIR] [options]\n"
    "       crisp train --resume RUN_DIR [--set KEY=VALUE ...]\n"
    "\n"
    "Fine-tunes a sequence classifier on SST-2 and writes RUNS/NAME/: config.json (resolved),\n"
    "metrics.jsonl, summary.json, final/ (a Hugging Face folder) and, while unfinished,\n"
    "checkpoint.bin. Ctrl-C saves a checkpoint at the next optimizer step and exits 130.\n"
    "\n"
    "  --config FILE     run configuration (examples/configs/*.json); default: the paper's\n"
    "                    settings with head_quantile attention, adaptive budget, target 0.8\n"
    "  --model DIR       Hugging Face folder (config.json, model.safetensors, vocab.txt);\n"
    "                    without it: a small random DistilBERT (2 layers, hidden 64) trained\n"
    "                    on 20,000 sentences at max_len 64 for 1 epoch (keys the config or\n"
    "                    --set gives win)\n"
    "  --data DIR        folder with train.tsv and dev.tsv (GLUE SST-2 format); default:\n"
    "                    $CRISP_DATA/sst2 or the shared copy; 'synthetic' generates a small\n"
    "                    sentiment set (also used when no shared copy exists)\n"
    "  --name NAME       run name (default: the config's \"name\")\n"
    "  --runs DIR        where run folders go (default: runs)\n"
    "  --resume RUN_DIR  continue an interrupted run exactly where its checkpoint stopped\n"
    "  --set KEY=VALUE   override a config key (repeatable), e.g. --set budget.target=0.6\n"
    "  --seed N          same as --set seed=N\n"
    "  --threads N       CPU threads (pool and BLAS; fixed threads give bitwise-reproducible runs)\n"
    "  --max-steps N     stop after N optimizer steps (a checkpoint allows --resume)\n"
    "  --epochs N        number of epochs\n"
    "  --device D        auto | cpu | cuda (the model runs on cpu today)\n"
    "  --impl I          crisp (JIT-compiled kernels, default) | ref (the C reference)\n"
    "  --progress        force the one-line progress display; --no-progress: plain lines\n"
    "  --quiet           no log lines (errors and the result still print)\n"
    "  -h, --help        this text\n";


static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

/* What the command line asks of crisp train. */
typedef struct TrainArgs {
  const char *config, *resume;
  const char *sets[128];   /* KEY=VALUE overrides, the flags' included (strdup'd) */
  int n_sets;
  int progress;            /* 1, 0, or -1: a terminal decides */
  bool quiet;
} TrainArgs;

static void args_free(TrainArgs *a) {
  for (int k = 0; k < a->n_sets; k++)
    free((void *)a->sets[k]);
}

/* The flags that are config keys (--model DIR is --set model="DIR"): -1 when argv[*i]
 * is none of them, else 0 (taken) or a usage error's status. */
static int key_flag(int argc, char **argv, int *i, TrainArgs *a) {
  struct {
    const char *flag, *key;
  } const direct[] = {{"--model", "model"},   {"--data", "data"},       {"--name", "name"},
                      {"--runs", "runs_dir"}, {"--seed", "seed"},       {"--threads", "threads"},
                      {"--max-steps", "max_steps"}, {"--epochs", "epochs"},
                      {"--device", "device"}, {"--impl", "impl"}};
  const char *v = NULL;
  bool miss = false;
  char kv[1200];
  for (size_t k = 0; k < sizeof direct / sizeof *direct; k++) {
    if (!cli_opt_val(argc, argv, i, direct[k].flag, &v, &miss))
      continue;
    if (miss)
      return cli_usage_error("train", "%s needs a value", direct[k].flag);
    if (a->n_sets >= 120)
      return cli_usage_error("train", "too many options");
    bool str = !strcmp(direct[k].key, "model") || !strcmp(direct[k].key, "data") ||
               !strcmp(direct[k].key, "name") || !strcmp(direct[k].key, "runs_dir") ||
               !strcmp(direct[k].key, "device") || !strcmp(direct[k].key, "impl");
    long num;
    if (!str && !cli_parse_int(v, 0, 1000000000000L, &num))
      return cli_usage_error("train", "%s: expected a non-negative integer, got \"%s\"",
                             direct[k].flag, v);
    if (str && !*v)
      return cli_usage_error("train", "%s: empty value", direct[k].flag);
    /* strings as JSON strings, so "123" stays a string */
    cJSON *s = str ? cJSON_CreateString(v) : NULL;
    char *js = s ? cJSON_PrintUnformatted(s) : NULL;
    cJSON_Delete(s);
    snprintf(kv, sizeof kv, "%s=%s", direct[k].key, js ? js : v);
    free(js);
    a->sets[a->n_sets++] = strdup(kv);
    return 0;
  }
  return -1;
}

/* Reads the arguments into *a: -1 to go on, else the command ends with that status
 * (0 after --help, 2 for a usage error). */
static int train_args(int argc, char **argv, TrainArgs *a) {
  *a = (TrainArgs){.progress = -1};
  for (int i = 0; i < argc; i++) {
    const char *v = NULL, *arg = argv[i];
    bool miss = false;
    if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
      fputs(USAGE_TRAIN, stdout);
      return 0;
    }
    if (!strcmp(arg, "--progress") || !strcmp(arg, "--no-progress")) {
      a->progress = !strcmp(arg, "--progress");
      continue;
    }
    if (!strcmp(arg, "--quiet")) {
      a->quiet = true;
      continue;
    }
    int taken = key_flag(argc, argv, &i, a);
    if (taken > 0)
      return taken;
    if (taken == 0)
      continue;
    if (cli_opt_val(argc, argv, &i, "--config", &v, &miss)) {
      if (miss)
        return cli_usage_error("train", "--config needs a file");
      a->config = v;
    } else if (cli_opt_val(argc, argv, &i, "--resume", &v, &miss)) {
      if (miss)
        return cli_usage_error("train", "--resume needs a run folder");
      a->resume = v;
    } else if (cli_opt_val(argc, argv, &i, "--set", &v, &miss)) {
      if (miss)
        return cli_usage_error("train", "--set needs KEY=VALUE");
      if (a->n_sets >= 120)
        return cli_usage_error("train", "too many options");
      a->sets[a->n_sets++] = strdup(v);
    } else {
      return cli_usage_error("train", "unknown %s \"%s\"",
                             arg[0] == '-' ? "option" : "argument", arg);
    }
  }
  return -1;
}

/* The config of the run --resume names: its own config.json, only resumable keys
 * overridden, and RUNS/NAME as --resume spells it. 0, or the exit status (2). */
static int resumed_config(const TrainArgs *a, TrainConfig *c, char *err, size_t cap) {
  if (a->config)
    return cli_usage_error("train", "--resume takes the run's own config; drop --config");
  if (train_config_from_run(a->resume, c, err, cap)) {
    fprintf(stderr, "crisp train: %s\n", err);
    return 2;
  }
  for (int k = 0; k < a->n_sets; k++) {
    char key[128];
    snprintf(key, sizeof key, "%.*s", (int)strcspn(a->sets[k], "="), a->sets[k]);
    if (!train_config_resumable_key(key))
      return cli_usage_error("train",
                             "--resume: \"%s\" cannot change in a resumed run (only max_steps, "
                             "eval_every, checkpoint_every, log_every, eval_batch, eval_limit)",
                             key);
  }
  /* the run folder is RUNS/NAME: keep what --resume names */
  char *dup = strdup(a->resume), *slash;
  while (strlen(dup) > 1 && dup[strlen(dup) - 1] == '/')
    dup[strlen(dup) - 1] = 0;
  slash = strrchr(dup, '/');
  if (slash) {
    *slash = 0;
    snprintf(c->runs_dir, sizeof c->runs_dir, "%s", slash == dup ? "/" : dup);
    snprintf(c->name, sizeof c->name, "%s", slash + 1);
  } else {
    snprintf(c->runs_dir, sizeof c->runs_dir, ".");
    snprintf(c->name, sizeof c->name, "%s", dup);
  }
  free(dup);
  return 0;
}

/* The run's config: the resumed run's, or the defaults under --config; then every
 * override in order. 0, or the exit status (2). */
static int run_config(const TrainArgs *a, TrainConfig *c, char *err, size_t cap) {
  if (a->resume) {
    int rc = resumed_config(a, c, err, cap);
    if (rc)
      return rc;
  } else {
    train_config_defaults(c);
    if (a->config && train_config_load(a->config, c, err, cap)) {
      fprintf(stderr, "crisp train: %s\n", err);
      return 2;
    }
  }
  for (int k = 0; k < a->n_sets; k++)
    if (train_config_set(c, a->sets[k], err, cap)) {
      fprintf(stderr, "crisp train: %s\n", err);
      return 2;
    }
  return 0;
}

int cli_train(int argc, char **argv) {
  TrainArgs a;
  TrainConfig c;
  char err[4096];
  int rc = train_args(argc, argv, &a);
  if (rc >= 0 || (rc = run_config(&a, &c, err, sizeof err))) {
    args_free(&a);
    return rc;
  }
  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESETHAND;   /* a second Ctrl-C ends the process at once */
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  TrainResult res;
  TrainOptions o = {.resume = a.resume != NULL, .progress = a.progress, .quiet = a.quiet,
                    .stop = &g_stop};
  rc = train_run(&c, &o, &res, err, sizeof err);
  if (rc == 0) {
    printf("%s: accuracy %.4f (%d/%d), val loss %.4f, %lld/%lld steps, %.0f tok/s, %.1f s of "
           "training\n",
           res.run_dir, res.accuracy, res.correct, res.total, res.val_loss, (long long)res.steps,
           (long long)res.total_steps, res.tokens_per_s, res.train_seconds);
    if (!res.finished)
      printf("stopped early (max_steps): continue with crisp train --resume %s\n", res.run_dir);
  } else if (rc != 130) {
    fprintf(stderr, "crisp train: %s\n", err);
  }
  args_free(&a);
  return rc;
}
