/* Attention test/benchmark harness (see attn_harness.h). */
#include "attn_harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
  c->kept_count = (int64_t)B * H * N;
  c->kept = xcalloc((size_t)c->kept_count, sizeof(int32_t));
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
  free(c->o);
  free(c->kept);
  free(c->lengths);
}

static float draw(uint64_t *rng, bool quantized) {
  double u = harness_uniform(rng) * 2 - 1;
  return quantized ? (float)(round(u * 4) / 4) : (float)u;
}

void attn_case_fill(AttnCase *c, uint64_t *rng, bool quantized) {
  const AttnLayout *l = &c->l;
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
  for (int64_t i = 0; i < c->kept_count; i++)
    c->kept[i] = -7;
}

void attn_args(AttnArgs *a, AttnCase *c, double sparsity) {
  memset(a, 0, sizeof *a);
  const AttnLayout *l = &c->l;
  void *ptrs[6] = {c->q, c->k, c->v, c->o, c->lengths, c->kept};
  int64_t counts[6] = {c->qkv_count - (c->q - (c->fused ? c->qkv : c->q)),
                       c->qkv_count - (c->k - (c->fused ? c->qkv : c->k)),
                       c->qkv_count - (c->v - (c->fused ? c->qkv : c->v)),
                       c->o_count, l->B, c->kept_count};
  int64_t ints[9] = {l->B, l->H, l->N, l->qkv_sb, l->qkv_sn, l->qkv_sh, l->o_sb, l->o_sn,
                     l->o_sh};
  for (int i = 0; i < 6; i++) {
    a->ptrs[i] = ptrs[i];
    a->args[i] = &a->ptrs[i];
    a->counts[i] = counts[i];
  }
  for (int i = 0; i < 9; i++) {
    a->ints[i] = (int32_t)ints[i];
    a->args[ATTN_B + i] = &a->ints[i];
  }
  a->sparsity = sparsity;
  a->args[ATTN_SPARSITY] = &a->sparsity;
}

int harness_compile(Module *m, const Spec *s, const TileConfig *t, MapTarget target,
                    char *err, size_t cap) {
  if (templates_build(s, t, m, err, cap))
    return -1;
  for (int i = 0; i < m->n; i++) {
    Kernel *k = m->kernels[i];
    if (ir_verify(k, err, cap) || ir_simplify(k, err, cap))
      return -1;
    if (target == MAP_NONE)
      continue;
    if (ir_map(k, target, err, cap) || ir_simplify(k, err, cap) || ir_verify(k, err, cap))
      return -1;
  }
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

double attn_case_error(AttnCase *c, double sparsity, bool *kept_ok, bool *unwritten) {
  double *ref = xcalloc((size_t)c->o_count, sizeof(double));
  int32_t *kept = xcalloc((size_t)c->kept_count, sizeof(int32_t));
  attention_fwd_ref(&c->spec, &c->l, c->q, c->k, c->v, c->lengths, sparsity, ref, kept);
  double err = 0;
  *unwritten = false;
  for (int64_t i = 0; i < c->o_count; i++) {
    if (isnan(c->o[i]))
      *unwritten = true;
    else
      err = fmax(err, fabs(c->o[i] - ref[i]));
  }
  *kept_ok = memcmp(kept, c->kept, (size_t)c->kept_count * sizeof(int32_t)) == 0;
  free(ref);
  free(kept);
  return err / max_abs_v(c);
}
