/* test_hf_folder.c: Hugging Face model folders out and back in (model/hf.h).
 *
 *     test_hf_folder CHECK_SCRIPT      e.g.  test_hf_folder tests/parity/check_hf_load.py
 *
 * For a tiny random DistilBERT and BERT sequence classifier:
 * - hf_save_model writes config.json, model.safetensors, vocab.txt and
 *   tokenizer_config.json, nothing else, and they read back bit for bit;
 * - a checkpoint without heads and without the model prefix loads, its heads
 *   initialised as transformers does; old BERT LayerNorm gamma/beta names load;
 * - a shape that disagrees with the config, or a missing body tensor, is an error
 *   naming the tensor;
 * - if python3 can import transformers and torch ($CRISP_PYTHON picks another
 *   interpreter), CHECK_SCRIPT loads both folders with
 *   AutoModelForSequenceClassification.from_pretrained: no missing or unexpected
 *   weights, each parameter's sum equal to ours, finite logits. Otherwise (the script
 *   exits 77, or there is no python3) that part is skipped with a message.
 * Prints "N passed, M failed"; exits non-zero on any failure. */
#include "check.h"
#include "hf.h"
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_tmp[64];

typedef struct Model {
  ModelConfig c;
  HfParam *p;
  float **w;
  int n;
  char dir[128];
} Model;

static uint64_t rng(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static void tiny_config(ModelConfig *c, ModelType t) {
  hf_config_default(c, t);
  c->vocab_size = 120;
  c->hidden = 32;
  c->layers = 2;
  c->heads = 4;
  c->intermediate = 37;
  c->max_position = 64;
  snprintf(c->id2label[0], HF_LABEL_MAX, "NEGATIVE");
  snprintf(c->id2label[1], HF_LABEL_MAX, "POSITIVE");
}

/* Random weights, every tensor different (LayerNorm too, so names matter). */
static void model_make(Model *m, ModelType t, const char *name) {
  tiny_config(&m->c, t);
  m->n = hf_params(&m->c, NULL, 0);
  m->p = calloc((size_t)m->n, sizeof *m->p);
  m->w = calloc((size_t)m->n, sizeof *m->w);
  hf_params(&m->c, m->p, m->n);
  uint64_t s = 0x9e3779b97f4a7c15ull + (uint64_t)t;
  for (int i = 0; i < m->n; i++) {
    m->w[i] = malloc(m->p[i].numel * sizeof(float));
    for (size_t k = 0; k < m->p[i].numel; k++)
      m->w[i][k] = (float)((double)(rng(&s) >> 11) * 0x1p-53 - 0.5) * 0.2f;
  }
  snprintf(m->dir, sizeof m->dir, "%s/%s", g_tmp, name);
}

static void model_free(Model *m) {
  for (int i = 0; i < m->n; i++) free(m->w[i]);
  free(m->w);
  free(m->p);
}

static float **alloc_like(const Model *m) {
  float **d = calloc((size_t)m->n, sizeof *d);
  for (int i = 0; i < m->n; i++) d[i] = calloc(m->p[i].numel, sizeof(float));
  return d;
}

static void free_like(const Model *m, float **d) {
  for (int i = 0; i < m->n; i++) free(d[i]);
  free(d);
}

static void write_vocab(const char *path) {
  FILE *f = fopen(path, "w");
  fputs("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n", f);
  for (char ch = 'a'; ch <= 'z'; ch++) fprintf(f, "%c\n##%c\n", ch, ch);
  fputs(",\n.\n!\nthe\nmovie\ngorgeous\nwitty\n", f);
  fclose(f);
}

static int count_dir(const char *dir, int *tmp) {
  DIR *d = opendir(dir);
  int n = 0;
  *tmp = 0;
  for (struct dirent *e; d && (e = readdir(d));) {
    if (e->d_name[0] == '.') continue;
    n++;
    *tmp += strstr(e->d_name, ".tmp-") != NULL;
  }
  if (d) closedir(d);
  return n;
}

static void test_save_load(Model *m, const char *vocab) {
  char err[512], path[256];
  CHECK(hf_save_model(m->dir, &m->c, (const float *const *)m->w, vocab, err, sizeof err) == 0,
        "save: %s", err);
  int tmp, files = count_dir(m->dir, &tmp);
  CHECK(files == 4 && tmp == 0, "%s: %d files, %d temporaries", m->dir, files, tmp);
  ModelConfig back;
  CHECK(hf_config_load(m->dir, &back, err, sizeof err) == 0, "%s", err);
  CHECK(memcmp(&back, &m->c, sizeof back) == 0, "config round trip");
  float **d = alloc_like(m);
  int n_init = -1;
  snprintf(path, sizeof path, "%s/model.safetensors", m->dir);
  CHECK(hf_load_params(path, &back, d, 1, &n_init, err, sizeof err) == 0, "load: %s", err);
  int same = 1;
  for (int i = 0; i < m->n; i++) same &= memcmp(d[i], m->w[i], m->p[i].numel * 4) == 0;
  CHECK(same && n_init == 0, "weights round trip (%d initialised)", n_init);
  free_like(m, d);
}

/* Writes the tensors of m, names mapped by rename (NULL: drop the tensor). */
static int write_subset(const Model *m, const char *path, const char *(*rename)(const char *, char *)) {
  StWriteTensor *t = calloc((size_t)m->n, sizeof *t);
  char (*names)[HF_NAME_MAX + 8] = calloc((size_t)m->n, sizeof *names);
  int k = 0;
  for (int i = 0; i < m->n; i++) {
    const char *name = rename(m->p[i].name, names[k]);
    if (!name) continue;
    t[k] = (StWriteTensor){name, m->p[i].rank, {m->p[i].shape[0], m->p[i].shape[1]}, m->w[i]};
    k++;
  }
  char err[512];
  int rc = st_write(path, t, k, NULL, err, sizeof err);
  free(t);
  free(names);
  return rc;
}

/* A pretrained checkpoint: no prefix, no heads. */
static const char *backbone_only(const char *name, char *out) {
  if (strncmp(name, "distilbert.", 11) == 0) return name + 11;
  if (strncmp(name, "bert.pooler", 11) == 0) return NULL;
  if (strncmp(name, "bert.", 5) == 0) return name + 5;
  (void)out;
  return NULL;
}

static const char *gamma_beta(const char *name, char *out) {
  const char *ln = strstr(name, "LayerNorm.");
  if (!ln) return name;
  snprintf(out, HF_NAME_MAX + 8, "%.*sLayerNorm.%s", (int)(ln - name), name,
           strcmp(ln, "LayerNorm.weight") == 0 ? "gamma" : "beta");
  return out;
}

static const char *drop_layer1_lin(const char *name, char *out) {
  (void)out;
  return strstr(name, "layer.1.") && strstr(name, ".bias") && strstr(name, "1.ffn.lin2") ? NULL
                                                                                        : name;
}

static void test_pretrained(Model *m) {
  char path[256], err[512];
  snprintf(path, sizeof path, "%s/pretrained.safetensors", g_tmp);
  CHECK(write_subset(m, path, backbone_only) == 0, "write backbone");
  float **d = alloc_like(m);
  int n_init = 0;
  CHECK(hf_load_params(path, &m->c, d, 5, &n_init, err, sizeof err) == 0, "%s", err);
  CHECK(n_init == 4, "4 head tensors initialised, not %d", n_init);
  int body = 1, zeros = 1;
  for (int i = 0; i < m->n; i++) {
    if (!m->p[i].optional) body &= memcmp(d[i], m->w[i], m->p[i].numel * 4) == 0;
    else if (m->p[i].init == HF_INIT_ZEROS) zeros &= d[i][0] == 0 && d[i][m->p[i].numel - 1] == 0;
  }
  CHECK(body && zeros, "body loaded, head biases zero");
  if (m->c.type == MODEL_BERT) {
    CHECK(write_subset(m, path, gamma_beta) == 0, "write gamma/beta");
    CHECK(hf_load_params(path, &m->c, d, 5, &n_init, err, sizeof err) == 0 && n_init == 0,
          "gamma/beta names: %s", err);
  }
  ModelConfig wide = m->c;
  wide.hidden = 64;
  CHECK(hf_load_params(path, &wide, d, 5, NULL, err, sizeof err) != 0 &&
            strstr(err, "has shape [120, 32], but config.json needs [120, 64]"), "shape: %s", err);
  /* a NaN or infinite weight is refused at its byte, not carried into every output */
  float keep = m->w[2][3];
  for (int k = 0; k < 2; k++) {
    m->w[2][3] = k ? -INFINITY : NAN;
    CHECK(write_subset(m, path, backbone_only) == 0, "write a non-finite weight");
    CHECK(hf_load_params(path, &m->c, d, 5, NULL, err, sizeof err) != 0 &&
              strstr(err, k ? "element 3 is -inf as float" : "element 3 is NaN as float") &&
              strstr(err, ": byte ") && strstr(err, m->p[2].name + (m->c.type == MODEL_BERT ? 5 : 11)),
          "non-finite weight: %s", err);
  }
  m->w[2][3] = keep;
  if (m->c.type == MODEL_DISTILBERT) {
    CHECK(write_subset(m, path, drop_layer1_lin) == 0, "write without a bias");
    CHECK(hf_load_params(path, &m->c, d, 5, NULL, err, sizeof err) != 0 &&
              strstr(err, "\"distilbert.transformer.layer.1.ffn.lin2.bias\" is missing"),
          "missing: %s", err);
  }
  free_like(m, d);
  unlink(path);
}

/* ---- transformers --------------------------------------------------------------------- */

static const char *python(void) {
  const char *p = getenv("CRISP_PYTHON");
  return p && *p ? p : "python3";
}

/* s in single quotes for sh. */
static void quote(char *out, size_t n, const char *s) {
  size_t k = 0;
  out[k++] = '\'';
  for (; *s && k + 5 < n; s++) {
    if (*s == '\'') {
      memcpy(out + k, "'\\''", 4);
      k += 4;
    } else {
      out[k++] = *s;
    }
  }
  out[k++] = '\'';
  out[k] = '\0';
}

/* Runs cmd; its stdout, and its exit status in *status (127: not found). */
static char *run_capture(const char *cmd, int *status) {
  FILE *f = popen(cmd, "r");
  *status = 128;
  if (!f) return NULL;
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  for (size_t k; (k = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
    n += k;
    if (n + 1 == cap) buf = realloc(buf, cap *= 2);
  }
  buf[n] = '\0';
  int rc = pclose(f);
  *status = WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
  return buf;
}

static void check_result(const Model *m, const cJSON *r) {
  const cJSON *arch = cJSON_GetObjectItem(r, "architecture");
  const char *want = m->c.type == MODEL_BERT ? "BertForSequenceClassification"
                                             : "DistilBertForSequenceClassification";
  CHECK(cJSON_IsString(arch) && strcmp(arch->valuestring, want) == 0, "architecture %s", want);
  const cJSON *problems = cJSON_GetObjectItem(r, "problems");
  char *text = cJSON_PrintUnformatted(problems);
  CHECK(cJSON_GetArraySize(problems) == 0, "%s: transformers reports %s", m->dir, text);
  free(text);
  const cJSON *sums = cJSON_GetObjectItem(r, "param_sums");
  CHECK(cJSON_GetArraySize(sums) == m->n, "%d parameters in torch, %d here",
        cJSON_GetArraySize(sums), m->n);
  int bad = 0;
  for (int i = 0; i < m->n; i++) {
    double s = 0;
    for (size_t k = 0; k < m->p[i].numel; k++) s += m->w[i][k];
    const cJSON *t = cJSON_GetObjectItem(sums, m->p[i].name);
    if (!cJSON_IsNumber(t) || fabs(t->valuedouble - s) > 1e-9 * (1 + fabs(s))) {
      if (bad++ < 5) fprintf(stderr, "%s: sum %.17g in torch, %.17g here\n", m->p[i].name,
                             t ? t->valuedouble : NAN, s);
    }
  }
  CHECK(bad == 0, "%d parameters differ in torch", bad);
  const cJSON *logits = cJSON_GetObjectItem(r, "logits");
  int finite = cJSON_GetArraySize(logits) == 2;
  for (int i = 0; finite && i < 2; i++) finite = isfinite(cJSON_GetArrayItem(logits, i)->valuedouble);
  text = cJSON_PrintUnformatted(logits);
  printf("transformers: %s logits %s\n", want, text);
  free(text);
  CHECK(finite, "two finite logits");
  const cJSON *labels = cJSON_GetObjectItem(r, "id2label");
  const cJSON *l1 = cJSON_GetObjectItem(labels, "1");
  CHECK(cJSON_IsString(l1) && strcmp(l1->valuestring, "POSITIVE") == 0, "labels");
}

static void test_transformers(const char *script, Model *models, int n) {
  char cmd[2048], q[600];
  quote(q, sizeof q, python());
  size_t k = (size_t)snprintf(cmd, sizeof cmd, "%s ", q);
  quote(q, sizeof q, script);
  k += (size_t)snprintf(cmd + k, sizeof cmd - k, "%s --json", q);
  for (int i = 0; i < n; i++) {
    quote(q, sizeof q, models[i].dir);
    k += (size_t)snprintf(cmd + k, sizeof cmd - k, " %s", q);
  }
  int status = 128;
  char *out = run_capture(cmd, &status);
  if (status == 77 || status == 127) {
    printf("SKIP transformers check: %s cannot import torch and transformers "
           "(pip install torch transformers, or set CRISP_PYTHON)\n", python());
    free(out);
    return;
  }
  CHECK(status == 0, "%s: exit status %d", cmd, status);
  char *line, *save = NULL;
  for (int i = 0; i < n; i++) {
    line = strtok_r(i ? NULL : out, "\n", &save);
    cJSON *r = line ? cJSON_Parse(line) : NULL;
    CHECK(r != NULL, "script output line %d: %s", i, line ? line : "(none)");
    if (r) check_result(&models[i], r);
    cJSON_Delete(r);
  }
  free(out);
}

static void rm_tree(const char *dir) {
  DIR *d = opendir(dir);
  for (struct dirent *e; d && (e = readdir(d));) {
    if (e->d_name[0] == '.') continue;
    char p[512];
    struct stat sb;
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    if (stat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) rm_tree(p);
    else unlink(p);
  }
  if (d) closedir(d);
  rmdir(dir);
}

int main(int argc, char **argv) {
  const char *script = argc > 1 ? argv[1] : "tests/parity/check_hf_load.py";
  snprintf(g_tmp, sizeof g_tmp, "/tmp/crisp-hff-XXXXXX");
  if (!mkdtemp(g_tmp)) return 2;
  char vocab[128];
  snprintf(vocab, sizeof vocab, "%s/vocab.txt", g_tmp);
  write_vocab(vocab);
  Model m[2];
  model_make(&m[0], MODEL_DISTILBERT, "distilbert");
  model_make(&m[1], MODEL_BERT, "bert");
  for (int i = 0; i < 2; i++) {
    test_save_load(&m[i], vocab);
    test_pretrained(&m[i]);
  }
  test_transformers(script, m, 2);
  for (int i = 0; i < 2; i++) model_free(&m[i]);
  if (!getenv("CRISP_KEEP")) rm_tree(g_tmp);
  else printf("kept %s\n", g_tmp);
  return check_summary();
}
