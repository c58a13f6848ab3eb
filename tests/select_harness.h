/* Shared by the select kernels' tests (test_select.c, test_select_tile.c): the
 * compile pipeline of the three select kernels, their arguments over an AttnCase,
 * and the launch plan JIT-run on the host. */
#ifndef CRISP_SELECT_HARNESS_H
#define CRISP_SELECT_HARNESS_H

#include "../templates/attention_select.h"
#include "attn_harness.h"


/* verify -> simplify [-> map -> simplify -> verify] for the three select kernels,
 * appended to m (MAP_NONE stops before map: the interpreter's GPU semantics). */
int sel_compile(Module *m, const Spec *s, const TileConfig *t, MapTarget target, char *err,
                size_t cap);

/* The plan's arguments over a case: q, k and lengths from c, the state buffers
 * (hist, prefix, rank, tau, cand) allocated full of garbage, which the plan's init
 * kernel and round 1 must clean. cand has the default capacity
 * (attention_select_cand_cap(N)); sel_args_cap sets another. counts[] are the
 * element counts for the interpreter. */
typedef struct {
  int G;
  int32_t *hist, *prefix, *rank, *cand;
  float *tau;
  int32_t ints[6];
  double sparsity;
  int32_t round, cand_cap;
  void *ptrs[SELECT_B + 1];   /* the buffers, then cand */
  void *args[SELECT_NPARAMS];
  int64_t counts[SELECT_NPARAMS];
} SelArgs;
void sel_args(SelArgs *a, AttnCase *c, double sparsity);
void sel_args_cap(SelArgs *a, AttnCase *c, double sparsity, int cand_cap);
void sel_args_free(SelArgs *a);

/* Which path settled each group of a tile-schedule plan, from rank[] after the picks
 * of rounds SAMPLE and BRACKET (sel_trace_record). */
typedef enum { PATH_SAMPLE, PATH_BRACKET, PATH_RADIX, NPATHS } SelPath;
typedef struct {
  int G;
  int32_t *after_sample, *after_bracket;   /* rank[] copies, G each */
  int count[NPATHS];                       /* groups per path (sel_trace_count) */
  int early_picks;                         /* picks of rounds SAMPLE, BRACKET that ran */
  int launches[SELECT_NKERNELS];           /* kernels launched, by SelectKernel */
} SelTrace;
void sel_trace_init(SelTrace *t, int G);
void sel_trace_free(SelTrace *t);
/* For a launcher, after each launch: counts it, and after a pick of round SAMPLE or
 * BRACKET copies rank[] (args). */
void sel_trace_record(SelTrace *t, SelectKernel which, void **args);
/* Fills t->count; the path of group g. */
void sel_trace_count(SelTrace *t);
SelPath sel_trace_path(const SelTrace *t, int g);

/* Which plan sel_host_run runs: attention_select_run's (attention_select_plan_kind:
 * by N and s; what callers get), or one given, so that the sample and bracket are
 * tested at any length and the radix rounds where every group keeps every score. */
typedef enum { SEL_PLAN_BY_LENGTH, SEL_PLAN_RADIX, SEL_PLAN_BRACKET } SelPlan;

/* The select kernels JIT-compiled for the host. */
typedef struct {
  Module m;
  Spec spec;         /* the kernels' */
  Jit *jit;
  CpuKernelFn fn[SELECT_NKERNELS];
  SelTrace *trace;   /* NULL, or filled by sel_host_run */
  SelPlan plan;      /* SEL_PLAN_BY_LENGTH after sel_host_compile */
} SelHost;
/* 0, or -1 with err (nothing to free then). */
int sel_host_compile(SelHost *h, const Spec *s, const TileConfig *t, char *err, size_t cap);
void sel_host_free(SelHost *h);
/* SelPlan -> the plan sel_host_run launches for a (a's B, H, N, sparsity). */
SelectPlanKind sel_host_plan_kind(const SelHost *h, const SelArgs *a);
/* The launch plan (h->plan); the hist blocks split over two threads at once, so the global
 * atomics are real. 0 or nonzero. */
int sel_host_run(SelHost *h, SelArgs *a);

/* The f32 score the kernels compute for a reference score of quantized inputs (q, k
 * multiples of 1/4: the dot is exact, then times f32(1/sqrt(D))). */
float sel_kernel_score(double s, int D);

/* The plan and API checks of test_select (select_plan.c). */
void sel_test_plan(void);
/* The warp schedule's staged hist in the interpreter (select_warp.c): several key
 * tiles, each shared-memory layout, n = 1, padding, causal; rng: test_select's. */
void sel_test_warp(uint64_t *rng);

#endif
