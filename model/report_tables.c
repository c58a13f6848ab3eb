/* report_tables.c: report.md — Table 1 (accuracy per configuration, with seeds),
 * Table 2 (FLOPs reduction, overall and per layer), the figures' links and how every
 * number is computed (see docs/report.md). */
#include "report.h"

#include "svg.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define P svg_printf

static const ReportRun *run_of(const Report *rep, const ReportGroup *g, int i) {
  return &rep->runs[g->runs[i]];
}

/* † stopped before the end of its schedule (summary.json says unfinished), ‡ no
 * summary.json (in progress, interrupted or killed). */
static const char *mark(const ReportRun *r) {
  return !r->has_summary ? "‡" : !r->finished ? "†" : "";
}

static void runs_list(Svg *t, const Report *rep) {
  P(t, "%d run%s in %d configuration%s:\n\n", rep->n_runs, rep->n_runs == 1 ? "" : "s",
    rep->n_groups, rep->n_groups == 1 ? "" : "s");
  for (int gi = 0; gi < rep->n_groups; gi++) {
    const ReportGroup *g = &rep->groups[gi];
    P(t, "- **%s**:", g->label);
    for (int i = 0; i < g->n_runs; i++) {
      const ReportRun *r = run_of(rep, g, i);
      P(t, "%s `%s` (seed %lld, %s%s)", i ? "," : "", r->dir, (long long)r->seed,
        !r->has_summary ? "no summary.json" : r->finished ? "finished" : "stopped early",
        r->evaluated ? "" : ", not evaluated yet");
    }
    P(t, "\n");
  }
  P(t, "\n");
}

static void pct_or_dash(Svg *t, double x, int dec, const char *unit) {
  if (isfinite(x))
    P(t, "%.*f%s", dec, 100 * x, unit);
  else
    P(t, "—");
}

/* The step of the evaluation reported (the step reached, before any), of the steps
 * scheduled. */
static int64_t shown_step(const ReportRun *r) { return r->evaluated ? r->eval_step : r->steps; }

/* Steps (once when the seeds agree) and the epochs they make. */
static void steps_cells(Svg *t, const Report *rep, const ReportGroup *g) {
  for (int i = 0; i < g->n_runs; i++) {
    const ReportRun *r = run_of(rep, g, i), *q = i ? run_of(rep, g, i - 1) : NULL;
    if (!q || shown_step(r) != shown_step(q) || r->total_steps != q->total_steps)
      P(t, "%s%lld/%lld", i ? ", " : "", (long long)shown_step(r), (long long)r->total_steps);
  }
  const ReportRun *r0 = run_of(rep, g, 0);
  P(t, " | %.2f | ", r0->total_steps > 0 ? (double)r0->epochs * (double)shown_step(r0) /
                                                (double)r0->total_steps : 0);
}

static void table1_row(Svg *t, const Report *rep, int gi) {
  const ReportGroup *g = &rep->groups[gi];
  const ReportRun *r0 = run_of(rep, g, 0);
  P(t, "| %s | %s | %s | ", g->label, r0->select, g->dense ? "—" : r0->budget);
  pct_or_dash(t, r0->target, 0, "%");
  P(t, " | %d | ", g->n_runs);
  if (!g->n_eval) {
    P(t, "not evaluated yet | | | | ");
    steps_cells(t, rep, g);
    P(t, "— |\n");
    return;
  }
  pct_or_dash(t, g->acc_mean, 2, "%");
  P(t, " | ");
  pct_or_dash(t, g->acc_std, 2, " pp");
  P(t, " | ");
  for (int i = 0, k = 0; i < g->n_runs; i++) {
    const ReportRun *r = run_of(rep, g, i);
    if (r->evaluated)
      P(t, "%s%d/%d%s (s%lld)", k++ ? ", " : "", r->correct, r->total, mark(r),
        (long long)r->seed);
  }
  P(t, " | %.4f | ", g->loss_mean);
  steps_cells(t, rep, g);
  if (rep->baseline < 0 || gi == rep->baseline)
    P(t, "— |\n");
  else
    P(t, "%+.2f pp |\n", 100 * (g->acc_mean - rep->groups[rep->baseline].acc_mean));
}

static void table1(Svg *t, const Report *rep) {
  P(t, "## Table 1: accuracy per configuration\n\n"
       "SST-2 dev accuracy after the last evaluation of each run (the paper's \"Final "
       "Accuracy\"), mean and sample standard deviation (n - 1) over the seeds of a "
       "configuration, each seed's count, the mean validation loss, the optimizer step "
       "of that evaluation / the steps scheduled, the epochs that makes, and the "
       "difference of the mean to the dense baseline in percentage points.\n\n");
  P(t, "| Configuration | select | budget | target s | seeds | accuracy (mean) | std | "
       "counts | val loss | steps | epochs | vs. baseline |\n"
       "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (int gi = 0; gi < rep->n_groups; gi++)
    table1_row(t, rep, gi);
  P(t, "\n† stopped before the end of its schedule (`max_steps`); ‡ no summary.json yet "
       "(in progress or interrupted): its last evaluation in metrics.jsonl is used.\n\n");
}

/* L for a group: --seq-len, else the measured mean. */
static double seq_len(const Report *rep, const ReportGroup *g) {
  return rep->seq_len_override > 0 ? rep->seq_len_override : g->mean_len;
}

/* The model-wide reduction: layers differ only in s_l, so it is the mean of theirs. */
static double reduction(const ReportGroup *g, double L, FlopsMode m, bool layer) {
  double sum = 0;
  for (int l = 0; l < g->layers; l++) {
    LayerFlops x = report_layer_flops(g->hidden, g->intermediate, L, g->achieved[l], m,
                                      report_select_passes(g->select));
    sum += layer ? report_layer_reduction(x) : report_attn_reduction(x);
  }
  return g->layers ? sum / g->layers : NAN;
}

static bool flops_known(const Report *rep, const ReportGroup *g) {
  return g->n_eval > 0 && g->hidden > 0 && seq_len(rep, g) > 0;
}

static void table2(Svg *t, const Report *rep) {
  P(t, "## Table 2: theoretical FLOPs reduction\n\n"
       "From each configuration's achieved per-layer sparsity s_l (mean over seeds), "
       "for the model's shape (hidden d, FFN f) and L tokens per sentence (%s). "
       "*paper*: every attention product scales with 1 - s (the paper's count); "
       "*crisp train*: a training step with crisp's kept-only kernels (the score pass "
       "Q·Kᵀ stays dense — forward and both backward recomputations —, the products "
       "with P or dS scale with 1 - s; head_quantile and layer_quantile add the select "
       "kernels' 3 score passes); *crisp infer*: the forward only. All against the dense "
       "kernel (select none); negative: more FLOPs than dense. \"Layer\" is the share of "
       "one encoder layer's FLOPs (attention + Q/K/V/output projections + FFN) saved. "
       "Formulas below.\n\n",
    rep->seq_len_override > 0 ? "given by --seq-len" : "the measured mean of the training "
                                                       "sentences");
  P(t, "| Configuration | achieved s | Attn. (paper) | Layer (paper) | Attn. (crisp train) | "
       "Layer (crisp train) | Attn. (crisp infer) | Layer (crisp infer) | d, f, L |\n"
       "|---|---|---|---|---|---|---|---|---|\n");
  static const FlopsMode modes[] = {FLOPS_ALL_SCALE, FLOPS_TRAIN, FLOPS_INFER};
  for (int gi = 0; gi < rep->n_groups; gi++) {
    const ReportGroup *g = &rep->groups[gi];
    P(t, "| %s | ", g->label);
    if (!flops_known(rep, g)) {
      P(t, "%s | | | | | | | |\n", !g->n_eval ? "not evaluated yet"
                                              : "model shape or length unknown");
      continue;
    }
    double L = seq_len(rep, g);
    P(t, "%.3f |", g->mean_achieved);
    for (int m = 0; m < 3; m++)
      P(t, " %.1f%% | %.2f%% |", 100 * reduction(g, L, modes[m], false),
        100 * reduction(g, L, modes[m], true));
    P(t, " %d, %d, %.1f |\n", g->hidden, g->intermediate, L);
  }
  P(t, "\n### Per layer\n\nAchieved sparsity s_l and the layer's FLOPs saved in a crisp "
       "training step (*crisp train*).\n\n| Configuration |");
  int maxl = 0;
  for (int gi = 0; gi < rep->n_groups; gi++)
    maxl = rep->groups[gi].layers > maxl ? rep->groups[gi].layers : maxl;
  for (int l = 0; l < maxl; l++)
    P(t, " layer %d |", l + 1);
  P(t, "\n|---|");
  for (int l = 0; l < maxl; l++)
    P(t, "---|");
  P(t, "\n");
  for (int gi = 0; gi < rep->n_groups; gi++) {
    const ReportGroup *g = &rep->groups[gi];
    P(t, "| %s |", g->label);
    for (int l = 0; l < maxl; l++) {
      if (l >= g->layers) {
        P(t, " |");
        continue;
      }
      P(t, " %.3f", g->achieved[l]);
      if (flops_known(rep, g))
        P(t, " / %.2f%%",
          100 * report_layer_reduction(report_layer_flops(g->hidden, g->intermediate,
                                                           seq_len(rep, g), g->achieved[l],
                                                           FLOPS_TRAIN,
                                                           report_select_passes(g->select))));
      P(t, " |");
    }
    P(t, "\n");
  }
  P(t, "\n");
}

static double run_pearson(const Report *rep, int *n_out) {
  double x[4096], y[4096];
  int n = 0;
  for (int i = 0; i < rep->n_runs && n < 4096; i++)
    if (rep->runs[i].evaluated)
      x[n] = rep->runs[i].mean_achieved, y[n++] = rep->runs[i].accuracy;
  *n_out = n;
  return report_pearson(x, y, n);
}

static void figures(Svg *t, const Report *rep) {
  int n;
  double r = run_pearson(rep, &n);
  P(t, "## Figures\n\n");
  P(t, "**Figure 1** — accuracy against mean achieved sparsity, one point per run "
       "(configuration means as crosses); Pearson's r over the %d evaluated runs: ", n);
  if (isfinite(r))
    P(t, "%.3f.\n\n", r);
  else
    P(t, "n/a (needs 3 runs and spread in both).\n\n");
  P(t, "![Figure 1](fig1.svg)\n\n");
  P(t, "**Figure 2** — achieved sparsity per layer at the last evaluation (mean over "
       "seeds).\n\n![Figure 2](fig2.svg)\n\n");
  P(t, "**Figure 3** — distribution of the per-head attention entropy (nats, of the "
       "kept distributions, mean over the dev set) at the last evaluation: every head "
       "of every layer and seed; the box spans the quartiles, the bar is the "
       "median.\n\n![Figure 3](fig3.svg)\n\n");
  P(t, "**Figure 4** — training loss per optimizer step (moving average) and validation "
       "loss at each evaluation, per run.\n\n![Figure 4](fig4.svg)\n\n");
}

static void formulas(Svg *t) {
  P(t, "## How the numbers are computed\n\n"
       "- Accuracy, count x/N, validation loss: the run's last evaluation "
       "(summary.json, else the last `eval` line of metrics.jsonl). Std: sample "
       "standard deviation (n - 1), \"—\" for one seed. Runs are seeds of one "
       "configuration when their config.json agree on everything but `name`, `seed` and "
       "bookkeeping keys (threads, device, impl, runs_dir, eval/checkpoint/log "
       "frequency, eval_batch, max_steps).\n"
       "- FLOPs per layer and sentence of L tokens, hidden d, FFN f (multiply-add = 2; "
       "softmax, LayerNorm, GELU not counted): linear = 2L(4d² + 2df) forward, ×3 "
       "for training (forward, dX, dW); one L×L attention product over all heads "
       "= 2L²d. Forward: scores Q·Kᵀ (dense) + P·V (× (1 - s)). Training with crisp's "
       "kernels: 3 dense score passes (forward; recomputed by both backward kernels) + "
       "6 products × (1 - s) (P·V; dP = dO·Vᵀ in each backward kernel; dQ, dK, dV). "
       "head_quantile and layer_quantile: + 3 dense score passes in the forward (the "
       "select kernels' radix rounds each recompute every score). The paper's count "
       "scales all attention products with (1 - s) and has no selection cost. Attention "
       "reduction = 1 - attn(s)/attn_dense; layer reduction = (attn_dense - attn(s)) / "
       "(linear + attn_dense), attn_dense being the dense kernel's (select none); the "
       "model's = the mean over layers.\n"
       "- L: valid tokens per training sentence, train_tokens / (steps × batch_size × "
       "grad_accum) (the last, shorter group of an epoch makes it a slight "
       "underestimate); attention cost grows with L², so a mix of lengths saves more "
       "than this mean suggests.\n\n");
}

char *report_markdown(const Report *rep) {
  Svg t = {0};
  P(&t, "# crisp report\n\n");
  runs_list(&t, rep);
  table1(&t, rep);
  table2(&t, rep);
  figures(&t, rep);
  formulas(&t);
  return svg_take(&t, NULL);
}
