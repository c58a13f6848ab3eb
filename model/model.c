/* DistilBERT / BERT sequence classifiers, forward and backward (see model.h). */
#include "model.h"
#include "errf.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"
#include "model_params.h"

/* Hidden dropout sites set bit 30 of the mask's `layer` counter, so they never
 * collide with attention dropout (layer = the block index, site = the head). */
enum { HIDDEN_SITE = 1u << 30 };

#define MFAIL(m, ...) model_fail((m)->err, sizeof (m)->err, __VA_ARGS__)

static bool is_bert(const Model *m) { return m->cfg.type == MODEL_BERT; }

/* ---- planning ------------------------------------------------------------------- */

/* A bump allocator over one block: run once with base NULL to size it, then again
 * with the block to hand out the same offsets. Every tensor is 64-byte aligned. */
typedef struct Plan {
  char *base;
  size_t off;
} Plan;

static void *take(Plan *p, size_t bytes) {
  size_t at = p->off;
  p->off = (p->off + bytes + 63) & ~(size_t)63;
  return p->base ? p->base + at : NULL;
}

static float *take_f(Plan *p, size_t n) { return take(p, n * sizeof(float)); }
static int32_t *take_i(Plan *p, size_t n) { return take(p, n * sizeof(int32_t)); }

static void plan_acts(Model *m, Plan *p, LayerActs *layers) {
  const ModelConfig *c = &m->cfg;
  size_t R = (size_t)m->max_batch * m->max_len, C = (size_t)c->hidden,
         I = (size_t)c->intermediate, K = (size_t)c->num_labels, Bm = (size_t)m->max_batch,
         BHN = Bm * (size_t)c->heads * m->max_len;
  ModelActs *a = &m->a;
  a->ids = take_i(p, R);
  a->lengths = take_i(p, Bm);
  a->labels = take_i(p, Bm);
  a->emb = take_f(p, R * C);
  a->emb_mean = take_f(p, R);
  a->emb_rstd = take_f(p, R);
  a->x0 = take_f(p, R * C);
  a->delta = take_f(p, BHN);
  for (int l = 0; l < c->layers; l++) {
    LayerActs *t = &layers[l];
    t->qkv = take_f(p, R * 3 * C);
    t->att = take_f(p, R * C);
    t->rows.lse = take_f(p, BHN);
    t->rows.tau = take_f(p, BHN);
    t->rows.kept = take_i(p, BHN);
    t->rows.entropy = take_f(p, BHN);
    t->rows.dense_entropy = take_f(p, BHN);
    t->rows.delta = a->delta;
    t->res1 = take_f(p, R * C);
    t->ln1_mean = take_f(p, R);
    t->ln1_rstd = take_f(p, R);
    t->ln1 = take_f(p, R * C);
    t->fch = take_f(p, R * I);
    t->fact = take_f(p, R * I);
    t->res2 = take_f(p, R * C);
    t->ln2_mean = take_f(p, R);
    t->ln2_rstd = take_f(p, R);
    t->ln2 = take_f(p, R * C);
  }
  a->pre = take_f(p, Bm * C);
  a->pre_act = take_f(p, Bm * C);
  a->pre_drop = take_f(p, Bm * C);
  a->logits = take_f(p, Bm * K);
  a->probs = take_f(p, Bm * K);
  a->g_d = take_f(p, R * C);
  a->g_x = take_f(p, R * C);
  a->g_y = take_f(p, R * C);
  a->g_i = take_f(p, R * I);
  a->g_qkv = take_f(p, R * 3 * C);
  a->g_head = take_f(p, Bm * C);
  a->g_logits = take_f(p, Bm * K);
}

/* ---- life cycle ------------------------------------------------------------------ */

static void *dev_alloc(Backend *be, size_t bytes, char *err, size_t cap) {
  DevPtr p = 0;
  if (rt_alloc(be, bytes ? bytes : 64, &p)) {
    model_fail(err, cap, "model: %s", backend_error(be));
    return NULL;
  }
  return (void *)(uintptr_t)p;
}

static void dev_free(Backend *be, void *p) {
  if (p)
    rt_free(be, (DevPtr)(uintptr_t)p);
}

void model_free(Model *m) {
  if (!m)
    return;
  attention_engine_free(&m->attn_engine);
  dev_free(m->be, m->params_mem);
  dev_free(m->be, m->grads_mem);
  dev_free(m->be, m->acts_mem);
  free(m->info);
  free(m->param);
  free(m->grad);
  free(m->w.layer);
  free(m->g.layer);
  free(m->a.layer);
  free(m->stat_kept);
  free(m->stat_entropy);
  free(m->stat_entropy_norm);
  free(m);
}

Model *model_create(Backend *be, const ModelConfig *c, const ModelOptions *o, char *err,
                    size_t cap) {
  if (hf_config_check(c, "config", err, cap))
    return NULL;
  if (strcmp(be->kind, "cpu") != 0) {
    model_fail(err, cap, "model: the %s backend is not supported yet: the elementwise layers are "
         "host loops (GPU kernels for them are future work); use --device cpu", be->kind);
    return NULL;
  }
  if (c->layers > MODEL_MAX_LAYERS) {
    model_fail(err, cap, "model: %d layers (at most %d)", c->layers, MODEL_MAX_LAYERS);
    return NULL;
  }
  if (o->max_batch < 1 || o->max_len < 1 || o->max_len > c->max_position) {
    model_fail(err, cap, "model: max_batch %d, max_len %d: need max_batch >= 1 and 1 <= max_len <= "
         "max_position_embeddings (%d)", o->max_batch, o->max_len, c->max_position);
    return NULL;
  }
  Model *m = calloc(1, sizeof *m);
  if (!m) {
    model_fail(err, cap, "model: out of memory");
    return NULL;
  }
  m->cfg = *c;
  m->be = be;
  m->max_batch = o->max_batch;
  m->max_len = o->max_len;
  m->n_params = hf_params(c, NULL, 0);
  int L = c->layers;
  m->info = calloc((size_t)m->n_params, sizeof *m->info);
  m->param = calloc((size_t)m->n_params, sizeof *m->param);
  m->grad = calloc((size_t)m->n_params, sizeof *m->grad);
  m->w.layer = calloc((size_t)L, sizeof *m->w.layer);
  m->g.layer = calloc((size_t)L, sizeof *m->g.layer);
  m->a.layer = calloc((size_t)L, sizeof *m->a.layer);
  m->stat_kept = calloc((size_t)L, sizeof *m->stat_kept);
  m->stat_entropy = calloc((size_t)L * c->heads, sizeof *m->stat_entropy);
  m->stat_entropy_norm = calloc((size_t)L * c->heads, sizeof *m->stat_entropy_norm);
  if (!m->info || !m->param || !m->grad || !m->w.layer || !m->g.layer || !m->a.layer ||
      !m->stat_kept || !m->stat_entropy || !m->stat_entropy_norm) {
    model_fail(err, cap, "model: out of memory");
    goto bad;
  }
  hf_params(c, m->info, m->n_params);
  for (int i = 0; i < m->n_params; i++)
    m->n_param_floats += m->info[i].numel;

  /* parameters and gradients: one block each, model_place_params' order */
  size_t pbytes = m->n_param_floats * sizeof(float);
  if (!(m->params_mem = dev_alloc(be, pbytes, err, cap)) ||
      !(m->grads_mem = dev_alloc(be, pbytes, err, cap)))
    goto bad;
  memset(m->params_mem, 0, pbytes);
  memset(m->grads_mem, 0, pbytes);
  size_t *off = malloc((size_t)m->n_params * sizeof *off);
  int placed = off ? model_place_params(m, off) : MFAIL(m, "model: out of memory");
  for (int i = 0; placed == 0 && i < m->n_params; i++) {
    m->param[i] = m->params_mem + off[i];
    m->grad[i] = m->grads_mem + off[i];
  }
  free(off);
  if (placed || model_bind_params(m, m->param, &m->w) || model_bind_params(m, m->grad, &m->g) ||
      model_check_qkv(m)) {
    model_fail(err, cap, "%s", m->err);
    goto bad;
  }

  /* activations: one block for (max_batch, max_len) */
  Plan size = {NULL, 0};
  plan_acts(m, &size, m->a.layer);
  m->acts_bytes = size.off;
  if (!(m->acts_mem = dev_alloc(be, m->acts_bytes, err, cap)))
    goto bad;
  memset(m->acts_mem, 0, m->acts_bytes);
  Plan real = {m->acts_mem, 0};
  plan_acts(m, &real, m->a.layer);

  if (attention_engine_init(&m->attn_engine, be, m->max_batch, m->max_len, c->heads,
                            c->hidden / c->heads, err, cap))
    goto bad;
  m->attn.impl = ATTN_IMPL_REF;
  m->attn.select = SEL_NONE;
  m->attn.keep_min = 1;
  m->drop = (ModelDropout){c->hidden_dropout, c->attention_dropout, c->classifier_dropout};
  return m;
bad:
  model_free(m);
  return NULL;
}

size_t model_param_count(const Model *m) { return m->n_param_floats; }

void model_init_params(Model *m, uint64_t seed) {
  for (int i = 0; i < m->n_params; i++)
    hf_init_param(&m->cfg, &m->info[i], m->param[i], seed);
}

int model_load(Model *m, const char *path, uint64_t seed, int *n_init, char *err, size_t cap) {
  return hf_load_params(path, &m->cfg, m->param, seed, n_init, err, cap);
}

int model_save(const Model *m, const char *dir, const char *vocab_path, char *err, size_t cap) {
  return hf_save_model(dir, &m->cfg, (const float *const *)m->param, vocab_path, err, cap);
}

int model_add_crisp(Model *m, RtModule *mod) {
  return attention_engine_add_crisp(&m->attn_engine, mod, m->err, sizeof m->err);
}

void model_zero_grad(Model *m) { memset(m->grads_mem, 0, m->n_param_floats * sizeof(float)); }

/* ---- forward --------------------------------------------------------------------- */

static int check_batch(Model *m, const int32_t *ids, const int32_t *lengths, int B, int N,
                       const int32_t *labels) {
  if (B < 1 || B > m->max_batch || N < 1 || N > m->max_len)
    return MFAIL(m, "model_forward: batch %d x %d is outside the planned 1..%d x 1..%d", B, N,
                 m->max_batch, m->max_len);
  for (int b = 0; b < B; b++) {
    if (lengths[b] < 1 || lengths[b] > N)
      return MFAIL(m, "model_forward: lengths[%d] = %d is outside 1..%d", b, lengths[b], N);
    if (labels && (labels[b] < 0 || labels[b] >= m->cfg.num_labels))
      return MFAIL(m, "model_forward: labels[%d] = %d is outside 0..%d", b, labels[b],
                   m->cfg.num_labels - 1);
  }
  for (int i = 0; i < B * N; i++)
    if (ids[i] < 0 || ids[i] >= m->cfg.vocab_size)
      return MFAIL(m, "model_forward: ids[%d][%d] = %d is outside the vocabulary (0..%d)",
                   i / N, i % N, ids[i], m->cfg.vocab_size - 1);
  const ModelAttnSettings *s = &m->attn;
  if (s->select < SEL_NONE || s->select > SEL_LAYER_QUANTILE || s->keep_min < 1)
    return MFAIL(m, "model_forward: attention select %d / keep_min %d invalid", (int)s->select,
                 s->keep_min);
  if (s->impl == ATTN_IMPL_CRISP && !attention_has_crisp(&m->attn_engine, s->select, false))
    return MFAIL(m, "model_forward: attention impl crisp, but no crisp kernels are registered "
                 "for select = %s (model_add_crisp)", select_name(s->select));
  for (int l = 0; l < m->cfg.layers; l++)
    if (!(s->sparsity[l] >= 0 && s->sparsity[l] < 1))
      return MFAIL(m, "model_forward: layer %d sparsity %g is outside [0, 1)", l,
                   (double)s->sparsity[l]);
  const ModelDropout *d = &m->drop;
  if (!(d->hidden >= 0 && d->hidden < 1 && d->attention >= 0 && d->attention < 1 &&
        d->classifier >= 0 && d->classifier < 1))
    return MFAIL(m, "model_forward: dropout rates must be in [0, 1)");
  return 0;
}

static DropoutSite hidden_site(const Model *m, float p, int layer, int site) {
  return (DropoutSite){p, m->seed, m->step, HIDDEN_SITE | (uint32_t)layer, (uint32_t)site};
}

static AttnCall attn_call(const Model *m, int l, bool stats, bool dense_stats) {
  return (AttnCall){.impl = m->run_attn.impl, .select = m->run_attn.select, .sparsity = m->run_attn.sparsity[l],
                    .keep_min = m->run_attn.keep_min, .dropout = m->run_drop.attention,
                    .seed = m->seed, .step = m->step, .layer = (uint32_t)l, .stats = stats,
                    .dense_stats = dense_stats};
}

static void collect_stats(Model *m, int l) {
  const ModelConfig *c = &m->cfg;
  const AttnRows *r = &m->a.layer[l].rows;
  int B = m->B, N = m->N, H = c->heads;
  double kept = 0, valid = 0;
  for (int h = 0; h < H; h++) {
    double ent = 0, ent_n = 0, rows = 0, rows_n = 0;
    for (int b = 0; b < B; b++) {
      int L = m->a.lengths[b];
      valid += (double)L * L;
      for (int i = 0; i < L; i++) {
        size_t at = ((size_t)b * H + h) * N + i;
        kept += r->kept[at];
        ent += r->entropy[at], rows++;
        if (L > 1)
          ent_n += r->entropy[at] / log((double)L), rows_n++;
      }
    }
    m->stat_entropy[l * H + h] = rows ? ent / rows : 0;
    m->stat_entropy_norm[l * H + h] = rows_n ? ent_n / rows_n : 0;
  }
  m->stat_kept[l] = valid ? kept / valid : 1;
}

static int gemm_fail(Model *m, const char *what) {
  return MFAIL(m, "model: %s: %s", what, backend_error(m->be));
}

/* A logit that is NaN or infinite (float overflow somewhere in the layers: weights too
 * large, or training that diverged) would pass on as NaN probabilities, a NaN loss and
 * NaN gradients; it stops the forward instead. */
static int check_logits(Model *m, const float *logits, int B, int K) {
  for (int i = 0; i < B * K; i++)
    if (!isfinite(logits[i]))
      return MFAIL(m, "model: the logits of batch row %d are not finite (%g): the activations "
                      "overflowed float (weights too large or corrupt, or training diverged)",
                   i / K, logits[i]);
  return 0;
}

int model_forward(Model *m, const int32_t *ids, const int32_t *lengths, int B, int N,
                  const int32_t *labels, ModelRun *run) {
  if (check_batch(m, ids, lengths, B, N, labels))
    return -1;
  const ModelConfig *c = &m->cfg;
  ModelActs *a = &m->a;
  const ModelParams *w = &m->w;
  Backend *be = m->be;
  RtPool *tp = rt_host_pool(be);
  int C = c->hidden, I = c->intermediate, K = c->num_labels, L = c->layers;
  int R = B * N;
  bool bert = is_bert(m), gelu = !strcmp(c->activation, "gelu");
  memcpy(a->ids, ids, (size_t)R * sizeof *ids);
  memcpy(a->lengths, lengths, (size_t)B * sizeof *lengths);
  if (labels)
    memcpy(a->labels, labels, (size_t)B * sizeof *labels);
  m->B = B, m->N = N;
  m->have_labels = labels != NULL;
  m->train = run->train;
  m->seed = run->seed, m->step = run->step;
  m->run_attn = m->attn;
  m->run_drop = run->train ? m->drop : (ModelDropout){0, 0, 0};
  ModelDropout dr = m->run_drop;
  float eps = c->layer_norm_eps;

  embedding_forward_par(tp, a->emb, a->ids, w->wte, w->wpe, w->wtt, B, N, C);
  layernorm_forward_par(tp, a->x0, a->emb_mean, a->emb_rstd, a->emb, w->emb_lnw, w->emb_lnb, R,
                        C, eps);
  DropoutSite ds = hidden_site(m, dr.hidden, L, 0);
  dropout_forward_par(tp, a->x0, a->x0, &ds, B, N, C);

  const float *x = a->x0;
  for (int l = 0; l < L; l++) {
    const LayerParams *p = &w->layer[l];
    LayerActs *t = &a->layer[l];
    /* q, k, v weights are one [3C, C] matrix and their biases one [3C] (model_params.h) */
    if (linear_forward(be, t->qkv, 3 * C, x, C, p->qw, p->qb, R, C, 3 * C))
      return gemm_fail(m, "q/k/v projection");
    AttnCall ac = attn_call(m, l, run->stats, run->dense_stats);
    if (attention_forward(&m->attn_engine, &ac, t->qkv, t->att, a->lengths, B, N, &t->rows,
                          m->err, sizeof m->err))
      return -1;
    if (linear_forward(be, t->res1, C, t->att, C, p->ow, p->ob, R, C, C))
      return gemm_fail(m, "attention output projection");
    if (bert) {
      ds = hidden_site(m, dr.hidden, l, 0);
      dropout_forward_par(tp, t->res1, t->res1, &ds, B, N, C);
    }
    residual_forward_par(tp, t->res1, x, (size_t)R * C);
    layernorm_forward_par(tp, t->ln1, t->ln1_mean, t->ln1_rstd, t->res1, p->ln1w, p->ln1b, R, C,
                          eps);
    if (linear_forward(be, t->fch, I, t->ln1, C, p->f1w, p->f1b, R, C, I))
      return gemm_fail(m, "FFN lin1");
    if (gelu)
      gelu_forward_par(tp, t->fact, t->fch, (size_t)R * I);
    else
      relu_forward(t->fact, t->fch, (size_t)R * I);
    if (linear_forward(be, t->res2, C, t->fact, I, p->f2w, p->f2b, R, I, C))
      return gemm_fail(m, "FFN lin2");
    ds = hidden_site(m, dr.hidden, l, 1);
    dropout_forward_par(tp, t->res2, t->res2, &ds, B, N, C);
    residual_forward_par(tp, t->res2, t->ln1, (size_t)R * C);
    layernorm_forward_par(tp, t->ln2, t->ln2_mean, t->ln2_rstd, t->res2, p->ln2w, p->ln2b, R, C, eps);
    x = t->ln2;
    if (run->stats)
      collect_stats(m, l);
  }

  /* head: the [CLS] rows (every N-th row) */
  if (linear_forward(be, a->pre, C, x, N * C, w->pre_w, w->pre_b, B, C, C))
    return gemm_fail(m, bert ? "pooler" : "pre_classifier");
  if (bert)
    tanh_forward(a->pre_act, a->pre, (size_t)B * C);
  else
    relu_forward(a->pre_act, a->pre, (size_t)B * C);
  ds = hidden_site(m, dr.classifier, L + 1, 0);
  dropout_forward_par(tp, a->pre_drop, a->pre_act, &ds, B, 1, C);
  if (linear_forward(be, a->logits, K, a->pre_drop, C, w->cls_w, w->cls_b, B, C, K))
    return gemm_fail(m, "classifier");
  if (check_logits(m, a->logits, B, K))
    return -1;
  run->loss = crossentropy_forward(a->probs, a->logits, labels ? a->labels : NULL, B, K);
  run->correct = 0;
  for (int b = 0; labels && b < B; b++) {
    const float *z = a->logits + (size_t)b * K;
    int best = 0;
    for (int k = 1; k < K; k++)
      best = z[k] > z[best] ? k : best;
    run->correct += best == labels[b];
  }
  run->logits = a->logits;
  return 0;
}

/* ---- backward -------------------------------------------------------------------- */

int model_backward(Model *m) {
  if (!m->have_labels)
    return MFAIL(m, "model_backward: the last forward had no labels (no loss to differentiate)");
  const ModelConfig *c = &m->cfg;
  ModelActs *a = &m->a;
  const ModelParams *w = &m->w;
  const ModelParams *g = &m->g;
  Backend *be = m->be;
  RtPool *tp = rt_host_pool(be);
  int B = m->B, N = m->N, C = c->hidden, I = c->intermediate, K = c->num_labels,
      L = c->layers, R = B * N;
  bool bert = is_bert(m), gelu = !strcmp(c->activation, "gelu");
  ModelDropout dr = m->run_drop;
  const float *x_last = L ? a->layer[L - 1].ln2 : a->x0;

  /* head */
  crossentropy_backward(a->g_logits, a->probs, a->labels, B, K, 1.0f / (float)B);
  if (linear_backward(be, a->g_head, C, 0.0f, g->cls_w, g->cls_b, a->g_logits, K, a->pre_drop,
                      C, w->cls_w, B, C, K))
    return gemm_fail(m, "classifier backward");
  DropoutSite ds = hidden_site(m, dr.classifier, L + 1, 0);
  dropout_backward_par(tp, a->g_head, a->g_head, &ds, B, 1, C);
  if (bert)
    tanh_backward(a->g_head, a->pre_act, a->g_head, (size_t)B * C);
  else
    relu_backward(a->g_head, a->pre_act, a->g_head, (size_t)B * C);
  /* only the [CLS] rows of the last block's output get a gradient */
  memset(a->g_d, 0, (size_t)R * C * sizeof(float));
  if (linear_backward(be, a->g_d, N * C, 0.0f, g->pre_w, g->pre_b, a->g_head, C, x_last, N * C,
                      w->pre_w, B, C, C))
    return gemm_fail(m, "head dense backward");

  /* blocks: g_d holds d(block output) on entry and d(block input) on exit */
  float *D = a->g_d, *X = a->g_x, *Y = a->g_y;
  for (int l = L - 1; l >= 0; l--) {
    const LayerParams *p = &w->layer[l];
    const LayerParams *gp = &g->layer[l];
    LayerActs *t = &a->layer[l];
    const float *x_in = l ? a->layer[l - 1].ln2 : a->x0;
    /* res2 = dropout(lin2(act(lin1(ln1)))) + ln1; ln2 = LN(res2) */
    layernorm_backward_par(tp, X, gp->ln2w, gp->ln2b, D, t->res2, p->ln2w, t->ln2_mean, t->ln2_rstd, R,
                       C);
    const float *d_lin2 = X;
    if (dr.hidden > 0) {
      ds = hidden_site(m, dr.hidden, l, 1);
      dropout_backward_par(tp, Y, X, &ds, B, N, C);
      d_lin2 = Y;
    }
    if (linear_backward(be, a->g_i, I, 0.0f, gp->f2w, gp->f2b, d_lin2, C, t->fact, I, p->f2w, R,
                        I, C))
      return gemm_fail(m, "FFN lin2 backward");
    if (gelu)
      gelu_backward_par(tp, a->g_i, t->fch, a->g_i, (size_t)R * I);
    else
      relu_backward(a->g_i, t->fact, a->g_i, (size_t)R * I);
    /* X = d(ln1) = residual path (X) + FFN path */
    if (linear_backward(be, X, C, 1.0f, gp->f1w, gp->f1b, a->g_i, I, t->ln1, C, p->f1w, R, C, I))
      return gemm_fail(m, "FFN lin1 backward");
    /* res1 = dropout(out_proj(att)) + x_in; ln1 = LN(res1) */
    layernorm_backward_par(tp, D, gp->ln1w, gp->ln1b, X, t->res1, p->ln1w, t->ln1_mean, t->ln1_rstd, R,
                       C);
    const float *d_proj = D;
    if (bert && dr.hidden > 0) {
      ds = hidden_site(m, dr.hidden, l, 0);
      dropout_backward_par(tp, Y, D, &ds, B, N, C);
      d_proj = Y;
    }
    if (linear_backward(be, X, C, 0.0f, gp->ow, gp->ob, d_proj, C, t->att, C, p->ow, R, C, C))
      return gemm_fail(m, "attention output projection backward");
    AttnCall ac = attn_call(m, l, false, false);
    if (attention_backward(&m->attn_engine, &ac, t->qkv, t->att, X, a->g_qkv, a->lengths, B, N,
                           &t->rows, m->err, sizeof m->err))
      return -1;
    /* D = d(x_in) = residual path (D) + the q, k, v paths */
    if (linear_backward(be, D, C, 1.0f, gp->qw, gp->qb, a->g_qkv, 3 * C, x_in, C, p->qw, R, C,
                        3 * C))
      return gemm_fail(m, "q/k/v projection backward");
  }

  /* embeddings: x0 = dropout(LN(emb)) */
  ds = hidden_site(m, dr.hidden, L, 0);
  dropout_backward_par(tp, D, D, &ds, B, N, C);
  layernorm_backward_par(tp, X, g->emb_lnw, g->emb_lnb, D, a->emb, w->emb_lnw, a->emb_mean, a->emb_rstd,
                     R, C);
  embedding_backward_par(tp, g->wte, g->wpe, g->wtt, X, a->ids, a->lengths, B, N, C,
                     c->pad_token_id);
  return 0;
}
