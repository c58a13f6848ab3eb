/* Running the crisp CPU kernels (select + forward + backward, JIT-compiled) and the
 * straightforward C version (naive_backward.c) on one attention shape, on the same
 * threads (one RtPool, as the cpu backend runs them) and inputs; shared by
 * bench_backward and bench_vs_torch. Only the public
 * template/IR/JIT interfaces are used, so a new kernel schedule is picked up as is. */
#ifndef CRISP_BENCH_FWD_BWD_H
#define CRISP_BENCH_FWD_BWD_H

#include <stdbool.h>
#include <stdint.h>

#include "../runtime/pool.h"
#include "../templates/attention_bwd.h"
#include "../templates/attention_select.h"
#include "../tests/attn_harness.h"
#include "naive_backward.h"

enum { BENCH_MAX_REPS = 31, BENCH_MAX_THREADS = 64 };

double bench_now(void);
/* Sorts v in place. */
double bench_median(double *v, int n);
void *bench_xcalloc(size_t n, size_t size);

typedef struct BenchKernels {
  Spec spec;
  Module fm, bm, sm;                   /* forward, backward, select (quantile modes) */
  Jit *fj, *bj, *sj;
  CpuKernelFn fwd, bwd[2], sel[SELECT_NKERNELS];   /* bwd: bm's kernels, in launch order */
  int threads;
  RtPool *pool;                        /* threads, including the caller; spins as
                                          $CRISP_POOL_SPIN_US says, else the default */
} BenchKernels;

/* Compiles the kernels of one strategy (default spec, backward on) with the tile that
 * tile = auto picks on the host, or the warp-per-row schedule (16 x 1, the GPU's) when
 * bench_warp_schedule is set: the before/after comparison. On failure err says why;
 * bench_kernels_free is safe either way. */
extern bool bench_warp_schedule;
/* The spec's max_seq when > 0 (else the default, 512): the model compiles its
 * kernels for its own max_len (64 in a training step), which sizes the tiles' rows. */
extern int bench_max_seq;
/* The spec's head_dim when > 0 (else the default, 64; all-MiniLM-L6-v2 has 32). */
extern int bench_head_dim;
int bench_kernels_compile(BenchKernels *ks, SelectKind select, int threads, char *err,
                          size_t cap);
void bench_kernels_free(BenchKernels *ks);

typedef struct BenchShapeOpts {
  int B, H, n;
  double sparsity;
  float dropout;
  bool quantized;   /* q, k multiples of 1/4: exact scores, so both sides keep the same keys */
  bool naive;       /* also run the naive version */
} BenchShapeOpts;

typedef struct {
  double fwd, bwd, total, naive;   /* medians, seconds (naive NAN when not run) */
  double diff_o;                   /* max |crisp - naive| / max |naive| over o */
  double diff_grad;                /* the same over dq, dk, dv */
  double kept;                     /* kept keys / valid keys, from the forward's counts */
  double radix;                    /* select groups the radix rounds decided (rank >= 0
                                      after the plan; the others the sample or bracket),
                                      of all; NAN without select kernels */
  double select;                   /* median of the select kernels' part of fwd, seconds
                                      (0 without select kernels) */
} BenchResult;

/* One shape and sparsity: inputs, outputs and both kernels' argument arrays. The
 * struct points into itself: initialise it in place and do not move it. */
typedef struct BenchShape {
  BenchShapeOpts opt;
  AttnCase c;
  AttnArgs fa;
  float *dout, *delta, *grad, *ngrad, *no;
  int32_t *hist, *prefix, *rank, *cand;   /* cand: the tile schedule's candidates */
  int G;                     /* select groups (quantile modes), else 0 */
  void *ptrs[12], *sp_ptrs[8];
  int32_t ints[16], round, cand_cap;
  float p;
  double spv;
  void *ba[ATTN_BWD_NPARAMS], *sa[SELECT_NPARAMS];
  NaiveAttn na;
  double tf[BENCH_MAX_REPS], tb[BENCH_MAX_REPS], tt[BENCH_MAX_REPS], tn[BENCH_MAX_REPS];
  double ts[BENCH_MAX_REPS];   /* the select kernels alone (within tf) */
} BenchShape;

/* rng is copied, so shapes made from one state share their inputs. */
void bench_shape_init(BenchShape *sh, const BenchKernels *ks, const BenchShapeOpts *o,
                      uint64_t rng);
/* One repetition r (< 0: a warm-up, not recorded): crisp, then the naive version. */
void bench_shape_run(BenchShape *sh, BenchKernels *ks, int r);
BenchResult bench_shape_result(BenchShape *sh, int reps);
void bench_shape_free(BenchShape *sh);

#endif
