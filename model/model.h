/* model.h: DistilBERT and BERT sequence classifiers, forward and backward over a
 * backend (llm.c style).
 *
 *   m = model_create(be, &config, &opts, err, cap)    blocks planned and allocated
 *   model_load(m, "dir/model.safetensors", seed, &n_init, err, cap)  (or model_init_params)
 *   model_zero_grad(m)
 *   model_forward(m, ids, lengths, B, N, labels, &run)   run.loss, run.logits
 *   model_backward(m)                                     grads += d(run.loss)
 *   model_save(m, dir, vocab, err, cap)               a Hugging Face folder
 *
 * Memory: one float block for every parameter, in hf_params order except that each
 * encoder block's q, k, v weights, then biases, are adjacent (model_params.h: the
 * fused projection; m->param[i] points into it, and m->w names the same pointers by
 * role), one block of the same shape
 * for the gradients, and one activation block planned once for (max_batch,
 * max_len): a batch of B x N (N = its longest sequence, "dynamic padding") uses the
 * first B*N rows of every activation. Nothing is allocated per call.
 *
 * Inputs: ids [B, N] row-major, lengths [B] (1..N: the attended positions, [CLS] and
 * [SEP] included; the rest is padding), labels [B] in [0, num_labels) or NULL.
 * Attention masks padding by lengths; results do not depend on N beyond the
 * longest length (padded positions are computed but never read by valid ones).
 *
 * Dropout (hidden, attention, classifier) runs only when run->train, at the rates in
 * m->drop (the config's, by default), with masks that are pure functions of
 * (run->seed, run->step, site, position), so the backward regenerates them.
 * Attention runs through model/attention.h with m->attn's settings: the
 * implementation (the C reference, or crisp kernels registered with
 * model_add_crisp), the selection mode, the per-layer sparsity s_l, keep_min.
 *
 * The elementwise layers are C loops over host memory, so the model runs on the
 * "cpu" backend only for now (model_create refuses another with a message). */
#ifndef CRISP_MODEL_MODEL_H
#define CRISP_MODEL_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attention.h"
#include "hf.h"

enum { MODEL_MAX_LAYERS = 64 };

/* One encoder block's parameters. DistilBERT names / BERT names:
 *   q/k/v/o: attention.{q,k,v,out}_lin / attention.self.{query,key,value},
 *            attention.output.dense
 *   ln1: sa_layer_norm / attention.output.LayerNorm
 *   f1, f2: ffn.lin1, ffn.lin2 / intermediate.dense, output.dense
 *   ln2: output_layer_norm / output.LayerNorm */
typedef struct LayerParams {
  float *qw, *qb, *kw, *kb, *vw, *vb, *ow, *ob;   /* [C, C], [C] */
  float *ln1w, *ln1b;                             /* [C] */
  float *f1w, *f1b;                               /* [I, C], [I] */
  float *f2w, *f2b;                               /* [C, I], [C] */
  float *ln2w, *ln2b;                             /* [C] */
} LayerParams;

typedef struct ModelParams {
  float *wte, *wpe, *wtt;          /* [V, C], [P, C], BERT [T, C] (else NULL) */
  float *emb_lnw, *emb_lnb;        /* [C] */
  LayerParams *layer;              /* [layers] */
  float *pre_w, *pre_b;            /* DistilBERT pre_classifier / BERT pooler.dense [C, C] */
  float *cls_w, *cls_b;            /* classifier [K, C], [K] */
} ModelParams;

/* One block's saved activations (rows = B*N of the current batch). */
typedef struct LayerActs {
  float *qkv;                      /* [B, N, 3, H, D] */
  float *att;                      /* [B, N, H, D] attention output */
  AttnRows rows;                   /* lse, tau, kept, entropy, dense_entropy [B, H, N] */
  float *res1;                     /* out-projection (+ dropout) + input: ln1's input */
  float *ln1_mean, *ln1_rstd, *ln1;
  float *fch, *fact;               /* [rows, I]: lin1 output, after GELU/ReLU */
  float *res2;                     /* lin2 (+ dropout) + ln1: ln2's input */
  float *ln2_mean, *ln2_rstd, *ln2;   /* ln2: the block's output */
} LayerActs;

typedef struct ModelActs {
  int32_t *ids, *lengths, *labels; /* the batch, copied in */
  float *emb, *emb_mean, *emb_rstd, *x0;   /* embedding sum, LN stats, LN + dropout */
  LayerActs *layer;
  float *pre, *pre_act, *pre_drop; /* head [B, C]: dense, ReLU/tanh, dropout */
  float *logits, *probs;           /* [B, K] */
  /* backward scratch */
  float *g_d, *g_x, *g_y;          /* [rows, C] */
  float *g_i;                      /* [rows, I] */
  float *g_qkv;                    /* [rows, 3C] */
  float *g_head, *g_logits;        /* [B, C], [B, K] */
  float *delta;                    /* [B, H, N] attention backward scratch */
} ModelActs;

/* Attention settings (change them between calls freely). */
typedef struct ModelAttnSettings {
  AttnImpl impl;                      /* ATTN_IMPL_REF (default) or ATTN_IMPL_CRISP: the
                                         kernels registered with model_add_crisp */
  SelectKind select;                  /* none | row_topk | head_quantile | layer_quantile */
  float sparsity[MODEL_MAX_LAYERS];   /* s_l per layer, [0, 1) */
  int keep_min;                       /* >= 1 */
} ModelAttnSettings;

typedef struct ModelDropout {
  float hidden;      /* embeddings, FFN output, BERT's attention output */
  float attention;   /* attention probabilities */
  float classifier;  /* DistilBERT seq_classif_dropout / BERT classifier_dropout */
} ModelDropout;

typedef struct ModelOptions {
  int max_batch, max_len;   /* the activation plan (max_len <= max_position) */
} ModelOptions;

/* One forward's settings and results. */
typedef struct ModelRun {
  bool train;               /* in: dropout at m->drop's rates (else none) */
  uint32_t seed, step;      /* in: dropout counters */
  bool stats;               /* in: fill m->stat_* (kept fraction, entropy per head) */
  bool dense_stats;         /* in: the attention also writes each row's dense entropy
                               (m->a.layer[l].rows.dense_entropy; the adaptive budget) */
  float loss;               /* out: mean cross-entropy (NAN without labels) */
  int correct;              /* out: rows whose argmax equals the label */
  const float *logits;      /* out: [B, num_labels], valid until the next forward */
} ModelRun;

typedef struct Model {
  ModelConfig cfg;
  Backend *be;
  int n_params;
  HfParam *info;            /* [n_params], hf_params order */
  float **param, **grad;    /* [n_params] pointers into the blocks */
  float *params_mem, *grads_mem;
  size_t n_param_floats;
  ModelParams w, g;         /* the same pointers, by role */
  void *acts_mem;
  size_t acts_bytes;
  ModelActs a;
  int max_batch, max_len;
  AttnEngine attn_engine;
  ModelAttnSettings attn;
  ModelDropout drop;
  /* the last forward (what the backward differentiates) */
  int B, N;
  bool have_labels, train;
  uint32_t seed, step;
  ModelAttnSettings run_attn;   /* m->attn and the dropout rates in effect (0 when */
  ModelDropout run_drop;        /* not training), so later changes don't leak in */
  /* statistics of the last forward with run->stats */
  double *stat_kept;        /* [layers]: kept / valid scores (1 - achieved sparsity) */
  double *stat_entropy;     /* [layers * heads]: mean entropy of kept rows (nats) */
  double *stat_entropy_norm;   /* [layers * heads]: mean entropy / log(L), L > 1 rows */
  char err[512];
} Model;

/* Plans and allocates the blocks; parameters are zero until loaded/initialised.
 * NULL with the reason in err. */
Model *model_create(Backend *be, const ModelConfig *c, const ModelOptions *o, char *err,
                    size_t cap);
void model_free(Model *m);

/* Every parameter as transformers initialises it (hf_init_param), from seed. */
void model_init_params(Model *m, uint64_t seed);
/* Loads a model.safetensors (hf_load_params: missing heads are initialised from seed,
 * *n_init counts them; may be NULL). */
int model_load(Model *m, const char *safetensors_path, uint64_t seed, int *n_init, char *err,
               size_t cap);
/* Writes a Hugging Face folder (hf_save_model). */
int model_save(const Model *m, const char *dir, const char *vocab_path, char *err, size_t cap);

/* Registers a loaded crisp module (compiled from a spec with this model's head_dim,
 * max_seq >= max_len, causal = false) for its selection mode; calls with
 * m->attn.impl = ATTN_IMPL_CRISP and that mode then run it (attention.h). The module
 * is borrowed: unload it after model_free. 0, or -1 with m->err. */
int model_add_crisp(Model *m, RtModule *mod);

void model_zero_grad(Model *m);

/* Runs the batch; with labels also the loss. 0, or -1 with the reason in m->err
 * (bad ids / lengths / labels / shape, a backend failure). */
int model_forward(Model *m, const int32_t *ids, const int32_t *lengths, int B, int N,
                  const int32_t *labels, ModelRun *run);
/* Accumulates the gradient of the last forward's mean loss into m->grad (needs
 * labels in that forward). 0, or -1 with m->err. */
int model_backward(Model *m);

/* Parameter bytes and the activation plan, for messages and docs. */
size_t model_param_count(const Model *m);

#endif
