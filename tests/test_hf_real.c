/* test_hf_real.c: a real pretrained checkpoint, all-MiniLM-L6-v2 (BERT, 6 layers, 12
 * heads, hidden 384), through model/hf.h and model/safetensors.h.
 *
 *     CRISP_MINILM_DIR=DIR test_hf_real     (DIR from scripts/get-minilm.sh)
 *
 * Skipped (exit 77) when CRISP_MINILM_DIR is not set. Otherwise: config.json loads
 * with the expected sizes; every tensor in model.safetensors is a parameter of the
 * config's BertForSequenceClassification with the config's shape (or the
 * position_ids buffer); all of them load, only the classifier is initialised; every
 * value is finite; vocab.txt has vocab_size lines. CRISP_VERBOSE=1 lists the tensors.
 * Prints "N passed, M failed"; exits non-zero on any failure. */
#include "check.h"
#include "hf.h"
#include "safetensors.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int count_lines(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  int n = 0, c, last = '\n';
  while ((c = fgetc(f)) != EOF) {
    n += c == '\n';
    last = c;
  }
  fclose(f);
  return n + (last != '\n');
}

/* Each tensor of the file is one of the model's parameters or a known buffer. */
static void check_names(const SafeTensors *st, const HfParam *p, int n) {
  int unused = 0;
  for (int i = 0; i < st_count(st); i++) {
    const StTensor *t = st_tensor(st, i);
    int used = 0;
    for (int k = 0; k < n && !used; k++) used = st_find(st, p[k].name) == t;
    if (getenv("CRISP_VERBOSE")) {
      printf("  %-52s %-4s [", t->name, st_dtype_name(t->dtype));
      for (int d = 0; d < t->rank; d++) printf("%s%lld", d ? ", " : "", (long long)t->shape[d]);
      printf("]\n");
    }
    if (!used && strcmp(t->name, "embeddings.position_ids") != 0) {
      unused++;
      fprintf(stderr, "unexpected tensor %s\n", t->name);
    }
  }
  CHECK(unused == 0, "%d tensors are not parameters of the model", unused);
}

static void check_values(const HfParam *p, int n, float *const *w) {
  int bad = 0;
  size_t total = 0;
  for (int i = 0; i < n; i++) {
    for (size_t k = 0; k < p[i].numel; k++) bad += !isfinite(w[i][k]);
    total += p[i].numel;
  }
  CHECK(bad == 0, "%d non-finite values", bad);
  const float *ln = w[3]; /* bert.embeddings.LayerNorm.weight: trained, so not all ones */
  int ones = 0;
  for (int k = 0; k < 384; k++) ones += ln[k] == 1.0f;
  CHECK(strcmp(p[3].name, "bert.embeddings.LayerNorm.weight") == 0 && ones < 384,
        "trained LayerNorm");
  printf("all-MiniLM-L6-v2: %d parameters, %zu values, all finite\n", n, total);
}

static void run(const char *dir) {
  char path[1024], err[512];
  ModelConfig c;
  CHECK(hf_config_load(dir, &c, err, sizeof err) == 0, "%s", err);
  CHECK(c.type == MODEL_BERT && c.layers == 6 && c.heads == 12 && c.hidden == 384 &&
            c.intermediate == 1536 && c.vocab_size == 30522 && c.type_vocab_size == 2,
        "MiniLM config");
  snprintf(path, sizeof path, "%s/vocab.txt", dir);
  CHECK(count_lines(path) == c.vocab_size, "vocab.txt has %d lines", count_lines(path));
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  SafeTensors *st = st_open(path, err, sizeof err);
  CHECK(st != NULL, "%s", err);
  if (!st) return;
  int n = hf_params(&c, NULL, 0);
  HfParam *p = calloc((size_t)n, sizeof *p);
  hf_params(&c, p, n);
  printf("%s: %d tensors, metadata format=%s\n", path, st_count(st),
         st_metadata(st, "format") ? st_metadata(st, "format") : "(none)");
  check_names(st, p, n);
  st_close(st);
  float **w = calloc((size_t)n, sizeof *w);
  for (int i = 0; i < n; i++) w[i] = malloc(p[i].numel * sizeof(float));
  int n_init = -1;
  CHECK(hf_load_params(path, &c, w, 42, &n_init, err, sizeof err) == 0, "%s", err);
  CHECK(n_init == 2, "only classifier.{weight,bias} initialised (%d)", n_init);
  check_values(p, n, w);
  for (int i = 0; i < n; i++) free(w[i]);
  free(w);
  free(p);
}

int main(void) {
  const char *dir = getenv("CRISP_MINILM_DIR");
  if (!dir || !*dir) {
    printf("SKIP: set CRISP_MINILM_DIR to the folder printed by scripts/get-minilm.sh\n");
    return 77;
  }
  run(dir);
  return check_summary();
}
