/* layers_model.c: the whole tiny DistilBERT and BERT, and the crisp kernels in it.
 *
 * Every parameter's gradient of the mean cross-entropy against finite differences
 * (training and eval, each selection mode), the model's input errors, and the same
 * model with attention through the JIT'd crisp kernels against the C reference.
 * Separate from the single layers because it needs a model (config, weights,
 * kernels) rather than a layer call. */
#include "attn_ref.h"
#include "compile.h"
#include "layers.h"
#include "layers_test.h"
#include "model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../templates/dropout.h"
#include "../templates/reference_bwd.h"

/* ---- the whole model ---------------------------------------------------------------- */

typedef struct ModelCtx {
  Model *m;
  const int32_t *ids, *len, *labels;
  int B, N;
  ModelRun run;
  uint64_t relu_sig;   /* the head's ReLU pattern at the last evaluation */
} ModelCtx;

static double model_loss(void *p) {
  ModelCtx *c = p;
  if (model_forward(c->m, c->ids, c->len, c->B, c->N, c->labels, &c->run)) {
    fprintf(stderr, "%s\n", c->m->err);
    abort();
  }
  uint64_t sig = 1469598103934665603ull;
  for (int i = 0; c->m->cfg.type == MODEL_DISTILBERT && i < c->B * c->m->cfg.hidden; i++)
    sig = (sig ^ (uint64_t)(c->m->a.pre[i] > 0)) * 1099511628211ull;
  c->relu_sig = sig;
  /* the loss in double from the float logits (less rounding than run.loss) */
  double L = 0;
  int K = c->m->cfg.num_labels;
  for (int b = 0; b < c->B; b++) {
    const float *z = c->run.logits + (size_t)b * K;
    double mx = z[0], s = 0;
    for (int k = 1; k < K; k++)
      mx = fmax(mx, z[k]);
    for (int k = 0; k < K; k++)
      s += exp(z[k] - mx);
    L += log(s) + mx - z[c->labels[b]];
  }
  return L / c->B;
}

static ModelConfig tiny_config(ModelType type) {
  ModelConfig c;
  hf_config_default(&c, type);
  c.vocab_size = 23, c.hidden = 16, c.layers = 2, c.heads = 2, c.intermediate = 24;
  c.max_position = 12, c.num_labels = 3, c.type_vocab_size = 2;
  for (int i = 0; i < 3; i++)
    snprintf(c.id2label[i], sizeof c.id2label[i], "LABEL_%d", i);
  return c;
}

static void randomize(Model *m) {
  for (int i = 0; i < m->n_params; i++) {
    const HfParam *p = &m->info[i];
    if (p->init == HF_INIT_ONES)
      for (size_t k = 0; k < p->numel; k++)
        m->param[i][k] = 1 + qrand(0.3);
    else
      fill(m->param[i], p->numel, p->init == HF_INIT_ZEROS ? 0.2 : 0.5);
  }
}

/* Moves each column of the head's pre-activations (DistilBERT's ReLU input) away
 * from 0 through its bias: 0 goes to the middle of the widest gap between the rows'
 * values when that leaves 0.5 on each side, else every value goes beyond +-1. */
static void shape_head(Model *m, int B) {
  int C = m->cfg.hidden;
  for (int c = 0; c < C; c++) {
    float v[8];
    for (int b = 0; b < B; b++)
      v[b] = m->a.pre[b * C + c];
    for (int i = 1; i < B; i++)
      for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
        float t = v[j];
        v[j] = v[j - 1], v[j - 1] = t;
      }
    double shift = (c & 1) ? 1 - v[0] : -1 - v[B - 1], best = 0;
    for (int i = 0; i + 1 < B; i++)
      if (v[i + 1] - v[i] > fmax(best, 1.0))
        best = v[i + 1] - v[i], shift = -(v[i] + v[i + 1]) / 2;
    m->w.pre_b[c] += (float)(round(shift * 4096) / 4096);
  }
}

/* The key projection's bias has an exactly zero gradient (softmax shift invariance;
 * see test_parity.c): judged against the scale of its weight's gradient. */
static bool zero_gradient(const char *name) {
  size_t n = strlen(name);
  const char *ends[] = {"attention.k_lin.bias", "attention.self.key.bias"};
  for (int i = 0; i < 2; i++)
    if (n >= strlen(ends[i]) && !strcmp(name + n - strlen(ends[i]), ends[i]))
      return true;
  return false;
}

void test_model(Backend *be, ModelType type, bool train, SelectKind sel) {
  const char *name = type == MODEL_BERT ? "bert" : "distilbert";
  ModelConfig cfg = tiny_config(type);
  ModelOptions opt = {.max_batch = 3, .max_len = 9};
  char err[512];
  Model *m = model_create(be, &cfg, &opt, err, sizeof err);
  CHECK(m != NULL, "%s", err);
  if (!m)
    return;
  randomize(m);
  m->attn.select = sel;
  for (int l = 0; l < cfg.layers; l++)
    m->attn.sparsity[l] = sel == SEL_NONE ? 0.0f : 0.5f;
  int B = 3, N = 6;
  int32_t ids[3 * 9], len[] = {6, 3, 1}, labels[] = {2, 0, 1};
  for (int i = 0; i < B * N; i++)
    ids[i] = 1 + (int32_t)(rnd() % 22);
  for (int b = 0; b < B; b++)
    for (int n = len[b]; n < N; n++)
      ids[b * N + n] = 0;
  ModelCtx c = {m, ids, len, labels, B, N, {.train = train, .seed = 42, .step = 7}, 0};
  if (type == MODEL_DISTILBERT) {
    model_loss(&c);
    shape_head(m, B);
  }
  model_zero_grad(m);
  double L0 = model_loss(&c);
  CHECK(fabs(L0 - c.run.loss) < 1e-5 * fabs(L0), "%s: loss %.8f vs %.8f", name, L0, c.run.loss);
  CHECK(model_backward(m) == 0, "%s: backward: %s", name, m->err);
  uint64_t sig0 = c.relu_sig;

  if (sel == SEL_NONE) {
    /* finite differences, per tensor: 6 random elements + one random direction */
    double worst = 0;
    const char *worst_name = "";
    int skipped = 0;
    for (int i = 0; i < m->n_params; i++) {
      size_t n = m->info[i].numel;
      float *g = m->grad[i], *x = m->param[i];
      double gmax = 0, emax = 0;
      for (size_t k = 0; k < n; k++)
        gmax = fmax(gmax, fabs(g[k]));
      if (zero_gradient(m->info[i].name)) {
        double wmax = 0;
        for (size_t k = 0; k < m->info[i - 1].numel; k++)
          wmax = fmax(wmax, fabs(m->grad[i - 1][k]));
        CHECK(gmax <= 1e-5 * wmax, "%s: %s gradient %.3e is not ~0 (weight's %.3e)", name,
              m->info[i].name, gmax, wmax);
        gmax = fmax(gmax, wmax);
      }
      for (int s = 0; s < 6; s++) {
        size_t k = (size_t)(rnd() % n);
        double d = fd(model_loss, &c, x, n, NULL, k, FD_H);
        /* the stencil crossed the head's ReLU kink: no derivative to compare */
        bool kink = false;
        for (int t = -2; t <= 2 && !kink; t += 1) {
          float save = x[k];
          x[k] = save + (float)t * FD_H;
          model_loss(&c);
          kink = c.relu_sig != sig0;
          x[k] = save;
        }
        if (kink) {
          skipped++;
          continue;
        }
        emax = fmax(emax, fabs(d - g[k]));
      }
      /* direction: sum_k g_k v_k vs the derivative along v, relative to |g| |v| */
      float *v = fnew(n);
      double gv = 0, gn = 0;
      for (size_t k = 0; k < n; k++) {
        v[k] = (rnd() & 1) ? 1.0f : -1.0f;
        gv += (double)g[k] * v[k], gn += (double)g[k] * g[k];
      }
      double dv = fd(model_loss, &c, x, n, v, 0, FD_H);
      model_loss(&c);
      bool kink = c.relu_sig != sig0;
      if (zero_gradient(m->info[i].name))
        gn = gmax * gmax * (double)n;
      double e_dir = kink ? 0 : fabs(dv - gv) / (sqrt(gn) * sqrt((double)n) + 1e-30);
      free(v);
      double e = fmax(gmax > 0 ? emax / gmax : emax, e_dir);
      if (e > worst) {
        worst = e;
        worst_name = m->info[i].name;
      }
    }
    model_loss(&c);
    printf("model %s%s: %d tensors vs FD, worst %.2e (%s), %d kink probes skipped\n", name,
           train ? " (dropout on)" : "", m->n_params, worst, worst_name, skipped);
    CHECK(worst < TOL_MODEL, "%s: gradient of %s vs FD: %.3e", name, worst_name, worst);
  }

  /* gradients accumulate: a second backward doubles them */
  float *g1 = fnew(m->n_param_floats);
  memcpy(g1, m->grads_mem, m->n_param_floats * sizeof *g1);
  model_loss(&c);
  model_backward(m);
  double acc = 0;
  for (size_t k = 0; k < m->n_param_floats; k++)
    acc = fmax(acc, fabs(m->grads_mem[k] - 2 * g1[k]));
  CHECK(acc < 1e-5, "%s: accumulation error %.3e", name, acc);

  /* dynamic padding: the same batch padded to 9 gives the same loss and gradients */
  int N2 = 9;
  int32_t ids2[3 * 9];
  for (int b = 0; b < B; b++)
    for (int n = 0; n < N2; n++)
      ids2[b * N2 + n] = n < N ? ids[b * N + n] : 0;
  ModelCtx c2 = c;
  c2.ids = ids2, c2.N = N2;
  model_zero_grad(m);
  double L2 = model_loss(&c2);
  model_backward(m);
  double pad = 0, gmax = 0;
  for (size_t k = 0; k < m->n_param_floats; k++) {
    pad = fmax(pad, fabs(m->grads_mem[k] - g1[k]));
    gmax = fmax(gmax, fabs(g1[k]));
  }
  CHECK(fabs(L2 - L0) <= 1e-6 * fabs(L0) && pad <= 1e-5 * gmax,
        "%s: padding changes the loss (%.3e) or gradients (%.3e)", name, fabs(L2 - L0), pad / gmax);

  /* dropout: the same counters give the same loss, another step another one; eval ignores */
  if (train) {
    double again = model_loss(&c);
    c.run.step++;
    double other = model_loss(&c);
    c.run.step--;
    c.run.train = false;
    double eval = model_loss(&c);
    c.run.train = true;
    CHECK(again == L0 && other != L0 && eval != L0, "%s: dropout counters (%.6f %.6f %.6f %.6f)",
          name, L0, again, other, eval);
  }

  /* statistics */
  c.run.stats = true;
  model_loss(&c);
  c.run.stats = false;
  if (sel == SEL_NONE)
    CHECK(m->stat_kept[0] == 1.0 && m->stat_kept[1] == 1.0, "%s: dense keeps %.3f", name,
          m->stat_kept[0]);
  else
    CHECK(m->stat_kept[0] > 0.3 && m->stat_kept[0] < 0.8, "%s: %s at 0.5 keeps %.3f", name,
          select_name(sel), m->stat_kept[0]);
  CHECK(m->stat_entropy[0] > 0 && m->stat_entropy_norm[0] > 0 && m->stat_entropy_norm[0] <= 1,
        "%s: entropy stats %.3f %.3f", name, m->stat_entropy[0], m->stat_entropy_norm[0]);
  free(g1);
  model_free(m);
}

void test_model_errors(Backend *be) {
  ModelConfig cfg = tiny_config(MODEL_DISTILBERT);
  char err[512];
  ModelOptions bad = {.max_batch = 2, .max_len = 13};
  CHECK(model_create(be, &cfg, &bad, err, sizeof err) == NULL && strstr(err, "max_len"),
        "max_len beyond max_position accepted: %s", err);
  ModelOptions opt = {.max_batch = 2, .max_len = 4};
  Model *m = model_create(be, &cfg, &opt, err, sizeof err);
  if (!m)
    return;
  model_init_params(m, 1);
  int32_t ids[] = {1, 2, 3, 0, 1, 2, 0, 0}, len[] = {3, 2}, labels[] = {0, 1};
  ModelRun run = {0};
  CHECK(model_forward(m, ids, len, 2, 4, labels, &run) == 0 && isfinite(run.loss), "forward");
  int32_t bad_len[] = {3, 0}, bad_ids[] = {1, 2, 99, 0, 1, 2, 0, 0}, bad_lab[] = {0, 3};
  CHECK(model_forward(m, ids, bad_len, 2, 4, labels, &run) && strstr(m->err, "lengths[1]"),
        "zero length accepted: %s", m->err);
  CHECK(model_forward(m, bad_ids, len, 2, 4, labels, &run) && strstr(m->err, "ids[0][2]"),
        "bad id accepted: %s", m->err);
  CHECK(model_forward(m, ids, len, 2, 4, bad_lab, &run) && strstr(m->err, "labels[1]"),
        "bad label accepted: %s", m->err);
  CHECK(model_forward(m, ids, len, 3, 4, labels, &run) && strstr(m->err, "planned"),
        "batch beyond the plan accepted: %s", m->err);
  CHECK(model_forward(m, ids, len, 2, 4, NULL, &run) == 0 && isnan(run.loss) &&
        model_backward(m) != 0, "backward without labels must fail");
  m->attn.sparsity[1] = 1.0f;
  CHECK(model_forward(m, ids, len, 2, 4, labels, &run) && strstr(m->err, "sparsity"),
        "sparsity 1 accepted: %s", m->err);
  /* a logit that is not finite (here an infinite bias; in a real model float overflow):
   * an error, not NaN probabilities and a NaN loss */
  m->attn.sparsity[1] = 0.0f;
  m->w.cls_b[1] = INFINITY;
  CHECK(model_forward(m, ids, len, 2, 4, labels, &run) && strstr(m->err, "not finite"),
        "overflowing logits accepted (loss %g): %s", run.loss, m->err);
  model_free(m);
  m = model_create(be, &cfg, &opt, err, sizeof err);
  if (!m)
    return;
  m->attn.impl = ATTN_IMPL_CRISP;
  CHECK(model_forward(m, ids, len, 2, 4, labels, &run) && strstr(m->err, "no crisp kernels"),
        "crisp attention without kernels accepted: %s", m->err);
  model_free(m);
}

/* ---- the crisp kernels in the model ------------------------------------------------ */

/* The same tiny model with attention through the JIT'd crisp kernels (host target,
 * thread pool) and through the C reference: logits, loss, every gradient and the
 * kept counts agree, in every selection mode, with dropout on; so do the per-row
 * entropies of the kept and of the dense distribution (stats, dense_stats), the
 * dense one equal to the kept one where nothing is pruned and not where it is. */
void test_crisp_path(Backend *be) {
  SelectKind sels[] = {SEL_NONE, SEL_ROW_TOPK, SEL_HEAD_QUANTILE, SEL_LAYER_QUANTILE};
  for (int t = 0; t < 2; t++) {
    ModelType type = t ? MODEL_BERT : MODEL_DISTILBERT;
    ModelConfig cfg = tiny_config(type);
    ModelOptions opt = {.max_batch = 3, .max_len = 9};
    char err[2048];
    Model *ref = model_create(be, &cfg, &opt, err, sizeof err);
    Model *cr = model_create(be, &cfg, &opt, err, sizeof err);
    CHECK(ref && cr, "%s", err);
    if (!ref || !cr) {
      model_free(ref), model_free(cr);
      return;
    }
    randomize(ref);
    memcpy(cr->params_mem, ref->params_mem, ref->n_param_floats * sizeof(float));
    RtModule *mods[4] = {NULL};
    for (int k = 0; k < 4; k++) {
      Spec s;
      spec_defaults(&s);
      snprintf(s.name, sizeof s.name, "model_%s", select_name(sels[k]));
      s.head_dim = cfg.hidden / cfg.heads, s.max_seq = 16, s.select = sels[k], s.keep_min = 1;
      s.dropout = 0.1, s.backward = true;
      TileConfig tile = tile_resolve(&s, TUNE_CPU);
      int rc = rt_compile_load(be, &s, &tile, NULL, &mods[k], err, sizeof err);
      CHECK(rc == 0, "compile %s: %s", s.name, err);
      if (rc == 0)
        CHECK(model_add_crisp(cr, mods[k]) == 0, "%s", cr->err);
    }
    int32_t ids[3 * 7], len[] = {7, 4, 1}, labels[] = {1, 2, 0};
    for (int i = 0; i < 21; i++)
      ids[i] = 1 + (int32_t)(rnd() % 22);
    /* every mode at s = 0.6 (none at 0), then the quantile modes at s = 0, where every
     * group keeps every score (tau_group = -inf, the select plan one pick) */
    for (int v = 0; v < 6; v++) {
      int k = v < 4 ? v : v - 2;
      float sp = v >= 1 && v < 4 ? 0.6f : 0.0f;
      if (!mods[k])
        continue;
      Model *ms[2] = {ref, cr};
      ModelRun run[2];
      for (int w = 0; w < 2; w++) {
        ms[w]->attn.impl = w ? ATTN_IMPL_CRISP : ATTN_IMPL_REF;
        ms[w]->attn.select = sels[k];
        for (int l = 0; l < cfg.layers; l++)
          ms[w]->attn.sparsity[l] = sp;
        run[w] = (ModelRun){.train = true, .seed = 5, .step = 9, .stats = true,
                            .dense_stats = true};
        model_zero_grad(ms[w]);
        CHECK(model_forward(ms[w], ids, len, 3, 7, labels, &run[w]) == 0 &&
              model_backward(ms[w]) == 0, "%s", ms[w]->err);
      }
      double el = 0, ml = 0, eg = 0, mg = 0;
      for (int i = 0; i < 3 * cfg.num_labels; i++)
        el = fmax(el, fabs(run[0].logits[i] - run[1].logits[i])), ml = fmax(ml, fabs(run[0].logits[i]));
      for (size_t i = 0; i < ref->n_param_floats; i++)
        eg = fmax(eg, fabs(ref->grads_mem[i] - cr->grads_mem[i])), mg = fmax(mg, fabs(ref->grads_mem[i]));
      bool kept_same = true;
      double ee = 0, ed = 0, kd = 0;   /* kernel vs reference; dense vs kept */
      for (int l = 0; l < cfg.layers; l++) {
        kept_same &= ref->stat_kept[l] == cr->stat_kept[l];
        const AttnRows *a = &ref->a.layer[l].rows, *b = &cr->a.layer[l].rows;
        for (int i = 0; i < 3 * cfg.heads * 7; i++) {
          ee = fmax(ee, fabs(a->entropy[i] - b->entropy[i]));
          ed = fmax(ed, fabs(a->dense_entropy[i] - b->dense_entropy[i]));
          kd = fmax(kd, fabs(b->dense_entropy[i] - b->entropy[i]));
        }
      }
      CHECK(ee < 1e-5 && ed < 1e-5, "crisp vs ref entropies (%s s=%g): kept %.1e dense %.1e",
            select_name(sels[k]), sp, ee, ed);
      CHECK(sp > 0 ? kd > 1e-2 : kd < 1e-5, "dense vs kept entropy (%s s=%g): %.1e",
            select_name(sels[k]), sp, kd);
      printf("crisp vs ref, %s %s s=%g (dropout on): logits %.2e  loss %.2e  grads %.2e  kept "
             "%s (%.3f)\n", type == MODEL_BERT ? "bert" : "distilbert", select_name(sels[k]), sp,
             el / ml, fabs(run[0].loss - run[1].loss) / fabs(run[0].loss), eg / mg,
             kept_same ? "same" : "DIFFERENT", cr->stat_kept[0]);
      CHECK(el <= 1e-5 * ml && eg <= 1e-5 * mg && kept_same, "crisp vs ref (%s s=%g)",
            select_name(sels[k]), sp);
    }
    model_free(ref);
    model_free(cr);
    for (int k = 0; k < 4; k++)
      if (mods[k])
        rt_module_unload(be, mods[k]);
  }
}
