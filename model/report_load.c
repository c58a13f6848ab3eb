/* report_load.c: one run folder of `crisp train` into a ReportRun (see report.h; the
 * fields are those model/metrics.c writes, docs/training.md "The run folder"). */
#include "report.h"

#include "hf.h"
#include "../runtime/json_whole.h"
#include "json_kind.h"

#include "../runtime/fsutil.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

bool report_is_run_dir(const char *dir) {
  char p[4096];
  struct stat st;
  snprintf(p, sizeof p, "%s/config.json", dir);
  if (!stat(p, &st))
    return true;
  snprintf(p, sizeof p, "%s/metrics.jsonl", dir);
  return !stat(p, &st);
}

/* True when [p, end) holds only blanks. */
static bool blank(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
    p++;
  return p >= end;
}

/* Parses a whole JSON file; a syntax error names FILE:LINE:COL. */
static cJSON *parse_file(const char *path, char *err, size_t cap) {
  char *text;
  size_t len;
  if (rt_read_file(path, &text, &len, err, cap))
    return NULL;
  cJSON *j = json_whole_file(path, text, len, err, cap);   /* nothing after the object */
  if (j && !cJSON_IsObject(j)) {
    snprintf(err, cap, "%s: expected a JSON object", path);
    cJSON_Delete(j);
    j = NULL;
  }
  free(text);
  return j;
}

/* Looks up a dotted key ("budget.target"). */
static cJSON *get(const cJSON *o, const char *key) {
  char part[64];
  const char *dot;
  while ((dot = strchr(key, '.'))) {
    snprintf(part, sizeof part, "%.*s", (int)(dot - key), key);
    o = cJSON_GetObjectItemCaseSensitive(o, part);
    key = dot + 1;
  }
  return cJSON_GetObjectItemCaseSensitive(o, key);
}

static int need_num(const cJSON *o, const char *key, const char *where, double *out, char *err,
                    size_t cap) {
  const cJSON *v = get(o, key);
  if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) {
    snprintf(err, cap, "%s: key \"%s\": %s", where, key, v ? "expected a number" : "missing");
    return -1;
  }
  *out = v->valuedouble;
  return 0;
}

/* An integer in [lo, hi] (so the casts to int / int64_t that follow are defined). */
static int need_int(const cJSON *o, const char *key, const char *where, double lo, double hi,
                    double *out, char *err, size_t cap) {
  if (need_num(o, key, where, out, err, cap))
    return -1;
  if (*out != floor(*out) || *out < lo || *out > hi) {
    snprintf(err, cap, "%s: key \"%s\": expected an integer in [%.0f, %.0f]", where, key, lo, hi);
    return -1;
  }
  return 0;
}

enum { I32 = 2147483647 };
#define I53 9007199254740992.0

static int need_str(const cJSON *o, const char *key, const char *where, char *out, size_t n,
                    char *err, size_t cap) {
  const cJSON *v = get(o, key);
  if (!cJSON_IsString(v)) {
    snprintf(err, cap, "%s: key \"%s\": %s", where, key, v ? "expected a string" : "missing");
    return -1;
  }
  snprintf(out, n, "%s", v->valuestring);
  return 0;
}

/* "achieved_sparsity" (numbers) and "entropy" (per layer, per head) of an evaluation. */
static int read_eval_arrays(const cJSON *o, const char *where, ReportRun *r, char *err,
                            size_t cap) {
  const cJSON *a = get(o, "achieved_sparsity"), *e = get(o, "entropy");
  int L = cJSON_GetArraySize(a);
  if (!cJSON_IsArray(a) || L < 1 || L > REPORT_MAX_LAYERS) {
    snprintf(err, cap, "%s: key \"achieved_sparsity\": expected 1..%d numbers", where,
             REPORT_MAX_LAYERS);
    return -1;
  }
  if (!cJSON_IsArray(e) || cJSON_GetArraySize(e) != L) {
    snprintf(err, cap, "%s: key \"entropy\": expected %d lists (one per layer)", where, L);
    return -1;
  }
  int H = cJSON_GetArraySize(cJSON_GetArrayItem(e, 0));
  double *ent = malloc(sizeof(double) * (size_t)(L * (H > 0 ? H : 1)));
  if (!ent) {
    snprintf(err, cap, "%s: out of memory", where);
    return -1;
  }
  double mean = 0;
  for (int l = 0; l < L; l++) {
    const cJSON *x = cJSON_GetArrayItem(a, l), *row = cJSON_GetArrayItem(e, l);
    bool ok = cJSON_IsNumber(x) && isfinite(x->valuedouble) && cJSON_IsArray(row) &&
              cJSON_GetArraySize(row) == H && H > 0;
    for (int h = 0; ok && h < H; h++) {
      const cJSON *v = cJSON_GetArrayItem(row, h);
      ok = cJSON_IsNumber(v) && isfinite(v->valuedouble);
      if (ok)
        ent[l * H + h] = v->valuedouble;
    }
    if (!ok) {
      snprintf(err, cap, "%s: layer %d of \"achieved_sparsity\"/\"entropy\": expected a number "
               "and %d head entropies", where, l, H);
      free(ent);
      return -1;
    }
    r->achieved[l] = x->valuedouble;
    mean += x->valuedouble / L;
  }
  free(r->entropy);
  r->entropy = ent, r->layers = L, r->heads = H, r->mean_achieved = mean;
  return 0;
}

/* The final-evaluation fields shared by eval lines and summary.json. */
static int read_result(const cJSON *o, const char *where, ReportRun *r, char *err, size_t cap) {
  double correct, total;
  if (need_num(o, "accuracy", where, &r->accuracy, err, cap) ||
      need_num(o, "val_loss", where, &r->val_loss, err, cap) ||
      need_int(o, "correct", where, 0, I32, &correct, err, cap) ||
      need_int(o, "total", where, 0, I32, &total, err, cap) ||
      read_eval_arrays(o, where, r, err, cap))
    return -1;
  r->correct = (int)correct, r->total = (int)total;
  r->evaluated = true;
  return 0;
}

static int push_step(ReportRun *r, int64_t step, double loss) {
  if (!(r->n_steps & (r->n_steps - 1))) {   /* 0 or a power of two: grow */
    size_t n = r->n_steps ? 2 * (size_t)r->n_steps : 1;
    int64_t *a = realloc(r->step_at, n * sizeof *a);
    if (a)
      r->step_at = a;
    double *b = realloc(r->step_loss, n * sizeof *b);
    if (b)
      r->step_loss = b;
    if (!a || !b)
      return -1;
  }
  r->step_at[r->n_steps] = step, r->step_loss[r->n_steps++] = loss;
  return 0;
}

static int push_eval(ReportRun *r, ReportEval e) {
  if (r->n_evals && r->evals[r->n_evals - 1].step == e.step) {
    r->evals[r->n_evals - 1] = e;   /* a repeated step (e.g. "stop" after "step") */
    return 0;
  }
  ReportEval *a = realloc(r->evals, (size_t)(r->n_evals + 1) * sizeof *a);
  if (!a)
    return -1;
  r->evals = a;
  r->evals[r->n_evals++] = e;
  return 0;
}

/* Token counts for the mean sentence length: each step line has tokens_per_s = tokens
 * / step time and elapsed_s = training time so far, so consecutive lines give the
 * tokens of a step. */
typedef struct TokenCount {
  double tokens, prev_elapsed;
  int64_t prev_step, steps;
} TokenCount;

static int read_line(const cJSON *o, const char *where, ReportRun *r, TokenCount *tc, char *err,
                     size_t cap) {
  char type[16];
  double step;
  if (need_str(o, "type", where, type, sizeof type, err, cap) ||
      need_int(o, "step", where, 0, I53, &step, err, cap))
    return -1;
  if (!strcmp(type, "step")) {
    double loss, total, tps = NAN, el = NAN;
    if (need_num(o, "loss", where, &loss, err, cap) ||
        need_int(o, "total_steps", where, 0, I53, &total, err, cap))
      return -1;
    if (cJSON_IsNumber(get(o, "tokens_per_s")) && cJSON_IsNumber(get(o, "elapsed_s")))
      tps = get(o, "tokens_per_s")->valuedouble, el = get(o, "elapsed_s")->valuedouble;
    if ((int64_t)step == tc->prev_step + 1 && isfinite(tps) && isfinite(el))
      tc->tokens += tps * (el - tc->prev_elapsed), tc->steps++;
    tc->prev_step = (int64_t)step, tc->prev_elapsed = isfinite(el) ? el : tc->prev_elapsed;
    r->steps = (int64_t)step, r->total_steps = (int64_t)total;
    if (push_step(r, (int64_t)step, loss))
      goto oom;
    return 0;
  }
  if (!strcmp(type, "eval")) {
    if (read_result(o, where, r, err, cap))
      return -1;
    r->eval_step = (int64_t)step;
    if (push_eval(r, (ReportEval){(int64_t)step, r->val_loss, r->accuracy}))
      goto oom;
    return 0;
  }
  snprintf(err, cap, "%s: unknown \"type\" \"%s\" (expected \"step\" or \"eval\")", where, type);
  return -1;
oom:
  snprintf(err, cap, "%s: out of memory", where);
  return -1;
}

/* Every line of metrics.jsonl; a malformed line is an error FILE:LINE, except an
 * unterminated last line, which a run still writing may leave (a warning). */
static int load_metrics(const char *path, ReportRun *r, void (*warn)(const char *), char *err,
                        size_t cap) {
  char *text, where[4200];
  size_t len;
  if (rt_read_file(path, &text, &len, err, cap))
    return -1;
  TokenCount tc = {0};
  int rc = 0, line = 0;
  for (char *p = text; rc == 0 && p < text + len;) {
    char *nl = memchr(p, '\n', (size_t)(text + len - p));
    char *end = nl ? nl : text + len;
    line++;
    snprintf(where, sizeof where, "%s:%d", path, line);
    const char *q = p;
    while (q < end && (*q == ' ' || *q == '\t' || *q == '\r'))
      q++;
    if (q < end) {
      const char *after = NULL;
      cJSON *o = cJSON_ParseWithLengthOpts(p, (size_t)(end - p), &after, false);
      bool extra = o && !blank(after, end);   /* text after the object: not one object */
      if (extra) {
        cJSON_Delete(o);
        o = NULL;
      }
      if (!o && !nl && !extra) {
        char msg[4400];
        snprintf(msg, sizeof msg, "%s: incomplete last line ignored (a run still writing?)",
                 where);
        if (warn)
          warn(msg);
      } else if (!cJSON_IsObject(o)) {
        snprintf(err, cap, "%s: not a valid JSON object", where);
        rc = -1;
      } else {
        rc = read_line(o, where, r, &tc, err, cap);
      }
      cJSON_Delete(o);
    }
    p = end + 1;
  }
  free(text);
  if (!rc && tc.steps > 0 && r->batch_size > 0)
    r->mean_len = tc.tokens / ((double)tc.steps * r->batch_size * r->grad_accum);
  return rc;
}

/* Keys crisp train's resolved config gained after runs were made without them, with
 * the value those runs used (train_config_defaults): a run missing one is filled in, so
 * that it groups with the same configuration written by a newer crisp. */
static const struct {
  const char *group, *key, *value;
} ADDED_KEYS[] = {{"budget", "entropy", "kept"}};

static void fill_added_keys(cJSON *c) {
  for (size_t i = 0; i < sizeof ADDED_KEYS / sizeof *ADDED_KEYS; i++) {
    cJSON *g = cJSON_GetObjectItemCaseSensitive(c, ADDED_KEYS[i].group);
    if (cJSON_IsObject(g) && !cJSON_GetObjectItemCaseSensitive(g, ADDED_KEYS[i].key))
      cJSON_AddStringToObject(g, ADDED_KEYS[i].key, ADDED_KEYS[i].value);
  }
}

/* The resolved config without what does not change the experiment, printed: runs with
 * the same text are seeds of one configuration. */
static char *group_key(const cJSON *cfg) {
  static const char *const drop[] = {"name", "description", "seed", "runs_dir", "threads",
                                     "eval_every", "checkpoint_every", "log_every",
                                     "eval_batch", "max_steps", "device", "impl"};
  cJSON *c = cJSON_Duplicate(cfg, true);
  if (c)
    fill_added_keys(c);
  for (size_t i = 0; c && i < sizeof drop / sizeof *drop; i++)
    cJSON_DeleteItemFromObjectCaseSensitive(c, drop[i]);
  char *s = c ? cJSON_PrintUnformatted(c) : NULL;
  cJSON_Delete(c);
  return s;
}

/* hidden and FFN size: the saved model (final/), else the base model, else the
 * config's random_model. Unknown (0) if none can be read. */
static void model_shape(const char *dir, const cJSON *cfg, ReportRun *r) {
  char p[4096], e[512];
  ModelConfig mc;
  const cJSON *model = get(cfg, "model");
  if (!cJSON_IsString(model) || !model->valuestring[0]) {
    const cJSON *h = get(cfg, "random_model.hidden"), *f = get(cfg, "random_model.intermediate");
    if (cJSON_IsNumber(h) && cJSON_IsNumber(f))
      r->hidden = h->valueint, r->intermediate = f->valueint;
    return;
  }
  snprintf(p, sizeof p, "%s/final", dir);
  if (hf_config_load(p, &mc, e, sizeof e) && hf_config_load(model->valuestring, &mc, e, sizeof e))
    return;
  r->hidden = mc.hidden, r->intermediate = mc.intermediate;
}

static int load_config(const char *dir, ReportRun *r, char *err, size_t cap) {
  char path[4096];
  snprintf(path, sizeof path, "%s/config.json", dir);
  cJSON *c = parse_file(path, err, cap);
  if (!c)
    return -1;
  double seed, epochs, bs, ga;
  int rc = -1;
  if (need_str(c, "name", path, r->name, sizeof r->name, err, cap) ||
      need_str(c, "select", path, r->select, sizeof r->select, err, cap) ||
      need_str(c, "budget.kind", path, r->budget, sizeof r->budget, err, cap) ||
      need_num(c, "budget.target", path, &r->target, err, cap) ||
      need_int(c, "seed", path, 0, I53, &seed, err, cap) ||
      need_int(c, "epochs", path, 1, I32, &epochs, err, cap) ||
      need_int(c, "batch_size", path, 1, I32, &bs, err, cap) ||
      need_int(c, "grad_accum", path, 1, I32, &ga, err, cap))
    goto out;
  if (!strcmp(r->select, "none"))
    r->target = 0;
  r->seed = (int64_t)seed, r->epochs = (int)epochs;
  r->batch_size = (int)bs, r->grad_accum = (int)ga;
  model_shape(dir, c, r);
  r->group_key = group_key(c);
  if (!r->group_key) {
    snprintf(err, cap, "%s: out of memory", path);
    goto out;
  }
  rc = 0;
out:
  cJSON_Delete(c);
  return rc;
}

static int load_summary(const char *path, ReportRun *r, void (*warn)(const char *), char *err,
                        size_t cap) {
  cJSON *s = parse_file(path, err, cap);
  if (!s)
    return -1;
  double steps, total, tokens;
  int rc = -1;
  const cJSON *fin = get(s, "finished");
  if (!cJSON_IsBool(fin)) {
    snprintf(err, cap, "%s: key \"finished\": %s", path,
             fin ? "expected true or false" : "missing");
    goto out;
  }
  if (need_int(s, "steps", path, 0, I53, &steps, err, cap) ||
      need_int(s, "total_steps", path, 0, I53, &total, err, cap))
    goto out;
  /* --resume leaves the summary of the stop it continues from until it writes a new
   * one: metrics.jsonl then has later evaluations, which are the run's state */
  if (r->evaluated && (int64_t)steps < r->eval_step) {
    char msg[4400];
    snprintf(msg, sizeof msg, "%s: older than metrics.jsonl (a resumed run in progress?); "
             "the last evaluation there is used", path);
    if (warn)
      warn(msg);
    rc = 0;
    goto out;
  }
  if (read_result(s, path, r, err, cap))
    goto out;
  r->has_summary = true, r->finished = cJSON_IsTrue(fin);
  r->steps = r->eval_step = (int64_t)steps, r->total_steps = (int64_t)total;
  if (cJSON_IsNumber(get(s, "train_tokens")) && steps > 0 && r->batch_size > 0)
    tokens = get(s, "train_tokens")->valuedouble,
    r->mean_len = tokens / (steps * r->batch_size * r->grad_accum);
  rc = 0;
out:
  cJSON_Delete(s);
  return rc;
}

int report_load_run(const char *dir, ReportRun *r, void (*warn)(const char *msg), char *err,
                    size_t cap) {
  *r = (ReportRun){0};
  r->dir = strdup(dir);
  if (!r->dir) {
    snprintf(err, cap, "%s: out of memory", dir);
    return -1;
  }
  char path[4096];
  struct stat st;
  if (load_config(dir, r, err, cap))
    return -1;
  snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
  if (!stat(path, &st) && load_metrics(path, r, warn, err, cap))
    return -1;
  /* the summary is written last by a finished (or max_steps-stopped) run; its final
   * evaluation is the same as the last eval line, and it has the exact token count */
  snprintf(path, sizeof path, "%s/summary.json", dir);
  if (!stat(path, &st) && load_summary(path, r, warn, err, cap))
    return -1;
  return 0;
}

void report_run_free(ReportRun *r) {
  free(r->dir);
  free(r->group_key);
  free(r->entropy);
  free(r->step_at);
  free(r->step_loss);
  free(r->evals);
  *r = (ReportRun){0};
}
