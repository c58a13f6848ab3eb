/* train_checkpoint.c: test_train's saved state: a checkpoint round trip, and a
 * flipped byte / a truncated file / a foreign file / one of the older format is
 * refused without touching the model; the parameter block's layout against what
 * Hugging Face folders see. Apart because it is about bytes on disk, not training. */
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

/* ---- checkpoint corruption ------------------------------------------------------------ */

void test_checkpoint(void) {
  char err[1024], path[512];
  Backend *be = backend_open("cpu", &(BackendOptions){.threads = 1}, err, sizeof err);
  CHECK(be != NULL, "%s", err);
  if (!be)
    return;
  ModelConfig mc;
  hf_config_default(&mc, MODEL_BERT);
  mc.vocab_size = 30, mc.hidden = 16, mc.layers = 2, mc.heads = 2, mc.intermediate = 32;
  mc.max_position = 16;
  Model *m = model_create(be, &mc, &(ModelOptions){2, 8}, err, sizeof err);
  CHECK(m != NULL, "%s", err);
  if (!m) {
    backend_close(be);
    return;
  }
  model_init_params(m, 3);
  AdamW o;
  adamw_init(&o, m->n_param_floats, &(AdamWConfig){0.9, 0.999, 1e-8, 0});
  for (size_t i = 0; i < o.n; i++)
    o.m[i] = (float)i, o.v[i] = (float)(i % 7);
  o.t = 5;
  TrainState st = {.config_hash = 99, .opt_step = 5, .micro = 20, .epoch = 1, .best_step = -1};
  st.budget.layers = 2, st.budget.s[1] = 0.7;
  snprintf(path, sizeof path, "%s/ck.bin", g_tmp);
  CHECK(checkpoint_save(path, &st, m, &o, err, sizeof err) == 0, "%s", err);
  char tmp[600];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  CHECK(access(tmp, F_OK) != 0, "no temporary file left behind");
  float *orig = malloc(m->n_param_floats * sizeof *orig);
  memcpy(orig, m->params_mem, m->n_param_floats * sizeof *orig);
  memset(m->params_mem, 0, m->n_param_floats * sizeof(float));
  AdamW o2;
  adamw_init(&o2, m->n_param_floats, &o.cfg);
  TrainState back = {0};
  CHECK(checkpoint_load(path, &back, m, &o2, err, sizeof err) == 0, "%s", err);
  CHECK(!memcmp(orig, m->params_mem, m->n_param_floats * sizeof *orig) &&
            !memcmp(o.m, o2.m, o.n * 4) && !memcmp(o.v, o2.v, o.n * 4) && o2.t == 5,
        "checkpoint round trip");
  CHECK(back.config_hash == 99 && back.micro == 20 && back.budget.s[1] == 0.7, "state round trip");

  /* a flipped byte, a short file, a foreign file: refused, nothing applied */
  size_t n;
  char *bytes = read_all(path, &n);
  char bad[600];
  snprintf(bad, sizeof bad, "%s/ck_bad.bin", g_tmp);
  struct {
    const char *what, *msg;
    size_t len;
    long flip;
    int mask;
  } cases[] = {{"flipped byte", "checksum", n, (long)(n / 2), 0x10},
               {"truncated", "truncated", n - 100, -1, 0},
               {"header only", "truncated", 40, -1, 0},
               {"foreign", "bad magic", n, 0, 0x10},
               /* "CRISPCK2" -> "CRISPCK1": the parameter block of before the fused q/k/v */
               {"format 1", "format 1", n, 7, '2' ^ '1'}};
  for (size_t k = 0; k < sizeof cases / sizeof *cases && bytes; k++) {
    char *copy = malloc(n);
    memcpy(copy, bytes, n);
    if (cases[k].flip >= 0)
      copy[cases[k].flip] ^= (char)cases[k].mask;
    CHECK(rt_write_atomic(bad, copy, cases[k].len, err, sizeof err) == 0, "%s", err);
    free(copy);
    memset(m->params_mem, 0, m->n_param_floats * sizeof(float));
    int rc = checkpoint_load(bad, &back, m, &o2, err, sizeof err);
    bool untouched = true;
    for (size_t i = 0; i < m->n_param_floats; i++)
      untouched &= m->params_mem[i] == 0;
    CHECK(rc == -1 && strstr(err, cases[k].msg) && strstr(err, bad), "%s: %s", cases[k].what,
          err);
    CHECK(untouched, "%s: the model was modified", cases[k].what);
  }
  free(bytes);
  free(orig);
  adamw_free(&o);
  adamw_free(&o2);
  model_free(m);
  backend_close(be);
}

/* The parameter block's layout (model_params.h): each block's q, k, v weights and
 * biases adjacent for the fused projection, while Hugging Face folders see only
 * names: a saved folder is byte for byte what hf_save_model writes from tensors kept
 * one by one in hf_params order, and it loads back into the same block. */
void test_param_layout(void) {
  char err[1024], a[600], b[600];
  Backend *be = backend_open("cpu", &(BackendOptions){.threads = 1}, err, sizeof err);
  CHECK(be != NULL, "%s", err);
  for (int bert = 0; be && bert < 2; bert++) {
    ModelConfig mc;
    hf_config_default(&mc, bert ? MODEL_BERT : MODEL_DISTILBERT);
    mc.vocab_size = 30, mc.hidden = 16, mc.layers = 2, mc.heads = 2, mc.intermediate = 32;
    mc.max_position = 16;
    Model *m = model_create(be, &mc, &(ModelOptions){2, 8}, err, sizeof err);
    Model *m2 = model_create(be, &mc, &(ModelOptions){2, 8}, err, sizeof err);
    CHECK(m && m2, "%s", err);
    if (!m || !m2) {
      model_free(m), model_free(m2);
      break;
    }
    model_init_params(m, 11);
    size_t C = (size_t)mc.hidden;
    for (int l = 0; l < mc.layers; l++) {
      const LayerParams *p = &m->w.layer[l], *g = &m->g.layer[l];
      CHECK(p->kw == p->qw + C * C && p->vw == p->kw + C * C && p->qb == p->vw + C * C &&
                p->kb == p->qb + C && p->vb == p->kb + C && g->kw == g->qw + C * C &&
                g->vb == g->kb + C,
            "%s block %d: q, k, v not adjacent", bert ? "bert" : "distilbert", l);
    }
    float **plain = calloc((size_t)m->n_params, sizeof *plain);
    for (int i = 0; plain && i < m->n_params; i++) {
      plain[i] = malloc(m->info[i].numel * sizeof(float));
      memcpy(plain[i], m->param[i], m->info[i].numel * sizeof(float));
    }
    snprintf(a, sizeof a, "%s/layout_model_%d", g_tmp, bert);
    snprintf(b, sizeof b, "%s/layout_plain_%d", g_tmp, bert);
    CHECK(model_save(m, a, NULL, err, sizeof err) == 0, "%s", err);
    CHECK(hf_save_model(b, &mc, (const float *const *)plain, NULL, err, sizeof err) == 0, "%s",
          err);
    snprintf(a + strlen(a), sizeof a - strlen(a), "/model.safetensors");
    snprintf(b + strlen(b), sizeof b - strlen(b), "/model.safetensors");
    CHECK(same_file(a, b), "%s: the saved folder differs from the tensors in hf_params order",
          bert ? "bert" : "distilbert");
    CHECK(model_load(m2, a, 1, NULL, err, sizeof err) == 0, "%s", err);
    CHECK(!memcmp(m->params_mem, m2->params_mem, m->n_param_floats * sizeof(float)),
          "%s: a saved folder does not load back into the same block", bert ? "bert" : "distilbert");
    for (int i = 0; plain && i < m->n_params; i++)
      free(plain[i]);
    free(plain);
    model_free(m), model_free(m2);
  }
  if (be)
    backend_close(be);
}
