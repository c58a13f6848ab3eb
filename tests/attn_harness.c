/* Attention test/benchmark harness (see attn_harness.h). */
#include "attn_harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

Spec harness_spec(const char *name, SelectKind sel, int head_dim, int max_seq, bool causal,
                  int keep_min) {
  Spec s;
  spec_defaults(&s);
  snprintf(s.name, sizeof s.name, "%s", name);
  s.head_dim = head_dim;
  s.max_seq = max_seq;
  s.select = sel;
  s.causal = causal;
  s.keep_min = keep_min;
  return s;
}

static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size);
  if (!p)
    abort();
  return p;
}

uint64_t harness_seed(void) {
  const char *env = getenv("CRISP_SEED");
  uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)clock();
  printf("seed %llu (set CRISP_SEED to repeat)\n", (unsigned long long)seed);
  return seed;
}

double harness_uniform(uint64_t *s) {   /* splitmix64 -> [0, 1) */
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return (double)((z ^ (z >> 31)) >> 11) / 9007199254740992.0;
}

void attn_case_init(AttnCase *c, const Spec *s, int B, int H, int N, bool fused) {
  memset(c, 0, sizeof *c);
  c->spec = *s;
  c->fused = fused;
  int64_t D = s->head_dim;
  AttnLayout *l = &c->l;
  l->B = B, l->H = H, l->N = N;
  int64_t parts = fused ? 3 : 1;
  l->qkv_sh = D, l->qkv_sn = parts * H * D, l->qkv_sb = (int64_t)N * l->qkv_sn;
  l->o_sh = D, l->o_sn = H * D, l->o_sb = (int64_t)N * H * D;
  int64_t one = (int64_t)B * N * H * D;
  if (fused) {
    c->qkv_count = 3 * one;
    c->qkv = xcalloc((size_t)c->qkv_count, sizeof(float));
    c->q = c->qkv, c->k = c->qkv + H * D, c->v = c->qkv + 2 * H * D;
  } else {
    c->qkv_count = one;
    c->q = xcalloc((size_t)one, sizeof(float));
    c->k = xcalloc((size_t)one, sizeof(float));
    c->v = xcalloc((size_t)one, sizeof(float));
  }
  c->o_count = one;
  c->o = xcalloc((size_t)one, sizeof(float));
  int64_t rows = c->kept_count = (int64_t)B * H * N;
  c->kept = xcalloc((size_t)rows, sizeof(int32_t));
  float **per_row[] = {&c->lse, &c->tau, &c->entropy, &c->dense_entropy};
  for (int i = 0; i < 4; i++)
    *per_row[i] = xcalloc((size_t)rows, sizeof(float));
  c->tau_group = xcalloc((size_t)B * H, sizeof(float));
  c->tau_group_ref = xcalloc((size_t)B * H, sizeof(double));
  c->lengths = xcalloc((size_t)B, sizeof(int32_t));
  for (int b = 0; b < B; b++)
    c->lengths[b] = N;
}

void attn_case_free(AttnCase *c) {
  if (c->fused)
    free(c->qkv);
  else {
    free(c->q);
    free(c->k);
    free(c->v);
  }
  void *bufs[] = {c->o, c->kept, c->lse, c->tau, c->entropy, c->dense_entropy, c->tau_group,
                  c->tau_group_ref, c->lengths};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
    free(bufs[i]);
}

static float draw(uint64_t *rng, bool quantized) {
  double u = harness_uniform(rng) * 2 - 1;
  return quantized ? (float)(round(u * 4) / 4) : (float)u;
}

void attn_case_fill(AttnCase *c, uint64_t *rng, bool quantized) {
  const AttnLayout *l = &c->l;
  c->quantized = quantized;
  for (int b = 0; b < l->B; b++)
    for (int i = 0; i < l->N; i++)
      for (int h = 0; h < l->H; h++)
        for (int d = 0; d < c->spec.head_dim; d++) {
          int64_t at = b * l->qkv_sb + i * l->qkv_sn + h * l->qkv_sh + d;
          c->q[at] = draw(rng, quantized);
          c->k[at] = draw(rng, quantized);
          c->v[at] = draw(rng, false);
        }
}

void attn_case_poison(AttnCase *c) {
  for (int64_t i = 0; i < c->o_count; i++)
    c->o[i] = NAN;
  for (int64_t i = 0; i < c->kept_count; i++) {
    c->kept[i] = -7;
    c->lse[i] = c->tau[i] = c->entropy[i] = c->dense_entropy[i] = NAN;
  }
}

float harness_kernel_score(double s, int head_dim) {
  if (!isfinite(s))
    return (float)s;
  double dot = s * sqrt((double)head_dim);
  double q = nearbyint(dot * 16) / 16;   /* quantized q, k: dots are multiples of 1/16 */
  float scale = (float)(1.0 / sqrt((double)head_dim));
  return fabs(q - dot) < 1e-9 ? (float)q * scale : (float)s;
}

void attn_case_group_tau(AttnCase *c, double sparsity) {
  int g = attention_group_tau_ref(&c->spec, &c->l, c->q, c->k, c->lengths, sparsity,
                                  c->tau_group_ref);
  for (int i = 0; i < g; i++)
    c->tau_group[i] = harness_kernel_score(c->tau_group_ref[i], c->spec.head_dim);
}

void attn_args_run(AttnArgs *a, AttnCase *c, const AttnRun *r) {
  memset(a, 0, sizeof *a);
  const AttnLayout *l = &c->l;
  attn_case_group_tau(c, r->sparsity);
  void *ptrs[ATTN_B] = {c->q, c->k, c->v, c->o, c->lengths, c->kept, c->lse, c->tau,
                        c->entropy, c->dense_entropy, c->tau_group};
  float *base = c->fused ? c->qkv : NULL;
  int64_t rows = c->kept_count;
  int64_t counts[ATTN_B] = {c->qkv_count - (base ? c->q - base : 0),
                            c->qkv_count - (base ? c->k - base : 0),
                            c->qkv_count - (base ? c->v - base : 0),
                            c->o_count, l->B, rows, rows, rows, rows, rows,
                            (int64_t)l->B * l->H};
  int64_t ints[9] = {l->B, l->H, l->N, l->qkv_sb, l->qkv_sn, l->qkv_sh, l->o_sb, l->o_sn,
                     l->o_sh};
  for (int i = 0; i < ATTN_B; i++) {
    a->ptrs[i] = ptrs[i];
    a->args[i] = &a->ptrs[i];
    a->counts[i] = counts[i];
  }
  for (int i = 0; i < 9; i++) {
    a->ints[i] = (int32_t)ints[i];
    a->args[ATTN_B + i] = &a->ints[i];
  }
  a->sparsity = r->sparsity;
  a->dropout = r->dropout;
  a->seed = (int32_t)r->seed, a->step = (int32_t)r->step, a->layer = (int32_t)r->layer;
  a->stats = r->stats;
  a->args[ATTN_SPARSITY] = &a->sparsity;
  a->args[ATTN_DROPOUT] = &a->dropout;
  a->args[ATTN_SEED] = &a->seed;
  a->args[ATTN_STEP] = &a->step;
  a->args[ATTN_LAYER] = &a->layer;
  a->args[ATTN_STATS] = &a->stats;
}

void attn_args(AttnArgs *a, AttnCase *c, double sparsity) {
  attn_args_run(a, c, &(AttnRun){.sparsity = sparsity});
}

int harness_compile(Module *m, const Spec *s, const TileConfig *t, MapTarget target,
                    char *err, size_t cap) {
  if (tile_check(s, t, err, cap))
    return -1;
  m->kernels[m->n++] = attention_fwd_build(s, t);
  for (int i = 0; i < m->n; i++)
    if (ir_run_passes(m->kernels[i], target, err, cap))
      return -1;
  return 0;
}

void harness_run_jit(CpuKernelFn fn, Kernel *k, AttnArgs *a) {
  int32_t grid[3];
  ir_grid(k, a->args, grid);
  fn(a->args, grid, 0, (int64_t)grid[0] * grid[1] * grid[2]);
}

static double max_abs_v(const AttnCase *c) {
  const AttnLayout *l = &c->l;
  double mx = 1e-30;
  for (int b = 0; b < l->B; b++)
    for (int i = 0; i < l->N; i++)
      for (int h = 0; h < l->H; h++)
        for (int d = 0; d < c->spec.head_dim; d++)
          mx = fmax(mx, fabs(c->v[b * l->qkv_sb + i * l->qkv_sn + h * l->qkv_sh + d]));
  return mx;
}

/* max |x - ref| / max(|ref|, 1); a NaN in x sets *nan */
static double row_err(const float *x, const double *ref, int64_t n, bool *nan) {
  double err = 0;
  for (int64_t i = 0; i < n; i++) {
    if (isnan(x[i]))
      *nan = true;
    else if (x[i] != ref[i])   /* equal infinities are no error */
      err = fmax(err, fabs(x[i] - ref[i]) / fmax(fabs(ref[i]), 1.0));
  }
  return err;
}

static bool tau_equal(const AttnCase *c, float tau, double ref) {
  if (c->quantized || !isfinite(ref))
    return tau == harness_kernel_score(ref, c->spec.head_dim);
  return fabs(tau - ref) <= 1e-6 * fmax(fabs(ref), 1.0);
}

void attn_case_check(AttnCase *c, const AttnRun *r, AttnErr *e) {
  int64_t rows = c->kept_count;
  double *o = xcalloc((size_t)c->o_count, sizeof(double));
  double *per_row = xcalloc(5 * (size_t)rows, sizeof(double));
  int32_t *kept = xcalloc(2 * (size_t)rows, sizeof(int32_t));
  AttnFwdOut res = {o, per_row, per_row + rows, per_row + 2 * rows, per_row + 3 * rows,
                    kept, kept + rows};
  attn_case_group_tau(c, r->sparsity);
  AttnFwdArgs fa = {r->sparsity, c->tau_group_ref, r->dropout, r->seed, r->step, r->layer};
  attention_fwd_full_ref(&c->spec, &c->l, c->q, c->k, c->v, c->lengths, &fa, &res);
  memset(e, 0, sizeof *e);
  e->bad_row = -1;
  for (int64_t i = 0; i < c->o_count; i++) {
    if (isnan(c->o[i]))
      e->unwritten = true;
    else
      e->o = fmax(e->o, fabs(c->o[i] - o[i]));
  }
  e->o /= max_abs_v(c);
  e->lse = row_err(c->lse, res.lse, rows, &e->unwritten);
  if (r->stats & ATTN_STATS_ENTROPY)
    e->entropy = row_err(c->entropy, res.entropy, rows, &e->unwritten);
  if (r->stats & ATTN_STATS_DENSE_ENTROPY)
    e->dense_entropy = row_err(c->dense_entropy, res.dense_entropy, rows, &e->unwritten);
  e->kept_ok = e->tau_ok = true;
  for (int64_t i = 0; i < rows; i++) {
    bool k_ok = c->kept[i] == res.kept[i], t_ok = tau_equal(c, c->tau[i], res.tau[i]);
    if (isnan(c->tau[i]))
      e->unwritten = true;
    if ((!k_ok || !t_ok) && e->bad_row < 0)
      e->bad_row = i;
    e->kept_ok &= k_ok;
    e->tau_ok &= t_ok;
    e->dropped += res.dropped[i];
    e->kept_total += res.kept[i];
  }
  free(o);
  free(per_row);
  free(kept);
}

double attn_case_error(AttnCase *c, double sparsity, bool *kept_ok, bool *unwritten) {
  AttnErr e;
  attn_case_check(c, &(AttnRun){.sparsity = sparsity}, &e);
  *kept_ok = e.kept_ok;
  *unwritten = e.unwritten;
  return e.o;
}
