/* train.c: the training loop (see train.h and docs/training.md). train_run opens the
 * run (train_setup.c: a fresh one, or one resumed from its checkpoint), then steps
 * through the epochs: micro-batches accumulated into one clipped AdamW step, a metrics
 * line and the console, evaluations and checkpoints on their schedule; at the end the
 * final model folder and summary.json. A run that fails before its first checkpoint
 * leaves no run folder behind (train_folder.c); one that fails after it stays resumable. */
#include "train_impl.h"

#include "../runtime/fsutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The optimizer steps of the run, fixed by the config and the training set. */
typedef struct Schedule {
  int bs, nb;                  /* batch size; micro-batches per epoch */
  int64_t per_epoch, total;    /* optimizer steps per epoch; in all */
  int64_t warmup;              /* learning-rate warm-up steps */
  int64_t stop_at;             /* where this invocation stops (max_steps) */
  int64_t console_every;       /* steps between plain console lines (about 40 in all) */
} Schedule;

/* What the steps of one invocation share: the epoch's order, the batch, the timing. */
typedef struct Loop {
  Schedule s;
  int *perm;                   /* the epoch's order of the training rows */
  Batch b;
  int32_t pad;
  bool adaptive;               /* an adaptive budget: attention statistics every step */
  double t_start;              /* when this invocation's first step began */
  double win_t;                /* the tokens/s window: its start and tokens */
  int64_t win_tokens;
  int64_t start_step;          /* the step this invocation began at */
  double loss_ema;             /* the console's smoothed loss */
} Loop;

/* One optimizer step's figures, for its metrics line and the console. */
typedef struct Step {
  double loss, lr, grad_norm, seconds;
  int64_t tokens;
  double s_used[MODEL_MAX_LAYERS];   /* the mean over its micro-batches, per layer */
} Step;

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
  fflush(r->metrics);
  r->st.metrics_bytes = ftell(r->metrics);
  if (checkpoint_save(r->ckpt_path, &r->st, r->m, &r->adam, err, cap))
    return -1;
  r->ckpt_step = r->st.opt_step;
  return 0;
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

/* ---- one optimizer step ---------------------------------------------------------- */

/* Overflow in the attention scores (weights too large, or a run diverging) can leave
 * the logits finite but the rows' entropies NaN; fed to the budget they would turn
 * every later s_l into NaN, so the run stops at the step that made them. */
static int check_concentration(const Run *r, const double *conc, char *err, size_t cap) {
  for (int l = 0; l < r->m->cfg.layers; l++)
    if (!isfinite(conc[l])) {
      snprintf(err, cap, "step %lld: layer %d's attention entropy is not finite (%g): float "
                         "overflowed in the attention scores (weights too large or corrupt, or "
                         "training diverged)",
               (long long)r->st.opt_step + 1, l, conc[l]);
      return -1;
    }
  return 0;
}

/* A step whose loss or gradient norm is NaN or infinite would write NaN into every
 * weight (and metrics.jsonl would show 0): the run stops before the optimizer applies
 * it, so the last checkpoint and the weights stay as they were. */
static int check_step(const Run *r, double loss, double gnorm, char *err, size_t cap) {
  if (isfinite(loss) && isfinite(gnorm))
    return 0;
  snprintf(err, cap, "step %lld: the %s is not finite (loss %g, gradient norm %g): float "
                     "overflowed (weights too large or corrupt, or training diverged; a lower "
                     "lr or max_grad_norm may help); the step was not applied",
           (long long)r->st.opt_step + 1, isfinite(loss) ? "gradient norm" : "loss", loss, gnorm);
  return -1;
}

/* The next `group` micro-batches forward and backward: their gradients add up, their
 * losses and tokens go to *st. */
static int micro_batches(Run *r, Loop *lp, int group, Step *st, char *err, size_t cap) {
  const TrainConfig *c = r->c;
  Model *m = r->m;
  int bs = lp->s.bs;
  for (int j = 0; j < group; j++) {
    int64_t first = r->st.epoch_pos * bs;
    int cnt = (int)(r->train.n - first < bs ? r->train.n - first : bs);
    batch_fill(&lp->b, &r->train, lp->perm + first, cnt, lp->pad);
    apply_budget(r);
    for (int l = 0; l < m->cfg.layers; l++)
      st->s_used[l] = (j ? st->s_used[l] : 0) + (double)m->attn.sparsity[l] / group;
    ModelRun run = {.train = true, .seed = (uint32_t)c->seed, .step = (uint32_t)r->st.micro,
                    .stats = lp->adaptive && c->budget.entropy == BUDGET_ENTROPY_KEPT,
                    .dense_stats = lp->adaptive && c->budget.entropy == BUDGET_ENTROPY_DENSE};
    if (model_forward(m, lp->b.ids, lp->b.lengths, lp->b.B, lp->b.N, lp->b.labels, &run) ||
        model_backward(m)) {
      snprintf(err, cap, "step %lld: %s", (long long)r->st.opt_step + 1, m->err);
      return -1;
    }
    if (lp->adaptive) {
      double conc[MODEL_MAX_LAYERS];
      budget_concentration(m, &c->budget, conc);
      if (check_concentration(r, conc, err, cap))
        return -1;
      budget_observe(&r->st.budget, conc);
    }
    st->loss += run.loss;
    st->tokens += lp->b.tokens;
    r->st.micro++;
    r->st.epoch_pos++;
  }
  return 0;
}

/* One optimizer step: up to grad_accum micro-batches (fewer at the end of an epoch),
 * then AdamW on their mean gradient clipped to max_grad_norm. */
static int one_step(Run *r, Loop *lp, Step *st, char *err, size_t cap) {
  const TrainConfig *c = r->c;
  Model *m = r->m;
  double t0 = rt_now();
  int64_t left = lp->s.nb - r->st.epoch_pos;
  int group = (int)(left < c->grad_accum ? left : c->grad_accum);
  *st = (Step){0};
  if (micro_batches(r, lp, group, st, err, cap))
    return -1;
  /* the gradient is the mean over the group's micro-batches (each backward added
   * d(mean loss)), clipped to max_grad_norm: both folded into one scale */
  double gnorm = grad_norm_par(rt_host_pool(m->be), m->grads_mem, m->n_param_floats) / group;
  if (check_step(r, st->loss / group, gnorm, err, cap))
    return -1;
  float gscale = (float)(clip_coef(gnorm, c->max_grad_norm) / group);
  double lr = lr_linear(r->st.opt_step, lp->s.total, lp->s.warmup, c->lr);
  optimizer_step(r, lr, gscale);   /* and zeroes the gradients */
  r->st.opt_step++;
  st->seconds = rt_now() - t0;
  r->st.train_seconds += st->seconds;
  r->st.tokens += st->tokens;
  lp->win_tokens += st->tokens;
  st->loss /= group;
  st->lr = lr;
  st->grad_norm = gnorm;
  return 0;
}

/* The step's metrics line (every log_every steps and the last) and the console: the
 * progress line on a terminal, else a plain line now and then. */
static int report_step(Run *r, Loop *lp, const Step *st, char *err, size_t cap) {
  const TrainConfig *c = r->c;
  int64_t step = r->st.opt_step, stop_at = lp->s.stop_at;
  lp->loss_ema = isnan(lp->loss_ema) ? st->loss : 0.9 * lp->loss_ema + 0.1 * st->loss;
  double now = rt_now();
  double tps = lp->win_tokens / (now - lp->win_t > 1e-9 ? now - lp->win_t : 1e-9);
  if (now - lp->win_t > 5)
    lp->win_t = now, lp->win_tokens = 0;
  double per_step = (now - lp->t_start) / (double)(step - lp->start_step);
  double eta = per_step * (double)(stop_at - step);
  if (step % c->log_every == 0 || step == stop_at) {
    StepRecord rec = {step, lp->s.total, r->st.epoch, st->loss, st->lr, st->grad_norm,
                      st->tokens / st->seconds, r->st.train_seconds, r->m->cfg.layers,
                      st->s_used, lp->adaptive ? r->st.budget.c_ema : NULL};
    if (metrics_step(r->metrics, &rec, err, cap))
      return -1;
  }
  if (r->tty) {
    run_progress(r, stop_at, lp->loss_ema, st->lr, tps, eta);
  } else if (step % lp->s.console_every == 0 || step == 1 || step == stop_at) {
    char t[32];
    train_fmt_time(eta, t, sizeof t);
    run_say(r, "step %lld/%lld  epoch %lld/%d  loss %.4f  lr %.2e  %.0f tok/s  ETA %s",
            (long long)step, (long long)stop_at, (long long)r->st.epoch + 1, c->epochs,
            lp->loss_ema, st->lr, tps, t);
  }
  return 0;
}

/* ---- after a step: evaluations and checkpoints ----------------------------------- */

/* An evaluation at the end of an epoch (which then starts the next) or every
 * eval_every steps; *epoch_end says which. */
static int step_eval(Run *r, const Loop *lp, EvalResult *final, bool *epoch_end, char *err,
                     size_t cap) {
  *epoch_end = r->st.epoch_pos >= lp->s.nb;
  if (*epoch_end) {
    if (do_eval(r, "epoch_end", final, err, cap))
      return -1;
    r->st.epoch++;
    r->st.epoch_pos = 0;
  } else if (r->c->eval_every > 0 && r->st.opt_step % r->c->eval_every == 0) {
    if (do_eval(r, "step", final, err, cap))
      return -1;
  }
  return 0;
}

/* A checkpoint when asked to stop (*stopped then), at a max_steps stop, or every
 * checkpoint_every steps; none once every epoch is done (the final folder follows). */
static int step_checkpoint(Run *r, const Loop *lp, bool *stopped, char *err, size_t cap) {
  const TrainConfig *c = r->c;
  bool stop_now = r->opt->stop && *r->opt->stop;
  bool last = r->st.opt_step >= lp->s.stop_at;
  bool done_all = r->st.epoch >= c->epochs;
  if (stop_now || (last && !done_all) ||
      (c->checkpoint_every > 0 && r->st.opt_step % c->checkpoint_every == 0 && !done_all)) {
    if (save_checkpoint(r, err, cap))
      return -1;
    if (stop_now) {
      run_say(r, "interrupted at step %lld: checkpoint saved; continue with: crisp train "
                 "--resume %s",
              (long long)r->st.opt_step, r->dir);
      *stopped = true;
    }
  }
  return 0;
}

/* ---- the run ---------------------------------------------------------------------- */

/* The schedule, the shuffle's and the batch's memory, and the clocks. */
static int loop_begin(Run *r, Loop *lp, TrainResult *res, char *err, size_t cap) {
  const TrainConfig *c = r->c;
  Schedule *s = &lp->s;
  s->bs = c->batch_size;
  s->nb = (r->train.n + s->bs - 1) / s->bs;
  s->per_epoch = (s->nb + c->grad_accum - 1) / c->grad_accum;
  s->total = s->per_epoch * c->epochs;
  s->warmup = (int64_t)ceil(c->warmup_ratio * (double)s->total);
  s->stop_at = c->max_steps > 0 && c->max_steps < s->total ? c->max_steps : s->total;
  s->console_every = s->stop_at / 40 > c->log_every ? s->stop_at / 40 : c->log_every;
  res->total_steps = s->total;
  run_say(r, "train: %s, %s, %d epochs x %lld steps (batch %d x %d accumulation), lr %g, "
             "warm-up %lld, %d threads",
          select_name(c->select),
          c->select == SEL_NONE ? "dense" : budget_kind_name(c->budget.kind), c->epochs,
          (long long)s->per_epoch, s->bs, c->grad_accum, c->lr, (long long)s->warmup,
          r->be->threads);
  lp->perm = malloc((size_t)r->train.n * sizeof *lp->perm);
  if (!lp->perm || batch_alloc(&lp->b, s->bs, r->m->max_len)) {
    free(lp->perm);
    snprintf(err, cap, "out of memory");
    return -1;
  }
  lp->pad = r->m->cfg.pad_token_id;
  lp->adaptive = c->select != SEL_NONE && c->budget.kind == BUDGET_ADAPTIVE;
  lp->t_start = rt_now(), lp->win_t = rt_now();
  lp->win_tokens = 0, lp->start_step = r->st.opt_step;
  lp->loss_ema = NAN;
  return 0;
}

/* Steps through the epochs until the run is done, max_steps is reached or a stop is
 * asked for (*stopped). */
static int run_steps(Run *r, Loop *lp, EvalResult *final, bool *stopped, char *err,
                     size_t cap) {
  const TrainConfig *c = r->c;
  while (r->st.epoch < c->epochs && r->st.opt_step < lp->s.stop_at) {
    train_permutation(lp->perm, r->train.n, c->seed * 1000003ull + (uint64_t)r->st.epoch);
    bool epoch_end = false;
    while (!epoch_end && r->st.epoch_pos < lp->s.nb) {
      Step st;
      if (one_step(r, lp, &st, err, cap) || report_step(r, lp, &st, err, cap) ||
          step_eval(r, lp, final, &epoch_end, err, cap) ||
          step_checkpoint(r, lp, stopped, err, cap))
        return -1;
      if (*stopped || r->st.opt_step >= lp->s.stop_at)
        return 0;
    }
  }
  return 0;
}

/* The end of a run not interrupted: an evaluation unless the last step just had one,
 * final/ and summary.json, and once every epoch is done, no checkpoint. */
static int finish(Run *r, const Loop *lp, EvalResult *final, TrainResult *res, char *err,
                  size_t cap) {
  bool finished = r->st.epoch >= r->c->epochs;
  if (r->eval_step != r->st.opt_step)
    if (do_eval(r, finished ? "final" : "stop", final, err, cap))
      return -1;
  if (write_final(r, final, lp->s.total, finished, err, cap))
    return -1;
  if (finished)
    unlink(r->ckpt_path);
  res->accuracy = final->accuracy, res->val_loss = final->loss;
  res->correct = final->correct, res->total = final->total;
  res->steps = r->st.opt_step;
  res->train_seconds = r->st.train_seconds;
  res->tokens_per_s = r->st.train_seconds > 0 ? r->st.tokens / r->st.train_seconds : 0;
  res->finished = finished;
  return 0;
}

/* A run that failed: with a checkpoint (its own, or the one it resumed) it stays, and
 * the message says how to go on from it once the cause is fixed; without one, what
 * this invocation made of the run folder goes, so the name is free again. */
static void run_failed(Run *r, bool stepping, char *err, size_t cap) {
  if (r->ckpt_step < 0 && !r->opt->resume) {
    run_folder_undo(&r->folder);
    return;
  }
  if (!stepping || r->ckpt_step < 0)
    return;   /* a resume that could not start: its message says why */
  size_t n = strlen(err);
  snprintf(err + n, cap - n, "; the run stays at its checkpoint of step %lld: continue it with "
                             "crisp train --resume %s",
           (long long)r->ckpt_step, r->dir);
}

int train_run(TrainConfig *c, const TrainOptions *opt, TrainResult *res, char *err,
              size_t cap) {
  Run r = {.c = c, .opt = opt, .eval_step = -1, .ckpt_step = -1, .folder = {.n_had = -1}};
  TrainResult dummy;
  if (!res)
    res = &dummy;
  memset(res, 0, sizeof *res);
  err[0] = 0;
  r.tty = opt->progress > 0 || (opt->progress < 0 && isatty(2));
  EvalResult final = {0};
  Loop lp = {0};
  bool stopped = false;
  int rc = run_open(&r, res, err, cap);
  bool stepping = rc == 0;
  if (rc)
    goto out;
  rc = 1;
  if (loop_begin(&r, &lp, res, err, cap))
    goto out;
  int src = run_steps(&r, &lp, &final, &stopped, err, cap);
  batch_free(&lp.b);
  free(lp.perm);
  if (src)
    goto out;
  if (stopped) {
    res->interrupted = true;
    res->steps = r.st.opt_step;
    rc = 130;
    goto out;
  }
  if (finish(&r, &lp, &final, res, err, cap))
    goto out;
  rc = 0;
out:
  if (r.line_open && !opt->quiet)
    fputc('\n', stderr);
  eval_result_free(&final);
  run_free(&r);   /* metrics.jsonl closed before its folder may go */
  if (rc != 0 && rc != 130)
    run_failed(&r, stepping, err, cap);
  run_folder_free(&r.folder);
  return rc;
}
