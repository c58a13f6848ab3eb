/* The select kernels' test harness (select_harness.h). */
#include "select_harness.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../compiler/lower.h"
#include "../templates/attention_select_impl.h"

int sel_compile(Module *m, const Spec *s, const TileConfig *t, MapTarget target, char *err,
                size_t cap) {
  if (attention_select_build(s, t, m, err, cap))
    return -1;
  for (int i = 0; i < m->n; i++)
    if (ir_run_passes(m->kernels[i], target, err, cap))
      return -1;
  return 0;
}

float sel_kernel_score(double s, int D) {
  if (isinf(s))
    return (float)s;
  double dot = round(s * sqrt((double)D) * 16) / 16;   /* exact: a multiple of 1/16 */
  return (float)dot * (float)(1.0 / sqrt((double)D));
}

void sel_args(SelArgs *a, AttnCase *c, double sparsity) {
  sel_args_cap(a, c, sparsity, attention_select_cand_cap(c->l.N));
}

void sel_args_cap(SelArgs *a, AttnCase *c, double sparsity, int cand_cap) {
  memset(a, 0, sizeof *a);
  const AttnLayout *l = &c->l;
  a->G = attention_select_groups(&c->spec, l->B, l->H);
  a->hist = malloc((size_t)a->G * SELECT_BINS * sizeof(int32_t));
  a->prefix = malloc((size_t)a->G * sizeof(int32_t));
  a->rank = malloc((size_t)a->G * sizeof(int32_t));
  a->tau = malloc((size_t)a->G * sizeof(float));
  if (!a->hist || !a->prefix || !a->rank || !a->tau)
    abort();
  for (int64_t i = 0; i < (int64_t)a->G * SELECT_BINS; i++)
    a->hist[i] = (int32_t)(i * 2654435761u);
  for (int g = 0; g < a->G; g++)
    a->prefix[g] = -12345, a->rank[g] = 777, a->tau[g] = NAN;
  const float *base = c->fused ? c->qkv : NULL;
  void *ptrs[SELECT_B] = {c->q, c->k, c->lengths, a->hist, a->prefix, a->rank, a->tau};
  int64_t counts[SELECT_B] = {c->qkv_count - (base ? c->q - base : 0),
                              c->qkv_count - (base ? c->k - base : 0), l->B,
                              (int64_t)a->G * SELECT_BINS, a->G, a->G, a->G};
  int64_t ints[6] = {l->B, l->H, l->N, l->qkv_sb, l->qkv_sn, l->qkv_sh};
  for (int i = 0; i < SELECT_B; i++) {
    a->ptrs[i] = ptrs[i];
    a->args[i] = &a->ptrs[i];
    a->counts[i] = counts[i];
  }
  for (int i = 0; i < 6; i++) {
    a->ints[i] = (int32_t)ints[i];
    a->args[SELECT_B + i] = &a->ints[i];
  }
  a->sparsity = sparsity;
  a->args[SELECT_SPARSITY] = &a->sparsity;
  a->args[SELECT_ROUND] = &a->round;
  /* the tile schedule's candidates (the warp schedule's kernels ignore the extra args) */
  a->cand_cap = cand_cap;
  int64_t nc = attention_select_cand_len(l->B, l->H, cand_cap);
  if (!(a->cand = malloc((size_t)nc * sizeof(int32_t))))
    abort();
  for (int64_t i = 0; i < nc; i++)
    a->cand[i] = (int32_t)(i * 40503u + 977);
  a->ptrs[SELECT_B] = a->cand;
  a->args[SELECT_CAND] = &a->ptrs[SELECT_B];
  a->counts[SELECT_CAND] = nc;
  a->args[SELECT_CAND_CAP] = &a->cand_cap;
}

void sel_args_free(SelArgs *a) {
  free(a->hist), free(a->prefix), free(a->rank), free(a->tau), free(a->cand);
}

typedef struct {
  CpuKernelFn fn;
  void **args;
  const int32_t *grid;
  int64_t first, last;
} Range;

static void *run_range(void *p) {
  Range *r = p;
  r->fn(r->args, r->grid, r->first, r->last);
  return NULL;
}

void sel_trace_init(SelTrace *t, int G) {
  memset(t, 0, sizeof *t);
  t->G = G;
  t->after_sample = malloc((size_t)G * sizeof(int32_t));
  t->after_bracket = malloc((size_t)G * sizeof(int32_t));
  if (!t->after_sample || !t->after_bracket)
    abort();
  for (int g = 0; g < G; g++)
    t->after_sample[g] = t->after_bracket[g] = 12345;   /* no pick ran */
}

void sel_trace_free(SelTrace *t) { free(t->after_sample), free(t->after_bracket); }

void sel_trace_record(SelTrace *t, SelectKernel which, void **args) {
  if (!t)
    return;
  t->launches[which]++;
  int32_t round = *(int32_t *)args[SELECT_ROUND];
  if (which != SELECT_KERNEL_PICK ||
      (round != SELECT_ROUND_SAMPLE && round != SELECT_ROUND_BRACKET))
    return;
  t->early_picks++;
  memcpy(round == SELECT_ROUND_SAMPLE ? t->after_sample : t->after_bracket,
         *(int32_t **)args[SELECT_RANK], (size_t)t->G * sizeof(int32_t));
}

SelPath sel_trace_path(const SelTrace *t, int g) {
  return t->after_sample[g] == SELECT_DONE    ? PATH_SAMPLE
         : t->after_bracket[g] == SELECT_DONE ? PATH_BRACKET
                                              : PATH_RADIX;
}

void sel_trace_count(SelTrace *t) {
  memset(t->count, 0, sizeof t->count);
  for (int g = 0; g < t->G; g++)
    t->count[sel_trace_path(t, g)]++;
}

/* hist: the blocks on two threads at once (global atomics); the others on this one */
static int launch_jit(void *ctx, SelectKernel which, Kernel *k, void **args,
                      const int32_t grid[3]) {
  (void)k;
  SelHost *h = ctx;
  CpuKernelFn fn = h->fn[which];
  int64_t total = (int64_t)grid[0] * grid[1] * grid[2];
  if (which != SELECT_KERNEL_HIST || total < 2) {
    fn(args, grid, 0, total);
    sel_trace_record(h->trace, which, args);
    return 0;
  }
  Range r[2] = {{fn, args, grid, 0, total / 2}, {fn, args, grid, total / 2, total}};
  pthread_t t;
  if (pthread_create(&t, NULL, run_range, &r[1]))
    return -1;
  run_range(&r[0]);
  pthread_join(t, NULL);
  sel_trace_record(h->trace, which, args);
  return 0;
}

int sel_host_compile(SelHost *h, const Spec *s, const TileConfig *t, char *err, size_t cap) {
  memset(h, 0, sizeof *h);
  h->spec = *s;
  if (sel_compile(&h->m, s, t, MAP_CPU, err, cap) || !(h->jit = jit_compile(&h->m, err, cap))) {
    ir_module_free(&h->m);
    return -1;
  }
  for (int w = 0; w < SELECT_NKERNELS; w++)
    if (!(h->fn[w] = jit_lookup(h->jit, h->m.kernels[w]->name))) {
      snprintf(err, cap, "%s not found in the JIT", h->m.kernels[w]->name);
      sel_host_free(h);
      return -1;
    }
  return 0;
}

void sel_host_free(SelHost *h) {
  jit_free(h->jit);
  ir_module_free(&h->m);
  memset(h, 0, sizeof *h);
}

SelectPlanKind sel_host_plan_kind(const SelHost *h, const SelArgs *a) {
  bool tile = ir_param_index(h->m.kernels[SELECT_KERNEL_HIST], "cand") >= 0;
  switch (h->plan) {
  case SEL_PLAN_BY_LENGTH:
    return attention_select_plan_kind(&h->spec, tile, a->ints[0], a->ints[1], a->ints[2],
                                      a->sparsity);
  case SEL_PLAN_BRACKET: return SELECT_PLAN_BRACKET;
  default: return SELECT_PLAN_RADIX;
  }
}

int sel_host_run(SelHost *h, SelArgs *a) {
  if (h->plan == SEL_PLAN_BY_LENGTH)
    return attention_select_run(h->m.kernels, &h->spec, a->args, launch_jit, h);
  return attention_select_run_plan(h->m.kernels, a->args, sel_host_plan_kind(h, a), launch_jit,
                                   h);
}
