/* train_eval.c: the crisp kernels a model runs its attention with, and evaluation of
 * a set (loss, accuracy, kept fractions, per-head entropies). Apart from the loop
 * because `crisp eval` and `crisp predict` use both without training. */
#include "train_impl.h"

#include "../runtime/compile.h"
#include "../runtime/fsutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
  char cerr[1200];
  RtCache *cp = &cache;
  if (rt_cache_open(&cache, NULL, cerr, sizeof cerr)) {   /* slower, still right */
    fprintf(stderr, "crisp: warning: no kernel cache: %s\n", cerr);
    cp = NULL;
  }
  /* A damaged tuning database is an error, not a silent fall-back to default tiles:
   * the user tuned to get the speed, and would otherwise lose it without a word. */
  TuneDb db = {0};
  char path[1024];
  if (tune_db_default_path(path, sizeof path) == 0 && tune_db_load(&db, path, cerr, sizeof cerr)) {
    snprintf(err, cap, "tuning database: %s (fix or delete it, or set CRISP_TUNE_DB)", cerr);
    return -1;
  }
  int rc = rt_compile_for(m->be, &s, m->max_len, cp, &db, mod, NULL, err, cap);
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
