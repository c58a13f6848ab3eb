/* train.c: data preparation, evaluation and the training loop (see train.h and
 * docs/training.md). */
#include "train.h"

#include "../runtime/compile.h"
#include "../runtime/fsutil.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef CRISP_SHARED_DATA
#define CRISP_SHARED_DATA "../shared/data"
#endif

static bool file_exists(const char *p) {
  struct stat s;
  return stat(p, &s) == 0 && S_ISREG(s.st_mode);
}

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* idx = a permutation of 0..n-1 drawn from seed (Fisher-Yates). */
static void permutation(int *idx, int n, uint64_t seed) {
  uint64_t s = seed;
  for (int i = 0; i < n; i++)
    idx[i] = i;
  for (int i = n - 1; i > 0; i--) {
    int j = (int)(splitmix(&s) % (uint64_t)(i + 1));
    int t = idx[i];
    idx[i] = idx[j], idx[j] = t;
  }
}

/* ---- encoded data ----------------------------------------------------------------- */

int encoded_set_build(const Tokenizer *t, const Sst2Set *s, int max_len, int limit,
                      EncodedSet *out, char *err, size_t cap) {
  memset(out, 0, sizeof *out);
  int n = limit > 0 && limit < s->n ? limit : s->n;
  size_t room = (size_t)n * 24 + (size_t)max_len, used = 0;
  out->offset = malloc(((size_t)n + 1) * sizeof *out->offset);
  out->length = malloc(((size_t)n + 1) * sizeof *out->length);
  out->label = malloc(((size_t)n + 1) * sizeof *out->label);
  out->ids = malloc(room * sizeof *out->ids);
  int32_t *row = malloc((size_t)max_len * sizeof *row);
  if (!out->offset || !out->length || !out->label || !out->ids || !row)
    goto oom;
  for (int i = 0; i < n; i++) {
    int len;
    char e[256];
    if (tok_encode(t, s->rows[i].text, s->rows[i].len, max_len, row, &len, e, sizeof e)) {
      snprintf(err, cap, "row %ld: %s", s->rows[i].index, e);
      free(row);
      encoded_set_free(out);
      return -1;
    }
    if (used + (size_t)len > room) {
      room = room * 2 + (size_t)len;
      int32_t *ids = realloc(out->ids, room * sizeof *ids);
      if (!ids)
        goto oom;
      out->ids = ids;
    }
    memcpy(out->ids + used, row, (size_t)len * sizeof *row);
    out->offset[i] = (int32_t)used, out->length[i] = len, out->label[i] = s->rows[i].label;
    used += (size_t)len;
    out->longest = len > out->longest ? len : out->longest;
  }
  out->n = n;
  free(row);
  return 0;
oom:
  free(row);
  encoded_set_free(out);
  snprintf(err, cap, "out of memory tokenizing %d rows", n);
  return -1;
}

void encoded_set_free(EncodedSet *e) {
  free(e->ids);
  free(e->offset);
  free(e->length);
  free(e->label);
  memset(e, 0, sizeof *e);
}

typedef struct Batch {
  int B, N, cap_rows, cap_len;
  int32_t *ids, *lengths, *labels;
  int64_t tokens;   /* valid (non-padding) tokens */
} Batch;

static int batch_alloc(Batch *b, int rows, int len) {
  memset(b, 0, sizeof *b);
  b->cap_rows = rows, b->cap_len = len;
  b->ids = malloc((size_t)rows * len * sizeof *b->ids);
  b->lengths = malloc((size_t)rows * sizeof *b->lengths);
  b->labels = malloc((size_t)rows * sizeof *b->labels);
  return b->ids && b->lengths && b->labels ? 0 : -1;
}

static void batch_free(Batch *b) {
  free(b->ids);
  free(b->lengths);
  free(b->labels);
}

/* Rows idx[0..count) padded to the longest of them (dynamic padding). */
static void batch_fill(Batch *b, const EncodedSet *s, const int *idx, int count, int32_t pad) {
  int N = 1;
  for (int k = 0; k < count; k++)
    N = s->length[idx[k]] > N ? s->length[idx[k]] : N;
  b->B = count, b->N = N, b->tokens = 0;
  for (int k = 0; k < count; k++) {
    int r = idx[k], L = s->length[r];
    int32_t *dst = b->ids + (size_t)k * N;
    memcpy(dst, s->ids + s->offset[r], (size_t)L * sizeof *dst);
    for (int j = L; j < N; j++)
      dst[j] = pad;
    b->lengths[k] = L, b->labels[k] = s->label[r];
    b->tokens += L;
  }
}

/* ---- crisp kernels and evaluation ------------------------------------------------- */

int train_attach_crisp(Model *m, SelectKind sel, int keep_min, RtModule **mod, char *err,
                       size_t cap) {
  Spec s;
  spec_defaults(&s);
  snprintf(s.name, sizeof s.name, "train_%s_k%d", select_name(sel), keep_min);
  s.head_dim = m->cfg.hidden / m->cfg.heads;
  s.max_seq = m->max_len;
  s.select = sel;
  s.keep_min = keep_min;
  s.backward = true;
  RtCache cache;
  char cerr[512];
  RtCache *cp = rt_cache_open(&cache, NULL, cerr, sizeof cerr) == 0 ? &cache : NULL;
  TuneDb db = {0};
  char path[1024];
  const TuneDb *dbp = NULL;
  if (tune_db_default_path(path, sizeof path) == 0 && tune_db_load(&db, path, cerr, sizeof cerr) == 0)
    dbp = &db;
  int rc = rt_compile_for(m->be, &s, m->max_len, cp, dbp, mod, NULL, err, cap);
  tune_db_free(&db);
  if (rc)
    return -1;
  if (model_add_crisp(m, *mod)) {
    snprintf(err, cap, "%s", m->err);
    return -1;
  }
  return 0;
}

void eval_result_free(EvalResult *e) {
  free(e->entropy);
  free(e->entropy_norm);
  e->entropy = e->entropy_norm = NULL;
}

int train_evaluate(Model *m, const EncodedSet *set, int batch, EvalResult *out, char *err,
                   size_t cap) {
  double t0 = rt_now();
  int L = m->cfg.layers, H = m->cfg.heads;
  memset(out, 0, sizeof *out);
  out->layers = L, out->heads = H;
  out->entropy = calloc((size_t)L * H, sizeof *out->entropy);
  out->entropy_norm = calloc((size_t)L * H, sizeof *out->entropy_norm);
  int *idx = malloc((size_t)(set->n ? set->n : 1) * sizeof *idx);
  Batch b;
  if (batch > m->max_batch)
    batch = m->max_batch;
  if (!out->entropy || !out->entropy_norm || !idx || batch_alloc(&b, batch, m->max_len)) {
    free(idx);
    eval_result_free(out);
    snprintf(err, cap, "evaluation: out of memory");
    return -1;
  }
  for (int i = 0; i < set->n; i++)
    idx[i] = i;
  double loss = 0, wk = 0, we = 0, wn = 0;
  double kept[MODEL_MAX_LAYERS] = {0};
  int rc = 0;
  for (int at = 0; at < set->n; at += batch) {
    int cnt = set->n - at < batch ? set->n - at : batch;
    batch_fill(&b, set, idx + at, cnt, m->cfg.pad_token_id);
    ModelRun run = {.train = false, .stats = true};
    if (model_forward(m, b.ids, b.lengths, b.B, b.N, b.labels, &run)) {
      snprintf(err, cap, "evaluation: %s", m->err);
      rc = -1;
      break;
    }
    loss += (double)run.loss * cnt;
    out->correct += run.correct;
    double sq = 0, rows = 0, rows_n = 0;
    for (int k = 0; k < cnt; k++) {
      double len = b.lengths[k];
      sq += len * len, rows += len, rows_n += len > 1 ? len : 0;
    }
    for (int l = 0; l < L; l++) {
      kept[l] += m->stat_kept[l] * sq;
      for (int h = 0; h < H; h++) {
        out->entropy[l * H + h] += m->stat_entropy[l * H + h] * rows;
        out->entropy_norm[l * H + h] += m->stat_entropy_norm[l * H + h] * rows_n;
      }
    }
    wk += sq, we += rows, wn += rows_n;
  }
  batch_free(&b);
  free(idx);
  if (rc) {
    eval_result_free(out);
    return -1;
  }
  out->total = set->n;
  out->loss = set->n ? loss / set->n : 0;
  out->accuracy = set->n ? (double)out->correct / set->n : 0;
  for (int l = 0; l < L; l++) {
    out->kept[l] = wk > 0 ? kept[l] / wk : 1;
    for (int h = 0; h < H; h++) {
      out->entropy[l * H + h] /= we > 0 ? we : 1;
      out->entropy_norm[l * H + h] /= wn > 0 ? wn : 1;
    }
  }
  out->seconds = rt_now() - t0;
  return 0;
}

/* ---- the run ------------------------------------------------------------------------ */

typedef struct Run {
  TrainConfig *c;
  const TrainOptions *opt;
  char dir[1200], data[1300], vocab[1400], data_note[256];
  Backend *be;
  RtModule *mod;
  Tokenizer *tok;
  EncodedSet train, dev;
  Model *m;
  AdamW adam;
  bool adam_ok;
  TrainState st;
  FILE *metrics;
  bool tty, line_open;
  double last_line;
  int64_t eval_step;   /* the step of the last evaluation (-1: none in this process) */
} Run;

/* A log line on stderr (clearing an open progress line first). */
static void say(Run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(Run *r, const char *fmt, ...) {
  if (r->opt->quiet)
    return;
  if (r->line_open)
    fputs("\r\033[K", stderr), r->line_open = false;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

static void fmt_time(double s, char *buf, size_t cap) {
  long t = (long)(s + 0.5);
  if (t >= 3600)
    snprintf(buf, cap, "%ldh%02ldm", t / 3600, t / 60 % 60);
  else
    snprintf(buf, cap, "%ldm%02lds", t / 60, t % 60);
}

static int path_join(char *out, size_t cap, const char *a, const char *b) {
  int n = snprintf(out, cap, "%s/%s", a, b);
  return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* Where the data is: the config's folder, the shared SST-2, else generated. A
 * generated set stays "synthetic" in the resolved config (it is made again, the same,
 * on --resume, so a run folder can move); r->data is the folder read. */
static int resolve_data(Run *r, char *err, size_t cap) {
  TrainConfig *c = r->c;
  char path[1400];
  bool synth = !strcmp(c->data, "synthetic");
  if (!c->data[0]) {
    const char *env = getenv("CRISP_DATA");
    snprintf(path, sizeof path, "%s/sst2", env && *env ? env : CRISP_SHARED_DATA);
    char probe[1500];
    snprintf(probe, sizeof probe, "%s/train.tsv", path);
    if (file_exists(probe)) {
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
  if (!file_exists(path)) {
    snprintf(err, cap, "%s: no train.tsv here (--data wants a folder with train.tsv and dev.tsv)",
             r->data);
    return -2;
  }
  /* the vocabulary: the model's, else the data's, else the shared bert-base-uncased */
  if (c->model[0]) {
    snprintf(r->vocab, sizeof r->vocab, "%s/vocab.txt", c->model);
  } else {
    snprintf(r->vocab, sizeof r->vocab, "%s/vocab.txt", r->data);
    if (!file_exists(r->vocab))
      snprintf(r->vocab, sizeof r->vocab, "%s/../bert-base-uncased/vocab.txt", r->data);
  }
  if (!file_exists(r->vocab)) {
    snprintf(err, cap, "%s: no vocab.txt (needed for the tokenizer)", r->vocab);
    return -2;
  }
  return 0;
}

static int load_sets(Run *r, char *err, size_t cap) {
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
      permutation(idx, tr.n, c->seed ^ 0x5eed5eedull);
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

static int build_model(Run *r, char *err, size_t cap) {
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
    snprintf(err, cap, "%s: the model has %d labels; SST-2 has 2", c->model, mc.num_labels);
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
      say(r, "model: %s (%d head tensors initialised: not in the checkpoint)", c->model, n_init);
    else
      say(r, "model: %s", c->model);
  } else {
    model_init_params(m, c->seed);
    say(r, "model: random %s, %d layers, hidden %d, %d heads (no --model)",
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
    say(r, "attention: crisp kernels (%s, keep_min %d, max_seq %d) ready in %.2f s%s",
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

static void apply_budget(Run *r) {
  if (r->c->select == SEL_NONE) {
    for (int l = 0; l < r->m->cfg.layers; l++)
      r->m->attn.sparsity[l] = 0;
  } else {
    budget_apply(&r->st.budget, r->m);
  }
}

/* One optimizer step's AdamW over every tensor (no decay on rank-1 tensors: biases
 * and LayerNorm weights, as transformers' Trainer), on the backend's threads; it
 * leaves the gradients zeroed for the next step. */
static void optimizer_step(Run *r, double lr, float gscale) {
  Model *m = r->m;
  RtPool *pool = rt_host_pool(m->be);
  adamw_begin(&r->adam);
  for (int i = 0; i < m->n_params; i++) {
    size_t off = (size_t)(m->param[i] - m->params_mem);
    adamw_update_par(pool, &r->adam, m->param[i], m->grad[i], off, m->info[i].numel,
                     m->info[i].rank == 2, lr, gscale, true);
  }
}

static int do_eval(Run *r, const char *when, EvalResult *keep, char *err, size_t cap) {
  EvalResult e;
  int batch = r->c->eval_batch > 0 ? r->c->eval_batch : r->c->batch_size;
  apply_budget(r);
  if (train_evaluate(r->m, &r->dev, batch, &e, err, cap))
    return -1;
  double s[MODEL_MAX_LAYERS];
  for (int l = 0; l < r->m->cfg.layers; l++)
    s[l] = r->m->attn.sparsity[l];
  if (metrics_eval(r->metrics, r->st.opt_step, r->st.epoch, when, &e, s, err, cap)) {
    eval_result_free(&e);
    return -1;
  }
  double mean_s = 0;
  for (int l = 0; l < e.layers; l++)
    mean_s += (1 - e.kept[l]) / e.layers;
  say(r, "eval  step %lld (%s): accuracy %.4f (%d/%d)  val loss %.4f  sparsity %.3f  [%.1f s]",
      (long long)r->st.opt_step, when, e.accuracy, e.correct, e.total, e.loss, mean_s, e.seconds);
  if (e.accuracy > r->st.best_accuracy || r->st.best_step < 0)
    r->st.best_accuracy = e.accuracy, r->st.best_step = r->st.opt_step;
  r->eval_step = r->st.opt_step;
  if (keep) {
    eval_result_free(keep);
    *keep = e;
  } else {
    eval_result_free(&e);
  }
  return 0;
}

static int save_checkpoint(Run *r, char *err, size_t cap) {
  char path[1300];
  snprintf(path, sizeof path, "%s/checkpoint.bin", r->dir);
  fflush(r->metrics);
  r->st.metrics_bytes = ftell(r->metrics);
  return checkpoint_save(path, &r->st, r->m, &r->adam, err, cap);
}

static void progress(Run *r, int64_t total, double loss, double lr, double tps, double eta) {
  if (r->opt->quiet || !r->tty)
    return;
  double now = rt_now();
  if (now - r->last_line < 0.1 && r->st.opt_step < total)
    return;
  r->last_line = now;
  char t[32];
  fmt_time(eta, t, sizeof t);
  fprintf(stderr, "\r\033[Kstep %lld/%lld  epoch %lld/%d  loss %.4f  lr %.2e  %.0f tok/s  ETA %s",
          (long long)r->st.opt_step, (long long)total, (long long)r->st.epoch + 1, r->c->epochs,
          loss, lr, tps, t);
  r->line_open = true;
}

static void run_free(Run *r) {
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

static int write_final(Run *r, const EvalResult *final, int64_t total, bool finished, char *err,
                       size_t cap) {
  char path[1400];
  double s[MODEL_MAX_LAYERS];
  int L = r->m->cfg.layers;
  for (int l = 0; l < L; l++)
    s[l] = r->m->attn.sparsity[l];
  snprintf(path, sizeof path, "%s/final", r->dir);
  if (model_save(r->m, path, r->vocab, err, cap))
    return -1;
  /* the attention settings the model was trained with, for crisp eval / predict */
  char json[4096];
  int n = snprintf(json, sizeof json, "{\n  \"select\": \"%s\",\n  \"keep_min\": %d,\n  \"sparsity\": [",
                   select_name(r->c->select), r->c->keep_min);
  for (int l = 0; l < L && n < (int)sizeof json - 64; l++)
    n += snprintf(json + n, sizeof json - (size_t)n, "%s%.17g", l ? ", " : "", s[l]);
  n += snprintf(json + n, sizeof json - (size_t)n, "]\n}\n");
  snprintf(path, sizeof path, "%s/final/crisp_attention.json", r->dir);
  if (rt_write_atomic(path, json, (size_t)n, err, cap))
    return -1;
  snprintf(path, sizeof path, "%s/summary.json", r->dir);
  return metrics_summary(path, r->c, &r->st, final, total, finished, s, L, err, cap);
}

int train_run(TrainConfig *c, const TrainOptions *opt, TrainResult *res, char *err,
              size_t cap) {
  Run r = {.c = c, .opt = opt, .eval_step = -1};
  TrainResult dummy;
  if (!res)
    res = &dummy;
  memset(res, 0, sizeof *res);
  err[0] = 0;
  r.tty = opt->progress > 0 || (opt->progress < 0 && isatty(2));
  char e[2048];
  int rc = 1;
  EvalResult final = {0};

  if (!c->model[0] && !opt->resume)
    train_config_embedded(c);
  if (train_config_check(c, "config", err, cap))
    return 2;
  if (path_join(r.dir, sizeof r.dir, c->runs_dir, c->name)) {
    snprintf(err, cap, "run folder name too long");
    return 2;
  }
  snprintf(res->run_dir, sizeof res->run_dir, "%s", r.dir);
  char cfg_path[1300], metrics_path[1300], ckpt_path[1300];
  snprintf(cfg_path, sizeof cfg_path, "%s/config.json", r.dir);
  snprintf(metrics_path, sizeof metrics_path, "%s/metrics.jsonl", r.dir);
  snprintf(ckpt_path, sizeof ckpt_path, "%s/checkpoint.bin", r.dir);
  if (!opt->resume && file_exists(cfg_path)) {
    snprintf(err, cap, "%s already holds a run: continue it with --resume %s, or pick another "
                       "--name", r.dir, r.dir);
    return 2;
  }
  if (opt->resume && !file_exists(ckpt_path)) {
    snprintf(err, cap, "%s: no checkpoint to resume from%s", ckpt_path,
             file_exists(metrics_path) ? " (the run may have finished)" : "");
    return 2;
  }
  if (rt_mkdirs(r.dir, err, cap))
    return 1;
  if (c->model[0] && !opt->resume) {
    char *real = realpath(c->model, NULL);
    if (!real) {
      snprintf(err, cap, "%s: %s", c->model, strerror(errno));
      return 2;
    }
    snprintf(c->model, sizeof c->model, "%s", real);
    free(real);
  }
  int drc = resolve_data(&r, err, cap);
  if (drc)
    return drc == -2 ? 2 : 1;
  if (r.data_note[0])
    say(&r, "data: %s", r.data_note);

  /* the backend, with BLAS on the same number of threads as the pool */
  if (c->threads > 0) {
    char t[16];
    snprintf(t, sizeof t, "%d", c->threads);
    setenv("OPENBLAS_NUM_THREADS", t, 1);
    setenv("OMP_NUM_THREADS", t, 1);
  }
  r.be = backend_open(c->device, &(BackendOptions){.threads = c->threads}, e, sizeof e);
  if (!r.be) {
    snprintf(err, cap, "%s", e);
    return 1;
  }
  int lrc = load_sets(&r, err, cap);
  if (lrc) {
    rc = lrc == -2 ? 2 : 1;
    goto out;
  }
  say(&r, "data: %s: %d train, %d dev sentences (longest %d tokens)", r.data, r.train.n, r.dev.n,
      r.train.longest > r.dev.longest ? r.train.longest : r.dev.longest);
  int brc = build_model(&r, err, cap);
  if (brc) {
    rc = brc == -2 ? 2 : 1;
    goto out;
  }
  Model *m = r.m;
  int L = m->cfg.layers;
  if (c->select != SEL_NONE && budget_init(&r.st.budget, &c->budget, L, err, cap)) {
    rc = 2;
    goto out;
  }
  r.st.budget.cfg = c->budget;
  r.st.budget.layers = L;
  r.st.best_step = -1;
  r.st.config_hash = train_config_hash(c);

  /* the resolved config; a resumed run checks its checkpoint against it */
  if (opt->resume) {
    TrainState saved = r.st;
    if (checkpoint_load(ckpt_path, &saved, m, &r.adam, err, cap))
      goto out;
    if (saved.config_hash != r.st.config_hash) {
      snprintf(err, cap, "%s was written by another configuration than %s", ckpt_path, cfg_path);
      rc = 2;
      goto out;
    }
    r.st = saved;
    if (truncate(metrics_path, (off_t)r.st.metrics_bytes)) {
      snprintf(err, cap, "%s: %s", metrics_path, strerror(errno));
      goto out;
    }
    say(&r, "resuming %s at step %lld (epoch %lld, batch %lld)", r.dir, (long long)r.st.opt_step,
        (long long)r.st.epoch + 1, (long long)r.st.epoch_pos);
  }
  {
    char *json = train_config_json(c);
    if (!json) {
      snprintf(err, cap, "out of memory");
      goto out;
    }
    size_t n = strlen(json);
    char *t = malloc(n + 2);
    if (t) {
      memcpy(t, json, n);
      t[n] = '\n';
    }
    int wrc = t ? rt_write_atomic(cfg_path, t, n + 1, err, cap) : -1;
    free(t);
    free(json);
    if (wrc)
      goto out;
  }
  r.metrics = fopen(metrics_path, opt->resume ? "a" : "w");
  if (!r.metrics) {
    snprintf(err, cap, "%s: %s", metrics_path, strerror(errno));
    goto out;
  }

  /* the schedule */
  int bs = c->batch_size, nb = (r.train.n + bs - 1) / bs;
  int64_t per_epoch = (nb + c->grad_accum - 1) / c->grad_accum;
  int64_t total = per_epoch * c->epochs;
  int64_t warmup = (int64_t)ceil(c->warmup_ratio * (double)total);
  int64_t stop_at = c->max_steps > 0 && c->max_steps < total ? c->max_steps : total;
  res->total_steps = total;
  say(&r, "train: %s, %s, %d epochs x %lld steps (batch %d x %d accumulation), lr %g, "
          "warm-up %lld, %d threads",
      select_name(c->select),
      c->select == SEL_NONE ? "dense" : budget_kind_name(c->budget.kind), c->epochs,
      (long long)per_epoch, bs, c->grad_accum, c->lr, (long long)warmup, r.be->threads);

  int *perm = malloc((size_t)r.train.n * sizeof *perm);
  Batch b;
  if (!perm || batch_alloc(&b, bs, m->max_len)) {
    free(perm);
    snprintf(err, cap, "out of memory");
    goto out;
  }
  int32_t pad = m->cfg.pad_token_id;
  bool adaptive = c->select != SEL_NONE && c->budget.kind == BUDGET_ADAPTIVE;
  double t_start = rt_now(), win_t = rt_now();
  int64_t win_tokens = 0, start_step = r.st.opt_step;
  double loss_ema = NAN;
  bool stopped = false, failed = false;
  int64_t console_every = stop_at / 40 > c->log_every ? stop_at / 40 : c->log_every;

  while (r.st.epoch < c->epochs && r.st.opt_step < stop_at && !failed) {
    permutation(perm, r.train.n, c->seed * 1000003ull + (uint64_t)r.st.epoch);
    while (r.st.epoch_pos < nb) {
      double t0 = rt_now();
      int group = (int)(nb - r.st.epoch_pos < c->grad_accum ? nb - r.st.epoch_pos : c->grad_accum);
      double loss_sum = 0;
      int64_t toks = 0;
      double s_used[MODEL_MAX_LAYERS];
      for (int j = 0; j < group && !failed; j++) {
        int64_t first = r.st.epoch_pos * bs;
        int cnt = (int)(r.train.n - first < bs ? r.train.n - first : bs);
        batch_fill(&b, &r.train, perm + first, cnt, pad);
        apply_budget(&r);
        for (int l = 0; l < L; l++)   /* the mean over the step's micro-batches */
          s_used[l] = (j ? s_used[l] : 0) + (double)m->attn.sparsity[l] / group;
        ModelRun run = {.train = true, .seed = (uint32_t)c->seed, .step = (uint32_t)r.st.micro,
                        .stats = adaptive && c->budget.entropy == BUDGET_ENTROPY_KEPT,
                        .dense_stats = adaptive && c->budget.entropy == BUDGET_ENTROPY_DENSE};
        if (model_forward(m, b.ids, b.lengths, b.B, b.N, b.labels, &run) || model_backward(m)) {
          snprintf(err, cap, "step %lld: %s", (long long)r.st.opt_step + 1, m->err);
          failed = true;
          break;
        }
        if (adaptive) {
          double conc[MODEL_MAX_LAYERS];
          budget_concentration(m, &c->budget, conc);
          budget_observe(&r.st.budget, conc);
        }
        loss_sum += run.loss;
        toks += b.tokens;
        r.st.micro++;
        r.st.epoch_pos++;
      }
      if (failed)
        break;
      /* the gradient is the mean over the group's micro-batches (each backward added
       * d(mean loss)), clipped to max_grad_norm: both folded into one scale */
      double gnorm = grad_norm_par(rt_host_pool(m->be), m->grads_mem, m->n_param_floats) / group;
      float gscale = (float)(clip_coef(gnorm, c->max_grad_norm) / group);
      double lr = lr_linear(r.st.opt_step, total, warmup, c->lr);
      optimizer_step(&r, lr, gscale);   /* and zeroes the gradients */
      r.st.opt_step++;
      double dt = rt_now() - t0;
      r.st.train_seconds += dt;
      r.st.tokens += toks;
      win_tokens += toks;
      double loss = loss_sum / group;
      loss_ema = isnan(loss_ema) ? loss : 0.9 * loss_ema + 0.1 * loss;
      double now = rt_now();
      double tps = win_tokens / (now - win_t > 1e-9 ? now - win_t : 1e-9);
      if (now - win_t > 5)
        win_t = now, win_tokens = 0;
      double per_step = (now - t_start) / (double)(r.st.opt_step - start_step);
      double eta = per_step * (double)(stop_at - r.st.opt_step);
      if (r.st.opt_step % c->log_every == 0 || r.st.opt_step == stop_at) {
        StepRecord rec = {r.st.opt_step, total, r.st.epoch, loss, lr, gnorm, toks / dt, r.st.train_seconds,
                          L, s_used, adaptive ? r.st.budget.c_ema : NULL};
        if (metrics_step(r.metrics, &rec, err, cap)) {
          failed = true;
          break;
        }
      }
      if (r.tty)
        progress(&r, stop_at, loss_ema, lr, tps, eta);
      else if (r.st.opt_step % console_every == 0 || r.st.opt_step == 1 ||
               r.st.opt_step == stop_at) {
        char t[32];
        fmt_time(eta, t, sizeof t);
        say(&r, "step %lld/%lld  epoch %lld/%d  loss %.4f  lr %.2e  %.0f tok/s  ETA %s",
            (long long)r.st.opt_step, (long long)stop_at, (long long)r.st.epoch + 1, c->epochs,
            loss_ema, lr, tps, t);
      }
      bool epoch_end = r.st.epoch_pos >= nb;
      if (epoch_end) {
        if (do_eval(&r, "epoch_end", &final, err, cap)) {
          failed = true;
          break;
        }
        r.st.epoch++;
        r.st.epoch_pos = 0;
      } else if (c->eval_every > 0 && r.st.opt_step % c->eval_every == 0) {
        if (do_eval(&r, "step", &final, err, cap)) {
          failed = true;
          break;
        }
      }
      bool stop_now = opt->stop && *opt->stop;
      bool last = r.st.opt_step >= stop_at;
      bool done_all = r.st.epoch >= c->epochs;
      if (stop_now || (last && !done_all) ||
          (c->checkpoint_every > 0 && r.st.opt_step % c->checkpoint_every == 0 && !done_all)) {
        if (save_checkpoint(&r, err, cap)) {
          failed = true;
          break;
        }
        if (stop_now) {
          say(&r, "interrupted at step %lld: checkpoint saved; continue with: crisp train "
                  "--resume %s",
              (long long)r.st.opt_step, r.dir);
          stopped = true;
        }
      }
      if (stopped || last)
        break;
      if (epoch_end)
        break;
    }
    if (stopped || failed || r.st.opt_step >= stop_at)
      break;
  }
  batch_free(&b);
  free(perm);
  if (failed)
    goto out;
  if (stopped) {
    res->interrupted = true;
    res->steps = r.st.opt_step;
    rc = 130;
    goto out;
  }
  bool finished = r.st.epoch >= c->epochs;
  /* the final evaluation (unless the last step just had one) */
  if (r.eval_step != r.st.opt_step)
    if (do_eval(&r, finished ? "final" : "stop", &final, err, cap))
      goto out;
  if (write_final(&r, &final, total, finished, err, cap))
    goto out;
  if (finished)
    unlink(ckpt_path);
  res->accuracy = final.accuracy, res->val_loss = final.loss;
  res->correct = final.correct, res->total = final.total;
  res->steps = r.st.opt_step;
  res->train_seconds = r.st.train_seconds;
  res->tokens_per_s = r.st.train_seconds > 0 ? r.st.tokens / r.st.train_seconds : 0;
  res->finished = finished;
  rc = 0;
out:
  if (r.line_open && !opt->quiet)
    fputc('\n', stderr);
  eval_result_free(&final);
  run_free(&r);
  return rc;
}
