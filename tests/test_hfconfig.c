/* test_hfconfig.c: tests of config.json reading and writing and of the parameter list
 * (model/hf.h).
 *
 *     test_hfconfig FIXTURES            e.g.  test_hfconfig tests/fixtures/hf
 *
 * - the committed configs (laid out as in real Hugging Face repos) load with the
 *   values and defaults transformers would give them;
 * - bad configs of both model types fail with a message naming the file and key
 *   (labels among them: invalid UTF-8, control characters, one name twice);
 * - hf_config_save output reads back to the same config, with short floats;
 * - hf_params gives the known parameter counts of distilbert-base-uncased and
 *   bert-base-uncased sequence classifiers, and initialisation follows HF.
 * Prints "N passed, M failed"; exits non-zero on any failure. */
#include "check.h"
#include "hf.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *g_fixtures;
static char g_tmp[64];

static int load_fixture(const char *name, ModelConfig *c, char *err, size_t cap) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", g_fixtures, name);
  return hf_config_load(path, c, err, cap);
}

static void test_distilbert_fixtures(void) {
  ModelConfig c;
  char err[512];
  CHECK(load_fixture("distilbert-base-uncased", &c, err, sizeof err) == 0, "%s", err);
  CHECK(c.type == MODEL_DISTILBERT && c.hidden == 768 && c.layers == 6 && c.heads == 12 &&
            c.intermediate == 3072 && c.vocab_size == 30522 && c.max_position == 512,
        "distilbert sizes");
  CHECK(c.hidden_dropout == 0.1f && c.attention_dropout == 0.1f && c.classifier_dropout == 0.2f,
        "distilbert dropouts");
  CHECK(c.layer_norm_eps == 1e-12f && c.initializer_range == 0.02f, "eps, init range");
  CHECK(c.num_labels == 2 && strcmp(c.id2label[1], "LABEL_1") == 0, "default labels");
  CHECK(strcmp(c.activation, "gelu") == 0 && c.type_vocab_size == 0, "activation");
  CHECK(load_fixture("distilbert-sst2/config.json", &c, err, sizeof err) == 0, "%s", err);
  CHECK(c.num_labels == 2 && strcmp(c.id2label[0], "NEGATIVE") == 0 &&
            strcmp(c.id2label[1], "POSITIVE") == 0, "sst2 labels");
  ModelConfig d;
  CHECK(load_fixture("distilbert-minimal", &c, err, sizeof err) == 0, "%s", err);
  hf_config_default(&d, MODEL_DISTILBERT);
  CHECK(memcmp(&c, &d, sizeof c) == 0, "minimal config gets every default");
}

static void test_bert_fixtures(void) {
  ModelConfig c;
  char err[512];
  CHECK(load_fixture("bert-base-uncased", &c, err, sizeof err) == 0, "%s", err);
  CHECK(c.type == MODEL_BERT && c.hidden == 768 && c.layers == 12 && c.type_vocab_size == 2 &&
            c.classifier_dropout == 0.1f, "bert-base");
  CHECK(load_fixture("all-MiniLM-L6-v2", &c, err, sizeof err) == 0, "%s", err);
  CHECK(c.hidden == 384 && c.layers == 6 && c.heads == 12 && c.intermediate == 1536, "minilm");
  CHECK(load_fixture("tiny-bert-3labels", &c, err, sizeof err) == 0, "%s", err);
  CHECK(c.num_labels == 3 && strcmp(c.id2label[2], "positive") == 0 && c.pad_token_id == 1 &&
            c.layer_norm_eps == 1e-5f && c.classifier_dropout == 0.25f &&
            c.hidden_dropout == 0.05f && c.attention_dropout == 0.0f && c.type_vocab_size == 16,
        "tiny bert");
}

/* ---- bad configs ---------------------------------------------------------------- */

typedef struct Bad {
  const char *json, *expect;
} Bad;

#define DB "{\"model_type\": \"distilbert\", "
#define BB "{\"model_type\": \"bert\", "
static const Bad BAD[] = {
    {"", ":1:1: invalid JSON (byte 0)"},
    {"{\"model_type\": \"bert\",\n \"hidden_size\": 12,,}", "config.json:2:"},
    {"[1, 2]", "config is not a JSON object"},
    {"{}", "key \"model_type\" is missing"},
    {"{\"model_type\": 3}", "key \"model_type\" must be a string, but it is a number"},
    {"{\"model_type\": \"roberta\"}", "key \"model_type\": \"roberta\" is not supported"},
    {DB "\"dim\": \"768\"}", "key \"dim\" must be an integer, but it is a string"},
    {DB "\"dim\": 76.8}", "key \"dim\": 76.8 is not an integer"},
    {DB "\"n_layers\": 0}", "key \"n_layers\": 0 is out of range"},
    {DB "\"n_heads\": 7}", "key \"n_heads\": 7 does not divide \"dim\" 768"},
    {DB "\"hidden_dim\": -5}", "key \"hidden_dim\": -5 is out of range"},
    {DB "\"vocab_size\": 1e12}", "key \"vocab_size\": 1e+12 is not an integer in range"},
    {DB "\"dropout\": 1.5}", "key \"dropout\": 1.5 is out of range"},
    {DB "\"seq_classif_dropout\": null}", "key \"seq_classif_dropout\" must be a number, but it is null"},
    {DB "\"attention_dropout\": true}", "key \"attention_dropout\" must be a number, but it is a boolean"},
    {DB "\"sinusoidal_pos_embds\": true}", "key \"sinusoidal_pos_embds\": only false is supported"},
    {DB "\"activation\": \"swish\"}", "key \"activation\": \"swish\" is not supported"},
    {DB "\"activation\": 1}", "key \"activation\" must be a string"},
    {DB "\"pad_token_id\": 40000}", "key \"pad_token_id\": 40000 is not below vocab_size 30522"},
    {DB "\"id2label\": {\"0\": \"a\", \"2\": \"b\"}}", "key \"id2label\": \"2\" is not one of the ids"},
    {DB "\"id2label\": [\"a\"]}", "key \"id2label\" must be an object, but it is an array"},
    {DB "\"id2label\": {\"0\": 5}}", "key \"id2label\": \"0\" must be a string"},
    {DB "\"id2label\": {\"0\": \"a\", \"1\": \"b\"}, \"num_labels\": 3}", "key \"num_labels\": 3 disagrees with id2label's 2 entries"},
    {DB "\"num_labels\": 0}", "key \"num_labels\": 0; 1 to 64 are supported"},
    /* labels become tab-separated columns (crisp predict) and label2id's keys: UTF-8
     * text without control characters, each once */
    {DB "\"id2label\": {\"0\": \"neg\\tative\", \"1\": \"b\"}}", "key \"id2label\": the label of id \"0\" holds a control character (U+0009 at byte 3)"},
    {DB "\"id2label\": {\"0\": \"a\", \"1\": \"pos\\nitive\"}}", "key \"id2label\": the label of id \"1\" holds a control character (U+000A"},
    {DB "\"id2label\": {\"0\": \"a\\r\", \"1\": \"b\"}}", "the label of id \"0\" holds a control character (U+000D"},
    {DB "\"id2label\": {\"0\": \"a\\u0085\", \"1\": \"b\"}}", "the label of id \"0\" holds a control character (U+0085"},
    {DB "\"id2label\": {\"0\": \"a\\u2028\", \"1\": \"b\"}}", "the label of id \"0\" holds a control character (U+2028"},
    {DB "\"id2label\": {\"0\": \"a\", \"1\": \"b\xff" "c\"}}", "key \"id2label\": the label of id \"1\" is not valid UTF-8 (byte 1: 0xFF)"},
    {DB "\"id2label\": {\"0\": \"\xc0\xaf\", \"1\": \"b\"}}", "the label of id \"0\" is not valid UTF-8"},
    {DB "\"id2label\": {\"0\": \"same\", \"1\": \"same\"}}", "key \"id2label\": ids \"0\" and \"1\" are both \"same\""},
    {DB "\"id2label\": {\"1\": \"x\", \"0\": \"x\"}}", "key \"id2label\": ids \"1\" and \"0\" are both \"x\""},
    {DB "\"label2id\": {\"a\\tb\": 0}}", "key \"label2id\": the label of entry 1 holds a control character (U+0009"},
    {DB "\"label2id\": {\"a\": 0, \"b\xfe\": 1}}", "key \"label2id\": the label of entry 2 is not valid UTF-8"},
    {DB "\"label2id\": {\"a\": 0, \"a\": 1}}", "key \"label2id\": \"a\" is given twice"},
    {DB "\"label2id\": {\"a\": 0, \"b\": 2}}", "key \"label2id\": \"b\" must map to an id 0..1"},
    {DB "\"label2id\": {\"a\": \"0\"}}", "key \"label2id\": \"a\" must map to an id 0..1"},
    {DB "\"label2id\": [\"a\"]}", "key \"label2id\" must be an object, but it is an array"},
    {BB "\"hidden_size\": 384, \"num_attention_heads\": 5}", "key \"num_attention_heads\": 5 does not divide \"hidden_size\" 384"},
    {BB "\"layer_norm_eps\": 0}", "key \"layer_norm_eps\": 0 is out of range"},
    {BB "\"hidden_dropout_prob\": \"0.1\"}", "key \"hidden_dropout_prob\" must be a number, but it is a string"},
    {BB "\"type_vocab_size\": 0}", "key \"type_vocab_size\": 0 is out of range"},
    {BB "\"hidden_act\": \"gelu_new\"}", "key \"hidden_act\": \"gelu_new\" is not supported"},
    {BB "\"position_embedding_type\": \"relative_key\"}", "key \"position_embedding_type\": only \"absolute\""},
    {BB "\"is_decoder\": true}", "key \"is_decoder\": only false is supported"},
    {BB "\"classifier_dropout\": -0.1}", "key \"classifier_dropout\": -0.1 is out of range"},
    {BB "\"initializer_range\": -1}", "key \"initializer_range\": -1 is out of range"},
    {BB "\"max_position_embeddings\": 0}", "key \"max_position_embeddings\": 0 is out of range"},
    {BB "\"hidden_size\": 384, \"hidden_size\": 768}", "key \"hidden_size\" is given twice"},
};

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  fputs(text, f);
  fclose(f);
}

static void test_bad_configs(void) {
  char path[128], err[512];
  snprintf(path, sizeof path, "%s/config.json", g_tmp);
  for (size_t i = 0; i < sizeof BAD / sizeof *BAD; i++) {
    write_text(path, BAD[i].json);
    ModelConfig c;
    err[0] = '\0';
    int rc = hf_config_load(path, &c, err, sizeof err);
    if (getenv("CRISP_VERBOSE")) printf("%s\n", err);
    CHECK(rc != 0 && strncmp(err, path, strlen(path)) == 0 && strstr(err, BAD[i].expect),
          "case %zu: %s\n  got:  %s\n  want: ...%s...", i, BAD[i].json, err, BAD[i].expect);
  }
  ModelConfig c;
  CHECK(hf_config_load("/nonexistent/config.json", &c, err, sizeof err) != 0 &&
            strstr(err, "/nonexistent/config.json: cannot open"), "missing file: %s", err);
}

/* ---- saving ------------------------------------------------------------------------ */

static char *read_text(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *buf = calloc(1, 1 << 16);
  size_t n = fread(buf, 1, (1 << 16) - 1, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

static void roundtrip(const ModelConfig *c, const char *want_arch, const char *want_text) {
  char err[512];
  CHECK(hf_config_save(g_tmp, c, err, sizeof err) == 0, "save: %s", err); /* a folder */
  ModelConfig back;
  CHECK(hf_config_load(g_tmp, &back, err, sizeof err) == 0, "reload: %s", err);
  CHECK(memcmp(c, &back, sizeof back) == 0, "%s round trip", want_arch);
  char path[128];
  snprintf(path, sizeof path, "%s/config.json", g_tmp);
  char *text = read_text(path);
  CHECK(text && strstr(text, want_arch) && strstr(text, want_text), "%s text:\n%s", want_arch,
        text ? text : "(none)");
  CHECK(text && strstr(text, "\"label2id\"") && strstr(text, "\"id2label\""), "labels written");
  free(text);
}

static void test_save(void) {
  ModelConfig c;
  char err[512];
  CHECK(load_fixture("distilbert-sst2", &c, err, sizeof err) == 0, "%s", err);
  roundtrip(&c, "\"DistilBertForSequenceClassification\"", "\n  \"seq_classif_dropout\": 0.2,\n");
  CHECK(load_fixture("tiny-bert-3labels", &c, err, sizeof err) == 0, "%s", err);
  roundtrip(&c, "\"BertForSequenceClassification\"", "\n  \"layer_norm_eps\": 1e-05,\n");
  hf_config_default(&c, MODEL_BERT);
  c.heads = 5;
  CHECK(hf_config_save(g_tmp, &c, err, sizeof err) != 0 && strstr(err, "num_attention_heads"),
        "invalid config not saved: %s", err);
}

/* ---- parameters ------------------------------------------------------------------- */

static size_t total(const HfParam *p, int n) {
  size_t s = 0;
  for (int i = 0; i < n; i++) s += p[i].numel;
  return s;
}

static const HfParam *find(const HfParam *p, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (strcmp(p[i].name, name) == 0) return &p[i];
  return NULL;
}

static void test_params(void) {
  ModelConfig c;
  char err[512];
  static HfParam p[256];
  CHECK(load_fixture("distilbert-base-uncased", &c, err, sizeof err) == 0, "%s", err);
  int n = hf_params(&c, p, 256);
  CHECK(n == 104 && hf_params(&c, NULL, 0) == 104, "distilbert: %d params", n);
  CHECK(total(p, n) == 66955010, "DistilBertForSequenceClassification has %zu", total(p, n));
  const HfParam *q = find(p, n, "distilbert.transformer.layer.5.ffn.lin1.weight");
  CHECK(q && q->rank == 2 && q->shape[0] == 3072 && q->shape[1] == 768 && !q->optional, "lin1");
  q = find(p, n, "pre_classifier.weight");
  CHECK(q && q->optional && q->init == HF_INIT_NORMAL, "pre_classifier optional");
  CHECK(strcmp(p[0].name, "distilbert.embeddings.word_embeddings.weight") == 0 &&
            p[0].is_embedding, "first");
  CHECK(strcmp(p[n - 1].name, "classifier.bias") == 0 && p[n - 1].shape[0] == 2, "last");

  CHECK(load_fixture("bert-base-uncased", &c, err, sizeof err) == 0, "%s", err);
  n = hf_params(&c, p, 256);
  CHECK(n == 201, "bert: %d params", n);
  CHECK(total(p, n) == 109483778, "BertForSequenceClassification has %zu", total(p, n));
  q = find(p, n, "bert.encoder.layer.11.attention.output.LayerNorm.weight");
  CHECK(q && q->init == HF_INIT_ONES && q->shape[0] == 768, "LayerNorm");
  q = find(p, n, "bert.pooler.dense.weight");
  CHECK(q && q->optional, "pooler optional");
  CHECK(hf_params(&c, p, 3) == 201, "count beyond cap");
  c.heads = 0;
  CHECK(hf_params(&c, p, 256) == -1, "invalid config");
}

static void test_init(void) {
  ModelConfig c;
  hf_config_default(&c, MODEL_DISTILBERT);
  c.vocab_size = 500;
  c.pad_token_id = 3;
  static HfParam p[128];
  int n = hf_params(&c, p, 128);
  float *w = malloc(p[0].numel * sizeof *w), *w2 = malloc(p[0].numel * sizeof *w);
  hf_init_param(&c, &p[0], w, 7);
  hf_init_param(&c, &p[0], w2, 7);
  double s = 0, s2 = 0;
  int pad_zero = 1;
  for (size_t i = 0; i < p[0].numel; i++) {
    s += w[i];
    s2 += (double)w[i] * w[i];
    if (i / 768 == 3) pad_zero &= w[i] == 0;
  }
  double mean = s / (double)p[0].numel, sd = sqrt(s2 / (double)p[0].numel - mean * mean);
  CHECK(fabs(mean) < 1e-3 && fabs(sd - 0.02) < 5e-4, "N(0, 0.02): mean %g sd %g", mean, sd);
  CHECK(pad_zero, "pad row zero");
  CHECK(memcmp(w, w2, p[0].numel * sizeof *w) == 0, "same seed, same values");
  const HfParam *ln = find(p, n, "distilbert.embeddings.LayerNorm.weight");
  hf_init_param(&c, ln, w, 7);
  CHECK(w[0] == 1 && w[767] == 1, "LayerNorm gamma ones");
  free(w);
  free(w2);
}

int main(int argc, char **argv) {
  g_fixtures = argc > 1 ? argv[1] : "tests/fixtures/hf";
  snprintf(g_tmp, sizeof g_tmp, "/tmp/crisp-hfc-XXXXXX");
  if (!mkdtemp(g_tmp)) return 2;
  test_distilbert_fixtures();
  test_bert_fixtures();
  test_bad_configs();
  test_save();
  test_params();
  test_init();
  char path[128];
  snprintf(path, sizeof path, "%s/config.json", g_tmp);
  unlink(path);
  rmdir(g_tmp);
  return check_summary();
}
