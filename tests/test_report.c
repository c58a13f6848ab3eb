/* `crisp report` (model/report*.c, model/svg.c) on run folders this test writes:
 *   - statistics: mean, sample std, Pearson's r; the FLOPs model on a hand-worked case;
 *   - Table 1: seeds grouped, mean/std/counts/difference to the baseline as computed
 *     here from the counts; Table 2's reductions; an in-progress run (no summary.json,
 *     an unterminated last line) included and marked;
 *   - the SVGs: balanced tags, no non-finite numbers, every configuration's series;
 *   - bad input: malformed JSON / a bad metrics.jsonl line -> an error naming
 *     FILE:LINE, exit 2, and the output folder left as it was. */
#include "check.h"
#include "report.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_tmp[256];

static void put_file(const char *dir, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void put_file(const char *dir, const char *name, const char *fmt, ...) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  FILE *f = fopen(p, "w");
  if (!f) {
    perror(p);
    exit(1);
  }
  va_list ap;
  va_start(ap, fmt);
  vfprintf(f, fmt, ap);
  va_end(ap);
  fclose(f);
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  if (s && fread(s, 1, (size_t)n, f) != (size_t)n)
    n = 0;
  if (s)
    s[n] = 0;
  fclose(f);
  return s;
}

/* A run folder as crisp train writes it: 2 layers, 2 heads, hidden 8, FFN 32. */
typedef struct Fake {
  const char *name, *select, *budget;
  double target;
  int seed, correct, total, threads;
  double loss, ach[2], ent[4];
  bool summary, partial_tail;
  bool entropy_key;   /* budget.entropy written (newer crisp), or absent (older runs) */
} Fake;

static void eval_fields(char *buf, size_t cap, const Fake *f) {
  snprintf(buf, cap,
           "\"val_loss\": %.17g, \"accuracy\": %.17g, \"correct\": %d, \"total\": %d, "
           "\"count\": \"%d/%d\", \"achieved_sparsity\": [%.17g, %.17g], "
           "\"entropy\": [[%g, %g], [%g, %g]], \"entropy_norm\": [[0.5, 0.5], [0.5, 0.5]]",
           f->loss, (double)f->correct / f->total, f->correct, f->total, f->correct, f->total,
           f->ach[0], f->ach[1], f->ent[0], f->ent[1], f->ent[2], f->ent[3]);
}

static void write_run(const Fake *f) {
  char dir[512], ev[1024];
  snprintf(dir, sizeof dir, "%s/runs/%s", g_tmp, f->name);
  mkdir(dir, 0755);
  put_file(dir, "config.json",
           "{\"name\": \"%s\", \"select\": \"%s\", \"budget\": {\"kind\": \"%s\", \"target\": "
           "%g%s}, \"seed\": %d, \"epochs\": 2, \"batch_size\": 4, \"grad_accum\": 2, "
           "\"threads\": %d, \"max_len\": 64, \"model\": \"\", \"random_model\": {\"hidden\": 8, "
           "\"heads\": 2, \"intermediate\": 32}}\n",
           f->name, f->select, f->budget, f->target,
           f->entropy_key ? ", \"entropy\": \"kept\"" : "", f->seed, f->threads);
  eval_fields(ev, sizeof ev, f);
  /* 4 of 10 steps; 8 sentences a step of 10 tokens each: tokens_per_s x step time = 80 */
  char p[600];
  snprintf(p, sizeof p, "%s/metrics.jsonl", dir);
  FILE *m = fopen(p, "w");
  for (int s = 1; s <= 4; s++)
    fprintf(m, "{\"type\": \"step\", \"step\": %d, \"total_steps\": 10, \"loss\": %g, "
               "\"tokens_per_s\": 160, \"elapsed_s\": %g}\n", s, 0.7 - 0.05 * s, 0.5 * s);
  fprintf(m, "{\"type\": \"eval\", \"when\": \"step\", \"step\": 2, \"val_loss\": 0.69, "
             "\"accuracy\": 0.5, \"correct\": 1, \"total\": 2, \"achieved_sparsity\": [0, 0], "
             "\"entropy\": [[1, 1], [1, 1]]}\n");
  fprintf(m, "{\"type\": \"eval\", \"when\": \"stop\", \"step\": 4, %s}\n", ev);
  if (f->partial_tail)
    fprintf(m, "{\"type\": \"step\", \"step\": 5, \"tot");
  fclose(m);
  if (f->summary)
    put_file(dir, "summary.json",
             "{\n  \"name\": \"%s\", \"finished\": false, \"steps\": 4, \"total_steps\": 10,\n"
             "  \"train_tokens\": 320, %s\n}\n", f->name, ev);
}

static void test_stats(void) {
  double x[] = {1, 2, 3}, y[] = {2, 4, 7}, m, s;
  report_mean_std(x, 3, &m, &s);
  CHECK(m == 2 && fabs(s - 1) < 1e-15, "mean %g std %g, wanted 2, 1", m, s);
  report_mean_std(x, 1, &m, &s);
  CHECK(m == 1 && isnan(s), "one value: std must be NAN, got %g", s);
  /* by hand: sxy = 5, sxx = 2, syy = 38/3 */
  double r = report_pearson(x, y, 3);
  CHECK(fabs(r - 5 / sqrt(2 * 38.0 / 3)) < 1e-12, "pearson %.15g", r);
  double c[] = {5, 5, 5};
  CHECK(isnan(report_pearson(x, c, 3)) && isnan(report_pearson(x, y, 2)),
        "pearson must be NAN without spread or with n < 3");
}

/* Without selection passes (row_topk), d = 64, f = 256, L = 32, s = 0.5: linear forward
 * 64 x (4 x 4096 + 2 x 64 x 256) = 3,145,728; one L x L product 2 x 1024 x 64 = 131,072 = P.
 * train: linear 9,437,184; attention 9P dense, 3P + 6P x 0.5 = 6P: saves 3P = 393,216
 *   -> attention 1/3, layer 393,216 / 10,616,832 = 1/27.
 * infer: 2P dense, P + 0.5 P: saves P/2 -> attention 1/4, layer 65,536 / 3,407,872 = 1/52.
 * paper: saves half of 2P -> attention 1/2, layer 131,072 / 3,407,872 = 1/26. */
static void test_flops(void) {
  LayerFlops t = report_layer_flops(64, 256, 32, 0.5, FLOPS_TRAIN, 0);
  CHECK(t.linear == 9437184 && t.attn_dense == 1179648 && t.attn == 786432,
        "train flops %g %g %g", t.linear, t.attn_dense, t.attn);
  CHECK(fabs(report_attn_reduction(t) - 1.0 / 3) < 1e-15, "train attn %g",
        report_attn_reduction(t));
  CHECK(fabs(report_layer_reduction(t) - 1.0 / 27) < 1e-15, "train layer %g",
        report_layer_reduction(t));
  LayerFlops i = report_layer_flops(64, 256, 32, 0.5, FLOPS_INFER, 0);
  CHECK(fabs(report_attn_reduction(i) - 0.25) < 1e-15 &&
            fabs(report_layer_reduction(i) - 1.0 / 52) < 1e-15,
        "infer %g %g", report_attn_reduction(i), report_layer_reduction(i));
  LayerFlops a = report_layer_flops(64, 256, 32, 0.5, FLOPS_ALL_SCALE, 3);
  CHECK(fabs(report_attn_reduction(a) - 0.5) < 1e-15 &&
            fabs(report_layer_reduction(a) - 1.0 / 26) < 1e-15,
        "paper %g %g", report_attn_reduction(a), report_layer_reduction(a));
  LayerFlops z = report_layer_flops(64, 256, 32, 0, FLOPS_TRAIN, 0);
  CHECK(report_layer_reduction(z) == 0, "s = 0 saves nothing");
  /* head_quantile: 3 more score passes. train 6P + 6P x 0.5 = 9P: nothing saved;
   * infer 4P + P/2 against 2P: 2.5 P = 327,680 more -> attention -5/4, layer -5/52 */
  CHECK(report_select_passes("head_quantile") == 3 && report_select_passes("row_topk") == 0 &&
            report_select_passes("none") == 0,
        "select passes");
  LayerFlops q = report_layer_flops(64, 256, 32, 0.5, FLOPS_TRAIN, 3);
  CHECK(q.attn == q.attn_dense && report_attn_reduction(q) == 0, "quantile train %g %g", q.attn,
        q.attn_dense);
  q = report_layer_flops(64, 256, 32, 0.5, FLOPS_INFER, 3);
  CHECK(fabs(report_attn_reduction(q) + 1.25) < 1e-15 &&
            fabs(report_layer_reduction(q) + 5.0 / 52) < 1e-15,
        "quantile infer %g %g", report_attn_reduction(q), report_layer_reduction(q));
}

/* Balanced tags, <?xml ...?> prolog, no nan/inf in the text. */
static bool well_formed(const char *svg, char *why, size_t cap) {
  char stack[64][32];
  int depth = 0, roots = 0;
  if (strstr(svg, "nan") || strstr(svg, "inf")) {
    snprintf(why, cap, "a non-finite number");
    return false;
  }
  for (const char *p = strchr(svg, '<'); p; p = strchr(p + 1, '<')) {
    const char *end = strchr(p, '>');
    if (!end) {
      snprintf(why, cap, "unclosed tag");
      return false;
    }
    char name[32];
    if (p[1] == '?')
      continue;
    bool closing = p[1] == '/', self = end[-1] == '/';
    sscanf(p + 1 + closing, "%31[A-Za-z0-9]", name);
    if (closing) {
      if (!depth || strcmp(stack[depth - 1], name)) {
        snprintf(why, cap, "</%s> does not close <%s>", name, depth ? stack[depth - 1] : "");
        return false;
      }
      depth--;
    } else if (!self) {
      if (depth == 0)
        roots++;
      if (depth == 64)
        return false;
      snprintf(stack[depth++], 32, "%s", name);
    }
    p = end;
  }
  if (depth || roots != 1)
    snprintf(why, cap, "depth %d at the end, %d root elements", depth, roots);
  return !depth && roots == 1;
}

static int count(const char *s, const char *sub) {
  int n = 0;
  for (const char *p = strstr(s, sub); p; p = strstr(p + 1, sub))
    n++;
  return n;
}

static int run_report(const char *out, const char *a1, const char *a2) {
  char *argv[] = {"--quiet", "--out", (char *)out, (char *)a1, (char *)a2};
  return report_cli(a2 ? 5 : 4, argv);
}

/* baseline_s2 is written as a newer crisp writes it (budget.entropy), baseline_s1 as
 * an older one did: they must still group as two seeds of one configuration. */
static const Fake RUNS[] = {
    {"baseline_s1", "none", "uniform", 0, 1, 790, 872, 1, 0.30, {0, 0}, {3, 3.2, 3.1, 3.3}, true,
     false, false},
    {"baseline_s2", "none", "uniform", 0, 2, 784, 872, 2, 0.34, {0, 0}, {3, 3.1, 3.2, 3.4}, true,
     false, true},
    {"sparse_s1", "head_quantile", "adaptive", 0.6, 1, 800, 872, 1, 0.28, {0.5, 0.7},
     {1.5, 1.7, 1.2, 1.1}, true, false, false},
    {"wip", "head_quantile", "uniform", 0.8, 7, 770, 872, 1, 0.40, {0.8, 0.8},
     {0.9, 1.0, 0.8, 0.7}, false, true, false},
};

static void test_report(void) {
  char runs[300], out[300], path[400], why[200];
  snprintf(runs, sizeof runs, "%s/runs", g_tmp);
  snprintf(out, sizeof out, "%s/out", g_tmp);
  mkdir(runs, 0755);
  for (size_t i = 0; i < sizeof RUNS / sizeof *RUNS; i++)
    write_run(&RUNS[i]);
  put_file(runs, "README", "not a run\n");   /* a shell glob picks it up: skipped */
  char again[320];   /* a run named twice counts once */
  snprintf(again, sizeof again, "%s/baseline_s1/", runs);
  CHECK(run_report(out, runs, again) == 0, "report over a folder of runs failed");
  snprintf(path, sizeof path, "%s/report.md", out);
  char *md = slurp(path), want[256];
  CHECK(md != NULL, "no report.md");
  if (!md)
    return;
  /* baseline: 790/872 and 784/872 */
  double a = 790.0 / 872, b = 784.0 / 872, mean = (a + b) / 2, sd = fabs(a - b) / sqrt(2);
  snprintf(want, sizeof want, "| baseline | none | — | 0%% | 2 | %.2f%% | %.2f pp | "
           "790/872† (s1), 784/872† (s2) | 0.3200 | 4/10 | 0.80 | — |", 100 * mean, 100 * sd);
  CHECK(strstr(md, want) != NULL, "Table 1 baseline row missing: %s\n%s", want, md);
  snprintf(want, sizeof want, "| sparse | head_quantile | adaptive | 60%% | 1 | %.2f%% | — | "
           "800/872† (s1) | 0.2800 | 4/10 | 0.80 | %+.2f pp |", 100 * 800.0 / 872,
           100 * (800.0 / 872 - mean));
  CHECK(strstr(md, want) != NULL, "Table 1 sparse row missing: %s", want);
  CHECK(strstr(md, "770/872‡ (s7)") != NULL, "the in-progress run is not marked ‡");
  /* Table 2, sparse: s = (0.5, 0.7), d 8, f 32, L = 320 / (4 x 4 x 2) = 10 */
  double attn = 0, layer = 0;
  for (int l = 0; l < 2; l++) {
    LayerFlops x = report_layer_flops(8, 32, 10, RUNS[2].ach[l], FLOPS_TRAIN, 3);
    attn += report_attn_reduction(x) / 2, layer += report_layer_reduction(x) / 2;
  }
  snprintf(want, sizeof want, "| %.1f%% | %.2f%% | ", 100 * attn, 100 * layer);
  CHECK(strstr(md, "| sparse | 0.600 | 60.0% |") && strstr(md, want) &&
            strstr(md, "8, 32, 10.0 |"),
        "Table 2 sparse row: wanted \"%s\" and L = 10", want);
  CHECK(strstr(md, "0.500 / ") && strstr(md, "0.700 / "), "per-layer sparsity missing");
  free(md);
  /* --seq-len replaces the measured L */
  char out2[320];
  snprintf(out2, sizeof out2, "%s/out2", g_tmp);
  char *argv[] = {"--quiet", "--seq-len", "32", "--out", out2, runs};
  CHECK(report_cli(6, argv) == 0, "--seq-len 32 failed");
  snprintf(path, sizeof path, "%s/report.md", out2);
  md = slurp(path);
  CHECK(md && strstr(md, "8, 32, 32.0 |") && !strstr(md, "8, 32, 10.0 |"),
        "--seq-len 32 not used in Table 2");
  free(md);
  const char *labels[] = {"baseline", "sparse", "wip"};
  for (int k = 1; k <= 4; k++) {
    snprintf(path, sizeof path, "%s/fig%d.svg", out, k);
    char *svg = slurp(path);
    CHECK(svg && well_formed(svg, why, sizeof why), "fig%d.svg not well formed: %s", k,
          svg ? why : "missing");
    for (int g = 0; svg && g < 3; g++) {
      snprintf(want, sizeof want, ">%s<", labels[g]);
      CHECK(strstr(svg, want), "fig%d.svg lacks the series %s", k, labels[g]);
    }
    if (svg && k == 1)  /* 4 run points + 3 legend dots */
      CHECK(count(svg, "<circle") == 7, "fig1: %d circles", count(svg, "<circle"));
    if (svg && k == 4)  /* per run: a training-loss line and a validation-loss line */
      CHECK(count(svg, "<polyline") == 8, "fig4: %d polylines", count(svg, "<polyline"));
    free(svg);
  }
}

/* A bad file: report_cli exits 2 and leaves out/ as it was; the loader names FILE:LINE. */
static void expect_bad(const char *name, const char *file, const char *text, const char *msg) {
  char dir[400], out[400], path[500], err[2048];
  snprintf(dir, sizeof dir, "%s/runs/%s", g_tmp, name);
  Fake f = RUNS[2];
  f.name = name;
  write_run(&f);
  put_file(dir, file, "%s", text);
  snprintf(out, sizeof out, "%s/out", g_tmp);
  snprintf(path, sizeof path, "%s/report.md", out);
  char *before = slurp(path);
  CHECK(run_report(out, dir, NULL) == 2, "%s: exit status not 2", name);
  char *after = slurp(path);
  CHECK(before && after && !strcmp(before, after), "%s: report.md changed", name);
  free(before), free(after);
  ReportRun r;
  CHECK(report_load_run(dir, &r, NULL, err, sizeof err) == -1 && strstr(err, msg),
        "%s: wanted \"%s\" in \"%s\"", name, msg, err);
  report_run_free(&r);
}

static void test_bad_input(void) {
  expect_bad("bad_line", "metrics.jsonl",
             "{\"type\": \"step\", \"step\": 1, \"total_steps\": 2, \"loss\": 1}\n{oops\n"
             "{\"type\": \"step\", \"step\": 2, \"total_steps\": 2, \"loss\": 1}\n",
             "metrics.jsonl:2: not a valid JSON object");
  expect_bad("bad_key", "metrics.jsonl",
             "{\"type\": \"step\", \"step\": 1, \"total_steps\": 2, \"loss\": 1}\n\n"
             "{\"type\": \"eval\", \"step\": 1, \"val_loss\": 1}\n",
             "metrics.jsonl:3: key \"accuracy\": missing");
  expect_bad("bad_type", "metrics.jsonl", "{\"type\": \"nope\", \"step\": 1}\n",
             "metrics.jsonl:1: unknown \"type\" \"nope\"");
  expect_bad("bad_summary", "summary.json", "{\n  \"finished\": true,\n  \"steps\": ,\n}\n",
             "summary.json:3:");
  /* text after the JSON object, in a file or on a line, is not silently dropped */
  expect_bad("trailing_summary", "summary.json",
             "{\"finished\": true, \"steps\": 2, \"total_steps\": 4}\n{\"a\": 1}\n",
             "summary.json:2:1: unexpected text after the JSON value");
  expect_bad("trailing_line", "metrics.jsonl",
             "{\"type\": \"step\", \"step\": 1, \"total_steps\": 2, \"loss\": 1} x\n",
             "metrics.jsonl:1: not a valid JSON object");
  expect_bad("bad_int", "summary.json",
             "{\"finished\": true, \"steps\": 2.5, \"total_steps\": 4}\n",
             "summary.json: key \"steps\": expected an integer");
  expect_bad("bad_config", "config.json", "{\"name\": \"x\", \"select\": 3}\n",
             "config.json: key \"select\": expected a string");
  char out[400], miss[400];
  snprintf(out, sizeof out, "%s/out", g_tmp);
  snprintf(miss, sizeof miss, "%s/runs/does-not-exist", g_tmp);
  CHECK(run_report(out, miss, NULL) == 2, "a missing folder must exit 2");
  char *help[] = {"--help"}, *bogus[] = {"--bogus", "x"}, *none[] = {"--out", out};
  CHECK(report_cli(1, help) == 0 && report_cli(2, bogus) == 2 && report_cli(2, none) == 2,
        "--help / unknown option / no RUN_DIR");
}

/* A resumed run still in progress keeps the summary of the stop it continued from;
 * the later evaluations of metrics.jsonl win. */
static void test_stale_summary(void) {
  Fake f = RUNS[2];
  f.name = "resumed";
  write_run(&f);
  char dir[400], err[512];
  snprintf(dir, sizeof dir, "%s/runs/resumed", g_tmp);
  FILE *m = fopen(strcat(strcpy(err, dir), "/metrics.jsonl"), "a");
  fprintf(m, "{\"type\": \"eval\", \"step\": 8, \"val_loss\": 0.25, \"accuracy\": 0.9, "
             "\"correct\": 810, \"total\": 872, \"achieved_sparsity\": [0.4, 0.6], "
             "\"entropy\": [[1, 1], [1, 1]]}\n");
  fclose(m);
  ReportRun r;
  CHECK(report_load_run(dir, &r, NULL, err, sizeof err) == 0, "%s", err);
  CHECK(!r.has_summary && r.correct == 810 && r.eval_step == 8 && r.achieved[0] == 0.4,
        "stale summary used: has_summary %d, correct %d, step %lld", r.has_summary, r.correct,
        (long long)r.eval_step);
  report_run_free(&r);
}

int main(void) {
  snprintf(g_tmp, sizeof g_tmp, "/tmp/crisp-test-report.XXXXXX");
  if (!mkdtemp(g_tmp))
    return 1;
  test_stats();
  test_flops();
  test_report();
  test_bad_input();
  test_stale_summary();
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
  if (check_failed == 0 && system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", g_tmp);
  return check_summary();
}
