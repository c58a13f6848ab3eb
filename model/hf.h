/* hf.h: Hugging Face model folders for DistilBERT and BERT sequence classifiers:
 * config.json in and out, the full parameter list (names as transformers' state_dict
 * of *ForSequenceClassification has them, shapes from the config), loading weights
 * from model.safetensors with shapes checked against the config, and saving a folder
 * that transformers.AutoModelForSequenceClassification.from_pretrained loads.
 *
 * Keys missing from config.json take transformers' defaults (DistilBertConfig /
 * BertConfig). A key with the wrong JSON type or a value out of range is an error
 * naming the file and the key:
 *     m/config.json: key "n_heads": 7 does not divide "dim" 768
 *
 * Parameters are float32, row-major, in the order hf_params lists them; a Linear
 * weight is [out, in] as in PyTorch. */
#ifndef CRISP_HF_H
#define CRISP_HF_H

#include <stddef.h>
#include <stdint.h>

enum { HF_MAX_LABELS = 64, HF_LABEL_MAX = 48, HF_NAME_MAX = 96 };

typedef enum ModelType { MODEL_DISTILBERT, MODEL_BERT } ModelType;

typedef struct ModelConfig {
  ModelType type;
  int vocab_size;          /* distilbert/bert: vocab_size (30522) */
  int hidden;              /* dim / hidden_size (768) */
  int layers;              /* n_layers (6) / num_hidden_layers (12) */
  int heads;               /* n_heads / num_attention_heads (12) */
  int intermediate;        /* hidden_dim / intermediate_size (3072) */
  int max_position;        /* max_position_embeddings (512) */
  int type_vocab_size;     /* bert: type_vocab_size (2); distilbert: 0 */
  int num_labels;          /* len(id2label), else num_labels, else 2 */
  int pad_token_id;        /* pad_token_id (0) */
  float layer_norm_eps;    /* distilbert: 1e-12 (fixed); bert: layer_norm_eps (1e-12) */
  float hidden_dropout;    /* dropout / hidden_dropout_prob (0.1) */
  float attention_dropout; /* attention_dropout / attention_probs_dropout_prob (0.1) */
  float classifier_dropout; /* distilbert: seq_classif_dropout (0.2); bert:
                               classifier_dropout, or hidden_dropout_prob if null */
  float initializer_range; /* initializer_range (0.02) */
  char activation[16];     /* activation / hidden_act: "gelu" (erf) or "relu" */
  char id2label[HF_MAX_LABELS][HF_LABEL_MAX]; /* "LABEL_0", ... when not given */
} ModelConfig;

/* transformers' defaults for the type, with num_labels 2. */
void hf_config_default(ModelConfig *c, ModelType type);

/* Reads path (a config.json, or a folder holding one) into *c. 0, or -1 with the
 * reason in err (cap bytes). */
int hf_config_load(const char *path, ModelConfig *c, char *err, size_t cap);

/* Checks ranges and consistency (what hf_config_load checks after reading). */
int hf_config_check(const ModelConfig *c, const char *path, char *err, size_t cap);

/* Writes a config.json for DistilBertForSequenceClassification or
 * BertForSequenceClassification (model_type, architectures, id2label, label2id, every
 * key above) to path (a file, or a folder that gets config.json), atomically. */
int hf_config_save(const char *path, const ModelConfig *c, char *err, size_t cap);

/* How a parameter missing from a checkpoint would be initialised by transformers. */
typedef enum HfInit {
  HF_INIT_NORMAL,    /* N(0, initializer_range); an embedding's pad_token_id row zero */
  HF_INIT_ZEROS,     /* biases, LayerNorm beta */
  HF_INIT_ONES,      /* LayerNorm gamma */
} HfInit;

typedef struct HfParam {
  char name[HF_NAME_MAX]; /* full state_dict name, e.g. "classifier.bias",
                             "distilbert.transformer.layer.0.ffn.lin1.weight" */
  int rank;               /* 1 or 2 */
  int64_t shape[2];
  size_t numel;
  HfInit init;
  int is_embedding;       /* word_embeddings: zero the pad_token_id row on init */
  int optional;           /* a head (pre_classifier, classifier, pooler): may be
                             missing from a pretrained checkpoint, then initialised */
} HfParam;

/* Lists every parameter of the sequence classifier for c into out (room for cap);
 * returns how many there are (call with cap 0 to count), or -1 if the config is
 * invalid. Order: embeddings, then layer 0..L-1, then the heads.
 *
 * DistilBERT (prefix "distilbert."):
 *   embeddings.{word_embeddings,position_embeddings}.weight, embeddings.LayerNorm.{weight,bias}
 *   transformer.layer.I.attention.{q_lin,k_lin,v_lin,out_lin}.{weight,bias}
 *   transformer.layer.I.sa_layer_norm.{weight,bias}
 *   transformer.layer.I.ffn.{lin1,lin2}.{weight,bias}
 *   transformer.layer.I.output_layer_norm.{weight,bias}
 *   then (no prefix) pre_classifier.{weight,bias}, classifier.{weight,bias}
 * BERT (prefix "bert."):
 *   embeddings.{word,position,token_type}_embeddings.weight, embeddings.LayerNorm.{weight,bias}
 *   encoder.layer.I.attention.self.{query,key,value}.{weight,bias}
 *   encoder.layer.I.attention.output.dense.{weight,bias}
 *   encoder.layer.I.attention.output.LayerNorm.{weight,bias}
 *   encoder.layer.I.intermediate.dense.{weight,bias}
 *   encoder.layer.I.output.dense.{weight,bias}, encoder.layer.I.output.LayerNorm.{weight,bias}
 *   pooler.dense.{weight,bias}, then (no prefix) classifier.{weight,bias} */
int hf_params(const ModelConfig *c, HfParam *out, int cap);

/* Fills dst[i] (hf_params(c)[i].numel floats each) from the safetensors file at path.
 * Names are found with or without the "distilbert."/"bert." prefix (and BERT's old
 * LayerNorm gamma/beta names); F32, F16, BF16 and F64 are converted. A tensor whose
 * shape differs from the config's is an error naming both; a missing optional head
 * is initialised as transformers does, from seed (its name is reported through
 * *n_init if not NULL); any other missing tensor is an error. Tensors in the file
 * that the model does not use (position_ids, an MLM head) are ignored. */
int hf_load_params(const char *path, const ModelConfig *c, float *const *dst, uint64_t seed,
                   int *n_init, char *err, size_t cap);

/* Initialises one parameter as transformers' _init_weights does. */
void hf_init_param(const ModelConfig *c, const HfParam *p, float *dst, uint64_t seed);

/* Writes a fine-tuned model folder dir (created if absent): model.safetensors from
 * src[i] (in hf_params order, with metadata "format": "pt"), vocab.txt copied from
 * vocab_path (skipped if NULL), tokenizer_config.json, and config.json last. Each
 * file is written atomically. */
int hf_save_model(const char *dir, const ModelConfig *c, const float *const *src,
                  const char *vocab_path, char *err, size_t cap);

#endif
