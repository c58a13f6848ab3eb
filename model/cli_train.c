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

int cli_train(int argc, char **argv) {
  const char *config = NULL, *resume = NULL;
  const char *sets[128];
  int n_sets = 0, progress = -1;
  bool quiet = false;
  char kv[1200];
  for (int i = 0; i < argc; i++) {
    const char *v = NULL, *a = argv[i];
    bool miss = false;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      fputs(USAGE_TRAIN, stdout);
      return 0;
    }
    if (!strcmp(a, "--progress")) {
      progress = 1;
      continue;
    }
    if (!strcmp(a, "--no-progress")) {
      progress = 0;
      continue;
    }
    if (!strcmp(a, "--quiet")) {
      quiet = true;
      continue;
    }
    struct {
      const char *flag, *key;
    } const direct[] = {{"--model", "model"},   {"--data", "data"},       {"--name", "name"},
                        {"--runs", "runs_dir"}, {"--seed", "seed"},       {"--threads", "threads"},
                        {"--max-steps", "max_steps"}, {"--epochs", "epochs"},
                        {"--device", "device"}, {"--impl", "impl"}};
    bool done = false;
    for (size_t k = 0; k < sizeof direct / sizeof *direct && !done; k++)
      if (cli_opt_val(argc, argv, &i, direct[k].flag, &v, &miss)) {
        if (miss)
          return cli_usage_error("train", "%s needs a value", direct[k].flag);
        if (n_sets >= 120)
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
        sets[n_sets++] = strdup(kv);
        done = true;
      }
    if (done)
      continue;
    if (cli_opt_val(argc, argv, &i, "--config", &v, &miss)) {
      if (miss)
        return cli_usage_error("train", "--config needs a file");
      config = v;
    } else if (cli_opt_val(argc, argv, &i, "--resume", &v, &miss)) {
      if (miss)
        return cli_usage_error("train", "--resume needs a run folder");
      resume = v;
    } else if (cli_opt_val(argc, argv, &i, "--set", &v, &miss)) {
      if (miss)
        return cli_usage_error("train", "--set needs KEY=VALUE");
      if (n_sets >= 120)
        return cli_usage_error("train", "too many options");
      sets[n_sets++] = strdup(v);
    } else {
      return cli_usage_error("train", "unknown %s \"%s\"", a[0] == '-' ? "option" : "argument", a);
    }
  }
  TrainConfig c;
  char err[4096];
  int rc = 2;
  if (resume) {
    if (config) {
      rc = cli_usage_error("train", "--resume takes the run's own config; drop --config");
      goto done;
    }
    if (train_config_from_run(resume, &c, err, sizeof err)) {
      fprintf(stderr, "crisp train: %s\n", err);
      goto done;
    }
    for (int k = 0; k < n_sets; k++) {
      char key[128];
      snprintf(key, sizeof key, "%.*s", (int)strcspn(sets[k], "="), sets[k]);
      if (!train_config_resumable_key(key)) {
        rc = cli_usage_error("train",
                             "--resume: \"%s\" cannot change in a resumed run (only max_steps, "
                             "eval_every, checkpoint_every, log_every, eval_batch, eval_limit)",
                             key);
        goto done;
      }
    }
    /* the run folder is RUNS/NAME: keep what --resume names */
    char *dup = strdup(resume), *slash;
    while (strlen(dup) > 1 && dup[strlen(dup) - 1] == '/')
      dup[strlen(dup) - 1] = 0;
    slash = strrchr(dup, '/');
    if (slash) {
      *slash = 0;
      snprintf(c.runs_dir, sizeof c.runs_dir, "%s", slash == dup ? "/" : dup);
      snprintf(c.name, sizeof c.name, "%s", slash + 1);
    } else {
      snprintf(c.runs_dir, sizeof c.runs_dir, ".");
      snprintf(c.name, sizeof c.name, "%s", dup);
    }
    free(dup);
  } else {
    train_config_defaults(&c);
    if (config && train_config_load(config, &c, err, sizeof err)) {
      fprintf(stderr, "crisp train: %s\n", err);
      goto done;
    }
  }
  for (int k = 0; k < n_sets; k++)
    if (train_config_set(&c, sets[k], err, sizeof err)) {
      fprintf(stderr, "crisp train: %s\n", err);
      goto done;
    }
  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESETHAND;   /* a second Ctrl-C ends the process at once */
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  TrainResult res;
  TrainOptions o = {.resume = resume != NULL, .progress = progress, .quiet = quiet, .stop = &g_stop};
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
done:
  for (int k = 0; k < n_sets; k++)
    free((void *)sets[k]);
  return rc;
}
