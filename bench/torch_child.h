/* The PyTorch baselines of bench_vs_torch, timed by bench/torch_attention.py in a
 * child process (popen) on the same number of threads, read back as JSON lines. */
#ifndef CRISP_BENCH_TORCH_CHILD_H
#define CRISP_BENCH_TORCH_CHILD_H

#include <stdbool.h>
#include <stddef.h>

typedef struct TorchCmd {
  const char *python, *script;
  int threads, reps, B, H, D;
  const double *s;
  int ns;
  const char *const *selects;
  int nselects;
} TorchCmd;

typedef struct TorchTime {
  char impl[16];      /* torch_sdpa, torch_paper */
  char select[24];    /* none for sdpa */
  int n;
  double s, ms;
} TorchTime;

typedef struct TorchRun {
  TorchTime *t;
  int count, cap;
  char version[64];
  int threads;        /* what torch reported after set_num_threads */
  char omp_wait[16];  /* the child's OMP_WAIT_POLICY */
} TorchRun;

/* Times every baseline at length n, appending to out. Returns 0; 1 when PyTorch is
 * not there (python or torch absent: err says which, the caller skips the baselines);
 * -1 when the child failed or wrote something that is not one of its JSON lines (err
 * says what and where). */
int torch_child_run(const TorchCmd *c, int n, TorchRun *out, char *err, size_t cap);
/* ms of one baseline, NAN if it was not measured. */
double torch_lookup(const TorchRun *r, const char *impl, const char *select, int n, double s);
void torch_run_free(TorchRun *r);

#endif
