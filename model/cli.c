/* cli.c: `crisp train | eval | predict` (see cli.h and docs/training.md). */
#include "cli.h"

#include "report.h"
#include "train.h"

#include "../runtime/fsutil.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef CRISP_SHARED_DATA
#define CRISP_SHARED_DATA "../shared/data"
#endif

static const char USAGE_MAIN[] =
    "usage: crisp COMMAND [options]\n"
    "\n"
    "Fine-tune and run DistilBERT/BERT sequence classifiers with crisp (sparse) attention.\n"
    "\n"
    "commands:\n"
    "  train     fine-tune on SST-2 (no --model: a small random model, a quick demo run)\n"
    "  eval      accuracy and loss of a model folder on SST-2's dev set\n"
    "  predict   label and probabilities for sentences\n"
    "  report    the paper's tables and figures from run folders\n"
    "\n"
    "`crisp COMMAND --help` lists each command's options. docs/training.md has the details.\n";

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

static const char USAGE_EVAL[] =
    "usage: crisp eval --model DIR [--data DIR|FILE.tsv] [options]\n"
    "\n"
    "Accuracy (count x/N), validation loss, per-layer achieved sparsity and per-head entropy\n"
    "on SST-2's dev.tsv. The attention settings come from DIR/crisp_attention.json (written\n"
    "by crisp train) unless given here; a plain Hugging Face folder evaluates dense.\n"
    "\n"
    "  --model DIR       Hugging Face folder (config.json, model.safetensors, vocab.txt)\n"
    "  --data DIR|FILE   a folder holding dev.tsv, or a labelled .tsv (default: the shared SST-2)\n"
    "  --select S        none | row_topk | head_quantile | layer_quantile\n"
    "  --sparsity S      one sparsity for every layer, or a comma list per layer\n"
    "  --keep-min K      keys every row keeps at least (default 1)\n"
    "  --batch N         batch size (default 32)\n"
    "  --max-len N       truncate sentences to N tokens (default 512)\n"
    "  --limit N         evaluate the first N rows only\n"
    "  --threads N       CPU threads\n"
    "  --impl I          crisp | ref\n"
    "  --json            print the result as one JSON object\n"
    "  -h, --help        this text\n";

static const char USAGE_PREDICT[] =
    "usage: crisp predict --model DIR [options] TEXT...\n"
    "\n"
    "Prints, per sentence, the predicted label and every label's probability.\n"
    "\n"
    "  --model DIR       Hugging Face folder (config.json, model.safetensors, vocab.txt)\n"
    "  --select S, --sparsity S, --keep-min K, --max-len N, --threads N, --impl I  as in eval\n"
    "  -h, --help        this text\n";

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

static int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(const char *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "crisp %s: ", cmd);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n(see crisp %s --help)\n", cmd);
  return 2;
}

/* Matches "--name VALUE" or "--name=VALUE"; *val gets the value. */
static bool opt_val(int argc, char **argv, int *i, const char *name, const char **val,
                    bool *missing) {
  const char *a = argv[*i];
  size_t n = strlen(name);
  if (strncmp(a, name, n))
    return false;
  if (a[n] == '=') {
    *val = a + n + 1;
    return true;
  }
  if (a[n])
    return false;
  if (*i + 1 >= argc) {
    *missing = true;
    return true;
  }
  *val = argv[++*i];
  return true;
}

static bool parse_int(const char *s, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi)
    return false;
  *out = v;
  return true;
}

/* ---- train ---------------------------------------------------------------------- */

static int cmd_train(int argc, char **argv) {
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
      if (opt_val(argc, argv, &i, direct[k].flag, &v, &miss)) {
        if (miss)
          return usage_error("train", "%s needs a value", direct[k].flag);
        if (n_sets >= 120)
          return usage_error("train", "too many options");
        bool str = !strcmp(direct[k].key, "model") || !strcmp(direct[k].key, "data") ||
                   !strcmp(direct[k].key, "name") || !strcmp(direct[k].key, "runs_dir") ||
                   !strcmp(direct[k].key, "device") || !strcmp(direct[k].key, "impl");
        long num;
        if (!str && !parse_int(v, 0, 1000000000000L, &num))
          return usage_error("train", "%s: expected a non-negative integer, got \"%s\"",
                             direct[k].flag, v);
        if (str && !*v)
          return usage_error("train", "%s: empty value", direct[k].flag);
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
    if (opt_val(argc, argv, &i, "--config", &v, &miss)) {
      if (miss)
        return usage_error("train", "--config needs a file");
      config = v;
    } else if (opt_val(argc, argv, &i, "--resume", &v, &miss)) {
      if (miss)
        return usage_error("train", "--resume needs a run folder");
      resume = v;
    } else if (opt_val(argc, argv, &i, "--set", &v, &miss)) {
      if (miss)
        return usage_error("train", "--set needs KEY=VALUE");
      if (n_sets >= 120)
        return usage_error("train", "too many options");
      sets[n_sets++] = strdup(v);
    } else {
      return usage_error("train", "unknown %s \"%s\"", a[0] == '-' ? "option" : "argument", a);
    }
  }
  TrainConfig c;
  char err[4096];
  int rc = 2;
  if (resume) {
    if (config) {
      rc = usage_error("train", "--resume takes the run's own config; drop --config");
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
        rc = usage_error("train", "--resume: \"%s\" cannot change in a resumed run (only "
                                  "max_steps, eval_every, checkpoint_every, log_every, eval_batch, "
                                  "eval_limit)", key);
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

/* ---- eval / predict ---------------------------------------------------------------- */

typedef struct Loaded {
  Backend *be;
  Model *m;
  RtModule *mod;
  Tokenizer *tok;
} Loaded;

static void loaded_free(Loaded *l) {
  model_free(l->m);
  if (l->mod)
    rt_module_unload(l->be, l->mod);
  tok_free(l->tok);
  if (l->be)
    backend_close(l->be);
}

typedef struct AttnOpts {
  const char *select, *sparsity, *impl;
  int keep_min;   /* 0: unset */
} AttnOpts;

static int select_from_name(const char *s) {
  const char *names[] = {"none", "row_topk", "head_quantile", "layer_quantile"};
  for (int i = 0; i < 4; i++)
    if (!strcmp(s, names[i]))
      return i;
  return -1;
}

/* The model's attention settings: DIR/crisp_attention.json, then the flags. */
static int attention_settings(const char *cmd, const char *dir, const AttnOpts *ao, Model *m,
                              char *err, size_t cap) {
  int L = m->cfg.layers;
  m->attn.select = SEL_NONE;
  m->attn.keep_min = 1;
  for (int l = 0; l < L; l++)
    m->attn.sparsity[l] = 0;
  char path[1200];
  snprintf(path, sizeof path, "%s/crisp_attention.json", dir);
  char *text;
  size_t len;
  struct stat st;
  if (stat(path, &st) == 0) {
    if (rt_read_file(path, &text, &len, err, cap))
      return 1;
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *sel = cJSON_GetObjectItemCaseSensitive(j, "select");
    const cJSON *km = cJSON_GetObjectItemCaseSensitive(j, "keep_min");
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(j, "sparsity");
    int s = cJSON_IsString(sel) ? select_from_name(sel->valuestring) : -1;
    if (!j || s < 0 || !cJSON_IsNumber(km) || km->valueint < 1 || !cJSON_IsArray(sp) ||
        cJSON_GetArraySize(sp) != L) {
      cJSON_Delete(j);
      snprintf(err, cap, "%s: expected {\"select\", \"keep_min\", \"sparsity\": [%d numbers]}",
               path, L);
      return 2;
    }
    m->attn.select = (SelectKind)s;
    m->attn.keep_min = km->valueint;
    for (int l = 0; l < L; l++) {
      double v = cJSON_GetArrayItem(sp, l)->valuedouble;
      if (!(v >= 0 && v < 1)) {
        cJSON_Delete(j);
        snprintf(err, cap, "%s: sparsity[%d] = %g is outside [0, 1)", path, l, v);
        return 2;
      }
      m->attn.sparsity[l] = (float)v;
    }
    cJSON_Delete(j);
  }
  if (ao->select) {
    int s = select_from_name(ao->select);
    if (s < 0) {
      snprintf(err, cap, "--select: expected none, row_topk, head_quantile or layer_quantile");
      return 2;
    }
    m->attn.select = (SelectKind)s;
  }
  if (ao->keep_min)
    m->attn.keep_min = ao->keep_min;
  if (ao->sparsity) {
    double v[MODEL_MAX_LAYERS];
    int n = 0;
    const char *p = ao->sparsity;
    while (*p && n < MODEL_MAX_LAYERS) {
      char *end;
      v[n] = strtod(p, &end);
      if (end == p || !(v[n] >= 0 && v[n] < 1) || (*end && *end != ',')) {
        snprintf(err, cap, "--sparsity: expected numbers in [0, 1) separated by commas");
        return 2;
      }
      n++;
      p = *end ? end + 1 : end;
    }
    if (n != 1 && n != L) {
      snprintf(err, cap, "--sparsity: %d values for a %d-layer model (give 1 or %d)", n, L, L);
      return 2;
    }
    for (int l = 0; l < L; l++)
      m->attn.sparsity[l] = (float)(n == 1 ? v[0] : v[l]);
  }
  (void)cmd;
  return 0;
}

static int load_model(const char *cmd, const char *dir, int threads, int batch, int max_len,
                      const AttnOpts *ao, Loaded *out, char *err, size_t cap) {
  memset(out, 0, sizeof *out);
  ModelConfig mc;
  char path[1200];
  if (hf_config_load(dir, &mc, err, cap))
    return 2;
  snprintf(path, sizeof path, "%s/vocab.txt", dir);
  out->tok = tok_load(path, err, cap);
  if (!out->tok)
    return 2;
  if (threads > 0) {
    char t[16];
    snprintf(t, sizeof t, "%d", threads);
    setenv("OPENBLAS_NUM_THREADS", t, 1);
  }
  out->be = backend_open("cpu", &(BackendOptions){.threads = threads}, err, cap);
  if (!out->be)
    return 1;
  if (max_len > mc.max_position)
    max_len = mc.max_position;
  out->m = model_create(out->be, &mc, &(ModelOptions){.max_batch = batch, .max_len = max_len},
                        err, cap);
  if (!out->m)
    return 1;
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  int n_init = 0;
  if (model_load(out->m, path, 0, &n_init, err, cap))
    return 2;
  if (n_init)
    fprintf(stderr, "crisp %s: warning: %s has no trained classifier (%d tensors initialised "
                    "at random)\n",
            cmd, path, n_init);
  int rc = attention_settings(cmd, dir, ao, out->m, err, cap);
  if (rc)
    return rc;
  bool crisp = !ao->impl || !strcmp(ao->impl, "crisp");
  if (ao->impl && strcmp(ao->impl, "crisp") && strcmp(ao->impl, "ref")) {
    snprintf(err, cap, "--impl: expected crisp or ref");
    return 2;
  }
  if (crisp) {
    if (train_attach_crisp(out->m, out->m->attn.select, out->m->attn.keep_min, &out->mod, err,
                           cap))
      return 1;
    out->m->attn.impl = ATTN_IMPL_CRISP;
  }
  return 0;
}

static bool attn_flag(int argc, char **argv, int *i, AttnOpts *ao, const char *cmd, int *rc) {
  const char *v = NULL;
  bool miss = false;
  *rc = 0;
  if (opt_val(argc, argv, i, "--select", &v, &miss))
    ao->select = v;
  else if (opt_val(argc, argv, i, "--sparsity", &v, &miss))
    ao->sparsity = v;
  else if (opt_val(argc, argv, i, "--impl", &v, &miss))
    ao->impl = v;
  else if (opt_val(argc, argv, i, "--keep-min", &v, &miss)) {
    long k;
    if (!miss && !parse_int(v, 1, 8192, &k)) {
      *rc = usage_error(cmd, "--keep-min: expected an integer >= 1, got \"%s\"", v);
      return true;
    }
    if (!miss)
      ao->keep_min = (int)k;
  } else
    return false;
  if (miss)
    *rc = usage_error(cmd, "%s needs a value", argv[*i]);
  return true;
}

static int cmd_eval(int argc, char **argv) {
  const char *model = NULL, *data = NULL;
  long threads = 0, batch = 32, max_len = 512, limit = 0;
  bool json = false;
  AttnOpts ao = {0};
  for (int i = 0; i < argc; i++) {
    const char *v = NULL, *a = argv[i];
    bool miss = false;
    int rc;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      fputs(USAGE_EVAL, stdout);
      return 0;
    }
    if (!strcmp(a, "--json")) {
      json = true;
      continue;
    }
    if (attn_flag(argc, argv, &i, &ao, "eval", &rc)) {
      if (rc)
        return rc;
      continue;
    }
    struct {
      const char *flag;
      long *dst, lo, hi;
    } const ints[] = {{"--threads", &threads, 0, 1024},
                      {"--batch", &batch, 1, 4096},
                      {"--max-len", &max_len, 2, 8192},
                      {"--limit", &limit, 0, 1000000000}};
    bool done = false;
    for (size_t k = 0; k < 4 && !done; k++)
      if (opt_val(argc, argv, &i, ints[k].flag, &v, &miss)) {
        if (miss || !parse_int(v, ints[k].lo, ints[k].hi, ints[k].dst))
          return usage_error("eval", "%s: expected an integer in %ld..%ld", ints[k].flag,
                             ints[k].lo, ints[k].hi);
        done = true;
      }
    if (done)
      continue;
    if (opt_val(argc, argv, &i, "--model", &v, &miss)) {
      if (miss)
        return usage_error("eval", "--model needs a folder");
      model = v;
    } else if (opt_val(argc, argv, &i, "--data", &v, &miss)) {
      if (miss)
        return usage_error("eval", "--data needs a folder or file");
      data = v;
    } else {
      return usage_error("eval", "unknown %s \"%s\"", a[0] == '-' ? "option" : "argument", a);
    }
  }
  if (!model)
    return usage_error("eval", "--model DIR is required");
  char path[1400], err[4096];
  struct stat st;
  if (!data) {
    const char *env = getenv("CRISP_DATA");
    snprintf(path, sizeof path, "%s/sst2/dev.tsv", env && *env ? env : CRISP_SHARED_DATA);
  } else if (stat(data, &st) == 0 && S_ISDIR(st.st_mode)) {
    snprintf(path, sizeof path, "%s/dev.tsv", data);
  } else {
    snprintf(path, sizeof path, "%s", data);
  }
  Sst2Set set;
  if (sst2_load(path, &set, err, sizeof err)) {
    fprintf(stderr, "crisp eval: %s\n", err);
    return 2;
  }
  if (!set.labeled) {
    sst2_free(&set);
    fprintf(stderr, "crisp eval: %s has no labels (a test split?)\n", path);
    return 2;
  }
  Loaded ld;
  int rc = load_model("eval", model, (int)threads, (int)batch, (int)max_len, &ao, &ld, err,
                      sizeof err);
  EncodedSet enc = {0};
  if (!rc && encoded_set_build(ld.tok, &set, ld.m->max_len, (int)limit, &enc, err, sizeof err))
    rc = 2;
  EvalResult e = {0};
  if (!rc && train_evaluate(ld.m, &enc, (int)batch, &e, err, sizeof err))
    rc = 1;
  if (!rc) {
    int L = e.layers;
    if (json) {
      printf("{\"model\": \"%s\", \"data\": \"%s\", \"select\": \"%s\", \"accuracy\": %.6f, "
             "\"correct\": %d, \"total\": %d, \"count\": \"%d/%d\", \"val_loss\": %.6f, "
             "\"achieved_sparsity\": [",
             model, path, select_name(ld.m->attn.select), e.accuracy, e.correct, e.total,
             e.correct, e.total, e.loss);
      for (int l = 0; l < L; l++)
        printf("%s%.6f", l ? ", " : "", 1 - e.kept[l]);
      printf("]}\n");
    } else {
      printf("%s on %s: accuracy %.4f (%d/%d), val loss %.4f\n", model, path, e.accuracy,
             e.correct, e.total, e.loss);
      printf("attention: %s, keep_min %d, %s\n", select_name(ld.m->attn.select),
             ld.m->attn.keep_min, ld.m->attn.impl == ATTN_IMPL_CRISP ? "crisp kernels" : "reference");
      for (int l = 0; l < L; l++) {
        double mean_h = 0;
        for (int h = 0; h < e.heads; h++)
          mean_h += e.entropy[l * e.heads + h] / e.heads;
        printf("  layer %d: sparsity %.3f (target %.3f), mean head entropy %.3f nats\n", l,
               1 - e.kept[l], (double)ld.m->attn.sparsity[l], mean_h);
      }
    }
  } else {
    fprintf(stderr, "crisp eval: %s\n", err);
  }
  eval_result_free(&e);
  encoded_set_free(&enc);
  sst2_free(&set);
  loaded_free(&ld);
  return rc;
}

static int cmd_predict(int argc, char **argv) {
  const char *model = NULL;
  long threads = 0, max_len = 512;
  AttnOpts ao = {0};
  const char **texts = calloc((size_t)argc + 1, sizeof *texts);
  int n = 0, rc = 0;
  bool only_texts = false;
  for (int i = 0; i < argc; i++) {
    const char *v = NULL, *a = argv[i];
    bool miss = false;
    if (only_texts || a[0] != '-' || !a[1]) {
      texts[n++] = a;
      continue;
    }
    if (!strcmp(a, "--")) {
      only_texts = true;
      continue;
    }
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      fputs(USAGE_PREDICT, stdout);
      free(texts);
      return 0;
    }
    if (attn_flag(argc, argv, &i, &ao, "predict", &rc)) {
      if (rc) {
        free(texts);
        return rc;
      }
      continue;
    }
    if (opt_val(argc, argv, &i, "--model", &v, &miss)) {
      model = v;
    } else if (opt_val(argc, argv, &i, "--threads", &v, &miss)) {
      if (!miss && !parse_int(v, 0, 1024, &threads))
        miss = true;
    } else if (opt_val(argc, argv, &i, "--max-len", &v, &miss)) {
      if (!miss && !parse_int(v, 2, 8192, &max_len))
        miss = true;
    } else {
      free(texts);
      return usage_error("predict", "unknown option \"%s\"", a);
    }
    if (miss) {
      free(texts);
      return usage_error("predict", "%s needs a valid value", a);
    }
  }
  if (!model || n == 0) {
    free(texts);
    return usage_error("predict", !model ? "--model DIR is required" : "give at least one TEXT");
  }
  char err[4096];
  Loaded ld;
  int batch = n < 32 ? n : 32;
  rc = load_model("predict", model, (int)threads, batch, (int)max_len, &ao, &ld, err, sizeof err);
  TokBatch tb = {0};
  for (int at = 0; !rc && at < n; at += batch) {
    int cnt = n - at < batch ? n - at : batch;
    if (tok_encode_batch(ld.tok, texts + at, NULL, cnt, ld.m->max_len, &tb, err, sizeof err)) {
      rc = 2;
      break;
    }
    ModelRun run = {.train = false};
    if (model_forward(ld.m, tb.ids, tb.lengths, tb.batch, tb.seq_len, NULL, &run)) {
      snprintf(err, sizeof err, "%s", ld.m->err);
      rc = 1;
      tok_batch_free(&tb);
      break;
    }
    int K = ld.m->cfg.num_labels;
    for (int b = 0; b < cnt; b++) {
      const float *z = run.logits + (size_t)b * K;
      double mx = z[0], sum = 0;
      int best = 0;
      for (int k = 1; k < K; k++)
        if (z[k] > mx)
          mx = z[k], best = k;
      for (int k = 0; k < K; k++)
        sum += exp(z[k] - mx);
      printf("%s\t", ld.m->cfg.id2label[best]);
      for (int k = 0; k < K; k++)
        printf("%s%s %.4f", k ? "  " : "", ld.m->cfg.id2label[k], exp(z[k] - mx) / sum);
      printf("\t%s\n", texts[at + b]);
    }
    tok_batch_free(&tb);
  }
  if (rc)
    fprintf(stderr, "crisp predict: %s\n", err);
  loaded_free(&ld);
  free(texts);
  return rc;
}

int crisp_cli(int argc, char **argv) {
  if (argc < 2) {
    fputs(USAGE_MAIN, stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
    fputs(USAGE_MAIN, stdout);
    return 0;
  }
  if (!strcmp(cmd, "train"))
    return cmd_train(argc - 2, argv + 2);
  if (!strcmp(cmd, "eval"))
    return cmd_eval(argc - 2, argv + 2);
  if (!strcmp(cmd, "predict"))
    return cmd_predict(argc - 2, argv + 2);
  if (!strcmp(cmd, "report"))
    return report_cli(argc - 2, argv + 2);
  fprintf(stderr, "crisp: unknown command \"%s\"\n\n%s", cmd, USAGE_MAIN);
  return 2;
}
