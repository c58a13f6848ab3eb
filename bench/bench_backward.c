/* Benchmark: crisp attention forward + backward on the CPU, JIT-compiled, against
 * the straightforward C version (naive_backward.c, -O3 -march=native), both in this
 * run, on the same threads and inputs; median of several repetitions, interleaved.
 * B = 16, H = 12, D = 64, dropout 0.1 (as in training; --dropout sets it), select = row_topk, then
 * head_quantile (its select kernels' time counted in the forward's).
 * GFLOP/s count 12 n^2 d per head (fwd 4, bwd 8: the dense count, whatever is kept).
 * The "sparsity that pays" figure is each s's time over the s = 0 time, measured in
 * the same run: the backward recomputes every score but does the rest (dO.V, P.dO,
 * dS.K, dS.Q) on kept pairs only. Before the table, one shape with q, k multiples of
 * 1/4 (exact scores, so both sides keep the same keys) checks that the two compute the
 * same gradients.
 *
 *   bench_backward [--quick] [--reps N] [--n N1,N2,...] [--s S1,S2,...] [--threads T] [--no-naive]
 *                  [--warp] [--select row_topk|head_quantile] [--max-seq M]
 *                  [--head-dim D] [--dropout P]
 * --warp compiles the warp-per-row schedule (tile 16 x 1, the GPU's) instead of the CPU
 * tile schedule that tile = auto picks on the host: the before/after comparison.
 * --n / --s replace the lengths (64, 128, 512) and sparsities (0, 0.6, 0.8); the first
 * sparsity is the base of the ratios; --select runs one strategy instead of both;
 * --max-seq compiles for max_seq = M (default 512; the model's kernels use its max_len,
 * 64 in bench_train's step), and the lengths must be at most M; --head-dim sets d
 * (default 64, DistilBERT's; all-MiniLM-L6-v2 has 32); --dropout sets the attention
 * dropout in [0, 0.9] (default 0.1; bench_vs_torch runs 0, as PyTorch's dense SDPA).
 * Every value is range-checked (--help lists the ranges): a bad one, or a flag it does
 * not know, exits 2 before any kernel is compiled (bench_args.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_args.h"
#include "fwd_bwd.h"

static const char USAGE[] =
    "usage: bench_backward [--quick] [--reps N] [--n N1,N2,...] [--s S1,S2,...] [--threads T]\n"
    "                      [--no-naive] [--warp] [--select row_topk|head_quantile]\n"
    "                      [--max-seq M] [--head-dim D] [--dropout P]\n"
    "  --reps N       repetitions, 1..31 (default 5; --quick: 3, and n = 64, 128 only)\n"
    "  --n LIST       up to 8 lengths, 1..max_seq (default 64,128,512)\n"
    "  --s LIST       up to 8 sparsities in [0, 0.999] (default 0,0.6,0.8; the first is the\n"
    "                 base of the ratios)\n"
    "  --threads T    1..64 (default: the online cores)\n"
    "  --select S     run one strategy instead of both\n"
    "  --max-seq M    compile for max_seq M, 1..8192 (default 512)\n"
    "  --head-dim D   1..256 (default 64)\n"
    "  --dropout P    attention dropout in [0, 0.9] (default 0.1)\n"
    "  --no-naive     skip the naive C version; --warp: the warp-per-row schedule\n";

int main(int argc, char **argv) {
  int reps = 5, nn = 3, nsp = 3, threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
  bool skip_naive = false;
  double dropout = 0.1;
  int only = -1;   /* --select: the one strategy to run */
  int ns[8] = {64, 128, 512};
  double sps[8] = {0.0, 0.6, 0.8};
  static const char *const select_names[] = {"row_topk", "head_quantile", NULL};
  BenchArgs args = bench_args(argc, argv, "bench_backward", USAGE);
  while (bench_next(&args)) {
    if (bench_flag(&args, "--quick"))
      nn = 2, reps = 3;
    else if (bench_flag(&args, "--no-naive"))
      skip_naive = true;
    else if (bench_flag(&args, "--warp"))
      bench_warp_schedule = true;
    else if (!bench_int(&args, "--reps", 1, BENCH_MAX_REPS, &reps) &&
             !bench_int(&args, "--threads", 1, BENCH_MAX_THREADS, &threads) &&
             !bench_int(&args, "--head-dim", 1, 256, &bench_head_dim) &&
             !bench_num(&args, "--dropout", 0, 0.9, &dropout) &&
             !bench_int(&args, "--max-seq", 1, 8192, &bench_max_seq) &&
             !bench_int_list(&args, "--n", 1, 8192, ns, 8, &nn) &&
             !bench_list(&args, "--s", 0, 0.999, sps, 8, &nsp) &&
             !bench_choice(&args, "--select", select_names, &only))
      bench_unknown(&args);
  }
  int max_seq = bench_max_seq > 0 ? bench_max_seq : 512;
  for (int i = 0; i < nn; i++)
    if (ns[i] > max_seq)
      bench_fail(&args, "--n", "%d is longer than max_seq %d (--max-seq)", ns[i], max_seq);
  int check_n = max_seq < 128 ? max_seq : 128;
  threads = threads < 1 ? 1 : threads > BENCH_MAX_THREADS ? BENCH_MAX_THREADS : threads;
  uint64_t rng = harness_seed();

  static const SelectKind modes[] = {SEL_ROW_TOPK, SEL_HEAD_QUANTILE};
  for (int mi = 0; mi < 2; mi++) {
    if (only >= 0 && mi != only)
      continue;
    BenchKernels ks;
    char err[1024];
    double t0 = bench_now();
    if (bench_kernels_compile(&ks, modes[mi], threads, err, sizeof err)) {
      fprintf(stderr, "bench_backward: %s: %s\n", select_name(modes[mi]), err);
      bench_kernels_free(&ks);
      return 1;
    }
    const Spec s = ks.spec;
    printf("\n%s: JIT compile of %d kernels (forward, 2 backward, %d select): %.1f ms\n",
           select_name(s.select), 3 + ks.sm.n, ks.sm.n, (bench_now() - t0) * 1e3);
    BenchShape *chs = bench_xcalloc(1, sizeof *chs);
    bench_shape_init(chs, &ks, &(BenchShapeOpts){16, 12, check_n, 0.8, (float)dropout, true, true},
                     rng);
    bench_shape_run(chs, &ks, 0);
    BenchResult chk = bench_shape_result(chs, 1);
    bench_shape_free(chs);
    free(chs);
    printf("check: n=%d s=0.8, q and k multiples of 1/4 (exact scores): crisp vs naive "
           "gradients max|diff| / max|naive| = %.2g\n", check_n, chk.diff_grad);
    printf("attention forward + backward, %s, B=16 H=12 D=%d, dropout %g, %d threads, median "
           "of %d\n(ms; GF/s counts 12 n^2 d per head; 'vs s=%g': time over the s = %g time of "
           "the same n, in this run%s; kept: fraction of valid keys the forward kept; radix: of the "
           "select groups, those the radix rounds decided, the others settled by the sample "
           "or bracket; sel: the select kernels alone, part of fwd)\n", select_name(s.select), s.head_dim, dropout, threads, reps, sps[0], sps[0],
           ks.sm.n ? "; fwd includes the select kernels" : "");
    printf("    n     s   fwd ms   bwd ms  crisp ms  naive ms  crisp GF  naive GF  speedup  "
           "crisp vs s0  bwd vs s0  naive vs s0  kept  radix  sel ms\n");
    for (int i = 0; i < nn; i++) {
      /* every sparsity on the same inputs, interleaved within each repetition, so load
       * drifting on a shared machine hits all of them alike */
      BenchShape *sh = bench_xcalloc((size_t)nsp, sizeof *sh);
      for (int si = 0; si < nsp; si++)
        bench_shape_init(&sh[si], &ks,
                         &(BenchShapeOpts){16, 12, ns[i], sps[si], (float)dropout, false, !skip_naive},
                         rng);
      for (int r = -1; r < reps; r++)
        for (int si = 0; si < nsp; si++)
          bench_shape_run(&sh[si], &ks, r);
      BenchResult base = bench_shape_result(&sh[0], reps);
      for (int si = 0; si < nsp; si++) {
        BenchResult r = bench_shape_result(&sh[si], reps);
        bench_shape_free(&sh[si]);
        double flops = 16.0 * 12 * 12 * (double)ns[i] * ns[i] * s.head_dim;
        char nv[4][16] = {"-", "-", "-", "-"};   /* the naive columns, "-" when not run */
        if (!skip_naive) {
          snprintf(nv[0], sizeof nv[0], "%.2f", r.naive * 1e3);
          snprintf(nv[1], sizeof nv[1], "%.2f", flops / r.naive * 1e-9);
          snprintf(nv[2], sizeof nv[2], "%.2fx", r.naive / r.total);
          snprintf(nv[3], sizeof nv[3], "%.2f", r.naive / base.naive);
        }
        printf("%5d  %4.2f  %7.2f  %7.2f  %8.2f  %8s  %8.2f  %8s  %7s  %11.2f  %9.2f  %11s  "
               "%4.2f  %5.3f  %6.3f\n",
               ns[i], sps[si], r.fwd * 1e3, r.bwd * 1e3, r.total * 1e3, nv[0],
               flops / r.total * 1e-9, nv[1], nv[2], r.total / base.total, r.bwd / base.bwd,
               nv[3], r.kept, r.radix, r.select * 1e3);
        fflush(stdout);
      }
      free(sh);
      harness_uniform(&rng);   /* fresh inputs for the next length */
    }
    bench_kernels_free(&ks);
  }
  return 0;
}
