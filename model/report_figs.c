/* report_figs.c: the paper's Figures 1-4 as SVG (see docs/report.md):
 *   1 accuracy against mean achieved sparsity, one point per run, Pearson's r
 *   2 achieved sparsity per layer, one line per configuration
 *   3 per-head attention entropy, a box and the points per configuration
 *   4 training loss and validation loss against optimizer steps, per run */
#include "report.h"

#include "svg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_LEGEND = 64 };

/* Colours and names per configuration, for plot_legend. */
typedef struct Legend {
  const char *names[MAX_LEGEND], *colors[MAX_LEGEND];
  int n;
} Legend;

static Legend legend_of(const Report *rep) {
  Legend lg = {.n = rep->n_groups < MAX_LEGEND ? rep->n_groups : MAX_LEGEND};
  for (int g = 0; g < lg.n; g++)
    lg.names[g] = rep->groups[g].label, lg.colors[g] = svg_color(g);
  return lg;
}

static void widen(double *lo, double *hi, double v) {
  if (isfinite(v)) {
    *lo = v < *lo ? v : *lo;
    *hi = v > *hi ? v : *hi;
  }
}

static void no_data(Svg *s, const Plot *p) {
  svg_text(s, p->px + p->pw / 2, p->py + p->ph / 2, "middle", 13, 0, false,
           "no evaluated runs");
}

/* A canvas wide enough for the legend at legend_x, however long the run names. */
static double canvas_width(const Report *rep, double base, double legend_x) {
  Legend lg = legend_of(rep);
  double need = legend_x + plot_legend_width(lg.names, lg.n) + 10;
  return need > base ? need : base;
}

static char *fig1(const Report *rep, size_t *len) {
  Svg s;
  svg_begin(&s, canvas_width(rep, 760, 570), 470, "Figure 1: accuracy vs. mean achieved sparsity");
  double lo = INFINITY, hi = -INFINITY, xs[4096], ys[4096];
  int n = 0;
  for (int i = 0; i < rep->n_runs && n < 4096; i++)
    if (rep->runs[i].evaluated) {
      xs[n] = rep->runs[i].mean_achieved, ys[n] = 100 * rep->runs[i].accuracy;
      widen(&lo, &hi, ys[n++]);
    }
  if (!n)
    lo = 0, hi = 100;
  double pad = (hi - lo) * 0.1 + 0.05;
  Plot p;
  plot_init(&p, 75, 45, 480, 350, 0, 1, lo - pad, hi + pad, true, true);
  double r = report_pearson(xs, ys, n);
  char title[128];
  if (isfinite(r))
    snprintf(title, sizeof title, "Accuracy vs. sparsity (Pearson r = %.3f, %d runs)", r, n);
  else
    snprintf(title, sizeof title, "Accuracy vs. sparsity (%d runs; r needs 3)", n);
  plot_axes(&s, &p, "mean achieved attention sparsity", "dev accuracy (%)", title, NULL, 0);
  if (!n)
    no_data(&s, &p);
  if (isfinite(r)) {  /* least-squares line over the runs */
    double mx = 0, my = 0, sxy = 0, sxx = 0;
    for (int i = 0; i < n; i++)
      mx += xs[i] / n, my += ys[i] / n;
    for (int i = 0; i < n; i++)
      sxy += (xs[i] - mx) * (ys[i] - my), sxx += (xs[i] - mx) * (xs[i] - mx);
    double b = sxy / sxx, lx[2] = {0, 1}, ly[2] = {my - b * mx, my + b * (1 - mx)};
    plot_line(&s, &p, lx, ly, 2, "#888888", 1.2, "5 4", 0);
  }
  for (int g = 0; g < rep->n_groups; g++) {
    const ReportGroup *gr = &rep->groups[g];
    for (int i = 0; i < gr->n_runs; i++) {
      const ReportRun *run = &rep->runs[gr->runs[i]];
      if (run->evaluated)
        svg_circle(&s, plot_x(&p, run->mean_achieved), plot_y(&p, 100 * run->accuracy), 5,
                   svg_color(g), "white");
    }
    if (gr->n_eval) {  /* the configuration's mean: a cross */
      double cx = plot_x(&p, gr->mean_achieved), cy = plot_y(&p, 100 * gr->acc_mean);
      svg_line(&s, cx - 8, cy, cx + 8, cy, svg_color(g), 2.5, NULL);
      svg_line(&s, cx, cy - 8, cx, cy + 8, svg_color(g), 2.5, NULL);
    }
  }
  Legend lg = legend_of(rep);
  plot_legend(&s, 570, 45, lg.names, lg.colors, lg.n);
  return svg_end(&s, len);
}

static char *fig2(const Report *rep, size_t *len) {
  Svg s;
  svg_begin(&s, canvas_width(rep, 760, 570), 470, "Figure 2: achieved sparsity per layer");
  int maxl = 0;
  for (int g = 0; g < rep->n_groups; g++)
    maxl = rep->groups[g].layers > maxl ? rep->groups[g].layers : maxl;
  char names[REPORT_MAX_LAYERS][12];
  const char *cat[REPORT_MAX_LAYERS];
  for (int l = 0; l < maxl; l++)
    snprintf(names[l], sizeof names[l], "%d", l + 1), cat[l] = names[l];
  Plot p;
  plot_init(&p, 75, 45, 480, 350, -0.5, maxl > 0 ? maxl - 0.5 : 0.5, 0, 1, false, true);
  plot_axes(&s, &p, "layer", "achieved sparsity", "Sparsity per layer (last evaluation)", cat,
            maxl);
  if (!maxl)
    no_data(&s, &p);
  for (int g = 0; g < rep->n_groups; g++) {
    const ReportGroup *gr = &rep->groups[g];
    double x[REPORT_MAX_LAYERS];
    for (int l = 0; l < gr->layers; l++)
      x[l] = l;
    plot_line(&s, &p, x, gr->achieved, gr->layers, svg_color(g), 2, g % 2 ? "6 3" : NULL, 4);
  }
  Legend lg = legend_of(rep);
  plot_legend(&s, 570, 45, lg.names, lg.colors, lg.n);
  return svg_end(&s, len);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Quantile q of sorted x (linear interpolation). */
static double quantile(const double *x, int n, double q) {
  double at = q * (n - 1);
  int i = (int)floor(at);
  return i + 1 < n ? x[i] + (at - i) * (x[i + 1] - x[i]) : x[n - 1];
}

/* The entropies of every evaluated run of a group (malloc'd, sorted). */
static double *group_entropies(const Report *rep, const ReportGroup *g, int *n) {
  int total = 0;
  for (int i = 0; i < g->n_runs; i++)
    if (rep->runs[g->runs[i]].evaluated)
      total += rep->runs[g->runs[i]].layers * rep->runs[g->runs[i]].heads;
  double *v = malloc(sizeof(double) * (size_t)(total ? total : 1));
  *n = 0;
  for (int i = 0; v && i < g->n_runs; i++) {
    const ReportRun *r = &rep->runs[g->runs[i]];
    for (int k = 0; r->evaluated && k < r->layers * r->heads; k++)
      v[(*n)++] = r->entropy[k];
  }
  if (v)
    qsort(v, (size_t)*n, sizeof *v, cmp_double);
  return v;
}

static void box(Svg *s, const Plot *p, int g, const double *v, int n) {
  const char *c = svg_color(g);
  double q1 = quantile(v, n, 0.25), med = quantile(v, n, 0.5), q3 = quantile(v, n, 0.75);
  double x = plot_x(p, g), w = p->pw / (p->xmax - p->xmin) * 0.5;
  svg_line(s, x, plot_y(p, v[0]), x, plot_y(p, v[n - 1]), c, 1.2, NULL);
  svg_rect(s, x - w / 2, plot_y(p, q3), w, plot_y(p, q1) - plot_y(p, q3), "white", c);
  svg_line(s, x - w / 2, plot_y(p, med), x + w / 2, plot_y(p, med), c, 2.5, NULL);
  for (int k = 0; k < n; k++) {  /* points spread by a fixed low-discrepancy jitter */
    double j = fmod(k * 0.6180339887, 1.0) - 0.5;
    svg_circle(s, x + j * w * 0.9, plot_y(p, v[k]), 2.2, c, NULL);
  }
}

static char *fig3(const Report *rep, size_t *len) {
  Svg s;
  svg_begin(&s, 760, 470, "Figure 3: per-head attention entropy");
  double lo = 0, hi = -INFINITY;
  const char *cat[MAX_LEGEND];
  int ng = rep->n_groups < MAX_LEGEND ? rep->n_groups : MAX_LEGEND;
  for (int g = 0; g < ng; g++) {
    cat[g] = rep->groups[g].label;
    int n;
    double *v = group_entropies(rep, &rep->groups[g], &n);
    for (int k = 0; v && k < n; k++)
      widen(&lo, &hi, v[k]);
    free(v);
  }
  if (!isfinite(hi))
    hi = 1;
  Plot p;
  plot_init(&p, 75, 45, 640, 350, -0.5, ng > 0 ? ng - 0.5 : 0.5, lo, hi, false, true);
  plot_axes(&s, &p, NULL, "head entropy (nats)", "Attention entropy per head (last evaluation)",
            cat, ng);
  bool any = false;
  for (int g = 0; g < ng; g++) {
    int n;
    double *v = group_entropies(rep, &rep->groups[g], &n);
    if (!v) {
      s.oom = true;
      break;
    }
    if (n > 0)
      box(&s, &p, g, v, n), any = true;
    free(v);
  }
  if (!any)
    no_data(&s, &p);
  return svg_end(&s, len);
}

/* Trailing moving average over w steps, so a few hundred noisy steps read as a curve. */
static void smooth(const double *y, double *out, int n, int w) {
  double sum = 0;
  for (int i = 0; i < n; i++) {
    sum += y[i];
    if (i >= w)
      sum -= y[i - w];
    out[i] = sum / (i + 1 < w ? i + 1 : w);
  }
}

/* Each run's smoothed training loss (malloc'd, run order; NULL when out of memory). */
static double **smoothed_losses(const Report *rep) {
  double **y = calloc((size_t)(rep->n_runs ? rep->n_runs : 1), sizeof *y);
  for (int i = 0; y && i < rep->n_runs; i++) {
    const ReportRun *r = &rep->runs[i];
    if (!(y[i] = malloc(sizeof(double) * (size_t)(r->n_steps + 1)))) {
      for (int j = 0; j < i; j++)
        free(y[j]);
      free(y);
      return NULL;
    }
    smooth(r->step_loss, y[i], r->n_steps, r->n_steps / 20 > 1 ? r->n_steps / 20 : 1);
  }
  return y;
}

static void fig4_train(Svg *s, const Report *rep, double px) {
  double **y = smoothed_losses(rep), lo = INFINITY, hi = -INFINITY, xmax = 1;
  double *x = malloc(sizeof(double) * (size_t)(rep->n_runs ? rep->n_runs : 1));
  if (!y || !x) {
    s->oom = true;
    free(x), free(y);
    return;
  }
  for (int i = 0; i < rep->n_runs; i++)
    for (int k = 0; k < rep->runs[i].n_steps; k++)
      widen(&lo, &hi, y[i][k]), xmax = fmax(xmax, (double)rep->runs[i].step_at[k]);
  if (!isfinite(lo))
    lo = 0, hi = 1;
  Plot p;
  plot_init(&p, px, 45, 330, 330, 0, xmax, lo, hi, true, true);
  plot_axes(s, &p, "optimizer step", "training loss", "Training loss (moving average)", NULL, 0);
  for (int g = 0; g < rep->n_groups; g++)
    for (int i = 0; i < rep->groups[g].n_runs; i++) {
      int ri = rep->groups[g].runs[i];
      const ReportRun *r = &rep->runs[ri];
      double *xs = realloc(x, sizeof(double) * (size_t)(r->n_steps + 1));
      if (!xs) {
        s->oom = true;
        break;
      }
      x = xs;
      for (int k = 0; k < r->n_steps; k++)
        x[k] = (double)r->step_at[k];
      plot_line(s, &p, x, y[ri], r->n_steps, svg_color(g), 1.5, i % 2 ? "6 3" : NULL, 0);
    }
  for (int i = 0; i < rep->n_runs; i++)
    free(y[i]);
  free(y), free(x);
}

static void fig4_val(Svg *s, const Report *rep, double px) {
  double lo = INFINITY, hi = -INFINITY, xmax = 1;
  for (int i = 0; i < rep->n_runs; i++)
    for (int k = 0; k < rep->runs[i].n_evals; k++)
      widen(&lo, &hi, rep->runs[i].evals[k].val_loss),
          xmax = fmax(xmax, (double)rep->runs[i].evals[k].step);
  bool any = isfinite(lo);
  if (!any)
    lo = 0, hi = 1;
  Plot p;
  plot_init(&p, px, 45, 330, 330, 0, xmax, lo, hi, true, true);
  plot_axes(s, &p, "optimizer step", "validation loss", "Validation loss", NULL, 0);
  if (!any)
    no_data(s, &p);
  for (int g = 0; g < rep->n_groups; g++)
    for (int i = 0; i < rep->groups[g].n_runs; i++) {
      const ReportRun *r = &rep->runs[rep->groups[g].runs[i]];
      double x[1024], y[1024];
      int n = r->n_evals < 1024 ? r->n_evals : 1024;
      for (int k = 0; k < n; k++)
        x[k] = (double)r->evals[k].step, y[k] = r->evals[k].val_loss;
      plot_line(s, &p, x, y, n, svg_color(g), 1.8, i % 2 ? "6 3" : NULL, 3.5);
    }
}

static char *fig4(const Report *rep, size_t *len) {
  Svg s;
  svg_begin(&s, canvas_width(rep, 1000, 835), 450, "Figure 4: training and validation loss");
  fig4_train(&s, rep, 75);
  fig4_val(&s, rep, 490);
  Legend lg = legend_of(rep);
  plot_legend(&s, 835, 45, lg.names, lg.colors, lg.n);
  svg_text(&s, 835, 70 + 17.0 * lg.n, "start", 10, 0, false, "dashed: 2nd, 4th, ... seed");
  return svg_end(&s, len);
}

char *report_figure(const Report *rep, int k, size_t *len) {
  switch (k) {
  case 1: return fig1(rep, len);
  case 2: return fig2(rep, len);
  case 3: return fig3(rep, len);
  case 4: return fig4(rep, len);
  default: return NULL;
  }
}
