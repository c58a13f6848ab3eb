/* train_budget.c: test_train's sparsity budgets: re-centring (the mean equals the
 * target, clipping holds), the first batch is uniform, the EMA, the list kind, the
 * entropy rule, error cases. Apart because budgets are pure arithmetic over
 * per-layer numbers, with no model or files. */
#define CHECK_SHARED
#include "check.h"
#include "train_test.h"
#include "train.h"

#include "../runtime/fsutil.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- budgets ---------------------------------------------------------------------- */

static double mean_of(const double *x, int n) {
  double s = 0;
  for (int i = 0; i < n; i++)
    s += x[i];
  return s / n;
}

void test_budget(void) {
  char err[512];
  /* re-centring on random inputs, with and without clipping */
  uint64_t s = 12345;
  for (int trial = 0; trial < 500; trial++) {
    int n = 1 + (int)(s % 12);
    double x[64], out[64];
    for (int i = 0; i < n; i++) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      x[i] = (double)(s >> 11) / 9007199254740992.0 * 1.6 - 0.3;   /* -0.3 .. 1.3 */
    }
    double lo = 0.3 + 0.1 * (trial % 3), hi = 0.9 + 0.02 * (trial % 4), target = 0.5 + 0.3 * (trial % 2);
    budget_recenter(x, n, target, lo, hi, out);
    double m = mean_of(out, n);
    bool in = true;
    for (int i = 0; i < n; i++)
      in &= out[i] >= lo && out[i] <= hi;
    CHECK(fabs(m - target) <= 1e-14, "trial %d: mean %.17g vs target %g", trial, m, target);
    CHECK(in, "trial %d: a layer outside [%g, %g]", trial, lo, hi);
    /* order is kept: a larger raw value never gets a smaller sparsity */
    for (int i = 0; i < n; i++)
      for (int j = 0; j < n; j++)
        if (x[i] > x[j] && out[i] < out[j] - 1e-15)
          CHECK(false, "trial %d: order broken", trial);
  }
  /* no clipping: a plain shift */
  double x[4] = {0.1, 0.2, 0.3, 0.4}, out[4];
  budget_recenter(x, 4, 0.8, 0, 0.99, out);
  CHECK(fabs(out[0] - 0.65) < 1e-12 && fabs(out[3] - 0.95) < 1e-12, "shift: %g %g", out[0], out[3]);
  /* clipping at the top moves the rest */
  double y[3] = {0.0, 0.0, 1.0};
  budget_recenter(y, 3, 0.8, 0.5, 0.9, out);
  CHECK(out[2] == 0.9 && fabs(out[0] - 0.75) < 1e-12 && fabs(mean_of(out, 3) - 0.8) < 1e-15,
        "clip: %g %g %g", out[0], out[1], out[2]);

  /* adaptive: uniform first, then centred on the target */
  BudgetConfig bc = {.kind = BUDGET_ADAPTIVE, .target = 0.8, .gain = 2.0, .s_min = 0.6,
                     .s_max = 0.95, .ema = 0.5};
  Budget b;
  CHECK(budget_init(&b, &bc, 6, err, sizeof err) == 0, "%s", err);
  bool uniform = true;
  for (int l = 0; l < 6; l++)
    uniform &= b.s[l] == 0.8;
  CHECK(uniform, "the first batch is uniform");
  double c1[6] = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6};
  budget_observe(&b, c1);
  CHECK(fabs(mean_of(b.s, 6) - 0.8) < 1e-14, "adaptive mean %.17g", mean_of(b.s, 6));
  CHECK(b.s[0] < b.s[5] && b.s[0] >= 0.6 && b.s[5] <= 0.95, "concentrated layers prune more");
  CHECK(b.c_ema[2] == 0.3, "first observation seeds the EMA");
  double c2[6] = {0.3, 0.2, 0.3, 0.4, 0.5, 0.6};
  budget_observe(&b, c2);
  CHECK(fabs(b.c_ema[0] - 0.2) < 1e-15 && b.updates == 2, "EMA: %g", b.c_ema[0]);
  CHECK(fabs(mean_of(b.s, 6) - 0.8) < 1e-14, "adaptive mean after 2");
  /* uniform ignores observations; gain 0 stays uniform */
  bc.kind = BUDGET_UNIFORM;
  CHECK(budget_init(&b, &bc, 6, err, sizeof err) == 0, "%s", err);
  budget_observe(&b, c1);
  CHECK(b.s[0] == 0.8 && b.s[5] == 0.8, "uniform stays");
  bc.kind = BUDGET_ADAPTIVE, bc.gain = 0;
  CHECK(budget_init(&b, &bc, 6, err, sizeof err) == 0, "%s", err);
  budget_observe(&b, c1);
  CHECK(fabs(b.s[0] - 0.8) < 1e-15 && fabs(b.s[5] - 0.8) < 1e-15, "gain 0 stays uniform");
  /* list */
  BudgetConfig lc = {.kind = BUDGET_LIST, .n_list = 3, .list = {0.5, 0.7, 0.9}};
  CHECK(budget_init(&b, &lc, 3, err, sizeof err) == 0 && b.s[1] == 0.7, "list");
  CHECK(budget_init(&b, &lc, 6, err, sizeof err) == -1 && strstr(err, "6 layers"),
        "list of the wrong length: %s", err);
  bc.s_min = 0.85;
  CHECK(budget_init(&b, &bc, 6, err, sizeof err) == -1, "target below s_min refused");
}

/* The adaptive rule fed known per-row entropies through a model's saved rows: two
 * layers, two heads, batch rows of length 4 and 1 (the latter, and padding, hold
 * garbage that must be skipped). Kept entropy 0.1 log 2 over 2 kept keys in both
 * layers (c = 0.9 each: no spread); dense entropy 0.5 log 4 and 0.25 log 4 (c = 0.5
 * and 0.75). Target 0.8, gain 1: dense gives s = 0.8 + (c - 0.625) = 0.675, 0.925. */
void test_budget_entropy(void) {
  enum { L = 2, H = 2, Bt = 2, Nt = 4, ROWS = Bt * H * Nt };
  float ent[L][ROWS], dent[L][ROWS];
  int32_t kept[L][ROWS], lengths[Bt] = {4, 1};
  LayerActs acts[L];
  Model m;
  memset(&m, 0, sizeof m);
  memset(acts, 0, sizeof acts);
  m.cfg.layers = L, m.cfg.heads = H, m.B = Bt, m.N = Nt;
  m.a.lengths = lengths, m.a.layer = acts;
  for (int l = 0; l < L; l++) {
    acts[l].rows = (AttnRows){.entropy = ent[l], .dense_entropy = dent[l], .kept = kept[l]};
    for (int r = 0; r < ROWS; r++) {
      bool valid = r / (H * Nt) == 0;   /* batch row 0: every position valid */
      ent[l][r] = valid ? (float)(0.1 * log(2.0)) : 5.0f;
      dent[l][r] = valid ? (float)((l ? 0.25 : 0.5) * log(4.0)) : 5.0f;
      kept[l][r] = valid ? 2 : 1;
    }
  }
  BudgetConfig bc = {.kind = BUDGET_ADAPTIVE, .target = 0.8, .gain = 1.0, .s_min = 0.5,
                     .s_max = 0.95, .ema = 0.9};
  double c[L];
  bc.entropy = BUDGET_ENTROPY_DENSE;
  budget_concentration(&m, &bc, c);
  CHECK(fabs(c[0] - 0.5) < 1e-6 && fabs(c[1] - 0.75) < 1e-6, "dense concentration %g %g", c[0],
        c[1]);
  Budget b;
  char err[256];
  CHECK(budget_init(&b, &bc, L, err, sizeof err) == 0, "%s", err);
  budget_observe(&b, c);
  CHECK(fabs(b.s[0] - 0.675) < 1e-6 && fabs(b.s[1] - 0.925) < 1e-6, "dense s_l %g %g", b.s[0],
        b.s[1]);
  bc.norm = BUDGET_NORM_KEPT;   /* ignored for the dense entropy */
  budget_concentration(&m, &bc, c);
  CHECK(fabs(c[0] - 0.5) < 1e-6, "dense ignores budget.norm: %g", c[0]);
  bc.entropy = BUDGET_ENTROPY_KEPT;
  budget_concentration(&m, &bc, c);
  CHECK(fabs(c[0] - 0.9) < 1e-6 && fabs(c[1] - 0.9) < 1e-6, "kept concentration %g %g", c[0],
        c[1]);
  CHECK(budget_init(&b, &bc, L, err, sizeof err) == 0, "%s", err);
  budget_observe(&b, c);
  CHECK(fabs(b.s[0] - 0.8) < 1e-12 && fabs(b.s[1] - 0.8) < 1e-12, "kept s_l %g %g", b.s[0],
        b.s[1]);
  bc.norm = BUDGET_NORM_LENGTH;   /* 0.1 log 2 / log 4 = 0.05 */
  budget_concentration(&m, &bc, c);
  CHECK(fabs(c[0] - 0.95) < 1e-6, "kept / log(length): %g", c[0]);
}

