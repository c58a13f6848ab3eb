/* budget.c: the sparsity of every layer (uniform, adaptive, an explicit list); see
 * train.h and docs/training.md ("Budgets across layers"). */
#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *budget_kind_name(BudgetKind k) {
  return k == BUDGET_UNIFORM ? "uniform" : k == BUDGET_ADAPTIVE ? "adaptive" : "list";
}

int budget_init(Budget *b, const BudgetConfig *cfg, int layers, char *err, size_t cap) {
  memset(b, 0, sizeof *b);
  b->cfg = *cfg;
  b->layers = layers;
  if (layers < 1 || layers > MODEL_MAX_LAYERS) {
    snprintf(err, cap, "budget: %d layers (1..%d)", layers, MODEL_MAX_LAYERS);
    return -1;
  }
  if (cfg->kind == BUDGET_LIST) {
    if (cfg->n_list != layers) {
      snprintf(err, cap, "budget: \"layers\" lists %d sparsities but the model has %d layers",
               cfg->n_list, layers);
      return -1;
    }
    for (int l = 0; l < layers; l++)
      b->s[l] = cfg->list[l];
    return 0;
  }
  if (!(cfg->target >= 0 && cfg->target < 1)) {
    snprintf(err, cap, "budget: target %g is outside [0, 1)", cfg->target);
    return -1;
  }
  if (cfg->kind == BUDGET_ADAPTIVE &&
      !(cfg->s_min <= cfg->target && cfg->target <= cfg->s_max && cfg->s_min >= 0 &&
        cfg->s_max < 1)) {
    snprintf(err, cap, "budget: need 0 <= s_min (%g) <= target (%g) <= s_max (%g) < 1",
             cfg->s_min, cfg->target, cfg->s_max);
    return -1;
  }
  for (int l = 0; l < layers; l++)
    b->s[l] = cfg->target;   /* the first batch is uniform */
  return 0;
}

static double clipd(double x, double lo, double hi) { return x < lo ? lo : x > hi ? hi : x; }

static double mean_clipped(const double *x, int n, double t, double lo, double hi) {
  double s = 0;
  for (int i = 0; i < n; i++)
    s += clipd(x[i] + t, lo, hi);
  return s / n;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

void budget_recenter(const double *x, int n, double target, double lo, double hi, double *out) {
  if (n <= 0)
    return;
  target = clipd(target, lo, hi);
  /* f(t) = mean clip(x + t) rises piecewise linearly from lo to hi between the
   * breakpoints lo - x_l and hi - x_l: find the segment holding target, interpolate. */
  double bp[2 * MODEL_MAX_LAYERS];
  int nb = 0;
  for (int i = 0; i < n && nb + 2 <= 2 * MODEL_MAX_LAYERS; i++)
    bp[nb++] = lo - x[i], bp[nb++] = hi - x[i];
  qsort(bp, (size_t)nb, sizeof *bp, cmp_double);
  double t = bp[nb - 1];
  double prev_t = bp[0], prev_f = mean_clipped(x, n, bp[0], lo, hi);
  if (prev_f >= target) {
    t = bp[0];
  } else {
    for (int i = 1; i < nb; i++) {
      double f = mean_clipped(x, n, bp[i], lo, hi);
      if (f >= target) {
        t = f > prev_f ? prev_t + (target - prev_f) * (bp[i] - prev_t) / (f - prev_f) : bp[i];
        break;
      }
      prev_t = bp[i], prev_f = f;
    }
  }
  for (int i = 0; i < n; i++)
    out[i] = clipd(x[i] + t, lo, hi);
  /* the rounding residue (a few ulps) goes to the layers strictly inside the range */
  for (int pass = 0; pass < 3; pass++) {
    double sum = 0;
    int free_n = 0;
    for (int i = 0; i < n; i++)
      sum += out[i], free_n += out[i] > lo && out[i] < hi;
    double r = target * n - sum;
    if (r == 0 || free_n == 0)
      break;
    for (int i = 0; i < n; i++)
      if (out[i] > lo && out[i] < hi)
        out[i] = clipd(out[i] + r / free_n, lo, hi);
  }
}

void budget_observe(Budget *b, const double *c) {
  if (b->cfg.kind != BUDGET_ADAPTIVE)
    return;
  int L = b->layers;
  double a = b->cfg.ema;
  for (int l = 0; l < L; l++) {
    b->c_last[l] = c[l];
    b->c_ema[l] = b->updates == 0 ? c[l] : a * b->c_ema[l] + (1 - a) * c[l];
  }
  b->updates++;
  double mean = 0;
  for (int l = 0; l < L; l++)
    mean += b->c_ema[l];
  mean /= L;
  double raw[MODEL_MAX_LAYERS];
  for (int l = 0; l < L; l++)
    raw[l] = b->cfg.target + b->cfg.gain * (b->c_ema[l] - mean);
  budget_recenter(raw, L, b->cfg.target, b->cfg.s_min, b->cfg.s_max, b->s);
}

void budget_concentration(const Model *m, const BudgetConfig *cfg, double *c) {
  int B = m->B, N = m->N, H = m->cfg.heads;
  bool dense = cfg->entropy == BUDGET_ENTROPY_DENSE;
  BudgetNorm norm = dense ? BUDGET_NORM_LENGTH : cfg->norm;
  for (int l = 0; l < m->cfg.layers; l++) {
    const AttnRows *r = &m->a.layer[l].rows;
    const float *ent = dense ? r->dense_entropy : r->entropy;
    double sum = 0, rows = 0;
    for (int b = 0; b < B; b++) {
      int L = m->a.lengths[b];
      for (int h = 0; h < H; h++)
        for (int i = 0; i < L; i++) {
          size_t at = ((size_t)b * H + h) * N + i;
          int n = norm == BUDGET_NORM_KEPT ? r->kept[at] : L;
          if (n < 2)
            continue;
          double hn = ent[at] / log((double)n);
          sum += 1.0 - (hn < 0 ? 0 : hn > 1 ? 1 : hn);
          rows++;
        }
    }
    c[l] = rows > 0 ? sum / rows : 0;
  }
}

void budget_apply(const Budget *b, Model *m) {
  for (int l = 0; l < b->layers; l++)
    m->attn.sparsity[l] = (float)b->s[l];
}
