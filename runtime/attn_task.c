/* The attention forward workload (see attn_task.h). */
#include "attn_task.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t rt_rng_next(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

double rt_rng_uniform(uint64_t *s) { return (double)(rt_rng_next(s) >> 11) / 9007199254740992.0; }

int attn_task_init(AttnTask *t, Backend *b, const Spec *s, int B, int H, int N, double sparsity,
                   char *err, size_t cap) {
  memset(t, 0, sizeof *t);
  t->b = b;
  t->spec = *s;
  t->sparsity = sparsity;
  int64_t D = s->head_dim;
  AttnLayout *l = &t->l;
  l->B = B, l->H = H, l->N = N;
  l->qkv_sh = l->o_sh = D;
  l->qkv_sn = l->o_sn = H * D;
  l->qkv_sb = l->o_sb = (int64_t)N * H * D;
  t->n_t = (int64_t)B * N * H * D;
  t->n_row = (int64_t)B * H * N;
  if (B < 1 || H < 1 || N < 1 || t->n_t >= (int64_t)1 << 31) {
    snprintf(err, cap, "attention shape B=%d H=%d N=%d D=%d out of range", B, H, N, (int)D);
    return -1;
  }
  t->q = calloc((size_t)t->n_t, sizeof(float));
  t->k = calloc((size_t)t->n_t, sizeof(float));
  t->v = calloc((size_t)t->n_t, sizeof(float));
  t->lengths = calloc((size_t)B, sizeof(int32_t));
  if (!t->q || !t->k || !t->v || !t->lengths) {
    attn_task_free(t);
    snprintf(err, cap, "out of memory");
    return -1;
  }
  for (int i = 0; i < B; i++)
    t->lengths[i] = N;
  return 0;
}

void attn_task_free(AttnTask *t) {
  for (int i = 0; i < RT_MAX_PARAMS; i++)
    if (t->dev[i])
      rt_free(t->b, t->dev[i]);
  free(t->q);
  free(t->k);
  free(t->v);
  free(t->lengths);
  free(t->ref_o);
  free(t->ref_lse);
  free(t->ref_tau);
  free(t->ref_kept);
  memset(t, 0, sizeof *t);
}

void attn_task_fill(AttnTask *t, uint64_t *rng, AttnFill fill, bool random_lengths) {
  t->ref_valid = false;
  float c = (float)(round(rt_rng_uniform(rng) * 8 - 4) / 4);
  for (int64_t i = 0; i < t->n_t; i++) {
    double u = rt_rng_uniform(rng) * 2 - 1, w = rt_rng_uniform(rng) * 2 - 1;
    switch (fill) {
    case ATTN_FILL_RANDOM:
      t->q[i] = (float)u, t->k[i] = (float)w;
      break;
    case ATTN_FILL_QUANTIZED:
      t->q[i] = (float)(round(u * 4) / 4), t->k[i] = (float)(round(w * 4) / 4);
      break;
    case ATTN_FILL_TIES:
      t->q[i] = c, t->k[i] = 0.5f;
      break;
    }
    t->v[i] = (float)(rt_rng_uniform(rng) * 2 - 1);
  }
  for (int b = 0; b < t->l.B; b++)
    t->lengths[b] = random_lengths ? 1 + (int32_t)(rt_rng_next(rng) % (uint64_t)t->l.N) : t->l.N;
  if (random_lengths && t->l.B > 1)
    t->lengths[0] = t->l.N;   /* one full-length example in every batch */
}

/* ---- binding ---- */

static const char *const per_row[] = {"kept", "lse", "tau", "entropy", "dense_entropy"};

static int is_per_row(const char *name) {
  for (int i = 0; i < 5; i++)
    if (!strcmp(name, per_row[i]))
      return 1;
  return 0;
}

static int64_t buffer_count(const AttnTask *t, const char *name, bool *known) {
  *known = true;
  if (!strcmp(name, "q") || !strcmp(name, "k") || !strcmp(name, "v") || !strcmp(name, "o"))
    return t->n_t;
  if (!strcmp(name, "lengths"))
    return t->l.B;
  if (is_per_row(name))
    return t->n_row;
  if (!strcmp(name, "tau_group"))
    return (int64_t)t->l.B * t->l.H;
  *known = false;
  return t->n_t;
}

static int scalar_value(const AttnTask *t, const char *name, double *v) {
  const AttnLayout *l = &t->l;
  struct {
    const char *name;
    double value;
  } table[] = {
      {"B", l->B},           {"H", l->H},           {"N", l->N},
      {"qkv_sb", (double)l->qkv_sb}, {"qkv_sn", (double)l->qkv_sn}, {"qkv_sh", (double)l->qkv_sh},
      {"o_sb", (double)l->o_sb},     {"o_sn", (double)l->o_sn},     {"o_sh", (double)l->o_sh},
      {"sparsity", t->sparsity},     {"dropout", 0},        {"seed", 0},
      {"step", 0},           {"layer", 0},          {"stats", 0},
  };
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
    if (!strcmp(name, table[i].name)) {
      *v = table[i].value;
      return 0;
    }
  return -1;
}

static void set_scalar(AttnTask *t, int i, RtType type, double v) {
  void *slot = &t->scalar[i];
  memset(slot, 0, sizeof t->scalar[i]);
  switch (type) {
  case RT_T_I32: *(int32_t *)slot = (int32_t)v; break;
  case RT_T_I64: *(int64_t *)slot = (int64_t)v; break;
  case RT_T_F32: *(float *)slot = (float)v; break;
  case RT_T_F64: *(double *)slot = v; break;
  }
  t->args[i] = slot;
}

static size_t elem_size(RtType t) { return t == RT_T_I32 || t == RT_T_F32 ? 4 : 8; }

/* The group thresholds (quantile modes) as f32, and as the doubles the reference uses. */
static void group_tau(const AttnTask *t, float *f, double *d) {
  int n = t->l.B * t->l.H;
  for (int i = 0; i < n; i++)
    d[i] = 0;
  attention_group_tau_ref(&t->spec, &t->l, t->q, t->k, t->lengths, t->sparsity, d);
  for (int i = 0; i < n; i++) {
    f[i] = (float)d[i];
    d[i] = f[i];
  }
}

int attn_task_bind(AttnTask *t, const RtKernelInfo *k, char *err, size_t cap) {
  Backend *b = t->b;
  for (int i = k->nparams; i < RT_MAX_PARAMS; i++)
    if (t->dev[i]) {
      rt_free(b, t->dev[i]);
      t->dev[i] = 0;
      t->dev_bytes[i] = 0;
    }
  for (int i = 0; i < k->nparams; i++) {
    const RtParam *p = &k->params[i];
    if (!p->is_buf) {
      double v;
      if (t->dev[i]) {
        rt_free(b, t->dev[i]);
        t->dev[i] = 0, t->dev_bytes[i] = 0;
      }
      if (scalar_value(t, p->name, &v)) {
        snprintf(err, cap, "kernel %s: no value for scalar parameter %s", k->name, p->name);
        return -1;
      }
      set_scalar(t, i, p->type, v);
      continue;
    }
    bool known;
    int64_t count = buffer_count(t, p->name, &known);
    if (!known && !t->warned) {
      fprintf(stderr, "warning: kernel %s: unknown buffer parameter %s gets %lld zeroed elements\n",
              k->name, p->name, (long long)count);
      t->warned = true;
    }
    size_t bytes = (size_t)count * elem_size(p->type);
    if (t->dev[i] && t->dev_bytes[i] != bytes) {
      rt_free(b, t->dev[i]);
      t->dev[i] = 0;
    }
    if (!t->dev[i]) {
      if (rt_alloc(b, bytes, &t->dev[i])) {
        snprintf(err, cap, "%s", backend_error(b));
        return -1;
      }
      t->dev_bytes[i] = bytes;
    }
    const void *src = NULL;
    float *groups = NULL;
    double *dgroups = NULL;
    if (!strcmp(p->name, "q"))
      src = t->q;
    else if (!strcmp(p->name, "k"))
      src = t->k;
    else if (!strcmp(p->name, "v"))
      src = t->v;
    else if (!strcmp(p->name, "lengths"))
      src = t->lengths;
    else if (!strcmp(p->name, "tau_group")) {
      groups = calloc((size_t)count, sizeof *groups);
      dgroups = calloc((size_t)count, sizeof *dgroups);
      if (!groups || !dgroups) {
        free(groups);
        free(dgroups);
        snprintf(err, cap, "out of memory");
        return -1;
      }
      group_tau(t, groups, dgroups);
      src = groups;
    }
    int rc = src ? rt_h2d(b, t->dev[i], src, bytes) : rt_memset(b, t->dev[i], 0, bytes);
    free(groups);
    free(dgroups);
    if (rc) {
      snprintf(err, cap, "%s", backend_error(b));
      return -1;
    }
    t->ptr_val[i] = t->dev[i];
    t->args[i] = &t->ptr_val[i];
  }
  t->bound = k;
  return 0;
}

int attn_task_run(AttnTask *t, const RtKernel *k) { return rt_launch(t->b, k, t->args); }

/* ---- checking ---- */

static int download(AttnTask *t, const char *name, void *host, size_t bytes) {
  int i = rt_param_index(t->bound, name);
  if (i < 0 || !t->bound->params[i].is_buf)
    return 1;   /* not a parameter of this kernel */
  return rt_d2h(t->b, host, t->dev[i], bytes) ? -1 : 0;
}

static int poison(AttnTask *t) {
  const RtKernelInfo *k = t->bound;
  for (int i = 0; i < k->nparams; i++) {
    const RtParam *p = &k->params[i];
    if (!p->is_buf || p->role == RT_ROLE_IN)
      continue;
    /* NaN for floats (0xff bytes), -1 for ints: both never valid outputs here */
    if (rt_memset(t->b, t->dev[i], 0xff, t->dev_bytes[i]))
      return -1;
  }
  return 0;
}

bool attn_check_ok(const AttnCheck *c) {
  double tol = ATTN_TOL_E6 * 1e-6;
  return c->kept_ok && c->tau_ok && !c->unwritten && c->err <= tol && c->lse_err <= tol;
}

static void row_name(const AttnTask *t, int64_t at, char *buf, size_t cap) {
  int i = (int)(at % t->l.N), h = (int)(at / t->l.N % t->l.H), b = (int)(at / t->l.N / t->l.H);
  snprintf(buf, cap, "[b=%d,h=%d,i=%d]", b, h, i);
}

/* The reference outputs for the current inputs, once. */
static int reference(AttnTask *t) {
  if (t->ref_valid)
    return 0;
  int64_t rows = t->n_row;
  int nb = t->l.B * t->l.H;
  if (!t->ref_o) {
    t->ref_o = malloc((size_t)t->n_t * sizeof *t->ref_o);
    t->ref_lse = malloc((size_t)rows * sizeof *t->ref_lse);
    t->ref_tau = malloc((size_t)rows * sizeof *t->ref_tau);
    t->ref_kept = malloc((size_t)rows * sizeof *t->ref_kept);
  }
  float *fgroups = malloc((size_t)nb * sizeof *fgroups);
  double *dgroups = malloc((size_t)nb * sizeof *dgroups);
  if (!t->ref_o || !t->ref_lse || !t->ref_tau || !t->ref_kept || !fgroups || !dgroups) {
    free(fgroups);
    free(dgroups);
    return -1;
  }
  group_tau(t, fgroups, dgroups);
  bool quantile = t->spec.select == SEL_HEAD_QUANTILE || t->spec.select == SEL_LAYER_QUANTILE;
  AttnFwdArgs a = {.sparsity = t->sparsity, .tau_group = quantile ? dgroups : NULL};
  AttnFwdOut out = {.o = t->ref_o, .lse = t->ref_lse, .tau = t->ref_tau, .kept = t->ref_kept};
  attention_fwd_full_ref(&t->spec, &t->l, t->q, t->k, t->v, t->lengths, &a, &out);
  free(fgroups);
  free(dgroups);
  t->ref_valid = true;
  return 0;
}

static void compare(AttnTask *t, const float *o, const int32_t *kept, const float *lse,
                    const float *tau, AttnCheck *res) {
  double vmax = 1e-30, e = 0, tol = ATTN_TOL_E6 * 1e-6;
  for (int64_t i = 0; i < t->n_t; i++)
    vmax = fmax(vmax, fabs(t->v[i]));
  res->kept_ok = res->tau_ok = true;
  for (int64_t i = 0; i < t->n_t; i++) {
    if (isnan(o[i])) {
      if (!res->unwritten)
        snprintf(res->first_bad, sizeof res->first_bad, "o[%lld] unwritten (NaN)", (long long)i);
      res->unwritten = true;
    } else {
      e = fmax(e, fabs(o[i] - t->ref_o[i]));
    }
  }
  res->err = e / vmax;
  char where[64];
  for (int64_t r = 0; r < t->n_row; r++) {
    row_name(t, r, where, sizeof where);
    if (kept[r] != t->ref_kept[r] && res->kept_ok) {
      res->kept_ok = false;
      if (!res->first_bad[0])
        snprintf(res->first_bad, sizeof res->first_bad, "kept%s = %d, reference %d", where,
                 kept[r], t->ref_kept[r]);
    }
    if (lse && isnan(lse[r])) {
      if (!res->unwritten)
        snprintf(res->first_bad, sizeof res->first_bad, "lse%s unwritten (NaN)", where);
      res->unwritten = true;
    } else if (lse) {
      double d = fabs(lse[r] - t->ref_lse[r]) / fmax(1.0, fabs(t->ref_lse[r]));
      if (d > res->lse_err)
        res->lse_err = d;
      if (d > tol && !res->first_bad[0])
        snprintf(res->first_bad, sizeof res->first_bad, "lse%s = %.9g, reference %.9g", where,
                 lse[r], t->ref_lse[r]);
    }
    if (tau) {
      double rt = t->ref_tau[r], kt = tau[r];
      bool same = isinf(rt) ? (isinf(kt) && (rt > 0) == (kt > 0))
                            : fabs(kt - rt) <= 1e-6 * fmax(1.0, fabs(rt));
      if (!same && res->tau_ok) {
        res->tau_ok = false;
        if (!res->first_bad[0])
          snprintf(res->first_bad, sizeof res->first_bad, "tau%s = %.9g, reference %.9g", where,
                   kt, rt);
      }
    }
  }
  if (!res->first_bad[0] && res->err > tol)
    snprintf(res->first_bad, sizeof res->first_bad, "o differs by %.3g (relative to max |v|)",
             res->err);
}

int attn_task_check(AttnTask *t, const RtKernel *k, AttnCheck *res, char *err, size_t cap) {
  memset(res, 0, sizeof *res);
  if (t->bound != k->info && attn_task_bind(t, k->info, err, cap))
    return -1;
  int64_t n = t->n_t, rows = t->n_row;
  float *o = malloc((size_t)n * sizeof *o), *lse = malloc((size_t)rows * sizeof *lse);
  float *tau = malloc((size_t)rows * sizeof *tau);
  int32_t *kept = malloc((size_t)rows * sizeof *kept);
  int rc = -1;
  if (!o || !lse || !tau || !kept || reference(t)) {
    snprintf(err, cap, "out of memory");
    goto done;
  }
  if (poison(t) || attn_task_run(t, k) || rt_sync(t->b)) {
    snprintf(err, cap, "%s", backend_error(t->b));
    goto done;
  }
  int got_o = download(t, "o", o, (size_t)n * 4);
  int got_kept = download(t, "kept", kept, (size_t)rows * 4);
  int got_lse = download(t, "lse", lse, (size_t)rows * 4);
  int got_tau = download(t, "tau", tau, (size_t)rows * 4);
  if (got_o < 0 || got_kept < 0 || got_lse < 0 || got_tau < 0) {
    snprintf(err, cap, "%s", backend_error(t->b));
    goto done;
  }
  if (got_o || got_kept) {
    snprintf(err, cap, "kernel %s has no o or kept parameter", k->info->name);
    goto done;
  }
  compare(t, o, kept, got_lse ? NULL : lse, got_tau ? NULL : tau, res);
  rc = 0;
done:
  free(o);
  free(lse);
  free(tau);
  free(kept);
  return rc;
}
