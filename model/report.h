/* report.h: `crisp report` — the paper's Table 1, Table 2 and Figures 1-4 from run
 * folders written by `crisp train` (docs/report.md).
 *
 *   report_load.c    run folders -> ReportRun (config.json, metrics.jsonl, summary.json)
 *   report_stats.c   grouping into configurations, mean/std/Pearson, the FLOPs model
 *   report_tables.c  report.md (the tables, the notes, links to the figures)
 *   report_figs.c    fig1..fig4 as SVG (drawn with svg.h)
 *   report_cli.c     the command: arguments, loading, writing every file atomically
 *
 * Errors carry a message naming the file (and line) in err; functions return 0 or -1. */
#ifndef CRISP_REPORT_H
#define CRISP_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { REPORT_MAX_LAYERS = 64, REPORT_NAME_MAX = 128 };

typedef struct ReportEval {
  int64_t step;
  double val_loss, accuracy;
} ReportEval;

/* One run folder. The "final" numbers are the last evaluation's (summary.json when it
 * exists, else the last eval line of metrics.jsonl). */
typedef struct ReportRun {
  char *dir;                       /* as given */
  char name[REPORT_NAME_MAX];
  char select[32], budget[32];
  double target;                   /* 0 for select "none" */
  int64_t seed;
  char *group_key;                 /* the resolved config minus seed, name and bookkeeping */
  bool has_summary, finished;      /* summary.json exists; it says finished */
  bool evaluated;                  /* at least one evaluation */
  int64_t steps, total_steps;      /* trained (the last step line or summary), scheduled */
  int64_t eval_step;               /* the step of the last evaluation */
  int epochs;                      /* configured */
  double accuracy, val_loss;
  int correct, total;
  int layers, heads;               /* of the last evaluation's arrays */
  double achieved[REPORT_MAX_LAYERS], mean_achieved;
  double *entropy;                 /* [layers x heads], nats, of the last evaluation */
  int batch_size, grad_accum;
  double mean_len;                 /* valid tokens per training sentence; 0: unknown */
  int hidden, intermediate;        /* model shape for the FLOPs; 0: unknown */
  int n_steps;                     /* step lines */
  int64_t *step_at;
  double *step_loss;
  int n_evals;                     /* eval lines (one per step, the last kept) */
  ReportEval *evals;
} ReportRun;

/* Runs with the same group_key: one configuration, its seeds. */
typedef struct ReportGroup {
  char label[REPORT_NAME_MAX];
  int n_runs, *runs;               /* indices into the run array */
  int n_eval;                      /* runs with an evaluation */
  bool dense;                      /* select "none" */
  char select[32];
  double acc_mean, acc_std;        /* over evaluated runs; std NAN when n_eval < 2 */
  double loss_mean;
  double achieved[REPORT_MAX_LAYERS], mean_achieved; /* means over evaluated runs */
  int layers;
  double mean_len;                 /* mean over runs that know it; 0 unknown */
  int hidden, intermediate;
} ReportGroup;

typedef struct Report {
  int n_runs;
  ReportRun *runs;
  int n_groups;
  ReportGroup *groups;
  int baseline;                    /* group index, -1: none */
  double seq_len_override;         /* --seq-len; 0: measured */
} Report;

/* Loads one run folder into *r (zeroed first). Warnings (an incomplete last line of a
 * run in progress) go to warn (may be NULL). */
int report_load_run(const char *dir, ReportRun *r, void (*warn)(const char *msg), char *err,
                    size_t cap);
void report_run_free(ReportRun *r);

/* Whether dir looks like a run folder (holds config.json or metrics.jsonl). */
bool report_is_run_dir(const char *dir);

/* Groups rep->runs into configurations and computes the statistics. */
int report_group(Report *rep, char *err, size_t cap);
void report_free(Report *rep);

/* Sample mean and standard deviation (n - 1); std is NAN for n < 2. */
void report_mean_std(const double *x, int n, double *mean, double *std);
/* Pearson's r; NAN when n < 3 or a variance is zero. */
double report_pearson(const double *x, const double *y, int n);

/* FLOPs of one encoder layer for one sequence of L tokens (hidden d, FFN f) at attention
 * sparsity s; multiply-adds count 2, elementwise work (softmax, LayerNorm, GELU) is not
 * counted. select_passes: extra dense score passes the selection makes in the forward
 * (report_select_passes); the reference is always the dense kernel (select "none").
 * See docs/report.md for the derivation. */
typedef enum FlopsMode {
  FLOPS_TRAIN,       /* forward + backward, a kept-only kernel: the score pass stays dense */
  FLOPS_INFER,       /* forward only, a kept-only kernel */
  FLOPS_ALL_SCALE,   /* the paper's count: every attention product scales with 1 - s */
} FlopsMode;
typedef struct LayerFlops {
  double linear;     /* Q, K, V, output projections and the FFN */
  double attn_dense; /* the dense kernel's attention (select none) */
  double attn;       /* attention at s */
} LayerFlops;
LayerFlops report_layer_flops(double d, double f, double L, double s, FlopsMode mode,
                              int select_passes);
/* crisp's select kernels for head_quantile and layer_quantile recompute every score in
 * each of their 3 radix rounds (docs/kernels-select.md): 3; other modes 0. */
int report_select_passes(const char *select);
/* 1 - attn / attn_dense and the same for the layer (linear + attention). */
double report_attn_reduction(LayerFlops x);
double report_layer_reduction(LayerFlops x);

/* report.md (malloc'd text). Figure files are linked as fig1..fig4 .svg. */
char *report_markdown(const Report *rep);
/* Figure k (1..4) as SVG text (malloc'd), or NULL when out of memory. */
char *report_figure(const Report *rep, int k, size_t *len);

/* The `crisp report` command. */
int report_cli(int argc, char **argv);

#endif
