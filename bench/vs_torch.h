/* bench_vs_torch's results and their report: the ratio table, the targets of issue 3
 * item 8 (met / not met), and the same as one JSON document. */
#ifndef CRISP_BENCH_VS_TORCH_H
#define CRISP_BENCH_VS_TORCH_H

#include <stdbool.h>
#include <stdio.h>

#include "peak.h"

/* One (strategy, n, s): medians in ms, NAN where not measured. */
typedef struct VsRow {
  const char *select;
  int n;
  double s, kept;
  double crisp, fwd, bwd, naive, sdpa, paper;
  double sel_ms;  /* the select kernels' part of crisp (and of fwd); 0 for row_topk,
                     whose k-th search is inside the forward */
  double dense;   /* crisp ms at s = 0, same strategy and n, same run (NAN: not run) */
  double dense_sel_ms;   /* select ms of that s = 0 row */
} VsRow;

typedef struct VsConfig {
  int B, H, D, threads, reps;
  double dropout;
  const char *torch_status;   /* "torch 2.x, 2 threads" or why the baselines are absent */
} VsConfig;

/* Item 5's "sparsity that pays": the s = 0 row's time over this row's, both without
 * the select kernels (only the selection needs every score, whatever s; and s = 0
 * launches none of its scoring, kernels-select.md). row_topk has no select kernels:
 * its whole time. */
double vs_sparse_gain(const VsRow *r);

/* Dense forward + backward FLOPs of one row: 12 n^2 d per head, whatever is kept. */
double vs_flops(const VsConfig *c, int n);

void vs_print_peak(FILE *f, const MachinePeak *p);
void vs_print_table(FILE *f, const VsConfig *c, const MachinePeak *p, const VsRow *rows,
                    int nrows);
void vs_print_targets(FILE *f, const MachinePeak *p, const VsConfig *c, const VsRow *rows,
                      int nrows);
/* The whole report as JSON, written atomically; -1 with err naming the path. */
int vs_write_json(const char *path, const VsConfig *c, const MachinePeak *p,
                  const VsRow *rows, int nrows, char *err, size_t cap);

#endif
