/* hf_params.c: the tensors of a sequence classifier in Hugging Face's names: the full
 * parameter list for a config (names, shapes, how transformers initialises each),
 * that initialisation for a head a checkpoint lacks, and loading model.safetensors
 * into them with every shape checked against the config; see hf.h. */
#include "hf.h"
#include "errf.h"
#include "rng.h"

#include "safetensors.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the parameter list ---------------------------------------------------------- */

typedef struct Lister {
  HfParam *out;
  int cap, n;
  const char *prefix;
} Lister;

static void add(Lister *l, const char *name, int rank, int64_t d0, int64_t d1, HfInit init) {
  if (l->n < l->cap) {
    HfParam *p = &l->out[l->n];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s%s", l->prefix, name);
    p->rank = rank;
    p->shape[0] = d0;
    p->shape[1] = rank == 2 ? d1 : 0;
    p->numel = (size_t)d0 * (size_t)(rank == 2 ? d1 : 1);
    p->init = init;
  }
  l->n++;
}

static HfParam *last(Lister *l) { return l->n <= l->cap ? &l->out[l->n - 1] : NULL; }

/* NAME.weight [out, in] and NAME.bias [out]. */
static void linear(Lister *l, const char *name, int out, int in) {
  char s[HF_NAME_MAX];
  snprintf(s, sizeof s, "%s.weight", name);
  add(l, s, 2, out, in, HF_INIT_NORMAL);
  snprintf(s, sizeof s, "%s.bias", name);
  add(l, s, 1, out, 0, HF_INIT_ZEROS);
}

static void layer_norm(Lister *l, const char *name, int dim) {
  char s[HF_NAME_MAX];
  snprintf(s, sizeof s, "%s.weight", name);
  add(l, s, 1, dim, 0, HF_INIT_ONES);
  snprintf(s, sizeof s, "%s.bias", name);
  add(l, s, 1, dim, 0, HF_INIT_ZEROS);
}

static void embeddings(Lister *l, const ModelConfig *c) {
  HfParam *p;
  add(l, "embeddings.word_embeddings.weight", 2, c->vocab_size, c->hidden, HF_INIT_NORMAL);
  if ((p = last(l))) p->is_embedding = 1;
  add(l, "embeddings.position_embeddings.weight", 2, c->max_position, c->hidden, HF_INIT_NORMAL);
  if (c->type == MODEL_BERT)
    add(l, "embeddings.token_type_embeddings.weight", 2, c->type_vocab_size, c->hidden,
        HF_INIT_NORMAL);
  layer_norm(l, "embeddings.LayerNorm", c->hidden);
}

static void distilbert_layer(Lister *l, const ModelConfig *c, int i) {
  static const char *const attn[] = {"q_lin", "k_lin", "v_lin", "out_lin"};
  char s[HF_NAME_MAX];
  int h = c->hidden;
  for (int k = 0; k < 4; k++) {
    snprintf(s, sizeof s, "transformer.layer.%d.attention.%s", i, attn[k]);
    linear(l, s, h, h);
  }
  snprintf(s, sizeof s, "transformer.layer.%d.sa_layer_norm", i);
  layer_norm(l, s, h);
  snprintf(s, sizeof s, "transformer.layer.%d.ffn.lin1", i);
  linear(l, s, c->intermediate, h);
  snprintf(s, sizeof s, "transformer.layer.%d.ffn.lin2", i);
  linear(l, s, h, c->intermediate);
  snprintf(s, sizeof s, "transformer.layer.%d.output_layer_norm", i);
  layer_norm(l, s, h);
}

static void bert_layer(Lister *l, const ModelConfig *c, int i) {
  static const char *const qkv[] = {"query", "key", "value"};
  char s[HF_NAME_MAX];
  int h = c->hidden;
  for (int k = 0; k < 3; k++) {
    snprintf(s, sizeof s, "encoder.layer.%d.attention.self.%s", i, qkv[k]);
    linear(l, s, h, h);
  }
  snprintf(s, sizeof s, "encoder.layer.%d.attention.output.dense", i);
  linear(l, s, h, h);
  snprintf(s, sizeof s, "encoder.layer.%d.attention.output.LayerNorm", i);
  layer_norm(l, s, h);
  snprintf(s, sizeof s, "encoder.layer.%d.intermediate.dense", i);
  linear(l, s, c->intermediate, h);
  snprintf(s, sizeof s, "encoder.layer.%d.output.dense", i);
  linear(l, s, h, c->intermediate);
  snprintf(s, sizeof s, "encoder.layer.%d.output.LayerNorm", i);
  layer_norm(l, s, h);
}

static void mark_optional(Lister *l, int from) {
  for (int i = from; i < l->n && i < l->cap; i++) l->out[i].optional = 1;
}

int hf_params(const ModelConfig *c, HfParam *out, int cap) {
  if (hf_config_check(c, "config", NULL, 0)) return -1;
  bool bert = c->type == MODEL_BERT;
  Lister l = {out, out ? cap : 0, 0, bert ? "bert." : "distilbert."};
  embeddings(&l, c);
  for (int i = 0; i < c->layers; i++) bert ? bert_layer(&l, c, i) : distilbert_layer(&l, c, i);
  int heads = l.n;
  if (bert) linear(&l, "pooler.dense", c->hidden, c->hidden);
  l.prefix = "";
  if (!bert) linear(&l, "pre_classifier", c->hidden, c->hidden);
  linear(&l, "classifier", c->num_labels, c->hidden);
  mark_optional(&l, heads);
  return l.n;
}

/* ---- initialisation ------------------------------------------------------------ */

static uint64_t fnv1a(const char *s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
  return h;
}

/* Standard normal by Box-Muller; u1 in (0, 1]. */
static double normal(uint64_t *s) {
  double u1 = ((double)(splitmix64(s) >> 11) + 1.0) * 0x1p-53;
  double u2 = (double)(splitmix64(s) >> 11) * 0x1p-53;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void hf_init_param(const ModelConfig *c, const HfParam *p, float *dst, uint64_t seed) {
  uint64_t s = seed ^ fnv1a(p->name);
  for (size_t i = 0; i < p->numel; i++) {
    if (p->init == HF_INIT_ZEROS) dst[i] = 0.0f;
    else if (p->init == HF_INIT_ONES) dst[i] = 1.0f;
    else dst[i] = (float)(normal(&s) * c->initializer_range);
  }
  if (p->is_embedding && p->rank == 2 && c->pad_token_id < p->shape[0])
    memset(dst + (size_t)c->pad_token_id * (size_t)p->shape[1], 0,
           (size_t)p->shape[1] * sizeof *dst);
}

/* ---- loading weights ------------------------------------------------------------ */

/* The tensor for p, trying old BERT names (LayerNorm.gamma/beta) too. */
static const StTensor *lookup(const SafeTensors *st, const HfParam *p) {
  const StTensor *t = st_find(st, p->name);
  const char *ln = strstr(p->name, "LayerNorm.");
  if (t || !ln) return t;
  char alt[HF_NAME_MAX + 8];
  const char *suffix = strcmp(ln, "LayerNorm.weight") == 0 ? "gamma" : "beta";
  snprintf(alt, sizeof alt, "%.*sLayerNorm.%s", (int)(ln - p->name), p->name, suffix);
  return st_find(st, alt);
}

static void shape_text(int rank, const int64_t *shape, char out[64]) {
  int k = snprintf(out, 64, "[");
  for (int i = 0; i < rank && k < 56; i++)
    k += snprintf(out + k, (size_t)(64 - k), "%s%lld", i ? ", " : "", (long long)shape[i]);
  snprintf(out + k, (size_t)(64 - k), "]");
}

static int check_shape(const char *path, const StTensor *t, const HfParam *p, char *err,
                       size_t cap) {
  bool same = t->rank == p->rank;
  for (int i = 0; same && i < p->rank; i++) same = t->shape[i] == p->shape[i];
  if (same) return 0;
  char have[64], want[64];
  shape_text(t->rank, t->shape, have);
  shape_text(p->rank, p->shape, want);
  return model_fail(err, cap, "%s: tensor \"%s\" has shape %s, but config.json needs %s for \"%s\"",
              path, t->name, have, want, p->name);
}

static int missing(const char *path, const SafeTensors *st, const HfParam *p, char *err,
                   size_t cap) {
  const StTensor *any = st_count(st) ? st_tensor(st, 0) : NULL;
  return model_fail(err, cap, "%s: tensor \"%s\" is missing (the file has %d tensors%s%s%s)", path,
              p->name, st_count(st), any ? ", e.g. \"" : "", any ? any->name : "",
              any ? "\"" : "");
}

/* A NaN or infinite weight (a corrupt file, or an F64 value beyond float's range) would
 * make every output NaN without a word, so it is refused here, at the byte it came from. */
static int check_finite(const char *path, const StTensor *t, const float *v, char *err,
                        size_t cap) {
  for (size_t i = 0; i < t->numel; i++)
    if (!isfinite(v[i]))
      return model_fail(err, cap, "%s: byte %zu: tensor \"%s\": element %zu is %s as float "
                        "(weights must be finite)", path,
                        t->file_offset + i * st_dtype_size(t->dtype), t->name, i,
                        isnan(v[i]) ? "NaN" : v[i] > 0 ? "inf" : "-inf");
  return 0;
}

static int load_all(const char *path, const SafeTensors *st, const ModelConfig *c,
                    const HfParam *ps, int n, float *const *dst, uint64_t seed, int *n_init,
                    char *err, size_t cap) {
  for (int i = 0; i < n; i++) {
    const StTensor *t = lookup(st, &ps[i]);
    if (!t && !ps[i].optional) return missing(path, st, &ps[i], err, cap);
    if (!t) {
      hf_init_param(c, &ps[i], dst[i], seed);
      if (n_init) (*n_init)++;
      continue;
    }
    if (check_shape(path, t, &ps[i], err, cap) ||
        st_read_f32(t, dst[i], ps[i].numel, err, cap) || check_finite(path, t, dst[i], err, cap))
      return -1;
  }
  return 0;
}

int hf_load_params(const char *path, const ModelConfig *c, float *const *dst, uint64_t seed,
                   int *n_init, char *err, size_t cap) {
  if (n_init) *n_init = 0;
  if (hf_config_check(c, path, err, cap)) return -1;
  int n = hf_params(c, NULL, 0);
  HfParam *ps = malloc((size_t)n * sizeof *ps);
  if (!ps) return model_fail(err, cap, "%s: out of memory", path);
  hf_params(c, ps, n);
  SafeTensors *st = st_open(path, err, cap);
  int rc = st ? load_all(path, st, c, ps, n, dst, seed, n_init, err, cap) : -1;
  st_close(st);
  free(ps);
  return rc;
}
