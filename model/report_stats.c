/* report_stats.c: runs grouped into configurations, their statistics, and the FLOPs
 * model of Table 2 (see report.h and docs/report.md). */
#include "report.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void report_mean_std(const double *x, int n, double *mean, double *std) {
  double m = 0, ss = 0;
  for (int i = 0; i < n; i++)
    m += x[i];
  m = n > 0 ? m / n : NAN;
  for (int i = 0; i < n; i++)
    ss += (x[i] - m) * (x[i] - m);
  *mean = m;
  *std = n >= 2 ? sqrt(ss / (n - 1)) : NAN;
}

double report_pearson(const double *x, const double *y, int n) {
  if (n < 3)
    return NAN;
  double mx = 0, my = 0, sxy = 0, sxx = 0, syy = 0;
  for (int i = 0; i < n; i++)
    mx += x[i] / n, my += y[i] / n;
  for (int i = 0; i < n; i++) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  /* a variance at rounding level is zero: r would be noise */
  if (sxx <= 1e-24 * (1 + mx * mx) * n || syy <= 1e-24 * (1 + my * my) * n)
    return NAN;
  return sxy / sqrt(sxx * syy);
}

/* Per layer and one sequence of L tokens, multiply-adds counted as 2 FLOPs:
 *   linear (forward)  2 L (4 d^2 + 2 d f)   Q, K, V, output projections; FFN in and out
 *   one L x L product 2 L^2 d                over all heads (h x 2 L^2 d/h)
 * Training multiplies the linear work by 3 (forward, dX, dW). crisp's attention
 * kernels are FlashAttention-style: the score pass S = Q K^T runs densely in the
 * forward (the threshold needs every score) and is recomputed by both backward
 * kernels; the products with P or dS (P V; dP = dO V^T, in both backward kernels;
 * dQ, dK, dV) touch kept pairs only and so scale with 1 - s. The quantile modes'
 * select kernels add their score passes to the forward. */
LayerFlops report_layer_flops(double d, double f, double L, double s, FlopsMode mode,
                              int select_passes) {
  double lin = 2 * L * (4 * d * d + 2 * d * f), prod = 2 * L * L * d, sel = select_passes;
  LayerFlops x;
  switch (mode) {
  case FLOPS_TRAIN:
    x.linear = 3 * lin;
    x.attn_dense = 3 * prod + 6 * prod;
    x.attn = (3 + sel) * prod + 6 * prod * (1 - s);
    break;
  case FLOPS_INFER:
    x.linear = lin;
    x.attn_dense = 2 * prod;
    x.attn = (1 + sel) * prod + prod * (1 - s);
    break;
  default:  /* the paper's count, no selection cost; the same ratios for training */
    x.linear = lin;
    x.attn_dense = 2 * prod;
    x.attn = 2 * prod * (1 - s);
  }
  return x;
}

int report_select_passes(const char *select) {
  return !strcmp(select, "head_quantile") || !strcmp(select, "layer_quantile") ? 3 : 0;
}

double report_attn_reduction(LayerFlops x) {
  return x.attn_dense > 0 ? 1 - x.attn / x.attn_dense : 0;
}

double report_layer_reduction(LayerFlops x) {
  double dense = x.linear + x.attn_dense;
  return dense > 0 ? (x.attn_dense - x.attn) / dense : 0;
}

/* The run name without a seed suffix: "baseline_seed3", "baseline-s2" -> "baseline". */
static void strip_seed(const char *name, char *out, size_t cap) {
  snprintf(out, cap, "%s", name);
  size_t n = strlen(out), i = n;
  while (i > 0 && isdigit((unsigned char)out[i - 1]))
    i--;
  if (i == n || i == 0)
    return;
  size_t j = i;
  if (j >= 4 && !strncmp(out + j - 4, "seed", 4))
    j -= 4;
  else if (j >= 1 && out[j - 1] == 's')
    j -= 1;
  else
    return;
  if (j > 0 && strchr("_-.", out[j - 1]))
    out[j - 1] = 0;
}

static int kind_rank(const char *budget) {
  return !strcmp(budget, "uniform") ? 0 : !strcmp(budget, "list") ? 1 : 2;
}

/* Table order: dense first, then by target sparsity, uniform before list before
 * adaptive, then by label — the paper's order for its four configurations. */
static const ReportRun *g_runs;
static int group_cmp(const void *a, const void *b) {
  const ReportGroup *x = a, *y = b;
  const ReportRun *rx = &g_runs[x->runs[0]], *ry = &g_runs[y->runs[0]];
  if (x->dense != y->dense)
    return x->dense ? -1 : 1;
  if (rx->target != ry->target)
    return rx->target < ry->target ? -1 : 1;
  int k = kind_rank(rx->budget) - kind_rank(ry->budget);
  return k ? k : strcmp(x->label, y->label);
}

static void group_stats(const Report *rep, ReportGroup *g) {
  double acc[256], loss[256], len_sum = 0;
  int n = 0, n_len = 0;
  for (int i = 0; i < g->n_runs; i++) {
    const ReportRun *r = &rep->runs[g->runs[i]];
    if (r->mean_len > 0)
      len_sum += r->mean_len, n_len++;
    if (!g->hidden && r->hidden)
      g->hidden = r->hidden, g->intermediate = r->intermediate;
    if (!r->evaluated || n >= 256)
      continue;
    if (n == 0)
      g->layers = r->layers;
    acc[n] = r->accuracy, loss[n] = r->val_loss;
    for (int l = 0; l < g->layers && l < r->layers; l++)
      g->achieved[l] += r->achieved[l];
    n++;
  }
  g->n_eval = n;
  double sd;
  report_mean_std(acc, n, &g->acc_mean, &g->acc_std);
  report_mean_std(loss, n, &g->loss_mean, &sd);
  g->mean_achieved = 0;
  for (int l = 0; l < g->layers; l++) {
    g->achieved[l] /= n;
    g->mean_achieved += g->achieved[l] / g->layers;
  }
  g->mean_len = n_len ? len_sum / n_len : 0;
}

/* A label no other group has: the seed-stripped name, numbered on a clash. */
static void set_label(Report *rep, int gi) {
  ReportGroup *g = &rep->groups[gi];
  char base[REPORT_NAME_MAX];
  strip_seed(rep->runs[g->runs[0]].name, base, sizeof base);
  snprintf(g->label, sizeof g->label, "%s", base);
  for (int k = 2;; k++) {
    bool clash = false;
    for (int j = 0; j < gi; j++)
      clash |= !strcmp(rep->groups[j].label, g->label);
    if (!clash)
      return;
    snprintf(g->label, sizeof g->label, "%.100s (%d)", base, k);
  }
}

int report_group(Report *rep, char *err, size_t cap) {
  rep->groups = calloc((size_t)(rep->n_runs ? rep->n_runs : 1), sizeof *rep->groups);
  if (!rep->groups) {
    snprintf(err, cap, "report: out of memory");
    return -1;
  }
  for (int i = 0; i < rep->n_runs; i++) {
    int gi = 0;
    while (gi < rep->n_groups &&
           strcmp(rep->runs[rep->groups[gi].runs[0]].group_key, rep->runs[i].group_key))
      gi++;
    ReportGroup *g = &rep->groups[gi];
    if (gi == rep->n_groups) {
      rep->n_groups++;
      g->runs = calloc((size_t)rep->n_runs, sizeof(int));
      if (!g->runs) {
        snprintf(err, cap, "report: out of memory");
        return -1;
      }
      g->dense = !strcmp(rep->runs[i].select, "none");
      snprintf(g->select, sizeof g->select, "%s", rep->runs[i].select);
    }
    g->runs[g->n_runs++] = i;
  }
  for (int gi = 0; gi < rep->n_groups; gi++) {
    set_label(rep, gi);
    group_stats(rep, &rep->groups[gi]);
  }
  g_runs = rep->runs;
  qsort(rep->groups, (size_t)rep->n_groups, sizeof *rep->groups, group_cmp);
  /* the baseline: a dense configuration, one named "baseline" if there are several */
  rep->baseline = -1;
  for (int gi = 0; gi < rep->n_groups; gi++)
    if (rep->groups[gi].dense && rep->groups[gi].n_eval > 0 &&
        (rep->baseline < 0 || strstr(rep->groups[gi].label, "baseline")))
      if (rep->baseline < 0 || !strstr(rep->groups[rep->baseline].label, "baseline"))
        rep->baseline = gi;
  return 0;
}

void report_free(Report *rep) {
  for (int i = 0; i < rep->n_runs; i++)
    report_run_free(&rep->runs[i]);
  for (int g = 0; g < rep->n_groups; g++)
    free(rep->groups[g].runs);
  free(rep->runs);
  free(rep->groups);
  *rep = (Report){0};
}
