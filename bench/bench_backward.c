/* Benchmark: crisp attention forward + backward on the CPU, JIT-compiled, against
 * the straightforward C version (naive_backward.c, -O3 -march=native), both in this
 * run, on the same threads and inputs; median of several repetitions, interleaved.
 * B = 16, H = 12, D = 64, dropout 0.1 (as in training), select = row_topk, then
 * head_quantile (its select kernels' time counted in the forward's).
 * GFLOP/s count 12 n^2 d per head (fwd 4, bwd 8: the dense count, whatever is kept).
 * The "sparsity that pays" figure is each s's time over the s = 0 time, measured in
 * the same run: the backward recomputes every score but does the rest (dO.V, P.dO,
 * dS.K, dS.Q) on kept pairs only. Before the table, one shape with q, k multiples of
 * 1/4 (exact scores, so both sides keep the same keys) checks that the two compute the
 * same gradients.
 *
 *   bench_backward [--quick] [--reps N] [--n N] [--s S1,S2,...] [--threads T] [--no-naive]
 *                  [--warp]
 * --warp compiles the warp-per-row schedule (tile 16 x 1, the GPU's) instead of the CPU
 * tile schedule that tile = auto picks on the host: the before/after comparison.
 * --n / --s replace the lengths (64, 128, 512) and sparsities (0, 0.6, 0.8); the first
 * sparsity is the base of the ratios.                                           */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../templates/attention_bwd.h"
#include "../templates/attention_select.h"
#include "../tests/attn_harness.h"
#include "naive_backward.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size);
  if (!p)
    abort();
  return p;
}

/* ---- running a kernel (or the naive code) on every core ---- */

typedef struct {
  CpuKernelFn fn;     /* NULL: the naive code */
  Kernel *k;
  void **args;
  const NaiveAttn *naive;
  int part, parts;
} Job;

static void *job_run(void *p) {
  Job *j = p;
  if (j->fn) {
    int32_t grid[3];
    ir_grid(j->k, j->args, grid);
    int64_t total = (int64_t)grid[0] * grid[1] * grid[2];
    j->fn(j->args, grid, total * j->part / j->parts, total * (j->part + 1) / j->parts);
  } else {
    int B = j->naive->B;
    naive_attention_fwd_bwd(j->naive, B * j->part / j->parts, B * (j->part + 1) / j->parts);
  }
  return NULL;
}

static void parallel(Job proto, int threads) {
  pthread_t tid[64];
  Job jobs[64];
  for (int i = 0; i < threads; i++) {
    jobs[i] = proto;
    jobs[i].part = i;
    jobs[i].parts = threads;
    pthread_create(&tid[i], NULL, job_run, &jobs[i]);
  }
  for (int i = 0; i < threads; i++)
    pthread_join(tid[i], NULL);
}

/* ---- the compiled kernels ---- */

static bool warp_sched;   /* --warp: the warp-per-row schedule */

typedef struct Kernels {
  Module fm, bm, sm;                   /* forward, backward, select (quantile modes) */
  Jit *fj, *bj, *sj;
  CpuKernelFn fwd, dq, dkdv, sel[SELECT_NKERNELS];
  int threads;
} Kernels;

static int pipeline(Module *m, char *err, size_t cap) {
  for (int i = 0; i < m->n; i++) {
    Kernel *k = m->kernels[i];
    if (ir_verify(k, err, cap) || ir_simplify(k, err, cap) || ir_map(k, MAP_CPU, err, cap) ||
        ir_simplify(k, err, cap) || ir_verify(k, err, cap))
      return -1;
  }
  return 0;
}

static void kernels_free(Kernels *ks) {
  jit_free(ks->fj);
  jit_free(ks->bj);
  jit_free(ks->sj);
  ir_module_free(&ks->fm);
  ir_module_free(&ks->bm);
  ir_module_free(&ks->sm);
}

/* attention_select_run's launcher: one select kernel over every core */
static int select_launch(void *ctx, SelectKernel which, Kernel *k, void **args,
                         const int32_t grid[3]) {
  Kernels *ks = ctx;
  (void)grid;
  parallel((Job){ks->sel[which], k, args, NULL, 0, 1}, ks->threads);
  return 0;
}

static int compile_all(Kernels *ks, const Spec *s, char *err, size_t cap) {
  memset(ks, 0, sizeof *ks);
  TileConfig t = tile_resolve(s, TUNE_CPU);
  if (warp_sched)
    t = (TileConfig){16, 1, SCHED_WARP};
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
      if (!(ks->sel[i] = jit_lookup(ks->sj, ks->sm.kernels[i]->name)))
        return -1;
  }
  ks->fwd = jit_lookup(ks->fj, ks->fm.kernels[0]->name);
  ks->dq = jit_lookup(ks->bj, ks->bm.kernels[0]->name);
  ks->dkdv = jit_lookup(ks->bj, ks->bm.kernels[1]->name);
  return ks->fwd && ks->dq && ks->dkdv ? 0 : -1;
}

/* ---- one shape ---- */

typedef struct {
  double fwd, bwd, total, naive;   /* medians, seconds */
  double diff;                     /* max |crisp - naive| / max |naive| over dq, dk, dv */
  double kept;                     /* kept keys / valid keys, from the forward's counts */
} Result;

static double max_rel_diff(const float *x, const float *y, int64_t n) {
  double d = 0, m = 1e-30;
  for (int64_t i = 0; i < n; i++) {
    d = fmax(d, fabs((double)x[i] - y[i]));
    m = fmax(m, fabs(y[i]));
  }
  return d / m;
}

/* One shape and sparsity: inputs, outputs and both kernels' argument arrays. The
 * struct points into itself: initialise it in place and do not move it. */
typedef struct {
  AttnCase c;
  AttnArgs fa;
  float *dout, *delta, *grad, *ngrad, *no;
  int32_t *hist, *prefix, *rank;
  int G;                     /* select groups (quantile modes), else 0 */
  void *ptrs[12], *sp_ptrs[7];
  int32_t ints[16], round;
  float p;
  double spv;
  void *ba[ATTN_BWD_NPARAMS], *sa[SELECT_NPARAMS];
  NaiveAttn na;
  double tf[32], tb[32], tt[32], tn[32];
} Shape;

/* quantized: q, k multiples of 1/4, so both implementations' f32 scores are exact and
 * their kept sets agree (the diff is then pure f32 rounding). rng: copied, so shapes
 * made from one state share their inputs. */
static void shape_init(Shape *sh, const Spec *s, int n, double sp, uint64_t rng,
                       bool quantized) {
  const int B = 16, H = 12, D = s->head_dim;
  memset(sh, 0, sizeof *sh);
  AttnCase *c = &sh->c;
  attn_case_init(c, s, B, H, n, true);
  attn_case_fill(c, &rng, quantized);
  const AttnLayout *l = &c->l;
  AttnRun run = {.sparsity = sp, .dropout = 0.1f, .seed = 1234, .step = 7, .layer = 2};
  attn_args_run(&sh->fa, c, &run);

  /* backward buffers: dout, delta; gradients fused [B, N, 3, H, D] like q/k/v */
  sh->dout = xcalloc((size_t)c->o_count, sizeof(float));
  for (int64_t i = 0; i < c->o_count; i++)
    sh->dout[i] = (float)(harness_uniform(&rng) * 2 - 1);
  sh->delta = xcalloc((size_t)c->kept_count, sizeof(float));
  sh->grad = xcalloc((size_t)c->qkv_count, sizeof(float));
  sh->ngrad = xcalloc((size_t)c->qkv_count, sizeof(float));
  sh->no = xcalloc((size_t)c->o_count, sizeof(float));
  int64_t HD = (int64_t)H * D;
  void *ptrs[12] = {c->q, c->k, c->v, c->o, sh->dout, c->lse, c->tau, c->lengths, sh->delta,
                    sh->grad, sh->grad + HD, sh->grad + 2 * HD};
  int32_t ints[16] = {B, H, n, (int32_t)l->qkv_sb, (int32_t)l->qkv_sn, (int32_t)l->qkv_sh,
                      (int32_t)l->o_sb, (int32_t)l->o_sn, (int32_t)l->o_sh, (int32_t)l->qkv_sb,
                      (int32_t)l->qkv_sn, (int32_t)l->qkv_sh, 0, 1234, 7, 2};
  memcpy(sh->ptrs, ptrs, sizeof ptrs);
  memcpy(sh->ints, ints, sizeof ints);
  sh->p = run.dropout;
  for (int i = 0; i < 12; i++)
    sh->ba[i] = &sh->ptrs[i];
  for (int i = 0; i < 12; i++)
    sh->ba[ATTN_BWD_B + i] = &sh->ints[i];
  sh->ba[ATTN_BWD_DROPOUT] = &sh->p;
  sh->ba[ATTN_BWD_SEED] = &sh->ints[13];
  sh->ba[ATTN_BWD_STEP] = &sh->ints[14];
  sh->ba[ATTN_BWD_LAYER] = &sh->ints[15];

  /* quantile modes: the select kernels write tau_group (G = B*H or 1) first */
  sh->G = attention_select_groups(s, B, H);
  int g = sh->G ? sh->G : 1;
  sh->hist = xcalloc((size_t)g * SELECT_BINS, sizeof(int32_t));
  sh->prefix = xcalloc((size_t)g, sizeof(int32_t));
  sh->rank = xcalloc((size_t)g, sizeof(int32_t));
  void *sp_ptrs[7] = {c->q, c->k, c->lengths, sh->hist, sh->prefix, sh->rank, c->tau_group};
  memcpy(sh->sp_ptrs, sp_ptrs, sizeof sp_ptrs);
  sh->spv = sp;
  for (int i = 0; i < 7; i++)
    sh->sa[i] = &sh->sp_ptrs[i];
  for (int i = 0; i < 6; i++)
    sh->sa[SELECT_B + i] = &sh->ints[i];
  sh->sa[SELECT_SPARSITY] = &sh->spv;
  sh->sa[SELECT_ROUND] = &sh->round;

  sh->na = (NaiveAttn){c->q, c->k, c->v, sh->dout, sh->no, sh->ngrad, sh->ngrad + HD,
                       sh->ngrad + 2 * HD, c->lengths, B, H, n, D, l->qkv_sb, l->qkv_sn,
                       l->qkv_sh, l->o_sb, l->o_sn, l->o_sh, sp,
                       s->select == SEL_HEAD_QUANTILE ? 2 : s->select == SEL_ROW_TOPK,
                       run.dropout, 1234, 7, 2};
}

/* One repetition (r < 0: a warm-up, not recorded): crisp select + forward, backward,
 * then the naive version. */
static bool skip_naive;

static void shape_run(Shape *sh, Kernels *ks, int threads, int r) {
  Job fwd = {ks->fwd, ks->fm.kernels[0], sh->fa.args, NULL, 0, 1};
  Job dq = {ks->dq, ks->bm.kernels[0], sh->ba, NULL, 0, 1};
  Job dkdv = {ks->dkdv, ks->bm.kernels[1], sh->ba, NULL, 0, 1};
  Job naive = {NULL, NULL, NULL, &sh->na, 0, 1};
  double t0 = now();
  if (sh->G)
    attention_select_run(ks->sm.kernels, sh->sa, select_launch, ks);
  parallel(fwd, threads);
  double t1 = now();
  parallel(dq, threads);
  parallel(dkdv, threads);
  double t2 = now();
  if (!skip_naive)
    parallel(naive, threads);
  double t3 = now();
  if (r >= 0)
    sh->tf[r] = t1 - t0, sh->tb[r] = t2 - t1, sh->tt[r] = t2 - t0, sh->tn[r] = t3 - t2;
}

static Result shape_result(Shape *sh, int reps) {
  AttnCase *c = &sh->c;
  int n = c->l.N, H = c->l.H;
  Result res = {median(sh->tf, reps), median(sh->tb, reps), median(sh->tt, reps),
                median(sh->tn, reps), max_rel_diff(sh->grad, sh->ngrad, c->qkv_count), 0};
  double kept = 0, valid = 0;
  for (int64_t r = 0; r < c->kept_count; r++) {
    int L = c->lengths[r / ((int64_t)H * n)];
    kept += c->kept[r];
    valid += (r % n) < L ? L : 0;
  }
  res.kept = kept / valid;
  return res;
}

static void shape_free(Shape *sh) {
  void *p[] = {sh->hist, sh->prefix, sh->rank, sh->dout, sh->delta, sh->grad, sh->ngrad, sh->no};
  for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
    free(p[i]);
  attn_case_free(&sh->c);
}

int main(int argc, char **argv) {
  int reps = 5, nn = 3, nsp = 3, threads_arg = 0;
  int ns[8] = {64, 128, 512};
  double sps[8] = {0.0, 0.6, 0.8};
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--quick"))
      nn = 2, reps = 3;
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
      reps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
      threads_arg = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--no-naive"))
      skip_naive = true;
    else if (!strcmp(argv[i], "--warp"))
      warp_sched = true;
    else if (!strcmp(argv[i], "--n") && i + 1 < argc)
      ns[0] = atoi(argv[++i]), nn = 1;
    else if (!strcmp(argv[i], "--s") && i + 1 < argc) {
      char *p = argv[++i];
      for (nsp = 0; nsp < 8 && *p; nsp++) {
        sps[nsp] = strtod(p, &p);
        p += *p == ',';
      }
    }
  }
  for (int i = 0; i < nn; i++)
    if (ns[i] < 1 || ns[i] > 512) {
      fprintf(stderr, "bench_backward: --n must be 1..512\n");
      return 2;
    }
  reps = reps < 1 ? 1 : reps > 31 ? 31 : reps;
  int threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (threads_arg > 0)
    threads = threads_arg;
  threads = threads < 1 ? 1 : threads > 64 ? 64 : threads;
  uint64_t rng = harness_seed();

  static const SelectKind modes[] = {SEL_ROW_TOPK, SEL_HEAD_QUANTILE};
  for (int mi = 0; mi < 2; mi++) {
    Spec s;
    spec_defaults(&s);
    snprintf(s.name, sizeof s.name, "bench");
    s.select = modes[mi];
    s.backward = true;
    s.dropout = 0.1;
    Kernels ks;
    char err[1024];
    double t0 = now();
    if (compile_all(&ks, &s, err, sizeof err)) {
      fprintf(stderr, "bench_backward: %s: %s\n", select_name(s.select), err);
      kernels_free(&ks);
      return 1;
    }
    ks.threads = threads;
    printf("\n%s: JIT compile of %d kernels (forward, 2 backward, %d select): %.1f ms\n",
           select_name(s.select), 3 + ks.sm.n, ks.sm.n, (now() - t0) * 1e3);
    Shape *chs = xcalloc(1, sizeof *chs);
    shape_init(chs, &s, 128, 0.8, rng, true);
    shape_run(chs, &ks, threads, 0);
    Result chk = shape_result(chs, 1);
    shape_free(chs);
    free(chs);
    printf("check: n=128 s=0.8, q and k multiples of 1/4 (exact scores): crisp vs naive "
           "gradients max|diff| / max|naive| = %.2g\n", chk.diff);
    printf("attention forward + backward, %s, B=16 H=12 D=64, dropout 0.1, %d threads, median "
           "of %d\n(ms; GF/s counts 12 n^2 d per head; 'vs s=%g': time over the s = %g time of "
           "the same n, in this run%s; kept: fraction of valid keys the forward kept)\n", select_name(s.select), threads, reps, sps[0], sps[0],
           ks.sm.n ? "; fwd includes the select kernels" : "");
    printf("    n     s   fwd ms   bwd ms  crisp ms  naive ms  crisp GF  naive GF  speedup  "
           "crisp vs s0  bwd vs s0  naive vs s0  kept\n");
    for (int i = 0; i < nn; i++) {
      /* every sparsity on the same inputs, interleaved within each repetition, so load
       * drifting on a shared machine hits all of them alike */
      Shape *sh = xcalloc((size_t)nsp, sizeof *sh);
      for (int si = 0; si < nsp; si++)
        shape_init(&sh[si], &s, ns[i], sps[si], rng, false);
      for (int r = -1; r < reps; r++)
        for (int si = 0; si < nsp; si++)
          shape_run(&sh[si], &ks, threads, r);
      Result base = shape_result(&sh[0], reps);
      for (int si = 0; si < nsp; si++) {
        Result r = shape_result(&sh[si], reps);
        shape_free(&sh[si]);
        double flops = 16.0 * 12 * 12 * (double)ns[i] * ns[i] * s.head_dim;
        if (skip_naive)
          r.naive = base.naive = NAN;
        printf("%5d  %4.2f  %7.2f  %7.2f  %8.2f  %8.2f  %8.2f  %8.2f  %6.2fx  %11.2f  %9.2f  "
               "%11.2f  %4.2f\n",
               ns[i], sps[si], r.fwd * 1e3, r.bwd * 1e3, r.total * 1e3, r.naive * 1e3,
               flops / r.total * 1e-9, flops / r.naive * 1e-9, r.naive / r.total,
               r.total / base.total, r.bwd / base.bwd, r.naive / base.naive, r.kept);
        fflush(stdout);
      }
      free(sh);
      harness_uniform(&rng);   /* fresh inputs for the next length */
    }
    kernels_free(&ks);
  }
  return 0;
}
