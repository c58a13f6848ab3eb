/* report_cli.c: `crisp report [--out DIR] [--seq-len L] RUN_DIR...` (docs/report.md).
 * Everything is loaded and rendered in memory first; only then are the files written,
 * each atomically, report.md last — an error leaves the output folder as it was. */
#include "report.h"

#include "../runtime/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char USAGE[] =
    "usage: crisp report [--out DIR] [--seq-len L] RUN_DIR...\n"
    "\n"
    "Turns `crisp train` run folders into the paper's Table 1 (accuracy per configuration,\n"
    "seeds: mean, std, counts x/N), Table 2 (attention and per-layer FLOPs reduction from\n"
    "the achieved sparsity) and Figures 1-4 (accuracy vs. sparsity, sparsity per layer,\n"
    "head entropy, training and validation loss): DIR/report.md and DIR/fig1.svg .. fig4.svg.\n"
    "\n"
    "RUN_DIR is a run folder (config.json, metrics.jsonl, summary.json) or a folder of them\n"
    "(`crisp report runs` = `crisp report runs/*`). Runs whose config.json agree on all but\n"
    "name, seed and bookkeeping keys are one configuration. A run without summary.json (in\n"
    "progress or interrupted) is included from its metrics.jsonl and marked.\n"
    "\n"
    "  --out DIR      output folder (default: reports), created if needed\n"
    "  --seq-len L    tokens per sentence for Table 2 (default: measured from the runs)\n"
    "  --quiet        no warnings\n"
    "  -h, --help     this text\n"
    "\n"
    "Exit status: 0 written; 1 writing failed; 2 a usage error or a bad run folder (the\n"
    "message names the file and line). docs/report.md has the details.\n";

static bool g_quiet;

static void warn(const char *msg) {
  if (!g_quiet)
    fprintf(stderr, "crisp report: warning: %s\n", msg);
}

static int usage_error(const char *msg, const char *arg) {
  fprintf(stderr, "crisp report: %s%s%s\n(see crisp report --help)\n", msg, arg ? " " : "",
          arg ? arg : "");
  return 2;
}

typedef struct Paths {
  char **p;
  int n;
} Paths;

static int push_path(Paths *ps, const char *path) {
  char **a = realloc(ps->p, (size_t)(ps->n + 1) * sizeof *a);
  if (!a)
    return -1;
  ps->p = a;
  if (!(a[ps->n] = strdup(path)))
    return -1;
  ps->n++;
  return 0;
}

/* Adds a run folder unless the same folder is already in (runs/x and runs/x/ and
 * ./runs/x are one run). */
static int push_run(Paths *ps, const char *path) {
  char a[PATH_MAX], b[PATH_MAX];
  if (realpath(path, a))
    for (int i = 0; i < ps->n; i++)
      if (realpath(ps->p[i], b) && !strcmp(a, b))
        return 0;
  return push_path(ps, path);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The run folders inside dir, sorted by name. */
static int scan_dir(const char *dir, Paths *out, char *err, size_t cap) {
  DIR *d = opendir(dir);
  if (!d) {
    snprintf(err, cap, "%s: %s", dir, strerror(errno));
    return -1;
  }
  Paths found = {0};
  struct dirent *e;
  char p[PATH_MAX];
  int rc = 0;
  while (!rc && (e = readdir(d))) {
    if (e->d_name[0] == '.')
      continue;
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    struct stat st;
    if (!stat(p, &st) && S_ISDIR(st.st_mode) && report_is_run_dir(p))
      rc = push_path(&found, p);
  }
  closedir(d);
  qsort(found.p, (size_t)found.n, sizeof *found.p, cmp_str);
  for (int i = 0; i < found.n; i++) {
    if (!rc)
      rc = push_run(out, found.p[i]);
    free(found.p[i]);
  }
  free(found.p);
  if (rc)
    snprintf(err, cap, "report: out of memory");
  return rc;
}

/* The run folders the arguments name: a run folder, or a folder of them; files and
 * the output folder (a shell glob over runs may include them) are skipped. */
static int expand(char **args, int n, const char *out_dir, Paths *runs, char *err, size_t cap) {
  char out_real[PATH_MAX] = "", real[PATH_MAX], msg[PATH_MAX + 64];
  if (!realpath(out_dir, out_real))
    out_real[0] = 0;
  for (int i = 0; i < n; i++) {
    struct stat st;
    if (stat(args[i], &st)) {
      snprintf(err, cap, "%s: %s", args[i], strerror(errno));
      return -1;
    }
    if (realpath(args[i], real) && out_real[0] && !strcmp(real, out_real))
      continue;
    if (!S_ISDIR(st.st_mode)) {
      snprintf(msg, sizeof msg, "%s: not a folder, skipped", args[i]);
      warn(msg);
    } else if (report_is_run_dir(args[i])) {
      if (push_run(runs, args[i])) {
        snprintf(err, cap, "report: out of memory");
        return -1;
      }
    } else {
      int before = runs->n;
      if (scan_dir(args[i], runs, err, cap))
        return -1;
      if (runs->n == before) {
        snprintf(msg, sizeof msg, "%s: no run folders in it, skipped", args[i]);
        warn(msg);
      }
    }
  }
  return 0;
}

/* Seeds of one configuration stopped at different steps are averaged all the same;
 * say so, since the mean then mixes training lengths. */
static void warn_mixed_steps(const Report *rep) {
  char msg[256];
  for (int g = 0; g < rep->n_groups; g++) {
    const ReportGroup *gr = &rep->groups[g];
    for (int i = 1; i < gr->n_runs; i++)
      if (rep->runs[gr->runs[i]].steps != rep->runs[gr->runs[0]].steps) {
        snprintf(msg, sizeof msg, "configuration %s: its runs stopped at different steps",
                 gr->label);
        warn(msg);
        break;
      }
  }
}

static int load_all(const Paths *ps, Report *rep, char *err, size_t cap) {
  rep->runs = calloc((size_t)ps->n, sizeof *rep->runs);
  if (!rep->runs) {
    snprintf(err, cap, "report: out of memory");
    return -1;
  }
  for (int i = 0; i < ps->n; i++) {
    int rc = report_load_run(ps->p[i], &rep->runs[i], warn, err, cap);
    rep->n_runs++;
    if (rc)
      return -1;
  }
  return report_group(rep, err, cap);
}

/* Renders everything, then writes fig1..fig4 and report.md last. */
static int write_all(const Report *rep, const char *out, char *err, size_t cap) {
  char *text[5] = {0};
  size_t len[5] = {0};
  int rc = -1;
  for (int k = 1; k <= 4; k++)
    if (!(text[k - 1] = report_figure(rep, k, &len[k - 1]))) {
      snprintf(err, cap, "report: out of memory");
      goto out;
    }
  if (!(text[4] = report_markdown(rep))) {
    snprintf(err, cap, "report: out of memory");
    goto out;
  }
  len[4] = strlen(text[4]);
  if (rt_mkdirs(out, err, cap))
    goto out;
  for (int k = 0; k < 5; k++) {
    char path[PATH_MAX];
    if (k < 4)
      snprintf(path, sizeof path, "%s/fig%d.svg", out, k + 1);
    else
      snprintf(path, sizeof path, "%s/report.md", out);
    if (rt_write_atomic(path, text[k], len[k], err, cap))
      goto out;
  }
  rc = 0;
out:
  for (int k = 0; k < 5; k++)
    free(text[k]);
  return rc;
}

int report_cli(int argc, char **argv) {
  const char *out = "reports";
  char **pos = calloc((size_t)(argc > 0 ? argc : 1), sizeof *pos);
  int n_pos = 0;
  Report rep = {0};
  g_quiet = false;
  if (!pos)
    return 1;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      fputs(USAGE, stdout);
      free(pos);
      return 0;
    } else if (!strcmp(a, "--quiet")) {
      g_quiet = true;
    } else if (!strcmp(a, "--out") || !strcmp(a, "--seq-len")) {
      if (i + 1 >= argc || !argv[i + 1][0]) {
        free(pos);
        return usage_error(a, "needs a value");
      }
      const char *v = argv[++i];
      if (!strcmp(a, "--out")) {
        out = v;
        continue;
      }
      char *end;
      rep.seq_len_override = strtod(v, &end);
      if (*end || !(rep.seq_len_override >= 1 && rep.seq_len_override <= 1e6)) {
        free(pos);
        return usage_error("--seq-len: expected a number of tokens >= 1, got", v);
      }
    } else if (a[0] == '-' && a[1]) {
      free(pos);
      return usage_error("unknown option", a);
    } else {
      pos[n_pos++] = argv[i];
    }
  }
  if (!n_pos) {
    free(pos);
    return usage_error("give at least one RUN_DIR", NULL);
  }
  char err[8192];
  Paths ps = {0};
  int rc = 2;
  if (expand(pos, n_pos, out, &ps, err, sizeof err) || load_all(&ps, &rep, err, sizeof err))
    goto fail;
  if (rep.n_runs == 0) {
    snprintf(err, sizeof err, "no run folders among the arguments");
    goto fail;
  }
  warn_mixed_steps(&rep);
  rc = 1;
  if (write_all(&rep, out, err, sizeof err))
    goto fail;
  printf("report: %d run%s, %d configuration%s -> %s/report.md, %s/fig1.svg .. fig4.svg\n",
         rep.n_runs, rep.n_runs == 1 ? "" : "s", rep.n_groups, rep.n_groups == 1 ? "" : "s", out,
         out);
  rc = 0;
  goto done;
fail:
  fprintf(stderr, "crisp report: %s\n", err);
done:
  report_free(&rep);
  for (int i = 0; i < ps.n; i++)
    free(ps.p[i]);
  free(ps.p);
  free(pos);
  return rc;
}
