/* Benchmark: forward + backward of the crisp CPU kernels against, in one run and on
 * the same number of threads, (a) the straightforward C version (naive_backward.c),
 * (b) PyTorch's dense attention (SDPA) and (c) the paper-style PyTorch version
 * (bench/torch_attention.py in a child process; skipped with a message when python3
 * or torch is absent). Prints the machine's measured fp32 FMA peak, one row per
 * (strategy, n, s) with the ratios and % of peak, and whether issue 3's targets are
 * met. Before timing, each strategy's crisp and naive outputs are compared on inputs
 * whose scores are exact (both keep the same keys); a mismatch fails the run.
 *
 *   bench_vs_torch [--quick] [--threads T] [--reps N] [--n 64,128,512] [--s 0,0.6,0.8]
 *                  [--select row_topk,head_quantile] [--batch B] [--heads H]
 *                  [--dropout P] [--no-naive] [--no-torch] [--python CMD]
 *                  [--torch-script PATH] [--json FILE]
 * (--help lists the ranges; a bad value or an unknown flag exits 2: bench_args.h.) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_args.h"
#include "fwd_bwd.h"
#include "peak.h"
#include "torch_child.h"
#include "vs_torch.h"

#ifndef CRISP_TORCH_SCRIPT
#define CRISP_TORCH_SCRIPT "bench/torch_attention.py"
#endif

enum { MAX_N = 8, MAX_S = 8, MAX_SEL = 2 };
/* max |crisp - naive| / max |naive| allowed on the exact-score check: f32 rounding
 * gives ~1e-7..1e-6; one key kept on one side only gives ~1e-2 and more */
static const double CHECK_TOL = 1e-4;

typedef struct Opts {
  int threads, reps, B, H, nn, ns, nsel;
  int n[MAX_N];
  double s[MAX_S];
  SelectKind sel[MAX_SEL];
  const char *sel_name[MAX_SEL];
  double dropout;
  bool naive, torch;
  const char *python, *script, *json;
} Opts;

static const char USAGE[] =
    "usage: bench_vs_torch [--quick] [--threads T] [--reps N] [--n 64,128,512] [--s 0,0.6,0.8]\n"
    "  [--select row_topk,head_quantile] [--batch B] [--heads H] [--dropout P] [--no-naive]\n"
    "  [--no-torch] [--python CMD] [--torch-script PATH] [--json FILE]\n"
    "  --threads T 1..64, --reps N 1..31, --n up to 8 lengths 1..512, --s up to 8 sparsities\n"
    "  in [0, 0.999], --batch 1..4096, --heads 1..256, --dropout [0, 0.9]\n";

/* --select: a comma-separated list of row_topk and head_quantile. */
static int parse_select(const char *arg, Opts *o) {
  char buf[128];
  snprintf(buf, sizeof buf, "%s", arg);
  o->nsel = 0;
  for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
    SelectKind k = !strcmp(tok, "row_topk") ? SEL_ROW_TOPK
                   : !strcmp(tok, "head_quantile") ? SEL_HEAD_QUANTILE : SEL_NONE;
    if (k == SEL_NONE || o->nsel == MAX_SEL)
      return -1;
    o->sel[o->nsel++] = k;
  }
  return o->nsel ? 0 : -1;
}

/* Every option but the flags takes a value; a bad one exits 2 (bench_args.h). */
static void parse_args(int argc, char **argv, Opts *o) {
  *o = (Opts){.threads = (int)sysconf(_SC_NPROCESSORS_ONLN), .reps = 5, .B = 16, .H = 12,
              .nn = 3, .ns = 3, .nsel = 2, .n = {64, 128, 512}, .s = {0, 0.6, 0.8},
              .sel = {SEL_ROW_TOPK, SEL_HEAD_QUANTILE}, .naive = true, .torch = true,
              .python = "python3", .script = CRISP_TORCH_SCRIPT};
  BenchArgs args = bench_args(argc, argv, "bench_vs_torch", USAGE);
  while (bench_next(&args)) {
    const char *sel;
    if (bench_flag(&args, "--quick"))
      o->nn = 2, o->reps = 3;
    else if (bench_flag(&args, "--no-naive"))
      o->naive = false;
    else if (bench_flag(&args, "--no-torch"))
      o->torch = false;
    else if (bench_str(&args, "--select", &sel)) {
      if (parse_select(sel, o))
        bench_fail(&args, "--select", "expected row_topk, head_quantile or both (a,b), got "
                                      "\"%s\"", sel);
    } else if (!bench_int(&args, "--threads", 1, BENCH_MAX_THREADS, &o->threads) &&
               !bench_int(&args, "--reps", 1, BENCH_MAX_REPS, &o->reps) &&
               !bench_int(&args, "--batch", 1, 4096, &o->B) &&
               !bench_int(&args, "--heads", 1, 256, &o->H) &&
               !bench_int_list(&args, "--n", 1, 512, o->n, MAX_N, &o->nn) &&
               !bench_list(&args, "--s", 0, 0.999, o->s, MAX_S, &o->ns) &&
               !bench_num(&args, "--dropout", 0, 0.9, &o->dropout) &&
               !bench_str(&args, "--python", &o->python) &&
               !bench_str(&args, "--torch-script", &o->script) &&
               !bench_str(&args, "--json", &o->json))
      bench_unknown(&args);
  }
  for (int i = 0; i < o->nsel; i++)
    o->sel_name[i] = select_name(o->sel[i]);
}

/* Crisp against naive on quantized inputs (exact scores) at every sparsity, at the
 * smaller of 128 and the largest length asked for. */
static int verify(BenchKernels *ks, const Opts *o, uint64_t rng) {
  int n = 0;
  for (int i = 0; i < o->nn; i++)
    n = o->n[i] > n ? o->n[i] : n;
  n = n < 128 ? n : 128;
  int fails = 0;
  for (int si = 0; si < o->ns; si++) {
    BenchShape *sh = bench_xcalloc(1, sizeof *sh);
    BenchShapeOpts so = {o->B, o->H, n, o->s[si], (float)o->dropout, true, true};
    bench_shape_init(sh, ks, &so, rng);
    bench_shape_run(sh, ks, 0);
    BenchResult r = bench_shape_result(sh, 1);
    bench_shape_free(sh);
    free(sh);
    bool ok = r.diff_o <= CHECK_TOL && r.diff_grad <= CHECK_TOL;
    printf("check %s n=%d s=%.2f (exact scores): crisp vs naive max|diff|/max|naive| o %.2g, "
           "dq/dk/dv %.2g: %s\n", select_name(ks->spec.select), n, o->s[si], r.diff_o,
           r.diff_grad, ok ? "ok" : "MISMATCH");
    fails += !ok;
  }
  return fails;
}

/* Every sparsity of one strategy and length on the same inputs, interleaved within
 * each repetition so load drifting on a shared machine hits all of them alike. */
static void time_crisp(BenchKernels *ks, const Opts *o, int n, uint64_t rng, VsRow *rows) {
  BenchShape *sh = bench_xcalloc((size_t)o->ns, sizeof *sh);
  for (int si = 0; si < o->ns; si++)
    bench_shape_init(&sh[si], ks,
                     &(BenchShapeOpts){o->B, o->H, n, o->s[si], (float)o->dropout, false,
                                       o->naive}, rng);
  for (int r = -1; r < o->reps; r++)
    for (int si = 0; si < o->ns; si++)
      bench_shape_run(&sh[si], ks, r);
  for (int si = 0; si < o->ns; si++) {
    BenchResult r = bench_shape_result(&sh[si], o->reps);
    bench_shape_free(&sh[si]);
    VsRow *row = &rows[si];
    row->crisp = r.total * 1e3, row->fwd = r.fwd * 1e3, row->bwd = r.bwd * 1e3;
    row->sel_ms = r.select * 1e3;
    row->naive = r.naive * 1e3, row->kept = r.kept;
  }
  free(sh);
}

/* The PyTorch baselines of one length; turns o->torch off when they cannot run. */
static int time_torch(Opts *o, int n, TorchRun *tr, char *status, size_t cap) {
  if (!o->torch)
    return 0;
  TorchCmd cmd = {o->python, o->script, o->threads, o->reps, o->B, o->H, 64,
                  o->s, o->ns, o->sel_name, o->nsel};
  char err[512];
  fprintf(stderr, "PyTorch baselines, n=%d...\n", n);
  int rc = torch_child_run(&cmd, n, tr, err, sizeof err);
  if (rc) {
    fprintf(stderr, "bench_vs_torch: %s\n", err);
    snprintf(status, cap, "%s%s", rc > 0 ? "" : "PyTorch baselines failed: ", err);
    o->torch = false;
    return rc < 0;
  }
  snprintf(status, cap, "torch %s on %d threads, OMP_WAIT_POLICY=%s", tr->version,
           tr->threads, tr->omp_wait[0] ? tr->omp_wait : "(unset: libgomp spins, then sleeps)");
  if (tr->threads != o->threads) {
    fprintf(stderr, "bench_vs_torch: torch runs %d threads, not %d\n", tr->threads, o->threads);
    return 1;
  }
  return 0;
}

/* Timings on a shared machine mean little without the load they were taken under. */
static void print_load(const char *when) {
  double l[3];
  if (getloadavg(l, 3) == 3)
    printf("load average %s: %.2f %.2f %.2f\n", when, l[0], l[1], l[2]);
}

int main(int argc, char **argv) {
  Opts o;
  parse_args(argc, argv, &o);
  uint64_t rng = harness_seed();
  MachinePeak peak;
  machine_peak_measure(&peak, o.threads);
  print_load("at the start");
  vs_print_peak(stdout, &peak);

  BenchKernels ks[MAX_SEL];
  char err[1024];
  int failed = 0;
  for (int k = 0; k < o.nsel; k++) {
    if (bench_kernels_compile(&ks[k], o.sel[k], o.threads, err, sizeof err)) {
      fprintf(stderr, "bench_vs_torch: compiling %s: %s\n", o.sel_name[k], err);
      for (int j = 0; j <= k; j++)
        bench_kernels_free(&ks[j]);
      return 1;
    }
    failed += verify(&ks[k], &o, rng);
  }
  if (failed) {
    fprintf(stderr, "bench_vs_torch: crisp and naive outputs differ (see above): no timing\n");
    for (int k = 0; k < o.nsel; k++)
      bench_kernels_free(&ks[k]);
    return 1;
  }

  int nrows = o.nsel * o.nn * o.ns;
  VsRow *rows = bench_xcalloc((size_t)nrows, sizeof *rows);
  TorchRun tr = {0};
  char status[700] = "PyTorch baselines not run (--no-torch)";
  for (int i = 0; i < o.nn; i++) {
    int n = o.n[i];
    failed += time_torch(&o, n, &tr, status, sizeof status);
    for (int k = 0; k < o.nsel; k++) {
      fprintf(stderr, "crisp%s, %s, n=%d...\n", o.naive ? " and naive" : "", o.sel_name[k], n);
      VsRow *r = &rows[(k * o.nn + i) * o.ns];
      time_crisp(&ks[k], &o, n, rng, r);
      for (int si = 0; si < o.ns; si++) {
        r[si].select = o.sel_name[k], r[si].n = n, r[si].s = o.s[si];
        r[si].sdpa = torch_lookup(&tr, "torch_sdpa", "none", n, 0.0);
        r[si].paper = torch_lookup(&tr, "torch_paper", o.sel_name[k], n, o.s[si]);
        r[si].dense = r[si].dense_sel_ms = NAN;
        for (int sj = 0; sj < o.ns; sj++)
          if (o.s[sj] == 0)
            r[si].dense = r[sj].crisp, r[si].dense_sel_ms = r[sj].sel_ms;
      }
    }
    harness_uniform(&rng);   /* fresh inputs for the next length */
  }
  VsConfig cfg = {o.B, o.H, ks[0].spec.head_dim, o.threads, o.reps, o.dropout, status};
  vs_print_table(stdout, &cfg, &peak, rows, nrows);
  vs_print_targets(stdout, &peak, &cfg, rows, nrows);
  print_load("at the end");
  if (o.json && !failed && vs_write_json(o.json, &cfg, &peak, rows, nrows, err, sizeof err)) {
    fprintf(stderr, "bench_vs_torch: %s\n", err);
    failed = 1;
  }
  for (int k = 0; k < o.nsel; k++)
    bench_kernels_free(&ks[k]);
  torch_run_free(&tr);
  free(rows);
  return failed ? 1 : 0;
}
