/* metrics.c: metrics.jsonl lines (one per logged step and per evaluation) and
 * summary.json (see docs/training.md for every field). */
#include "train.h"

#include "../runtime/fsutil.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static cJSON *num_array(const double *x, int n) {
  cJSON *a = cJSON_CreateArray();
  for (int i = 0; a && i < n; i++)
    cJSON_AddItemToArray(a, cJSON_CreateNumber(isfinite(x[i]) ? x[i] : 0));
  return a;
}

static double finite_or_zero(double x) { return isfinite(x) ? x : 0; }

/* Prints o as one line into f and frees it. */
static int write_line(FILE *f, cJSON *o, char *err, size_t cap) {
  char *s = o ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  if (!s) {
    snprintf(err, cap, "metrics: out of memory");
    return -1;
  }
  int bad = fputs(s, f) < 0 || fputc('\n', f) == EOF || fflush(f);
  free(s);
  if (bad) {
    snprintf(err, cap, "metrics.jsonl: write failed: %s", strerror(errno));
    return -1;
  }
  return 0;
}

int metrics_step(FILE *f, const StepRecord *r, char *err, size_t cap) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "type", "step");
  cJSON_AddNumberToObject(o, "step", (double)r->step);
  cJSON_AddNumberToObject(o, "total_steps", (double)r->total);
  cJSON_AddNumberToObject(o, "epoch", (double)r->epoch);
  cJSON_AddNumberToObject(o, "loss", finite_or_zero(r->loss));
  cJSON_AddNumberToObject(o, "lr", r->lr);
  cJSON_AddNumberToObject(o, "grad_norm", finite_or_zero(r->grad_norm));
  cJSON_AddNumberToObject(o, "tokens_per_s", finite_or_zero(r->tokens_per_s));
  cJSON_AddNumberToObject(o, "elapsed_s", r->elapsed);
  cJSON_AddItemToObject(o, "sparsity", num_array(r->sparsity, r->layers));
  if (r->concentration)
    cJSON_AddItemToObject(o, "concentration", num_array(r->concentration, r->layers));
  return write_line(f, o, err, cap);
}

static cJSON *eval_object(const EvalResult *e, const double *s_used) {
  cJSON *o = cJSON_CreateObject();
  char count[32];
  snprintf(count, sizeof count, "%d/%d", e->correct, e->total);
  cJSON_AddNumberToObject(o, "val_loss", finite_or_zero(e->loss));
  cJSON_AddNumberToObject(o, "accuracy", e->accuracy);
  cJSON_AddNumberToObject(o, "correct", e->correct);
  cJSON_AddNumberToObject(o, "total", e->total);
  cJSON_AddStringToObject(o, "count", count);
  double ach[MODEL_MAX_LAYERS], mean = 0;
  for (int l = 0; l < e->layers; l++)
    ach[l] = 1 - e->kept[l], mean += ach[l] / e->layers;
  if (s_used)
    cJSON_AddItemToObject(o, "sparsity", num_array(s_used, e->layers));
  cJSON_AddItemToObject(o, "achieved_sparsity", num_array(ach, e->layers));
  cJSON_AddNumberToObject(o, "mean_achieved_sparsity", mean);
  cJSON *ent = cJSON_CreateArray(), *entn = cJSON_CreateArray();
  for (int l = 0; l < e->layers; l++) {
    cJSON_AddItemToArray(ent, num_array(e->entropy + (size_t)l * e->heads, e->heads));
    cJSON_AddItemToArray(entn, num_array(e->entropy_norm + (size_t)l * e->heads, e->heads));
  }
  cJSON_AddItemToObject(o, "entropy", ent);
  cJSON_AddItemToObject(o, "entropy_norm", entn);
  cJSON_AddNumberToObject(o, "eval_seconds", e->seconds);
  return o;
}

int metrics_eval(FILE *f, int64_t step, int64_t epoch, const char *when, const EvalResult *e,
                 const double *s_used, char *err, size_t cap) {
  cJSON *o = eval_object(e, s_used);
  cJSON *line = cJSON_CreateObject();
  cJSON_AddStringToObject(line, "type", "eval");
  cJSON_AddStringToObject(line, "when", when);
  cJSON_AddNumberToObject(line, "step", (double)step);
  cJSON_AddNumberToObject(line, "epoch", (double)epoch);
  for (cJSON *it = o->child; it;) {
    cJSON *next = it->next;
    cJSON_AddItemToObject(line, it->string, cJSON_DetachItemViaPointer(o, it));
    it = next;
  }
  cJSON_Delete(o);
  return write_line(f, line, err, cap);
}

int metrics_summary(const char *path, const TrainConfig *c, const TrainState *st,
                    const EvalResult *e, int64_t total_steps, bool finished,
                    const double *s_final, int layers, char *err, size_t cap) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "name", c->name);
  cJSON_AddStringToObject(o, "select", select_name(c->select));
  cJSON_AddStringToObject(o, "budget", budget_kind_name(c->budget.kind));
  cJSON_AddNumberToObject(o, "target_sparsity", c->select == SEL_NONE ? 0 : c->budget.target);
  cJSON_AddNumberToObject(o, "seed", (double)c->seed);
  cJSON_AddStringToObject(o, "model", c->model[0] ? c->model : "(random)");
  cJSON_AddStringToObject(o, "data", c->data);
  cJSON_AddBoolToObject(o, "finished", finished);
  cJSON_AddNumberToObject(o, "steps", (double)st->opt_step);
  cJSON_AddNumberToObject(o, "total_steps", (double)total_steps);
  cJSON_AddNumberToObject(o, "epochs_done", (double)st->epoch);
  cJSON_AddNumberToObject(o, "train_seconds", st->train_seconds);
  cJSON_AddNumberToObject(o, "train_tokens", (double)st->tokens);
  cJSON_AddNumberToObject(o, "tokens_per_s",
                          st->train_seconds > 0 ? st->tokens / st->train_seconds : 0);
  cJSON_AddNumberToObject(o, "best_accuracy", st->best_accuracy);
  cJSON_AddNumberToObject(o, "best_step", (double)st->best_step);
  cJSON_AddItemToObject(o, "final_sparsity", num_array(s_final, layers));
  cJSON *ev = eval_object(e, NULL);
  for (cJSON *it = ev->child; it;) {
    cJSON *next = it->next;
    cJSON_AddItemToObject(o, it->string, cJSON_DetachItemViaPointer(ev, it));
    it = next;
  }
  cJSON_Delete(ev);
  cJSON_AddStringToObject(o, "final_model", "final");
  char *s = cJSON_Print(o);
  cJSON_Delete(o);
  if (!s) {
    snprintf(err, cap, "%s: out of memory", path);
    return -1;
  }
  size_t n = strlen(s);
  char *t = malloc(n + 2);
  if (!t) {
    free(s);
    snprintf(err, cap, "%s: out of memory", path);
    return -1;
  }
  memcpy(t, s, n);
  t[n] = '\n', t[n + 1] = 0;
  free(s);
  int rc = rt_write_atomic(path, t, n + 1, err, cap);
  free(t);
  return rc;
}
