/* train_runs.c: test_train's whole runs on generated data with a tiny random model
 * and one thread: the same seed gives bitwise-identical parameters, another seed
 * does not; 3 steps + --resume 3 equals 6 straight; a stop request (what Ctrl-C
 * sets) saves a checkpoint, returns 130, and resuming it ends bitwise where a
 * straight run does; a run that fails before its first checkpoint leaves nothing
 * behind, one that fails after it stays resumable. Apart because these are the slow, end-to-end tests. */
#define CHECK_SHARED
#include "check.h"
#include "train_test.h"
#include "train.h"
#include "hf.h"

#include "../runtime/fsutil.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- whole runs --------------------------------------------------------------------- */

static void tiny_config(TrainConfig *c, const char *name, uint64_t seed) {
  train_config_defaults(c);
  snprintf(c->name, sizeof c->name, "%s", name);
  snprintf(c->runs_dir, sizeof c->runs_dir, "%s", g_tmp);
  snprintf(c->data, sizeof c->data, "synthetic");
  c->random_model = (RandomModel){MODEL_DISTILBERT, 2, 16, 2, 32, 64};
  c->train_limit = 160, c->eval_limit = 40, c->max_len = 32;
  c->batch_size = 8, c->grad_accum = 2, c->epochs = 2;
  c->lr = 1e-2, c->warmup_ratio = 0.2;
  c->threads = 1, c->seed = seed;
  c->max_steps = 6, c->eval_every = 4, c->checkpoint_every = 0;
  c->explicit_keys = ~0ull;   /* no embedded profile */
}


static int count_lines(const char *path, const char *needle) {
  size_t n;
  char *t = read_all(path, &n);
  int k = 0;
  for (char *p = t; p && (p = strstr(p, needle)); p++)
    k++;
  free(t);
  return k;
}

static int run(TrainConfig *c, bool resume, volatile sig_atomic_t *stop, TrainResult *res) {
  char err[2048];
  TrainOptions o = {.resume = resume, .progress = 0, .quiet = true, .stop = stop};
  int rc = train_run(c, &o, res, err, sizeof err);
  if (rc != 0 && rc != 130)
    fprintf(stderr, "train_run (%s): %s\n", c->name, err);
  return rc;
}

static void weights(char *buf, size_t cap, const char *name) {
  snprintf(buf, cap, "%s/%s/final/model.safetensors", g_tmp, name);
}

/* summary.json's final_sparsity of run NAME into s[2]; false if unreadable */
static bool final_sparsity(const char *name, double s[2]) {
  char path[600];
  size_t n;
  snprintf(path, sizeof path, "%s/%s/summary.json", g_tmp, name);
  char *text = read_all(path, &n);
  cJSON *j = text ? cJSON_Parse(text) : NULL;
  cJSON *a = cJSON_GetObjectItem(j, "final_sparsity");
  bool ok = cJSON_GetArraySize(a) == 2;
  for (int l = 0; ok && l < 2; l++)
    s[l] = cJSON_GetArrayItem(a, l)->valuedouble;
  cJSON_Delete(j);
  free(text);
  return ok;
}

/* The dense entropy reaches the adaptive rule: the layers' s_l move apart around the
 * target (with the rows left unwritten they would all read entropy 0 and stay
 * uniform) and differ from the kept entropy's. */
void test_run_dense_entropy(void) {
  TrainConfig c;
  TrainResult r;
  double sk[2], sd[2];
  tiny_config(&c, "kept_entropy", 7);
  c.budget.gain = 50;   /* the tiny random model's layers differ little */
  CHECK(run(&c, false, NULL, &r) == 0, "run kept_entropy");
  tiny_config(&c, "dense_entropy", 7);
  c.budget.gain = 50;
  c.budget.entropy = BUDGET_ENTROPY_DENSE;
  CHECK(run(&c, false, NULL, &r) == 0, "run dense_entropy");
  CHECK(final_sparsity("kept_entropy", sk) && final_sparsity("dense_entropy", sd),
        "summary.json final_sparsity");
  /* unwritten rows would give every layer the same c, hence s_l = 0.8 exactly */
  CHECK(fabs(sd[0] - sd[1]) > 1e-5 && fabs(0.5 * (sd[0] + sd[1]) - 0.8) < 1e-6,
        "dense: s_l %.9f %.9f around 0.8", sd[0], sd[1]);
  CHECK(fabs(sd[0] - sk[0]) > 1e-5, "dense %.9f vs kept %.9f", sd[0], sk[0]);
}

void test_runs(void) {
  TrainConfig c;
  TrainResult r;
  char a[512], b[512], path[600];
  /* straight: 6 steps, twice */
  tiny_config(&c, "a", 7);
  CHECK(run(&c, false, NULL, &r) == 0 && r.steps == 6 && !r.finished, "run a");
  CHECK(r.total == 40, "evaluated on %d rows", r.total);
  tiny_config(&c, "b", 7);
  CHECK(run(&c, false, NULL, &r) == 0, "run b");
  weights(a, sizeof a, "a"), weights(b, sizeof b, "b");
  CHECK(same_file(a, b), "same seed, same parameters (bitwise)");
  tiny_config(&c, "c", 8);
  CHECK(run(&c, false, NULL, &r) == 0, "run c");
  weights(b, sizeof b, "c");
  CHECK(!same_file(a, b), "another seed, other parameters");

  /* 3 steps, then --resume to 6 */
  tiny_config(&c, "d", 7);
  c.max_steps = 3;
  CHECK(run(&c, false, NULL, &r) == 0 && r.steps == 3, "run d (3 steps)");
  snprintf(path, sizeof path, "%s/d/checkpoint.bin", g_tmp);
  CHECK(access(path, F_OK) == 0, "an unfinished run keeps its checkpoint");
  /* the folder may move between the two halves (as the CLI does: name from the path) */
  char moved[512];
  snprintf(path, sizeof path, "%s/d", g_tmp);
  snprintf(moved, sizeof moved, "%s/d_moved", g_tmp);
  CHECK(rename(path, moved) == 0, "rename");
  char err[1024];
  CHECK(train_config_from_run(moved, &c, err, sizeof err) == 0, "%s", err);
  snprintf(c.name, sizeof c.name, "d_moved");
  CHECK(train_config_set(&c, "max_steps=6", err, sizeof err) == 0, "%s", err);
  CHECK(run(&c, true, NULL, &r) == 0 && r.steps == 6, "resume d to 6 steps");
  weights(b, sizeof b, "d_moved");
  CHECK(same_file(a, b), "3 + resume 3 == 6 straight (bitwise)");
  snprintf(path, sizeof path, "%s/d_moved/metrics.jsonl", g_tmp);
  CHECK(count_lines(path, "\"type\":\"step\"") == 6, "6 step lines after the resume (got %d)",
        count_lines(path, "\"type\":\"step\""));
  snprintf(b, sizeof b, "%s/a/metrics.jsonl", g_tmp);
  CHECK(count_lines(path, "\"type\":\"eval\"") == count_lines(b, "\"type\":\"eval\""),
        "the resumed run has the straight run's evaluations");

  /* a stop request (Ctrl-C) after the first step, then resume */
  volatile sig_atomic_t stop = 1;
  tiny_config(&c, "e", 7);
  CHECK(run(&c, false, &stop, &r) == 130 && r.interrupted && r.steps == 1,
        "stop: 130 after one step (steps %lld)", (long long)r.steps);
  snprintf(path, sizeof path, "%s/e", g_tmp);
  CHECK(train_config_from_run(path, &c, err, sizeof err) == 0 && c.max_steps == 0, "%s", err);
  c.max_steps = 6;
  CHECK(run(&c, true, NULL, &r) == 0 && r.steps == 6, "resume e");
  weights(b, sizeof b, "e");
  CHECK(same_file(a, b), "interrupted + resumed == straight (bitwise)");

  /* the full schedule: finishes, removes its checkpoint, writes every file */
  tiny_config(&c, "f", 7);
  c.max_steps = 0, c.epochs = 1, c.select = SEL_ROW_TOPK;
  c.budget = (BudgetConfig){.kind = BUDGET_LIST, .n_list = 2, .list = {0.5, 0.75}};
  CHECK(run(&c, false, NULL, &r) == 0 && r.finished && r.steps == 10, "run f: %lld steps",
        (long long)r.steps);
  const char *files[] = {"config.json", "metrics.jsonl", "summary.json", "final/config.json",
                         "final/model.safetensors", "final/vocab.txt",
                         "final/crisp_attention.json"};
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    snprintf(path, sizeof path, "%s/f/%s", g_tmp, files[i]);
    CHECK(access(path, F_OK) == 0, "run f wrote %s", files[i]);
  }
  snprintf(path, sizeof path, "%s/f/checkpoint.bin", g_tmp);
  CHECK(access(path, F_OK) != 0, "a finished run has no checkpoint left");
  snprintf(path, sizeof path, "%s/f/summary.json", g_tmp);
  size_t n;
  char *sum = read_all(path, &n);
  CHECK(sum && strstr(sum, "\"count\":") && strstr(sum, "/40\""), "summary has the count x/40");
  free(sum);
  /* an existing run is not overwritten */
  tiny_config(&c, "f", 7);
  char e2[512];
  TrainOptions o = {.quiet = true};
  CHECK(train_run(&c, &o, &r, e2, sizeof e2) == 2 && strstr(e2, "--resume"), "%s", e2);
}

/* SRC's final/ model saved again to g_tmp/DST with layer 0's first query weight at
 * 3e38: finite, so it loads, but float overflows in the attention scores. */
static bool huge_query_model(const char *src, const char *dst) {
  char dir[600], path[700], vocab[700], err[1024];
  snprintf(dir, sizeof dir, "%s/%s/final", g_tmp, src);
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  snprintf(vocab, sizeof vocab, "%s/vocab.txt", dir);
  ModelConfig mc;
  if (hf_config_load(dir, &mc, err, sizeof err))
    return false;
  int n = hf_params(&mc, NULL, 0);
  HfParam *ps = calloc((size_t)n, sizeof *ps);
  float **w = calloc((size_t)n, sizeof *w);
  hf_params(&mc, ps, n);
  bool ok = true;
  for (int i = 0; i < n; i++)
    ok &= (w[i] = malloc(ps[i].numel * sizeof **w)) != NULL;
  ok = ok && hf_load_params(path, &mc, w, 0, NULL, err, sizeof err) == 0;
  for (int i = 0; ok && i < n; i++)
    if (strstr(ps[i].name, "layer.0.attention.q_lin.weight"))
      w[i][0] = 3e38f;
  snprintf(dir, sizeof dir, "%s/%s", g_tmp, dst);
  ok = ok && hf_save_model(dir, &mc, (const float *const *)w, vocab, err, sizeof err) == 0;
  for (int i = 0; i < n; i++)
    free(w[i]);
  free(w), free(ps);
  return ok;
}

/* A step that overflows float stops the run with an error naming the step, before
 * the optimizer applies it: neither a NaN budget (adaptive: the entropies) nor NaN
 * weights (the gradient norm) carried on, nor a 0 written for them in metrics.jsonl.
 * Needs run f's final/ (test_runs). */
void test_run_not_finite(void) {
  char model[600], err[2048];
  CHECK(huge_query_model("f", "huge_q"), "write the huge-weight model");
  snprintf(model, sizeof model, "%s/huge_q", g_tmp);
  TrainConfig c;
  TrainResult r;
  TrainOptions o = {.quiet = true};
  tiny_config(&c, "nf_adaptive", 7);
  snprintf(c.model, sizeof c.model, "%s", model);
  int rc = train_run(&c, &o, &r, err, sizeof err);
  CHECK(rc == 1 && strstr(err, "step 1: layer 0's attention entropy is not finite"),
        "adaptive: rc %d: %s", rc, err);
  /* it failed after config.json, before any checkpoint: nothing is left to block the
   * name, and the same command fails the same way again (not "already holds a run") */
  snprintf(err, sizeof err, "%s/nf_adaptive", g_tmp);
  CHECK(access(err, F_OK) != 0, "no run folder left behind");
  rc = train_run(&c, &o, &r, err, sizeof err);
  CHECK(rc == 1 && strstr(err, "attention entropy is not finite"), "again: rc %d: %s", rc, err);
  tiny_config(&c, "nf_uniform", 7);
  snprintf(c.model, sizeof c.model, "%s", model);
  c.budget.kind = BUDGET_UNIFORM;
  rc = train_run(&c, &o, &r, err, sizeof err);
  CHECK(rc == 1 && strstr(err, "step 1: the gradient norm is not finite") &&
            strstr(err, "not applied"),
        "uniform: rc %d: %s", rc, err);
}

/* ---- runs that fail: what they leave ------------------------------------------------ */

static bool exists(const char *fmt, const char *name) {
  char path[700];
  snprintf(path, sizeof path, fmt, g_tmp, name);
  return access(path, F_OK) == 0;
}

static void put_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (f) {
    fputs(text, f);
    fclose(f);
  }
}

/* A run that fails before its first checkpoint leaves nothing of what it made: not
 * RUNS/NAME (nor RUNS when it made that too), so the name is free again; from a
 * folder that existed only its own files go. */
static void test_failed_early(void) {
  TrainConfig c;
  TrainResult r;
  TrainOptions o = {.quiet = true};
  char err[2048];
  /* bad --data: the folder was made before the data was looked at */
  tiny_config(&c, "fail_data", 7);
  snprintf(c.data, sizeof c.data, "%s/nowhere", g_tmp);
  int rc = train_run(&c, &o, &r, err, sizeof err);
  CHECK(rc == 2 && strstr(err, "no train.tsv"), "bad data: rc %d: %s", rc, err);
  CHECK(!exists("%s/%s", "fail_data"), "bad data: the run folder is gone");
  /* ... and the runs folder with it, when this made it */
  tiny_config(&c, "fail_data", 7);
  snprintf(c.runs_dir, sizeof c.runs_dir, "%s/new_runs/deeper", g_tmp);
  snprintf(c.data, sizeof c.data, "%s/nowhere", g_tmp);
  rc = train_run(&c, &o, &r, err, sizeof err);
  CHECK(rc == 2 && !exists("%s/%s", "new_runs"), "bad data: the runs folder made is gone");
  /* a bad model config.json, found after the synthetic data was written into the run */
  char model[600];
  snprintf(model, sizeof model, "%s/bad_model", g_tmp);
  mkdir(model, 0755);
  snprintf(err, sizeof err, "%s/config.json", model);
  put_file(err, "{\"model_type\": \"bert\", \"hidden_size\": \"big\"}\n");
  snprintf(err, sizeof err, "%s/vocab.txt", model);
  put_file(err, "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n");
  tiny_config(&c, "fail_model", 7);
  snprintf(c.model, sizeof c.model, "%s", model);
  rc = train_run(&c, &o, &r, err, sizeof err);
  CHECK(rc == 2 && strstr(err, "config.json"), "bad model: rc %d: %s", rc, err);
  CHECK(!exists("%s/%s", "fail_model"), "bad model: the run folder is gone");
  /* a folder the user had stays, with what it held; only this run's files go (final/
   * is a file here, so writing the final model fails after a whole run without a
   * checkpoint) */
  snprintf(err, sizeof err, "%s/had", g_tmp);
  mkdir(err, 0755);
  CHECK(exists("%s/%s", "had"), "mkdir had");
  snprintf(err, sizeof err, "%s/had/keep.txt", g_tmp);
  put_file(err, "mine\n");
  snprintf(err, sizeof err, "%s/had/final", g_tmp);
  put_file(err, "in the way\n");
  tiny_config(&c, "had", 7);
  c.max_steps = 0, c.epochs = 1;
  rc = train_run(&c, &o, &r, err, sizeof err);
  CHECK(rc == 1 && strstr(err, "final"), "final/ unwritable: rc %d: %s", rc, err);
  CHECK(exists("%s/%s/keep.txt", "had") && exists("%s/%s/final", "had"),
        "the user's files stay");
  CHECK(!exists("%s/%s/config.json", "had") && !exists("%s/%s/metrics.jsonl", "had") &&
            !exists("%s/%s/data", "had"),
        "the run's own files are gone");
}

/* A run that fails after a checkpoint keeps it, says how to resume, and resumes. */
static void test_failed_late(void) {
  TrainConfig c;
  TrainResult r;
  TrainOptions o = {.quiet = true};
  char err[2048], path[600];
  snprintf(path, sizeof path, "%s/late", g_tmp);
  mkdir(path, 0755);
  snprintf(path, sizeof path, "%s/late/final", g_tmp);
  put_file(path, "in the way\n");
  tiny_config(&c, "late", 7);
  c.max_steps = 2, c.checkpoint_every = 1;
  int rc = train_run(&c, &o, &r, err, sizeof err);
  CHECK(rc == 1 && strstr(err, "checkpoint of step 2") &&
            strstr(err, "crisp train --resume ") && strstr(err, "/late"),
        "rc %d: %s", rc, err);
  CHECK(exists("%s/%s/checkpoint.bin", "late") && exists("%s/%s/config.json", "late"),
        "the checkpoint and config stay");
  unlink(path);
  snprintf(path, sizeof path, "%s/late", g_tmp);
  CHECK(train_config_from_run(path, &c, err, sizeof err) == 0, "%s", err);
  c.max_steps = 3;
  CHECK(run(&c, true, NULL, &r) == 0 && r.steps == 3, "the failed run resumes");
}

void test_run_failed(void) {
  test_failed_early();
  test_failed_late();
}
