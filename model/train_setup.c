/* train_setup.c: a run made ready for its first step (run_open): the config checked
 * and the run folder made, where the data and the vocabulary are (a synthetic set made
 * when none is shared), both sets tokenized (a seeded subset when train_limit asks),
 * the model created or loaded with its dropouts, attention and optimizer, the state
 * fresh or the checkpoint's on --resume, config.json written; and all of it released
 * again. Apart from the loop in train.c, which only steps what this prepared. */
#include "train_impl.h"

#include "../runtime/fsutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef CRISP_SHARED_DATA
#define CRISP_SHARED_DATA "../shared/data"
#endif

bool train_file_exists(const char *p) {
  struct stat s;
  return stat(p, &s) == 0 && S_ISREG(s.st_mode);
}

/* Where the data is: the config's folder, the shared SST-2, else generated. A
 * generated set stays "synthetic" in the resolved config (it is made again, the same,
 * on --resume, so a run folder can move); r->data is the folder read. */
int run_resolve_data(Run *r, char *err, size_t cap) {
  TrainConfig *c = r->c;
  char path[1400];
  bool synth = !strcmp(c->data, "synthetic");
  if (!c->data[0]) {
    const char *env = getenv("CRISP_DATA");
    snprintf(path, sizeof path, "%s/sst2", env && *env ? env : CRISP_SHARED_DATA);
    char probe[1500];
    snprintf(probe, sizeof probe, "%s/train.tsv", path);
    if (train_file_exists(probe)) {
      char *real = realpath(path, NULL);
      snprintf(c->data, sizeof c->data, "%.1023s", real ? real : path);
      free(real);
    } else {
      synth = true;
      snprintf(c->data, sizeof c->data, "synthetic");
      snprintf(r->data_note, sizeof r->data_note,
               "no SST-2 at %.150s: generating a synthetic sentiment set instead", path);
    }
  }
  if (synth) {
    snprintf(r->data, sizeof r->data, "%.1200s/data", r->dir);
    int n_train = c->train_limit > 0 ? c->train_limit : 4000;
    if (synth_sst2(r->data, n_train, 872, c->seed, err, cap))
      return -1;
    if (!r->data_note[0])
      snprintf(r->data_note, sizeof r->data_note, "synthetic data: %d train, 872 dev sentences",
               n_train);
  } else {
    char *real = realpath(c->data, NULL);   /* absolute in the resolved config */
    if (real)
      snprintf(c->data, sizeof c->data, "%.1023s", real);
    free(real);
    snprintf(r->data, sizeof r->data, "%s", c->data);
  }
  snprintf(path, sizeof path, "%s/train.tsv", r->data);
  if (!train_file_exists(path)) {
    snprintf(err, cap, "%s: no train.tsv here (--data wants a folder with train.tsv and dev.tsv)",
             r->data);
    return -2;
  }
  /* the vocabulary: the model's, else the data's, else the shared bert-base-uncased */
  if (c->model[0]) {
    snprintf(r->vocab, sizeof r->vocab, "%s/vocab.txt", c->model);
  } else {
    snprintf(r->vocab, sizeof r->vocab, "%s/vocab.txt", r->data);
    if (!train_file_exists(r->vocab))
      snprintf(r->vocab, sizeof r->vocab, "%s/../bert-base-uncased/vocab.txt", r->data);
  }
  if (!train_file_exists(r->vocab)) {
    snprintf(err, cap, "%s: no vocab.txt (needed for the tokenizer)", r->vocab);
    return -2;
  }
  return 0;
}

int run_load_sets(Run *r, char *err, size_t cap) {
  TrainConfig *c = r->c;
  char path[1400], e[1024];
  r->tok = tok_load(r->vocab, e, sizeof e);
  if (!r->tok) {
    snprintf(err, cap, "%s", e);
    return -2;
  }
  Sst2Set tr, dv;
  snprintf(path, sizeof path, "%s/train.tsv", r->data);
  if (sst2_load(path, &tr, e, sizeof e)) {
    snprintf(err, cap, "%s", e);
    return -2;
  }
  snprintf(path, sizeof path, "%s/dev.tsv", r->data);
  if (sst2_load(path, &dv, e, sizeof e)) {
    sst2_free(&tr);
    snprintf(err, cap, "%s", e);
    return -2;
  }
  int rc = 0;
  if (!tr.labeled || !dv.labeled) {
    snprintf(err, cap, "%s: train.tsv and dev.tsv need labels", r->data);
    rc = -2;
  }
  /* a seeded subset of the training rows */
  if (!rc && c->train_limit > 0 && c->train_limit < tr.n) {
    int *idx = malloc((size_t)tr.n * sizeof *idx);
    Sst2Row *rows = malloc((size_t)c->train_limit * sizeof *rows);
    if (!idx || !rows) {
      rc = -1;
      snprintf(err, cap, "out of memory");
    } else {
      train_permutation(idx, tr.n, c->seed ^ 0x5eed5eedull);
      /* keep file order among the chosen rows */
      char *pick = calloc((size_t)tr.n, 1);
      if (pick) {
        for (int i = 0; i < c->train_limit; i++)
          pick[idx[i]] = 1;
        for (int i = 0, k = 0; i < tr.n; i++)
          if (pick[i])
            rows[k++] = tr.rows[i];
        free(pick);
        Sst2Set sub = {.rows = rows, .n = c->train_limit, .labeled = 1};
        rc = encoded_set_build(r->tok, &sub, c->max_len, 0, &r->train, e, sizeof e) ? -2 : 0;
      } else {
        rc = -1;
      }
    }
    free(idx);
    free(rows);
  } else if (!rc) {
    rc = encoded_set_build(r->tok, &tr, c->max_len, 0, &r->train, e, sizeof e) ? -2 : 0;
  }
  if (rc == -2 && !err[0])
    snprintf(err, cap, "%s/train.tsv: %s", r->data, e);
  if (!rc && encoded_set_build(r->tok, &dv, c->max_len, c->eval_limit, &r->dev, e, sizeof e)) {
    snprintf(err, cap, "%s/dev.tsv: %s", r->data, e);
    rc = -2;
  }
  sst2_free(&tr);
  sst2_free(&dv);
  if (!rc && r->train.n == 0) {
    snprintf(err, cap, "%s/train.tsv: no rows", r->data);
    rc = -2;
  }
  return rc;
}

static void sst2_labels(ModelConfig *mc) {
  if (mc->num_labels == 2 && !strcmp(mc->id2label[0], "LABEL_0") &&
      !strcmp(mc->id2label[1], "LABEL_1")) {
    snprintf(mc->id2label[0], HF_LABEL_MAX, "negative");
    snprintf(mc->id2label[1], HF_LABEL_MAX, "positive");
  }
}

int run_build_model(Run *r, char *err, size_t cap) {
  TrainConfig *c = r->c;
  ModelConfig mc;
  char e[1024];
  if (c->model[0]) {
    if (hf_config_load(c->model, &mc, e, sizeof e)) {
      snprintf(err, cap, "%s", e);
      return -2;
    }
  } else {
    const RandomModel *rm = &c->random_model;
    hf_config_default(&mc, rm->type);
    mc.vocab_size = vocab_size(tok_vocab(r->tok));
    mc.hidden = rm->hidden, mc.layers = rm->layers, mc.heads = rm->heads;
    mc.intermediate = rm->intermediate, mc.max_position = rm->max_position;
    mc.pad_token_id = tok_special_ids(r->tok).pad;
    if (hf_config_check(&mc, "random_model", e, sizeof e)) {
      snprintf(err, cap, "%s", e);
      return -2;
    }
  }
  if (mc.num_labels != 2) {
    snprintf(err, cap, "%s: the model has %d label%s; SST-2 has 2", c->model, mc.num_labels,
             mc.num_labels == 1 ? "" : "s");
    return -2;
  }
  if (vocab_size(tok_vocab(r->tok)) > mc.vocab_size) {
    snprintf(err, cap, "%s holds %d tokens but the model's vocabulary is %d", r->vocab,
             vocab_size(tok_vocab(r->tok)), mc.vocab_size);
    return -2;
  }
  sst2_labels(&mc);
  int longest = r->train.longest > r->dev.longest ? r->train.longest : r->dev.longest;
  int plan_len = longest < c->max_len ? longest : c->max_len;
  if (plan_len > mc.max_position) {
    snprintf(err, cap, "max_len %d is longer than the model's %d positions", plan_len,
             mc.max_position);
    return -2;
  }
  int eval_batch = c->eval_batch > 0 ? c->eval_batch : c->batch_size;
  int max_batch = eval_batch > c->batch_size ? eval_batch : c->batch_size;
  r->m = model_create(r->be, &mc, &(ModelOptions){.max_batch = max_batch, .max_len = plan_len},
                      e, sizeof e);
  if (!r->m) {
    snprintf(err, cap, "%s", e);
    return -1;
  }
  Model *m = r->m;
  if (c->model[0]) {
    char path[1300];
    int n_init = 0;
    snprintf(path, sizeof path, "%s/model.safetensors", c->model);
    if (model_load(m, path, c->seed, &n_init, e, sizeof e)) {
      snprintf(err, cap, "%s", e);
      return -2;
    }
    if (n_init)
      run_say(r, "model: %s (%d head tensors initialised: not in the checkpoint)", c->model, n_init);
    else
      run_say(r, "model: %s", c->model);
  } else {
    model_init_params(m, c->seed);
    run_say(r, "model: random %s, %d layers, hidden %d, %d heads (no --model)",
        mc.type == MODEL_BERT ? "BERT" : "DistilBERT", mc.layers, mc.hidden, mc.heads);
  }
  if (c->drop_hidden >= 0)
    m->drop.hidden = (float)c->drop_hidden;
  if (c->drop_attention >= 0)
    m->drop.attention = (float)c->drop_attention;
  if (c->drop_classifier >= 0)
    m->drop.classifier = (float)c->drop_classifier;
  m->attn.select = c->select;
  m->attn.keep_min = c->keep_min;
  if (!strcmp(c->impl, "crisp")) {
    double t0 = rt_now();
    if (train_attach_crisp(m, c->select, c->keep_min, &r->mod, e, sizeof e)) {
      snprintf(err, cap, "crisp kernels: %s", e);
      return -1;
    }
    m->attn.impl = ATTN_IMPL_CRISP;
    run_say(r, "attention: crisp kernels (%s, keep_min %d, max_seq %d) ready in %.2f s%s",
        select_name(c->select), c->keep_min, plan_len, rt_now() - t0,
        attention_has_crisp(&m->attn_engine, c->select, true) ? "" : "; backward: reference");
  } else {
    m->attn.impl = ATTN_IMPL_REF;
  }
  if (adamw_init(&r->adam, m->n_param_floats,
                 &(AdamWConfig){c->beta1, c->beta2, c->eps, c->weight_decay})) {
    snprintf(err, cap, "out of memory for the optimizer moments");
    return -1;
  }
  r->adam_ok = true;
  return 0;
}

void run_free(Run *r) {
  if (r->metrics)
    fclose(r->metrics);
  if (r->adam_ok)
    adamw_free(&r->adam);
  model_free(r->m);
  if (r->mod)
    rt_module_unload(r->be, r->mod);
  encoded_set_free(&r->train);
  encoded_set_free(&r->dev);
  tok_free(r->tok);
  if (r->be)
    backend_close(r->be);
}

/* ---- opening the run ------------------------------------------------------------ */

static int path_join(char *out, size_t cap, const char *a, const char *b) {
  int n = snprintf(out, cap, "%s/%s", a, b);
  return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* The exit status for a step's 0, -2 or -1. */
static int status_of(int rc) { return rc == -2 ? 2 : rc ? 1 : 0; }

/* The config checked and RUNS/NAME made (what existed noted, so that a failure before
 * the first checkpoint can remove what this made): a new run must not overwrite one, a
 * resumed one needs its checkpoint; the model folder becomes absolute in the resolved
 * config. */
static int open_folder(Run *r, TrainResult *res, char *err, size_t cap) {
  TrainConfig *c = r->c;
  const TrainOptions *opt = r->opt;
  if (!c->model[0] && !opt->resume)
    train_config_embedded(c);
  if (train_config_check(c, "config", err, cap))
    return 2;
  if (path_join(r->dir, sizeof r->dir, c->runs_dir, c->name)) {
    snprintf(err, cap, "run folder name too long");
    return 2;
  }
  snprintf(res->run_dir, sizeof res->run_dir, "%s", r->dir);
  snprintf(r->cfg_path, sizeof r->cfg_path, "%s/config.json", r->dir);
  snprintf(r->metrics_path, sizeof r->metrics_path, "%s/metrics.jsonl", r->dir);
  snprintf(r->ckpt_path, sizeof r->ckpt_path, "%s/checkpoint.bin", r->dir);
  if (!opt->resume && train_file_exists(r->cfg_path)) {
    snprintf(err, cap, "%s already holds a run: continue it with --resume %s, or pick another "
                       "--name", r->dir, r->dir);
    return 2;
  }
  if (opt->resume && !train_file_exists(r->ckpt_path)) {
    snprintf(err, cap, "%s: no checkpoint to resume from%s", r->ckpt_path,
             train_file_exists(r->metrics_path) ? " (the run may have finished)" : "");
    return 2;
  }
  if (c->model[0] && !opt->resume) {
    char *real = realpath(c->model, NULL);
    if (!real) {
      snprintf(err, cap, "%s: %s", c->model, strerror(errno));
      return 2;
    }
    snprintf(c->model, sizeof c->model, "%s", real);
    free(real);
  }
  return run_folder_make(&r->folder, r->dir, err, cap) ? 1 : 0;
}

/* The backend, with BLAS on the same number of threads as the pool. */
static int open_backend(Run *r, char *err, size_t cap) {
  const TrainConfig *c = r->c;
  char e[2048];
  if (c->threads > 0) {
    char t[16];
    snprintf(t, sizeof t, "%d", c->threads);
    setenv("OPENBLAS_NUM_THREADS", t, 1);
    setenv("OMP_NUM_THREADS", t, 1);
  }
  r->be = backend_open(c->device, &(BackendOptions){.threads = c->threads}, e, sizeof e);
  if (!r->be) {
    snprintf(err, cap, "%s", e);
    return 1;
  }
  return 0;
}

/* The training state: a fresh one for the config, or, resuming, the checkpoint's
 * (refused when another configuration wrote it), with metrics.jsonl cut back to the
 * length it had then. */
static int open_state(Run *r, char *err, size_t cap) {
  const TrainConfig *c = r->c;
  int L = r->m->cfg.layers;
  if (c->select != SEL_NONE && budget_init(&r->st.budget, &c->budget, L, err, cap))
    return 2;
  r->st.budget.cfg = c->budget;
  r->st.budget.layers = L;
  r->st.best_step = -1;
  r->st.config_hash = train_config_hash(c);
  if (!r->opt->resume)
    return 0;
  TrainState saved = r->st;
  if (checkpoint_load(r->ckpt_path, &saved, r->m, &r->adam, err, cap))
    return 1;
  if (saved.config_hash != r->st.config_hash) {
    snprintf(err, cap, "%s was written by another configuration than %s", r->ckpt_path,
             r->cfg_path);
    return 2;
  }
  r->st = saved;
  r->ckpt_step = saved.opt_step;
  if (truncate(r->metrics_path, (off_t)r->st.metrics_bytes)) {
    snprintf(err, cap, "%s: %s", r->metrics_path, strerror(errno));
    return 1;
  }
  run_say(r, "resuming %s at step %lld (epoch %lld, batch %lld)", r->dir,
          (long long)r->st.opt_step, (long long)r->st.epoch + 1, (long long)r->st.epoch_pos);
  return 0;
}

/* RUNS/NAME/config.json: the resolved config, every key. */
static int write_config(Run *r, char *err, size_t cap) {
  char *json = train_config_json(r->c);
  if (!json) {
    snprintf(err, cap, "out of memory");
    return 1;
  }
  size_t n = strlen(json);
  char *t = malloc(n + 2);
  if (t) {
    memcpy(t, json, n);
    t[n] = '\n';
  }
  int wrc = t ? rt_write_atomic(r->cfg_path, t, n + 1, err, cap) : -1;
  free(t);
  free(json);
  return wrc ? 1 : 0;
}

int run_open(Run *r, TrainResult *res, char *err, size_t cap) {
  int rc = open_folder(r, res, err, cap);
  if (rc)
    return rc;
  if ((rc = status_of(run_resolve_data(r, err, cap))))
    return rc;
  if (r->data_note[0])
    run_say(r, "data: %s", r->data_note);
  if ((rc = open_backend(r, err, cap)) || (rc = status_of(run_load_sets(r, err, cap))))
    return rc;
  run_say(r, "data: %s: %d train, %d dev sentences (longest %d tokens)", r->data, r->train.n,
          r->dev.n, r->train.longest > r->dev.longest ? r->train.longest : r->dev.longest);
  if ((rc = status_of(run_build_model(r, err, cap))) || (rc = open_state(r, err, cap)) ||
      (rc = write_config(r, err, cap)))
    return rc;
  r->metrics = fopen(r->metrics_path, r->opt->resume ? "a" : "w");
  if (!r->metrics) {
    snprintf(err, cap, "%s: %s", r->metrics_path, strerror(errno));
    return 1;
  }
  return 0;
}
