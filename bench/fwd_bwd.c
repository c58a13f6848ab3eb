/* See fwd_bwd.h. Moved out of bench_backward.c so that bench_vs_torch times exactly
 * the same code. */
#include "fwd_bwd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* BENCH_CLOCK=cpu: the process's CPU time (all threads) instead of the wall clock.
 * Kernels run on threads of their own, which never wait for one another, so CPU time
 * is the work done, and is what a before/after comparison can still resolve on a
 * loaded machine, where wall time doubles with the load (it is threads x wall on a
 * quiet one). */
double bench_now(void) {
  static int cpu = -1;
  if (cpu < 0) {
    const char *e = getenv("BENCH_CLOCK");
    cpu = e && !strcmp(e, "cpu");
  }
  struct timespec t;
  clock_gettime(cpu ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double bench_median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void *bench_xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size);
  if (!p)
    abort();
  return p;
}

/* ---- running a kernel (or the naive code) on the pool ----
 * On the benchmark's RtPool, made once with its threads, so a launch costs what it
 * costs the cpu backend (no thread creation). Each launch is split evenly into one
 * contiguous part per thread, as before the pool: the cpu backend's dynamic chunks
 * (total / (8 * threads) from the pool's counter, cpu_launch) measured 9-20 % more
 * process CPU time here (docs/benchmarks.md). The naive code splits the batch the same
 * way. */

typedef struct {
  CpuKernelFn fn;   /* NULL: the naive code */
  void **args;
  int32_t grid[3];
  const NaiveAttn *naive;
  int parts;
} Launch;

static void launch_parts(void *ctx, int64_t first, int64_t last) {
  const Launch *l = ctx;
  int64_t total = l->fn ? (int64_t)l->grid[0] * l->grid[1] * l->grid[2] : l->naive->B;
  for (int64_t part = first; part < last; part++) {
    int64_t lo = total * part / l->parts, hi = total * (part + 1) / l->parts;
    if (l->fn)
      l->fn(l->args, l->grid, lo, hi);
    else
      naive_attention_fwd_bwd(l->naive, (int)lo, (int)hi);
  }
}

static void launch(const BenchKernels *ks, CpuKernelFn fn, Kernel *k, void **args,
                   const NaiveAttn *naive) {
  Launch l = {fn, args, {0, 0, 0}, naive, ks->threads};
  if (fn)
    ir_grid(k, args, l.grid);
  rt_pool_run(ks->pool, ks->threads, 1, launch_parts, &l);
}

/* ---- the compiled kernels ---- */

static int pipeline(Module *m, char *err, size_t cap) {
  for (int i = 0; i < m->n; i++)
    if (ir_run_passes(m->kernels[i], MAP_CPU, err, cap))
      return -1;
  return 0;
}

void bench_kernels_free(BenchKernels *ks) {
  jit_free(ks->fj);
  jit_free(ks->bj);
  jit_free(ks->sj);
  rt_pool_free(ks->pool);
  ir_module_free(&ks->fm);
  ir_module_free(&ks->bm);
  ir_module_free(&ks->sm);
  memset(ks, 0, sizeof *ks);
}

/* attention_select_run's launcher: one select kernel over every core */
static int select_launch(void *ctx, SelectKernel which, Kernel *k, void **args,
                         const int32_t grid[3]) {
  BenchKernels *ks = ctx;
  (void)grid;
  launch(ks, ks->sel[which], k, args, NULL);
  return 0;
}

bool bench_warp_schedule;
int bench_max_seq;
int bench_head_dim;

int bench_kernels_compile(BenchKernels *ks, SelectKind select, int threads, char *err,
                          size_t cap) {
  memset(ks, 0, sizeof *ks);
  ks->threads = threads;
  int spin_us;
  if (rt_pool_spin_env(&spin_us, err, cap))
    return -1;
  if (!(ks->pool = rt_pool_new(threads))) {
    snprintf(err, cap, "cannot start a pool of %d threads", threads);
    return -1;
  }
  if (spin_us >= 0)
    rt_pool_set_spin_us(ks->pool, spin_us);
  Spec *s = &ks->spec;
  spec_defaults(s);
  snprintf(s->name, sizeof s->name, "bench");
  s->select = select;
  s->backward = true;
  if (bench_max_seq > 0)
    s->max_seq = bench_max_seq;
  if (bench_head_dim > 0)
    s->head_dim = bench_head_dim;
  s->dropout = 0.1;   /* as in training; the rate itself is a run-time argument */
  TileConfig t = tile_resolve(s, TUNE_CPU);
  if (bench_warp_schedule)
    t = (TileConfig){16, 1, SCHED_WARP_HOST};
  if (harness_compile(&ks->fm, s, &t, MAP_CPU, err, cap) ||
      !(ks->fj = jit_compile(&ks->fm, err, cap)))
    return -1;
  if (attention_bwd_build(s, &t, &ks->bm, err, cap) || pipeline(&ks->bm, err, cap) ||
      !(ks->bj = jit_compile(&ks->bm, err, cap)))
    return -1;
  if (attention_select_build(s, &t, &ks->sm, err, cap) || pipeline(&ks->sm, err, cap))
    return -1;
  if (ks->sm.n) {
    if (!(ks->sj = jit_compile(&ks->sm, err, cap)))
      return -1;
    for (int i = 0; i < SELECT_NKERNELS; i++)
      if (!(ks->sel[i] = jit_lookup(ks->sj, ks->sm.kernels[i]->name))) {
        snprintf(err, cap, "select kernel %s not found in the JIT", ks->sm.kernels[i]->name);
        return -1;
      }
  }
  ks->fwd = jit_lookup(ks->fj, ks->fm.kernels[0]->name);
  bool found = ks->fwd && ks->bm.n <= 2;
  for (int i = 0; found && i < ks->bm.n; i++)
    found = (ks->bwd[i] = jit_lookup(ks->bj, ks->bm.kernels[i]->name)) != NULL;
  if (!found) {
    snprintf(err, cap, "a forward or backward kernel is missing from the JIT");
    return -1;
  }
  return 0;
}

/* ---- one shape ---- */

static double max_rel_diff(const float *x, const float *y, int64_t n) {
  double d = 0, m = 1e-30;
  for (int64_t i = 0; i < n; i++) {
    d = fmax(d, fabs((double)x[i] - y[i]));
    m = fmax(m, fabs(y[i]));
  }
  return d / m;
}

/* backward kernel arguments: q/k/v, o, dout, the forward's per-row statistics, and
 * the gradients fused [B, N, 3, H, D] like q/k/v */
static void bwd_args(BenchShape *sh) {
  AttnCase *c = &sh->c;
  const AttnLayout *l = &c->l;
  int64_t HD = (int64_t)l->H * c->spec.head_dim;
  void *ptrs[12] = {c->q, c->k, c->v, c->o, sh->dout, c->lse, c->tau, c->lengths, sh->delta,
                    sh->grad, sh->grad + HD, sh->grad + 2 * HD};
  int32_t ints[16] = {l->B, l->H, l->N, (int32_t)l->qkv_sb, (int32_t)l->qkv_sn,
                      (int32_t)l->qkv_sh, (int32_t)l->o_sb, (int32_t)l->o_sn,
                      (int32_t)l->o_sh, (int32_t)l->qkv_sb, (int32_t)l->qkv_sn,
                      (int32_t)l->qkv_sh, 0, 1234, 7, 2};
  memcpy(sh->ptrs, ptrs, sizeof ptrs);
  memcpy(sh->ints, ints, sizeof ints);
  for (int i = 0; i < 12; i++)
    sh->ba[i] = &sh->ptrs[i];
  for (int i = 0; i < 12; i++)
    sh->ba[ATTN_BWD_B + i] = &sh->ints[i];
  sh->ba[ATTN_BWD_DROPOUT] = &sh->p;
  sh->ba[ATTN_BWD_SEED] = &sh->ints[13];
  sh->ba[ATTN_BWD_STEP] = &sh->ints[14];
  sh->ba[ATTN_BWD_LAYER] = &sh->ints[15];
}

/* quantile modes: the select kernels write tau_group (G = B*H or 1) first */
static void select_args(BenchShape *sh, const Spec *s) {
  AttnCase *c = &sh->c;
  sh->G = attention_select_groups(s, c->l.B, c->l.H);
  int g = sh->G ? sh->G : 1;
  sh->hist = bench_xcalloc((size_t)g * SELECT_BINS, sizeof(int32_t));
  sh->prefix = bench_xcalloc((size_t)g, sizeof(int32_t));
  sh->rank = bench_xcalloc((size_t)g, sizeof(int32_t));
  /* the tile schedule's candidates (the warp schedule's kernels ignore the extra args) */
  sh->cand_cap = attention_select_cand_cap(c->l.N);
  sh->cand = bench_xcalloc((size_t)attention_select_cand_len(c->l.B, c->l.H, sh->cand_cap),
                           sizeof(int32_t));
  void *sp_ptrs[8] = {c->q, c->k, c->lengths, sh->hist, sh->prefix, sh->rank, c->tau_group,
                      sh->cand};
  memcpy(sh->sp_ptrs, sp_ptrs, sizeof sp_ptrs);
  for (int i = 0; i < 7; i++)
    sh->sa[i] = &sh->sp_ptrs[i];
  for (int i = 0; i < 6; i++)
    sh->sa[SELECT_B + i] = &sh->ints[i];
  sh->sa[SELECT_SPARSITY] = &sh->spv;
  sh->sa[SELECT_ROUND] = &sh->round;
  sh->sa[SELECT_CAND] = &sh->sp_ptrs[7];
  sh->sa[SELECT_CAND_CAP] = &sh->cand_cap;
}

void bench_shape_init(BenchShape *sh, const BenchKernels *ks, const BenchShapeOpts *o,
                      uint64_t rng) {
  const Spec *s = &ks->spec;
  memset(sh, 0, sizeof *sh);
  sh->opt = *o;
  AttnCase *c = &sh->c;
  attn_case_init(c, s, o->B, o->H, o->n, true);
  attn_case_fill(c, &rng, o->quantized);
  const AttnLayout *l = &c->l;
  AttnRun run = {.sparsity = o->sparsity, .dropout = o->dropout, .seed = 1234, .step = 7,
                 .layer = 2};
  attn_args_run(&sh->fa, c, &run);
  sh->dout = bench_xcalloc((size_t)c->o_count, sizeof(float));
  for (int64_t i = 0; i < c->o_count; i++)
    sh->dout[i] = (float)(harness_uniform(&rng) * 2 - 1);
  sh->delta = bench_xcalloc((size_t)c->kept_count, sizeof(float));
  sh->grad = bench_xcalloc((size_t)c->qkv_count, sizeof(float));
  sh->ngrad = bench_xcalloc((size_t)c->qkv_count, sizeof(float));
  sh->no = bench_xcalloc((size_t)c->o_count, sizeof(float));
  sh->p = o->dropout;
  sh->spv = o->sparsity;
  bwd_args(sh);
  select_args(sh, s);
  int64_t HD = (int64_t)o->H * s->head_dim;
  sh->na = (NaiveAttn){c->q, c->k, c->v, sh->dout, sh->no, sh->ngrad, sh->ngrad + HD,
                       sh->ngrad + 2 * HD, c->lengths, o->B, o->H, o->n, s->head_dim,
                       l->qkv_sb, l->qkv_sn, l->qkv_sh, l->o_sb, l->o_sn, l->o_sh,
                       o->sparsity,
                       s->select == SEL_HEAD_QUANTILE ? 2 : s->select == SEL_ROW_TOPK,
                       o->dropout, 1234, 7, 2};
}

void bench_shape_run(BenchShape *sh, BenchKernels *ks, int r) {
  double t0 = bench_now();
  if (sh->G)
    attention_select_run(ks->sm.kernels, &ks->spec, sh->sa, select_launch, ks);
  double ts = bench_now();
  launch(ks, ks->fwd, ks->fm.kernels[0], sh->fa.args, NULL);
  double t1 = bench_now();
  for (int i = 0; i < ks->bm.n; i++)   /* the tile schedule's one, or dq then dkdv */
    launch(ks, ks->bwd[i], ks->bm.kernels[i], sh->ba, NULL);
  double t2 = bench_now();
  if (sh->opt.naive)
    launch(ks, NULL, NULL, NULL, &sh->na);
  double t3 = bench_now();
  if (r >= 0 && r < BENCH_MAX_REPS)
    sh->tf[r] = t1 - t0, sh->tb[r] = t2 - t1, sh->tt[r] = t2 - t0, sh->tn[r] = t3 - t2,
    sh->ts[r] = ts - t0;
}

BenchResult bench_shape_result(BenchShape *sh, int reps) {
  AttnCase *c = &sh->c;
  int n = c->l.N, H = c->l.H;
  bool nv = sh->opt.naive;
  BenchResult res = {bench_median(sh->tf, reps), bench_median(sh->tb, reps),
                     bench_median(sh->tt, reps), nv ? bench_median(sh->tn, reps) : NAN,
                     nv ? max_rel_diff(c->o, sh->no, c->o_count) : NAN,
                     nv ? max_rel_diff(sh->grad, sh->ngrad, c->qkv_count) : NAN, 0, NAN, 0};
  res.select = bench_median(sh->ts, reps);
  double kept = 0, valid = 0;
  for (int64_t r = 0; r < c->kept_count; r++) {
    int L = c->lengths[r / ((int64_t)H * n)];
    kept += c->kept[r];
    valid += (r % n) < L ? L : 0;
  }
  res.kept = kept / valid;
  int radix = 0;
  for (int g = 0; g < sh->G; g++)
    radix += sh->rank[g] >= 0;
  res.radix = sh->G ? (double)radix / sh->G : NAN;
  return res;
}

void bench_shape_free(BenchShape *sh) {
  void *p[] = {sh->hist,  sh->prefix, sh->rank,  sh->cand, sh->dout,
               sh->delta, sh->grad,   sh->ngrad, sh->no};
  for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
    free(p[i]);
  attn_case_free(&sh->c);
}
