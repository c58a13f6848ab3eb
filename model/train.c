/* train.c: the training loop (see train.h and docs/training.md). train_run checks the
 * run folder, prepares the run (train_setup.c) or resumes it from its checkpoint, then
 * steps through the epochs: micro-batches accumulated into one clipped AdamW step,
 * evaluations, metrics lines and checkpoints on their schedule, and at the end the
 * final model folder and summary.json. */
#include "train_impl.h"

#include "../runtime/fsutil.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int path_join(char *out, size_t cap, const char *a, const char *b) {
  int n = snprintf(out, cap, "%s/%s", a, b);
  return n < 0 || (size_t)n >= cap ? -1 : 0;
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
  run_say(r, "eval  step %lld (%s): accuracy %.4f (%d/%d)  val loss %.4f  sparsity %.3f  [%.1f s]",
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
  if (!opt->resume && train_file_exists(cfg_path)) {
    snprintf(err, cap, "%s already holds a run: continue it with --resume %s, or pick another "
                       "--name", r.dir, r.dir);
    return 2;
  }
  if (opt->resume && !train_file_exists(ckpt_path)) {
    snprintf(err, cap, "%s: no checkpoint to resume from%s", ckpt_path,
             train_file_exists(metrics_path) ? " (the run may have finished)" : "");
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
  int drc = run_resolve_data(&r, err, cap);
  if (drc)
    return drc == -2 ? 2 : 1;
  if (r.data_note[0])
    run_say(&r, "data: %s", r.data_note);

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
  int lrc = run_load_sets(&r, err, cap);
  if (lrc) {
    rc = lrc == -2 ? 2 : 1;
    goto out;
  }
  run_say(&r, "data: %s: %d train, %d dev sentences (longest %d tokens)", r.data, r.train.n, r.dev.n,
      r.train.longest > r.dev.longest ? r.train.longest : r.dev.longest);
  int brc = run_build_model(&r, err, cap);
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
    run_say(&r, "resuming %s at step %lld (epoch %lld, batch %lld)", r.dir, (long long)r.st.opt_step,
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
  run_say(&r, "train: %s, %s, %d epochs x %lld steps (batch %d x %d accumulation), lr %g, "
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
    train_permutation(perm, r.train.n, c->seed * 1000003ull + (uint64_t)r.st.epoch);
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
        run_progress(&r, stop_at, loss_ema, lr, tps, eta);
      else if (r.st.opt_step % console_every == 0 || r.st.opt_step == 1 ||
               r.st.opt_step == stop_at) {
        char t[32];
        train_fmt_time(eta, t, sizeof t);
        run_say(&r, "step %lld/%lld  epoch %lld/%d  loss %.4f  lr %.2e  %.0f tok/s  ETA %s",
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
          run_say(&r, "interrupted at step %lld: checkpoint saved; continue with: crisp train "
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
