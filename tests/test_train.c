/* test_train.c: the fine-tuning pipeline (model/train.h, model/optim.h).
 *
 *   - AdamW against a step computed by hand (decay and no decay), and the fused
 *     gradient scale (accumulation mean x clipping);
 *   - the linear schedule with and without warm-up;
 *   - budgets: re-centring (the mean equals the target, clipping holds), the first
 *     batch is uniform, the EMA, the list kind, error cases;
 *   - the config: unknown keys / wrong types name the file and key, --set, the
 *     resolved JSON reads back to the same hash;
 *   - checkpoints: a round trip, and a flipped byte / a truncated file / a foreign
 *     file / one of the older format is refused without touching the model;
 *   - whole runs on generated data with a tiny random model and one thread: the same
 *     seed gives bitwise-identical parameters, another seed does not; 3 steps +
 *     --resume 3 equals 6 straight; a stop request (what Ctrl-C sets) saves a
 *     checkpoint, returns 130, and resuming it ends bitwise where a straight run does.
 * With an argument (examples/configs), also checks the shipped run configurations.
 * Runs in a few seconds; writes only under a fresh temporary folder. */
#include "check.h"
#include "train.h"

#include "../runtime/fsutil.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_tmp[256];

/* ---- AdamW and the schedule ------------------------------------------------------ */

static void test_adamw(void) {
  /* p = 1, lr 0.1, betas 0.9/0.999, eps 1e-8, weight decay 0.01; grads 0.5 then -1.
   * Step 1 by hand: p = 1 - 0.1*0.01 = 0.999; m = 0.05, v = 0.00025; m^ = 0.5,
   * v^ = 0.25; p -= 0.1 * 0.5 / (0.5 + 1e-8)  ->  0.899000002.
   * Step 2: m = -0.055, v = 0.00124975, m^ = -0.055/0.19, v^ = 0.00124975/0.001999
   *   ->  0.9347113542 (p decayed by 0.999 first). */
  AdamW o;
  CHECK(adamw_init(&o, 2, &(AdamWConfig){0.9, 0.999, 1e-8, 0.01}) == 0, "adamw_init");
  float p[2] = {1, 1}, g[2] = {0.5f, 0.5f};
  adamw_begin(&o);
  adamw_update(&o, p, g, 0, 1, true, 0.1, 1.0f);
  adamw_update(&o, p + 1, g + 1, 1, 1, false, 0.1, 1.0f);
  CHECK(fabs(p[0] - 0.899000002) < 1e-6, "AdamW step 1 with decay: %.9f", p[0]);
  CHECK(fabs(p[1] - 0.900000002) < 1e-6, "AdamW step 1 without decay: %.9f", p[1]);
  g[0] = -2.0f;   /* with gscale 0.5: an effective gradient of -1 */
  adamw_begin(&o);
  adamw_update(&o, p, g, 0, 1, true, 0.1, 0.5f);
  CHECK(fabs(p[0] - 0.9347113542) < 2e-6, "AdamW step 2: %.9f", p[0]);
  CHECK(o.t == 2, "step count %lld", (long long)o.t);
  adamw_free(&o);

  float gg[37];
  double ss = 0;
  for (int i = 0; i < 37; i++)
    gg[i] = (float)(i - 18) / 8, ss += (double)gg[i] * gg[i];
  CHECK(fabs(grad_norm(gg, 37) - sqrt(ss)) < 1e-12, "grad_norm");
  CHECK(clip_coef(10, 1) < 0.1 && clip_coef(10, 1) > 0.0999, "clip_coef %g", clip_coef(10, 1));
  CHECK(clip_coef(0.5, 1) == 1 && clip_coef(10, 0) == 1, "clip_coef no clip");
}

static void test_schedule(void) {
  CHECK(lr_linear(0, 100, 0, 1) == 1, "lr at 0");
  CHECK(fabs(lr_linear(50, 100, 0, 1) - 0.5) < 1e-15, "lr at 50");
  CHECK(fabs(lr_linear(99, 100, 0, 2e-5) - 2e-7) < 1e-20, "lr at 99");
  CHECK(lr_linear(100, 100, 0, 1) == 0 && lr_linear(150, 100, 0, 1) == 0, "lr past the end");
  CHECK(lr_linear(0, 100, 10, 1) == 0, "warm-up starts at 0");
  CHECK(fabs(lr_linear(5, 100, 10, 1) - 0.5) < 1e-15, "warm-up midway");
  CHECK(lr_linear(10, 100, 10, 1) == 1, "warm-up peak");
  CHECK(fabs(lr_linear(55, 100, 10, 1) - 0.5) < 1e-15, "decay after warm-up");
}

/* ---- budgets ---------------------------------------------------------------------- */

static double mean_of(const double *x, int n) {
  double s = 0;
  for (int i = 0; i < n; i++)
    s += x[i];
  return s / n;
}

static void test_budget(void) {
  char err[512];
  /* re-centring on random inputs, with and without clipping */
  uint64_t s = 12345;
  for (int trial = 0; trial < 500; trial++) {
    int n = 1 + (int)(s % 12);
    double x[64], out[64];
    for (int i = 0; i < n; i++) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      x[i] = (double)(s >> 11) / 9007199254740992.0 * 1.6 - 0.3;   /* -0.3 .. 1.3 */
    }
    double lo = 0.3 + 0.1 * (trial % 3), hi = 0.9 + 0.02 * (trial % 4), target = 0.5 + 0.3 * (trial % 2);
    budget_recenter(x, n, target, lo, hi, out);
    double m = mean_of(out, n);
    bool in = true;
    for (int i = 0; i < n; i++)
      in &= out[i] >= lo && out[i] <= hi;
    CHECK(fabs(m - target) <= 1e-14, "trial %d: mean %.17g vs target %g", trial, m, target);
    CHECK(in, "trial %d: a layer outside [%g, %g]", trial, lo, hi);
    /* order is kept: a larger raw value never gets a smaller sparsity */
    for (int i = 0; i < n; i++)
      for (int j = 0; j < n; j++)
        if (x[i] > x[j] && out[i] < out[j] - 1e-15)
          CHECK(false, "trial %d: order broken", trial);
  }
  /* no clipping: a plain shift */
  double x[4] = {0.1, 0.2, 0.3, 0.4}, out[4];
  budget_recenter(x, 4, 0.8, 0, 0.99, out);
  CHECK(fabs(out[0] - 0.65) < 1e-12 && fabs(out[3] - 0.95) < 1e-12, "shift: %g %g", out[0], out[3]);
  /* clipping at the top moves the rest */
  double y[3] = {0.0, 0.0, 1.0};
  budget_recenter(y, 3, 0.8, 0.5, 0.9, out);
  CHECK(out[2] == 0.9 && fabs(out[0] - 0.75) < 1e-12 && fabs(mean_of(out, 3) - 0.8) < 1e-15,
        "clip: %g %g %g", out[0], out[1], out[2]);

  /* adaptive: uniform first, then centred on the target */
  BudgetConfig bc = {.kind = BUDGET_ADAPTIVE, .target = 0.8, .gain = 2.0, .s_min = 0.6,
                     .s_max = 0.95, .ema = 0.5};
  Budget b;
  CHECK(budget_init(&b, &bc, 6, err, sizeof err) == 0, "%s", err);
  bool uniform = true;
  for (int l = 0; l < 6; l++)
    uniform &= b.s[l] == 0.8;
  CHECK(uniform, "the first batch is uniform");
  double c1[6] = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6};
  budget_observe(&b, c1);
  CHECK(fabs(mean_of(b.s, 6) - 0.8) < 1e-14, "adaptive mean %.17g", mean_of(b.s, 6));
  CHECK(b.s[0] < b.s[5] && b.s[0] >= 0.6 && b.s[5] <= 0.95, "concentrated layers prune more");
  CHECK(b.c_ema[2] == 0.3, "first observation seeds the EMA");
  double c2[6] = {0.3, 0.2, 0.3, 0.4, 0.5, 0.6};
  budget_observe(&b, c2);
  CHECK(fabs(b.c_ema[0] - 0.2) < 1e-15 && b.updates == 2, "EMA: %g", b.c_ema[0]);
  CHECK(fabs(mean_of(b.s, 6) - 0.8) < 1e-14, "adaptive mean after 2");
  /* uniform ignores observations; gain 0 stays uniform */
  bc.kind = BUDGET_UNIFORM;
  CHECK(budget_init(&b, &bc, 6, err, sizeof err) == 0, "%s", err);
  budget_observe(&b, c1);
  CHECK(b.s[0] == 0.8 && b.s[5] == 0.8, "uniform stays");
  bc.kind = BUDGET_ADAPTIVE, bc.gain = 0;
  CHECK(budget_init(&b, &bc, 6, err, sizeof err) == 0, "%s", err);
  budget_observe(&b, c1);
  CHECK(fabs(b.s[0] - 0.8) < 1e-15 && fabs(b.s[5] - 0.8) < 1e-15, "gain 0 stays uniform");
  /* list */
  BudgetConfig lc = {.kind = BUDGET_LIST, .n_list = 3, .list = {0.5, 0.7, 0.9}};
  CHECK(budget_init(&b, &lc, 3, err, sizeof err) == 0 && b.s[1] == 0.7, "list");
  CHECK(budget_init(&b, &lc, 6, err, sizeof err) == -1 && strstr(err, "6 layers"),
        "list of the wrong length: %s", err);
  bc.s_min = 0.85;
  CHECK(budget_init(&b, &bc, 6, err, sizeof err) == -1, "target below s_min refused");
}

/* The adaptive rule fed known per-row entropies through a model's saved rows: two
 * layers, two heads, batch rows of length 4 and 1 (the latter, and padding, hold
 * garbage that must be skipped). Kept entropy 0.1 log 2 over 2 kept keys in both
 * layers (c = 0.9 each: no spread); dense entropy 0.5 log 4 and 0.25 log 4 (c = 0.5
 * and 0.75). Target 0.8, gain 1: dense gives s = 0.8 + (c - 0.625) = 0.675, 0.925. */
static void test_budget_entropy(void) {
  enum { L = 2, H = 2, Bt = 2, Nt = 4, ROWS = Bt * H * Nt };
  float ent[L][ROWS], dent[L][ROWS];
  int32_t kept[L][ROWS], lengths[Bt] = {4, 1};
  LayerActs acts[L];
  Model m;
  memset(&m, 0, sizeof m);
  memset(acts, 0, sizeof acts);
  m.cfg.layers = L, m.cfg.heads = H, m.B = Bt, m.N = Nt;
  m.a.lengths = lengths, m.a.layer = acts;
  for (int l = 0; l < L; l++) {
    acts[l].rows = (AttnRows){.entropy = ent[l], .dense_entropy = dent[l], .kept = kept[l]};
    for (int r = 0; r < ROWS; r++) {
      bool valid = r / (H * Nt) == 0;   /* batch row 0: every position valid */
      ent[l][r] = valid ? (float)(0.1 * log(2.0)) : 5.0f;
      dent[l][r] = valid ? (float)((l ? 0.25 : 0.5) * log(4.0)) : 5.0f;
      kept[l][r] = valid ? 2 : 1;
    }
  }
  BudgetConfig bc = {.kind = BUDGET_ADAPTIVE, .target = 0.8, .gain = 1.0, .s_min = 0.5,
                     .s_max = 0.95, .ema = 0.9};
  double c[L];
  bc.entropy = BUDGET_ENTROPY_DENSE;
  budget_concentration(&m, &bc, c);
  CHECK(fabs(c[0] - 0.5) < 1e-6 && fabs(c[1] - 0.75) < 1e-6, "dense concentration %g %g", c[0],
        c[1]);
  Budget b;
  char err[256];
  CHECK(budget_init(&b, &bc, L, err, sizeof err) == 0, "%s", err);
  budget_observe(&b, c);
  CHECK(fabs(b.s[0] - 0.675) < 1e-6 && fabs(b.s[1] - 0.925) < 1e-6, "dense s_l %g %g", b.s[0],
        b.s[1]);
  bc.norm = BUDGET_NORM_KEPT;   /* ignored for the dense entropy */
  budget_concentration(&m, &bc, c);
  CHECK(fabs(c[0] - 0.5) < 1e-6, "dense ignores budget.norm: %g", c[0]);
  bc.entropy = BUDGET_ENTROPY_KEPT;
  budget_concentration(&m, &bc, c);
  CHECK(fabs(c[0] - 0.9) < 1e-6 && fabs(c[1] - 0.9) < 1e-6, "kept concentration %g %g", c[0],
        c[1]);
  CHECK(budget_init(&b, &bc, L, err, sizeof err) == 0, "%s", err);
  budget_observe(&b, c);
  CHECK(fabs(b.s[0] - 0.8) < 1e-12 && fabs(b.s[1] - 0.8) < 1e-12, "kept s_l %g %g", b.s[0],
        b.s[1]);
  bc.norm = BUDGET_NORM_LENGTH;   /* 0.1 log 2 / log 4 = 0.05 */
  budget_concentration(&m, &bc, c);
  CHECK(fabs(c[0] - 0.95) < 1e-6, "kept / log(length): %g", c[0]);
}

/* ---- config ------------------------------------------------------------------------ */

static void write_text(const char *path, const char *text) {
  char err[256];
  CHECK(rt_write_atomic(path, text, strlen(text), err, sizeof err) == 0, "%s", err);
}

static void test_config(void) {
  char path[512], err[1024];
  TrainConfig c;
  snprintf(path, sizeof path, "%s/bad.json", g_tmp);
  write_text(path, "{\"name\": \"x\", \"budget\": {\"kind\": \"adaptive\", \"tagret\": 0.8}}");
  train_config_defaults(&c);
  CHECK(train_config_load(path, &c, err, sizeof err) == -1 && strstr(err, path) &&
            strstr(err, "unknown key \"budget.tagret\""),
        "unknown key: %s", err);
  write_text(path, "{\"lr\": \"fast\"}");
  train_config_defaults(&c);
  CHECK(train_config_load(path, &c, err, sizeof err) == -1 && strstr(err, "\"lr\"") &&
            strstr(err, "a number"),
        "wrong type: %s", err);
  write_text(path, "{\"batch_size\": 16.5}");
  CHECK(train_config_load(path, &c, err, sizeof err) == -1 && strstr(err, "integer"), "%s", err);
  write_text(path, "{\"select\": \"top\"}");
  CHECK(train_config_load(path, &c, err, sizeof err) == -1 && strstr(err, "row_topk"), "%s", err);
  write_text(path, "{\"budget\": {\"target\": 1.5}}");
  CHECK(train_config_load(path, &c, err, sizeof err) == -1 && strstr(err, "outside"), "%s", err);
  write_text(path, "{\"lr\": 1e-5,\n \"epochs\": }");
  CHECK(train_config_load(path, &c, err, sizeof err) == -1 && strstr(err, ":2:"), "bad JSON: %s",
        err);

  train_config_defaults(&c);
  CHECK(train_config_set(&c, "budget.entropy=dense", err, sizeof err) == 0 &&
            c.budget.entropy == BUDGET_ENTROPY_DENSE, "budget.entropy: %s", err);
  CHECK(train_config_set(&c, "budget.entropy=full", err, sizeof err) != 0 &&
            strstr(err, "budget.entropy") && strstr(err, "dense"), "bad budget.entropy: %s", err);
  c.budget.entropy = BUDGET_ENTROPY_KEPT;
  CHECK(train_config_set(&c, "budget.target=0.6", err, sizeof err) == 0 && c.budget.target == 0.6,
        "--set number: %s", err);
  CHECK(train_config_set(&c, "name=run-1", err, sizeof err) == 0 && !strcmp(c.name, "run-1"),
        "--set bare string: %s", err);
  CHECK(train_config_set(&c, "betas=[0.8,0.99]", err, sizeof err) == 0 && c.beta2 == 0.99,
        "--set array: %s", err);
  CHECK(train_config_set(&c, "nope=1", err, sizeof err) == -1 && strstr(err, "nope"), "%s", err);
  c.select = SEL_NONE;
  CHECK(train_config_check(&c, "x", err, sizeof err) == -1 && strstr(err, "dense"),
        "select none with a sparse budget: %s", err);

  /* the resolved form reads back to the same configuration */
  train_config_defaults(&c);
  c.budget.kind = BUDGET_LIST, c.budget.n_list = 2, c.budget.list[0] = 0.25, c.budget.list[1] = 0.7;
  c.lr = 3.3e-5, c.drop_attention = 0.05;
  snprintf(c.model, sizeof c.model, "/some/model");
  char *json = train_config_json(&c);
  snprintf(path, sizeof path, "%s/resolved", g_tmp);
  mkdir(path, 0777);
  snprintf(path, sizeof path, "%s/resolved/config.json", g_tmp);
  write_text(path, json);
  free(json);
  TrainConfig back;
  snprintf(path, sizeof path, "%s/resolved", g_tmp);
  CHECK(train_config_from_run(path, &back, err, sizeof err) == 0, "%s", err);
  CHECK(train_config_hash(&back) == train_config_hash(&c) && back.budget.list[1] == 0.7 &&
            back.drop_attention == 0.05 && back.drop_hidden == -1,
        "resolved config round trip");
  back.max_steps = 99;   /* resumable keys leave the hash alone */
  CHECK(train_config_hash(&back) == train_config_hash(&c), "max_steps is resumable");
  back.lr = 1e-4;
  CHECK(train_config_hash(&back) != train_config_hash(&c), "lr is not");
}

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

static char *read_all(const char *path, size_t *n) {
  char *buf = NULL, err[256];
  if (rt_read_file(path, &buf, n, err, sizeof err))
    return NULL;
  return buf;
}

static bool same_file(const char *a, const char *b) {
  size_t na, nb;
  char *x = read_all(a, &na), *y = read_all(b, &nb);
  bool same = x && y && na == nb && !memcmp(x, y, na);
  free(x);
  free(y);
  return same;
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
static void test_run_dense_entropy(void) {
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

static void test_runs(void) {
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

/* ---- checkpoint corruption ------------------------------------------------------------ */

static void test_checkpoint(void) {
  char err[1024], path[512];
  Backend *be = backend_open("cpu", &(BackendOptions){.threads = 1}, err, sizeof err);
  CHECK(be != NULL, "%s", err);
  if (!be)
    return;
  ModelConfig mc;
  hf_config_default(&mc, MODEL_BERT);
  mc.vocab_size = 30, mc.hidden = 16, mc.layers = 2, mc.heads = 2, mc.intermediate = 32;
  mc.max_position = 16;
  Model *m = model_create(be, &mc, &(ModelOptions){2, 8}, err, sizeof err);
  CHECK(m != NULL, "%s", err);
  if (!m) {
    backend_close(be);
    return;
  }
  model_init_params(m, 3);
  AdamW o;
  adamw_init(&o, m->n_param_floats, &(AdamWConfig){0.9, 0.999, 1e-8, 0});
  for (size_t i = 0; i < o.n; i++)
    o.m[i] = (float)i, o.v[i] = (float)(i % 7);
  o.t = 5;
  TrainState st = {.config_hash = 99, .opt_step = 5, .micro = 20, .epoch = 1, .best_step = -1};
  st.budget.layers = 2, st.budget.s[1] = 0.7;
  snprintf(path, sizeof path, "%s/ck.bin", g_tmp);
  CHECK(checkpoint_save(path, &st, m, &o, err, sizeof err) == 0, "%s", err);
  char tmp[600];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  CHECK(access(tmp, F_OK) != 0, "no temporary file left behind");
  float *orig = malloc(m->n_param_floats * sizeof *orig);
  memcpy(orig, m->params_mem, m->n_param_floats * sizeof *orig);
  memset(m->params_mem, 0, m->n_param_floats * sizeof(float));
  AdamW o2;
  adamw_init(&o2, m->n_param_floats, &o.cfg);
  TrainState back = {0};
  CHECK(checkpoint_load(path, &back, m, &o2, err, sizeof err) == 0, "%s", err);
  CHECK(!memcmp(orig, m->params_mem, m->n_param_floats * sizeof *orig) &&
            !memcmp(o.m, o2.m, o.n * 4) && !memcmp(o.v, o2.v, o.n * 4) && o2.t == 5,
        "checkpoint round trip");
  CHECK(back.config_hash == 99 && back.micro == 20 && back.budget.s[1] == 0.7, "state round trip");

  /* a flipped byte, a short file, a foreign file: refused, nothing applied */
  size_t n;
  char *bytes = read_all(path, &n);
  char bad[600];
  snprintf(bad, sizeof bad, "%s/ck_bad.bin", g_tmp);
  struct {
    const char *what, *msg;
    size_t len;
    long flip;
    int mask;
  } cases[] = {{"flipped byte", "checksum", n, (long)(n / 2), 0x10},
               {"truncated", "truncated", n - 100, -1, 0},
               {"header only", "truncated", 40, -1, 0},
               {"foreign", "bad magic", n, 0, 0x10},
               /* "CRISPCK2" -> "CRISPCK1": the parameter block of before the fused q/k/v */
               {"format 1", "format 1", n, 7, '2' ^ '1'}};
  for (size_t k = 0; k < sizeof cases / sizeof *cases && bytes; k++) {
    char *copy = malloc(n);
    memcpy(copy, bytes, n);
    if (cases[k].flip >= 0)
      copy[cases[k].flip] ^= (char)cases[k].mask;
    CHECK(rt_write_atomic(bad, copy, cases[k].len, err, sizeof err) == 0, "%s", err);
    free(copy);
    memset(m->params_mem, 0, m->n_param_floats * sizeof(float));
    int rc = checkpoint_load(bad, &back, m, &o2, err, sizeof err);
    bool untouched = true;
    for (size_t i = 0; i < m->n_param_floats; i++)
      untouched &= m->params_mem[i] == 0;
    CHECK(rc == -1 && strstr(err, cases[k].msg) && strstr(err, bad), "%s: %s", cases[k].what,
          err);
    CHECK(untouched, "%s: the model was modified", cases[k].what);
  }
  free(bytes);
  free(orig);
  adamw_free(&o);
  adamw_free(&o2);
  model_free(m);
  backend_close(be);
}

/* The parameter block's layout (model_params.h): each block's q, k, v weights and
 * biases adjacent for the fused projection, while Hugging Face folders see only
 * names: a saved folder is byte for byte what hf_save_model writes from tensors kept
 * one by one in hf_params order, and it loads back into the same block. */
static void test_param_layout(void) {
  char err[1024], a[600], b[600];
  Backend *be = backend_open("cpu", &(BackendOptions){.threads = 1}, err, sizeof err);
  CHECK(be != NULL, "%s", err);
  for (int bert = 0; be && bert < 2; bert++) {
    ModelConfig mc;
    hf_config_default(&mc, bert ? MODEL_BERT : MODEL_DISTILBERT);
    mc.vocab_size = 30, mc.hidden = 16, mc.layers = 2, mc.heads = 2, mc.intermediate = 32;
    mc.max_position = 16;
    Model *m = model_create(be, &mc, &(ModelOptions){2, 8}, err, sizeof err);
    Model *m2 = model_create(be, &mc, &(ModelOptions){2, 8}, err, sizeof err);
    CHECK(m && m2, "%s", err);
    if (!m || !m2) {
      model_free(m), model_free(m2);
      break;
    }
    model_init_params(m, 11);
    size_t C = (size_t)mc.hidden;
    for (int l = 0; l < mc.layers; l++) {
      const LayerParams *p = &m->w.layer[l], *g = &m->g.layer[l];
      CHECK(p->kw == p->qw + C * C && p->vw == p->kw + C * C && p->qb == p->vw + C * C &&
                p->kb == p->qb + C && p->vb == p->kb + C && g->kw == g->qw + C * C &&
                g->vb == g->kb + C,
            "%s block %d: q, k, v not adjacent", bert ? "bert" : "distilbert", l);
    }
    float **plain = calloc((size_t)m->n_params, sizeof *plain);
    for (int i = 0; plain && i < m->n_params; i++) {
      plain[i] = malloc(m->info[i].numel * sizeof(float));
      memcpy(plain[i], m->param[i], m->info[i].numel * sizeof(float));
    }
    snprintf(a, sizeof a, "%s/layout_model_%d", g_tmp, bert);
    snprintf(b, sizeof b, "%s/layout_plain_%d", g_tmp, bert);
    CHECK(model_save(m, a, NULL, err, sizeof err) == 0, "%s", err);
    CHECK(hf_save_model(b, &mc, (const float *const *)plain, NULL, err, sizeof err) == 0, "%s",
          err);
    snprintf(a + strlen(a), sizeof a - strlen(a), "/model.safetensors");
    snprintf(b + strlen(b), sizeof b - strlen(b), "/model.safetensors");
    CHECK(same_file(a, b), "%s: the saved folder differs from the tensors in hf_params order",
          bert ? "bert" : "distilbert");
    CHECK(model_load(m2, a, 1, NULL, err, sizeof err) == 0, "%s", err);
    CHECK(!memcmp(m->params_mem, m2->params_mem, m->n_param_floats * sizeof(float)),
          "%s: a saved folder does not load back into the same block", bert ? "bert" : "distilbert");
    for (int i = 0; plain && i < m->n_params; i++)
      free(plain[i]);
    free(plain);
    model_free(m), model_free(m2);
  }
  if (be)
    backend_close(be);
}

/* Every example config (examples/configs) loads, passes the checks and is named after its file. */
static void test_examples(const char *dir) {
  const char *names[] = {"baseline", "uniform_sparse", "light_sparse", "aggressive_sparse",
                         "uniform_sparse_rowtopk", "light_sparse_rowtopk",
                         "aggressive_sparse_rowtopk", "per_layer_list"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    char path[1024], err[1024];
    snprintf(path, sizeof path, "%s/%s.json", dir, names[i]);
    TrainConfig c;
    train_config_defaults(&c);
    int rc = train_config_load(path, &c, err, sizeof err);
    CHECK(rc == 0, "%s", err);
    if (rc)
      continue;
    CHECK(train_config_check(&c, path, err, sizeof err) == 0, "%s", err);
    CHECK(!strcmp(c.name, names[i]), "%s: name %s", path, c.name);
    bool rowtopk = strstr(names[i], "rowtopk") != NULL;
    if (!strcmp(names[i], "baseline"))
      CHECK(c.select == SEL_NONE, "baseline is dense");
    else
      CHECK(c.select == (rowtopk ? SEL_ROW_TOPK : SEL_HEAD_QUANTILE), "%s: select", names[i]);
    if (strstr(names[i], "light"))
      CHECK(c.budget.kind == BUDGET_ADAPTIVE && c.budget.target == 0.6, "%s: budget", names[i]);
    if (strstr(names[i], "aggressive"))
      CHECK(c.budget.kind == BUDGET_ADAPTIVE && c.budget.target == 0.8, "%s: budget", names[i]);
    if (strstr(names[i], "uniform"))
      CHECK(c.budget.kind == BUDGET_UNIFORM && c.budget.target == 0.8, "%s: budget", names[i]);
    /* the paper's hyper-parameters */
    CHECK(c.lr == 2e-5 && c.batch_size == 16 && c.grad_accum == 4 && c.epochs == 3 &&
              c.max_len == 512 && c.beta1 == 0.9 && c.beta2 == 0.999 && c.eps == 1e-8,
          "%s: the paper's hyper-parameters", names[i]);
  }
}

static void rm_rf(const char *dir) {
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", dir);
}

int main(int argc, char **argv) {
  snprintf(g_tmp, sizeof g_tmp, "/tmp/crisp_test_train_XXXXXX");
  if (!mkdtemp(g_tmp)) {
    perror("mkdtemp");
    return 1;
  }
  test_adamw();
  test_schedule();
  if (argc > 1)
    test_examples(argv[1]);
  test_budget();
  test_budget_entropy();
  test_config();
  test_checkpoint();
  test_param_layout();
  test_runs();
  test_run_dense_entropy();
  if (!check_failed)
    rm_rf(g_tmp);
  else
    fprintf(stderr, "kept %s for inspection\n", g_tmp);
  return check_summary();
}
