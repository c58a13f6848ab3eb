/* The parameter block's layout and the role pointers into it (see model_params.h). */
#include "model_params.h"
#include "errf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MFAIL(m, ...) model_fail((m)->err, sizeof (m)->err, __VA_ARGS__)

static bool is_bert(const Model *m) { return m->cfg.type == MODEL_BERT; }

/* The index in hf_params order of the parameter called prefix + name, or -1 (a
 * message in m->err). */
static int vfind_index(Model *m, const char *fmt, va_list ap) {
  char name[HF_NAME_MAX], full[HF_NAME_MAX + 16];
  vsnprintf(name, sizeof name, fmt, ap);
  const char *prefix = is_bert(m) ? "bert." : "distilbert.";
  bool head = !strncmp(name, "classifier.", 11) || !strncmp(name, "pre_classifier.", 15);
  snprintf(full, sizeof full, "%s%s", head ? "" : prefix, name);
  for (int i = 0; i < m->n_params; i++)
    if (!strcmp(m->info[i].name, full))
      return i;
  MFAIL(m, "model: parameter \"%s\" is not in the list", full);
  return -1;
}

static int find_index(Model *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int find_index(Model *m, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int i = vfind_index(m, fmt, ap);
  va_end(ap);
  return i;
}

/* The parameter called prefix + name, or NULL (a message in m->err). */
static float *find_param(Model *m, float **block, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static float *find_param(Model *m, float **block, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int i = vfind_index(m, fmt, ap);
  va_end(ap);
  return i < 0 ? NULL : block[i];
}

/* An encoder block's eight modules (weight + bias each), in LayerParams order:
 * q, k, v, attention output, ln1, lin1, lin2, ln2. */
static const char *const D_LIN[] = {"attention.q_lin", "attention.k_lin", "attention.v_lin",
                                    "attention.out_lin", "sa_layer_norm", "ffn.lin1",
                                    "ffn.lin2", "output_layer_norm"};
static const char *const B_LIN[] = {"attention.self.query", "attention.self.key",
                                    "attention.self.value", "attention.output.dense",
                                    "attention.output.LayerNorm", "intermediate.dense",
                                    "output.dense", "output.LayerNorm"};
static const char *block_stem(const Model *m) {
  return is_bert(m) ? "encoder.layer" : "transformer.layer";
}

/* Fills the role pointers of one block (params or grads). */
int model_bind_params(Model *m, float **block, ModelParams *w) {
  bool bert = is_bert(m);
  int ok = 1;
#define F(dst, ...) ok &= ((dst) = find_param(m, block, __VA_ARGS__)) != NULL
  F(w->wte, "embeddings.word_embeddings.weight");
  F(w->wpe, "embeddings.position_embeddings.weight");
  w->wtt = NULL;
  if (bert) F(w->wtt, "embeddings.token_type_embeddings.weight");
  F(w->emb_lnw, "embeddings.LayerNorm.weight");
  F(w->emb_lnb, "embeddings.LayerNorm.bias");
  for (int l = 0; l < m->cfg.layers; l++) {
    LayerParams *p = &w->layer[l];
    const char *const *n = bert ? B_LIN : D_LIN;
    const char *stem = block_stem(m);
    float **dst[8][2] = {{&p->qw, &p->qb},     {&p->kw, &p->kb},     {&p->vw, &p->vb},
                         {&p->ow, &p->ob},     {&p->ln1w, &p->ln1b}, {&p->f1w, &p->f1b},
                         {&p->f2w, &p->f2b},   {&p->ln2w, &p->ln2b}};
    for (int k = 0; k < 8; k++) {
      F(*dst[k][0], "%s.%d.%s.weight", stem, l, n[k]);
      F(*dst[k][1], "%s.%d.%s.bias", stem, l, n[k]);
    }
  }
  F(w->pre_w, bert ? "pooler.dense.weight" : "pre_classifier.weight");
  F(w->pre_b, bert ? "pooler.dense.bias" : "pre_classifier.bias");
  F(w->cls_w, "classifier.weight");
  F(w->cls_b, "classifier.bias");
#undef F
  return ok ? 0 : -1;
}

/* Offsets into the parameter and gradient blocks: hf_params order, except that each
 * encoder block's q, k and v weights lie together, then their biases (the first
 * time the loop meets one of the six): one [3C, C] matrix and one [3C] bias, so the
 * q/k/v projection and its backward are one GEMM each (model.h). Files never see
 * this order: HF folders go through m->param[i] by name. */
int model_place_params(Model *m, size_t *off) {
  int n = m->n_params, L = m->cfg.layers;
  int *group = malloc((size_t)n * sizeof *group), (*qkv)[6] = malloc((size_t)(L ? L : 1) * sizeof *qkv);
  bool *placed = calloc((size_t)n, sizeof *placed);
  int rc = group && qkv && placed ? 0 : MFAIL(m, "model: out of memory");
  for (int i = 0; !rc && i < n; i++)
    group[i] = -1;
  const char *const *names = is_bert(m) ? B_LIN : D_LIN;
  for (int l = 0; !rc && l < L; l++)
    for (int k = 0; k < 6 && !rc; k++) {   /* q, k, v weights, then q, k, v biases */
      int i = find_index(m, "%s.%d.%s.%s", block_stem(m), l, names[k % 3], k < 3 ? "weight" : "bias");
      rc = i < 0 ? -1 : 0;
      if (!rc)
        qkv[l][k] = i, group[i] = l;
    }
  size_t at = 0;
  for (int i = 0; !rc && i < n; i++) {
    if (placed[i])
      continue;
    int members = group[i] < 0 ? 1 : 6;
    for (int k = 0; k < members; k++) {
      int j = group[i] < 0 ? i : qkv[group[i]][k];
      off[j] = at, placed[j] = true;
      at += m->info[j].numel;
    }
  }
  free(group), free(qkv), free(placed);
  return rc;
}

/* The fused projection's assumption, checked once the role pointers are bound. */
int model_check_qkv(Model *m) {
  size_t C = (size_t)m->cfg.hidden;
  for (int l = 0; l < m->cfg.layers; l++) {
    const LayerParams *p = &m->w.layer[l];
    if (p->kw != p->qw + C * C || p->vw != p->kw + C * C || p->kb != p->qb + C ||
        p->vb != p->kb + C)
      return MFAIL(m, "model: block %d's q, k, v parameters are not adjacent (internal error)", l);
  }
  return 0;
}
