/* See torch_child.h. */
#include "torch_child.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* The shell sees the paths single-quoted; one containing a quote is refused rather
 * than escaped. */
static int build_command(const TorchCmd *c, int n, char *cmd, size_t cap, char *err,
                         size_t ecap) {
  if (strchr(c->python, '\'') || strchr(c->script, '\'')) {
    snprintf(err, ecap, "python or script path contains a single quote: %s %s", c->python,
             c->script);
    return -1;
  }
  size_t len = (size_t)snprintf(cmd, cap,
                                "'%s' '%s' --threads %d --reps %d --batch %d --heads %d "
                                "--dim %d --n %d --s",
                                c->python, c->script, c->threads, c->reps, c->B, c->H, c->D, n);
  for (int i = 0; i < c->ns && len < cap; i++)
    len += (size_t)snprintf(cmd + len, cap - len, " %.17g", c->s[i]);
  len += len < cap ? (size_t)snprintf(cmd + len, cap - len, " --select") : 0;
  for (int i = 0; i < c->nselects && len < cap; i++)
    len += (size_t)snprintf(cmd + len, cap - len, " %s", c->selects[i]);
  if (len >= cap) {
    snprintf(err, ecap, "PyTorch command line too long");
    return -1;
  }
  return 0;
}

static void push(TorchRun *r, const TorchTime *t) {
  if (r->count == r->cap) {
    r->cap = r->cap ? 2 * r->cap : 32;
    r->t = realloc(r->t, (size_t)r->cap * sizeof *r->t);
    if (!r->t)
      abort();
  }
  r->t[r->count++] = *t;
}

/* One line of the child's output; -1 with err naming the line when it is not ours. */
static int parse_line(const char *line, int lineno, TorchRun *out, char *err, size_t cap) {
  cJSON *j = cJSON_Parse(line);
  const cJSON *impl = cJSON_GetObjectItemCaseSensitive(j, "impl");
  int rc = -1;
  if (cJSON_IsString(impl) && !strcmp(impl->valuestring, "info")) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "torch");
    const cJSON *th = cJSON_GetObjectItemCaseSensitive(j, "threads");
    if (cJSON_IsString(v) && cJSON_IsNumber(th)) {
      snprintf(out->version, sizeof out->version, "%s", v->valuestring);
      out->threads = th->valueint;
      const cJSON *w = cJSON_GetObjectItemCaseSensitive(j, "omp_wait_policy");
      snprintf(out->omp_wait, sizeof out->omp_wait, "%s", cJSON_IsString(w) ? w->valuestring : "?");
      rc = 0;
    }
  } else if (cJSON_IsString(impl)) {
    const cJSON *sel = cJSON_GetObjectItemCaseSensitive(j, "select");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(j, "n");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "s");
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(j, "ms");
    if (cJSON_IsString(sel) && cJSON_IsNumber(n) && cJSON_IsNumber(s) && cJSON_IsNumber(ms) &&
        ms->valuedouble > 0) {
      TorchTime t = {.n = n->valueint, .s = s->valuedouble, .ms = ms->valuedouble};
      snprintf(t.impl, sizeof t.impl, "%s", impl->valuestring);
      snprintf(t.select, sizeof t.select, "%s", sel->valuestring);
      push(out, &t);
      rc = 0;
    }
  }
  if (rc)
    snprintf(err, cap, "PyTorch child, output line %d: not a timing line: %.120s", lineno, line);
  cJSON_Delete(j);
  return rc;
}

int torch_child_run(const TorchCmd *c, int n, TorchRun *out, char *err, size_t cap) {
  char cmd[2048];
  if (build_command(c, n, cmd, sizeof cmd, err, cap))
    return -1;
  fflush(stdout);
  FILE *f = popen(cmd, "r");
  if (!f) {
    snprintf(err, cap, "cannot start %s: popen failed", c->python);
    return -1;
  }
  char line[4096];
  int lineno = 0, rc = 0;
  while (fgets(line, sizeof line, f)) {
    lineno++;
    line[strcspn(line, "\r\n")] = 0;
    if (!rc && parse_line(line, lineno, out, err, cap))
      rc = -1;   /* keep reading so the child is not killed by SIGPIPE mid-write */
  }
  int st = pclose(f);
  if (rc)
    return rc;
  int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  if (code == 77) {
    snprintf(err, cap, "torch is not installed for %s: skipping the PyTorch baselines",
             c->python);
    return 1;
  }
  if (code == 127) {
    snprintf(err, cap, "%s not found: skipping the PyTorch baselines", c->python);
    return 1;
  }
  if (code != 0) {
    snprintf(err, cap, "PyTorch child (%s %s, n = %d) %s %d", c->python, c->script, n,
             WIFEXITED(st) ? "exited with status" : "was killed by signal",
             WIFEXITED(st) ? code : WIFSIGNALED(st) ? WTERMSIG(st) : -1);
    return -1;
  }
  return 0;
}

double torch_lookup(const TorchRun *r, const char *impl, const char *select, int n, double s) {
  for (int i = 0; i < r->count; i++) {
    const TorchTime *t = &r->t[i];
    if (t->n == n && fabs(t->s - s) < 1e-9 && !strcmp(t->impl, impl) &&
        !strcmp(t->select, select))
      return t->ms;
  }
  return NAN;
}

void torch_run_free(TorchRun *r) {
  free(r->t);
  memset(r, 0, sizeof *r);
}
